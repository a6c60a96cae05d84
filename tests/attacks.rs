//! Hostile servers on loopback: each test plays one attack and checks the client fails closed
//! with the right error and sends nothing it should not.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use starttls::{ErrorKind, Phase, Policy, Protocol, Timeouts, TlsVersion, Verification};

/// A valid SMTP dialog up to the go-ahead; returns the peer positioned right after it.
fn smtp_until_go_ahead(p: &mut Peer, go_ahead: &[u8]) {
    p.send(b"220 mx ESMTP\r\n");
    p.line();
    p.send(b"250-mx\r\n250 STARTTLS\r\n");
    assert_eq!(p.line(), "STARTTLS");
    p.send(go_ahead);
}

fn connect_err(protocol: Protocol, port: u16) -> starttls::Error {
    starttls::connect(&client_config(), protocol, "localhost", port).unwrap_err()
}

#[test]
fn bytes_after_go_ahead_in_the_same_segment_are_injection() {
    let (port, server) = serve(|mut p| {
        smtp_until_go_ahead(
            &mut p,
            b"220 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n",
        );
        p.rest()
    });
    let e = connect_err(Protocol::Smtp, port);
    assert_eq!(e.kind(), ErrorKind::Injection, "{e}");
    // No ClientHello went out: the client stopped before TLS.
    assert!(server.join().unwrap().is_empty());
}

#[test]
fn bytes_arriving_a_little_after_the_go_ahead_are_injection() {
    let (port, server) = serve(|mut p| {
        smtp_until_go_ahead(&mut p, b"220 go ahead\r\n");
        thread::sleep(Duration::from_millis(200));
        let _ = p.sock.write_all(b"250 injected\r\n");
    });
    let e = connect_err(Protocol::Smtp, port);
    assert_eq!(e.kind(), ErrorKind::Injection, "{e}");
    server.join().unwrap();
}

#[test]
fn imap_response_injected_after_tagged_ok_is_injection() {
    let (port, server) = serve(|mut p| {
        p.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n");
        p.line();
        p.send(b"S1 OK begin\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n");
    });
    assert_eq!(
        connect_err(Protocol::Imap, port).kind(),
        ErrorKind::Injection
    );
    server.join().unwrap();
}

#[test]
fn pop3_partial_line_after_go_ahead_is_injection() {
    let (port, server) = serve(|mut p| {
        p.send(b"+OK hi\r\n");
        p.line();
        p.send(b"+OK go\r\n+OK fo");
    });
    assert_eq!(
        connect_err(Protocol::Pop3, port).kind(),
        ErrorKind::Injection
    );
    server.join().unwrap();
}

#[test]
fn plaintext_instead_of_tls_is_injection() {
    let (port, server) = serve(|mut p| {
        smtp_until_go_ahead(&mut p, b"220 go ahead\r\n");
        // Wait for the ClientHello, then answer in plaintext.
        let mut hello = [0u8; 5];
        let _ = std::io::Read::read_exact(&mut p.sock, &mut hello);
        let _ = p.sock.write_all(b"500 what is this\r\n");
        hello
    });
    let e = connect_err(Protocol::Smtp, port);
    assert_eq!(e.kind(), ErrorKind::Injection, "{e}");
    assert_eq!(
        server.join().unwrap()[0],
        0x16,
        "the client did send a ClientHello"
    );
}

