//! `starttls_conn`: connect, upgrade a caller's fd, read, write, close, inspect.

use std::ffi::{c_char, c_int};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::codes::*;
use super::config::starttls_config;
use super::{Failure, boundary, fail, free_handle, null, str_in};
use crate::error::{Error, Phase};
use crate::{ConnectOptions, Connection, Protocol, TlsaRecord};

/// An upgraded connection. Use it from one thread at a time; free it with `starttls_conn_free`.
pub struct starttls_conn {
    pub(super) conn: Connection,
    /// The fd the caller knows this connection by.
    pub(super) fd: RawFd,
    /// Whether the library may shut the socket down (it owns it).
    owns_fd: bool,
    /// The detailed message of the last failure on this connection.
    pub(super) error: String,
    /// close_notify was queued by a non-blocking `starttls_close`.
    closing: bool,
    /// How the last successful login went.
    pub(super) auth: Option<crate::AuthOutcome>,
    /// The OS error number behind the last failure on this connection (0: none).
    pub(super) os_error: i32,
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
    // An owned fd is the one the connection really uses (never a stale number).
    let fd = if owns_fd {
        conn.tcp_stream().as_raw_fd()
    } else {
        fd
    };
    let boxed = Box::new(starttls_conn {
        conn,
        fd,
        owns_fd,
        error: String::new(),
        closing: false,
        auth: None,
        os_error: 0,
    });
    // SAFETY: checked non-NULL by every caller before any work.
    unsafe { *conn_out = Box::into_raw(boxed) };
}

/// Runs `f` on a live connection behind the panic boundary, recording a failure's message on
/// the connection as well as on the thread.
///
/// # Safety
/// `conn` is NULL or a live connection used by this thread only.
impl starttls_conn {
    /// An I/O failure as the C caller sees it: on a non-blocking socket a `WouldBlock` is
    /// `STARTTLS_WANT_WRITE` when TLS records wait to go out, `STARTTLS_WANT_READ` otherwise.
    pub(super) fn io_failure(&self, phase: Phase, e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::WouldBlock && self.conn.is_nonblocking() {
            return Failure::Want(if self.conn.wants_write() {
                STARTTLS_WANT_WRITE
            } else {
                STARTTLS_WANT_READ
            });
        }
        Error::from_io(phase, e).into()
    }
}

