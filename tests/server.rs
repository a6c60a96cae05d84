//! The library's server side: its own client against it for every protocol, and hostile
//! clients (pipelining after STARTTLS, credentials before TLS, floods, plaintext instead of a
//! ClientHello, silence).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::*;
use starttls::{ErrorKind, Phase, Protocol, ServerConfig, Timeouts};

fn server_cfg() -> ServerConfig {
    ServerConfig::builder()
        .certificate_pem(pki().server.chain_pem.clone(), pki().server.key_pem.clone())
        .hostname("mx.test")
        .timeouts(Timeouts {
            reply: Duration::from_secs(5),
            handshake: Duration::from_secs(5),
            ..Timeouts::default()
        })
        .build()
        .unwrap()
}

/// Accepts one connection with the library's server side and hands the result to `then`.
fn accept_one<R: Send + 'static>(
    protocol: Protocol,
    cfg: ServerConfig,
    then: impl FnOnce(starttls::Result<starttls::Connection>) -> R + Send + 'static,
) -> (u16, JoinHandle<R>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        then(starttls::accept(&cfg, protocol, sock))
    });
    (port, handle)
}

const ALL: [Protocol; 24] = [
    Protocol::Smtp,
    Protocol::Submission,
    Protocol::Lmtp,
    Protocol::Imap,
    Protocol::Pop3,
    Protocol::Ldap,
    Protocol::Ftp,
    Protocol::Xmpp,
    Protocol::XmppServer,
    Protocol::Nntp,
    Protocol::Sieve,
    Protocol::Postgres,
    Protocol::Http,
    Protocol::Mysql,
    Protocol::Smtps,
    Protocol::Imaps,
    Protocol::Pop3s,
    Protocol::Nntps,
    Protocol::Ldaps,
    Protocol::Xmpps,
    Protocol::Ftps,
    Protocol::PostgresDirect,
    Protocol::Https,
    Protocol::Tls,
];

#[test]
fn the_library_client_upgrades_against_the_library_server_for_every_protocol() {
    assert_eq!(
        ALL.len(),
        Protocol::ALL.len(),
        "a protocol is missing from this test"
    );
    for protocol in ALL {
        let (port, server) = accept_one(protocol, server_cfg(), |conn| {
            let mut conn = conn.unwrap();
            assert!(conn.is_server() && conn.is_encrypted());
            conn.write_all(b"from server\r\n").unwrap();
            let got = read_line(&mut conn);
            (
                got,
                conn.peer_name().map(|n| n.get_untrusted().to_string()),
                conn.server_name().to_owned(),
            )
        });
        let mut conn = starttls::connect(&client_config(), protocol, "localhost", port)
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        assert!(conn.is_encrypted(), "{protocol}");
        assert_eq!(read_line(&mut conn), "from server", "{protocol}");
        conn.write_all(b"from client\r\n").unwrap();
        let (got, peer_name, sni) = server.join().unwrap();
        assert_eq!(got, "from client", "{protocol}");
        assert_eq!(sni, "localhost", "{protocol}");
        match protocol {
            Protocol::Smtp | Protocol::Submission | Protocol::Lmtp => {
                assert_eq!(peer_name.as_deref(), Some("[127.0.0.1]"), "{protocol}");
            }
            Protocol::Xmpp | Protocol::XmppServer => {
                assert_eq!(peer_name.as_deref(), Some("localhost"), "{protocol}");
            }
            Protocol::Http => assert!(peer_name.unwrap().starts_with("localhost:")),
            _ => {}
        }
        if protocol == Protocol::Sieve {
            // The capabilities re-sent after TLS were read by the client.
            assert!(
                conn.capabilities()
                    .unwrap()
                    .contains(&"SASL PLAIN".to_string())
            );
        }
    }
}

/// A raw client: writes, and reads what the server says.
struct Raw(TcpStream);

