//! The upgraded connection: a `rustls::StreamOwned` plus what the dialog learned.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConnection, ServerConnection, StreamOwned};

use crate::config::{ClientConfig, Timeouts};
use crate::error::{Error, Phase, Result};
use crate::protocol::{self, DialogContext, Protocol};
use crate::server_config::ServerConfig;
use crate::wire::transport::{ReadWrite, TlsTransport};
use crate::wire::{DialogLine, DialogObserver, Limits, Wire, set_io_timeouts};

/// Data that arrived before TLS, so an active attacker could have written it. Use it to show,
/// never to decide (RFC 3207 §4.2, RFC 2595 §4, RFC 3501 §6.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Untrusted<T>(T);

impl<T> Untrusted<T> {
    pub(crate) fn new(t: T) -> Self {
        Untrusted(t)
    }

    /// The value, which the caller promises to treat as informational only.
    pub fn get_untrusted(&self) -> &T {
        &self.0
    }
}

/// How long each step of the upgrade took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// Resolving and connecting (`None` when the caller connected the socket).
    pub connect: Option<Duration>,
    /// The pre-TLS dialog up to the go-ahead (`None` for implicit TLS).
    pub dialog: Option<Duration>,
    /// The TLS handshake (`None` when TLS never started).
    pub handshake: Option<Duration>,
    /// From the start of the call to the returned connection, dialog inside TLS included.
    pub total: Duration,
}

/// How the server's certificate was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verification {
    /// The chain verified against the configured roots, for the server name.
    Verified,
    /// Verification was switched off (`dangerous`). `problem` says what verification would have
    /// rejected, or is `None` when the chain would have passed.
    Skipped {
        /// What the real verifier said.
        problem: Option<String>,
    },
    /// No TLS: the connection is plaintext (opportunistic policy).
    NotEncrypted,
    /// Server side: the client presented no certificate (none was required).
    NoPeerCertificate,
}

pub(crate) enum Inner {
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    ServerTls(Box<StreamOwned<ServerConnection, TcpStream>>),
    Plain(TcpStream),
}

/// Which end of the connection this is, with its configuration.
#[derive(Clone)]
pub(crate) enum Side {
    Client(ClientConfig),
    Server(ServerConfig),
}

impl Side {
    fn timeouts(&self) -> &Timeouts {
        match self {
            Side::Client(c) => &c.inner.timeouts,
            Side::Server(s) => &s.inner.timeouts,
        }
    }

    fn limits(&self) -> Limits {
        match self {
            Side::Client(c) => c.inner.limits,
            Side::Server(s) => s.inner.limits,
        }
    }

    fn observer(&self) -> Option<&DialogObserver> {
        match self {
            Side::Client(c) => c.inner.observer.as_deref(),
            Side::Server(s) => s.inner.observer.as_deref(),
        }
    }
}

/// A connection after the upgrade: read and write application data, inspect the session.
///
/// Under the default *require* policy it is always encrypted. With the *opportunistic* policy
/// it may be plaintext: check [`is_encrypted`](Self::is_encrypted).
///
/// It is positioned where the protocol says the client speaks next (for SMTP: send EHLO).
pub struct Connection {
    pub(crate) inner: Inner,
    /// Bytes read from TLS by a dialog step but not part of its reply; served to `read` first.
    pub(crate) lookahead: Vec<u8>,
    pub(crate) side: Side,
    pub(crate) protocol: Protocol,
    pub(crate) server_name: String,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) client_name: String,
    pub(crate) greeting: Option<String>,
    pub(crate) capabilities_before_tls: Option<Untrusted<Vec<String>>>,
    pub(crate) capabilities: Option<Vec<String>>,
    pub(crate) starttls_offered: Option<bool>,
    pub(crate) plaintext_reason: Option<Error>,
    pub(crate) verification: Verification,
    pub(crate) transcript: Vec<DialogLine>,
    pub(crate) next_tag: u32,
    /// FTP: whether `PBSZ 0` / `PROT P` were sent.
    pub(crate) ftp_data_protected: bool,
    /// Server side: the name the client gave before TLS.
    pub(crate) peer_name: Option<String>,
    pub(crate) timings: Timings,
}

