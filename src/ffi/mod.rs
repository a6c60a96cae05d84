//! The C ABI: the only module with `unsafe`.
//!
//! Every export reads the same way: check pointers, run the work inside [`boundary`] (which
//! catches panics and records the error message), return a `uint32_t` result code. Out-params
//! are written only on success. Opaque handles: `starttls_config_builder` (Box),
//! `starttls_config` (Box of an `Arc`-based config, shareable across threads), `starttls_conn`
//! (Box, one thread at a time).
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use crate::Protocol;
use crate::error::{Error, ErrorKind};

pub mod codes;
pub mod config;
pub mod conn;
pub mod dane;
pub mod event;
pub mod inspect;
pub mod lookup;
pub mod server;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
    static LAST_OS_ERROR: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
    static LAST_PRESENTED: RefCell<Vec<rustls::pki_types::CertificateDer<'static>>> =
        const { RefCell::new(Vec::new()) };
}

/// What an export can fail with: a library error, or one of the failures only the C boundary
/// has.
#[derive(Debug)]
pub(crate) enum Failure {
    Lib(Error),
    /// A panic was caught (a library bug); the host process goes on.
    Panic,
    /// A caller's buffer could not hold the value.
    BufferTooSmall {
        needed: usize,
    },
    /// Not an error: a non-blocking connection must wait for the socket (`STARTTLS_WANT_*`).
    Want(u32),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Lib(e)
    }
}

impl Failure {
    fn code(&self) -> u32 {
        match self {
            Failure::Lib(e) => e.code(),
            Failure::Panic => ErrorKind::Panic.code(),
            Failure::BufferTooSmall { .. } => ErrorKind::BufferTooSmall.code(),
            Failure::Want(code) => *code,
        }
    }
}

impl Failure {
    /// The operating system's error number behind the failure: the `errno` of a system error,
    /// `ETIMEDOUT` for a timeout; 0 for the rest.
    pub(crate) fn os_error(&self) -> i32 {
        match self {
            Failure::Lib(Error::Io { source, .. }) => source.raw_os_error().unwrap_or(0),
            Failure::Lib(Error::Timeout { .. }) => rustix::io::Errno::TIMEDOUT.raw_os_error(),
            _ => 0,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Lib(e) => e.fmt(f),
            Failure::Panic => f.write_str("internal error: a panic was caught"),
            Failure::BufferTooSmall { needed } => {
                write!(f, "buffer too small: {needed} bytes needed")
            }
            Failure::Want(code) if *code == codes::STARTTLS_WANT_WRITE => {
                f.write_str("would block: poll for writing and call again")
            }
            Failure::Want(_) => f.write_str("would block: poll for reading and call again"),
        }
    }
}

/// Records `e` as this thread's last error and returns its code (a `WANT` is no error: the
/// last error is left as it was).
fn fail(e: &Failure) -> u32 {
    if let Failure::Want(code) = e {
        return *code;
    }
    let msg = e.to_string();
    LAST_ERROR.with(|l| *l.borrow_mut() = msg);
    LAST_OS_ERROR.with(|l| l.set(e.os_error()));
    let presented = match e {
        Failure::Lib(err) => err.presented_chain().map(<[_]>::to_vec).unwrap_or_default(),
        _ => Vec::new(),
    };
    LAST_PRESENTED.with(|l| *l.borrow_mut() = presented);
    e.code()
}

/// Runs `f` behind the panic boundary: `Ok` → `STARTTLS_OK`, `Err` → its code, panic →
/// `STARTTLS_ERR_PANIC`. The message goes to the thread-local last error.
fn boundary(f: impl FnOnce() -> Result<(), Failure>) -> u32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => codes::STARTTLS_OK,
        Ok(Err(e)) => fail(&e),
        Err(_) => fail(&Failure::Panic),
    }
}

/// As [`boundary`], for functions that return a value rather than a code; `fallback` on panic.
fn boundary_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            fail(&Failure::Panic);
            fallback
        }
    }
}

/// Runs a setter on a builder (client or server) behind the boundary; a failed setter leaves the
/// builder as it was.
fn with_builder_slot<B: Default + Clone>(
    slot: Option<&mut B>,
    f: impl FnOnce(B) -> Result<B, Error>,
) -> u32 {
    boundary(|| {
        let slot = slot.ok_or_else(|| null("builder"))?;
        let taken = std::mem::take(slot);
        match f(taken.clone()) {
            Ok(next) => {
                *slot = next;
                Ok(())
            }
            Err(e) => {
                *slot = taken;
                Err(e.into())
            }
        }
    })
}