impl Raw {
    fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw(s)
    }

    fn send(&mut self, b: &[u8]) {
        self.0.write_all(b).unwrap();
    }

    fn line(&mut self) -> String {
        read_line(&mut self.0)
    }

    /// Everything until the server closes.
    fn rest(&mut self) -> String {
        let mut out = Vec::new();
        let _ = self.0.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn accept_err(protocol: Protocol) -> (u16, JoinHandle<starttls::Error>) {
    accept_one(protocol, server_cfg(), |r| r.unwrap_err())
}

#[test]
fn smtp_command_pipelined_after_starttls_is_injection_and_never_answered() {
    let (port, server) = accept_err(Protocol::Smtp);
    let mut c = Raw::connect(port);
    assert!(c.line().starts_with("220 mx.test"));
    c.send(b"EHLO evil\r\nSTARTTLS\r\nMAIL FROM:<attacker@evil>\r\n");
    let rest = c.rest();
    assert_eq!(server.join().unwrap().kind(), ErrorKind::Injection);
    assert!(rest.contains("250 STARTTLS"), "{rest}");
    assert!(
        !rest.contains("220 2.0.0"),
        "no go-ahead may be sent: {rest}"
    );
}

#[test]
fn imap_and_pop3_pipelining_after_starttls_is_injection() {
    let (port, server) = accept_err(Protocol::Imap);
    let mut c = Raw::connect(port);
    c.line();
    c.send(b"a STARTTLS\r\nb LOGIN user pass\r\n");
    assert!(!c.rest().contains("a OK"));
    assert_eq!(server.join().unwrap().kind(), ErrorKind::Injection);

    let (port, server) = accept_err(Protocol::Pop3);
    let mut c = Raw::connect(port);
    c.line();
    c.send(b"STLS\r\nUSER x\r\n");
    assert!(!c.rest().contains("+OK Begin"));
    assert_eq!(server.join().unwrap().kind(), ErrorKind::Injection);
}

#[test]
fn plaintext_after_the_go_ahead_instead_of_a_client_hello_is_injection() {
    let (port, server) = accept_err(Protocol::Smtp);
    let mut c = Raw::connect(port);
    c.line();
    c.send(b"STARTTLS\r\n");
    assert_eq!(c.line(), "220 2.0.0 Ready to start TLS");
    c.send(b"MAIL FROM:<x@y>\r\n");
    assert_eq!(server.join().unwrap().kind(), ErrorKind::Injection);
}

#[test]
fn credentials_before_tls_are_refused_in_every_protocol() {
    let cases: [(Protocol, &[u8], &str); 6] = [
        (
            Protocol::Smtp,
            b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n",
            "530 5.7.0",
        ),
        (
            Protocol::Imap,
            b"a LOGIN user pass\r\n",
            "a NO [PRIVACYREQUIRED]",
        ),
        (Protocol::Pop3, b"USER user\r\n", "-ERR"),
        (Protocol::Ftp, b"USER user\r\n", "530"),
        (Protocol::Nntp, b"AUTHINFO USER user\r\n", "483"),
        (
            Protocol::Sieve,
            b"AUTHENTICATE \"PLAIN\" \"AHVzZXIAcGFzcw==\"\r\n",
            "NO (ENCRYPT-NEEDED)",
        ),
    ];
    for (protocol, creds, refusal) in cases {
        let (port, server) = accept_err(protocol);
        let mut c = Raw::connect(port);
        // Skip the greeting (ManageSieve's ends with its OK line).
        loop {
            let l = c.line();
            if protocol != Protocol::Sieve || l.starts_with("OK") {
                break;
            }
        }
        c.send(creds);
        let reply = c.line();
        assert!(reply.starts_with(refusal), "{protocol}: {reply}");
        drop(c);
        let e = server.join().unwrap();
        assert_eq!(e.kind(), ErrorKind::Closed, "{protocol}: {e}");
    }
}

#[test]
fn ldap_bind_before_starttls_is_confidentiality_required() {
    let (port, server) = accept_err(Protocol::Ldap);
    let mut c = Raw::connect(port);
    // BindRequest, message 1, simple auth "cn=x" / "pw".
    c.send(&[
        0x30, 0x10, 0x02, 0x01, 0x01, 0x60, 0x0b, 0x02, 0x01, 0x03, 0x04, 0x04, b'c', b'n', b'=',
        b'x', 0x80, 0x00,
    ]);
    let mut resp = [0u8; 14];
    c.0.read_exact(&mut resp).unwrap();
    // BindResponse (0x61) with resultCode 13 (confidentialityRequired).
    assert_eq!(resp[5], 0x61);
    assert_eq!(&resp[7..10], &[0x0a, 0x01, 13]);
    drop(c);
    assert_eq!(server.join().unwrap().kind(), ErrorKind::Closed);
}

#[test]
fn an_overlong_line_fails_cleanly() {
    let (port, server) = accept_err(Protocol::Smtp);
    let mut c = Raw::connect(port);
    c.line();
    let chunk = vec![b'A'; 64 * 1024];
    for _ in 0..16 {
        if c.0.write_all(&chunk).is_err() {
            break;
        }
    }
    assert_eq!(server.join().unwrap().kind(), ErrorKind::ProtocolViolation);
}

#[test]
fn endless_commands_before_starttls_are_bounded() {
    let (port, server) = accept_err(Protocol::Smtp);
    let mut c = Raw::connect(port);
    c.line();
    for _ in 0..100 {
        if c.0.write_all(b"NOOP\r\n").is_err() {
            break;
        }
    }
    let e = server.join().unwrap();
    assert_eq!(e.kind(), ErrorKind::ProtocolViolation, "{e}");
}

#[test]
fn a_silent_client_times_out() {
    let cfg = ServerConfig::builder()
        .certificate_pem(pki().server.chain_pem.clone(), pki().server.key_pem.clone())
        .timeouts(Timeouts {
            reply: Duration::from_millis(300),
            ..Timeouts::default()
        })
        .build()
        .unwrap();
    let (port, server) = accept_one(Protocol::Imap, cfg, |r| r.unwrap_err());
    let _c = Raw::connect(port);
    let e = server.join().unwrap();
    assert!(
        matches!(
            e,
            starttls::Error::Timeout {
                phase: Phase::StartTls
            }
        ),
        "{e}"
    );
}

#[test]
fn tls_only_accept_refuses_leftover_buffered_bytes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (sock, _) = listener.accept().unwrap();
    let e = starttls::accept_tls(&server_cfg(), sock, b"MAIL FROM:<x@y>\r\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Injection);
}

#[test]
fn tls_only_accept_after_the_callers_own_dialog() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.write_all(b"220 go ahead\r\n").unwrap();
        let mut conn = starttls::accept_tls(&server_cfg(), sock, b"").unwrap();
        read_line(&mut conn)
    });
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(read_line(&mut tcp), "220 go ahead");
    let mut conn = starttls::handshake_only(&client_config(), tcp, "localhost").unwrap();
    conn.write_all(b"EHLO inside\r\n").unwrap();
    assert_eq!(server.join().unwrap(), "EHLO inside");
}

