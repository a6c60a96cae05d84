//! `starttls tunnel`: the raw relay after the dialog (a TLS client does its own handshake with
//! the server), `--terminate` for plaintext clients and `--front` for plaintext servers, and
//! every guard of the dialog holding through the tunnel.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use rustls::{ServerConnection, StreamOwned};
use starttls::Protocol;

/// A running `starttls` process whose stdout lines arrive on a channel; killed when dropped.
struct Running {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// The next per-connection log line (a tunnel prints one as each connection ends).
    fn log_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("no log line from the tunnel")
    }
}

fn files() -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("starttls-tunnel-test-{}", std::process::id()));
    static WRITTEN: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    WRITTEN.get_or_init(|| {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&ca, &pki().ca_pem).unwrap();
        std::fs::write(&cert, &pki().server.chain_pem).unwrap();
        std::fs::write(&key, &pki().server.key_pem).unwrap();
    });
    (ca, cert, key)
}

/// Starts `starttls ARGS` and reads the port from its first line that names `on ADDR:PORT`.
fn start(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_starttls"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut port = None;
    for _ in 0..3 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        // "serving smtp on 127.0.0.1:PORT as ..." / "tunnel raw smtp on 127.0.0.1:PORT to ..."
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "on") {
            port = words
                .get(i + 1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok());
            break;
        }
    }
    let port = port.unwrap_or_else(|| panic!("no port printed by starttls {args:?}"));
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Running { child, port, lines }
}

/// `starttls serve` for a protocol, with the test PKI's certificate.
fn starttls_serve(protocol: &str) -> Running {
    let (_, cert, key) = files();
    start(&[
        "serve",
        "--protocol",
        protocol,
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ])
}

fn tunnel(extra: &[&str], protocol: &str, server_port: u16) -> Running {
    let connect = format!("127.0.0.1:{server_port}");
    let mut args = vec![
        "tunnel",
        "--protocol",
        protocol,
        "--listen",
        "127.0.0.1:0",
        "--connect",
        &connect,
        "--timeout",
        "5",
    ];
    args.extend_from_slice(extra);
    start(&args)
}

fn local(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// The library's server side on one connection: after the upgrade, reads one line and answers
/// it, then closes with close_notify.
fn library_server(protocol: Protocol) -> (u16, std::thread::JoinHandle<String>) {
    let config = starttls::ServerConfig::builder()
        .certificate_pem(
            pki().server.chain_pem.clone().into_bytes(),
            pki().server.key_pem.clone().into_bytes(),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut conn = starttls::accept(&config, protocol, sock)
            .unwrap_or_else(|e| panic!("{protocol}: accept: {e}"));
        let mut line = Vec::new();
        conn.read_line_bounded(&mut line, 1000).unwrap();
        conn.write_all(b"pong\r\n").unwrap();
        conn.flush().unwrap();
        let _ = conn.close();
        String::from_utf8_lossy(&line).trim_end().to_owned()
    });
    (port, handle)
}

/// Every protocol with a STARTTLS dialog on both ends: the tunnel runs the client's half, a TLS
/// client behind it shakes hands with the real server and talks to it.
#[test]
fn a_tls_client_reaches_the_server_through_the_raw_tunnel_for_every_protocol() {
    let client = client_config();
    for protocol in [
        Protocol::Smtp,
        Protocol::Lmtp,
        Protocol::Imap,
        Protocol::Pop3,
        Protocol::Nntp,
        Protocol::Sieve,
        Protocol::Ftp,
        Protocol::Xmpp,
        Protocol::Ldap,
        Protocol::Postgres,
        Protocol::Http,
        Protocol::Mysql,
    ] {
        let (server_port, server) = library_server(protocol);
        let t = tunnel(&["--max-connections", "1"], protocol.scheme(), server_port);
        let tcp = local(t.port);
        let options = starttls::ConnectOptions::new().server_name("localhost");
        let mut conn = starttls::handshake_only_with(&client, tcp, &options)
            .unwrap_or_else(|e| panic!("{protocol}: TLS through the tunnel: {e}"));
        conn.write_all(b"ping\r\n").unwrap();
        conn.flush().unwrap();
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        assert!(
            got.ends_with(b"pong\r\n"),
            "{protocol}: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert_eq!(server.join().unwrap(), "ping", "{protocol}");
        // The server closed; the client closing too ends the relay.
        drop(conn);
        let log = t.log_line();
        assert!(
            log.contains("mode=raw outcome=ok") && log.contains("end=closed"),
            "{protocol}: {log}"
        );
    }
}

/// What the server's plaintext dialog says, and what it answers to STARTTLS.
fn scripted_starttls(
    protocol: Protocol,
    go_ahead: &'static [u8],
) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    serve(move |mut p| {
        match protocol {
            Protocol::Smtp => {
                p.send(b"220 mx ESMTP\r\n");
                p.line();
                p.send(b"250-mx\r\n250 STARTTLS\r\n");
            }
            Protocol::Imap => {
                p.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n");
            }
            // STLS straight after the greeting (no CAPA before TLS).
            Protocol::Pop3 => p.send(b"+OK hi\r\n"),
            _ => unreachable!(),
        }
        // IMAP's go-ahead carries the tag of the client's STARTTLS.
        let command = p.line();
        let tag = command.split(' ').next().unwrap_or_default();
        let go_ahead = String::from_utf8_lossy(go_ahead).replace("TAG", tag);
        p.send(go_ahead.as_bytes());
        p.rest()
    })
}

