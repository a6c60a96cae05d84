//! The hostile-peer harness: every protocol's client dialog is scripted once (what the server
//! sends, what the client must send, the go-ahead), then every attack is played against every
//! protocol by bending that script. The server side gets the mirror treatment.
//!
//! Each attack checks that the library fails closed with the right distinct error, within its
//! deadline, without handing anything injected to TLS or to the application.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use starttls::{ErrorKind, Phase, Policy, Protocol, ServerConfig, Timeouts};

/// What the client sends in one turn, as the scripted server reads it.
#[derive(Clone, Copy)]
enum Unit {
    Line,
    Bytes(usize),
    XmlTags(usize),
    HttpRequest,
}

#[derive(Clone, Copy)]
enum Step {
    Send(&'static [u8]),
    Expect(Unit),
}

struct Dialog {
    protocol: Protocol,
    /// Everything up to (not including) the go-ahead.
    steps: &'static [Step],
    go_ahead: &'static [u8],
    /// Replies in place of the go-ahead that must be refusals.
    refusals: &'static [&'static [u8]],
    /// Replies in place of the go-ahead that look like success but are not the go-ahead.
    odd: &'static [&'static [u8]],
    /// Whether the first server message is text lines (for the line attacks).
    line_based: bool,
}

const LDAP_OK: &[u8] = &[
    0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
];
const LDAP_UNAVAILABLE: &[u8] = &[
    0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x34, 0x04, 0x00, 0x04, 0x00,
];
const XMPP_HEADER_AND_FEATURES: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='localhost' version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>";

