//! The client against real rustls servers on loopback: every protocol, STARTTLS and implicit.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;
use starttls::{Protocol, Verification};

fn read_to_crlf(conn: &mut starttls::Connection) -> String {
    read_line(conn)
}

#[test]
fn smtp_starttls_end_to_end() {
    let (port, server) = serve(|mut p| {
        p.send(b"220-mx.test ESMTP\r\n220 welcome\r\n");
        let ehlo = p.line();
        p.send(b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
        assert_eq!(p.line(), "STARTTLS");
        p.send(b"220 2.0.0 Ready to start TLS\r\n");
        let mut t = p.tls(server_config(&pki().server));
        let ehlo2 = t.line();
        t.send(b"250-mx.test\r\n250-AUTH PLAIN\r\n250 SIZE 1000\r\n");
        assert_eq!(t.line(), "QUIT");
        t.send(b"221 bye\r\n");
        (ehlo, ehlo2, t.saw_close_notify())
    });
    let config = client_config();
    let mut conn = starttls::connect(&config, Protocol::Smtp, "localhost", port).unwrap();
    assert!(conn.is_encrypted());
    assert_eq!(conn.verification(), &Verification::Verified);
    assert!(conn.tls_version().is_some());
    assert!(conn.cipher_suite().is_some());
    assert_eq!(conn.peer_certificates().unwrap()[0], pki().server.chain[0]);
    assert_eq!(conn.greeting(), Some("220-mx.test ESMTP\n220 welcome"));
    assert_eq!(conn.starttls_offered(), Some(true));
    assert_eq!(
        conn.capabilities_before_tls().unwrap().get_untrusted(),
        &vec!["PIPELINING".to_string(), "STARTTLS".to_string()]
    );
    let caps = conn.fetch_capabilities().unwrap().to_vec();
    assert_eq!(caps, vec!["AUTH PLAIN", "SIZE 1000"]);
    conn.write_all(b"QUIT\r\n").unwrap();
    assert_eq!(read_to_crlf(&mut conn), "221 bye");
    conn.close().unwrap();
    let (ehlo, ehlo2, notify) = server.join().unwrap();
    // The default EHLO name is the local address literal.
    assert_eq!(ehlo, "EHLO [127.0.0.1]");
    assert_eq!(ehlo2, "EHLO [127.0.0.1]");
    assert!(notify, "close() must send close_notify");
}

#[test]
fn lmtp_starttls_with_configured_name() {
    let (port, server) = serve(|mut p| {
        p.send(b"220 lmtp ready\r\n");
        let lhlo = p.line();
        p.send(b"250-lmtp\r\n250 STARTTLS\r\n");
        assert_eq!(p.line(), "STARTTLS");
        p.send(b"220 go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        let lhlo2 = t.line();
        t.send(b"250-lmtp\r\n250 ENHANCEDSTATUSCODES\r\n");
        (lhlo, lhlo2)
    });
    let config = client_builder()
        .client_name("client.example")
        .fetch_capabilities_after_tls(true)
        .build()
        .unwrap();
    let conn = starttls::connect(&config, Protocol::Lmtp, "127.0.0.1", port).unwrap();
    assert_eq!(conn.capabilities().unwrap(), ["ENHANCEDSTATUSCODES"]);
    let (a, b) = server.join().unwrap();
    assert_eq!(a, "LHLO client.example");
    assert_eq!(b, "LHLO client.example");
}

/// An honest IMAP server may send untagged data right after its greeting (RFC 9051 §7): an
/// ALERT and a mailbox size, in the same segment, before and after TLS. The client upgrades.
#[test]
fn imap_untagged_data_after_the_greeting_is_accepted() {
    let (port, server) = serve(|mut p| {
        p.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n* OK [ALERT] Maintenance at noon\r\n* 3 EXISTS\r\n");
        assert_eq!(p.line(), "S1 STARTTLS");
        p.send(b"S1 OK Begin TLS negotiation now\r\n");
        let mut t = p.tls(server_config(&pki().server));
        t.send(b"* OK [ALERT] Still maintenance\r\n");
        assert_eq!(t.line(), "S2 CAPABILITY");
        t.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nS2 OK done\r\n");
    });
    let config = client_builder()
        .fetch_capabilities_after_tls(true)
        .build()
        .unwrap();
    let conn = starttls::connect(&config, Protocol::Imap, "localhost", port).unwrap();
    assert_eq!(conn.capabilities().unwrap(), ["IMAP4rev1", "AUTH=PLAIN"]);
    server.join().unwrap();
}

#[test]
fn imap_starttls_and_capability_inside_tls() {
    let (port, server) = serve(|mut p| {
        p.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n");
        assert_eq!(p.line(), "S1 STARTTLS");
        p.send(b"S1 OK Begin TLS negotiation now\r\n");
        let mut t = p.tls(server_config(&pki().server));
        assert_eq!(t.line(), "S2 CAPABILITY");
        t.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nS2 OK done\r\n");
        // Data pipelined right behind the reply reaches the application, not lost.
        t.send(b"* OK extra\r\n");
        assert_eq!(t.line(), "a LOGOUT");
        t.send(b"* BYE\r\na OK\r\n");
    });
    let config = client_config();
    let mut conn = starttls::connect(&config, Protocol::Imap, "localhost", port).unwrap();
    assert_eq!(
        conn.capabilities_before_tls().unwrap().get_untrusted(),
        &vec!["IMAP4rev1", "STARTTLS", "LOGINDISABLED"]
    );
    assert_eq!(
        conn.fetch_capabilities().unwrap(),
        ["IMAP4rev1", "AUTH=PLAIN"]
    );
    conn.write_all(b"a LOGOUT\r\n").unwrap();
    assert_eq!(read_line(&mut conn), "* OK extra");
    assert_eq!(read_line(&mut conn), "* BYE");
    assert_eq!(read_line(&mut conn), "a OK");
    server.join().unwrap();
}

#[test]
fn pop3_stls_then_capa_inside_tls() {
    let (port, server) = serve(|mut p| {
        p.send(b"+OK POP3 ready\r\n");
        assert_eq!(p.line(), "STLS");
        p.send(b"+OK Begin TLS\r\n");
        let mut t = p.tls(server_config(&pki().server));
        assert_eq!(t.line(), "CAPA");
        t.send(b"+OK list follows\r\nUSER\r\nSASL PLAIN\r\n.\r\n");
    });
    let config = client_config();
    let mut conn = starttls::connect(&config, Protocol::Pop3, "localhost", port).unwrap();
    assert_eq!(conn.starttls_offered(), Some(true));
    assert!(
        conn.capabilities_before_tls().is_none(),
        "POP3 does not ask before TLS"
    );
    assert_eq!(conn.fetch_capabilities().unwrap(), ["USER", "SASL PLAIN"]);
    server.join().unwrap();
}

#[test]
fn implicit_tls_for_every_protocol() {
    let cases: [(Protocol, &[u8], &str); 3] = [
        (Protocol::Smtps, b"220 smtps ready\r\n", "220 smtps ready"),
        (
            Protocol::Imaps,
            b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n",
            "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready",
        ),
        (Protocol::Pop3s, b"+OK pop3s\r\n", "+OK pop3s"),
    ];
    for (protocol, greeting, expected) in cases {
        let (port, server) = serve(move |p| {
            let mut t = p.tls(server_config(&pki().server));
            t.send(greeting);
        });
        let conn = starttls::connect(&client_config(), protocol, "localhost", port).unwrap();
        assert!(conn.is_encrypted());
        assert_eq!(conn.greeting(), Some(expected), "{protocol}");
        assert_eq!(conn.starttls_offered(), None);
        if protocol == Protocol::Imaps {
            assert_eq!(conn.capabilities().unwrap(), ["IMAP4rev1", "AUTH=PLAIN"]);
        }
        server.join().unwrap();
    }
}

#[test]
fn plain_tls_lets_the_client_speak_first() {
    let (port, server) = serve(|p| {
        let mut t = p.tls(server_config(&pki().server));
        let got = t.line();
        t.send(b"pong\r\n");
        got
    });
    let mut conn = starttls::connect(&client_config(), Protocol::Tls, "localhost", port).unwrap();
    conn.write_all(b"ping\r\n").unwrap();
    assert_eq!(read_line(&mut conn), "pong");
    assert_eq!(server.join().unwrap(), "ping");
}

#[test]
fn upgrade_a_socket_the_caller_connected() {
    let (port, server) = serve(|mut p| {
        p.send(b"+OK hi\r\n");
        assert_eq!(p.line(), "STLS");
        p.send(b"+OK go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        t.send(b"+OK inside\r\n");
    });
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut conn = starttls::upgrade(&client_config(), Protocol::Pop3, tcp, "localhost").unwrap();
    assert_eq!(read_line(&mut conn), "+OK inside");
    server.join().unwrap();
}

#[test]
fn ip_address_is_verified_and_not_sent_in_sni() {
    let (port, server) = serve(|mut p| {
        p.send(b"+OK hi\r\n");
        p.line();
        p.send(b"+OK go\r\n");
        let t = p.tls(server_config(&pki().server));
        t.stream.conn.server_name().map(str::to_owned)
    });
    let conn = starttls::connect(&client_config(), Protocol::Pop3, "127.0.0.1", port).unwrap();
    assert_eq!(conn.verification(), &Verification::Verified);
    assert_eq!(
        server.join().unwrap(),
        None,
        "an IP literal must never be sent in SNI"
    );

    let (port, server) = serve(|mut p| {
        p.send(b"+OK hi\r\n");
        p.line();
        p.send(b"+OK go\r\n");
        let t = p.tls(server_config(&pki().server));
        t.stream.conn.server_name().map(str::to_owned)
    });
    starttls::connect(&client_config(), Protocol::Pop3, "localhost", port).unwrap();
    assert_eq!(server.join().unwrap().as_deref(), Some("localhost"));
}

#[test]
fn ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED ipv6_loopback: no IPv6 on loopback here");
        return;
    }
    let (port, server) = serve_on("[::1]:0", |mut p| {
        p.send(b"220 v6\r\n");
        let ehlo = p.line();
        p.send(b"250-v6\r\n250 STARTTLS\r\n");
        p.line();
        p.send(b"220 go\r\n");
        p.tls(server_config(&pki().server));
        ehlo
    });
    let conn = starttls::connect(&client_config(), Protocol::Submission, "[::1]", port).unwrap();
    assert!(conn.peer_addr().unwrap().is_ipv6());
    assert_eq!(server.join().unwrap(), "EHLO [IPv6:::1]");
}

#[test]
fn sessions_resume_across_connections_from_one_config() {
    let config = client_config();
    let server_cfg = server_config(&pki().server);
    let mut resumed = Vec::new();
    for _ in 0..2 {
        let cfg = server_cfg.clone();
        let (port, server) = serve(move |p| {
            let mut t = p.tls(cfg);
            // Let the client read the session tickets before the server closes.
            t.send(b"hello\r\n");
            t.saw_close_notify();
        });
        let mut conn = starttls::connect(&config, Protocol::Tls, "localhost", port).unwrap();
        assert_eq!(read_line(&mut conn), "hello");
        resumed.push(conn.is_resumed());
        conn.close().unwrap();
        server.join().unwrap();
    }
    assert_eq!(resumed, [false, true]);
}

#[test]
fn client_certificate_is_presented() {
    let server_cfg = server_config_requiring_client_cert(&pki().server);
    let (port, server) = serve(move |p| {
        let mut t = p.tls(server_cfg);
        t.send(b"ok\r\n");
        t.stream.conn.peer_certificates().map(|c| c.len())
    });
    let config = client_builder()
        .client_auth_pem(pki().client.chain_pem.clone(), pki().client.key_pem.clone())
        .build()
        .unwrap();
    let mut conn = starttls::connect(&config, Protocol::Tls, "localhost", port).unwrap();
    assert_eq!(read_line(&mut conn), "ok");
    assert_eq!(server.join().unwrap(), Some(1));
}

#[test]
fn alpn_is_negotiated() {
    let server_cfg = {
        let mut c = (*server_config(&pki().server)).clone();
        c.alpn_protocols = vec![b"imap".to_vec()];
        std::sync::Arc::new(c)
    };
    let (port, server) = serve(move |p| {
        p.tls(server_cfg);
    });
    let config = client_builder().alpn(["smtp", "imap"]).build().unwrap();
    let conn = starttls::connect(&config, Protocol::Tls, "localhost", port).unwrap();
    assert_eq!(conn.alpn_protocol(), Some(&b"imap"[..]));
    server.join().unwrap();
}

#[test]
fn clean_close_reads_as_end_of_stream() {
    let (port, server) = serve(|p| {
        let mut t = p.tls(server_config(&pki().server));
        t.send(b"bye\r\n");
        t.stream.conn.send_close_notify();
        t.stream.flush().unwrap();
    });
    let mut conn = starttls::connect(&client_config(), Protocol::Tls, "localhost", port).unwrap();
    let mut all = Vec::new();
    conn.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"bye\r\n");
    server.join().unwrap();
}

