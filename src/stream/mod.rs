//! The upgraded connection: a `rustls::StreamOwned` plus what the dialog learned, and the steps
//! a connection runs inside TLS (capabilities again, login, goodbye, close_notify). Reading and
//! writing application data is in `data`.

mod data;
mod relay;

pub use relay::{Relayed, relay_sockets};

use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use std::time::Instant;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, ServerConnection, StreamOwned};

use crate::config::ClientConfig;
use crate::error::{Error, Phase, Result};
use crate::handshake;
use crate::protocol::sasl::{AuthOutcome, ChannelBindings, Credentials, Login, Proof};
use crate::protocol::{DialogContext, Outcome, PreTls, Protocol, ServerContext};
use crate::server_config::ServerConfig;
use crate::sys::Socket;
use crate::verify::{DaneStatus, DaneVerifier};
use crate::wire::transport::{ReadBuffer, TlsStream, TlsTransport};
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
    /// Verification was switched off (`dangerous`), or, for SMTP with TLSA records none of
    /// which could be used, not possible (RFC 7672 §2.2: encrypted, unauthenticated). `problem`
    /// says what verification would have rejected or why it could not run, or is `None` when
    /// the chain would have passed.
    Skipped {
        /// What the real verifier said.
        problem: Option<String>,
    },
    /// No TLS: the connection is plaintext (opportunistic policy).
    NotEncrypted,
    /// Server side: the client presented no certificate (none was required).
    NoPeerCertificate,
}

enum Inner {
    Tls(Box<StreamOwned<ClientConnection, Socket>>),
    ServerTls(Box<StreamOwned<ServerConnection, Socket>>),
    Plain(TcpStream),
}

/// Which end of the connection this is, with its configuration.
#[derive(Clone)]
pub(crate) enum Side {
    Client(ClientConfig),
    Server(ServerConfig),
}

impl Side {
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
    inner: Inner,
    /// Bytes read from TLS by a dialog step but not part of its reply; served to `read` first.
    lookahead: ReadBuffer,
    pub(crate) side: Side,
    protocol: Protocol,
    peer_addr: Option<SocketAddr>,
    /// Who talks to whom, and the protocol's state between steps (client side; on the server
    /// side only the names are used).
    pub(crate) dialog: DialogContext,
    learned: Learned,
    verification: Verification,
    /// The connection's own TLS config when DANE authenticated it (its FTP data channels use
    /// it too), and what DANE decided.
    pub(crate) dane: Option<DaneTls>,
    dane_status: Option<DaneStatus>,
    transcript: Vec<DialogLine>,
    pub(crate) timings: Timings,
}

/// A connection's own rustls config for DANE, with its verifier.
#[derive(Clone)]
pub(crate) struct DaneTls {
    pub tls: std::sync::Arc<rustls::ClientConfig>,
    pub verifier: std::sync::Arc<DaneVerifier>,
}

/// What the dialog learned about the peer.
#[derive(Default)]
struct Learned {
    greeting: Option<String>,
    capabilities_before_tls: Option<Untrusted<Vec<String>>>,
    capabilities: Option<Vec<String>>,
    starttls_offered: Option<bool>,
    plaintext_reason: Option<Error>,
    /// Server side: the name the client gave before TLS.
    peer_name: Option<String>,
}

impl Connection {
    /// The one constructor: a connection over `inner`, nothing learned yet.
    fn new(inner: Inner, side: Side, protocol: Protocol, dialog: DialogContext) -> Connection {
        let mut conn = Connection {
            inner,
            lookahead: ReadBuffer::default(),
            side,
            protocol,
            peer_addr: None,
            dialog,
            learned: Learned::default(),
            verification: Verification::NotEncrypted,
            dane: None,
            dane_status: None,
            transcript: Vec::new(),
            timings: Timings::default(),
        };
        conn.peer_addr = conn.tcp_stream().peer_addr().ok();
        conn
    }