fn dialogs() -> Vec<Dialog> {
    use Step::*;
    use Unit::*;
    vec![
        Dialog {
            protocol: Protocol::Smtp,
            steps: &[Send(b"220 mx ESMTP\r\n"), Expect(Line), Send(b"250-mx\r\n250 STARTTLS\r\n"), Expect(Line)],
            go_ahead: b"220 2.0.0 go\r\n",
            refusals: &[b"454 4.7.0 TLS not available\r\n", b"501 5.5.4 syntax\r\n", b"554 5.7.0 no\r\n"],
            odd: &[b"250 ok\r\n", b"221 bye\r\n", b"220-go\r\n"],
            line_based: true,
        },
        Dialog {
            protocol: Protocol::Lmtp,
            steps: &[Send(b"220 lmtp\r\n"), Expect(Line), Send(b"250-lmtp\r\n250 STARTTLS\r\n"), Expect(Line)],
            go_ahead: b"220 go\r\n",
            refusals: &[b"454 no\r\n"],
            odd: &[b"250 ok\r\n"],
            line_based: true,
        },
        Dialog {
            protocol: Protocol::Imap,
            steps: &[Send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"), Expect(Line)],
            go_ahead: b"S1 OK Begin TLS\r\n",
            refusals: &[b"S1 NO not now\r\n", b"S1 BAD what\r\n"],
            odd: &[b"S2 OK wrong tag\r\n", b"+ continue\r\n", b"* OK untagged only\r\nS1 PREAUTH\r\n"],
            line_based: true,
        },
        Dialog {
            protocol: Protocol::Pop3,
            steps: &[Send(b"+OK pop3\r\n"), Expect(Line)],
            go_ahead: b"+OK go\r\n",
            refusals: &[b"-ERR not permitted\r\n"],
            odd: &[b"+OKAY\r\n", b"OK\r\n"],
            line_based: true,
        },
        Dialog {
            protocol: Protocol::Nntp,
            steps: &[Send(b"200 news\r\n"), Expect(Line)],
            go_ahead: b"382 go\r\n",
            refusals: &[b"580 no\r\n", b"502 no\r\n"],
            odd: &[b"200 ok\r\n", b"381 more\r\n"],
            line_based: true,
        },
        Dialog {
            protocol: Protocol::Ftp,
            steps: &[Send(b"220 ftp\r\n"), Expect(Line)],
            go_ahead: b"234 go\r\n",
            refusals: &[b"534 denied\r\n", b"500 unknown\r\n"],
            odd: &[b"200 ok\r\n", b"334 ADAT\r\n"],
            line_based: true,
        },
        Dialog {
            protocol: Protocol::Sieve,
            steps: &[Send(b"\"IMPLEMENTATION\" \"x\"\r\n\"STARTTLS\"\r\nOK\r\n"), Expect(Line)],
            go_ahead: b"OK \"go\"\r\n",
            refusals: &[b"NO \"not now\"\r\n", b"BYE \"bye\"\r\n"],
            odd: &[b"\"STARTTLS\"\r\n", b"OKAY\r\n"],
            line_based: true,
        },
        Dialog {
            protocol: Protocol::Ldap,
            steps: &[Expect(Bytes(31))],
            go_ahead: LDAP_OK,
            refusals: &[LDAP_UNAVAILABLE],
            odd: &[&[0x30, 0x03, 0x02, 0x01, 0x01]],
            line_based: false,
        },
        Dialog {
            protocol: Protocol::Postgres,
            steps: &[Expect(Bytes(8))],
            go_ahead: b"S",
            refusals: &[b"N"],
            odd: &[b"E", b"s", b"Y"],
            line_based: false,
        },
        Dialog {
            protocol: Protocol::Http,
            steps: &[Expect(HttpRequest)],
            go_ahead: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n",
            refusals: &[b"HTTP/1.1 405 No\r\nContent-Length: 0\r\n\r\n"],
            odd: &[b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n"],
            line_based: true,
        },
        Dialog {
            protocol: Protocol::Xmpp,
            steps: &[Expect(XmlTags(2)), Send(XMPP_HEADER_AND_FEATURES), Expect(XmlTags(1))],
            go_ahead: b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            refusals: &[b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"],
            odd: &[b"<proceed xmlns='urn:evil'/>", b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"],
            line_based: false,
        },
    ]
}

fn read_unit(sock: &mut TcpStream, unit: Unit) -> bool {
    let mut byte = [0u8; 1];
    let mut next = |sock: &mut TcpStream| {
        sock.read(&mut byte)
            .ok()
            .filter(|n| *n == 1)
            .map(|_| byte[0])
    };
    match unit {
        Unit::Line => loop {
            match next(sock) {
                Some(b'\n') => return true,
                Some(_) => {}
                None => return false,
            }
        },
        Unit::Bytes(n) => {
            let mut buf = vec![0u8; n];
            sock.read_exact(&mut buf).is_ok()
        }
        Unit::XmlTags(n) => {
            for _ in 0..n {
                loop {
                    match next(sock) {
                        Some(b'>') => break,
                        Some(_) => {}
                        None => return false,
                    }
                }
            }
            true
        }
        Unit::HttpRequest => {
            let mut last = Vec::new();
            loop {
                match next(sock) {
                    Some(b) => {
                        last.push(b);
                        if last.ends_with(b"\r\n\r\n") {
                            return true;
                        }
                    }
                    None => return false,
                }
            }
        }
    }
}

/// What the scripted server does after (or instead of) the steps.
#[derive(Clone)]
enum Ending {
    /// Sends these bytes after the steps, then reads what the client sends until it closes.
    Send(Vec<u8>),
    /// Sends these bytes after the steps and closes the connection.
    SendAndClose(Vec<u8>),
    /// Sends the go-ahead, waits, then sends these bytes.
    SendLater(Vec<u8>, Vec<u8>),
    /// Sends the go-ahead, reads the ClientHello, answers with these bytes.
    AnswerHelloWith(Vec<u8>, Vec<u8>),
}

/// Plays `steps[..upto]`, replacing step `stall_at` by silence, then the ending. Returns what
/// the client sent after the last scripted read.
fn hostile_server(
    dialog_steps: &'static [Step],
    stall_at: Option<usize>,
    ending: Ending,
) -> (u16, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        for (i, step) in dialog_steps.iter().enumerate() {
            if stall_at == Some(i) {
                let mut rest = Vec::new();
                let _ = sock.read_to_end(&mut rest);
                return rest;
            }
            match step {
                Step::Send(b) => {
                    if sock.write_all(b).is_err() {
                        return Vec::new();
                    }
                }
                Step::Expect(u) => {
                    if !read_unit(&mut sock, *u) {
                        return Vec::new();
                    }
                }
            }
        }
        if stall_at == Some(dialog_steps.len()) {
            let mut rest = Vec::new();
            let _ = sock.read_to_end(&mut rest);
            return rest;
        }
        match ending {
            Ending::Send(b) => {
                let _ = sock.write_all(&b);
            }
            Ending::SendAndClose(b) => {
                let _ = sock.write_all(&b);
                return Vec::new();
            }
            Ending::SendLater(go, later) => {
                let _ = sock.write_all(&go);
                thread::sleep(Duration::from_millis(150));
                let _ = sock.write_all(&later);
            }
            Ending::AnswerHelloWith(go, answer) => {
                let _ = sock.write_all(&go);
                let mut hdr = [0u8; 5];
                let _ = sock.read_exact(&mut hdr);
                let _ = sock.write_all(&answer);
            }
        }
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest);
        rest
    });
    (port, handle)
}

fn config(reply_ms: u64) -> starttls::ClientConfig {
    client_builder()
        .timeouts(Timeouts {
            reply: Duration::from_millis(reply_ms),
            handshake: Duration::from_millis(2000),
            ..Timeouts::all(Duration::from_secs(5))
        })
        .build()
        .unwrap()
}

/// Runs the client against a hostile server; returns the error, what the server saw after its
/// script, and how long the client took.
fn attack(
    d: &Dialog,
    stall_at: Option<usize>,
    ending: Ending,
    reply_ms: u64,
) -> (starttls::Error, Vec<u8>, Duration) {
    let (port, server) = hostile_server(d.steps, stall_at, ending);
    let started = Instant::now();
    let result = starttls::connect(&config(reply_ms), d.protocol, "localhost", port);
    let took = started.elapsed();
    let err = match result {
        Ok(_) => panic!("{}: the attack succeeded", d.protocol),
        Err(e) => e,
    };
    (err, server.join().unwrap(), took)
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

#[test]
fn injection_after_the_go_ahead_in_every_form_and_protocol() {
    let forms: [(&str, &[u8]); 4] = [
        ("a full forged reply", b"250 forged\r\n* OK forged\r\n"),
        ("a partial line", b"25"),
        (
            "bytes shaped like a TLS record",
            &[0x16, 0x03, 0x03, 0x00, 0x02, 0x00, 0x00],
        ),
        ("a single byte", b"X"),
    ];
    for d in dialogs() {
        for (what, bytes) in forms {
            let (e, rest, _) = attack(&d, None, Ending::Send(cat(d.go_ahead, bytes)), 3000);
            assert_eq!(
                e.kind(),
                ErrorKind::Injection,
                "{} / {what}: {e}",
                d.protocol
            );
            assert!(
                rest.is_empty(),
                "{} / {what}: no ClientHello may follow an injection",
                d.protocol
            );
        }
        // Arriving a little later: caught by the first-record check.
        let (e, _, _) = attack(
            &d,
            None,
            Ending::SendLater(d.go_ahead.to_vec(), b"250 later\r\n".to_vec()),
            3000,
        );
        assert_eq!(
            e.kind(),
            ErrorKind::Injection,
            "{} / later: {e}",
            d.protocol
        );
        // A warning alert rustls would skip.
        let warning = [0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x5a];
        let (e, _, _) = attack(
            &d,
            None,
            Ending::SendLater(d.go_ahead.to_vec(), warning.to_vec()),
            3000,
        );
        assert_eq!(
            e.kind(),
            ErrorKind::Injection,
            "{} / warning alert: {e}",
            d.protocol
        );
        // Plaintext where the ServerHello was due.
        let (e, _, _) = attack(
            &d,
            None,
            Ending::AnswerHelloWith(d.go_ahead.to_vec(), b"500 what\r\n".to_vec()),
            3000,
        );
        assert_eq!(
            e.kind(),
            ErrorKind::Injection,
            "{} / plaintext for TLS: {e}",
            d.protocol
        );
        // A fatal alert instead of a ServerHello is a TLS failure, not an injection.
        let fatal = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];
        let (e, _, _) = attack(
            &d,
            None,
            Ending::AnswerHelloWith(d.go_ahead.to_vec(), fatal.to_vec()),
            3000,
        );
        assert_eq!(e.kind(), ErrorKind::Tls, "{} / alert: {e}", d.protocol);
    }
}

#[test]
fn refusals_fail_closed_and_nothing_more_is_sent() {
    for d in dialogs() {
        for refusal in d.refusals {
            let (e, rest, _) = attack(&d, None, Ending::Send(refusal.to_vec()), 3000);
            assert!(
                matches!(e.kind(), ErrorKind::Refused | ErrorKind::NotOffered),
                "{} / {:?}: {e}",
                d.protocol,
                String::from_utf8_lossy(refusal)
            );
            assert!(
                rest.is_empty(),
                "{}: the client sent {rest:?} after a refusal",
                d.protocol
            );
        }
    }
}

#[test]
fn only_the_exact_go_ahead_starts_tls() {
    for d in dialogs() {
        for odd in d.odd {
            let (e, rest, _) = attack(&d, None, Ending::Send(odd.to_vec()), 1500);
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::ProtocolViolation
                        | ErrorKind::Timeout
                        | ErrorKind::Closed
                        | ErrorKind::Refused
                ),
                "{} / {:?}: {e}",
                d.protocol,
                String::from_utf8_lossy(odd)
            );
            assert!(
                !rest.starts_with(&[0x16]),
                "{}: a ClientHello followed {:?}",
                d.protocol,
                String::from_utf8_lossy(odd)
            );
        }
    }
}

