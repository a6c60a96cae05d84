//! Client entry points: a socket, a protocol's dialog and the TLS handshake, tied together.

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::config::ClientConfig;
use crate::error::{Error, Phase, Result};
use crate::handshake;
use crate::protocol::{DialogContext, Outcome, PreTls, Protocol};
use crate::stream::{Connection, DaneTls};
use crate::verify::TlsaRecord;
use crate::wire::transport::PlainTransport;
use crate::wire::{Deadline, Wire, prepare_socket};

/// What may differ from one connection to the next under one [`ClientConfig`]: the name to
/// verify and the TLSA records that authenticate the server (DANE), as an MTA that looks up
/// each destination's records itself hands them over.
///
/// ```
/// let options = starttls::ConnectOptions::new()
///     .server_name("mx.example.org")
///     .tlsa(["3 1 1 6c3e37bc7e4df26c1d9d4e24d7f1b7e0c0eb7b7a5c1f57e7a3a0d0ec39a8f1b2".parse()?]);
/// # Ok::<(), starttls::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    pub(crate) server_name: Option<String>,
    pub(crate) tlsa: Vec<TlsaRecord>,
}

impl ConnectOptions {
    /// No options: the certificate is verified for the host connected to, as the config says.
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// Verifies the certificate for `name` (and sends it in SNI) instead of the host.
    pub fn server_name(mut self, name: impl Into<String>) -> ConnectOptions {
        self.server_name = Some(name.into());
        self
    }

    /// Authenticates the server by these TLSA records instead of the config's roots (RFC 7671;
    /// for [`Protocol::Smtp`], RFC 7672): DANE-EE (usage 3) by the record alone, names and
    /// validity unchecked; DANE-TA (2) with the named certificate, which the server must send,
    /// as the only trust anchor, the name checked; PKIX-TA/EE (0/1) as constraints on the
    /// config's verification, and unusable for SMTP. Records that cannot be used are ignored;
    /// when none can, SMTP carries on encrypted but unauthenticated (RFC 7672 §2.2) and other
    /// protocols verify as the config says. A set that authenticates nothing is
    /// [`Error::Certificate`], naming the records tried. [`Connection::dane`] tells what decided.
    /// An empty list means no DANE. Pins set in the config still apply.
    pub fn tlsa(mut self, records: impl IntoIterator<Item = TlsaRecord>) -> ConnectOptions {
        self.tlsa = records.into_iter().collect();
        self
    }

    /// The TLSA records set so far.
    pub fn tlsa_records(&self) -> &[TlsaRecord] {
        &self.tlsa
    }
}

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
    connect_named(config, protocol, host, port, handshake::unbracket(host))
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
    let options = ConnectOptions::new().server_name(server_name);
    connect_with(config, protocol, host, port, &options)
}

/// As [`connect`], with per-connection [`ConnectOptions`] (server name, TLSA records).
pub fn connect_with(
    config: &ClientConfig,
    protocol: Protocol,
    host: &str,
    port: u16,
    options: &ConnectOptions,
) -> Result<Connection> {
    let started = Instant::now();
    let server_name = options
        .server_name
        .as_deref()
        .unwrap_or_else(|| handshake::unbracket(host));
    // A bad name or record set fails before anything is sent.
    handshake::parse_server_name(server_name)?;
    dane_allowed(config, &options.tlsa)?;
    let tcp = tcp_connect(host, port, config.timeouts().connect)?;
    let connected = started.elapsed();
    let mut conn = upgrade_inner(
        config,
        protocol,
        tcp,
        server_name,
        &options.tlsa,
        false,
        true,
    )?;
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
    upgrade_inner(config, protocol, tcp, server_name, &[], false, false)
}

