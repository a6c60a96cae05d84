//! What a `starttls_conn` knows: the negotiated TLS parameters, the peer's certificates, what the
//! dialog learned, how the certificate was checked, and the last error.

use std::ffi::{c_char, c_int};

use super::codes::*;
use super::conn::{starttls_conn, with_conn};
use super::{Failure, boundary, boundary_value, bytes_out, null, str_out};
use crate::Verification;
use crate::error::Error;

/// # Safety
/// `conn` is NULL or live.
pub(super) unsafe fn conn_ref<'a>(conn: *const starttls_conn) -> Option<&'a starttls_conn> {
    // SAFETY: forwarded caller contract.
    unsafe { conn.as_ref() }
}

/// The detailed message of the last failure on this connection (with the server's reply where
/// there is one), NUL-terminated and truncated to `len`; returns the full length, snprintf-style.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_error(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || match unsafe { conn_ref(conn) } {
        Some(c) => unsafe { str_out(&c.error, buf, len) },
        None => unsafe { str_out("", buf, len) },
    })
}

/// The operating system's error number (`errno`) behind the last failure on this connection,
/// as `starttls_last_os_error` is for the thread: a system error's `errno` (`ECONNRESET`,
/// `EPIPE`, ...), `ETIMEDOUT` for a timeout, 0 for any other failure or none.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_os_error(conn: *const starttls_conn) -> c_int {
    boundary_value(0, || unsafe { conn_ref(conn) }.map_or(0, |c| c.os_error))
}

/// The negotiated TLS version: `STARTTLS_TLS_1_2`, `STARTTLS_TLS_1_3`, or 0 when not encrypted.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_tls_version(conn: *const starttls_conn) -> u16 {
    boundary_value(0, || {
        unsafe { conn_ref(conn) }
            .and_then(|c| c.conn.tls_version())
            .map_or(0, u16::from)
    })
}

/// The negotiated cipher suite's IANA number, 0 when not encrypted.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_cipher_suite_id(conn: *const starttls_conn) -> u16 {
    boundary_value(0, || {
        unsafe { conn_ref(conn) }
            .and_then(|c| c.conn.cipher_suite())
            .map_or(0, u16::from)
    })
}

/// The negotiated cipher suite's IANA name (e.g. `TLS_AES_256_GCM_SHA384`), snprintf-style;
/// empty when not encrypted.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_cipher_suite(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        let name = unsafe { conn_ref(conn) }
            .and_then(|c| c.conn.cipher_suite_name())
            .unwrap_or_default();
        unsafe { str_out(&name, buf, len) }
    })
}

/// The key-exchange group the handshake used (e.g. `X25519`, `X25519MLKEM768`, `secp256r1`),
/// snprintf-style; empty when not encrypted.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_key_exchange_group(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        let name = unsafe { conn_ref(conn) }
            .and_then(|c| c.conn.key_exchange_group())
            .unwrap_or_default();
        unsafe { str_out(&name, buf, len) }
    })
}

/// The SASL mechanism (or protocol login) of the last successful `starttls_conn_authenticate`
/// on this connection, snprintf-style: `SCRAM-SHA-256-PLUS`, `SCRAM-SHA-256`, `PLAIN`,
/// `LOGIN`, `USER/PASS`, `simple bind`; empty before a login succeeded.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_auth_mechanism(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        let name = unsafe { conn_ref(conn) }
            .and_then(|c| c.auth.as_ref())
            .map_or("", |a| a.mechanism);
        unsafe { str_out(name, buf, len) }
    })
}

/// The channel binding the last successful login was bound to (`tls-exporter`,
/// `tls-server-end-point`), snprintf-style; empty when it had none: then the server did not
/// prove that it saw this very TLS connection.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_auth_channel_binding(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        let name = unsafe { conn_ref(conn) }
            .and_then(|c| c.auth.as_ref())
            .and_then(|a| a.channel_binding)
            .unwrap_or_default();
        unsafe { str_out(name, buf, len) }
    })
}