#[test]
fn stripped_starttls_fails_and_nothing_more_is_sent() {
    let (port, server) = serve(|mut p| {
        p.send(b"220 mx ESMTP\r\n");
        p.line();
        p.send(b"250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
        p.rest()
    });
    let e = connect_err(Protocol::Submission, port);
    assert_eq!(e.kind(), ErrorKind::NotOffered);
    assert!(e.to_string().contains("AUTH PLAIN LOGIN"));
    assert!(
        server.join().unwrap().is_empty(),
        "nothing may follow a stripped STARTTLS"
    );
}

#[test]
fn refused_starttls_fails_and_nothing_more_is_sent() {
    let (port, server) = serve(|mut p| {
        smtp_until_go_ahead(&mut p, b"454 4.7.0 TLS not available\r\n");
        p.rest()
    });
    let e = connect_err(Protocol::Smtp, port);
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert_eq!(e.reply(), Some("454 4.7.0 TLS not available"));
    assert!(server.join().unwrap().is_empty());
}

#[test]
fn imap_preauth_is_a_downgrade_and_nothing_is_sent() {
    let (port, server) = serve(|mut p| {
        p.send(b"* PREAUTH [CAPABILITY IMAP4rev1] welcome, no login needed\r\n");
        p.rest()
    });
    let e = connect_err(Protocol::Imap, port);
    assert_eq!(e.kind(), ErrorKind::Downgrade);
    assert!(server.join().unwrap().is_empty());
}

#[test]
fn opportunistic_says_clearly_that_it_is_plaintext() {
    let (port, server) = serve(|mut p| {
        p.send(b"220 mx ESMTP\r\n");
        p.line();
        p.send(b"250-mx\r\n250 SIZE 100\r\n");
        p.line()
    });
    let config = client_builder()
        .policy(Policy::Opportunistic)
        .build()
        .unwrap();
    let mut conn = starttls::connect(&config, Protocol::Smtp, "localhost", port).unwrap();
    assert!(!conn.is_encrypted());
    assert_eq!(conn.verification(), &Verification::NotEncrypted);
    assert_eq!(conn.starttls_offered(), Some(false));
    assert_eq!(
        conn.plaintext_reason().unwrap().kind(),
        ErrorKind::NotOffered
    );
    assert!(conn.tls_version().is_none());
    assert_eq!(
        conn.fetch_capabilities().unwrap_err().kind(),
        ErrorKind::InvalidArgument,
        "capabilities in plaintext are not to be trusted"
    );
    conn.write_all(b"QUIT\r\n").unwrap();
    assert_eq!(server.join().unwrap(), "QUIT");
}

#[test]
fn certificate_problems_are_certificate_errors() {
    let p = pki();
    for (what, leaf) in [
        ("other host", &p.other_host),
        ("expired", &p.expired),
        ("unknown CA", &p.unknown_ca),
    ] {
        let cfg = server_config(leaf);
        let (port, server) = serve(move |p| {
            let mut conn = rustls::ServerConnection::new(cfg).unwrap();
            let mut sock = p.sock;
            while conn.is_handshaking() {
                if conn.complete_io(&mut sock).is_err() {
                    break;
                }
            }
        });
        let e = connect_err(Protocol::Tls, port);
        assert_eq!(e.kind(), ErrorKind::Certificate, "{what}: {e}");
        // What was rejected can still be shown: the chain exactly as the server presented it.
        assert_eq!(e.presented_chain(), Some(&leaf.chain[..]), "{what}");
        server.join().unwrap();
    }
    // Another kind of error carries no chain, and a later handshake's error never shows an
    // earlier server's chain.
    let (port, server) = serve(|mut p| p.send(b"not TLS at all\r\n"));
    let e = connect_err(Protocol::Tls, port);
    assert_ne!(e.kind(), ErrorKind::Certificate);
    assert_eq!(e.presented_chain(), None);
    server.join().unwrap();
}

#[test]
fn default_roots_do_not_trust_a_private_ca() {
    let (port, server) = serve(|p| {
        let mut conn = rustls::ServerConnection::new(server_config(&pki().server)).unwrap();
        let mut sock = p.sock;
        while conn.is_handshaking() && conn.complete_io(&mut sock).is_ok() {}
    });
    let config = starttls::ClientConfig::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let e = starttls::connect(&config, Protocol::Tls, "localhost", port).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Certificate);
    server.join().unwrap();
}

#[test]
fn dangerous_mode_connects_but_reports_what_was_wrong() {
    let (port, server) = serve(|p| {
        p.tls(server_config(&pki().unknown_ca));
    });
    let config = client_builder()
        .dangerous_accept_any_certificate(true)
        .build()
        .unwrap();
    let conn = starttls::connect(&config, Protocol::Tls, "localhost", port).unwrap();
    match conn.verification() {
        Verification::Skipped { problem: Some(p) } => assert!(p.contains("UnknownIssuer"), "{p}"),
        other => panic!("expected a reported problem, got {other:?}"),
    }
    server.join().unwrap();
}