impl Connection {
    /// The protocol spoken.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Client side: the name the certificate was verified against (and sent in SNI unless it is
    /// an address). Server side: the name the client asked for in SNI (empty if none).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Server side: the name the client gave before TLS (EHLO/LHLO argument, XMPP `to`, HTTP
    /// `Host`). It came in plaintext: show it, do not act on it.
    pub fn peer_name(&self) -> Option<Untrusted<&str>> {
        self.peer_name.as_deref().map(Untrusted::new)
    }

    /// How long each step of the upgrade took.
    pub fn timings(&self) -> Timings {
        self.timings
    }

    /// True for a connection accepted by this library's server side.
    pub fn is_server(&self) -> bool {
        matches!(self.side, Side::Server(_))
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// True when the connection is protected by TLS.
    pub fn is_encrypted(&self) -> bool {
        !matches!(self.inner, Inner::Plain(_))
    }

    /// Why the connection is plaintext (opportunistic policy only); `None` when encrypted.
    pub fn plaintext_reason(&self) -> Option<&Error> {
        self.plaintext_reason.as_ref()
    }

    /// The server's greeting. For STARTTLS it came in plaintext and is informational only; for
    /// implicit TLS it was read inside TLS.
    pub fn greeting(&self) -> Option<&str> {
        self.greeting.as_deref()
    }

    /// Capabilities the server announced before TLS, when the dialog asked for them.
    pub fn capabilities_before_tls(&self) -> Option<&Untrusted<Vec<String>>> {
        self.capabilities_before_tls.as_ref()
    }

    /// Capabilities fetched inside TLS, if [`fetch_capabilities`](Self::fetch_capabilities) ran
    /// (or the config asked for it, or the implicit-TLS greeting carried them).
    pub fn capabilities(&self) -> Option<&[String]> {
        self.capabilities.as_deref()
    }

    /// Whether the server said, before TLS, that STARTTLS is available (advertised it, or for
    /// POP3 accepted or refused `STLS`); `None` when the dialog did not learn it (implicit TLS).
    /// Like everything before TLS, an attacker could have changed it.
    pub fn starttls_offered(&self) -> Option<bool> {
        self.starttls_offered
    }

    /// How the certificate was checked.
    pub fn verification(&self) -> &Verification {
        &self.verification
    }

    /// The dialog as it happened, one line per entry (both directions; inside TLS too).
    pub fn transcript(&self) -> &[DialogLine] {
        &self.transcript
    }

    fn tls(&self) -> Option<&rustls::CommonState> {
        match &self.inner {
            Inner::Tls(s) => Some(&s.conn),
            Inner::ServerTls(s) => Some(&s.conn),
            Inner::Plain(_) => None,
        }
    }

    /// The negotiated TLS version.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        self.tls()?.protocol_version()
    }

