//! `starttls_conn`: connect, upgrade a caller's fd, read, write, close, inspect.

use std::ffi::{c_char, c_int};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::codes::*;
use super::config::starttls_config;
use super::{Failure, boundary, boundary_value, bytes_out, fail, null, str_in, str_out};
use crate::error::{Error, Phase};
use crate::{Connection, Protocol, Verification};

/// An upgraded connection. Use it from one thread at a time; free it with `starttls_conn_free`.
pub struct starttls_conn {
    conn: Connection,
    /// The fd the caller knows this connection by.
    fd: RawFd,
    /// Whether the library may shut the socket down (it owns it).
    owns_fd: bool,
    /// The detailed message of the last failure on this connection.
    error: String,
}

pub(super) fn protocol_in(code: u32) -> Result<Protocol, Error> {
    Protocol::from_code(code)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown or unsupported protocol {code}")))
}

/// Stores a new connection in `*conn_out`.
///
/// # Safety
/// `conn_out` is non-NULL and writable.
pub(super) unsafe fn hand_out(
    conn: Connection,
    fd: RawFd,
    owns_fd: bool,
    conn_out: *mut *mut starttls_conn,
) {
    let boxed = Box::new(starttls_conn {
        conn,
        fd,
        owns_fd,
        error: String::new(),
    });
    // SAFETY: checked non-NULL by every caller before any work.
    unsafe { *conn_out = Box::into_raw(boxed) };
}

/// Runs `f` on a live connection behind the panic boundary, recording a failure's message on
/// the connection as well as on the thread.
///
/// # Safety
/// `conn` is NULL or a live connection used by this thread only.
unsafe fn with_conn(
    conn: *mut starttls_conn,
    f: impl FnOnce(&mut starttls_conn) -> Result<(), Failure>,
) -> u32 {
    // SAFETY: NULL or live, one thread at a time (documented).
    let Some(c) = (unsafe { conn.as_mut() }) else {
        return fail(&null("conn").into());
    };
    let mut message = None;
    let code = boundary(|| f(c).inspect_err(|e| message = Some(e.to_string())));
    if code != STARTTLS_OK {
        c.error = message.unwrap_or_else(|| Failure::Panic.to_string());
    }
    code
}

/// Connects to `host:port` (a name, an IPv4 address, or an IPv6 address with or without
/// brackets; every resolved address in turn), runs `protocol`'s upgrade (`STARTTLS_PROTO_*`) and
/// the TLS handshake, and verifies the certificate for `server_name`, or for `host` when
/// `server_name` is NULL. On return the stream stands where the protocol says the client speaks
/// first after TLS (for SMTP: send EHLO). On failure `starttls_last_error` has the details,
/// including the server's reply line.
///
/// # Safety
/// `config` is NULL or a live config; `host` and `server_name` are NULL or NUL-terminated;
/// `conn_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_connect(
    config: *const starttls_config,
    protocol: u32,
    host: *const c_char,
    port: u16,
    server_name: *const c_char,
    conn_out: *mut *mut starttls_conn,
) -> u32 {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let config = unsafe { config.as_ref() }.ok_or_else(|| null("config"))?;
        let host = unsafe { str_in(host, "host") }?;
        let name = if server_name.is_null() {
            None
        } else {
            Some(unsafe { str_in(server_name, "server_name") }?)
        };
        if conn_out.is_null() {
            return Err(null("conn_out").into());
        }
        let protocol = protocol_in(protocol)?;
        let conn = match name {
            Some(n) => crate::connect_named(&config.inner, protocol, host, port, n)?,
            None => crate::connect(&config.inner, protocol, host, port)?,
        };
        let fd = conn.tcp_stream().as_raw_fd();
        // SAFETY: checked non-NULL above.
        unsafe { hand_out(conn, fd, true, conn_out) };
        Ok(())
    })
}

/// The socket behind `fd` as a `TcpStream`: a duplicate when borrowed (so the caller's fd is
/// never closed), the fd itself when owned.
///
/// # Safety
/// `fd` is an open descriptor; when `take` is true the caller gives it up.
pub(super) unsafe fn stream_from_fd(fd: RawFd, take: bool) -> Result<TcpStream, Error> {
    if fd < 0 {
        return Err(Error::InvalidArgument(format!("invalid fd {fd}")));
    }
    let owned: OwnedFd = if take {
        // SAFETY: the caller hands the open fd over (STARTTLS_FD_TAKE_OWNERSHIP).
        unsafe { OwnedFd::from_raw_fd(fd) }
    } else {
        // SAFETY: the caller's fd is open for the duration of this call.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        borrowed
            .try_clone_to_owned()
            .map_err(|e| Error::InvalidArgument(format!("cannot use fd {fd}: {e}")))?
    };
    let tcp = TcpStream::from(owned);
    tcp.peer_addr().map_err(|e| {
        Error::InvalidArgument(format!("fd {fd} is not a connected TCP socket: {e}"))
    })?;
    Ok(tcp)
}