/// Builds a config from a builder handle, which is freed whatever the result; `*out` is set
/// only on success.
///
/// # Safety
/// `b` is NULL or a live handle from `Box::into_raw`, not used afterwards; `out` is NULL or
/// writable.
unsafe fn build_handle<B, C>(
    b: *mut B,
    out: *mut *const C,
    build: impl FnOnce(B) -> Result<C, Error>,
) -> u32 {
    boundary(|| {
        if b.is_null() {
            return Err(null("builder").into());
        }
        // SAFETY: a live builder, consumed here exactly once.
        let builder = unsafe { Box::from_raw(b) };
        if out.is_null() {
            return Err(null("config_out").into());
        }
        let config = Box::into_raw(Box::new(build(*builder)?));
        // SAFETY: checked non-NULL; written only on success.
        unsafe { *out = config };
        Ok(())
    })
}

/// Frees a handle made by `Box::into_raw`. NULL is fine; a panic in a destructor is caught.
///
/// # Safety
/// `p` is NULL or a live handle, not used afterwards.
unsafe fn free_handle<T>(p: *const T) {
    if !p.is_null() {
        boundary_value((), || {
            // SAFETY: a pointer from Box::into_raw, freed once (the caller's contract).
            drop(unsafe { Box::from_raw(p.cast_mut()) });
        });
    }
}

fn null(what: &str) -> Error {
    Error::InvalidArgument(format!("{what} is NULL"))
}

/// Copies a NUL-terminated C string in. NULL and invalid UTF-8 are invalid arguments.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
unsafe fn str_in<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| Error::InvalidArgument(format!("{what} is not valid UTF-8")))
}

/// Borrows `len` bytes from C. NULL with `len == 0` is an empty slice.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes.
unsafe fn bytes_in<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], Error> {
    if p.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(null(what)) };
    }
    // SAFETY: non-NULL and `len` readable bytes by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// snprintf-style copy out: writes at most `len - 1` bytes and a NUL, returns the full length.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes.
