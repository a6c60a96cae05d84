//! The one error type, and the stable numeric codes that every variant maps to.
//!
//! Codes are frozen and append-only: a number, once published, never changes meaning. They are
//! grouped by kind (usage 1xx, network 2xx, protocol 3xx, TLS 4xx) so that a C caller can tell the
//! class of a failure from the hundreds digit.

use std::fmt;
use std::io;

/// Which blocking step of a connection was running when something went wrong.
///
/// Every step has its own timeout (see [`crate::Timeouts`]); a [`Error::Timeout`] names the phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Resolving the host name.
    Resolve,
    /// Establishing the TCP connection.
    Connect,
    /// Waiting for the server's greeting.
    Greeting,
    /// Asking for and reading the server's capabilities.
    Capabilities,
    /// Sending the STARTTLS command and waiting for the go-ahead.
    StartTls,
    /// The TLS handshake.
    Handshake,
    /// Reading application data over the finished connection.
    Read,
    /// Writing application data over the finished connection.
    Write,
    /// Sending close_notify and shutting the connection down.
    Close,
}

impl Phase {
    /// A short lower-case name, stable for scripts and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Greeting => "greeting",
            Phase::Capabilities => "capabilities",
            Phase::StartTls => "starttls",
            Phase::Handshake => "handshake",
            Phase::Read => "read",
            Phase::Write => "write",
            Phase::Close => "close",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of an [`Error`], with its frozen numeric code (`0` is reserved for success).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A caller passed something unusable (empty host, bad server name, wrong state).
    InvalidArgument = 100,
    /// The configuration could not be built (unreadable CA file, bad key, no usable roots).
    Config = 101,
    /// A bug inside the library was caught at the C boundary (only the C ABI reports it).
    Panic = 102,
    /// A caller's buffer was too small for the value asked for (only the C ABI reports it).
    BufferTooSmall = 103,
    /// An operating-system I/O error.
    Io = 200,
    /// A step did not finish within its timeout.
    Timeout = 201,
    /// The peer closed the connection in the middle of a step.
    Closed = 202,
    /// The host name did not resolve to any address.
    Resolve = 203,
    /// The server did not offer STARTTLS (or it was stripped on the way).
    NotOffered = 300,
    /// The server refused: a negative reply to STARTTLS, or to the connection itself.
    Refused = 301,
    /// The server made TLS impossible by skipping it (IMAP `PREAUTH`).
    Downgrade = 302,
    /// The peer broke the protocol: malformed or oversized reply, unexpected code, stray data.
    ProtocolViolation = 303,
    /// Bytes arrived after the go-ahead and before TLS: a plaintext injection attempt.
    Injection = 304,
    /// Credentials were not sent because the connection is not encrypted.
    NotEncrypted = 305,
    /// The server rejected the login.
    AuthFailed = 306,
    /// The TLS handshake or a TLS record failed.
    Tls = 400,
    /// The server's certificate was rejected (unknown issuer, wrong name, expired, ...).
    Certificate = 401,
}

impl ErrorKind {
    /// Every kind, in code order.
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Config,
        ErrorKind::Panic,
        ErrorKind::BufferTooSmall,
        ErrorKind::Io,
        ErrorKind::Timeout,
        ErrorKind::Closed,
        ErrorKind::Resolve,
        ErrorKind::NotOffered,
        ErrorKind::Refused,
        ErrorKind::Downgrade,
        ErrorKind::ProtocolViolation,
        ErrorKind::Injection,
        ErrorKind::NotEncrypted,
        ErrorKind::AuthFailed,
        ErrorKind::Tls,
        ErrorKind::Certificate,
    ];

    /// The frozen numeric code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The kind for a numeric code, if it is one.
    pub fn from_code(code: u32) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The stable symbolic name, as exported to C (`STARTTLS_ERR_...`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "STARTTLS_ERR_INVALID_ARGUMENT",
            ErrorKind::Config => "STARTTLS_ERR_CONFIG",
            ErrorKind::Panic => "STARTTLS_ERR_PANIC",
            ErrorKind::BufferTooSmall => "STARTTLS_ERR_BUFFER_TOO_SMALL",
            ErrorKind::Io => "STARTTLS_ERR_IO",
            ErrorKind::Timeout => "STARTTLS_ERR_TIMEOUT",
            ErrorKind::Closed => "STARTTLS_ERR_CLOSED",
            ErrorKind::Resolve => "STARTTLS_ERR_RESOLVE",
            ErrorKind::NotOffered => "STARTTLS_ERR_NOT_OFFERED",
            ErrorKind::Refused => "STARTTLS_ERR_REFUSED",
            ErrorKind::Downgrade => "STARTTLS_ERR_DOWNGRADE",
            ErrorKind::ProtocolViolation => "STARTTLS_ERR_PROTOCOL",
            ErrorKind::Injection => "STARTTLS_ERR_INJECTION",
            ErrorKind::NotEncrypted => "STARTTLS_ERR_NOT_ENCRYPTED",
            ErrorKind::AuthFailed => "STARTTLS_ERR_AUTH_FAILED",
            ErrorKind::Tls => "STARTTLS_ERR_TLS",
            ErrorKind::Certificate => "STARTTLS_ERR_CERTIFICATE",
        }
    }

    /// A one-line description of the kind.
    pub fn description(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Config => "invalid configuration",
            ErrorKind::Panic => "internal error (panic caught)",
            ErrorKind::BufferTooSmall => "buffer too small",
            ErrorKind::Io => "I/O error",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Closed => "connection closed by peer",
            ErrorKind::Resolve => "host name did not resolve",
            ErrorKind::NotOffered => "STARTTLS not offered by the server",
            ErrorKind::Refused => "refused by the server",
            ErrorKind::Downgrade => "server skipped TLS (downgrade)",
            ErrorKind::ProtocolViolation => "protocol violation by the peer",
            ErrorKind::Injection => "plaintext injected after the STARTTLS go-ahead",
            ErrorKind::NotEncrypted => "refusing to send credentials without TLS",
            ErrorKind::AuthFailed => "authentication failed",
            ErrorKind::Tls => "TLS error",
            ErrorKind::Certificate => "certificate verification failed",
        }
    }
}