pub(super) fn take_flag(flags: u32) -> Result<bool, Error> {
    if flags & !STARTTLS_FD_TAKE_OWNERSHIP != 0 {
        return Err(Error::InvalidArgument(format!("unknown flags {flags:#x}")));
    }
    Ok(flags & STARTTLS_FD_TAKE_OWNERSHIP != 0)
}

/// Runs `protocol`'s upgrade and the handshake on a socket the caller connected, verifying the
/// certificate for `server_name` (required). Nothing may have been read from the socket yet.
///
/// fd ownership: borrowed by default; the library never closes it, and works on a duplicate
/// (it does set the socket to blocking mode, TCP_NODELAY, and its timeouts). With
/// `STARTTLS_FD_TAKE_OWNERSHIP` in `flags` the library owns the fd: it is closed when the
/// connection is freed, or before this function returns if it fails. A borrowed fd must stay open
/// until the connection is freed, and the caller must not read or write it meanwhile.
///
/// # Safety
/// `config` is NULL or live; `fd` is an open socket; `server_name` is NULL or NUL-terminated;
/// `conn_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_upgrade_fd(
    config: *const starttls_config,
    protocol: u32,
    fd: c_int,
    server_name: *const c_char,
    flags: u32,
    conn_out: *mut *mut starttls_conn,
) -> u32 {
    // SAFETY: forwarded caller contract.
    unsafe { upgrade_fd(config, Some(protocol), fd, server_name, flags, conn_out) }
}

/// TLS only, for a caller that ran the dialog itself and has read the go-ahead (and nothing
/// after it). fd ownership and the rest as for `starttls_upgrade_fd`.
///
/// # Safety
/// As for `starttls_upgrade_fd`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_handshake_fd(
    config: *const starttls_config,
    fd: c_int,
    server_name: *const c_char,
    flags: u32,
    conn_out: *mut *mut starttls_conn,
) -> u32 {
    // SAFETY: forwarded caller contract.
    unsafe { upgrade_fd(config, None, fd, server_name, flags, conn_out) }
}

/// # Safety
/// As for `starttls_upgrade_fd`.
unsafe fn upgrade_fd(
    config: *const starttls_config,
    protocol: Option<u32>,
    fd: c_int,
    server_name: *const c_char,
    flags: u32,
    conn_out: *mut *mut starttls_conn,
) -> u32 {
    boundary(|| {
        let take = take_flag(flags)?;
        // An owned fd is closed on every failure, including bad arguments.
        let close_if_owned = || {
            if take && fd >= 0 {
                // SAFETY: the caller gave the fd up; nothing else will close it.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        };
        let checked = (|| {
            // SAFETY: forwarded caller contract.
            let config = unsafe { config.as_ref() }.ok_or_else(|| null("config"))?;
            let name = unsafe { str_in(server_name, "server_name") }?;
            if conn_out.is_null() {
                return Err(null("conn_out"));
            }
            let protocol = protocol
                .map(protocol_in)
                .transpose()?
                .unwrap_or(Protocol::Tls);
            Ok((config, name, protocol))
        })();
        let (config, name, protocol) = checked.inspect_err(|_| close_if_owned())?;
        // SAFETY: fd validity is the caller's contract; ownership per `take`.
        let tcp = unsafe { stream_from_fd(fd, take) }?;
        let conn = crate::upgrade(&config.inner, protocol, tcp, name)?;
        // SAFETY: checked non-NULL above.
        unsafe { hand_out(conn, fd, take, conn_out) };
        Ok(())
    })
}

/// Reads up to `len` decrypted bytes into `buf`, blocking (within the I/O timeout). On
/// `STARTTLS_OK`, `*out_n` is the count; `*out_n == 0` means the peer closed cleanly
/// (close_notify). A close without close_notify is `STARTTLS_ERR_CLOSED`.
///
/// # Safety
/// `conn` is NULL or live; `buf` points to `len` writable bytes; `out_n` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_read(
    conn: *mut starttls_conn,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            if out_n.is_null() || (buf.is_null() && len > 0) {
                return Err(null(if out_n.is_null() { "out_n" } else { "buf" }).into());
            }
            let slice: &mut [u8] = if len == 0 {
                &mut []
            } else {
                // SAFETY: `len` writable bytes by the caller's contract.
                std::slice::from_raw_parts_mut(buf, len)
            };
            let n = retry(|| c.conn.read(slice)).map_err(|e| Error::from_io(Phase::Read, e))?;
            // SAFETY: checked non-NULL.
            *out_n = n;
            Ok(())
        })
    }
}