#[test]
fn tls_alert_instead_of_server_hello_is_a_tls_error() {
    let (port, server) = serve(|mut p| {
        smtp_until_go_ahead(&mut p, b"220 go\r\n");
        let mut hdr = [0u8; 5];
        let _ = std::io::Read::read_exact(&mut p.sock, &mut hdr);
        // Fatal handshake_failure alert.
        let _ = p
            .sock
            .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
    });
    let e = connect_err(Protocol::Smtp, port);
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    server.join().unwrap();
}

#[test]
fn server_with_only_tls12_is_refused_under_a_tls13_floor() {
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki().server.chain.clone(), pki().server.key())
            .unwrap(),
    );
    let (port, server) = serve(move |p| {
        let mut conn = rustls::ServerConnection::new(cfg).unwrap();
        let mut sock = p.sock;
        while conn.is_handshaking() && conn.complete_io(&mut sock).is_ok() {}
    });
    let config = client_builder()
        .min_tls_version(TlsVersion::Tls13)
        .build()
        .unwrap();
    let e = starttls::connect(&config, Protocol::Tls, "localhost", port).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    server.join().unwrap();
}

fn short(reply_ms: u64, handshake_ms: u64) -> starttls::ClientConfig {
    client_builder()
        .timeouts(Timeouts {
            reply: Duration::from_millis(reply_ms),
            handshake: Duration::from_millis(handshake_ms),
            ..Timeouts::default()
        })
        .build()
        .unwrap()
}

#[test]
fn silent_server_times_out_in_the_greeting_phase() {
    let (port, server) = serve(|mut p| p.rest());
    let e = starttls::connect(&short(300, 5000), Protocol::Smtp, "localhost", port).unwrap_err();
    assert!(
        matches!(
            e,
            starttls::Error::Timeout {
                phase: Phase::Greeting
            }
        ),
        "{e}"
    );
    server.join().unwrap();
}