unsafe fn str_out(s: &str, buf: *mut c_char, len: usize) -> usize {
    if !buf.is_null() && len > 0 {
        let n = s.len().min(len - 1);
        // SAFETY: `buf` has room for `len` bytes and `n + 1 <= len`.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    s.len()
}

/// Exact copy out of binary data; `BufferTooSmall` when it does not fit. Writes `*out_n` only on
/// success.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes; `out_n` is NULL or writable.
unsafe fn bytes_out(
    data: &[u8],
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> Result<(), Failure> {
    if out_n.is_null() {
        return Err(null("out_n").into());
    }
    if data.len() > len || (buf.is_null() && !data.is_empty()) {
        return Err(Failure::BufferTooSmall { needed: data.len() });
    }
    // SAFETY: `buf` has room for `len >= data.len()` bytes; `out_n` is writable.
    unsafe {
        if !data.is_empty() {
            std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        }
        *out_n = data.len();
    }
    Ok(())
}

/// NUL-terminated copies of the library's static names, made once and never freed, so that C
/// gets pointers valid for the life of the process.
struct CNames(OnceLock<Vec<CString>>);

impl CNames {
    const fn new() -> CNames {
        CNames(OnceLock::new())
    }

    /// The name at `index` of the list `names` makes (called once), or NULL past its end.
    fn get(
        &'static self,
        index: usize,
        names: impl FnOnce() -> Vec<&'static str>,
    ) -> *const c_char {
        let all = self.0.get_or_init(|| {
            // Our own names hold no NUL; an empty string would be the only fallback.
            let c = |n: &str| CString::new(n).unwrap_or_default();
            names().into_iter().map(c).collect()
        });
        all.get(index).map_or(std::ptr::null(), |c| c.as_ptr())
    }
}

static ERROR_NAMES: CNames = CNames::new();
static ERROR_DESCRIPTIONS: CNames = CNames::new();
static PROTOCOL_SCHEMES: CNames = CNames::new();

fn kind_index(kind: ErrorKind) -> usize {
    ErrorKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(usize::MAX)
}

fn protocol_index(protocol: Protocol) -> usize {
    Protocol::ALL
        .iter()
        .position(|p| *p == protocol)
        .unwrap_or(usize::MAX)
}

/// The library's version and the rustls it uses: a static string, never freed.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_version() -> *const c_char {
    boundary_value(std::ptr::null(), || {
        concat!("starttls ", env!("CARGO_PKG_VERSION"), " (rustls 0.23)\0")
            .as_ptr()
            .cast()
    })
}

/// The library's version as `MAJOR * 10000 + MINOR * 100 + PATCH` (compare with
/// `STARTTLS_VERSION_NUM`, the header's).
#[unsafe(no_mangle)]
pub extern "C" fn starttls_version_num() -> u32 {
    boundary_value(0, || {
        let part = |s: &str| s.parse::<u32>().unwrap_or(0);
        part(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
            + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
            + part(env!("CARGO_PKG_VERSION_PATCH"))
    })
}

/// The crypto provider rustls was built with (`"aws-lc-rs"` or `"ring"`): a static string.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_crypto_provider() -> *const c_char {
    #[cfg(feature = "aws-lc-rs")]
    let name = "aws-lc-rs\0";
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    let name = "ring\0";
    boundary_value(std::ptr::null(), || name.as_ptr().cast())
}

/// The symbolic name of a result code (`"STARTTLS_OK"`, `"STARTTLS_ERR_NOT_OFFERED"`, ...), or
/// `"STARTTLS_ERR_UNKNOWN"` for a number that is not a code. A static string.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_result_name(code: u32) -> *const c_char {
    boundary_value(std::ptr::null(), || match ErrorKind::from_code(code) {
        _ if code == codes::STARTTLS_OK => c"STARTTLS_OK".as_ptr(),
        _ if code == codes::STARTTLS_WANT_READ => c"STARTTLS_WANT_READ".as_ptr(),
        _ if code == codes::STARTTLS_WANT_WRITE => c"STARTTLS_WANT_WRITE".as_ptr(),
        Some(kind) => ERROR_NAMES.get(kind_index(kind), || {
            ErrorKind::ALL.iter().map(|k| k.name()).collect()
        }),
        None => c"STARTTLS_ERR_UNKNOWN".as_ptr(),
    })
}

/// A one-line description of a result code. A static string.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_result_description(code: u32) -> *const c_char {
    boundary_value(std::ptr::null(), || match ErrorKind::from_code(code) {
        _ if code == codes::STARTTLS_OK => c"success".as_ptr(),
        _ if code == codes::STARTTLS_WANT_READ => {
            c"not done yet: poll for reading, call again".as_ptr()
        }
        _ if code == codes::STARTTLS_WANT_WRITE => {
            c"not done yet: poll for writing, call again".as_ptr()
        }
        Some(kind) => ERROR_DESCRIPTIONS.get(kind_index(kind), || {
            ErrorKind::ALL.iter().map(|k| k.description()).collect()
        }),
        None => c"unknown result code".as_ptr(),
    })
}

/// The detailed message of the last failure on this thread (any function), NUL-terminated and
/// truncated to `len`; returns the full length, snprintf-style. `buf` may be NULL to ask the
/// length. An empty string when nothing failed yet.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_last_error(buf: *mut c_char, len: usize) -> usize {
    boundary_value(0, || {
        LAST_ERROR.with(|l| {
            // SAFETY: forwarded caller contract.
            unsafe { str_out(&l.borrow(), buf, len) }
        })
    })
}

/// The operating system's error number (`errno`) behind this thread's last failure: the
/// system error of a `STARTTLS_ERR_IO` (`ECONNREFUSED`, `ECONNRESET`, ...), `ETIMEDOUT` for a
/// `STARTTLS_ERR_TIMEOUT`; 0 for any other failure.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_last_os_error() -> c_int {
    boundary_value(0, || LAST_OS_ERROR.with(std::cell::Cell::get))
}

/// After this thread's last failure was `STARTTLS_ERR_CERTIFICATE`: how many certificates the
/// server presented (leaf first), so that the rejected one can still be shown; 0 otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_last_peer_cert_count() -> usize {
    boundary_value(0, || LAST_PRESENTED.with(|l| l.borrow().len()))
}

/// The length (DER) of certificate `index` of that chain, 0 when there is none.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_last_peer_cert_len(index: usize) -> usize {
    boundary_value(0, || {
        LAST_PRESENTED.with(|l| l.borrow().get(index).map_or(0, |c| c.as_ref().len()))
    })
}