    /// Client side: the connection after a pre-TLS dialog that ended in plaintext (opportunistic
    /// policy); `pre` says why.
    pub(crate) fn client_plaintext(
        config: &ClientConfig,
        protocol: Protocol,
        tcp: TcpStream,
        dialog: DialogContext,
        pre: PreTls,
        transcript: Vec<DialogLine>,
    ) -> Result<Connection> {
        set_io_timeouts(&tcp, config.inner.timeouts.io)
            .map_err(|e| Error::from_io(Phase::Read, e))?;
        let mut conn = Connection::new(
            Inner::Plain(tcp),
            Side::Client(config.clone()),
            protocol,
            dialog,
        );
        conn.learn_before_tls(pre, transcript);
        Ok(conn)
    }

    /// Client side: the TLS handshake on `tcp` (after the dialog `pre` and its `transcript`, if
    /// any) and the encrypted connection. `after_go_ahead`: non-TLS bytes from the server are an
    /// injection rather than a server that does not speak TLS.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn client_tls(
        config: &ClientConfig,
        protocol: Protocol,
        tcp: TcpStream,
        name: ServerName<'static>,
        after_go_ahead: bool,
        dialog: DialogContext,
        pre: PreTls,
        transcript: Vec<DialogLine>,
        dane: Option<DaneTls>,
    ) -> Result<Connection> {
        let started = Instant::now();
        let tls = match &dane {
            Some(d) => d.tls.clone(),
            None => config.tls_for(protocol.alpn(), protocol.key_share()),
        };
        let stream = handshake::client(
            config,
            tls,
            protocol.alpn(),
            tcp,
            name.clone(),
            after_go_ahead,
        )?;
        let handshake_time = started.elapsed();
        let chain = stream.conn.peer_certificates().unwrap_or_default();
        let dane_status = dane.as_ref().and_then(|d| d.verifier.status());
        let verification = if dane_status == Some(DaneStatus::NoUsableRecords)
            && protocol == Protocol::Smtp
        {
            Verification::Skipped {
                problem: Some(
                    "no usable TLSA record: encrypted but not authenticated (RFC 7672 §2.2)".into(),
                ),
            }
        } else if config.inner.dangerous_no_verify {
            Verification::Skipped {
                problem: config
                    .check_chain(chain, &name)
                    .err()
                    .map(|e| e.to_string()),
            }
        } else {
            Verification::Verified
        };
        set_io_timeouts(&stream.sock, config.inner.timeouts.io)
            .map_err(|e| Error::from_io(Phase::Handshake, e))?;
        let mut conn = Connection::new(
            Inner::Tls(Box::new(stream)),
            Side::Client(config.clone()),
            protocol,
            dialog,
        );
        conn.learn_before_tls(pre, transcript);
        conn.verification = verification;
        conn.dane = dane;
        conn.dane_status = dane_status;
        conn.timings.handshake = Some(handshake_time);
        Ok(conn)
    }

    /// Client side, inside TLS: the implicit-TLS greeting, or what the server says first after
    /// STARTTLS; then the capabilities when the config asks for them.
    pub(crate) fn client_first_steps_inside_tls(&mut self) -> Result<()> {
        let Some(dialog) = self.protocol.dialog() else {
            return Ok(());
        };
        if self.protocol.is_implicit() {
            if let Some(g) = self.inside_tls(|w, ctx| dialog.client_greeting(w, ctx))? {
                self.learned.greeting = Some(g.text);
                self.learned.capabilities = g.capabilities;
            }
        } else if let Some(caps) = self.inside_tls(|w, ctx| dialog.client_after_starttls(w, ctx))? {
            self.learned.capabilities = Some(caps);
        }
        let fetch = match &self.side {
            Side::Client(c) => c.inner.fetch_capabilities,
            Side::Server(_) => false,
        };
        if fetch && dialog.has_capabilities() && self.learned.capabilities.is_none() {
            self.fetch_capabilities()?;
        }
        Ok(())
    }

    /// Server side: the encrypted connection after the handshake, then what the server says
    /// first inside TLS.
    pub(crate) fn server_tls(
        config: &ServerConfig,
        protocol: Protocol,
        stream: StreamOwned<ServerConnection, Socket>,
        peer_name: Option<String>,
        transcript: Vec<DialogLine>,
    ) -> Result<Connection> {
        let inner = &config.inner;
        set_io_timeouts(&stream.sock, inner.timeouts.io)
            .map_err(|e| Error::from_io(Phase::Handshake, e))?;
        let sni = stream.conn.server_name().unwrap_or_default().to_owned();
        // A client certificate, when present, was verified by rustls against the client CAs.
        let verification = if stream.conn.peer_certificates().is_some() {
            Verification::Verified
        } else {
            Verification::NoPeerCertificate
        };
        let port = stream.sock.local_addr().ok().map(|a| a.port());
        let dialog = DialogContext::new(
            crate::config::Policy::Require,
            inner.timeouts,
            String::new(),
            sni,
            port,
        );
        let mut conn = Connection::new(
            Inner::ServerTls(Box::new(stream)),
            Side::Server(config.clone()),
            protocol,
            dialog,
        );
        conn.verification = verification;
        conn.transcript = transcript;
        conn.learned.peer_name = peer_name;
        if let Some(dialog) = protocol.dialog() {
            let ctx = ServerContext::new(config);
            if let Some(first) = dialog.server_first_inside_tls(&ctx, protocol.is_implicit()) {
                conn.with_tls_wire(|wire, _| {
                    wire.send_reply(&first, &ctx.deadline(Phase::Greeting))
                })?;
            }
        }
        Ok(conn)
    }

    fn learn_before_tls(&mut self, pre: PreTls, transcript: Vec<DialogLine>) {
        self.learned.greeting = pre.greeting;
        self.learned.capabilities_before_tls = pre.capabilities.map(Untrusted::new);
        self.learned.starttls_offered = pre.starttls_offered;
        if let Outcome::Plaintext(reason) = pre.outcome {
            self.learned.plaintext_reason = Some(reason);
        }
        self.transcript = transcript;
    }
}