/// Rule 1 through the tunnel: plaintext queued behind the go-ahead is an injection; the local
/// client gets nothing at all, and nothing it sent reaches the server.
#[test]
fn the_raw_tunnel_refuses_a_server_that_injects_after_the_go_ahead() {
    for (protocol, go_ahead) in [
        (Protocol::Smtp, &b"220 go ahead\r\n250 forged\r\n"[..]),
        (Protocol::Imap, &b"TAG OK begin TLS\r\n* forged\r\n"[..]),
        (Protocol::Pop3, &b"+OK begin TLS\r\n+OK forged\r\n"[..]),
    ] {
        let (port, server) = scripted_starttls(protocol, go_ahead);
        let t = tunnel(&["--max-connections", "1"], protocol.scheme(), port);
        let mut c = local(t.port);
        c.write_all(b"\x16\x03\x01 not really a hello\r\n").unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        assert!(got.is_empty(), "{protocol}: the client got {got:?}");
        let log = t.log_line();
        assert!(
            log.contains("outcome=refused side=server error=injection"),
            "{protocol}: {log}"
        );
        let seen = server.join().unwrap();
        assert!(
            !String::from_utf8_lossy(&seen).contains("not really"),
            "{protocol}: the client's bytes reached the server: {seen:?}"
        );
    }
}

/// Rule 2 through the tunnel: a server without STARTTLS gets nothing more in plaintext (not
/// the local client's bytes), and the client gets nothing.
#[test]
fn the_raw_tunnel_requires_starttls() {
    let (port, server) = serve(|mut p| {
        p.send(b"220 mx ESMTP\r\n");
        p.line();
        p.send(b"250-mx\r\n250 SIZE 100\r\n");
        p.rest()
    });
    let t = tunnel(&["--max-connections", "1"], "smtp", port);
    let mut c = local(t.port);
    // A TLS record's header, then bytes that must never reach the server in plaintext.
    c.write_all(b"\x16\x03\x01\x00\x20MAIL FROM:<secret@example.org>\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.is_empty(), "the client got {got:?}");
    let log = t.log_line();
    assert!(log.contains("error=not_offered"), "{log}");
    let seen = String::from_utf8_lossy(&server.join().unwrap()).into_owned();
    assert!(!seen.contains("secret"), "sent in plaintext: {seen:?}");
}

fn read_reply(c: &mut TcpStream) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = read_line(c);
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return lines;
        }
    }
}

