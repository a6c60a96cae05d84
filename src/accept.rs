//! Server entry points: an accepted socket, a protocol's server dialog and the TLS handshake.

use std::net::TcpStream;

use crate::error::{Error, Result};
use crate::handshake;
use crate::protocol::{Protocol, ServerContext};
use crate::server_config::ServerConfig;
use crate::stream::Connection;
use crate::wire::transport::PlainTransport;
use crate::wire::{Wire, prepare_socket};

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
    tcp: TcpStream,
    go_ahead_sent_by_caller: bool,
) -> Result<Connection> {
    let inner = &config.inner;
    prepare_socket(&tcp, false)?;
    let mut after_go_ahead = go_ahead_sent_by_caller;
    let mut transcript = Vec::new();
    let mut peer_name = None;
    if let (false, Some(dialog)) = (protocol.is_implicit(), protocol.dialog()) {
        let ctx = ServerContext::new(config);
        let mut plain = PlainTransport::new(&tcp, true);
        let mut wire = Wire::new(&mut plain, inner.limits).observed_by(inner.observer.as_deref());
        let pre = dialog.server_starttls(&mut wire, &ctx);
        transcript = wire.take_transcript();
        peer_name = pre?.peer_name;
        after_go_ahead = true;
    }
    let stream = handshake::server(config, protocol.alpn(), tcp, after_go_ahead)?;
    Connection::server_tls(config, protocol, stream, peer_name, transcript)
}