#[test]
fn a_stall_at_every_step_times_out_within_the_deadline() {
    for d in dialogs() {
        // Every point where the client waits for the server: before each Send and the go-ahead.
        let waits: Vec<usize> = (0..=d.steps.len())
            .filter(|i| *i == d.steps.len() || matches!(d.steps[*i], Step::Send(_)))
            .collect();
        for at in waits {
            let (e, _, took) = attack(&d, Some(at), Ending::Send(Vec::new()), 300);
            assert!(
                matches!(e, starttls::Error::Timeout { .. }),
                "{} stalled at {at}: {e}",
                d.protocol
            );
            assert!(
                took < Duration::from_secs(4),
                "{} stalled at {at}: took {took:?}",
                d.protocol
            );
            let expected = if at == d.steps.len() {
                Phase::StartTls
            } else if at == 0 {
                Phase::Greeting
            } else {
                Phase::Capabilities
            };
            if d.protocol != Protocol::Xmpp && d.protocol != Protocol::Sieve {
                assert_eq!(e.phase(), Some(expected), "{} stalled at {at}", d.protocol);
            }
        }
    }
}

#[test]
fn a_close_mid_reply_is_closed() {
    for d in dialogs() {
        if d.go_ahead.len() < 2 {
            continue; // PostgreSQL's go-ahead is one byte: nothing to cut.
        }
        let half = d.go_ahead[..d.go_ahead.len() / 2].to_vec();
        let (e, _, _) = attack(&d, None, Ending::SendAndClose(half), 3000);
        assert_eq!(e.kind(), ErrorKind::Closed, "{}: {e}", d.protocol);
    }
}