/// Copies certificate `index` (DER, 0 = leaf) of the chain counted by
/// `starttls_last_peer_cert_count` into `buf`; `*out_n` its length.
/// `STARTTLS_ERR_BUFFER_TOO_SMALL` when it does not fit (`starttls_last_peer_cert_len` tells the
/// size), `STARTTLS_ERR_INVALID_ARGUMENT` for an index out of range. Neither replaces the chain.
///
/// # Safety
/// `buf` points to `len` writable bytes; `out_n` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_last_peer_cert(
    index: usize,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> u32 {
    // Not through `boundary`: a failure here must not replace the chain being read.
    match catch_unwind(AssertUnwindSafe(|| {
        LAST_PRESENTED.with(|l| {
            let chain = l.borrow();
            let Some(cert) = chain.get(index) else {
                return Err(Failure::Lib(Error::InvalidArgument(format!(
                    "no certificate {index}: the last rejected chain has {}",
                    chain.len()
                ))));
            };
            // SAFETY: forwarded caller contract.
            unsafe { bytes_out(cert.as_ref(), buf, len, out_n) }
        })
    })) {
        Ok(Ok(())) => codes::STARTTLS_OK,
        Ok(Err(e)) => e.code(),
        Err(_) => codes::STARTTLS_ERR_PANIC,
    }
}

/// Whether this build supports a protocol (`STARTTLS_PROTO_*`).
#[unsafe(no_mangle)]
pub extern "C" fn starttls_supports_protocol(protocol: u32) -> bool {
    boundary_value(false, || Protocol::from_code(protocol).is_some())
}

/// The URL scheme of a protocol (`"smtp"`, `"imaps"`, ...), or NULL when unsupported. Static.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_protocol_name(protocol: u32) -> *const c_char {
    boundary_value(std::ptr::null(), || match Protocol::from_code(protocol) {
        Some(p) => PROTOCOL_SCHEMES.get(protocol_index(p), || {
            Protocol::ALL.iter().map(|p| p.scheme()).collect()
        }),
        None => std::ptr::null(),
    })
}

/// The usual port of a protocol (`STARTTLS_PROTO_*`): 25 for SMTP, 993 for IMAPS, ...; 0 when
/// it has none (`STARTTLS_PROTO_TLS`) or the protocol is not supported.
#[unsafe(no_mangle)]
pub extern "C" fn starttls_protocol_default_port(protocol: u32) -> u16 {
    boundary_value(0, || {
        Protocol::from_code(protocol)
            .and_then(Protocol::default_port)
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        LAST_ERROR.with(|l| l.borrow().clone())
    }

    #[test]
    fn a_panic_becomes_an_error_code_and_a_message() {
        let code = boundary(|| panic!("deliberate"));
        assert_eq!(code, codes::STARTTLS_ERR_PANIC);
        assert!(last_error().contains("panic"));
        assert_eq!(boundary_value(7, || panic!("again")), 7);
    }

    #[test]
    fn errors_set_the_thread_message() {
        let code = boundary(|| Err(Error::InvalidArgument("bad thing".into()).into()));
        assert_eq!(code, codes::STARTTLS_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("bad thing"));
        assert_eq!(boundary(|| Ok(())), codes::STARTTLS_OK);
    }

    #[test]
    fn str_out_truncates_like_snprintf() {
        let mut buf = [b'x' as c_char; 4];
        // SAFETY: a 4-byte buffer.
        let n = unsafe { str_out("hello", buf.as_mut_ptr(), buf.len()) };
        assert_eq!(n, 5);
        assert_eq!(buf.map(|c| c as u8), *b"hel\0");
        // SAFETY: NULL asks the length only.
        assert_eq!(unsafe { str_out("hello", std::ptr::null_mut(), 0) }, 5);
    }

    #[test]
    fn bytes_out_refuses_short_buffers_and_leaves_out_n() {
        let mut buf = [0u8; 2];
        let mut n = 99usize;
        // SAFETY: a 2-byte buffer and a valid out_n.
        let r = unsafe { bytes_out(b"abc", buf.as_mut_ptr(), buf.len(), &mut n) };
        assert!(matches!(r, Err(Failure::BufferTooSmall { needed: 3 })));
        assert_eq!(n, 99);
    }
}
