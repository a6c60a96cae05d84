//! DANE and pins from C: `starttls_tlsa_set` (the records one connection is authenticated by,
//! as OpenSSL's `SSL_dane_tlsa_add` collects them), connecting and upgrading with it, what DANE
//! decided, and the pin of a certificate.

use std::ffi::{c_char, c_int};

use super::codes::*;
use super::config::starttls_config;
use super::conn::{connect, starttls_conn, upgrade_fd};
use super::inspect::conn_ref;
use super::{boundary, boundary_value, bytes_in, free_handle, null, str_in, str_out};
use crate::{DaneStatus, TlsaRecord};

/// TLSA records for one destination (an MTA looks them up itself, DNSSEC-validated). Made by
/// `starttls_tlsa_set_new`, filled by `starttls_tlsa_set_add` / `_add_text`, passed to
/// `starttls_connect_dane` or `starttls_upgrade_fd_dane` (which copy it: free it any time after),
/// released by `starttls_tlsa_set_free`. Not thread-safe.
pub struct starttls_tlsa_set {
    records: Vec<TlsaRecord>,
}

impl starttls_tlsa_set {
    #[cfg(feature = "dns")]
    pub(crate) fn from_records(records: Vec<TlsaRecord>) -> starttls_tlsa_set {
        starttls_tlsa_set { records }
    }
}

/// A new, empty set. Returns NULL only if allocation panicked.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_tlsa_set_new() -> *mut starttls_tlsa_set {
    boundary_value(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(starttls_tlsa_set {
            records: Vec::new(),
        }))
    })
}

/// Frees a set. NULL is fine.
///
/// # Safety
/// `set` is NULL or a live set, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_tlsa_set_free(set: *mut starttls_tlsa_set) {
    // SAFETY: NULL or a pointer from starttls_tlsa_set_new, freed once.
    unsafe { free_handle(set) }
}

/// Adds one record: `usage` (0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE), `selector` (0 the
/// certificate, 1 its public key), `matching_type` (0 exact, 1 SHA-256, 2 SHA-512) and `data_len`
/// bytes of `data` (copied). Any values are accepted, as in DNS: records that cannot be used are
/// ignored when connecting.
///
/// # Safety
/// `set` is NULL or live; `data` is NULL or points to `data_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_tlsa_set_add(
    set: *mut starttls_tlsa_set,
    usage: u8,
    selector: u8,
    matching_type: u8,
    data: *const u8,
    data_len: usize,
) -> u32 {
    boundary(|| {
        // SAFETY: NULL or live, one thread at a time (documented).
        let set = unsafe { set.as_mut() }.ok_or_else(|| null("set"))?;
        // SAFETY: forwarded caller contract.
        let data = unsafe { bytes_in(data, data_len, "data") }?;
        set.records
            .push(TlsaRecord::new(usage, selector, matching_type, data));
        Ok(())
    })
}

/// Adds one record in the text form `dig` prints: `"3 1 1 0f3c..."` (the hex may hold spaces).
/// `STARTTLS_ERR_INVALID_ARGUMENT` for text that is not a record; the set is then unchanged.
///
/// # Safety
/// `set` is NULL or live; `text` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_tlsa_set_add_text(
    set: *mut starttls_tlsa_set,
    text: *const c_char,
) -> u32 {
    boundary(|| {
        // SAFETY: NULL or live, one thread at a time (documented).
        let set = unsafe { set.as_mut() }.ok_or_else(|| null("set"))?;
        // SAFETY: forwarded caller contract.
        let record = unsafe { str_in(text, "text") }?.parse::<TlsaRecord>()?;
        set.records.push(record);
        Ok(())
    })
}

/// How many records the set holds.
///
/// # Safety
/// `set` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_tlsa_set_count(set: *const starttls_tlsa_set) -> usize {
    // SAFETY: forwarded caller contract.
    boundary_value(0, || unsafe { set.as_ref() }.map_or(0, |s| s.records.len()))
}

/// The records of a set passed to a connect call; NULL is `STARTTLS_ERR_INVALID_ARGUMENT` (pass
/// records, or call the function without `_dane`).
///
/// # Safety
/// `set` is NULL or live.
unsafe fn records<'a>(set: *const starttls_tlsa_set) -> Result<&'a [TlsaRecord], crate::Error> {
    // SAFETY: forwarded caller contract.
    unsafe { set.as_ref() }
        .map(|s| s.records.as_slice())
        .ok_or_else(|| null("tlsa"))
}