/// A plaintext client behind `--terminate`: greeted in its protocol, its commands answered by
/// the server inside TLS (the library's `serve`, verified against the test CA).
#[test]
fn terminate_greets_a_plaintext_client_and_relays_into_tls() {
    let (ca, _, _) = files();
    let ca = ca.to_str().unwrap();
    let terminate = [
        "--terminate",
        "--ca-file",
        ca,
        "--servername",
        "localhost",
        "--max-connections",
        "1",
    ];

    let server = starttls_serve("smtp");
    let t = tunnel(&terminate, "smtp", server.port);
    let mut c = local(t.port);
    assert!(read_reply(&mut c)[0].starts_with("220 "));
    c.write_all(b"EHLO me\r\n").unwrap();
    let ehlo = read_reply(&mut c);
    assert!(ehlo.iter().any(|l| l.contains("AUTH PLAIN")), "{ehlo:?}");
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    // A message bigger than any buffer, relayed whole.
    c.write_all(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        .unwrap();
    for _ in 0..3 {
        read_reply(&mut c);
    }
    let body = "x".repeat(998) + "\r\n";
    for _ in 0..200 {
        c.write_all(body.as_bytes()).unwrap();
    }
    c.write_all(b".\r\nQUIT\r\n").unwrap();
    assert!(read_reply(&mut c)[0].starts_with("250"));
    assert!(read_reply(&mut c)[0].starts_with("221"));
    drop(c);
    let log = t.log_line();
    assert!(
        log.contains("mode=terminate outcome=ok tls=TLSv1.3"),
        "{log}"
    );
    assert!(log.contains("end=closed"), "{log}");

    // IMAP: the greeting carries the capabilities read inside TLS, not those before it.
    let server = starttls_serve("imap");
    let t = tunnel(&terminate, "imap", server.port);
    let mut c = local(t.port);
    let greeting = read_line(&mut c);
    assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
    assert!(
        greeting.contains("AUTH=PLAIN") && !greeting.contains("STARTTLS"),
        "{greeting}"
    );
    c.write_all(b"a LOGOUT\r\n").unwrap();
    assert!(read_line(&mut c).starts_with("* BYE"));

    // ManageSieve: the greeting is the capability list the server re-sent inside TLS.
    let server = starttls_serve("sieve");
    let t = tunnel(&terminate, "sieve", server.port);
    let mut c = local(t.port);
    let mut caps = Vec::new();
    loop {
        let line = read_line(&mut c);
        if line.starts_with("OK") {
            break;
        }
        caps.push(line);
    }
    assert!(caps.iter().any(|l| l == "\"SASL\" \"PLAIN\""), "{caps:?}");
    assert!(!caps.iter().any(|l| l.contains("STARTTLS")), "{caps:?}");
    c.write_all(b"LOGOUT\r\n").unwrap();
    assert!(read_line(&mut c).starts_with("OK"));

    for (protocol, first, bye, answer) in [
        ("pop3", "+OK", "QUIT", "+OK"),
        ("nntp", "20", "QUIT", "205"),
    ] {
        let server = starttls_serve(protocol);
        let t = tunnel(&terminate, protocol, server.port);
        let mut c = local(t.port);
        let greeting = read_line(&mut c);
        assert!(greeting.starts_with(first), "{protocol}: {greeting}");
        c.write_all(format!("{bye}\r\n").as_bytes()).unwrap();
        let reply = read_line(&mut c);
        assert!(reply.starts_with(answer), "{protocol}: {reply}");
    }

    // PostgreSQL: a client that asks for TLS first is told no, as by a server without it.
    let server = starttls_serve("postgres");
    let t = tunnel(&terminate, "postgres", server.port);
    let mut c = local(t.port);
    c.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap();
    let mut answer = [0u8; 1];
    c.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"N");
}

/// A server whose certificate does not verify: the plaintext client is told, in its protocol,
/// that the server is unavailable for now; nothing of its own is sent anywhere.
#[test]
fn terminate_tells_the_client_when_the_server_cannot_be_verified() {
    let server = starttls_serve("smtp");
    // No --ca-file: the webpki roots do not know the test CA.
    let t = tunnel(
        &[
            "--terminate",
            "--servername",
            "localhost",
            "--max-connections",
            "1",
        ],
        "smtp",
        server.port,
    );
    let mut c = local(t.port);
    let line = read_line(&mut c);
    assert!(line.starts_with("421 4.7.0 "), "{line}");
    assert!(line.contains("certificate"), "{line}");
    let log = t.log_line();
    assert!(
        log.contains("outcome=refused side=server error=certificate"),
        "{log}"
    );

    let server = starttls_serve("imap");
    let t = tunnel(
        &[
            "--terminate",
            "--servername",
            "elsewhere.example",
            "--max-connections",
            "1",
        ],
        "imap",
        server.port,
    );
    let mut c = local(t.port);
    let line = read_line(&mut c);
    assert!(line.starts_with("* BYE [UNAVAILABLE] "), "{line}");
}