#[test]
fn postgres_plaintext_startup_gets_an_error_response() {
    let (port, server) = accept_err(Protocol::Postgres);
    let mut c = Raw::connect(port);
    let params = b"user\0x\0\0";
    let mut msg = ((8 + params.len()) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&196608u32.to_be_bytes());
    msg.extend_from_slice(params);
    c.send(&msg);
    let rest = c.rest();
    assert!(rest.starts_with('E') && rest.contains("28000"), "{rest:?}");
    assert_eq!(server.join().unwrap().kind(), ErrorKind::Refused);
}

#[test]
fn http_without_upgrade_gets_426_then_may_upgrade() {
    let (port, server) = accept_one(Protocol::Http, server_cfg(), |r| r.map(|_| ()));
    let mut c = Raw::connect(port);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.line(), "HTTP/1.1 426 Upgrade Required");
    while !c.line().is_empty() {}
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nUpgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n");
    assert_eq!(c.line(), "HTTP/1.1 101 Switching Protocols");
    while !c.line().is_empty() {}
    let conn = starttls::handshake_only(&client_config(), c.0, "localhost");
    assert!(conn.is_ok());
    server.join().unwrap().unwrap();
}

#[test]
fn server_config_errors() {
    let e = ServerConfig::builder().build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = ServerConfig::builder()
        .certificate_pem(pki().server.chain_pem.clone(), pki().client.key_pem.clone())
        .build()
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Config,
        "a key that does not match the certificate: {e}"
    );
}

#[test]
fn credentials_a_client_sends_before_tls_are_never_logged_by_the_server() {
    let secret = "s3cr3t";
    let b64 = "AGFsaWNlAHMzY3IzdA=="; // "\0alice\0s3cr3t"
    let cases: Vec<(Protocol, String)> = vec![
        (Protocol::Smtp, format!("AUTH PLAIN {b64}\r\n")),
        (
            Protocol::Smtp,
            "AUTH LOGIN\r\nYWxpY2U=\r\nczNjcjN0\r\n".into(),
        ),
        (Protocol::Lmtp, format!("AUTH PLAIN {b64}\r\n")),
        (Protocol::Imap, format!("a LOGIN alice {secret}\r\n")),
        (Protocol::Imap, format!("a AUTHENTICATE PLAIN {b64}\r\n")),
        // A literal is refused with an error that quotes the line: not the password in it.
        (Protocol::Imap, format!("a LOGIN alice {secret} {{6}}\r\n")),
        (Protocol::Pop3, format!("PASS {secret}\r\n")),
        (Protocol::Pop3, format!("AUTH PLAIN {b64}\r\n")),
        (Protocol::Nntp, format!("AUTHINFO PASS {secret}\r\n")),
        (Protocol::Nntp, format!("AUTHINFO SASL PLAIN {b64}\r\n")),
        (Protocol::Ftp, format!("PASS {secret}\r\n")),
        (
            Protocol::Sieve,
            format!("AUTHENTICATE \"PLAIN\" \"{b64}\"\r\n"),
        ),
        (
            Protocol::Http,
            format!("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {b64}\r\n\r\n"),
        ),
        (
            Protocol::Xmpp,
            format!(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{b64}</auth>"
            ),
        ),
    ];
    for (protocol, creds) in cases {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let cfg = ServerConfig::builder()
            .certificate_pem(pki().server.chain_pem.clone(), pki().server.key_pem.clone())
            .timeouts(Timeouts {
                reply: Duration::from_millis(800),
                ..Timeouts::default()
            })
            .on_dialog_line(move |l| sink.lock().unwrap().push(l.text.clone()))
            .build()
            .unwrap();
        let (port, server) = accept_one(protocol, cfg, |r| r.err().map(|e| e.to_string()));
        let mut c = Raw::connect(port);
        c.send(creds.as_bytes());
        thread::sleep(Duration::from_millis(100));
        c.send(b"QUIT\r\n");
        let _ = c.0.shutdown(std::net::Shutdown::Write);
        let answer = c.rest();
        let error = server.join().unwrap().unwrap_or_default();
        let logged = lines.lock().unwrap().join("\n");
        for shown in [&logged, &error, &answer] {
            assert!(
                !shown.contains(secret) && !shown.contains(b64) && !shown.contains("czNjcjN0"),
                "{protocol} {creds:?}: a credential was shown: {shown}"
            );
        }
        assert!(
            logged.contains("<credentials>") || logged.contains("<password>"),
            "{protocol} {creds:?}: nothing redacted in {logged}"
        );
    }
}