/// `starttls_connect`, with the server authenticated by the TLSA records in `tlsa` (DANE,
/// RFC 7671; RFC 7672 for `STARTTLS_PROTO_SMTP`) instead of the config's roots: DANE-EE (3) by
/// the record alone, the certificate's names and validity unchecked; DANE-TA (2) with the named
/// certificate, which the server must send, as the only trust anchor, the name checked; PKIX-TA
/// and PKIX-EE (0, 1) as constraints on the config's verification (unusable for SMTP). Unusable
/// records are ignored; when none is usable, SMTP goes on encrypted but unauthenticated (RFC 7672
/// §2.2: `starttls_conn_verification` says `STARTTLS_VERIFY_SKIPPED`, no login runs) and other
/// protocols verify as the config says. A set that authenticates nothing fails with
/// `STARTTLS_ERR_CERTIFICATE`, the message naming the records tried (the presented chain is at
/// `starttls_last_peer_cert`). An empty set is no DANE. Pins in the config still apply.
///
/// # Safety
/// As for `starttls_connect`; `tlsa` is NULL or a live set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_connect_dane(
    config: *const starttls_config,
    protocol: u32,
    host: *const c_char,
    port: u16,
    server_name: *const c_char,
    tlsa: *const starttls_tlsa_set,
    conn_out: *mut *mut starttls_conn,
) -> u32 {
    // SAFETY: forwarded caller contract.
    match unsafe { records(tlsa) } {
        // SAFETY: forwarded caller contract.
        Ok(r) => unsafe { connect(config, protocol, host, port, server_name, r, conn_out) },
        Err(e) => boundary(|| Err(e.into())),
    }
}

/// `starttls_upgrade_fd`, with DANE as for `starttls_connect_dane`. fd ownership as for
/// `starttls_upgrade_fd` (with `STARTTLS_FD_TAKE_OWNERSHIP` the fd is closed on any failure).
///
/// # Safety
/// As for `starttls_upgrade_fd`; `tlsa` is NULL or a live set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_upgrade_fd_dane(
    config: *const starttls_config,
    protocol: u32,
    fd: c_int,
    server_name: *const c_char,
    flags: u32,
    tlsa: *const starttls_tlsa_set,
    conn_out: *mut *mut starttls_conn,
) -> u32 {
    // SAFETY: forwarded caller contract (both).
    unsafe {
        upgrade_fd(
            config,
            Some(protocol),
            fd,
            server_name,
            flags,
            records(tlsa),
            conn_out,
        )
    }
}

/// What DANE decided on a connection: `STARTTLS_DANE_NONE` (made without TLSA records),
/// `STARTTLS_DANE_MATCHED` (a record authenticated the server: `starttls_conn_dane_matched`) or
/// `STARTTLS_DANE_NO_USABLE_RECORDS`.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_dane(conn: *const starttls_conn) -> u32 {
    boundary_value(STARTTLS_DANE_NONE, || {
        // SAFETY: forwarded caller contract.
        match unsafe { conn_ref(conn) }.and_then(|c| c.conn.dane()) {
            Some(DaneStatus::Matched(_)) => STARTTLS_DANE_MATCHED,
            Some(DaneStatus::NoUsableRecords) => STARTTLS_DANE_NO_USABLE_RECORDS,
            None => STARTTLS_DANE_NONE,
        }
    })
}

/// The TLSA record that authenticated the server, as text (`"3 1 1 0f3c..."`), snprintf-style;
/// empty when none did.
///
/// # Safety
/// `conn` is NULL or live; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_dane_matched(
    conn: *const starttls_conn,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        // SAFETY: forwarded caller contract.
        let text = match unsafe { conn_ref(conn) }.and_then(|c| c.conn.dane()) {
            Some(DaneStatus::Matched(r)) => r.to_string(),
            _ => String::new(),
        };
        // SAFETY: forwarded caller contract.
        unsafe { str_out(&text, buf, len) }
    })
}

/// The SHA-256 pin (base64, 44 characters) of the public key of the DER certificate
/// `cert`/`cert_len`, snprintf-style: what `starttls_config_builder_add_pin_sha256` takes, e.g.
/// for the leaf of a rejected chain (`starttls_last_peer_cert`) that a user chose to trust.
/// Returns 0 (and writes an empty string) when `cert` is not a certificate.
///
/// # Safety
/// `cert` is NULL or points to `cert_len` readable bytes; `buf` is NULL or points to `len`
/// writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_cert_pin_sha256(
    cert: *const u8,
    cert_len: usize,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        // SAFETY: forwarded caller contract.
        let pin = unsafe { bytes_in(cert, cert_len, "cert") }
            .ok()
            .and_then(crate::pin_sha256)
            .unwrap_or_default();
        // SAFETY: forwarded caller contract.
        unsafe { str_out(&pin, buf, len) }
    })
}