    /// The negotiated cipher suite.
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        Some(self.tls()?.negotiated_cipher_suite()?.suite())
    }

    /// The negotiated cipher suite's registered IANA name, e.g. `TLS_AES_256_GCM_SHA384` (rustls
    /// spells TLS 1.3 suites `TLS13_...`; this is the name the registry and OpenSSL's `-ciphersuites` use).
    pub fn cipher_suite_name(&self) -> Option<String> {
        self.cipher_suite().map(iana_cipher_suite_name)
    }

    /// The negotiated ALPN protocol.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls()?.alpn_protocol()
    }

    /// The peer's certificate chain (DER), leaf first: the server's, or on the server side the
    /// client's when it presented one.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.tls()?.peer_certificates()
    }

    /// True when this connection resumed an earlier TLS session.
    pub fn is_resumed(&self) -> bool {
        matches!(
            self.tls().and_then(|c| c.handshake_kind()),
            Some(rustls::HandshakeKind::Resumed)
        )
    }

    /// The socket underneath, for its addresses and options. Reading or writing it directly
    /// would bypass TLS and corrupt the session.
    pub fn tcp_stream(&self) -> &TcpStream {
        match &self.inner {
            Inner::Tls(s) => &s.sock,
            Inner::ServerTls(s) => &s.sock,
            Inner::Plain(s) => s,
        }
    }

    /// Asks the server for its capabilities again, inside TLS (EHLO/LHLO, CAPABILITY, CAPA),
    /// stores them, and returns them. Fails on a plaintext connection, where the answer could
    /// not be trusted, and for [`Protocol::Tls`], which has no dialog. The socket's timeouts are
    /// then set back to the config's I/O timeout.
    pub fn fetch_capabilities(&mut self) -> Result<&[String]> {
        let Some(dialect) = self.protocol.dialect() else {
            return Err(Error::InvalidArgument(
                "protocol `tls` has no capabilities to fetch".into(),
            ));
        };
        let caps =
            self.inside_tls(|wire, ctx| protocol::client_capabilities(dialect, wire, ctx))?;
        self.capabilities = Some(caps);
        Ok(self.capabilities.as_deref().unwrap_or_default())
    }

    /// Runs a client dialog step inside TLS (see [`with_tls_wire`](Self::with_tls_wire)).
    pub(crate) fn inside_tls<R>(
        &mut self,
        step: impl FnOnce(&mut Wire<'_, TlsTransport<'_>>, &mut DialogContext<'_>) -> Result<R>,
    ) -> Result<R> {
        let Side::Client(config) = self.side.clone() else {
            return Err(Error::InvalidArgument(
                "a client step on a server connection".into(),
            ));
        };
        let client_name = self.client_name.clone();
        let server_name = self.server_name.clone();
        let port = self.peer_addr.map(|a| a.port());
        let mut next_tag = self.next_tag;
        let result = self.with_tls_wire(|wire| {
            let mut ctx = DialogContext {
                policy: config.inner.policy,
                timeouts: &config.inner.timeouts,
                client_name: &client_name,
                server_name: &server_name,
                port,
                next_tag: &mut next_tag,
            };
            step(wire, &mut ctx)
        });
        self.next_tag = next_tag;
        result
    }

    /// Runs a dialog step inside TLS on the shared wire machinery: the transcript and observer
    /// see it, and the socket's timeouts go back to the I/O timeout afterwards.
    pub(crate) fn with_tls_wire<R>(
        &mut self,
        step: impl FnOnce(&mut Wire<'_, TlsTransport<'_>>) -> Result<R>,
    ) -> Result<R> {
        let sock = self
            .tcp_stream()
            .try_clone()
            .map_err(|e| Error::from_io(Phase::Read, e))?;
        let stream: &mut dyn ReadWrite = match &mut self.inner {
            Inner::Tls(s) => &mut **s,
            Inner::ServerTls(s) => &mut **s,
            Inner::Plain(_) => {
                return Err(Error::InvalidArgument(
                    "connection is not encrypted: capabilities would be untrusted".into(),
                ));
            }
        };
        let mut transport = TlsTransport {
            stream,
            sock,
            lookahead: &mut self.lookahead,
        };
        let mut wire =
            Wire::inside_tls(&mut transport, self.side.limits()).observed_by(self.side.observer());
        let result = step(&mut wire);
        self.transcript.extend(wire.take_transcript());
        let phase = result
            .as_ref()
            .err()
            .and_then(Error::phase)
            .unwrap_or(Phase::Read);
        set_io_timeouts(self.tcp_stream(), self.side.timeouts().io)
            .map_err(|e| Error::from_io(phase, e))?;
        result
    }

    /// Ends the session politely: the protocol's goodbye inside TLS (SMTP/LMTP/POP3/NNTP/FTP
    /// `QUIT`, IMAP and ManageSieve `LOGOUT`, LDAP UnbindRequest, XMPP `</stream:stream>` when
    /// a stream was opened inside TLS), its reply read when there is one, then
    /// [`close`](Self::close). Client side, encrypted connections only; otherwise just `close`.
    pub fn quit(&mut self) -> Result<()> {
        self.say_goodbye()?;
        self.close()
    }

    /// As [`quit`](Self::quit), but only close_notify at the end: the socket itself is left
    /// alone (for a caller that owns it).
    pub fn quit_keep_socket(&mut self) -> Result<()> {
        self.say_goodbye()?;
        self.send_close_notify()
    }

    fn say_goodbye(&mut self) -> Result<()> {
        if let (Side::Client(_), true, Some(dialect)) =
            (&self.side, self.is_encrypted(), self.protocol.dialect())
        {
            let stream_open = self.capabilities.is_some();
            self.inside_tls(|wire, ctx| protocol::client_goodbye(dialect, wire, ctx, stream_open))?;
        }
        Ok(())
    }

    /// Sends close_notify (on an encrypted connection) without touching the socket itself.
    pub fn send_close_notify(&mut self) -> Result<()> {
        match &mut self.inner {
            Inner::Tls(s) => {
                take_waiting_records(s);
                s.conn.send_close_notify();
                s.flush().map_err(|e| Error::from_io(Phase::Close, e))
            }
            Inner::ServerTls(s) => {
                s.conn.send_close_notify();
                s.flush().map_err(|e| Error::from_io(Phase::Close, e))
            }
            Inner::Plain(_) => Ok(()),
        }
    }

    /// Sends close_notify and shuts the socket's write side. Reading may continue until the
    /// peer closes. Calling it twice is harmless.
    pub fn close(&mut self) -> Result<()> {
        self.send_close_notify()?;
        match self.tcp_stream().shutdown(Shutdown::Write) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            Err(e) => Err(Error::from_io(Phase::Close, e)),
        }
    }
}