/// Servers whose first message is text, played with a poisoned first message.
fn first_message_attack(d: &Dialog, first: Vec<u8>, reply_ms: u64) -> (starttls::Error, Duration) {
    let leaked: &'static [u8] = Box::leak(first.into_boxed_slice());
    let steps: &'static [Step] = Box::leak(vec![Step::Send(leaked)].into_boxed_slice());
    let (port, server) = hostile_server(steps, None, Ending::Send(Vec::new()));
    let started = Instant::now();
    let e = starttls::connect(&config(reply_ms), d.protocol, "localhost", port).unwrap_err();
    let took = started.elapsed();
    drop(server);
    (e, took)
}

#[test]
fn poisoned_first_messages_are_protocol_violations() {
    let greeting_first = [
        Protocol::Smtp,
        Protocol::Lmtp,
        Protocol::Imap,
        Protocol::Pop3,
        Protocol::Nntp,
        Protocol::Ftp,
        Protocol::Sieve,
    ];
    for d in dialogs()
        .into_iter()
        .filter(|d| greeting_first.contains(&d.protocol))
    {
        let Step::Send(greeting) = d.steps[0] else {
            unreachable!()
        };
        let poisons: [(&str, Vec<u8>); 4] = [
            ("NUL", [&greeting[..3], b"\0x\r\n"].concat()),
            ("bare LF", [&greeting[..greeting.len() - 2], b"\n"].concat()),
            ("a line of megabytes", vec![b'A'; 4 << 20]),
            (
                "endless continuation lines",
                b"220-more\r\n* more\r\n\"X\"\r\n".repeat(20_000),
            ),
        ];
        for (what, poison) in poisons {
            let (e, _) = first_message_attack(&d, poison, 3000);
            assert!(
                matches!(e.kind(), ErrorKind::ProtocolViolation),
                "{} / {what}: {e}",
                d.protocol
            );
        }
        // Invalid UTF-8 is not an error by itself; it must never reach a terminal raw.
        let (e, _) = first_message_attack(
            &d,
            [&greeting[..greeting.len() - 2], b"\xff\xfe\r\n"].concat(),
            3000,
        );
        assert!(!e.to_string().contains('\u{1b}'), "{}: {e}", d.protocol);
    }
}