impl Connection {
    /// The protocol spoken.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Client side: the name the certificate was verified against (and sent in SNI unless it is
    /// an address). Server side: the name the client asked for in SNI (empty if none).
    pub fn server_name(&self) -> &str {
        &self.dialog.server_name
    }

    /// Server side: the name the client gave before TLS (EHLO/LHLO argument, XMPP `to`, HTTP
    /// `Host`). It came in plaintext: show it, do not act on it.
    pub fn peer_name(&self) -> Option<Untrusted<&str>> {
        self.learned.peer_name.as_deref().map(Untrusted::new)
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
        self.learned.plaintext_reason.as_ref()
    }

    /// The server's greeting. For STARTTLS it came in plaintext and is informational only; for
    /// implicit TLS it was read inside TLS.
    pub fn greeting(&self) -> Option<&str> {
        self.learned.greeting.as_deref()
    }

    /// Capabilities the server announced before TLS, when the dialog asked for them.
    pub fn capabilities_before_tls(&self) -> Option<&Untrusted<Vec<String>>> {
        self.learned.capabilities_before_tls.as_ref()
    }

    /// Capabilities fetched inside TLS, if [`fetch_capabilities`](Self::fetch_capabilities) ran
    /// (or the config asked for it, or the implicit-TLS greeting carried them).
    pub fn capabilities(&self) -> Option<&[String]> {
        self.learned.capabilities.as_deref()
    }

    /// Whether the server said, before TLS, that STARTTLS is available (advertised it, or for
    /// POP3 accepted or refused `STLS`); `None` when the dialog did not learn it (implicit TLS).
    /// Like everything before TLS, an attacker could have changed it.
    pub fn starttls_offered(&self) -> Option<bool> {
        self.learned.starttls_offered
    }

    /// How the certificate was checked.
    pub fn verification(&self) -> &Verification {
        &self.verification
    }

