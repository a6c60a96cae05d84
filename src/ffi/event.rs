//! What event-loop programs need after the upgrade: bytes buffered inside the library (which
//! `poll()` cannot see), records waiting to go out, a bounded line reader, a per-connection I/O
//! timeout, and the cipher's strength.
//!
//! Non-blocking mode: after the (blocking, time-limited) upgrade, a caller may set `O_NONBLOCK`
//! on `starttls_conn_fd(conn)`. `starttls_read`, `starttls_write`, `starttls_close` and
//! `starttls_conn_read_line` then never block: they return `STARTTLS_WANT_READ` or
//! `STARTTLS_WANT_WRITE` (poll for that, call again; a read may need a write and the other way
//! round), and nothing is lost or repeated.

use std::ffi::c_int;
use std::io;
use std::time::Duration;

use super::conn::{retry, starttls_conn, with_conn};
use super::inspect::conn_ref;
use super::{Failure, boundary_value, null};
use crate::error::Phase;

/// Decrypted bytes that `starttls_read` can return now without touching the socket: drain them
/// before waiting in `poll()`, which does not see them. 0 for NULL.
///
/// # Safety
/// `conn` is NULL or live, used by this thread only.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_pending(conn: *const starttls_conn) -> usize {
    // SAFETY: live and used by one thread (documented): counting may process TLS records that
    // already arrived, which changes the connection's inner state, never what it returns.
    boundary_value(0, || match unsafe { conn.cast_mut().as_mut() } {
        Some(c) => c.conn.pending(),
        None => 0,
    })
}

/// True when TLS records are queued that a non-blocking socket has not taken yet: poll for
/// writing and call `starttls_write(conn, NULL, 0, &n)` to push them (before waiting for the
/// peer's answer). False for NULL.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_wants_write(conn: *const starttls_conn) -> bool {
    // SAFETY: forwarded caller contract.
    boundary_value(false, || {
        unsafe { conn_ref(conn) }.is_some_and(|c| c.conn.wants_write())
    })
}

/// Reads one line, up to and including its LF, into `buf` (not NUL-terminated; `*out_n` is its
/// length, 0 at the end of the stream), never reading past it: the next read starts after it.
/// A line longer than `len` fails with `STARTTLS_ERR_BUFFER_TOO_SMALL` and nothing is consumed.
/// Non-blocking: `STARTTLS_WANT_READ` with nothing consumed.
///
/// # Safety
/// `conn` is NULL or live; `buf` points to `len` writable bytes; `out_n` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_read_line(
    conn: *mut starttls_conn,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            if out_n.is_null() || buf.is_null() || len == 0 {
                return Err(null(if out_n.is_null() { "out_n" } else { "buf" }).into());
            }
            let mut line = Vec::new();
            match retry(|| c.conn.read_line_bounded(&mut line, len)) {
                Ok(n) => {
                    // SAFETY: `len >= n` writable bytes by the caller's contract.
                    std::ptr::copy_nonoverlapping(line.as_ptr(), buf, n);
                    *out_n = n;
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    Err(Failure::BufferTooSmall { needed: len + 1 })
                }
                Err(e) => Err(c.io_failure(Phase::Read, e)),
            }
        })
    }
}

/// Sets this connection's read and write timeout in milliseconds (0: none), instead of the
/// config's I/O timeout: an IMAP IDLE may wait 29 minutes on a config whose I/O timeout is 5.
/// The next dialog step inside TLS (capabilities, login, goodbye) restores it afterwards too.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_set_io_timeout_ms(
    conn: *mut starttls_conn,
    timeout_ms: u64,
) -> u32 {
    unsafe {
        with_conn(conn, |c| {
            c.conn
                .set_io_timeout(Duration::from_millis(timeout_ms))
                .map_err(Failure::from)
        })
    }
}

/// The strength of the negotiated cipher in bits (the symmetric key: 128 for AES-128-GCM, 256
/// for AES-256-GCM and ChaCha20-Poly1305), as Cyrus SASL's `ssf` wants it; 0 without TLS or
/// for NULL.
///
/// # Safety
/// `conn` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_conn_cipher_bits(conn: *const starttls_conn) -> c_int {
    // SAFETY: forwarded caller contract.
    boundary_value(0, || {
        let name = unsafe { conn_ref(conn) }
            .and_then(|c| c.conn.cipher_suite_name())
            .unwrap_or_default();
        cipher_bits(&name)
    })
}

fn cipher_bits(iana_name: &str) -> c_int {
    if iana_name.contains("AES_128") {
        128
    } else if iana_name.contains("AES_256") || iana_name.contains("CHACHA20") {
        256
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::super::codes::*;
    use super::*;

    #[test]
    fn cipher_strength_in_bits() {
        assert_eq!(cipher_bits("TLS_AES_128_GCM_SHA256"), 128);
        assert_eq!(cipher_bits("TLS_AES_256_GCM_SHA384"), 256);
        assert_eq!(cipher_bits("TLS_CHACHA20_POLY1305_SHA256"), 256);
        assert_eq!(cipher_bits("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"), 128);
        assert_eq!(cipher_bits(""), 0);
    }

    #[test]
    fn null_connections_are_harmless() {
        // SAFETY: NULL is allowed everywhere.
        unsafe {
            assert_eq!(starttls_conn_pending(std::ptr::null()), 0);
            assert!(!starttls_conn_wants_write(std::ptr::null()));
            assert_eq!(starttls_conn_cipher_bits(std::ptr::null()), 0);
            let mut n = 0usize;
            let mut buf = [0u8; 8];
            assert_eq!(
                starttls_conn_read_line(std::ptr::null_mut(), buf.as_mut_ptr(), 8, &mut n),
                STARTTLS_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                starttls_conn_set_io_timeout_ms(std::ptr::null_mut(), 5),
                STARTTLS_ERR_INVALID_ARGUMENT
            );
        }
    }
}