#[test]
fn a_greeting_dripped_byte_by_byte_hits_the_overall_deadline() {
    for protocol in [
        Protocol::Smtp,
        Protocol::Imap,
        Protocol::Pop3,
        Protocol::Nntp,
        Protocol::Ftp,
        Protocol::Sieve,
    ] {
        let (port, server) = serve(|mut p| {
            for _ in 0..200 {
                if p.sock.write_all(b"2").is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        let started = Instant::now();
        let e = starttls::connect(&config(400), protocol, "localhost", port).unwrap_err();
        assert!(
            matches!(
                e,
                starttls::Error::Timeout {
                    phase: Phase::Greeting
                }
            ),
            "{protocol}: {e}"
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{protocol}");
        server.join().unwrap();
    }
}

#[test]
fn huge_ber_lengths_and_xml_bombs() {
    let ldap = dialogs()
        .into_iter()
        .find(|d| d.protocol == Protocol::Ldap)
        .unwrap();
    let (e, _, _) = attack(
        &ldap,
        None,
        Ending::Send(vec![0x30, 0x84, 0x7f, 0xff, 0xff, 0xff]),
        3000,
    );
    assert_eq!(e.kind(), ErrorKind::ProtocolViolation, "{e}");
    // A Notice of Disconnection instead of the response.
    let oid = b"1.3.6.1.4.1.1466.20036";
    let mut op = vec![
        0x0a,
        0x01,
        0x34,
        0x04,
        0x00,
        0x04,
        0x00,
        0x8a,
        oid.len() as u8,
    ];
    op.extend_from_slice(oid);
    let mut body = vec![0x02, 0x01, 0x00, 0x78, op.len() as u8];
    body.extend(op);
    let mut notice = vec![0x30, body.len() as u8];
    notice.extend(body);
    let (e, _, _) = attack(&ldap, None, Ending::Send(notice), 3000);
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");

    let xmpp = dialogs()
        .into_iter()
        .find(|d| d.protocol == Protocol::Xmpp)
        .unwrap();
    let steps: &'static [Step] = &[Step::Expect(Unit::XmlTags(2))];
    for (what, bomb) in [
        ("DOCTYPE with entities", b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]>".to_vec()),
        ("deep nesting", [XMPP_HEADER_AND_FEATURES.split(|b| *b == b'<').take(3).collect::<Vec<_>>().join(&b'<'), b"<a>".repeat(1000)].concat()),
        ("a giant attribute", [b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' x='".as_ref(), &vec![b'y'; 1 << 20]].concat()),
    ] {
        let (port, server) = hostile_server(steps, None, Ending::Send(bomb));
        let e = starttls::connect(&config(3000), xmpp.protocol, "localhost", port).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProtocolViolation, "xmpp / {what}: {e}");
        drop(server);
    }
}

#[test]
fn certificates_self_signed_wrong_host_expired_unknown_ca_are_refused_in_every_protocol() {
    let p = pki();
    let self_signed = {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    };
    let leaves: [(&str, &Leaf); 4] = [
        ("self-signed", &self_signed),
        ("another host", &p.other_host),
        ("expired", &p.expired),
        ("unknown CA", &p.unknown_ca),
    ];
    for d in dialogs() {
        for (what, leaf) in leaves {
            let cfg = server_config(leaf);
            let steps = d.steps;
            let go = d.go_ahead;
            let (port, server) = {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = listener.local_addr().unwrap().port();
                let h = thread::spawn(move || {
                    let (mut sock, _) = listener.accept().unwrap();
                    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    for s in steps {
                        match s {
                            Step::Send(b) => sock.write_all(b).unwrap(),
                            Step::Expect(u) => assert!(read_unit(&mut sock, *u)),
                        }
                    }
                    sock.write_all(go).unwrap();
                    let mut conn = rustls::ServerConnection::new(cfg).unwrap();
                    while conn.is_handshaking() && conn.complete_io(&mut sock).is_ok() {}
                });
                (port, h)
            };
            let e = starttls::connect(&config(3000), d.protocol, "localhost", port).unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::Certificate,
                "{} / {what}: {e}",
                d.protocol
            );
            server.join().unwrap();
        }
    }
}

#[test]
fn a_server_offering_only_tls_1_0_or_1_1_is_refused() {
    // rustls speaks neither TLS 1.0 nor 1.1: a server that offers only those gets a
    // protocol_version alert. A hand-made TLS 1.1 ServerHello stands in for such a server.
    let (port, server) = serve(|mut p| {
        let mut hello = [0u8; 5];
        let _ = p.sock.read_exact(&mut hello);
        // ServerHello record claiming TLS 1.1 (0x0302), truncated body: the version is what
        // the client must refuse.
        let _ = p.sock.write_all(&[
            0x16, 0x03, 0x02, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, 0x03, 0x02,
        ]);
        let _ = p.sock.write_all(&[0u8; 38]);
        let mut rest = Vec::new();
        let _ = p.sock.read_to_end(&mut rest);
    });
    let e = starttls::connect(&config(3000), Protocol::Tls, "localhost", port).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    server.join().unwrap();
}

// --- the server side -------------------------------------------------------------------

fn server_cfg() -> ServerConfig {
    ServerConfig::builder()
        .certificate_pem(pki().server.chain_pem.clone(), pki().server.key_pem.clone())
        .timeouts(Timeouts {
            reply: Duration::from_secs(3),
            handshake: Duration::from_secs(3),
            ..Timeouts::default()
        })
        .build()
        .unwrap()
}

/// What a client sends to get the go-ahead, with extra bytes pipelined right behind it.
fn pipelined(protocol: Protocol) -> Option<(Vec<u8>, &'static [u8])> {
    let evil: &[u8] = match protocol {
        Protocol::Smtp | Protocol::Lmtp => b"MAIL FROM:<evil@x>\r\n",
        Protocol::Imap => b"b LOGIN user pass\r\n",
        Protocol::Pop3 => b"USER x\r\n",
        Protocol::Nntp => b"AUTHINFO USER x\r\n",
        Protocol::Ftp => b"USER x\r\n",
        Protocol::Sieve => b"AUTHENTICATE \"PLAIN\"\r\n",
        Protocol::Xmpp => b"<iq type='get'/>",
        Protocol::Ldap => &[0x30, 0x05, 0x02, 0x01, 0x02, 0x42, 0x00],
        Protocol::Postgres => &[0, 0, 0, 8, 0, 3, 0, 0],
        Protocol::Http => b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        _ => return None,
    };
    let start: Vec<u8> = match protocol {
        Protocol::Smtp => b"EHLO evil\r\nSTARTTLS\r\n".to_vec(),
        Protocol::Lmtp => b"LHLO evil\r\nSTARTTLS\r\n".to_vec(),
        Protocol::Imap => b"a STARTTLS\r\n".to_vec(),
        Protocol::Pop3 => b"STLS\r\n".to_vec(),
        Protocol::Nntp => b"STARTTLS\r\n".to_vec(),
        Protocol::Ftp => b"AUTH TLS\r\n".to_vec(),
        Protocol::Sieve => b"STARTTLS\r\n".to_vec(),
        Protocol::Xmpp => b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".to_vec(),
        Protocol::Ldap => {
            let mut r = vec![0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16];
            r.extend_from_slice(b"1.3.6.1.4.1.1466.20037");
            r
        }
        Protocol::Postgres => vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
        Protocol::Http => b"OPTIONS * HTTP/1.1\r\nHost: x\r\nUpgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n".to_vec(),
        _ => return None,
    };
    Some((start, evil))
}

fn accept_in_thread(
    protocol: Protocol,
) -> (u16, JoinHandle<starttls::Result<starttls::Connection>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = server_cfg();
    let h = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        starttls::accept(&cfg, protocol, sock)
    });
    (port, h)
}

#[test]
fn server_commands_pipelined_after_starttls_never_run_in_every_protocol() {
    for d in dialogs() {
        let Some((start, evil)) = pipelined(d.protocol) else {
            continue;
        };
        let (port, server) = accept_in_thread(d.protocol);
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&[start.as_slice(), evil].concat()).unwrap();
        let mut seen = Vec::new();
        let _ = c.read_to_end(&mut seen);
        let e = server.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Injection, "{}: {e}", d.protocol);
        // The go-ahead was never sent.
        assert!(
            !seen.ends_with(d.go_ahead),
            "{}: a go-ahead was sent",
            d.protocol
        );
    }
}

