//! `starttls_server_config_builder`, `starttls_server_config`, `starttls_accept_fd`,
//! `starttls_accept_tls_fd`: the server side for C servers.

use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

use super::codes::*;
use super::config::{LogTarget, starttls_log_callback};
use super::conn::{adopt_fd, hand_out, protocol_in, starttls_conn};
use super::{boundary, build_handle, bytes_in, free_handle, null, str_in, with_builder_slot};
use crate::error::Error;
use crate::{ClientAuth, ServerConfig, ServerConfigBuilder, TlsVersion};

/// Collects options for a server config. Not thread-safe; consumed by
/// `starttls_server_config_builder_build`.
pub struct starttls_server_config_builder {
    inner: ServerConfigBuilder,
}

/// An immutable server configuration. Thread-safe: share one among any number of threads and
/// connections; connections keep what they need alive.
pub struct starttls_server_config {
    inner: ServerConfig,
}

/// # Safety
/// `b` is NULL or a live builder used by this thread only.
unsafe fn with_server_builder(
    b: *mut starttls_server_config_builder,
    f: impl FnOnce(ServerConfigBuilder) -> Result<ServerConfigBuilder, Error>,
) -> u32 {
    // SAFETY: NULL or live, one thread (documented).
    with_builder_slot(unsafe { b.as_mut() }.map(|b| &mut b.inner), f)
}

fn read_file(path: &str, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {what} {path}: {e}")))
}

/// A new server config builder. A certificate must be added before building. Defaults: TLS >=
/// 1.2, host name `localhost`, finite timeouts, an in-memory session cache.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_server_config_builder_new() -> *mut starttls_server_config_builder {
    super::boundary_value(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(starttls_server_config_builder {
            inner: ServerConfig::builder(),
        }))
    })
}

/// Frees a builder that was not built. NULL is fine.
///
/// # Safety
/// `b` is NULL or a live builder, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_free(
    b: *mut starttls_server_config_builder,
) {
    // SAFETY: NULL or a pointer from starttls_server_config_builder_new, freed once.
    unsafe { free_handle(b) }
}

/// The certificate chain and private key (PEM files: RSA, ECDSA or Ed25519), read now. Served
/// when no SNI-specific certificate matches.
///
/// # Safety
/// `b` is NULL or live; the paths are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_set_certificate_files(
    b: *mut starttls_server_config_builder,
    chain_path: *const c_char,
    key_path: *const c_char,
) -> u32 {
    // SAFETY: forwarded caller contract.
    let (chain, key) = unsafe {
        (
            str_in(chain_path, "chain_path"),
            str_in(key_path, "key_path"),
        )
    };
    unsafe {
        with_server_builder(b, |inner| {
            let chain = read_file(chain?, "certificate chain")?;
            let key = read_file(key?, "private key")?;
            Ok(inner.certificate_pem(chain, key))
        })
    }
}

/// The certificate chain and private key as PEM bytes (copied).
///
/// # Safety
/// `b` is NULL or live; `chain` and `key` point to their lengths in readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_add_certificate_pem(
    b: *mut starttls_server_config_builder,
    chain: *const u8,
    chain_len: usize,
    key: *const u8,
    key_len: usize,
) -> u32 {
    // SAFETY: forwarded caller contract.
    let (chain, key) = unsafe {
        (
            bytes_in(chain, chain_len, "chain"),
            bytes_in(key, key_len, "key"),
        )
    };
    unsafe {
        with_server_builder(b, |inner| {
            Ok(inner.certificate_pem(chain?.to_vec(), key?.to_vec()))
        })
    }
}

/// A certificate served when the client's SNI is `name` (PEM bytes, copied).
///
/// # Safety
/// `b` is NULL or live; `name` is NULL or NUL-terminated; `chain` and `key` point to their
/// lengths in readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_add_sni_certificate_pem(
    b: *mut starttls_server_config_builder,
    name: *const c_char,
    chain: *const u8,
    chain_len: usize,
    key: *const u8,
    key_len: usize,
) -> u32 {
    // SAFETY: forwarded caller contract.
    let name = unsafe { str_in(name, "name") };
    let (chain, key) = unsafe {
        (
            bytes_in(chain, chain_len, "chain"),
            bytes_in(key, key_len, "key"),
        )
    };
    unsafe {
        with_server_builder(b, |inner| {
            Ok(inner.sni_certificate_pem(name?, chain?.to_vec(), key?.to_vec()))
        })
    }
}