/// Copies the negotiated ALPN protocol (possibly empty) into `buf`; `*out_n` its length.
///
/// # Safety
/// `conn` is NULL or live; `buf` points to `len` writable bytes; `out_n` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_alpn(
    conn: *mut starttls_conn,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            let alpn = c.conn.alpn_protocol().unwrap_or_default().to_vec();
            bytes_out(&alpn, buf, len, out_n)
        })
    }
}

/// How many certificates the server sent (0 when not encrypted).
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_peer_cert_count(conn: *const starttls_conn) -> usize {
    boundary_value(0, || {
        unsafe { conn_ref(conn) }
            .and_then(|c| c.conn.peer_certificates())
            .map_or(0, <[_]>::len)
    })
}

/// Copies certificate `index` of the server's chain (0 = leaf), DER, into `buf`; `*out_n` its
/// length. `STARTTLS_ERR_BUFFER_TOO_SMALL` when it does not fit (the message says the size;
/// `starttls_conn_peer_cert_len` tells it beforehand).
///
/// # Safety
/// `conn` is NULL or live; `buf` points to `len` writable bytes; `out_n` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_peer_cert(
    conn: *mut starttls_conn,
    index: usize,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            let certs = c.conn.peer_certificates().unwrap_or_default();
            let cert = certs.get(index).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "no certificate {index}: the chain has {}",
                    certs.len()
                ))
            })?;
            bytes_out(cert.as_ref(), buf, len, out_n)
        })
    }
}

/// The DER length of certificate `index` of the server's chain, 0 when there is none.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_peer_cert_len(
    conn: *const starttls_conn,
    index: usize,
) -> usize {
    boundary_value(0, || {
        unsafe { conn_ref(conn) }
            .and_then(|c| c.conn.peer_certificates())
            .and_then(|certs| certs.get(index))
            .map_or(0, |c| c.as_ref().len())
    })
}

/// The server's greeting (lines joined by `\n`), snprintf-style. For STARTTLS it came in
/// plaintext: show it, do not act on it.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_greeting(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        let g = unsafe { conn_ref(conn) }
            .and_then(|c| c.conn.greeting())
            .unwrap_or_default();
        unsafe { str_out(g, buf, len) }
    })
}

/// The capabilities seen before TLS, one per line (`\n`-separated), snprintf-style. UNTRUSTED:
/// an attacker could have written them; informational only.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_capabilities_before_tls(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        let caps = unsafe { conn_ref(conn) }
            .and_then(|c| c.conn.capabilities_before_tls())
            .map(|u| u.get_untrusted().join("\n"))
            .unwrap_or_default();
        unsafe { str_out(&caps, buf, len) }
    })
}

/// The capabilities learned inside TLS, one per line, snprintf-style: from
/// `starttls_conn_fetch_capabilities` (or the config's fetch option), from an implicit-TLS IMAP
/// greeting that carries them, or re-sent by a ManageSieve server after TLS. Empty when there are
/// none; `starttls_conn_has_capabilities` tells "none known" from "an empty list".
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_capabilities(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        let caps = unsafe { conn_ref(conn) }
            .and_then(|c| c.conn.capabilities())
            .map(|c| c.join("\n"))
            .unwrap_or_default();
        unsafe { str_out(&caps, buf, len) }
    })
}

/// True for a connection made by `starttls_accept_fd` / `starttls_accept_tls_fd`.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_is_server(conn: *const starttls_conn) -> bool {
    boundary_value(false, || {
        unsafe { conn_ref(conn) }.is_some_and(|c| c.conn.is_server())
    })
}

/// Server side: the name the client gave before TLS (EHLO/LHLO argument, XMPP `to`, HTTP
/// `Host`), snprintf-style; empty when none. Untrusted: it came in plaintext.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_peer_name(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        let name = unsafe { conn_ref(conn) }
            .and_then(|c| c.conn.peer_name().map(|n| n.get_untrusted().to_string()))
            .unwrap_or_default();
        unsafe { str_out(&name, buf, len) }
    })
}