#[test]
fn server_plaintext_instead_of_a_client_hello_is_injection_in_every_protocol() {
    for d in dialogs() {
        let Some((start, evil)) = pipelined(d.protocol) else {
            continue;
        };
        let (port, server) = accept_in_thread(d.protocol);
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&start).unwrap();
        // Let the server answer (greeting and go-ahead), then talk plaintext instead of TLS.
        thread::sleep(Duration::from_millis(300));
        thread::sleep(Duration::from_millis(50));
        c.write_all(evil).unwrap();
        let e = server.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Injection, "{}: {e}", d.protocol);
    }
}

#[test]
fn server_oversized_lines_fail_cleanly_in_every_line_protocol() {
    for d in dialogs().into_iter().filter(|d| d.line_based) {
        let (port, server) = accept_in_thread(d.protocol);
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let chunk = vec![b'A'; 64 * 1024];
        for _ in 0..32 {
            if c.write_all(&chunk).is_err() {
                break;
            }
        }
        let e = server.join().unwrap().unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::ProtocolViolation,
            "{}: {e}",
            d.protocol
        );
    }
}

// --- peer text never reaches a person raw (ESC, BEL, C1 CSI, DEL; raw and as XML references) ---

/// ESC `[2J` (clear screen), BEL, the C1 CSI (U+009B, as UTF-8) and DEL.
const RAW: &str = "\u{1b}[2J\u{7}\u{9b}31m\u{7f}";
/// The XML-legal controls as character references (C1 CSI, DEL).
const REFS: &str = "&#x9b;31m&#x7f;";