/// Writes up to `len` bytes from `buf`, blocking (within the I/O timeout); `*out_n` is how many
/// were taken (all of them unless the call fails). The data is flushed to the socket.
///
/// # Safety
/// `conn` is NULL or live; `buf` points to `len` readable bytes; `out_n` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_write(
    conn: *mut starttls_conn,
    buf: *const u8,
    len: usize,
    out_n: *mut usize,
) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            if out_n.is_null() {
                return Err(null("out_n").into());
            }
            let data = super::bytes_in(buf, len, "buf")?;
            retry(|| c.conn.write_all(data).map(|()| data.len()))
                .and_then(|n| c.conn.flush().map(|()| n))
                .map_err(|e| Error::from_io(Phase::Write, e))?;
            // SAFETY: checked non-NULL.
            *out_n = data.len();
            Ok(())
        })
    }
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Sends close_notify; for a socket the library owns, also shuts down its write side. Does not
/// free; reading may go on until the peer closes.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_close(conn: *mut starttls_conn) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            if c.owns_fd {
                c.conn.close().map_err(Failure::from)
            } else {
                c.conn.send_close_notify().map_err(Failure::from)
            }
        })
    }
}

/// Logs in inside TLS with the protocol's own mechanism (SMTP `AUTH PLAIN`/`LOGIN`, IMAP
/// `AUTHENTICATE PLAIN`/`LOGIN`, POP3 `AUTH PLAIN`/`USER`+`PASS`, ManageSieve, NNTP `AUTHINFO`,
/// XMPP SASL PLAIN, LDAP simple bind, FTP `USER`/`PASS`), chosen from the capabilities fetched
/// inside TLS. `authzid` may be NULL. The strings are copied; the library's encoded copies are
/// wiped after use and never logged. `STARTTLS_ERR_NOT_ENCRYPTED` on a plaintext connection
/// (nothing is sent), `STARTTLS_ERR_AUTH_FAILED` with the server's reply in
/// `starttls_conn_error` when the login is rejected, `STARTTLS_ERR_NOT_OFFERED` when no usable
/// mechanism is offered inside TLS.
///
/// # Safety
/// `conn` is NULL or live; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_authenticate(
    conn: *mut starttls_conn,
    user: *const c_char,
    password: *const c_char,
    authzid: *const c_char,
) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            let user = str_in(user, "user")?;
            let password = str_in(password, "password")?;
            let mut creds = crate::Credentials::new(user, password);
            if !authzid.is_null() {
                creds = creds.with_authzid(str_in(authzid, "authzid")?);
            }
            c.conn
                .authenticate(&creds)
                .map(|_| ())
                .map_err(Failure::from)
        })
    }
}

/// Ends the session politely: the protocol's goodbye inside TLS (QUIT, LOGOUT, LDAP Unbind,
/// ...), its reply read when there is one, then close_notify (and, for a socket the library owns,
/// shutting its write side). Client side; on other connections the same as `starttls_close`.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_quit(conn: *mut starttls_conn) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            if c.owns_fd {
                c.conn.quit().map_err(Failure::from)
            } else {
                c.conn.quit_keep_socket().map_err(Failure::from)
            }
        })
    }
}

/// Frees a connection (without sending close_notify: call `starttls_close` first for a polite
/// end). Closes the socket only if the library owns it. NULL is fine.
///
/// # Safety
/// `conn` is NULL or live, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_free(conn: *mut starttls_conn) {
    if !conn.is_null() {
        // SAFETY: a pointer from this library, freed once.
        drop(unsafe { Box::from_raw(conn) });
    }
}

/// # Safety
/// `conn` is NULL or live.
unsafe fn conn_ref<'a>(conn: *const starttls_conn) -> Option<&'a starttls_conn> {
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