/// Verifies client certificates against the CAs in this PEM file (read when built):
/// `STARTTLS_CLIENT_AUTH_OPTIONAL` or `STARTTLS_CLIENT_AUTH_REQUIRED`.
///
/// # Safety
/// `b` is NULL or live; `ca_path` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_set_client_ca_file(
    b: *mut starttls_server_config_builder,
    ca_path: *const c_char,
    mode: u32,
) -> u32 {
    // SAFETY: forwarded caller contract.
    let path = unsafe { str_in(ca_path, "ca_path") };
    unsafe {
        with_server_builder(b, |inner| {
            let mode = match mode {
                STARTTLS_CLIENT_AUTH_OPTIONAL => ClientAuth::Optional,
                STARTTLS_CLIENT_AUTH_REQUIRED => ClientAuth::Required,
                m => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown client auth mode {m}"
                    )));
                }
            };
            let path = path?;
            Ok(inner.client_auth_pem(mode, read_file(path, "client CA file")?))
        })
    }
}

/// Adds one ALPN protocol the server accepts (1 to 255 bytes, copied).
///
/// # Safety
/// `b` is NULL or live; `protocol` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_add_alpn(
    b: *mut starttls_server_config_builder,
    protocol: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded caller contract.
    let p = unsafe { bytes_in(protocol, len, "protocol") };
    unsafe {
        with_server_builder(b, |inner| {
            let p = p?;
            if p.is_empty() || p.len() > 255 {
                return Err(Error::InvalidArgument(
                    "an ALPN protocol is 1 to 255 bytes".into(),
                ));
            }
            Ok(inner.add_alpn(p.to_vec()))
        })
    }
}

/// The lowest TLS version accepted: `STARTTLS_TLS_1_2` (default) or `STARTTLS_TLS_1_3`.
///
/// # Safety
/// `b` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_set_min_tls_version(
    b: *mut starttls_server_config_builder,
    version: u16,
) -> u32 {
    unsafe {
        with_server_builder(b, |inner| match version {
            STARTTLS_TLS_1_2 => Ok(inner.min_tls_version(TlsVersion::Tls12)),
            STARTTLS_TLS_1_3 => Ok(inner.min_tls_version(TlsVersion::Tls13)),
            v => Err(Error::InvalidArgument(format!(
                "unsupported TLS version {v:#06x}"
            ))),
        })
    }
}

/// Stateless session tickets in addition to the in-memory session cache (off by default).
///
/// # Safety
/// `b` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_set_session_tickets(
    b: *mut starttls_server_config_builder,
    yes: bool,
) -> u32 {
    unsafe { with_server_builder(b, |inner| Ok(inner.session_tickets(yes))) }
}

/// The host name announced in greetings (default `localhost`).
///
/// # Safety
/// `b` is NULL or live; `name` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_set_hostname(
    b: *mut starttls_server_config_builder,
    name: *const c_char,
) -> u32 {
    // SAFETY: forwarded caller contract.
    let name = unsafe { str_in(name, "name") };
    unsafe { with_server_builder(b, |inner| Ok(inner.hostname(name?))) }
}

/// The greeting text after the code and host name (one line).
///
/// # Safety
/// `b` is NULL or live; `text` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_set_greeting(
    b: *mut starttls_server_config_builder,
    text: *const c_char,
) -> u32 {
    // SAFETY: forwarded caller contract.
    let text = unsafe { str_in(text, "text") };
    unsafe { with_server_builder(b, |inner| Ok(inner.greeting(text?))) }
}

/// The same timeout, in milliseconds, for every phase (each client command, the handshake, each
/// read and write). Must be > 0.
///
/// # Safety
/// `b` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_set_timeout_ms(
    b: *mut starttls_server_config_builder,
    ms: u32,
) -> u32 {
    unsafe {
        with_server_builder(b, |inner| {
            if ms == 0 {
                return Err(Error::InvalidArgument("a timeout must be > 0 ms".into()));
            }
            Ok(inner.timeout(Duration::from_millis(u64::from(ms))))
        })
    }
}

