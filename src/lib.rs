//! # starttls
//!
//! Upgrade plaintext protocol connections to TLS, correctly: SMTP, submission and LMTP
//! (RFC 3207), IMAP (RFC 3501/9051), POP3 (RFC 2595), LDAP (RFC 4511), FTP (RFC 4217), XMPP
//! (RFC 6120), NNTP (RFC 4642), ManageSieve (RFC 5804), PostgreSQL, HTTP Upgrade (RFC 2817), and
//! implicit TLS (RFC 8314) for each that has it. Client and server side. Synchronous and blocking
//! on `std::net`, on rustls; a C ABI (`include/starttls.h`) for C, C++ and Python.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use starttls::{ClientConfig, Protocol};
//!
//! let config = ClientConfig::builder().build()?;
//! let mut conn = starttls::connect(&config, Protocol::Submission, "smtp.example.org", 587)?;
//! println!("{:?} {:?}", conn.tls_version(), conn.cipher_suite());
//! let caps = conn.fetch_capabilities()?.to_vec(); // EHLO again, inside TLS
//! println!("capabilities: {caps:?}");
//! conn.write_all(b"QUIT\r\n")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What it guarantees (each has tests that attack it):
//! - nothing the server sends after its go-ahead and before TLS is read, parsed or handed to TLS:
//!   it fails with [`ErrorKind::Injection`];
//! - under the default [`Policy::Require`], a server that does not offer STARTTLS, refuses it,
//!   or skips it (IMAP `PREAUTH`) fails with a distinct error, and nothing more is sent;
//! - capabilities seen before TLS are [`Untrusted`], and can be fetched again inside TLS;
//! - certificates are verified against the webpki roots by default;
//! - every blocking step has a finite timeout that names its [`Phase`];
//! - lines, reply lengths and counts are bounded.

//!
//! ## The house
//!
//! Each floor uses only the floors below it, and no two files import each other in a loop:
//!
//! | floor | modules |
//! |---|---|
//! | faces | `ffi` (the C ABI), the `starttls` command (`src/bin/`), Python (over the C ABI) |
//! | API | this file: re-exports |
//! | entry points | `connect`, `accept`, `dane` (DANE from DNS: lookups, then connect), `mx` (MTA-STS and TLS-RPT: records, the policy over HTTPS) |
//! | connection | `stream` ([`Connection`]: steps inside TLS, login, goodbye), `ftp` (data channel) |
//! | protocols | `protocol`: one table of every protocol, one file per protocol implementing its dialog, `protocol::sasl` |
//! | configuration, TLS | `config`, `server_config`, `alpn`, `handshake`, `certificate` (facts from a peer's certificate), `verify` (the certificate verifiers: roots, pins, DANE), `x509` (DER, SPKI, digests), `dns` (the stub resolver) |
//! | wire | `wire`: bounded line and message reading that never reads past the go-ahead; `sys`: the socket calls std lacks (a send that never raises SIGPIPE) |
//! | ground | `error`: one error enum, every variant with a frozen code; `text`: the one escaping function for peer text, base64 |

#![deny(unsafe_code)] // `src/ffi/` alone allows it.
#![warn(missing_docs)]

mod accept;
mod alpn;
mod certificate;
mod config;
mod connect;
#[cfg(feature = "dns")]
mod dane;
#[cfg(feature = "dns")]
mod dns;
mod error;
#[doc(hidden)] // The C ABI: its documentation is include/starttls.h.
pub mod ffi;
mod ftp;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
#[cfg(feature = "dns")]
mod mx;
mod protocol;
mod server_config;
mod stream;
mod sys;
mod text;
mod verify;
mod wire;
mod x509;

pub use accept::{accept, accept_tls};
pub use certificate::CertificateFacts;
pub use config::{
    ClientConfig, ClientConfigBuilder, Policy, Timeouts, TlsVersion, supported_cipher_suites,
    supported_key_exchange_groups,
};
pub use connect::{
    ConnectOptions, connect, connect_named, connect_with, handshake_only, handshake_only_with,
    negotiate, upgrade, upgrade_with,
};
#[cfg(feature = "dns")]
pub use dane::{DaneLookup, connect_dane, lookup_dane};
#[cfg(feature = "dns")]
pub use dns::{Answer, Resolver};
pub use error::{Error, ErrorKind, Phase, Result};
#[cfg(feature = "dns")]
pub use mx::{MtaSts, MtaStsMode, MtaStsPolicy, MtaStsRecord, TlsRptRecord, mta_sts_policy};
pub use protocol::Protocol;
pub use protocol::sasl::{AuthOutcome, Credentials};
pub use server_config::{ClientAuth, ServerConfig, ServerConfigBuilder};
pub use stream::{
    Connection, Relayed, Timings, Untrusted, Verification, iana_cipher_suite_name, relay_sockets,
};
pub use text::escape_controls;
pub use verify::{DaneStatus, TlsaRecord, pin_sha256};
pub use wire::{DialogLine, DialogObserver, Direction};

/// Re-exported so callers can name rustls types without a version clash.
pub use rustls;

/// This library's version and the rustls it was built with.
pub fn version() -> &'static str {
    concat!("starttls ", env!("CARGO_PKG_VERSION"), " (rustls 0.23)")
}

/// Compiles the README's Rust example as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
