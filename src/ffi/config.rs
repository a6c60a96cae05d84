//! `starttls_config_builder` and `starttls_config`.

use std::ffi::{CString, c_char, c_void};
use std::time::Duration;

use super::codes::*;
use super::{build_handle, bytes_in, free_handle, str_in, with_builder_slot};
use crate::config::check_ca_pem;
use crate::error::Error;
use crate::{ClientConfig, ClientConfigBuilder, Direction, Policy, TlsVersion};

/// Collects options for a config. Made by `starttls_config_builder_new`, consumed by
/// `starttls_config_builder_build`, or released by `starttls_config_builder_free`. Not thread-safe.
pub struct starttls_config_builder {
    inner: ClientConfigBuilder,
}

/// An immutable client configuration. Thread-safe: share one among any number of threads and
/// connections; connections keep what they need alive, so it may be freed at any time.
pub struct starttls_config {
    pub(crate) inner: ClientConfig,
}

/// Receives each dialog line: `direction` is `STARTTLS_DIRECTION_*`, `encrypted` says whether the
/// line travelled inside TLS, `line` is NUL-terminated and valid only during the call. Called on
/// the thread running the connection; with a shared config that may be several threads at once.
pub type starttls_log_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        direction: u32,
        encrypted: bool,
        line: *const c_char,
    ),
>;

pub(crate) fn policy_from_code(code: u32) -> Option<Policy> {
    match code {
        STARTTLS_POLICY_REQUIRE => Some(Policy::Require),
        STARTTLS_POLICY_OPPORTUNISTIC => Some(Policy::Opportunistic),
        _ => None,
    }
}

/// Runs `f` on the builder's inner value (setters consume and return it).
///
/// # Safety
/// `b` is NULL or a live builder used by this thread only.
unsafe fn with_builder(
    b: *mut starttls_config_builder,
    f: impl FnOnce(ClientConfigBuilder) -> Result<ClientConfigBuilder, Error>,
) -> u32 {
    // SAFETY: NULL or a live builder, used by one thread (documented).
    with_builder_slot(unsafe { b.as_mut() }.map(|b| &mut b.inner), f)
}

/// A new builder with the safe defaults: built-in webpki roots, `STARTTLS_POLICY_REQUIRE`,
/// TLS >= 1.2, finite timeouts. Free it with `starttls_config_builder_free` unless it is passed
/// to `starttls_config_builder_build`. Returns NULL only if allocation panicked.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_config_builder_new() -> *mut starttls_config_builder {
    super::boundary_value(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(starttls_config_builder {
            inner: ClientConfig::builder(),
        }))
    })
}

/// Frees a builder that was not built. NULL is fine.
///
/// # Safety
/// `b` is NULL or a live builder, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_free(b: *mut starttls_config_builder) {
    // SAFETY: NULL or a pointer from starttls_config_builder_new, freed once.
    unsafe { free_handle(b) }
}

/// Trusts only the CA certificates in this PEM file instead of the built-in roots (call it again,
/// or `starttls_config_builder_add_ca_pem`, to trust more). The file is read now: an unreadable
/// file or one without certificates fails with `STARTTLS_ERR_CONFIG`.
///
/// # Safety
/// `b` is NULL or a live builder; `pem_path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_ca_file(
    b: *mut starttls_config_builder,
    pem_path: *const c_char,
) -> u32 {
    // SAFETY: forwarded caller contract.
    let path = unsafe { str_in(pem_path, "pem_path") };
    unsafe {
        with_builder(b, |inner| {
            let path = path?;
            let pem = std::fs::read(path)
                .map_err(|e| Error::Config(format!("cannot read CA file {path}: {e}")))?;
            check_ca_pem(&pem, path)?;
            Ok(inner.trust_ca_pem(pem))
        })
    }
}

/// Trusts the CA certificates in these PEM bytes (copied), in addition to other trusted CAs
/// chosen with the `_ca_` functions, instead of the built-in roots.
///
/// # Safety
/// `b` is NULL or a live builder; `pem` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_add_ca_pem(
    b: *mut starttls_config_builder,
    pem: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded caller contract.
    let pem = unsafe { bytes_in(pem, len, "pem") };
    unsafe {
        with_builder(b, |inner| {
            let pem = pem?;
            check_ca_pem(pem, "CA PEM")?;
            Ok(inner.trust_ca_pem(pem.to_vec()))
        })
    }
}