/// As [`upgrade`], with per-connection [`ConnectOptions`]; their server name is required (there
/// is no host to default to).
pub fn upgrade_with(
    config: &ClientConfig,
    protocol: Protocol,
    tcp: TcpStream,
    options: &ConnectOptions,
) -> Result<Connection> {
    upgrade_inner(
        config,
        protocol,
        tcp,
        required_name(options)?,
        &options.tlsa,
        false,
        false,
    )
}

/// As [`handshake_only`], with per-connection [`ConnectOptions`] (the server name required).
pub fn handshake_only_with(
    config: &ClientConfig,
    tcp: TcpStream,
    options: &ConnectOptions,
) -> Result<Connection> {
    upgrade_inner(
        config,
        Protocol::Tls,
        tcp,
        required_name(options)?,
        &options.tlsa,
        true,
        false,
    )
}

/// The options' server name, which a caller's socket has no host to default to.
fn required_name(options: &ConnectOptions) -> Result<&str> {
    options.server_name.as_deref().ok_or_else(|| {
        Error::InvalidArgument("upgrading a socket needs a server name in the options".into())
    })
}

/// TLSA records with a config that accepts any certificate would be silently ignored: refused.
fn dane_allowed(config: &ClientConfig, tlsa: &[TlsaRecord]) -> Result<()> {
    if !tlsa.is_empty() && config.is_dangerous() {
        return Err(Error::InvalidArgument(
            "TLSA records given with a config that accepts any certificate".into(),
        ));
    }
    Ok(())
}

/// TLS only, on a socket whose dialog the caller ran itself and whose go-ahead it has read (and
/// nothing after it). Plaintext from the server before its first TLS record is an injection.
pub fn handshake_only(
    config: &ClientConfig,
    tcp: TcpStream,
    server_name: &str,
) -> Result<Connection> {
    upgrade_inner(config, Protocol::Tls, tcp, server_name, &[], true, false)
}

/// Runs `protocol`'s STARTTLS dialog on a socket up to and including the server's go-ahead, and
/// hands the socket back where the TLS ClientHello goes: for a caller that does the handshake
/// with its own TLS stack, such as a relay in front of a TLS scanner (`starttls tunnel`).
///
/// The guards of [`upgrade`] hold up to there: the policy is [`Policy::Require`] whatever the
/// config says (a caller that wants TLS needs the go-ahead), each step has its timeout, and bytes
/// waiting behind the go-ahead are [`Error::Injection`]. Bytes that arrive later are the TLS
/// stack's to judge. `server_name` is what the dialog names (XMPP `to=`, HTTP `Host:`); no
/// certificate is seen here, so nothing is verified. Implicit-TLS protocols have no dialog: the
/// socket comes back as it was.
///
/// [`Policy::Require`]: crate::Policy::Require
pub fn negotiate(
    config: &ClientConfig,
    protocol: Protocol,
    tcp: TcpStream,
    server_name: &str,
) -> Result<TcpStream> {
    let inner = &config.inner;
    prepare_socket(&tcp, false)?;
    let Some(dialog) = protocol.dialog().filter(|_| !protocol.is_implicit()) else {
        return Ok(tcp);
    };
    let client_name = match &inner.client_name {
        Some(n) => n.clone(),
        None => address_literal(&tcp),
    };
    let port = tcp.peer_addr().ok().map(|a| a.port());
    let mut ctx = DialogContext::new(
        crate::config::Policy::Require,
        inner.timeouts,
        client_name,
        server_name.to_owned(),
        port,
    );
    {
        let mut plain = PlainTransport::new(&tcp, false);
        let mut wire = Wire::new(&mut plain, inner.limits).observed_by(inner.observer.as_deref());
        let pre = dialog.client_starttls(&mut wire, &mut ctx)?;
        match pre.outcome {
            Outcome::GoAhead => wire.ensure_nothing_after_go_ahead()?,
            // Not reachable under Require; kept an error rather than a socket in plaintext.
            Outcome::Plaintext(e) => return Err(e),
        }
    }
    Ok(tcp)
}

