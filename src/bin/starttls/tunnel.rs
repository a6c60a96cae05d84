//! `starttls tunnel`: the library's dialogs in front of tools that cannot speak them.
//!
//! - raw (default): for each local connection, the protocol's client dialog with the server up
//!   to its go-ahead (`starttls::negotiate`), then bytes both ways: the local client (a TLS
//!   scanner, `openssl s_client`) does the handshake with the real server itself.
//! - `--terminate`: a plaintext local client; the tunnel upgrades to the server (verified,
//!   required), gives the client a plaintext greeting made from what the server said, and
//!   relays plaintext to and from TLS.
//! - `--front`: the server side (`starttls::accept`) for TLS clients, in front of a
//!   plaintext-only server; decrypted bytes go to it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use starttls::{ClientConfig, Connection, Protocol, Relayed, ServerConfig, Timeouts};

use crate::serve::ServeOptions;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Raw,
    Terminate,
    Front,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::Terminate => "terminate",
            Mode::Front => "front",
        }
    }
}

pub struct TunnelOptions {
    pub mode: Mode,
    pub protocol: Protocol,
    pub listen: String,
    pub connect: String,
    pub servername: Option<String>,
    pub ca_file: Option<String>,
    pub client_name: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub domain: String,
    pub max_connections: Option<u64>,
    pub max_concurrent: usize,
    pub idle_timeout: Duration,
    /// Each step of a dialog (connect, greeting, each reply, handshake).
    pub timeout: Duration,
    pub verbose: bool,
}

/// Why a mode cannot carry a protocol, or `None` when it can.
pub fn unsupported(mode: Mode, protocol: Protocol) -> Option<&'static str> {
    match (mode, protocol) {
        (Mode::Terminate | Mode::Front, Protocol::Ftp | Protocol::Ftps) => Some(
            "FTP opens data connections to addresses the control connection names, which a relay \
             of one connection cannot carry; use the raw mode with an FTPS client",
        ),
        (Mode::Terminate | Mode::Front, Protocol::Mysql) => Some(
            "MySQL's login continues inside TLS from the SSL request (its sequence numbers and \
             capability flags), so a plaintext client cannot be spliced in; use the raw mode",
        ),
        _ => None,
    }
}

/// The server to connect to: HOST[:PORT] (the protocol's port by default), resolved once.
fn target(connect: &str, protocol: Protocol) -> Result<(String, u16, Vec<SocketAddr>), String> {
    if connect.contains("://") {
        return Err(format!(
            "--connect {connect}: HOST[:PORT], not a URL (the protocol is --protocol)"
        ));
    }
    let (host, port) = match connect.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("--connect {connect}: {p:?} is not a port"))?;
            (h.to_owned(), port)
        }
        _ => match protocol.default_port() {
            Some(port) => (connect.to_owned(), port),
            None => return Err(format!("--connect {connect}: HOST:PORT needed")),
        },
    };
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<SocketAddr> = (bare.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("--connect {connect}: cannot resolve {bare}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("--connect {connect}: {bare} has no address"));
    }
    Ok((bare, port, addrs))
}

struct Shared {
    mode: Mode,
    protocol: Protocol,
    addrs: Vec<SocketAddr>,
    servername: String,
    client: ClientConfig,
    server: Option<ServerConfig>,
    idle: Duration,
    timeout: Duration,
}

