//! Server entry points: an accepted socket, a protocol's server dialog and the TLS handshake.

use std::net::TcpStream;

use rustls::{ServerConnection, StreamOwned};

use crate::error::{Error, Phase, Result};
use crate::handshake;
use crate::protocol::{self, Protocol, ServerContext};
use crate::server_config::ServerConfig;
use crate::stream::{Connection, Inner, Side, Timings, Verification};
use crate::wire::{Deadline, Wire, set_io_timeouts};

/// Plays the server's side of `protocol`'s upgrade on a socket the caller accepted: greeting,
/// capabilities advertising STARTTLS, the answer to STARTTLS, the handshake. Commands that need
/// TLS get the protocol's "TLS first" reply; credentials before TLS are refused. Returns the
/// encrypted connection positioned where the client speaks next (SMTP: the client sends EHLO).
///
/// A client that pipelines anything after its STARTTLS command gets no go-ahead: the accept
/// fails with [`Error::Injection`] and the bytes are never read as commands.
pub fn accept(config: &ServerConfig, protocol: Protocol, tcp: TcpStream) -> Result<Connection> {
    accept_inner(config, protocol, tcp, false)
}

/// TLS only, for a server that ran its own dialog and just sent its go-ahead. `buffered` is
/// whatever the caller had already read from the client beyond its STARTTLS command: if it is
/// not empty, the client pipelined data after STARTTLS, and the accept fails with
/// [`Error::Injection`] without reading anything.
pub fn accept_tls(config: &ServerConfig, tcp: TcpStream, buffered: &[u8]) -> Result<Connection> {
    if !buffered.is_empty() {
        return Err(Error::Injection {
            bytes: buffered.len(),
            detail: "the caller had read them after the client's STARTTLS command".into(),
        });
    }
    accept_inner(config, Protocol::Tls, tcp, true)
}

fn accept_inner(
    config: &ServerConfig,
    protocol: Protocol,
    mut tcp: TcpStream,
    go_ahead_sent_by_caller: bool,
) -> Result<Connection> {
    let inner = &config.inner;
    tcp.set_nonblocking(false)
        .and_then(|()| tcp.set_nodelay(true))
        .map_err(|e| Error::from_io(Phase::Connect, e))?;
    let ctx = ServerContext {
        timeouts: &inner.timeouts,
        hostname: &inner.hostname,
        greeting: inner.greeting.as_deref(),
    };
    let mut after_go_ahead = go_ahead_sent_by_caller;
    let mut transcript = Vec::new();
    let mut peer_name = None;
    if let (false, Some(dialect)) = (protocol.is_implicit(), protocol.dialect()) {
        let mut wire = Wire::new(&mut tcp, inner.limits).observed_by(inner.observer.as_deref());
        let pre = protocol::server_starttls(dialect, &mut wire, &ctx);
        transcript = wire.take_transcript();
        peer_name = pre?.peer_name;
        after_go_ahead = true;
    }

    let mut tls = ServerConnection::new(config.tls_for(protocol)).map_err(Error::from_tls)?;
    let deadline = Deadline::after(inner.timeouts.handshake, Phase::Handshake);
    let tcp = handshake::drive(&mut tls, tcp, deadline, after_go_ahead)?;
    if protocol.alpn_mandatory() && tls.alpn_protocol() != protocol.required_alpn() {
        return Err(Error::violation(
            Phase::Handshake,
            "the client did not offer the ALPN this protocol requires",
        ));
    }
    set_io_timeouts(&tcp, inner.timeouts.io).map_err(|e| Error::from_io(Phase::Handshake, e))?;
    let server_name = tls.server_name().unwrap_or_default().to_owned();
    // A client certificate, when present, was verified by rustls against the client CAs.
    let verification = if tls.peer_certificates().is_some() {
        Verification::Verified
    } else {
        Verification::NoPeerCertificate
    };
    let mut conn = Connection {
        peer_addr: tcp.peer_addr().ok(),
        inner: Inner::ServerTls(Box::new(StreamOwned::new(tls, tcp))),
        lookahead: Vec::new(),
        side: Side::Server(config.clone()),
        protocol,
        server_name,
        client_name: String::new(),
        greeting: None,
        capabilities_before_tls: None,
        capabilities: None,
        starttls_offered: None,
        plaintext_reason: None,
        verification,
        transcript,
        next_tag: 1,
        ftp_data_protected: false,
        peer_name,
        timings: Timings::default(),
    };
    if let Some(dialect) = protocol.dialect() {
        let implicit = protocol.is_implicit();
        conn.with_tls_wire(|wire| protocol::server_after_tls(dialect, wire, &ctx, implicit))?;
    }
    Ok(conn)
}