/// `go_ahead_read_by_caller`: the caller ran the dialog, so non-TLS bytes are an injection rather
/// than a server that does not speak TLS. `socket_is_ours`: `connect` made it (blocking already).
fn upgrade_inner(
    config: &ClientConfig,
    protocol: Protocol,
    tcp: TcpStream,
    server_name: &str,
    tlsa: &[TlsaRecord],
    go_ahead_read_by_caller: bool,
    socket_is_ours: bool,
) -> Result<Connection> {
    let started = Instant::now();
    let name = handshake::parse_server_name(server_name)?;
    dane_allowed(config, tlsa)?;
    let dane = (!tlsa.is_empty()).then(|| {
        let (tls, verifier) = config.tls_with_dane(
            protocol.alpn(),
            protocol.key_share(),
            tlsa.to_vec(),
            protocol == Protocol::Smtp,
        );
        DaneTls { tls, verifier }
    });
    let inner = &config.inner;
    prepare_socket(&tcp, socket_is_ours)?;
    let client_name = match &inner.client_name {
        Some(n) => n.clone(),
        None => address_literal(&tcp),
    };
    let port = tcp.peer_addr().ok().map(|a| a.port());
    // Records that apply make TLS mandatory (RFC 7672 §2.2), whatever the config's policy: an
    // opportunistic MTA must not let an attacker strip STARTTLS from a DANE destination.
    let policy = if tlsa.is_empty() {
        inner.policy
    } else {
        crate::config::Policy::Require
    };
    let mut ctx = DialogContext::new(
        policy,
        inner.timeouts,
        client_name,
        server_name.to_owned(),
        port,
    );
    let mut pre = PreTls::new();
    let mut transcript = Vec::new();
    let mut dialog_time = None;
    let mut after_go_ahead = go_ahead_read_by_caller;
    if let (false, Some(dialog)) = (protocol.is_implicit(), protocol.dialog()) {
        let mut plain = PlainTransport::new(&tcp, false);
        let mut wire = Wire::new(&mut plain, inner.limits).observed_by(inner.observer.as_deref());
        let result = dialog.client_starttls(&mut wire, &mut ctx);
        transcript = wire.take_transcript();
        pre = result?;
        dialog_time = Some(started.elapsed());
        if let Outcome::GoAhead = pre.outcome {
            wire.ensure_nothing_after_go_ahead()?;
            after_go_ahead = true;
        }
    }
    let mut conn = if let Outcome::Plaintext(_) = pre.outcome {
        Connection::client_plaintext(config, protocol, tcp, ctx, pre, transcript)?
    } else {
        let mut conn = Connection::client_tls(
            config,
            protocol,
            tcp,
            name,
            after_go_ahead,
            ctx,
            pre,
            transcript,
            dane,
        )?;
        conn.client_first_steps_inside_tls()?;
        conn
    };
    conn.timings.dialog = dialog_time;
    conn.timings.total = started.elapsed();
    Ok(conn)
}

/// Resolves and connects, trying every address in turn. Resolution and all the attempts share
/// one connect deadline; each remaining address gets an equal share of the time left, so one
/// black-holed address cannot starve the others.
pub(crate) fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let bare = handshake::unbracket(host);
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
    fn empty_host_is_invalid() {
        let e = tcp_connect("", 25, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn a_callers_socket_needs_a_server_name_in_the_options() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = ClientConfig::builder().build().unwrap();
        for handshake in [false, true] {
            let tcp = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let options = ConnectOptions::new();
            let e = if handshake {
                handshake_only_with(&config, tcp, &options)
            } else {
                upgrade_with(&config, Protocol::Smtp, tcp, &options)
            }
            .map(|_| ())
            .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        }
    }

    #[test]
    fn unresolvable_host_is_a_resolve_error() {
        // `.invalid` is reserved never to resolve (RFC 6761).
        let e = tcp_connect("no-such-host.invalid", 25, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Resolve);
    }
}