/// `--front`: TLS clients get the library's STARTTLS, the plaintext server behind it gets the
/// decrypted session — its own greeting dropped, since the client already had one.
#[test]
fn front_puts_starttls_in_front_of_a_plaintext_server() {
    let (_, cert, key) = files();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let front = [
        "--front",
        "--cert",
        cert,
        "--key",
        key,
        "--max-connections",
        "1",
    ];

    let (port, backend) = serve(|mut p| {
        p.send(b"220-backend greeting\r\n220 more of it\r\n");
        let ehlo = p.line();
        p.send(b"250-backend.example\r\n250 X-BACKEND\r\n");
        let noop = p.line();
        p.send(b"250 backend noop\r\n");
        let quit = p.line();
        p.send(b"221 backend bye\r\n");
        vec![ehlo, noop, quit]
    });
    let t = tunnel(&front, "smtp", port);
    let config = client_builder()
        .fetch_capabilities_after_tls(true)
        .build()
        .unwrap();
    let mut conn =
        starttls::connect_named(&config, Protocol::Smtp, "127.0.0.1", t.port, "localhost").unwrap();
    assert_eq!(conn.capabilities().unwrap(), ["X-BACKEND"]);
    conn.write_all(b"NOOP\r\n").unwrap();
    conn.flush().unwrap();
    let mut reply = Vec::new();
    conn.read_line_bounded(&mut reply, 1000).unwrap();
    assert_eq!(reply, b"250 backend noop\r\n");
    conn.quit().unwrap();
    let seen = backend.join().unwrap();
    assert!(seen[0].starts_with("EHLO "), "{seen:?}");
    assert_eq!(seen[1..], ["NOOP", "QUIT"]);
    let log = t.log_line();
    assert!(log.contains("mode=front outcome=ok tls=TLSv1.3"), "{log}");

    // IMAP: the backend's "* OK" is dropped; tagged commands go through.
    let (port, backend) = serve(|mut p| {
        p.send(b"* OK backend ready\r\n");
        let cmd = p.line();
        p.send(b"t1 OK backend noop\r\n");
        cmd
    });
    let t = tunnel(&front, "imap", port);
    let mut conn = starttls::connect_named(
        &client_config(),
        Protocol::Imap,
        "127.0.0.1",
        t.port,
        "localhost",
    )
    .unwrap();
    conn.write_all(b"t1 NOOP\r\n").unwrap();
    conn.flush().unwrap();
    let mut reply = Vec::new();
    conn.read_line_bounded(&mut reply, 1000).unwrap();
    assert_eq!(reply, b"t1 OK backend noop\r\n");
    assert_eq!(backend.join().unwrap(), "t1 NOOP");

    // A backend that refuses: the client is told so in place of a greeting.
    let (port, _backend) = serve(|mut p| {
        p.send(b"554 no service\r\n");
    });
    let t = tunnel(&front, "smtp", port);
    let e = starttls::connect_named(
        &client_config(),
        Protocol::Smtp,
        "127.0.0.1",
        t.port,
        "localhost",
    )
    .unwrap_err();
    assert_eq!(e.kind(), starttls::ErrorKind::Refused, "{e}");
    assert!(
        e.to_string()
            .contains("421 4.7.0 starttls tunnel: the server is not available (refused)"),
        "{e}"
    );
    let log = t.log_line();
    assert!(
        log.contains("outcome=refused side=server error=refused"),
        "{log}"
    );
}