/// Calls `callback(userdata, direction, encrypted, line)` for every dialog line, as on the
/// client side (same rules). NULL removes it.
///
/// # Safety
/// As `starttls_config_builder_set_log_callback`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_set_log_callback(
    b: *mut starttls_server_config_builder,
    callback: starttls_log_callback,
    userdata: *mut c_void,
) -> u32 {
    unsafe {
        with_server_builder(b, |inner| {
            Ok(match LogTarget::new(callback, userdata) {
                Some(target) => inner.on_dialog_line(move |line| target.emit(line)),
                None => inner.without_dialog_observer(),
            })
        })
    }
}

/// Builds the server config, and frees the builder whatever the result.
///
/// # Safety
/// `b` is NULL or live, not used afterwards; `config_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_builder_build(
    b: *mut starttls_server_config_builder,
    config_out: *mut *const starttls_server_config,
) -> u32 {
    // SAFETY: forwarded caller contract.
    unsafe {
        build_handle(b, config_out, |b| {
            Ok(starttls_server_config {
                inner: b.inner.build()?,
            })
        })
    }
}

/// Releases a server config. NULL is fine; connections made from it stay usable.
///
/// # Safety
/// `config` is NULL or live, not used afterwards by the caller.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_server_config_free(config: *const starttls_server_config) {
    // SAFETY: NULL or a pointer from starttls_server_config_builder_build, freed once.
    unsafe { free_handle(config) }
}

/// Plays the server's side of `protocol`'s upgrade on a socket the caller accepted (greeting,
/// capabilities with STARTTLS, "TLS first" replies to anything else, credentials refused, the
/// go-ahead, the handshake). On return the connection stands where the client speaks next.
/// A client that pipelines anything after STARTTLS gets no go-ahead: `STARTTLS_ERR_INJECTION`.
/// fd ownership as for `starttls_upgrade_fd`: borrowed unless `STARTTLS_FD_TAKE_OWNERSHIP`.
///
/// # Safety
/// `config` is NULL or live; `fd` is an open socket; `conn_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_accept_fd(
    config: *const starttls_server_config,
    protocol: u32,
    fd: c_int,
    flags: u32,
    conn_out: *mut *mut starttls_conn,
) -> u32 {
    // SAFETY: forwarded caller contract.
    unsafe {
        accept(
            config,
            Some(protocol),
            fd,
            (std::ptr::null(), 0),
            flags,
            conn_out,
        )
    }
}

/// TLS only, for a server that ran its own dialog and just sent its go-ahead. `buffered` holds
/// whatever the caller had already read from the client after its STARTTLS command: if
/// `buffered_len` is not 0 the client pipelined data, and this fails with
/// `STARTTLS_ERR_INJECTION` without reading anything. fd ownership as for `starttls_accept_fd`.
///
/// # Safety
/// `config` is NULL or live; `fd` is an open socket; `buffered` points to `buffered_len`
/// readable bytes (or is NULL with 0); `conn_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_accept_tls_fd(
    config: *const starttls_server_config,
    fd: c_int,
    buffered: *const u8,
    buffered_len: usize,
    flags: u32,
    conn_out: *mut *mut starttls_conn,
) -> u32 {
    // SAFETY: forwarded caller contract.
    unsafe { accept(config, None, fd, (buffered, buffered_len), flags, conn_out) }
}

/// # Safety
/// As for `starttls_accept_fd`.
unsafe fn accept(
    config: *const starttls_server_config,
    protocol: Option<u32>,
    fd: c_int,
    buffered: (*const u8, usize),
    flags: u32,
    conn_out: *mut *mut starttls_conn,
) -> u32 {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let ((config, protocol, buffered), tcp, take) = unsafe {
            adopt_fd(fd, flags, || {
                let config = config.as_ref().ok_or_else(|| null("config"))?;
                if conn_out.is_null() {
                    return Err(null("conn_out"));
                }
                let protocol = protocol.map(protocol_in).transpose()?;
                let buffered = bytes_in(buffered.0, buffered.1, "buffered")?;
                Ok((config, protocol, buffered))
            })
        }?;
        let conn = match protocol {
            Some(p) => crate::accept(&config.inner, p, tcp)?,
            None => crate::accept_tls(&config.inner, tcp, buffered)?,
        };
        // SAFETY: checked non-NULL above.
        unsafe { hand_out(conn, fd, take, conn_out) };
        Ok(())
    })
}