pub(super) unsafe fn with_conn(
    conn: *mut starttls_conn,
    f: impl FnOnce(&mut starttls_conn) -> Result<(), Failure>,
) -> u32 {
    // SAFETY: NULL or live, one thread at a time (documented).
    let Some(c) = (unsafe { conn.as_mut() }) else {
        return fail(&null("conn").into());
    };
    let mut failure = None;
    let code = boundary(|| f(c).inspect_err(|e| failure = Some((e.to_string(), e.os_error()))));
    if code != STARTTLS_OK && code != STARTTLS_WANT_READ && code != STARTTLS_WANT_WRITE {
        let (message, os_error) = failure.unwrap_or_else(|| (Failure::Panic.to_string(), 0));
        c.error = message;
        c.os_error = os_error;
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
    // SAFETY: forwarded caller contract.
    unsafe { connect(config, protocol, host, port, server_name, &[], conn_out) }
}

/// `starttls_connect`, with TLSA records (none: no DANE).
///
/// # Safety
/// As for `starttls_connect`.
pub(super) unsafe fn connect(
    config: *const starttls_config,
    protocol: u32,
    host: *const c_char,
    port: u16,
    server_name: *const c_char,
    tlsa: &[TlsaRecord],
    conn_out: *mut *mut starttls_conn,
) -> u32 {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let config = unsafe { config.as_ref() }.ok_or_else(|| null("config"))?;
        let host = unsafe { str_in(host, "host") }?;
        let mut options = ConnectOptions::new().tlsa(tlsa.iter().cloned());
        if !server_name.is_null() {
            options = options.server_name(unsafe { str_in(server_name, "server_name") }?);
        }
        if conn_out.is_null() {
            return Err(null("conn_out").into());
        }
        let protocol = protocol_in(protocol)?;
        let conn = crate::connect_with(&config.inner, protocol, host, port, &options)?;
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

/// Takes a caller's fd for an upgrade or an accept. `check` validates the other arguments; an
/// fd handed over with `STARTTLS_FD_TAKE_OWNERSHIP` is closed on every failure, unknown flag bits
/// and bad arguments included. Returns what `check` returned, the socket, and whether the
/// library owns the fd.
///
/// # Safety
/// `fd` is an open descriptor; with the ownership flag the caller gives it up.
pub(super) unsafe fn adopt_fd<T>(
    fd: c_int,
    flags: u32,
    check: impl FnOnce() -> Result<T, Error>,
) -> Result<(T, TcpStream, bool), Error> {
    let take = flags & STARTTLS_FD_TAKE_OWNERSHIP != 0;
    let checked = if flags & !STARTTLS_FD_TAKE_OWNERSHIP != 0 {
        Err(Error::InvalidArgument(format!("unknown flags {flags:#x}")))
    } else {
        check()
    };
    let args = match checked {
        Ok(args) => args,
        Err(e) => {
            if take && fd >= 0 {
                // SAFETY: the caller gave the fd up; nothing else will close it.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            return Err(e);
        }
    };
    // SAFETY: fd validity is the caller's contract; ownership per `take`.
    let tcp = unsafe { stream_from_fd(fd, take) }?;
    Ok((args, tcp, take))
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
    unsafe {
        upgrade_fd(
            config,
            Some(protocol),
            fd,
            server_name,
            flags,
            Ok(&[]),
            conn_out,
        )
    }
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
    unsafe { upgrade_fd(config, None, fd, server_name, flags, Ok(&[]), conn_out) }
}

/// The upgrade (`protocol` given) or the handshake alone on a caller's fd, with TLSA records
/// (none: no DANE; an error, for a NULL set, fails the call like any bad argument).
///
/// # Safety
/// As for `starttls_upgrade_fd`.
pub(super) unsafe fn upgrade_fd(
    config: *const starttls_config,
    protocol: Option<u32>,
    fd: c_int,
    server_name: *const c_char,
    flags: u32,
    tlsa: Result<&[TlsaRecord], Error>,
    conn_out: *mut *mut starttls_conn,
) -> u32 {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let ((config, name, protocol, tlsa), tcp, take) = unsafe {
            adopt_fd(fd, flags, || {
                let config = config.as_ref().ok_or_else(|| null("config"))?;
                let name = str_in(server_name, "server_name")?;
                if conn_out.is_null() {
                    return Err(null("conn_out"));
                }
                let protocol = protocol.map(protocol_in).transpose()?;
                Ok((config, name, protocol, tlsa?))
            })
        }?;
        let options = ConnectOptions::new()
            .server_name(name)
            .tlsa(tlsa.iter().cloned());
        let conn = match protocol {
            Some(p) => crate::upgrade_with(&config.inner, p, tcp, &options)?,
            None => crate::handshake_only_with(&config.inner, tcp, &options)?,
        };
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
            let n = retry(|| c.conn.read(slice)).map_err(|e| c.io_failure(Phase::Read, e))?;
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
            let n = if c.conn.is_nonblocking() {
                // Take what fits now (queued records go first); `len == 0` only pushes them.
                let taken = if data.is_empty() {
                    0
                } else {
                    retry(|| c.conn.write(data)).map_err(|e| c.io_failure(Phase::Write, e))?
                };
                match retry(|| c.conn.flush()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && taken > 0 => {}
                    other => other.map_err(|e| c.io_failure(Phase::Write, e))?,
                }
                taken
            } else {
                retry(|| c.conn.write_all(data).map(|()| data.len()))
                    .and_then(|n| c.conn.flush().map(|()| n))
                    .map_err(|e| Error::from_io(Phase::Write, e))?
            };
            // SAFETY: checked non-NULL.
            *out_n = n;
            Ok(())
        })
    }
}

pub(super) fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Sends close_notify; for a socket the library owns, also shuts down its write side. Does not
/// free; reading may go on until the peer closes. On a non-blocking socket it may return
/// `STARTTLS_WANT_WRITE`: poll for writing and call it again (close_notify is sent once).
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_close(conn: *mut starttls_conn) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            if c.conn.is_nonblocking() {
                if !c.closing {
                    c.conn.queue_close_notify();
                    c.closing = true;
                }
                retry(|| c.conn.flush()).map_err(|e| c.io_failure(Phase::Close, e))?;
                if c.owns_fd {
                    let _ = c.conn.tcp_stream().shutdown(std::net::Shutdown::Write);
                }
                return Ok(());
            }
            if c.owns_fd {
                c.conn.close().map_err(Failure::from)
            } else {
                c.conn.send_close_notify().map_err(Failure::from)
            }
        })
    }
}