/// Trusts the operating system's certificate store (read when the config is built).
///
/// # Safety
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_add_system_roots(
    b: *mut starttls_config_builder,
) -> u32 {
    unsafe { with_builder(b, |inner| Ok(inner.trust_system_roots())) }
}

/// Trusts the built-in webpki roots: the default, needed only alongside other `_ca_` choices.
///
/// # Safety
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_add_webpki_roots(
    b: *mut starttls_config_builder,
) -> u32 {
    unsafe { with_builder(b, |inner| Ok(inner.trust_webpki_roots())) }
}

/// Presents this client certificate chain and private key (PEM files, read when the config is
/// built) when the server asks.
///
/// # Safety
/// `b` is NULL or a live builder; the paths are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_client_cert_files(
    b: *mut starttls_config_builder,
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
    unsafe { with_builder(b, |inner| Ok(inner.client_auth_files(chain?, key?))) }
}

/// Presents this client certificate chain and private key (PEM bytes, copied).
///
/// # Safety
/// `b` is NULL or a live builder; `chain` and `key` point to their lengths in readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_client_cert_pem(
    b: *mut starttls_config_builder,
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
        with_builder(b, |inner| {
            Ok(inner.client_auth_pem(chain?.to_vec(), key?.to_vec()))
        })
    }
}

/// The name sent in SMTP `EHLO` / LMTP `LHLO` (default: the local address literal).
///
/// # Safety
/// `b` is NULL or a live builder; `name` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_client_name(
    b: *mut starttls_config_builder,
    name: *const c_char,
) -> u32 {
    // SAFETY: forwarded caller contract.
    let name = unsafe { str_in(name, "name") };
    unsafe { with_builder(b, |inner| Ok(inner.client_name(name?))) }
}

/// Adds one ALPN protocol (1 to 255 bytes, copied), after those added before.
///
/// # Safety
/// `b` is NULL or a live builder; `protocol` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_add_alpn(
    b: *mut starttls_config_builder,
    protocol: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded caller contract.
    let p = unsafe { bytes_in(protocol, len, "protocol") };
    unsafe {
        with_builder(b, |inner| {
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
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_min_tls_version(
    b: *mut starttls_config_builder,
    version: u16,
) -> u32 {
    unsafe {
        with_builder(b, |inner| match version {
            STARTTLS_TLS_1_2 => Ok(inner.min_tls_version(TlsVersion::Tls12)),
            STARTTLS_TLS_1_3 => Ok(inner.min_tls_version(TlsVersion::Tls13)),
            v => Err(Error::InvalidArgument(format!(
                "unsupported TLS version {v:#06x}"
            ))),
        })
    }
}

/// The highest TLS version offered: `STARTTLS_TLS_1_3` (default) or `STARTTLS_TLS_1_2`, to test
/// a server's TLS 1.2. Below the lowest version, `starttls_config_builder_build` fails.
///
/// # Safety
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_max_tls_version(
    b: *mut starttls_config_builder,
    version: u16,
) -> u32 {
    unsafe {
        with_builder(b, |inner| match version {
            STARTTLS_TLS_1_2 => Ok(inner.max_tls_version(TlsVersion::Tls12)),
            STARTTLS_TLS_1_3 => Ok(inner.max_tls_version(TlsVersion::Tls13)),
            v => Err(Error::InvalidArgument(format!(
                "unsupported TLS version {v:#06x}"
            ))),
        })
    }
}

/// `STARTTLS_POLICY_REQUIRE` (the default) or `STARTTLS_POLICY_OPPORTUNISTIC`.
///
/// # Safety
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_policy(
    b: *mut starttls_config_builder,
    policy: u32,
) -> u32 {
    unsafe {
        with_builder(b, |inner| match policy_from_code(policy) {
            Some(p) => Ok(inner.policy(p)),
            None => Err(Error::InvalidArgument(format!("unknown policy {policy}"))),
        })
    }
}

/// The per-step timeout, in milliseconds, for every phase (connect, each reply, handshake, each
/// read and write). Must be > 0.
///
/// # Safety
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_timeout_ms(
    b: *mut starttls_config_builder,
    ms: u32,
) -> u32 {
    unsafe {
        with_builder(b, |inner| {
            if ms == 0 {
                return Err(Error::InvalidArgument("a timeout must be > 0 ms".into()));
            }
            Ok(inner.timeout(Duration::from_millis(u64::from(ms))))
        })
    }
}

/// The timeout of one phase (`STARTTLS_TIMEOUT_CONNECT`, `_REPLY`, `_HANDSHAKE`, `_IO`), in
/// milliseconds. Must be > 0: every step has a finite timeout.
///
/// # Safety
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_phase_timeout_ms(
    b: *mut starttls_config_builder,
    phase: u32,
    ms: u32,
) -> u32 {
    unsafe {
        with_builder(b, |inner| {
            let d = Duration::from_millis(u64::from(ms));
            if ms == 0 {
                return Err(Error::InvalidArgument("a timeout must be > 0 ms".into()));
            }
            let mut t = inner.current_timeouts();
            match phase {
                STARTTLS_TIMEOUT_CONNECT => t.connect = d,
                STARTTLS_TIMEOUT_REPLY => t.reply = d,
                STARTTLS_TIMEOUT_HANDSHAKE => t.handshake = d,
                STARTTLS_TIMEOUT_IO => t.io = d,
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown timeout phase {other}"
                    )));
                }
            }
            Ok(inner.timeouts(t))
        })
    }
}

