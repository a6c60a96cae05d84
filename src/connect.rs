//! Client entry points: a socket, a protocol's dialog and the TLS handshake, tied together.

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::config::ClientConfig;
use crate::error::{Error, Phase, Result};
use crate::handshake;
use crate::protocol::{self, DialogContext, Outcome, Protocol};
use crate::stream::{Connection, Inner, Side, Timings, Untrusted, Verification};
use crate::wire::{Deadline, Wire, set_io_timeouts};

/// Connects to `host:port`, runs `protocol`'s upgrade, and verifies the certificate for `host`.
///
/// `host` is a DNS name, an IPv4 address, or an IPv6 address (bare or in brackets). Every
/// resolved address is tried in turn, each within the connect timeout.
pub fn connect(
    config: &ClientConfig,
    protocol: Protocol,
    host: &str,
    port: u16,
) -> Result<Connection> {
    connect_named(config, protocol, host, port, unbracket(host))
}

/// As [`connect`], but verifies the certificate for `server_name` instead of `host` (and sends it
/// in SNI): for a server reached by address, or under another name.
pub fn connect_named(
    config: &ClientConfig,
    protocol: Protocol,
    host: &str,
    port: u16,
    server_name: &str,
) -> Result<Connection> {
    let started = Instant::now();
    let tcp = tcp_connect(host, port, config.timeouts().connect)?;
    let connected = started.elapsed();
    let mut conn = upgrade(config, protocol, tcp, server_name)?;
    conn.timings.connect = Some(connected);
    conn.timings.total = started.elapsed();
    Ok(conn)
}

/// Runs `protocol`'s upgrade on a socket the caller already connected, verifying the certificate
/// for `server_name`. The socket is taken over; nothing must have been read from it yet.
///
/// The socket is put in blocking mode with `TCP_NODELAY`, and its read/write timeouts are set
/// for each step (then to the I/O timeout).
pub fn upgrade(
    config: &ClientConfig,
    protocol: Protocol,
    tcp: TcpStream,
    server_name: &str,
) -> Result<Connection> {
    upgrade_inner(config, protocol, tcp, server_name, false)
}

/// TLS only, on a socket whose dialog the caller ran itself and whose go-ahead it has read (and
/// nothing after it). Plaintext from the server before its first TLS record is an injection.
pub fn handshake_only(
    config: &ClientConfig,
    tcp: TcpStream,
    server_name: &str,
) -> Result<Connection> {
    upgrade_inner(config, Protocol::Tls, tcp, server_name, true)
}

/// `go_ahead_read_by_caller`: the caller ran the dialog, so non-TLS bytes are an injection rather
/// than a server that does not speak TLS.
fn upgrade_inner(
    config: &ClientConfig,
    protocol: Protocol,
    mut tcp: TcpStream,
    server_name: &str,
    go_ahead_read_by_caller: bool,
) -> Result<Connection> {
    let started = Instant::now();
    let name = parse_server_name(server_name)?;
    let mut after_go_ahead = go_ahead_read_by_caller;
    let inner = &config.inner;
    // Blocking mode with timeouts is how every step is bounded; flights go out whole, with no
    // Nagle stall between a command and the handshake (DESIGN §6).
    tcp.set_nonblocking(false)
        .and_then(|()| tcp.set_nodelay(true))
        .map_err(|e| Error::from_io(Phase::Connect, e))?;
    let client_name = match &inner.client_name {
        Some(n) => n.clone(),
        None => address_literal(&tcp),
    };
    let mut conn = Connection {
        inner: Inner::Plain(
            tcp.try_clone()
                .map_err(|e| Error::from_io(Phase::Connect, e))?,
        ),
        lookahead: Vec::new(),
        side: Side::Client(config.clone()),
        protocol,
        server_name: server_name.to_owned(),
        peer_addr: tcp.peer_addr().ok(),
        client_name,
        greeting: None,
        capabilities_before_tls: None,
        capabilities: None,
        starttls_offered: None,
        plaintext_reason: None,
        verification: Verification::NotEncrypted,
        transcript: Vec::new(),
        next_tag: 1,
        ftp_data_protected: false,
        peer_name: None,
        timings: Timings::default(),
    };

    if let (false, Some(dialect)) = (protocol.is_implicit(), protocol.dialect()) {
        let mut wire = Wire::new(&mut tcp, inner.limits).observed_by(inner.observer.as_deref());
        let mut ctx = DialogContext {
            policy: inner.policy,
            timeouts: &inner.timeouts,
            client_name: &conn.client_name,
            server_name: &conn.server_name,
            port: conn.peer_addr.map(|a| a.port()),
            next_tag: &mut conn.next_tag,
        };
        let pre = protocol::client_starttls(dialect, &mut wire, &mut ctx);
        conn.transcript = wire.take_transcript();
        let pre = pre?;
        conn.greeting = pre.greeting;
        conn.capabilities_before_tls = pre.capabilities.map(Untrusted::new);
        conn.starttls_offered = pre.starttls_offered;
        conn.timings.dialog = Some(started.elapsed());
        if let Outcome::Plaintext(reason) = pre.outcome {
            set_io_timeouts(&tcp, inner.timeouts.io).map_err(|e| Error::from_io(Phase::Read, e))?;
            conn.plaintext_reason = Some(reason);
            return Ok(conn);
        }
        wire.ensure_nothing_after_go_ahead()?;
        after_go_ahead = true;
    }

    let handshake_started = Instant::now();
    let stream = handshake(config, protocol, tcp, name.clone(), after_go_ahead)?;
    conn.timings.handshake = Some(handshake_started.elapsed());
    let chain = stream.conn.peer_certificates().unwrap_or_default();
    conn.verification = if inner.dangerous_no_verify {
        Verification::Skipped {
            problem: config
                .check_chain(chain, &name)
                .err()
                .map(|e| e.to_string()),
        }
    } else {
        Verification::Verified
    };
    set_io_timeouts(&stream.sock, inner.timeouts.io)
        .map_err(|e| Error::from_io(Phase::Handshake, e))?;
    conn.inner = Inner::Tls(Box::new(stream));

    if let Some(dialect) = protocol.dialect() {
        if protocol.is_implicit() {
            let greeting = conn.inside_tls(|w, ctx| protocol::client_greeting(dialect, w, ctx))?;
            if let Some(g) = greeting {
                conn.greeting = Some(g.text);
                conn.capabilities = g.capabilities;
            }
        } else if let Some(caps) =
            conn.inside_tls(|w, ctx| protocol::client_after_starttls(dialect, w, ctx))?
        {
            conn.capabilities = Some(caps);
        }
        if inner.fetch_capabilities && dialect.has_capabilities() && conn.capabilities.is_none() {
            conn.fetch_capabilities()?;
        }
    }
    conn.timings.total = started.elapsed();
    Ok(conn)
}

