//! Client entry points: a socket, a protocol's dialog and the TLS handshake, tied together.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::config::ClientConfig;
use crate::error::{Error, Phase, Result};
use crate::protocol::{self, DialogContext, Outcome, Protocol};
use crate::stream::{Connection, Inner, Untrusted, Verification};
use crate::wire::transport::TlsTransport;
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
    let tcp = tcp_connect(host, port, config.timeouts().connect)?;
    upgrade(config, protocol, tcp, server_name)
}

/// Runs `protocol`'s upgrade on a socket the caller already connected, verifying the certificate
/// for `server_name`. The socket is taken over; nothing must have been read from it yet.
///
/// The socket is put in blocking mode with `TCP_NODELAY`, and its read/write timeouts are set
/// for each step (then to the I/O timeout).
pub fn upgrade(
    config: &ClientConfig,
    protocol: Protocol,
    mut tcp: TcpStream,
    server_name: &str,
) -> Result<Connection> {
    let name = parse_server_name(server_name)?;
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
        config: config.clone(),
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
    };

    if let (false, Some(dialect)) = (protocol.is_implicit(), protocol.dialect()) {
        let mut wire = Wire::new(&mut tcp, inner.limits).observed_by(inner.observer.as_deref());
        let mut ctx = DialogContext {
            policy: inner.policy,
            timeouts: &inner.timeouts,
            client_name: &conn.client_name,
            next_tag: &mut conn.next_tag,
        };
        let pre = protocol::client_starttls(dialect, &mut wire, &mut ctx);
        conn.transcript = wire.take_transcript();
        let pre = pre?;
        conn.greeting = pre.greeting;
        conn.capabilities_before_tls = pre.capabilities.map(Untrusted::new);
        conn.starttls_offered = pre.starttls_offered;
        if let Outcome::Plaintext(reason) = pre.outcome {
            set_io_timeouts(&tcp, inner.timeouts.io).map_err(|e| Error::from_io(Phase::Read, e))?;
            conn.plaintext_reason = Some(reason);
            return Ok(conn);
        }
        wire.ensure_nothing_after_go_ahead()?;
    }

    let stream = handshake(config, tcp, name.clone())?;
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

    if protocol.is_implicit() {
        if let Some(dialect) = protocol.dialect() {
            read_greeting_inside_tls(&mut conn, dialect)?;
        }
    }
    if inner.fetch_capabilities && protocol.dialect().is_some() && conn.capabilities.is_none() {
        conn.fetch_capabilities()?;
    }
    Ok(conn)
}

/// TLS only, on a socket whose dialog the caller ran itself and whose go-ahead it has read.
pub fn handshake_only(
    config: &ClientConfig,
    tcp: TcpStream,
    server_name: &str,
) -> Result<Connection> {
    upgrade(config, Protocol::Tls, tcp, server_name)
}

fn read_greeting_inside_tls(conn: &mut Connection, dialect: protocol::Dialect) -> Result<()> {
    let Inner::Tls(stream) = &mut conn.inner else {
        return Ok(());
    };
    let inner = &conn.config.inner;
    let mut transport = TlsTransport {
        stream,
        lookahead: &mut conn.lookahead,
    };
    let mut wire =
        Wire::inside_tls(&mut transport, inner.limits).observed_by(inner.observer.as_deref());
    let mut ctx = DialogContext {
        policy: inner.policy,
        timeouts: &inner.timeouts,
        client_name: &conn.client_name,
        next_tag: &mut conn.next_tag,
    };
    let greeting = protocol::client_greeting(dialect, &mut wire, &mut ctx);
    conn.transcript.extend(wire.take_transcript());
    let greeting = greeting?;
    conn.greeting = Some(greeting.text);
    conn.capabilities = greeting.capabilities;
    set_io_timeouts(conn.tcp_stream(), inner.timeouts.io)
        .map_err(|e| Error::from_io(Phase::Greeting, e))
}

/// The TLS handshake within the handshake timeout. The first bytes from the server must be a TLS
/// record: plaintext there arrived after the go-ahead, which is an injection.
fn handshake(
    config: &ClientConfig,
    mut tcp: TcpStream,
    name: ServerName<'static>,
) -> Result<StreamOwned<ClientConnection, TcpStream>> {
    let mut tls = ClientConnection::new(config.inner.tls.clone(), name).map_err(Error::from_tls)?;
    let deadline = Deadline::after(config.inner.timeouts.handshake, Phase::Handshake);
    let mut io = HandshakeIo {
        sock: &mut tcp,
        deadline,
        first_bytes_checked: false,
        injected: None,
    };
    while tls.is_handshaking() {
        if let Err(e) = tls.complete_io(&mut io) {
            if let Some(n) = io.injected {
                return Err(Error::Injection {
                    bytes: n,
                    detail: "arrived during the TLS handshake, where a TLS record was due".into(),
                });
            }
            return Err(handshake_error(e));
        }
    }
    Ok(StreamOwned::new(tls, tcp))
}

fn handshake_error(e: io::Error) -> Error {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return Error::from_tls(tls.clone());
    }
    Error::from_io(Phase::Handshake, e)
}

/// The socket as the handshake sees it: every read and write bounded by the overall deadline,
/// and the first bytes checked to be TLS.
struct HandshakeIo<'a> {
    sock: &'a mut TcpStream,
    deadline: Deadline,
    first_bytes_checked: bool,
    injected: Option<usize>,
}

impl Read for HandshakeIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.remaining().map_err(|_| timed_out())?;
        self.sock.set_read_timeout(Some(left))?;
        let n = self.sock.read(buf)?;
        if !self.first_bytes_checked && n > 0 {
            self.first_bytes_checked = true;
            if !looks_like_tls_record(&buf[..n]) {
                self.injected = Some(n);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "plaintext instead of TLS",
                ));
            }
        }
        Ok(n)
    }
}

impl Write for HandshakeIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.deadline.remaining().map_err(|_| timed_out())?;
        self.sock.set_write_timeout(Some(left))?;
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "handshake deadline passed")
}

/// A server's first TLS record is a handshake (ServerHello) or an alert, version major 3.
fn looks_like_tls_record(bytes: &[u8]) -> bool {
    let type_ok = matches!(bytes.first(), Some(0x15 | 0x16));
    let version_ok = bytes.get(1).is_none_or(|&v| v == 0x03);
    type_ok && version_ok
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

/// Resolves and connects, trying every address in turn.
pub(crate) fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let bare = unbracket(host);
    if bare.is_empty() {
        return Err(Error::InvalidArgument("empty host".into()));
    }
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (bare, port)
            .to_socket_addrs()
            .map_err(|e| Error::Resolve {
                host: bare.to_owned(),
                source: Some(e),
            })?
            .collect(),
    };
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
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
    fn tls_record_recognition() {
        assert!(looks_like_tls_record(&[0x16, 0x03, 0x03]));
        assert!(looks_like_tls_record(&[0x15]));
        assert!(!looks_like_tls_record(b"250 OK"));
        assert!(!looks_like_tls_record(b"* OK"));
        assert!(!looks_like_tls_record(&[0x16, 0x02]));
        assert!(!looks_like_tls_record(&[0x17, 0x03]));
    }

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