/// Non-zero: after TLS, ask for the capabilities again (EHLO, CAPABILITY, CAPA) and keep them
/// (`starttls_conn_capabilities`). Costs a round trip; off by default.
///
/// # Safety
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_fetch_capabilities(
    b: *mut starttls_config_builder,
    yes: bool,
) -> u32 {
    unsafe { with_builder(b, |inner| Ok(inner.fetch_capabilities_after_tls(yes))) }
}

/// Also requires the server's public key to match `pin`: the base64 SHA-256 of its
/// SubjectPublicKeyInfo, bare or as curl writes it (`sha256//...`), as `starttls_cert_pin_sha256`
/// computes it. Call it once per key to accept (the next key too, before a rollover). A malformed
/// pin is `STARTTLS_ERR_INVALID_ARGUMENT` here. A certificate that matches no pin fails with
/// `STARTTLS_ERR_CERTIFICATE`; its chain is then at `starttls_last_peer_cert`, so an application
/// can show it, let the user trust it, and retry with its pin (trust on first use).
///
/// # Safety
/// `b` is NULL or a live builder; `pin` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_add_pin_sha256(
    b: *mut starttls_config_builder,
    pin: *const c_char,
) -> u32 {
    unsafe {
        with_builder(b, |inner| {
            let pin = str_in(pin, "pin")?;
            crate::verify::parse_pin(pin).map_err(|e| Error::InvalidArgument(e.to_string()))?;
            Ok(inner.pin_sha256(pin))
        })
    }
}

/// Non-zero, with pins added: the pins alone decide and the roots are not consulted (names and
/// validity unchecked either), as msmtp's `tls_fingerprint` does for self-signed servers.
/// `starttls_config_builder_build` fails when no pin was added.
///
/// # Safety
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_pin_only(
    b: *mut starttls_config_builder,
    yes: bool,
) -> u32 {
    unsafe { with_builder(b, |inner| Ok(inner.pin_only(yes))) }
}

/// Non-zero: write every connection's TLS secrets to the file named by the `SSLKEYLOGFILE`
/// environment variable, when it is set (NSS key log format: Wireshark decrypts a capture with
/// it). Off by default; whoever reads that file reads the traffic.
///
/// # Safety
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_key_log_from_env(
    b: *mut starttls_config_builder,
    yes: bool,
) -> u32 {
    unsafe { with_builder(b, |inner| Ok(inner.key_log_from_env(yes))) }
}