fn leak(bytes: String) -> &'static [u8] {
    Box::leak(bytes.into_bytes().into_boxed_slice())
}

fn leak_steps(steps: Vec<Step>) -> &'static [Step] {
    Box::leak(steps.into_boxed_slice())
}

fn ldap_refusal_saying(text: &str) -> Vec<u8> {
    let t = text.as_bytes();
    let mut result = vec![0x0a, 0x01, 0x34, 0x04, 0x00, 0x04, t.len() as u8];
    result.extend_from_slice(t);
    let mut msg = vec![0x02, 0x01, 0x01, 0x78, result.len() as u8];
    msg.extend_from_slice(&result);
    let mut out = vec![0x30, msg.len() as u8];
    out.extend_from_slice(&msg);
    out
}

/// Every protocol with peer text: a script whose every text field carries `RAW` (or `REFS`), and
/// the refusal that ends it.
fn poisoned() -> Vec<(Protocol, &'static [Step], Vec<u8>)> {
    use Step::*;
    use Unit::*;
    let p = RAW;
    let xmpp_features = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='localhost' version='1.0'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>X-{REFS}</mechanism></mechanisms><x{} xmlns='urn:{REFS}'/></stream:features>",
        ""
    );
    vec![
        (
            Protocol::Smtp,
            leak_steps(vec![
                Send(leak(format!("220 mx {p}\r\n"))),
                Expect(Line),
                Send(leak(format!("250-mx {p}\r\n250-X-{p}\r\n250 STARTTLS\r\n"))),
                Expect(Line),
            ]),
            format!("454 4.7.0 {p}\r\n").into_bytes(),
        ),
        (
            Protocol::Smtp,
            leak_steps(vec![
                Send(leak(format!("220 mx {p}\r\n"))),
                Expect(Line),
                Send(leak(format!("250-mx {p}\r\n250 X-{p}\r\n"))),
            ]),
            Vec::new(),
        ),
        (
            Protocol::Lmtp,
            leak_steps(vec![
                Send(leak(format!("220 {p}\r\n"))),
                Expect(Line),
                Send(leak(format!("250-{p}\r\n250 STARTTLS\r\n"))),
                Expect(Line),
            ]),
            format!("454 {p}\r\n").into_bytes(),
        ),
        (
            Protocol::Imap,
            leak_steps(vec![
                Send(leak(format!(
                    "* OK [CAPABILITY IMAP4rev1 X-{p} STARTTLS] {p}\r\n"
                ))),
                Expect(Line),
            ]),
            format!("S1 NO {p}\r\n").into_bytes(),
        ),
        (
            Protocol::Pop3,
            leak_steps(vec![Send(leak(format!("+OK {p}\r\n"))), Expect(Line)]),
            format!("-ERR {p}\r\n").into_bytes(),
        ),
        (
            Protocol::Nntp,
            leak_steps(vec![Send(leak(format!("200 {p}\r\n"))), Expect(Line)]),
            format!("580 {p}\r\n").into_bytes(),
        ),
        (
            Protocol::Ftp,
            leak_steps(vec![Send(leak(format!("220 {p}\r\n"))), Expect(Line)]),
            format!("534 {p}\r\n").into_bytes(),
        ),
        (
            Protocol::Sieve,
            leak_steps(vec![
                Send(leak(format!(
                    "\"IMPLEMENTATION\" \"{p}\"\r\n\"SIEVE\" \"{p}\"\r\n\"STARTTLS\"\r\nOK \"{p}\"\r\n"
                ))),
                Expect(Line),
            ]),
            format!("NO \"{p}\"\r\n").into_bytes(),
        ),
        (
            Protocol::Sieve,
            leak_steps(vec![Send(leak(format!(
                "\"IMPLEMENTATION\" \"{p}\"\r\n\"SASL\" \"{p}\"\r\nOK \"{p}\"\r\n"
            )))]),
            Vec::new(),
        ),
        (
            Protocol::Http,
            leak_steps(vec![Expect(HttpRequest)]),
            format!("HTTP/1.1 426 {p}\r\nX: {p}\r\nContent-Length: 0\r\n\r\n").into_bytes(),
        ),
        (
            Protocol::Ldap,
            leak_steps(vec![Expect(Bytes(31))]),
            ldap_refusal_saying(p),
        ),
        (
            Protocol::Xmpp,
            leak_steps(vec![Expect(XmlTags(2)), Send(leak(xmpp_features))]),
            Vec::new(),
        ),
    ]
}