/// Runs the tunnel; returns the exit status (as `serve`: 2 usage, 8 cannot listen).
pub fn run(opts: &TunnelOptions) -> i32 {
    if let Some(why) = unsupported(opts.mode, opts.protocol) {
        eprintln!(
            "starttls tunnel: --{} cannot carry {}: {why}",
            opts.mode.name(),
            opts.protocol
        );
        return 2;
    }
    let (host, port, addrs) = match target(&opts.connect, opts.protocol) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("starttls tunnel: {e}");
            return 2;
        }
    };
    let client = match client_config(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("starttls tunnel: {e}");
            return 2;
        }
    };
    let (server, ca_path) = if opts.mode == Mode::Front {
        match crate::serve::server_config(&serve_like(opts)) {
            Ok((s, ca)) => (Some(s), ca),
            Err(e) => {
                eprintln!("starttls tunnel: {e}");
                return 2;
            }
        }
    } else {
        (None, None)
    };
    if !opts.listen.contains(':') {
        eprintln!(
            "starttls tunnel: --listen {}: ADDR:PORT needed (port 0: any free port)",
            opts.listen
        );
        return 2;
    }
    let listener = match TcpListener::bind(&opts.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("starttls tunnel: cannot listen on {}: {e}", opts.listen);
            if let Some(ca) = &ca_path {
                crate::pki::remove_ca(ca);
            }
            return 8;
        }
    };
    let addr = listener
        .local_addr()
        .map_or_else(|_| opts.listen.clone(), |a| a.to_string());
    if let Some(ca) = &ca_path {
        println!("throw-away CA certificate: {}", ca.display());
    }
    let servername = opts.servername.clone().unwrap_or_else(|| host.clone());
    println!(
        "tunnel {} {} on {addr} to {}",
        opts.mode.name(),
        opts.protocol,
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    );
    let _ = std::io::stdout().flush();
    let shared = std::sync::Arc::new(Shared {
        mode: opts.mode,
        protocol: opts.protocol,
        addrs,
        servername,
        client,
        server,
        idle: opts.idle_timeout,
        timeout: opts.timeout,
    });
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = failed.clone();
    crate::serve::accept_loop(
        &listener,
        opts.max_concurrent,
        opts.max_connections,
        "tunnel",
        move |local| {
            let (line, ok) = one(&shared, local);
            if !ok {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            println!("{line}");
            let _ = std::io::stdout().flush();
        },
    );
    if let Some(ca) = &ca_path {
        crate::pki::remove_ca(ca);
    }
    // After --max-connections: a script learns whether every connection was relayed.
    let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        eprintln!("starttls tunnel: {failed} connection(s) refused (see their lines)");
        return 1;
    }
    0
}

fn serve_like(opts: &TunnelOptions) -> ServeOptions {
    ServeOptions {
        protocol: opts.protocol,
        listen: opts.listen.clone(),
        cert: opts.cert.clone(),
        key: opts.key.clone(),
        domain: opts.domain.clone(),
        max_connections: opts.max_connections,
        max_concurrent: opts.max_concurrent,
        idle_timeout: opts.idle_timeout,
        verbose: opts.verbose,
    }
}

fn client_config(opts: &TunnelOptions) -> Result<ClientConfig, String> {
    let mut b = ClientConfig::builder().timeouts(Timeouts {
        io: opts.idle_timeout,
        ..Timeouts::all(opts.timeout)
    });
    if let Some(ca) = &opts.ca_file {
        b = b.trust_ca_file(ca);
    }
    if let Some(n) = &opts.client_name {
        b = b.client_name(n);
    }
    if opts.verbose {
        b = b.on_dialog_line(|l| {
            let who = match l.direction {
                starttls::Direction::Sent => "C:",
                starttls::Direction::Received => "S:",
            };
            let tls = if l.encrypted { " [TLS]" } else { "" };
            eprintln!("{who}{tls} {}", l.text);
        });
    }
    b.build().map_err(|e| e.to_string())
}

/// One local connection, start to end; returns its log line and whether it was relayed.
fn one(shared: &Shared, local: TcpStream) -> (String, bool) {
    let started = Instant::now();
    let peer = local
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let head = format!(
        "peer={peer} protocol={} mode={}",
        shared.protocol,
        shared.mode.name()
    );
    let _ = local.set_nodelay(true);
    let result = match shared.mode {
        Mode::Raw => raw(shared, &local),
        Mode::Terminate => terminate(shared, &local),
        Mode::Front => front(shared, local),
    };
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok((detail, relayed)) => {
            let end = match &relayed.error {
                None => "end=closed".to_owned(),
                Some(e) => format!("end={} end_message={:?}", kind(e), e.to_string()),
            };
            let line = format!(
                "{head} outcome=ok{detail} to_server={} to_client={} {end} time={secs:.3}s",
                relayed.to_server, relayed.to_client
            );
            (line, true)
        }
        // A client that connected and left without a word (a port scan, testssl's first
        // probe): nothing was asked, nothing refused.
        Err(Failure {
            side: "client",
            error: starttls::Error::Closed { .. },
        }) if shared.mode == Mode::Raw => (
            format!("{head} outcome=gone (the client closed without starting TLS) time={secs:.3}s"),
            true,
        ),
        Err(Failure { side, error }) => {
            let line = format!(
                "{head} outcome=refused side={side} error={} message={:?} time={secs:.3}s",
                kind(&error),
                error.to_string()
            );
            (line, false)
        }
    }
}