#[test]
fn modes_that_cannot_carry_a_protocol_are_usage_errors() {
    for (mode, protocol) in [
        ("--terminate", "ftp"),
        ("--front", "ftp"),
        ("--terminate", "mysql"),
        ("--front", "mysql"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_starttls"))
            .args([
                "tunnel",
                mode,
                "--protocol",
                protocol,
                "--listen",
                "127.0.0.1:0",
                "--connect",
                "127.0.0.1:1",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{mode} {protocol}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cannot carry") && err.contains("raw mode"),
            "{err}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_starttls"))
        .args([
            "tunnel",
            "--terminate",
            "--front",
            "--protocol",
            "smtp",
            "--listen",
            "127.0.0.1:0",
            "--connect",
            "x:25",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The raw tunnel is for TLS clients: a plaintext client (an LDAP bind, a PostgreSQL startup
/// message would follow the go-ahead in clear) is refused before the server is dialled.
#[test]
fn the_raw_tunnel_refuses_a_client_that_does_not_start_tls() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = tunnel(&["--max-connections", "1"], "ldap", port);
    let mut c = local(t.port);
    c.write_all(b"0\x0c\x02\x01\x01`\x07\x02\x01\x03\x04\x00\x80\x00")
        .unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");
    let log = t.log_line();
    assert!(
        log.contains("outcome=refused side=client error=protocol"),
        "{log}"
    );
    assert!(log.contains("did not start TLS"), "{log}");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the server was dialled");
}

/// A server that ends with its last reply and close_notify in one write and keeps its socket
/// open: the plaintext client still gets the end of the stream at once, not after the idle
/// time (300 s; the client here waits 10 s).
#[test]
fn terminate_passes_on_a_close_notify_that_came_with_the_last_data() {
    let (port, server) = serve(|mut p| {
        p.send(b"220 mx ESMTP\r\n");
        p.line();
        p.send(b"250-mx\r\n250 STARTTLS\r\n");
        p.line();
        p.send(b"220 go ahead\r\n");
        let mut conn = ServerConnection::new(server_config(&pki().server)).unwrap();
        let mut sock = p.sock;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).unwrap();
        }
        let mut tls = StreamOwned::new(conn, sock);
        let quit = read_line(&mut tls);
        tls.conn.writer().write_all(b"221 bye\r\n").unwrap();
        tls.conn.send_close_notify();
        let mut both = Vec::new();
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut both).unwrap();
        }
        tls.sock.write_all(&both).unwrap();
        // The socket stays open until the tunnel closes its end (well past the client's
        // patience if the close_notify is missed).
        tls.sock
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut sink = [0u8; 256];
        while matches!(tls.sock.read(&mut sink), Ok(n) if n > 0) {}
        quit
    });
    let (ca, _, _) = files();
    let t = tunnel(
        &[
            "--terminate",
            "--ca-file",
            ca.to_str().unwrap(),
            "--servername",
            "localhost",
            "--max-connections",
            "1",
        ],
        "smtp",
        port,
    );
    let mut c = local(t.port);
    assert!(read_line(&mut c).starts_with("220 "));
    c.write_all(b"QUIT\r\n").unwrap();
    assert_eq!(read_line(&mut c), "221 bye");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest)
        .expect("the end of the stream did not come");
    assert!(rest.is_empty());
    drop(c);
    let log = t.log_line();
    assert!(
        log.contains("outcome=ok") && log.contains("end=closed"),
        "{log}"
    );
    assert_eq!(server.join().unwrap(), "QUIT");
}

#[test]
fn usage_mistakes_are_named() {
    for (args, words) in [
        (
            [
                "--listen",
                "127.0.0.1:0",
                "--connect",
                "smtp://127.0.0.1:25",
            ],
            "not a URL",
        ),
        (
            ["--listen", "127.0.0.1", "--connect", "127.0.0.1:25"],
            "ADDR:PORT needed",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_starttls"))
            .args(["tunnel", "--protocol", "smtp"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{args:?}: {err}");
    }
}

/// A plaintext server that never greets: the connection is refused as a timeout (not an I/O
/// error), and a tunnel that ends after it exits 1.
#[test]
fn a_silent_server_is_a_timeout_and_the_exit_status_says_so() {
    let (port, _held) = serve(|p| {
        std::thread::sleep(Duration::from_secs(4));
        drop(p);
    });
    let (_, cert, key) = files();
    let mut child = Command::new(env!("CARGO_BIN_EXE_starttls"))
        .args([
            "tunnel",
            "--front",
            "--protocol",
            "pop3",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--connect", &format!("127.0.0.1:{port}"), "--timeout", "1"])
        .args(["--max-connections", "1", "--cert", cert.to_str().unwrap()])
        .args(["--key", key.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let tunnel_port: u16 = first
        .split_whitespace()
        .nth(4)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    let mut c = local(tunnel_port);
    let line = read_line(&mut c);
    assert!(line.starts_with("-ERR [SYS/TEMP] "), "{line}");
    let mut log = String::new();
    out.read_line(&mut log).unwrap();
    assert!(
        log.contains("outcome=refused side=server error=timeout"),
        "{log}"
    );
    assert_eq!(child.wait().unwrap().code(), Some(1));
}