fn assert_no_raw_control(what: &str, text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{what}: a raw control character reached a person: {text:?}"
    );
}

#[test]
fn peer_text_never_reaches_a_person_raw_in_any_protocol() {
    for (protocol, steps, ending) in poisoned() {
        for policy in [Policy::Require, Policy::Opportunistic] {
            let (port, server) = hostile_server(steps, None, Ending::Send(ending.clone()));
            let config = client_builder()
                .policy(policy)
                .timeouts(Timeouts::all(Duration::from_secs(3)))
                .build()
                .unwrap();
            let what = format!("{protocol} {policy:?}");
            let mut seen = String::new();
            match starttls::connect(&config, protocol, "localhost", port) {
                Err(e) => {
                    seen.push_str(&e.to_string());
                    seen.push_str(e.reply().unwrap_or_default());
                }
                Ok(conn) => {
                    assert!(!conn.is_encrypted(), "{what}");
                    seen.push_str(conn.greeting().unwrap_or_default());
                    for c in conn
                        .capabilities_before_tls()
                        .map_or(&[][..], |c| c.get_untrusted())
                    {
                        seen.push_str(c);
                    }
                    if let Some(r) = conn.plaintext_reason() {
                        seen.push_str(&r.to_string());
                    }
                    for l in conn.transcript() {
                        seen.push_str(&l.text);
                    }
                }
            }
            drop(server);
            assert_no_raw_control(&what, &seen);
            // The text is shown escaped, not dropped.
            assert!(
                seen.contains("\\u{9b}") || seen.contains("\\u{1b}"),
                "{what}: {seen:?}"
            );
        }
    }
}

#[test]
fn xml_references_to_c0_controls_are_a_protocol_violation_with_a_clean_message() {
    use Step::*;
    use Unit::*;
    for bad in ["&#x1b;[2J", "&#7;", "\u{1b}[2J"] {
        let features = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='localhost' version='1.0'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>{bad}</mechanism></mechanisms></stream:features>"
        );
        let steps = leak_steps(vec![Expect(XmlTags(2)), Send(leak(features))]);
        let (port, _server) = hostile_server(steps, None, Ending::Send(Vec::new()));
        let e = starttls::connect(&config(3000), Protocol::Xmpp, "localhost", port).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProtocolViolation, "{bad:?}: {e}");
        assert_no_raw_control(bad, &e.to_string());
    }
}

#[test]
fn peer_names_a_server_records_are_escaped() {
    let cases: [(Protocol, String); 3] = [
        (Protocol::Smtp, format!("EHLO a{RAW}b\r\nSTARTTLS\r\n")),
        (
            Protocol::Http,
            format!(
                "OPTIONS * HTTP/1.1\r\nHost: a{RAW}b\r\nUpgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n"
            ),
        ),
        (
            Protocol::Xmpp,
            format!(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='a{REFS}b' version='1.0'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
            ),
        ),
    ];
    for (protocol, hello) in cases {
        let (port, server) = accept_in_thread(protocol);
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let client = thread::spawn(move || {
            // Send the hello in pieces the server answers, then take the go-ahead and do TLS.
            let mut buf = [0u8; 4096];
            if protocol == Protocol::Smtp {
                let _ = c.read(&mut buf); // greeting
            }
            c.write_all(hello.as_bytes()).unwrap();
            // Read until the go-ahead has arrived (the server sends nothing after it).
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut got = Vec::new();
            while Instant::now() < deadline {
                let n = c.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if text.contains("220 2.0.0")
                    || text.contains("\r\n\r\n") && text.contains("101")
                    || text.contains("<proceed")
                {
                    break;
                }
            }
            starttls::handshake_only(&client_config(), c, "localhost")
        });
        let conn = server
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        let name = conn
            .peer_name()
            .map(|n| n.get_untrusted().to_string())
            .unwrap_or_default();
        assert_no_raw_control(&format!("{protocol} peer_name"), &name);
        assert!(name.contains("\\u{9b}"), "{protocol}: {name:?}");
        drop(conn);
        let _ = client.join();
    }
}