#[test]
fn a_trickling_client_is_bounded_by_one_deadline_for_the_whole_dialog() {
    let cfg = ServerConfig::builder()
        .certificate_pem(pki().server.chain_pem.clone(), pki().server.key_pem.clone())
        .timeouts(Timeouts {
            reply: Duration::from_millis(300),
            ..Timeouts::default()
        })
        .build()
        .unwrap();
    let (port, server) = accept_one(Protocol::Smtp, cfg, |r| r.unwrap_err());
    let mut c = Raw::connect(port);
    c.line(); // greeting
    // One harmless command every 200 ms, each well inside the reply timeout; count the answers.
    let trickle = thread::spawn(move || {
        use std::io::BufRead;
        let mut replies = std::io::BufReader::new(c.0.try_clone().unwrap());
        let mut answered = 0;
        for _ in 0..30 {
            let mut reply = String::new();
            // The server ends the dialog by closing (perhaps with a reset): that ends the count.
            if c.0.write_all(b"NOOP\r\n").is_err()
                || replies.read_line(&mut reply).is_err()
                || !reply.starts_with("250")
            {
                break;
            }
            answered += 1;
            thread::sleep(Duration::from_millis(200));
        }
        answered
    });
    let e = server.join().unwrap();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.phase(), Some(Phase::StartTls));
    // The whole dialog gets 4 reply timeouts (about 6 answers here), not 32 commands' worth.
    let answered = trickle.join().unwrap();
    assert!(answered < 15, "the server answered {answered} commands");
}

/// Reads one MySQL packet from a raw client's socket: (sequence, payload).
fn mysql_packet(c: &mut Raw) -> (u8, Vec<u8>) {
    let mut header = [0u8; 4];
    c.0.read_exact(&mut header).unwrap();
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut body = vec![0u8; len];
    c.0.read_exact(&mut body).unwrap();
    (header[3], body)
}

#[test]
fn mysql_offers_tls_and_refuses_a_plaintext_handshake_response_unread() {
    let (port, server) = accept_err(Protocol::Mysql);
    let mut c = Raw::connect(port);
    let (seq, greeting) = mysql_packet(&mut c);
    assert_eq!((seq, greeting[0]), (0, 10));
    // A full handshake response without CLIENT_SSL: user name and password proof in clear.
    let mut response = 0x000A_A205u32.to_le_bytes().to_vec();
    response.extend_from_slice(&[0, 0, 0, 1, 45]);
    response.extend_from_slice(&[0; 23]);
    response.extend_from_slice(b"root\0\x14");
    response.extend_from_slice(&[7; 20]);
    let mut packet = vec![response.len() as u8, 0, 0, 1];
    packet.extend(response);
    c.send(&packet);
    let (seq, err) = mysql_packet(&mut c);
    assert_eq!((seq, err[0]), (2, 0xff));
    assert_eq!(u16::from_le_bytes([err[1], err[2]]), 3159);
    let e = server.join().unwrap();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(!e.to_string().contains("root"), "{e}");
}

#[test]
fn mysql_bytes_pipelined_after_the_ssl_request_are_injection() {
    let (port, server) = accept_err(Protocol::Mysql);
    let mut c = Raw::connect(port);
    mysql_packet(&mut c);
    let mut request = vec![32, 0, 0, 1];
    request.extend_from_slice(&0x000A_AA05u32.to_le_bytes());
    request.extend_from_slice(&[0, 0, 0, 1, 45]);
    request.extend_from_slice(&[0; 23]);
    request.extend_from_slice(b"\x05\0\0\x02\x03SELECT");
    c.send(&request);
    assert_eq!(server.join().unwrap().kind(), ErrorKind::Injection);
    assert_eq!(c.rest(), "", "nothing may answer the pipelined bytes");
}