/// Everything that can go wrong. Each variant's doc says when it happens.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something unusable.
    InvalidArgument(String),
    /// Building the configuration failed.
    Config(String),
    /// An operating-system I/O error during `phase`.
    Io {
        /// The step that failed.
        phase: Phase,
        /// The underlying error.
        source: io::Error,
    },
    /// `phase` did not finish within its timeout.
    Timeout {
        /// The step that timed out.
        phase: Phase,
    },
    /// The peer closed the connection during `phase` (mid-reply, or without close_notify).
    Closed {
        /// The step that was interrupted.
        phase: Phase,
    },
    /// The host name did not resolve to any address.
    Resolve {
        /// The name that was looked up.
        host: String,
        /// Why, when the resolver said.
        source: Option<io::Error>,
    },
    /// The server did not advertise STARTTLS (stripped, or never supported).
    NotOffered {
        /// The server's capability reply, for the message.
        reply: Option<String>,
    },
    /// Logging in: nothing the library can log in with is offered inside TLS (kind
    /// [`ErrorKind::NotOffered`], as for STARTTLS itself).
    NoLoginMechanism {
        /// What the server offers, or why nothing fits.
        reply: String,
    },
    /// The server answered negatively: to STARTTLS (`454`, `NO`, `-ERR`), or to the connection
    /// itself (`554` greeting, `* BYE`).
    Refused {
        /// The step that was refused.
        phase: Phase,
        /// The server's reply.
        reply: String,
    },
    /// The server skipped the upgrade on its own (IMAP `* PREAUTH`): continuing would mean
    /// plaintext, so under the require policy this is fatal.
    Downgrade {
        /// The server's reply.
        reply: String,
    },
    /// The peer broke the protocol during `phase`: a malformed, unexpected or oversized reply, a
    /// bare LF, a NUL byte, unsolicited data.
    ProtocolViolation {
        /// The step that failed.
        phase: Phase,
        /// What was wrong.
        detail: String,
        /// The offending reply, when there is one.
        reply: Option<String>,
    },
    /// Bytes arrived after the go-ahead reply and before the TLS handshake (CVE-2011-0411 and its
    /// many relatives). They were neither given to TLS nor to the application.
    Injection {
        /// How many bytes were seen (at least).
        bytes: usize,
        /// Where they were seen: in the same read as the go-ahead, or during the handshake.
        detail: String,
    },
    /// Credentials were not sent: the connection is not encrypted (opportunistic policy).
    NotEncrypted,
    /// The server rejected the login.
    AuthFailed {
        /// What was tried.
        mechanism: &'static str,
        /// The server's reply, base64 challenges decoded.
        reply: String,
    },
    /// The TLS handshake or a later TLS record failed.
    Tls(rustls::Error),
    /// The server's certificate was rejected.
    Certificate {
        /// Why.
        source: rustls::Error,
        /// The chain the server presented, leaf first (empty when it presented none), so that
        /// the rejected certificate can still be shown: subject, names, expiry.
        presented: Vec<rustls::pki_types::CertificateDer<'static>>,
    },
}