/// Processes TLS records that already arrived without blocking, so that session tickets sent
/// after the handshake are kept even on a connection that was only written to (an FTP upload):
/// later connections can then resume.
fn take_waiting_records(s: &mut StreamOwned<ClientConnection, TcpStream>) {
    if s.sock.set_nonblocking(true).is_err() {
        return;
    }
    for _ in 0..16 {
        match s.conn.read_tls(&mut s.sock) {
            Ok(n) if n > 0 => {
                if s.conn.process_new_packets().is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    let _ = s.sock.set_nonblocking(false);
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.lookahead.is_empty() {
            let n = buf.len().min(self.lookahead.len());
            buf[..n].copy_from_slice(&self.lookahead[..n]);
            self.lookahead.drain(..n);
            return Ok(n);
        }
        match &mut self.inner {
            Inner::Tls(s) => s.read(buf),
            Inner::ServerTls(s) => s.read(buf),
            Inner::Plain(s) => s.read(buf),
        }
    }
}

/// The most plaintext handed to rustls per write: three full records, whose ciphertext (about
/// 48 KiB) goes out in one socket write below loopback's 64 KiB MTU. A whole 64 KiB write became
/// 65.6 KB of ciphertext, one full segment and a runt, and ran at half the throughput
/// (bench/run.sh, section 2); a multiple of 16 KiB keeps every record full.
const TLS_WRITE_CHUNK: usize = 3 * 16 * 1024;

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let chunk = &buf[..buf.len().min(TLS_WRITE_CHUNK)];
        match &mut self.inner {
            Inner::Tls(s) => s.write(chunk),
            Inner::ServerTls(s) => s.write(chunk),
            Inner::Plain(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Tls(s) => s.flush(),
            Inner::ServerTls(s) => s.flush(),
            Inner::Plain(s) => s.flush(),
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("protocol", &self.protocol)
            .field("server_name", &self.server_name)
            .field("peer_addr", &self.peer_addr)
            .field("encrypted", &self.is_encrypted())
            .field("tls_version", &self.tls_version())
            .field("cipher_suite", &self.cipher_suite())
            .field("verification", &self.verification)
            .finish_non_exhaustive()
    }
}

/// The IANA registry name of a cipher suite (`TLS13_AES_128_GCM_SHA256` becomes
/// `TLS_AES_128_GCM_SHA256`; TLS 1.2 names are already the registry's).
pub fn iana_cipher_suite_name(suite: rustls::CipherSuite) -> String {
    let name = suite
        .as_str()
        .map_or_else(|| format!("{suite:?}"), str::to_owned);
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}