/// An error's kind as `check` names it (`injection`, `certificate`, ...).
fn kind(e: &starttls::Error) -> &'static str {
    crate::report::ReportError::from_error(e).kind
}

/// What went wrong before the relay, and with whom.
struct Failure {
    side: &'static str,
    error: starttls::Error,
}

fn server_failure(error: starttls::Error) -> Failure {
    Failure {
        side: "server",
        error,
    }
}

fn client_failure(error: starttls::Error) -> Failure {
    Failure {
        side: "client",
        error,
    }
}

/// The relay's counts, named by direction.
struct Carried {
    to_server: u64,
    to_client: u64,
    error: Option<starttls::Error>,
}

/// Connects to the server's addresses in turn, each within the step timeout.
fn connect_server(shared: &Shared) -> starttls::Result<TcpStream> {
    let mut last = None;
    for addr in &shared.addrs {
        match TcpStream::connect_timeout(addr, shared.timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| std::io::ErrorKind::AddrNotAvailable.into());
    Err(starttls::Error::Io {
        phase: starttls::Phase::Connect,
        source: e,
    })
}

fn raw(shared: &Shared, local: &TcpStream) -> Result<(String, Carried), Failure> {
    // The server is told TLS starts: a plaintext client's bytes (an LDAP bind, a PostgreSQL
    // startup message) must not follow. The client speaks first in TLS, so its first bytes
    // are looked at before the server is even dialled.
    starts_tls(local, shared.timeout).map_err(client_failure)?;
    let server = connect_server(shared).map_err(server_failure)?;
    let server = starttls::negotiate(&shared.client, shared.protocol, server, &shared.servername)
        .map_err(server_failure)?;
    let r = starttls::relay_sockets(local, &server, shared.idle);
    Ok((String::new(), carried(r, true)))
}

/// Waits (at most `timeout`) for the local client's first bytes and requires a TLS handshake
/// record (or an SSL 2.0-format ClientHello, which scanners still send to test for SSL 2.0).
fn starts_tls(local: &TcpStream, timeout: Duration) -> starttls::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut first = [0u8; 3];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(starttls::Error::Timeout {
                phase: starttls::Phase::Handshake,
            });
        }
        local
            .set_read_timeout(Some(left))
            .map_err(|e| io_error(starttls::Phase::Handshake, e))?;
        let n = match local.peek(&mut first) {
            Ok(0) => {
                return Err(starttls::Error::Closed {
                    phase: starttls::Phase::Handshake,
                });
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(starttls::Phase::Handshake, e)),
        };
        let tls = first[0] == 0x16 && (n < 2 || first[1] == 3) && (n < 3 || first[2] <= 4);
        let ssl2 = first[0] & 0x80 != 0 && (n < 3 || first[2] == 1);
        if !tls && !ssl2 {
            return Err(starttls::Error::ProtocolViolation {
                phase: starttls::Phase::Handshake,
                detail: format!(
                    "the local client did not start TLS (it sent {:?}); the raw tunnel is for \
                     TLS clients, --terminate for plaintext ones",
                    starttls::escape_controls(&String::from_utf8_lossy(&first[..n]))
                ),
                reply: None,
            });
        }
        if n == first.len() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn carried(r: Relayed, local_first: bool) -> Carried {
    let (to_server, to_client) = if local_first {
        (r.first_to_second, r.second_to_first)
    } else {
        (r.second_to_first, r.first_to_second)
    };
    Carried {
        to_server,
        to_client,
        error: r.error,
    }
}