/// Logs in inside TLS with the strongest mechanism offered there (capabilities fetched inside
/// TLS): SCRAM-SHA-256-PLUS bound to the TLS connection, SCRAM-SHA-256 (the server's signature
/// is checked), PLAIN, then the protocol's own (SMTP `AUTH LOGIN`, IMAP `LOGIN`, POP3
/// `USER`/`PASS`, NNTP `AUTHINFO USER`, LDAP simple bind, FTP `USER`/`PASS`); PostgreSQL logs in
/// to the database named like the user (`starttls_conn_authenticate_database` names another),
/// with SCRAM, md5 or the password as the server asks, up to ReadyForQuery. `authzid` may be
/// NULL. The strings are copied; the library's encoded copies are wiped after use and never
/// logged. `STARTTLS_ERR_NOT_ENCRYPTED` on a plaintext connection (nothing is sent),
/// `STARTTLS_ERR_AUTH_FAILED` with the server's reply in `starttls_conn_error` when the login
/// is rejected, `STARTTLS_ERR_NOT_OFFERED` when no usable mechanism is offered inside TLS.
/// `starttls_conn_auth_mechanism` then names the mechanism used.
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
    unsafe { authenticate(conn, user, password, authzid, std::ptr::null()) }
}

/// As `starttls_conn_authenticate`, for a protocol with databases (PostgreSQL): logs in to
/// `database` (NULL: the user name). `STARTTLS_ERR_REFUSED` when the credentials were accepted
/// but the session was not (no such database, too many clients).
///
/// # Safety
/// `conn` is NULL or live; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_authenticate_database(
    conn: *mut starttls_conn,
    user: *const c_char,
    password: *const c_char,
    database: *const c_char,
) -> u32 {
    unsafe { authenticate(conn, user, password, std::ptr::null(), database) }
}

/// Logs in inside TLS with an OAuth 2.0 bearer token the caller obtained (the library fetches
/// none): SASL OAUTHBEARER (RFC 7628) where offered, else XOAUTH2; `mechanism` (NULL for that
/// choice) names one of them to use only that. The token is never sent any other way (no PLAIN,
/// no protocol login). A rejection is `STARTTLS_ERR_AUTH_FAILED`, and `starttls_conn_error`
/// carries the server's JSON error decoded (`status=invalid_token scope=...`), never the token.
///
/// # Safety
/// `conn` is NULL or live; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_authenticate_token(
    conn: *mut starttls_conn,
    user: *const c_char,
    token: *const c_char,
    mechanism: *const c_char,
) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            let mut creds =
                crate::Credentials::bearer_token(str_in(user, "user")?, str_in(token, "token")?);
            if !mechanism.is_null() {
                creds = creds.only_mechanism(str_in(mechanism, "mechanism")?);
            }
            login(c, &creds)
        })
    }
}

/// Logs in inside TLS with SASL EXTERNAL: the client certificate the config presented in the
/// handshake (`starttls_config_builder_set_client_cert_files`) is the identity; `authzid` (NULL:
/// none) the identity to act as. SMTP, IMAP, POP3, NNTP, ManageSieve, XMPP, and LDAP (a SASL
/// bind). `STARTTLS_ERR_INVALID_ARGUMENT` when the config presents no client certificate.
///
/// # Safety
/// `conn` is NULL or live; `authzid` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_authenticate_external(
    conn: *mut starttls_conn,
    authzid: *const c_char,
) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            let mut creds = crate::Credentials::client_certificate();
            if !authzid.is_null() {
                creds = creds.with_authzid(str_in(authzid, "authzid")?);
            }
            login(c, &creds)
        })
    }
}

fn login(c: &mut starttls_conn, creds: &crate::Credentials) -> Result<(), Failure> {
    c.auth = None;
    let outcome = c.conn.authenticate(creds).map_err(Failure::from)?;
    c.auth = Some(outcome);
    Ok(())
}

/// # Safety
/// As the two functions above.
unsafe fn authenticate(
    conn: *mut starttls_conn,
    user: *const c_char,
    password: *const c_char,
    authzid: *const c_char,
    database: *const c_char,
) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            let user = str_in(user, "user")?;
            let password = str_in(password, "password")?;
            let mut creds = crate::Credentials::new(user, password);
            if !authzid.is_null() {
                creds = creds.with_authzid(str_in(authzid, "authzid")?);
            }
            if !database.is_null() {
                creds = creds.with_database(str_in(database, "database")?);
            }
            login(c, &creds)
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
    // SAFETY: NULL or a pointer from this library, freed once.
    unsafe { free_handle(conn) }
}