/// The client's TLS handshake within the handshake timeout, the server's first record watched
/// (see [`handshake::drive`]).
fn handshake(
    config: &ClientConfig,
    protocol: Protocol,
    tcp: TcpStream,
    name: ServerName<'static>,
    after_go_ahead: bool,
) -> Result<StreamOwned<ClientConnection, TcpStream>> {
    let tls = config.tls_for(protocol);
    let mut conn = ClientConnection::new(tls, name).map_err(Error::from_tls)?;
    let deadline = Deadline::after(config.inner.timeouts.handshake, Phase::Handshake);
    let tcp = handshake::drive(&mut conn, tcp, deadline, after_go_ahead)?;
    if let (true, Some(alpn)) = (protocol.alpn_mandatory(), protocol.required_alpn()) {
        // rustls lets a server ignore ALPN; a protocol that needs it must not talk to a server
        // that did not agree (cross-protocol confusion, ALPACA).
        if conn.alpn_protocol() != Some(alpn) {
            return Err(Error::violation(
                Phase::Handshake,
                format!(
                    "the server did not agree to ALPN {:?}",
                    String::from_utf8_lossy(alpn)
                ),
            ));
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}

fn parse_server_name(name: &str) -> Result<ServerName<'static>> {
    let bare = unbracket(name);
    if bare.is_empty() {
        return Err(Error::InvalidArgument("empty server name".into()));
    }
    // An address verifies against the certificate's IP SANs and is never sent in SNI.
    ServerName::try_from(bare.to_owned())
        .map_err(|_| Error::InvalidArgument(format!("invalid server name {name:?}")))
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Resolves and connects, trying every address in turn. Resolution and all the attempts share
/// one connect deadline; each remaining address gets an equal share of the time left, so one
/// black-holed address cannot starve the others.
pub(crate) fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let bare = unbracket(host);
    if bare.is_empty() {
        return Err(Error::InvalidArgument("empty host".into()));
    }
    let deadline = Deadline::after(timeout, Phase::Connect);
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => resolve(bare, port, timeout)?,
    };
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let left = deadline.remaining()?;
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match TcpStream::connect_timeout(addr, share.max(Duration::from_millis(1))) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(Error::from_io(Phase::Connect, e)),
        None => Err(Error::Resolve {
            host: bare.to_owned(),
            source: None,
        }),
    }
}

/// `getaddrinfo` has no timeout of its own: it runs on a helper thread, and a resolver that does
/// not answer in time is a `Resolve`-phase timeout (the thread is left to finish on its own).
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("starttls-resolve".into())
        .spawn(move || {
            let _ = tx.send(
                (name.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect),
            );
        })
        .map_err(|e| Error::from_io(Phase::Resolve, e))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(Error::Resolve {
            host: host.to_owned(),
            source: Some(e),
        }),
        Err(_) => Err(Error::Timeout {
            phase: Phase::Resolve,
        }),
    }
}

/// The local address as an EHLO address literal (RFC 5321 §4.1.3).
fn address_literal(tcp: &TcpStream) -> String {
    match tcp.local_addr().map(|a| a.ip()) {
        Ok(IpAddr::V4(ip)) => format!("[{ip}]"),
        Ok(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{ip}]"),
        },
        Err(_) => "[127.0.0.1]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn server_names() {
        assert!(matches!(
            parse_server_name("[::1]"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            parse_server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            parse_server_name("mx.example.org"),
            Ok(ServerName::DnsName(_))
        ));
        for bad in ["", "[]", "bad name", "a..b"] {
            assert_eq!(
                parse_server_name(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn empty_host_is_invalid() {
        let e = tcp_connect("", 25, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn unresolvable_host_is_a_resolve_error() {
        // `.invalid` is reserved never to resolve (RFC 6761).
        let e = tcp_connect("no-such-host.invalid", 25, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Resolve);
    }
}