fn terminate(shared: &Shared, local: &TcpStream) -> Result<(String, Carried), Failure> {
    let server = match connect_server(shared).and_then(|tcp| {
        let options = starttls::ConnectOptions::new().server_name(&shared.servername);
        starttls::upgrade_with(&shared.client, shared.protocol, tcp, &options)
    }) {
        Ok(c) => c,
        Err(e) => {
            // A plaintext client is told in its own protocol that the server is unavailable
            // for now (a temporary failure: an MTA queues and retries).
            if let Some(line) = unavailable(shared.protocol, kind(&e)) {
                let _ = local.set_write_timeout(Some(shared.timeout));
                let _ = (&*local).write_all(line.as_bytes());
                linger(local);
            }
            return Err(server_failure(e));
        }
    };
    let mut server = server;
    let detail = tls_detail(&server);
    local
        .set_write_timeout(Some(shared.timeout))
        .map_err(|e| client_failure(io_error(starttls::Phase::Write, e)))?;
    if shared.protocol == Protocol::Postgres {
        refuse_postgres_encryption(local, shared.timeout).map_err(client_failure)?;
    }
    if let Some(greeting) = local_greeting(shared.protocol, &mut server).map_err(server_failure)? {
        (&*local)
            .write_all(greeting.as_bytes())
            .map_err(|e| client_failure(io_error(starttls::Phase::Write, e)))?;
    }
    let r = server.relay(local, shared.idle);
    let _ = server.close();
    Ok((detail, carried(r, false)))
}

fn front(shared: &Shared, local: TcpStream) -> Result<(String, Carried), Failure> {
    let Some(config) = &shared.server else {
        unreachable!("--front builds its server config");
    };
    // The plaintext server first: if it is down, the client gets its protocol's temporary
    // failure in place of a greeting (a TLS client of an implicit protocol just a close).
    let backend = match connect_server(shared)
        .and_then(|b| skip_backend_greeting(shared.protocol, &b, shared.timeout).map(|()| b))
    {
        Ok(b) => b,
        Err(e) => {
            if let (false, Some(line)) = (
                shared.protocol.is_implicit(),
                unavailable(shared.protocol, kind(&e)),
            ) {
                let _ = local.set_write_timeout(Some(shared.timeout));
                let _ = (&local).write_all(line.as_bytes());
                linger(&local);
            }
            return Err(server_failure(e));
        }
    };
    let mut client = starttls::accept(config, shared.protocol, local).map_err(client_failure)?;
    let detail = tls_detail(&client);
    let r = client.relay(&backend, shared.idle);
    let _ = client.close();
    Ok((detail, carried(r, true)))
}

/// Ends our side and reads what the client still sends for a moment, so that closing with
/// its bytes unread does not reset the connection before it has read our last line.
fn linger(local: &TcpStream) {
    let _ = local.shutdown(std::net::Shutdown::Write);
    let _ = local.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 1024];
    for _ in 0..64 {
        match (&*local).read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

fn io_error(phase: starttls::Phase, source: std::io::Error) -> starttls::Error {
    // A socket timeout is a timeout, as `check` reports it, not an I/O error.
    if matches!(
        source.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ) {
        return starttls::Error::Timeout { phase };
    }
    starttls::Error::Io { phase, source }
}

fn tls_detail(conn: &Connection) -> String {
    let version = match conn.tls_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "?",
    };
    format!(" tls={version}")
}

/// The line a plaintext client gets when the server could not be reached securely.
fn unavailable(protocol: Protocol, kind: &str) -> Option<String> {
    let why = format!("starttls tunnel: the server is not available ({kind})");
    match protocol {
        Protocol::Smtp | Protocol::Submission | Protocol::Lmtp | Protocol::Smtps => {
            Some(format!("421 4.7.0 {why}\r\n"))
        }
        Protocol::Imap | Protocol::Imaps => Some(format!("* BYE [UNAVAILABLE] {why}\r\n")),
        Protocol::Pop3 | Protocol::Pop3s => Some(format!("-ERR [SYS/TEMP] {why}\r\n")),
        Protocol::Nntp | Protocol::Nntps => Some(format!("400 {why}\r\n")),
        Protocol::Sieve => Some(format!("BYE \"{why}\"\r\n")),
        _ => None,
    }
}