    /// What DANE decided, when the connection was made with TLSA records
    /// ([`crate::ConnectOptions::tlsa`]): the record that authenticated the server, or that none
    /// could be used. `None` without records.
    pub fn dane(&self) -> Option<&DaneStatus> {
        self.dane_status.as_ref()
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

    /// The key exchange group the handshake used, by its registered name: `X25519MLKEM768`,
    /// `X25519`, `secp256r1`, ... (`None` for a resumed TLS 1.2 session or without TLS).
    pub fn key_exchange_group(&self) -> Option<String> {
        let group = self.tls()?.negotiated_key_exchange_group()?.name();
        Some(format!("{group:?}"))
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

    /// What the peer's leaf certificate says about itself (validity, subject, names, SHA-256 of
    /// the certificate and of its public key), for programs that pin or watch expiry themselves.
    pub fn peer_certificate_facts(&self) -> Option<crate::certificate::CertificateFacts> {
        crate::certificate::CertificateFacts::from_der(self.peer_certificates()?.first()?)
    }

    /// How the TLS handshake went: full, full after a HelloRetryRequest (the first key share
    /// did not suit the server: one round trip more), or resumed.
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        self.tls()?.handshake_kind()
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
        let Some(dialog) = self.protocol.dialog() else {
            return Err(Error::InvalidArgument(
                "protocol `tls` has no capabilities to fetch".into(),
            ));
        };
        let caps = self.inside_tls(|wire, ctx| dialog.client_capabilities(wire, ctx))?;
        self.learned.capabilities = Some(caps);
        Ok(self.learned.capabilities.as_deref().unwrap_or_default())
    }

    /// Logs in inside TLS with the strongest mechanism offered in the capabilities fetched
    /// **inside** TLS (fetched now if needed), in the protocol's SASL exchange (SMTP/LMTP
    /// `AUTH`, IMAP `AUTHENTICATE` with SASL-IR when offered, POP3 `AUTH`, ManageSieve
    /// `AUTHENTICATE`, NNTP `AUTHINFO SASL`, XMPP SASL after the stream restart):
    ///
    /// - a password ([`Credentials::new`]): SCRAM-SHA-256-PLUS bound to this TLS connection
    ///   (`tls-exporter` on TLS 1.3, else `tls-server-end-point`), SCRAM-SHA-256 (the server's
    ///   signature is checked: a server that does not know the password fails), PLAIN; then the
    ///   protocol's own: SMTP `AUTH LOGIN`, IMAP `LOGIN`, POP3 `USER`/`PASS`, NNTP
    ///   `AUTHINFO USER`, LDAP simple bind, FTP `USER`/`PASS`. PostgreSQL: the StartupMessage,
    ///   then SCRAM-SHA-256-PLUS, SCRAM-SHA-256, md5 or the password as the server asks, up to
    ///   ReadyForQuery (the connection is then ready for queries);
    /// - a bearer token ([`Credentials::bearer_token`]): OAUTHBEARER, else XOAUTH2, never
    ///   anything else;
    /// - the client certificate ([`Credentials::client_certificate`]): SASL EXTERNAL (LDAP: a
    ///   SASL bind).
    ///
    /// Refuses ([`Error::NotEncrypted`]) on a connection that is not encrypted, whatever the
    /// policy, and ([`Error::InvalidArgument`]) on one whose certificate was not verified unless
    /// the config allows it
    /// ([`dangerous_allow_login_without_verification`](crate::ClientConfigBuilder::dangerous_allow_login_without_verification)).
    /// A rejected login is [`Error::AuthFailed`] with the server's reply; no usable mechanism
    /// inside TLS is [`Error::NotOffered`]. Credentials never appear in the transcript,
    /// the dialog observer or error messages.
    pub fn authenticate(&mut self, credentials: &Credentials) -> Result<AuthOutcome> {
        credentials.check()?;
        if !self.is_encrypted() {
            return Err(Error::NotEncrypted);
        }
        let Side::Client(config) = &self.side else {
            return Err(Error::InvalidArgument(
                "authenticate is a client step".into(),
            ));
        };
        if self.verification != Verification::Verified && !config.inner.dangerous_login_unverified {
            return Err(Error::InvalidArgument(
                "refusing to send credentials: the server's certificate was not verified \
                 (dangerous_accept_any_certificate), so anyone in the middle would get them; \
                 dangerous_allow_login_without_verification overrides"
                    .into(),
            ));
        }
        let Some(dialog) = self.protocol.dialog() else {
            return Err(Error::InvalidArgument(
                "protocol `tls` has no login step; speak the application protocol".into(),
            ));
        };
        if !dialog.has_login() {
            return Err(Error::InvalidArgument(format!(
                "no login step for {} in this library",
                self.protocol
            )));
        }
        if credentials.proof() == Proof::ClientCertificate
            && !config.inner.tls.client_auth_cert_resolver.has_certs()
        {
            return Err(Error::InvalidArgument(
                "SASL EXTERNAL logs in with the TLS client certificate, and this config \
                 presents none (client_certificate)"
                    .into(),
            ));
        }
        if dialog.login_needs_capabilities() && self.learned.capabilities.is_none() {
            self.fetch_capabilities()?;
        }
        let caps = self.learned.capabilities.clone().unwrap_or_default();
        let bindings = self.channel_bindings();
        let login = Login {
            creds: credentials,
            bindings: &bindings,
        };
        self.inside_tls(|wire, ctx| dialog.client_authenticate(wire, ctx, &caps, &login))
    }

    /// What a login can be bound to on this connection: `tls-exporter` (RFC 9266) on TLS 1.3,
    /// `tls-server-end-point` (RFC 5929) from the server's certificate.
    pub(crate) fn channel_bindings(&self) -> ChannelBindings {
        let mut bindings = ChannelBindings::default();
        if let Inner::Tls(s) = &self.inner {
            if s.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
                let mut out = zeroize::Zeroizing::new(vec![0u8; 32]);
                if s.conn
                    .export_keying_material(&mut out[..], b"EXPORTER-Channel-Binding", None)
                    .is_ok()
                {
                    bindings.exporter = Some(out);
                }
            }
        }
        bindings.server_end_point = self
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| crate::certificate::server_end_point(leaf));
        bindings
    }

    /// Runs a client dialog step inside TLS (see [`with_tls_wire`](Self::with_tls_wire)).
    pub(crate) fn inside_tls<R>(
        &mut self,
        step: impl FnOnce(&mut Wire<'_>, &mut DialogContext) -> Result<R>,
    ) -> Result<R> {
        if self.is_server() {
            return Err(Error::InvalidArgument(
                "a client step on a server connection".into(),
            ));
        }
        self.with_tls_wire(step)
    }

    /// Runs a dialog step inside TLS on the shared wire machinery: the transcript and observer
    /// see it, and the socket's timeouts go back to the I/O timeout afterwards.
    fn with_tls_wire<R>(
        &mut self,
        step: impl FnOnce(&mut Wire<'_>, &mut DialogContext) -> Result<R>,
    ) -> Result<R> {
        let stream: &mut dyn TlsStream = match &mut self.inner {
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
            lookahead: &mut self.lookahead,
            read_timeout_changed: false,
        };
        let mut wire =
            Wire::inside_tls(&mut transport, self.side.limits()).observed_by(self.side.observer());
        let result = step(&mut wire, &mut self.dialog);
        self.transcript.extend(wire.take_transcript());
        drop(wire);
        if transport.read_timeout_changed {
            let phase = result
                .as_ref()
                .err()
                .and_then(Error::phase)
                .unwrap_or(Phase::Read);
            let io = self.dialog.timeouts.io;
            self.tcp_stream()
                .set_read_timeout((!io.is_zero()).then_some(io))
                .map_err(|e| Error::from_io(phase, e))?;
        }
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
        if let (Side::Client(_), true, Some(dialog)) =
            (&self.side, self.is_encrypted(), self.protocol.dialog())
        {
            self.inside_tls(|wire, ctx| dialog.client_goodbye(wire, ctx))?;
        }
        Ok(())
    }

    /// Queues close_notify without sending it (a non-blocking caller then flushes).
    pub(crate) fn queue_close_notify(&mut self) {
        match &mut self.inner {
            Inner::Tls(s) => s.conn.send_close_notify(),
            Inner::ServerTls(s) => s.conn.send_close_notify(),
            Inner::Plain(_) => {}
        }
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
fn take_waiting_records(s: &mut StreamOwned<ClientConnection, Socket>) {
    let mut probe = [0u8; 1];
    for _ in 0..16 {
        // Only what already arrived: a peek that never waits says whether there is any, so the
        // socket's mode is left alone (and costs no system calls to switch back and forth).
        if !matches!(crate::sys::peek_now(&s.sock, &mut probe), Ok(n) if n > 0) {
            break;
        }
        match s.conn.read_tls(&mut s.sock) {
            Ok(n) if n > 0 => {
                if s.conn.process_new_packets().is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("protocol", &self.protocol)
            .field("server_name", &self.server_name())
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