/// True when capabilities were learned inside TLS (see `starttls_conn_capabilities`).
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_has_capabilities(conn: *const starttls_conn) -> bool {
    boundary_value(false, || {
        unsafe { conn_ref(conn) }.is_some_and(|c| c.conn.capabilities().is_some())
    })
}

/// Asks the server for its capabilities again, inside TLS (EHLO/LHLO, CAPABILITY, CAPA); read
/// them with `starttls_conn_capabilities`. Fails on a plaintext connection.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_fetch_capabilities(conn: *mut starttls_conn) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            c.conn
                .fetch_capabilities()
                .map(|_| ())
                .map_err(Failure::from)
        })
    }
}

/// The socket's fd: the caller's own for `starttls_upgrade_fd`/`_handshake_fd`, the library's
/// for `starttls_connect` (do not close it). -1 for NULL.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_fd(conn: *const starttls_conn) -> c_int {
    boundary_value(-1, || unsafe { conn_ref(conn) }.map_or(-1, |c| c.fd))
}

/// True when the connection is encrypted. Always true under `STARTTLS_POLICY_REQUIRE`.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_is_encrypted(conn: *const starttls_conn) -> bool {
    boundary_value(false, || {
        unsafe { conn_ref(conn) }.is_some_and(|c| c.conn.is_encrypted())
    })
}

/// Why the connection is not encrypted (a `STARTTLS_ERR_*` code, e.g. `NOT_OFFERED`), or
/// `STARTTLS_OK` when it is encrypted.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_plaintext_reason(conn: *const starttls_conn) -> u32 {
    boundary_value(STARTTLS_ERR_PANIC, || match unsafe { conn_ref(conn) } {
        None => STARTTLS_ERR_INVALID_ARGUMENT,
        Some(c) => c.conn.plaintext_reason().map_or(STARTTLS_OK, Error::code),
    })
}

/// What the server said before TLS about STARTTLS: 1 available (advertised, or the command was
/// accepted), 0 not available (not advertised, or refused), -1 when the dialog did not learn it
/// (implicit TLS) or for NULL. Like everything before TLS, an attacker could have changed it.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_starttls_offered(conn: *const starttls_conn) -> c_int {
    boundary_value(-1, || {
        match unsafe { conn_ref(conn) }.and_then(|c| c.conn.starttls_offered()) {
            Some(true) => 1,
            Some(false) => 0,
            None => -1,
        }
    })
}

/// True when this connection resumed an earlier TLS session (same config).
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_is_resumed(conn: *const starttls_conn) -> bool {
    boundary_value(false, || {
        unsafe { conn_ref(conn) }.is_some_and(|c| c.conn.is_resumed())
    })
}

/// How the peer's certificate was checked: `STARTTLS_VERIFY_VERIFIED`, `_SKIPPED` (dangerous
/// mode), `_NOT_ENCRYPTED`, or on the server side `_NO_PEER_CERTIFICATE` when the client
/// presented none.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_verification(conn: *const starttls_conn) -> u32 {
    boundary_value(STARTTLS_VERIFY_NOT_ENCRYPTED, || {
        match unsafe { conn_ref(conn) }.map(|c| c.conn.verification()) {
            Some(Verification::Verified) => STARTTLS_VERIFY_VERIFIED,
            Some(Verification::Skipped { .. }) => STARTTLS_VERIFY_SKIPPED,
            Some(Verification::NoPeerCertificate) => STARTTLS_VERIFY_NO_PEER_CERTIFICATE,
            _ => STARTTLS_VERIFY_NOT_ENCRYPTED,
        }
    })
}