/// The plaintext greeting for a `--terminate` client, made from what the server said: its
/// greeting (escaped by the library; for STARTTLS read before TLS, so informational text only)
/// and, where the greeting carries capabilities, the ones read inside TLS.
fn local_greeting(protocol: Protocol, conn: &mut Connection) -> starttls::Result<Option<String>> {
    let greeting = conn.greeting().unwrap_or_default().to_owned();
    let lines = |fallback: &str| {
        let text = if greeting.is_empty() {
            fallback
        } else {
            &greeting
        };
        let mut out = String::new();
        for line in text.split('\n') {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out
    };
    Ok(match protocol {
        Protocol::Smtp | Protocol::Submission | Protocol::Lmtp | Protocol::Smtps => {
            Some(lines("220 ESMTP"))
        }
        Protocol::Pop3 | Protocol::Pop3s => Some(lines("+OK")),
        Protocol::Nntp | Protocol::Nntps => Some(lines("200 ready")),
        Protocol::Imap | Protocol::Imaps => {
            let caps = conn.fetch_capabilities()?.join(" ");
            // "* OK [CAPABILITY ...] text": the pre-TLS capabilities are replaced. PREAUTH
            // (only ever accepted inside implicit TLS) stays PREAUTH.
            let upper = greeting.to_ascii_uppercase();
            let word = if upper.starts_with("* PREAUTH") {
                "PREAUTH"
            } else {
                "OK"
            };
            let text = greeting
                .get(2 + word.len()..)
                .unwrap_or_default()
                .trim_start();
            let text = match text.strip_prefix('[') {
                Some(rest) => rest.split_once(']').map_or("", |(_, t)| t.trim_start()),
                None => text,
            };
            let text = if text.is_empty() { "ready" } else { text };
            Some(format!("* {word} [CAPABILITY {caps}] {text}\r\n"))
        }
        Protocol::Sieve => {
            let caps = match conn.capabilities() {
                Some(c) => c.to_vec(),
                None => conn.fetch_capabilities()?.to_vec(),
            };
            let mut out = String::new();
            for cap in caps {
                // `"SIEVE" ""` is kept as "SIEVE " (a value, empty): written back the same.
                match cap.split_once(' ') {
                    Some((name, value)) => {
                        out.push_str(&format!("\"{}\" \"{}\"", quoted(name), quoted(value)));
                    }
                    None => out.push_str(&format!("\"{}\"", quoted(&cap))),
                }
                out.push_str("\r\n");
            }
            out.push_str("OK \"starttls tunnel: TLS to the server\"\r\n");
            Some(out)
        }
        _ => None,
    })
}

/// A ManageSieve quoted string's content.
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A PostgreSQL client in `sslmode=prefer` asks for TLS (or GSS encryption) first: it is told
/// no (`N`), as a server without TLS would, and then sends its startup message in plaintext.
fn refuse_postgres_encryption(local: &TcpStream, timeout: Duration) -> starttls::Result<()> {
    const SSL: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];
    const GSS: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 48];
    local
        .set_read_timeout(Some(timeout))
        .map_err(|e| io_error(starttls::Phase::Greeting, e))?;
    let deadline = Instant::now() + timeout;
    for _ in 0..2 {
        let mut first = [0u8; 8];
        // Wait for 8 bytes while they could still be one of the two requests.
        let n = loop {
            let n = local
                .peek(&mut first)
                .map_err(|e| io_error(starttls::Phase::Greeting, e))?;
            let prefix = SSL[..n] == first[..n] || GSS[..n] == first[..n];
            if n == 8 || n == 0 || !prefix || Instant::now() >= deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if n < 8 || (first != SSL && first != GSS) {
            break;
        }
        (&*local)
            .read_exact(&mut first)
            .and_then(|()| (&*local).write_all(b"N"))
            .map_err(|e| io_error(starttls::Phase::Greeting, e))?;
    }
    Ok(())
}

/// The longest greeting line, and the most lines, read from a plaintext server.
const MAX_LINE: usize = 4096;
const MAX_LINES: usize = 100;