#[test]
fn dripped_greeting_hits_the_overall_deadline() {
    // One byte every 50 ms: each read succeeds quickly, so only an overall per-reply deadline
    // can stop it. The whole greeting would take 3 s; the reply deadline is 400 ms.
    let (port, server) = serve(|mut p| {
        for b in b"220 ".iter().chain([b'x'; 56].iter()).chain(b"\r\n") {
            if p.sock.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let e = starttls::connect(&short(400, 5000), Protocol::Smtp, "localhost", port).unwrap_err();
    assert!(
        matches!(
            e,
            starttls::Error::Timeout {
                phase: Phase::Greeting
            }
        ),
        "{e}"
    );
    server.join().unwrap();
}

#[test]
fn stall_after_starttls_times_out_in_the_starttls_phase() {
    let (port, server) = serve(|mut p| {
        p.send(b"220 mx\r\n");
        p.line();
        p.send(b"250-mx\r\n250 STARTTLS\r\n");
        p.line();
        p.rest()
    });
    let e = starttls::connect(&short(300, 5000), Protocol::Smtp, "localhost", port).unwrap_err();
    assert!(
        matches!(
            e,
            starttls::Error::Timeout {
                phase: Phase::StartTls
            }
        ),
        "{e}"
    );
    server.join().unwrap();
}

#[test]
fn stall_in_the_handshake_times_out_in_the_handshake_phase() {
    let (port, server) = serve(|mut p| {
        smtp_until_go_ahead(&mut p, b"220 go\r\n");
        p.rest()
    });
    let e = starttls::connect(&short(5000, 300), Protocol::Smtp, "localhost", port).unwrap_err();
    assert!(
        matches!(
            e,
            starttls::Error::Timeout {
                phase: Phase::Handshake
            }
        ),
        "{e}"
    );
    server.join().unwrap();
}

#[test]
fn close_mid_reply_is_closed_naming_the_phase() {
    let (port, server) = serve(|mut p| {
        p.send(b"220 mx\r\n");
        p.line();
        p.send(b"250-mx\r\n250-PIPE");
    });
    let e = connect_err(Protocol::Smtp, port);
    assert!(
        matches!(
            e,
            starttls::Error::Closed {
                phase: Phase::Capabilities
            }
        ),
        "{e}"
    );
    server.join().unwrap();
}

#[test]
fn close_during_handshake_is_closed() {
    let (port, server) = serve(|mut p| {
        smtp_until_go_ahead(&mut p, b"220 go\r\n");
        let mut hdr = [0u8; 5];
        let _ = std::io::Read::read_exact(&mut p.sock, &mut hdr);
    });
    let e = connect_err(Protocol::Smtp, port);
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    server.join().unwrap();
}

#[test]
fn a_line_of_megabytes_is_a_violation_not_a_memory_bomb() {
    let (port, server) = serve(|mut p| {
        let chunk = vec![b'A'; 64 * 1024];
        for _ in 0..64 {
            if p.sock.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let e = connect_err(Protocol::Smtp, port);
    assert_eq!(e.kind(), ErrorKind::ProtocolViolation, "{e}");
    server.join().unwrap();
}

#[test]
fn connection_refused_is_an_io_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = connect_err(Protocol::Smtp, port);
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert_eq!(e.phase(), Some(Phase::Connect));
}

#[test]
fn tls_looking_bytes_after_go_ahead_are_still_injection() {
    // Bytes shaped like a TLS record would pass a "does it look like TLS" check; the go-ahead
    // rule must catch them because they were already waiting before the handshake began.
    let (port, server) = serve(|mut p| {
        smtp_until_go_ahead(&mut p, b"220 go\r\n\x16\x03\x03\x00\x04abcd");
        p.rest()
    });
    let e = connect_err(Protocol::Smtp, port);
    assert_eq!(e.kind(), ErrorKind::Injection, "{e}");
    assert!(
        server.join().unwrap().is_empty(),
        "no ClientHello may follow"
    );
}

#[test]
fn warning_alert_after_go_ahead_is_injection() {
    // rustls skips warning alerts before the ServerHello; the attacker's alert must not be.
    let (port, server) = serve(|mut p| {
        smtp_until_go_ahead(&mut p, b"220 go\r\n");
        thread::sleep(Duration::from_millis(100));
        let _ = p
            .sock
            .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x5a]);
        let cfg = server_config(&pki().server);
        let mut conn = rustls::ServerConnection::new(cfg).unwrap();
        let mut sock = p.sock;
        while conn.is_handshaking() && conn.complete_io(&mut sock).is_ok() {}
    });
    let e = connect_err(Protocol::Smtp, port);
    assert_eq!(e.kind(), ErrorKind::Injection, "{e}");
    server.join().unwrap();
}

#[test]
fn implicit_tls_to_a_plaintext_port_is_a_protocol_error_not_an_injection() {
    let (port, server) = serve(|mut p| {
        p.send(b"220 mx ESMTP plaintext\r\n");
        p.rest()
    });
    let e = connect_err(Protocol::Smtps, port);
    assert_eq!(e.kind(), ErrorKind::ProtocolViolation, "{e}");
    assert!(e.to_string().contains("220 mx ESMTP"), "{e}");
    server.join().unwrap();
}

#[test]
fn handshake_only_treats_plaintext_as_injection() {
    let (port, server) = serve(|mut p| {
        let mut hdr = [0u8; 5];
        let _ = std::io::Read::read_exact(&mut p.sock, &mut hdr);
        let _ = p.sock.write_all(b"250 forged\r\n");
    });
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let e = starttls::handshake_only(&client_config(), tcp, "localhost").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Injection, "{e}");
    server.join().unwrap();
}

#[test]
fn an_opportunistic_plaintext_connection_keeps_the_socket_it_was_given() {
    use std::os::fd::AsRawFd;
    let (port, _srv) = serve(|mut p| {
        p.send(b"220 mx ESMTP\r\n");
        p.line();
        p.send(b"250 mx\r\n"); // no STARTTLS
        p.rest()
    });
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let fd = tcp.as_raw_fd();
    let config = client_builder()
        .policy(starttls::Policy::Opportunistic)
        .build()
        .unwrap();
    let conn = starttls::upgrade(&config, starttls::Protocol::Smtp, tcp, "localhost").unwrap();
    assert!(!conn.is_encrypted());
    // The descriptor the caller handed over is the one in use, not a duplicate whose original
    // was closed (a number the next open() would reuse).
    assert_eq!(conn.tcp_stream().as_raw_fd(), fd);
}