thread_local! {
    /// The chain the server presented in this thread's handshake under way (the verifier
    /// records it; a certificate error takes it).
    static PRESENTED: std::cell::RefCell<Vec<rustls::pki_types::CertificateDer<'static>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Records the chain a server presented for verification (called by the config's verifier).
pub(crate) fn record_presented_chain(chain: Vec<rustls::pki_types::CertificateDer<'static>>) {
    PRESENTED.with(|p| *p.borrow_mut() = chain);
}

/// Forgets a recorded chain (before a handshake starts, so none is left from an earlier one).
pub(crate) fn clear_presented_chain() {
    PRESENTED.with(|p| p.borrow_mut().clear());
}

impl Error {
    /// The kind of this error, which carries the stable numeric code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Config(_) => ErrorKind::Config,
            Error::Io { .. } => ErrorKind::Io,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Closed { .. } => ErrorKind::Closed,
            Error::Resolve { .. } => ErrorKind::Resolve,
            Error::NotOffered { .. } | Error::NoLoginMechanism { .. } => ErrorKind::NotOffered,
            Error::Refused { .. } => ErrorKind::Refused,
            Error::Downgrade { .. } => ErrorKind::Downgrade,
            Error::ProtocolViolation { .. } => ErrorKind::ProtocolViolation,
            Error::Injection { .. } => ErrorKind::Injection,
            Error::NotEncrypted => ErrorKind::NotEncrypted,
            Error::AuthFailed { .. } => ErrorKind::AuthFailed,
            Error::Tls(_) => ErrorKind::Tls,
            Error::Certificate { .. } => ErrorKind::Certificate,
        }
    }

    /// The frozen numeric code of this error (see [`ErrorKind`]).
    pub fn code(&self) -> u32 {
        self.kind().code()
    }

    /// For a rejected certificate, the chain the server presented (leaf first): what was
    /// rejected can still be shown. `None` for any other error.
    pub fn presented_chain(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        match self {
            Error::Certificate { presented, .. } => Some(presented),
            _ => None,
        }
    }

    /// The server's reply that caused the error, when there is one.
    pub fn reply(&self) -> Option<&str> {
        match self {
            Error::NotOffered { reply } | Error::ProtocolViolation { reply, .. } => {
                reply.as_deref()
            }
            Error::Refused { reply, .. }
            | Error::NoLoginMechanism { reply }
            | Error::Downgrade { reply }
            | Error::AuthFailed { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// The phase the error happened in, when it is tied to one.
    pub fn phase(&self) -> Option<Phase> {
        match self {
            Error::Io { phase, .. }
            | Error::Timeout { phase }
            | Error::Closed { phase }
            | Error::Refused { phase, .. }
            | Error::ProtocolViolation { phase, .. } => Some(*phase),
            Error::Resolve { .. } => Some(Phase::Resolve),
            Error::NotOffered { .. } => Some(Phase::Capabilities),
            Error::Downgrade { .. } => Some(Phase::Greeting),
            Error::Injection { .. } => Some(Phase::StartTls),
            Error::NotEncrypted | Error::AuthFailed { .. } | Error::NoLoginMechanism { .. } => {
                Some(Phase::Read)
            }
            Error::Tls(_) | Error::Certificate { .. } => Some(Phase::Handshake),
            Error::InvalidArgument(_) | Error::Config(_) => None,
        }
    }

    pub(crate) fn violation(phase: Phase, detail: impl Into<String>) -> Error {
        Error::ProtocolViolation {
            phase,
            detail: detail.into(),
            reply: None,
        }
    }

    pub(crate) fn violation_in(phase: Phase, detail: impl Into<String>, reply: &str) -> Error {
        Error::ProtocolViolation {
            phase,
            detail: detail.into(),
            reply: Some(reply.to_owned()),
        }
    }

    /// Classifies an I/O error from a socket operation in `phase`.
    pub(crate) fn from_io(phase: Phase, e: io::Error) -> Error {
        // rustls reports TLS failures on a stream as io::Error(InvalidData, rustls::Error).
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Error::from_tls(tls.clone());
        }
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout { phase },
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Error::Closed { phase },
            _ => Error::Io { phase, source: e },
        }
    }

    /// Classifies a rustls error: certificate problems get their own kind.
    pub(crate) fn from_tls(e: rustls::Error) -> Error {
        match e {
            rustls::Error::InvalidCertificate(_) => Error::Certificate {
                source: e,
                presented: PRESENTED.with(|p| std::mem::take(&mut *p.borrow_mut())),
            },
            other => Error::Tls(other),
        }
    }
}