/// Reads (and drops) the greeting a plaintext server sends first, where the client behind the
/// front already had one from the library before TLS. Byte by byte, so nothing after the
/// greeting is taken; bounded in size and time. A refusal is `Refused`.
fn skip_backend_greeting(
    protocol: Protocol,
    backend: &TcpStream,
    timeout: Duration,
) -> starttls::Result<()> {
    let last_line: fn(&str) -> Option<bool> = match protocol {
        // Some(true): the greeting is complete and positive; Some(false): a refusal.
        Protocol::Smtp
        | Protocol::Submission
        | Protocol::Lmtp
        | Protocol::Smtps
        | Protocol::Nntp
        | Protocol::Nntps => |l| match l.as_bytes().get(3) {
            Some(b'-') => None,
            _ => Some(l.starts_with('2')),
        },
        Protocol::Imap | Protocol::Imaps => |l| Some(l.starts_with("* OK")),
        Protocol::Pop3 | Protocol::Pop3s => |l| Some(l.starts_with("+OK")),
        Protocol::Sieve => |l| {
            if l.starts_with("OK") {
                Some(true)
            } else if l.starts_with("NO") || l.starts_with("BYE") {
                Some(false)
            } else {
                None
            }
        },
        _ => return Ok(()),
    };
    let deadline = Instant::now() + timeout;
    for _ in 0..MAX_LINES {
        let line = read_line(backend, deadline)?;
        let text = starttls::escape_controls(&String::from_utf8_lossy(&line)).into_owned();
        match last_line(&text) {
            None => continue,
            Some(true) => return Ok(()),
            Some(false) => {
                return Err(starttls::Error::Refused {
                    phase: starttls::Phase::Greeting,
                    reply: text,
                });
            }
        }
    }
    Err(starttls::Error::ProtocolViolation {
        phase: starttls::Phase::Greeting,
        detail: format!("the plaintext server's greeting is longer than {MAX_LINES} lines"),
        reply: None,
    })
}

/// One line without its CRLF, at most MAX_LINE bytes.
fn read_line(backend: &TcpStream, deadline: Instant) -> starttls::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        // One deadline for the whole greeting: a server trickling a byte at a time must not
        // reset the time.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(starttls::Error::Timeout {
                phase: starttls::Phase::Greeting,
            });
        }
        backend
            .set_read_timeout(Some(left))
            .map_err(|e| io_error(starttls::Phase::Greeting, e))?;
        match (&*backend).read(&mut byte) {
            Ok(0) => {
                return Err(starttls::Error::Closed {
                    phase: starttls::Phase::Greeting,
                });
            }
            Ok(_) if byte[0] == b'\n' => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            Ok(_) if line.len() >= MAX_LINE => {
                return Err(starttls::Error::ProtocolViolation {
                    phase: starttls::Phase::Greeting,
                    detail: format!("a greeting line longer than {MAX_LINE} bytes"),
                    reply: None,
                });
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(starttls::Phase::Greeting, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_the_protocols_port_and_brackets() {
        let (h, p, a) = target("127.0.0.1", Protocol::Smtp).unwrap();
        assert_eq!((h.as_str(), p), ("127.0.0.1", 25));
        assert_eq!(a[0].port(), 25);
        let (h, p, _) = target("[::1]:4190", Protocol::Sieve).unwrap();
        assert_eq!((h.as_str(), p), ("::1", 4190));
        assert!(target("127.0.0.1:port", Protocol::Smtp).is_err());
        assert!(target("127.0.0.1", Protocol::Tls).is_err());
    }

    #[test]
    fn ftp_and_mysql_cannot_be_terminated_or_fronted() {
        for mode in [Mode::Terminate, Mode::Front] {
            assert!(unsupported(mode, Protocol::Ftp).is_some());
            assert!(unsupported(mode, Protocol::Mysql).is_some());
            assert!(unsupported(mode, Protocol::Imap).is_none());
        }
        assert!(unsupported(Mode::Raw, Protocol::Ftp).is_none());
    }

    #[test]
    fn sieve_quoted_strings_are_escaped() {
        assert_eq!(quoted(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