#[test]
fn a_non_blocking_socket_is_upgraded_in_blocking_mode() {
    let (port, server) = serve(|mut p| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        p.send(b"+OK hi\r\n");
        assert_eq!(p.line(), "STLS");
        p.send(b"+OK go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        t.send(b"+OK inside\r\n");
    });
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let mut conn = starttls::upgrade(&client_config(), Protocol::Pop3, tcp, "localhost").unwrap();
    assert_eq!(read_line(&mut conn), "+OK inside");
    server.join().unwrap();
}

#[test]
fn dialog_observer_sees_every_line_in_order() {
    use std::sync::{Arc, Mutex};
    let (port, server) = serve(|mut p| {
        p.send(b"+OK hi\r\n");
        p.line();
        p.send(b"+OK go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        t.line();
        t.send(b"+OK\r\nTOP\r\n.\r\n");
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let config = client_builder()
        .fetch_capabilities_after_tls(true)
        .on_dialog_line(move |l| {
            sink.lock()
                .unwrap()
                .push((l.direction, l.encrypted, l.text.clone()))
        })
        .build()
        .unwrap();
    let conn = starttls::connect(&config, Protocol::Pop3, "localhost", port).unwrap();
    server.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    let expected: Vec<_> = conn
        .transcript()
        .iter()
        .map(|l| (l.direction, l.encrypted, l.text.clone()))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(seen.len(), 7);
    assert_eq!(
        seen[1],
        (starttls::Direction::Sent, false, "STLS".to_string())
    );
    assert_eq!(
        seen[3],
        (starttls::Direction::Sent, true, "CAPA".to_string())
    );
}

/// A large write is handed to rustls in chunks of three full records (for throughput on
/// loopback), and goes out as full 16 KiB records: a chunk that is not a multiple of the record
/// size would leave a short record behind every write. Counted on the wire, not timed.
#[test]
fn large_writes_become_full_records() {
    const WRITES: usize = 4;
    const WRITE_LEN: usize = 64 * 1024;
    let (port, server) = serve(|p| {
        let mut t = p.tls(server_config(&pki().server));
        t.send(b"go");
        // The client's handshake is all read; what follows on the socket is its data.
        let sock = &mut t.stream.sock;
        let mut records = Vec::new();
        let mut payload = 0usize;
        while payload < WRITES * WRITE_LEN {
            let mut header = [0u8; 5];
            sock.read_exact(&mut header).expect("record header");
            let len = u16::from_be_bytes([header[3], header[4]]) as usize;
            let mut body = vec![0u8; len];
            sock.read_exact(&mut body).expect("record body");
            // TLS 1.3 AEAD record: plaintext, one content-type byte, a 16-byte tag.
            payload += len - 17;
            records.push((header[0], len));
        }
        records
    });
    let config = client_config();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut conn = starttls::handshake_only(&config, tcp, "localhost").unwrap();
    assert_eq!(conn.tls_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    let mut go = [0u8; 2];
    conn.read_exact(&mut go).unwrap();
    let data = vec![0x5a; WRITE_LEN];
    // One call takes three full records' worth, not the whole 64 KiB (whose ciphertext would go
    // out as one socket write just over loopback's MTU).
    assert_eq!(conn.write(&data).unwrap(), 3 * 16384);
    conn.write_all(&data[3 * 16384..]).unwrap();
    for _ in 1..WRITES {
        conn.write_all(&data).unwrap();
    }
    conn.flush().unwrap();
    let records = server.join().unwrap();
    assert_eq!(records.len(), WRITES * WRITE_LEN / 16384, "{records:?}");
    assert!(
        records.iter().all(|r| *r == (23, 16384 + 17)),
        "{records:?}"
    );
}