/// In dangerous mode, what verification would have rejected (snprintf-style); empty when the
/// chain would have passed or was verified.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_verification_problem(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        let problem = match unsafe { conn_ref(conn) }.map(|c| c.conn.verification()) {
            Some(Verification::Skipped { problem: Some(p) }) => p.as_str(),
            _ => "",
        };
        unsafe { str_out(problem, buf, len) }
    })
}

/// The facts of the peer's leaf certificate, for the accessors below.
///
/// # Safety
/// `conn` is NULL or live.
unsafe fn leaf_facts(conn: *const starttls_conn) -> Option<crate::CertificateFacts> {
    // SAFETY: forwarded caller contract.
    unsafe { conn_ref(conn) }.and_then(|c| c.conn.peer_certificate_facts())
}

/// One text fact of the peer's leaf certificate, snprintf-style; empty without a certificate.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
unsafe fn leaf_text(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
    fact: impl FnOnce(crate::CertificateFacts) -> String,
) -> usize {
    boundary_value(0, || {
        // SAFETY: forwarded caller contract.
        let text = unsafe { leaf_facts(conn) }.map(fact).unwrap_or_default();
        unsafe { str_out(&text, buf, len) }
    })
}

/// The validity of the peer's leaf certificate as Unix times (seconds): `*not_before` and
/// `*not_after` (either may be NULL). `STARTTLS_ERR_INVALID_ARGUMENT` when there is no
/// certificate (plaintext, or a client that presented none).
///
/// # Safety
/// `conn` is NULL or live; `not_before` and `not_after` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_peer_cert_validity(
    conn: *const starttls_conn,
    not_before: *mut i64,
    not_after: *mut i64,
) -> u32 {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let facts = unsafe { leaf_facts(conn) }
            .ok_or_else(|| Error::InvalidArgument("no peer certificate".into()))?;
        // SAFETY: NULL or writable, by the caller's contract.
        unsafe {
            if let Some(p) = not_before.as_mut() {
                *p = facts.not_before;
            }
            if let Some(p) = not_after.as_mut() {
                *p = facts.not_after;
            }
        }
        Ok(())
    })
}

/// The peer's leaf certificate's subject (`CN=..., O=...`), snprintf-style; empty without one.
/// Peer text, control characters escaped.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_peer_cert_subject(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    // SAFETY: forwarded caller contract.
    unsafe { leaf_text(conn, buf, len, |f| f.subject) }
}

/// The peer's leaf certificate's issuer, snprintf-style; empty without one.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_peer_cert_issuer(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    // SAFETY: forwarded caller contract.
    unsafe { leaf_text(conn, buf, len, |f| f.issuer) }
}

/// The peer's leaf certificate's subject alternative names, one per line (`DNS:mx.example.org`,
/// `IP:192.0.2.1`, `email:...`), snprintf-style; empty without any.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_peer_cert_names(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    // SAFETY: forwarded caller contract.
    unsafe { leaf_text(conn, buf, len, |f| f.subject_alt_names.join("\n")) }
}

/// SHA-256 of the peer's leaf certificate (DER) into `out` (32 bytes), or with `spki` true of
/// its SubjectPublicKeyInfo (the key pin that survives a renewal with the same key).
/// `STARTTLS_ERR_INVALID_ARGUMENT` without a certificate.
///
/// # Safety
/// `conn` is NULL or live; `out` is NULL or points to 32 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_peer_cert_sha256(
    conn: *const starttls_conn,
    spki: bool,
    out: *mut u8,
) -> u32 {
    boundary(|| {
        if out.is_null() {
            return Err(null("out").into());
        }
        // SAFETY: forwarded caller contract.
        let facts = unsafe { leaf_facts(conn) }
            .ok_or_else(|| Error::InvalidArgument("no peer certificate".into()))?;
        let digest = if spki {
            facts.spki_sha256
        } else {
            facts.sha256
        };
        // SAFETY: `out` has room for 32 bytes by the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(digest.as_ptr(), out, digest.len()) };
        Ok(())
    })
}