/// DANGEROUS: accept any certificate (signatures in the handshake are still checked). For tests
/// and diagnosis only; `starttls_conn_verification` then says `STARTTLS_VERIFY_SKIPPED`, and
/// `starttls_conn_verification_problem` what verification would have rejected.
///
/// # Safety
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_dangerous_accept_any_certificate(
    b: *mut starttls_config_builder,
    yes: bool,
) -> u32 {
    unsafe { with_builder(b, |inner| Ok(inner.dangerous_accept_any_certificate(yes))) }
}

/// DANGEROUS: let `starttls_conn_authenticate` send credentials over a connection whose
/// certificate was not verified (`starttls_config_builder_dangerous_accept_any_certificate`).
/// Without it such a login fails with `STARTTLS_ERR_INVALID_ARGUMENT` before anything is sent:
/// whoever presented the certificate would get the password.
///
/// # Safety
/// `b` is NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_dangerous_allow_login_without_verification(
    b: *mut starttls_config_builder,
    yes: bool,
) -> u32 {
    unsafe {
        with_builder(b, |inner| {
            Ok(inner.dangerous_allow_login_without_verification(yes))
        })
    }
}

pub(super) struct LogTarget {
    pub(super) callback: unsafe extern "C" fn(*mut c_void, u32, bool, *const c_char),
    pub(super) userdata: *mut c_void,
}

// SAFETY: the caller promises (documented on the setter) that the callback and its userdata may
// be used from any thread that runs a connection made with the config.
unsafe impl Send for LogTarget {}
unsafe impl Sync for LogTarget {}

impl LogTarget {
    /// The target for a callback from C; `None` when the callback is NULL (no logging).
    pub(super) fn new(callback: starttls_log_callback, userdata: *mut c_void) -> Option<LogTarget> {
        callback.map(|callback| LogTarget { callback, userdata })
    }

    pub(super) fn emit(&self, line: &crate::DialogLine) {
        let direction = match line.direction {
            Direction::Sent => STARTTLS_DIRECTION_SENT,
            Direction::Received => STARTTLS_DIRECTION_RECEIVED,
        };
        // Dialog lines are printable (controls escaped), so no interior NUL.
        let text = CString::new(line.text.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: the caller's function and data, under the documented contract.
        unsafe { (self.callback)(self.userdata, direction, line.encrypted, text.as_ptr()) };
    }
}

/// Calls `callback(userdata, direction, encrypted, line)` for every dialog line (see
/// `starttls_log_callback`). NULL `callback` removes it. The callback must not call back into
/// the library with the same connection, and must be safe to call from every thread that uses
/// the config.
///
/// # Safety
/// `b` is NULL or a live builder; `callback` is NULL or a valid function; `userdata` stays valid
/// as long as any config or connection made from this builder lives.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_set_log_callback(
    b: *mut starttls_config_builder,
    callback: starttls_log_callback,
    userdata: *mut c_void,
) -> u32 {
    unsafe {
        with_builder(b, |inner| {
            Ok(match LogTarget::new(callback, userdata) {
                Some(target) => inner.on_dialog_line(move |line| target.emit(line)),
                None => inner.without_dialog_observer(),
            })
        })
    }
}

/// Builds the config, and frees the builder whatever the result. On success `*config_out` is
/// set; free the config with `starttls_config_free`.
///
/// # Safety
/// `b` is NULL or a live builder, not used afterwards; `config_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_builder_build(
    b: *mut starttls_config_builder,
    config_out: *mut *const starttls_config,
) -> u32 {
    // SAFETY: forwarded caller contract.
    unsafe {
        build_handle(b, config_out, |b| {
            Ok(starttls_config {
                inner: b.inner.build()?,
            })
        })
    }
}

/// Releases a config. NULL is fine. Connections made from it stay usable.
///
/// # Safety
/// `config` is NULL or a live config, not used afterwards by the caller.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_config_free(config: *const starttls_config) {
    // SAFETY: NULL or a pointer from starttls_config_builder_build, freed once.
    unsafe { free_handle(config) }
}