/// Messages carry peer text (replies, names in certificates): escaped once more here, so that
/// no way of building an error can put a raw control character in front of a person.
fn esc(text: &str) -> std::borrow::Cow<'_, str> {
    crate::text::escape_controls(text)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::Io { phase, source } => write!(f, "I/O error during {phase}: {source}"),
            Error::Timeout { phase } => write!(f, "timed out during {phase}"),
            Error::Closed { phase } => write!(f, "connection closed by the peer during {phase}"),
            Error::Resolve { host, source } => match source {
                Some(e) => write!(f, "cannot resolve {host}: {e}"),
                None => write!(f, "cannot resolve {host}: no addresses"),
            },
            Error::NotOffered { reply } => match reply {
                Some(r) => write!(
                    f,
                    "the server does not offer STARTTLS (it said: {})",
                    esc(r)
                ),
                None => f.write_str("the server does not offer STARTTLS"),
            },
            Error::NoLoginMechanism { reply } => write!(
                f,
                "no login mechanism this library can use is offered inside TLS: {}",
                esc(reply)
            ),
            Error::Refused { phase, reply } => {
                write!(f, "refused by the server during {phase}: {}", esc(reply))
            }
            Error::Downgrade { reply } => write!(
                f,
                "the server skipped TLS and would continue in plaintext (downgrade): {}",
                esc(reply)
            ),
            Error::ProtocolViolation {
                phase,
                detail,
                reply,
            } => match reply {
                Some(r) => write!(
                    f,
                    "protocol violation during {phase}: {}: {}",
                    esc(detail),
                    esc(r)
                ),
                None => write!(f, "protocol violation during {phase}: {}", esc(detail)),
            },
            Error::Injection { bytes, detail } => write!(
                f,
                "{bytes} byte(s) of plaintext after the STARTTLS go-ahead ({}); refusing to \
                 continue (possible injection attack)",
                esc(detail)
            ),
            Error::NotEncrypted => {
                f.write_str("refusing to send credentials: the connection is not encrypted")
            }
            Error::AuthFailed { mechanism, reply } => {
                write!(f, "authentication failed ({mechanism}): {}", esc(reply))
            }
            Error::Tls(e) => write!(f, "TLS error: {}", esc(&e.to_string())),
            // Our own reasons (DANE, pins) in their words, not rustls's debug form.
            Error::Certificate {
                source: rustls::Error::InvalidCertificate(rustls::CertificateError::Other(why)),
                ..
            } => write!(f, "certificate rejected: {}", esc(&why.0.to_string())),
            Error::Certificate { source, .. } => {
                write!(f, "certificate rejected: {}", esc(&source.to_string()))
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Resolve {
                source: Some(e), ..
            } => Some(e),
            Error::Tls(e) | Error::Certificate { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_frozen() {
        // These numbers are published; changing one breaks every C and Python caller.
        let frozen = [
            (ErrorKind::InvalidArgument, 100),
            (ErrorKind::Config, 101),
            (ErrorKind::Panic, 102),
            (ErrorKind::BufferTooSmall, 103),
            (ErrorKind::Io, 200),
            (ErrorKind::Timeout, 201),
            (ErrorKind::Closed, 202),
            (ErrorKind::Resolve, 203),
            (ErrorKind::NotOffered, 300),
            (ErrorKind::Refused, 301),
            (ErrorKind::Downgrade, 302),
            (ErrorKind::ProtocolViolation, 303),
            (ErrorKind::Injection, 304),
            (ErrorKind::NotEncrypted, 305),
            (ErrorKind::AuthFailed, 306),
            (ErrorKind::Tls, 400),
            (ErrorKind::Certificate, 401),
        ];
        assert_eq!(frozen.len(), ErrorKind::ALL.len());
        for (kind, code) in frozen {
            assert_eq!(kind.code(), code, "{kind:?}");
            assert_eq!(ErrorKind::from_code(code), Some(kind));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(999), None);
    }

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert!(names.iter().all(|n| n.starts_with("STARTTLS_ERR_")));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn io_errors_are_classified() {
        let t = Error::from_io(Phase::Greeting, io::ErrorKind::WouldBlock.into());
        assert!(matches!(
            t,
            Error::Timeout {
                phase: Phase::Greeting
            }
        ));
        let c = Error::from_io(Phase::StartTls, io::ErrorKind::ConnectionReset.into());
        assert_eq!(c.kind(), ErrorKind::Closed);
        let o = Error::from_io(Phase::Connect, io::ErrorKind::PermissionDenied.into());
        assert_eq!(o.kind(), ErrorKind::Io);
    }

    #[test]
    fn refusal_message_carries_the_reply() {
        let e = Error::Refused {
            phase: Phase::StartTls,
            reply: "454 4.7.0 TLS not available".into(),
        };
        assert!(e.to_string().contains("454 4.7.0 TLS not available"));
        assert_eq!(e.reply(), Some("454 4.7.0 TLS not available"));
    }
}
