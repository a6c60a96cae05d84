//! NNTP, ManageSieve, PostgreSQL and HTTP Upgrade against rustls servers on loopback, with the
//! attacks that matter most for each.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use starttls::{ErrorKind, Protocol};

fn connect(protocol: Protocol, port: u16) -> starttls::Result<starttls::Connection> {
    starttls::connect(&client_config(), protocol, "localhost", port)
}

#[test]
fn nntp_starttls_then_capabilities_inside_tls() {
    let (port, server) = serve(|mut p| {
        p.send(b"200 news.test InterNetNews NNRP server ready\r\n");
        assert_eq!(p.line(), "STARTTLS");
        p.send(b"382 Begin TLS negotiation now\r\n");
        let mut t = p.tls(server_config(&pki().server));
        assert_eq!(t.line(), "CAPABILITIES");
        t.send(b"101 Capability list:\r\nVERSION 2\r\nREADER\r\nAUTHINFO USER\r\n.\r\n");
    });
    let mut conn = connect(Protocol::Nntp, port).unwrap();
    assert_eq!(
        conn.greeting(),
        Some("200 news.test InterNetNews NNRP server ready")
    );
    assert_eq!(
        conn.fetch_capabilities().unwrap(),
        ["VERSION 2", "READER", "AUTHINFO USER"]
    );
    server.join().unwrap();
}

#[test]
fn nntps_reads_the_greeting_inside_tls() {
    let (port, server) = serve(|p| {
        let mut t = p.tls(server_config(&pki().server));
        t.send(b"200 nntps ready\r\n");
    });
    let conn = connect(Protocol::Nntps, port).unwrap();
    assert_eq!(conn.greeting(), Some("200 nntps ready"));
    server.join().unwrap();
}

#[test]
fn nntp_580_fails_and_nothing_more_is_sent() {
    let (port, server) = serve(|mut p| {
        p.send(b"200 hi\r\n");
        p.line();
        p.send(b"580 Can not initiate TLS negotiation\r\n");
        p.rest()
    });
    let e = connect(Protocol::Nntp, port).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert!(server.join().unwrap().is_empty());
}

#[test]
fn nntp_injection_after_382_is_refused() {
    let (port, server) = serve(|mut p| {
        p.send(b"200 hi\r\n");
        p.line();
        p.send(b"382 go\r\n101 forged capability list\r\n");
    });
    assert_eq!(
        connect(Protocol::Nntp, port).unwrap_err().kind(),
        ErrorKind::Injection
    );
    server.join().unwrap();
}

const SIEVE_CAPS: &[u8] = b"\"IMPLEMENTATION\" \"test sieve\"\r\n\"SASL\" \"\"\r\n\"STARTTLS\"\r\n\"VERSION\" \"1.0\"\r\nOK \"ready\"\r\n";

#[test]
fn sieve_reads_the_capabilities_the_server_resends_after_tls() {
    let (port, server) = serve(|mut p| {
        p.send(SIEVE_CAPS);
        assert_eq!(p.line(), "STARTTLS");
        p.send(b"OK \"Begin TLS negotiation now.\"\r\n");
        let mut t = p.tls(server_config(&pki().server));
        t.send(b"\"IMPLEMENTATION\" \"test sieve\"\r\n\"SASL\" \"PLAIN LOGIN\"\r\n\"VERSION\" \"1.0\"\r\nOK \"TLS done\"\r\n");
        assert_eq!(t.line(), "LOGOUT");
        t.send(b"OK \"bye\"\r\n");
    });
    let mut conn = connect(Protocol::Sieve, port).unwrap();
    assert_eq!(
        conn.capabilities().unwrap(),
        [
            "IMPLEMENTATION test sieve",
            "SASL PLAIN LOGIN",
            "VERSION 1.0"
        ]
    );
    assert!(
        conn.capabilities_before_tls()
            .unwrap()
            .get_untrusted()
            .contains(&"STARTTLS".to_string())
    );
    conn.write_all(b"LOGOUT\r\n").unwrap();
    assert_eq!(read_line(&mut conn), "OK \"bye\"");
    server.join().unwrap();
}

#[test]
fn sieve_without_starttls_fails_closed() {
    let (port, server) = serve(|mut p| {
        p.send(b"\"IMPLEMENTATION\" \"x\"\r\n\"SASL\" \"PLAIN\"\r\nOK\r\n");
        p.rest()
    });
    assert_eq!(
        connect(Protocol::Sieve, port).unwrap_err().kind(),
        ErrorKind::NotOffered
    );
    assert!(server.join().unwrap().is_empty());
}

fn read_ssl_request(p: &mut Peer) -> [u8; 8] {
    let mut req = [0u8; 8];
    p.sock.read_exact(&mut req).unwrap();
    req
}

#[test]
fn postgres_sslrequest_then_tls() {
    let (port, server) = serve(|mut p| {
        let req = read_ssl_request(&mut p);
        p.send(b"S");
        let mut t = p.tls(server_config(&pki().server));
        // The client speaks first after TLS: a StartupMessage would come here.
        let mut startup = [0u8; 4];
        t.stream.read_exact(&mut startup).unwrap();
        (req, startup)
    });
    let mut conn = connect(Protocol::Postgres, port).unwrap();
    conn.write_all(b"\0\0\0\x08").unwrap();
    conn.flush().unwrap();
    let (req, startup) = server.join().unwrap();
    assert_eq!(req, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    assert_eq!(&startup, b"\0\0\0\x08");
    assert_eq!(conn.starttls_offered(), Some(true));
}

#[test]
fn postgres_n_is_refused_and_nothing_more_is_sent() {
    let (port, server) = serve(|mut p| {
        read_ssl_request(&mut p);
        p.send(b"N");
        p.rest()
    });
    assert_eq!(
        connect(Protocol::Postgres, port).unwrap_err().kind(),
        ErrorKind::Refused
    );
    assert!(server.join().unwrap().is_empty());
}

#[test]
fn postgres_bytes_after_s_are_injection() {
    // CVE-2021-23222: the server (or a MITM) queues plaintext behind the S.
    let (port, server) = serve(|mut p| {
        read_ssl_request(&mut p);
        p.send(b"SR\0\0\0\x08\0\0\0\0");
    });
    assert_eq!(
        connect(Protocol::Postgres, port).unwrap_err().kind(),
        ErrorKind::Injection
    );
    server.join().unwrap();

    let (port, server) = serve(|mut p| {
        read_ssl_request(&mut p);
        p.send(b"S");
        thread::sleep(Duration::from_millis(100));
        let _ = p.sock.write_all(b"R\0\0\0\x08\0\0\0\0");
    });
    assert_eq!(
        connect(Protocol::Postgres, port).unwrap_err().kind(),
        ErrorKind::Injection
    );
    server.join().unwrap();
}

#[test]
fn postgres_direct_tls_offers_alpn_postgresql() {
    let cfg = {
        let mut c = (*server_config(&pki().server)).clone();
        c.alpn_protocols = vec![b"postgresql".to_vec()];
        Arc::new(c)
    };
    let (port, server) = serve(move |p| {
        let t = p.tls(cfg);
        t.stream.conn.alpn_protocol().map(<[u8]>::to_vec)
    });
    let conn = connect(Protocol::PostgresDirect, port).unwrap();
    assert_eq!(conn.alpn_protocol(), Some(&b"postgresql"[..]));
    assert_eq!(server.join().unwrap().as_deref(), Some(&b"postgresql"[..]));
}

#[test]
fn http_upgrade_then_tls() {
    let (port, server) = serve(move |mut p| {
        let mut request = Vec::new();
        loop {
            let l = p.line();
            if l.is_empty() {
                break;
            }
            request.push(l);
        }
        p.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.0, HTTP/1.1\r\nConnection: Upgrade\r\n\r\n");
        let mut t = p.tls(server_config(&pki().server));
        // RFC 2817 §3.3: the answer to the OPTIONS request comes first, inside TLS.
        t.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        let get = t.line();
        t.send(b"HTTP/1.1 204 No Content\r\n\r\n");
        (request, get)
    });
    let mut conn = connect(Protocol::Http, port).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    // The library consumed the answer to OPTIONS: the first read is the answer to GET.
    assert_eq!(read_line(&mut conn), "HTTP/1.1 204 No Content");
    let (request, get) = server.join().unwrap();
    assert_eq!(
        request,
        [
            "OPTIONS * HTTP/1.1".to_string(),
            format!("Host: localhost:{port}"),
            "Upgrade: TLS/1.0".to_string(),
            "Connection: Upgrade".to_string(),
        ]
    );
    assert_eq!(get, "GET / HTTP/1.1");
}

#[test]
fn http_without_upgrade_is_refused() {
    let (port, server) = serve(|mut p| {
        while !p.line().is_empty() {}
        p.send(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        p.rest()
    });
    let e = connect(Protocol::Http, port).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert_eq!(e.reply(), Some("HTTP/1.1 405 Method Not Allowed"));
    assert!(server.join().unwrap().is_empty());
}

/// The StartTLS ExtendedResponse with resultCode `code`.
fn ldap_response(code: u8) -> Vec<u8> {
    let oid = b"1.3.6.1.4.1.1466.20037";
    let mut op = vec![
        0x0a,
        0x01,
        code,
        0x04,
        0x00,
        0x04,
        0x00,
        0x8a,
        oid.len() as u8,
    ];
    op.extend_from_slice(oid);
    let mut body = vec![0x02, 0x01, 0x01, 0x78, op.len() as u8];
    body.extend(op);
    let mut msg = vec![0x30, body.len() as u8];
    msg.extend(body);
    msg
}

#[test]
fn ldap_starttls_then_tls() {
    let (port, server) = serve(|mut p| {
        let mut req = [0u8; 31];
        p.sock.read_exact(&mut req).unwrap();
        p.send(&ldap_response(0));
        let mut t = p.tls(server_config(&pki().server));
        t.send(b"inside");
        req
    });
    let mut conn = connect(Protocol::Ldap, port).unwrap();
    let mut inside = [0u8; 6];
    conn.read_exact(&mut inside).unwrap();
    assert_eq!(&inside, b"inside");
    let req = server.join().unwrap();
    assert_eq!(
        &req[..9],
        &[0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16]
    );
    assert_eq!(&req[9..], b"1.3.6.1.4.1.1466.20037");
}

#[test]
fn ldap_refusal_and_injection() {
    let (port, server) = serve(|mut p| {
        let mut req = [0u8; 31];
        p.sock.read_exact(&mut req).unwrap();
        p.send(&ldap_response(53));
        p.rest()
    });
    let e = connect(Protocol::Ldap, port).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert!(e.to_string().contains("unwillingToPerform"), "{e}");
    assert!(server.join().unwrap().is_empty());

    let (port, server) = serve(|mut p| {
        let mut req = [0u8; 31];
        p.sock.read_exact(&mut req).unwrap();
        let mut both = ldap_response(0);
        both.extend(ldap_response(0));
        p.send(&both);
    });
    assert_eq!(
        connect(Protocol::Ldap, port).unwrap_err().kind(),
        ErrorKind::Injection
    );
    server.join().unwrap();
}

#[test]
fn ldaps_is_tls_first() {
    let (port, server) = serve(|p| {
        let mut t = p.tls(server_config(&pki().server));
        t.line()
    });
    let mut conn = connect(Protocol::Ldaps, port).unwrap();
    conn.write_all(b"bind\r\n").unwrap();
    assert_eq!(server.join().unwrap(), "bind");
}

/// Reads one XML tag (up to its `>`) from the client, byte by byte.
fn read_tag(r: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while r.read(&mut b).unwrap() == 1 {
        out.push(b[0]);
        if b[0] == b'>' {
            break;
        }
    }
    String::from_utf8(out).unwrap()
}

const XMPP_SERVER_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='chat.example' version='1.0'>";

#[test]
fn xmpp_starttls_with_a_domain_other_than_the_host_then_stream_restart() {
    let (port, server) = serve(|mut p| {
        let decl = read_tag(&mut p.sock);
        let header = read_tag(&mut p.sock);
        p.send(XMPP_SERVER_HEADER);
        p.send(b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>");
        let starttls = read_tag(&mut p.sock);
        p.send(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        let mut t = p.tls(server_config(&pki().server));
        let header2 = format!("{}{}", read_tag(&mut t.stream), read_tag(&mut t.stream));
        t.send(XMPP_SERVER_HEADER);
        t.send(b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>");
        (decl, header, starttls, header2)
    });
    // The XMPP domain is `localhost` (what the certificate names); the host is an address.
    let mut conn = starttls::connect_named(
        &client_config(),
        Protocol::Xmpp,
        "127.0.0.1",
        port,
        "localhost",
    )
    .unwrap();
    assert_eq!(
        conn.capabilities_before_tls().unwrap().get_untrusted(),
        &vec!["starttls required".to_string()]
    );
    assert_eq!(
        conn.fetch_capabilities().unwrap(),
        ["mechanisms SCRAM-SHA-1 PLAIN"]
    );
    let (decl, header, starttls, header2) = server.join().unwrap();
    assert!(decl.starts_with("<?xml"), "{decl}");
    assert!(
        header.contains("to='localhost'") && header.contains("xmlns='jabber:client'"),
        "{header}"
    );
    assert_eq!(
        starttls,
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    );
    assert!(header2.contains("to='localhost'"), "{header2}");
}

#[test]
fn xmpp_proceed_followed_by_plaintext_is_injection() {
    let (port, server) = serve(|mut p| {
        read_tag(&mut p.sock);
        read_tag(&mut p.sock);
        p.send(XMPP_SERVER_HEADER);
        p.send(b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>");
        read_tag(&mut p.sock);
        p.send(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>");
    });
    assert_eq!(
        connect(Protocol::Xmpp, port).unwrap_err().kind(),
        ErrorKind::Injection
    );
    server.join().unwrap();
}

#[test]
fn xmpps_offers_alpn_xmpp_client() {
    let cfg = {
        let mut c = (*server_config(&pki().server)).clone();
        c.alpn_protocols = vec![b"xmpp-client".to_vec()];
        Arc::new(c)
    };
    let (port, server) = serve(move |p| {
        let t = p.tls(cfg);
        t.stream.conn.alpn_protocol().map(<[u8]>::to_vec)
    });
    let conn = connect(Protocol::Xmpps, port).unwrap();
    assert_eq!(conn.alpn_protocol(), Some(&b"xmpp-client"[..]));
    assert_eq!(server.join().unwrap().as_deref(), Some(&b"xmpp-client"[..]));
}

/// An FTP server: AUTH TLS, PBSZ/PROT, then one passive transfer of `payload`. `pasv` chooses
/// EPSV or (refusing EPSV) PASV naming `pasv_host` — which the client must ignore.
fn ftp_server(
    payload: &'static [u8],
    use_pasv: bool,
) -> (u16, thread::JoinHandle<(Vec<String>, bool)>) {
    serve(move |mut p| {
        let tls_cfg = server_config(&pki().server);
        let mut seen = Vec::new();
        p.send(b"220-Welcome\r\n free text line\r\n220 ready\r\n");
        seen.push(p.line());
        p.send(b"234 AUTH TLS successful\r\n");
        let mut t = p.tls(tls_cfg.clone());
        let data_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let data_port = data_listener.local_addr().unwrap().port();
        loop {
            let cmd = t.line();
            seen.push(cmd.clone());
            match cmd.as_str() {
                "PBSZ 0" => t.send(b"200 PBSZ 0 successful\r\n"),
                "PROT P" => t.send(b"200 Protection set to Private\r\n"),
                "EPSV" if use_pasv => t.send(b"500 EPSV not understood\r\n"),
                "EPSV" => t.send(
                    format!("229 Entering Extended Passive Mode (|||{data_port}|)\r\n").as_bytes(),
                ),
                // Names another loopback address: a client that follows it gets no connection.
                "PASV" => t.send(
                    format!(
                        "227 Entering Passive Mode (127,0,0,2,{},{})\r\n",
                        data_port / 256,
                        data_port % 256
                    )
                    .as_bytes(),
                ),
                c if c.starts_with("RETR") => {
                    t.send(b"150 Opening BINARY mode data connection\r\n");
                    let (sock, _) = data_listener.accept().unwrap();
                    let mut d = Peer { sock }.tls(tls_cfg.clone());
                    let resumed =
                        d.stream.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                    d.send(payload);
                    d.stream.conn.send_close_notify();
                    d.stream.flush().unwrap();
                    t.send(b"226 Transfer complete\r\n");
                    return (seen, resumed);
                }
                other => panic!("unexpected command {other:?}"),
            }
        }
    })
}

#[test]
fn ftp_protected_transfer_resumes_the_control_session() {
    for use_pasv in [false, true] {
        let (port, server) = ftp_server(b"file contents\n", use_pasv);
        let mut control = connect(Protocol::Ftp, port).unwrap();
        assert_eq!(
            control.greeting(),
            Some("220-Welcome\n free text line\n220 ready")
        );
        // Let the control connection take its session tickets before the data connection.
        let mut data = control.ftp_data("RETR f").unwrap();
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"file contents\n");
        assert!(
            data.is_resumed(),
            "the data connection must resume the control session"
        );
        assert_eq!(control.ftp_finish().unwrap(), "226 Transfer complete");
        let (seen, resumed) = server.join().unwrap();
        assert!(resumed);
        let expected: &[&str] = if use_pasv {
            &["AUTH TLS", "PBSZ 0", "PROT P", "EPSV", "PASV", "RETR f"]
        } else {
            &["AUTH TLS", "PBSZ 0", "PROT P", "EPSV", "RETR f"]
        };
        assert_eq!(seen, expected);
    }
}

#[test]
fn ftp_230_greeting_is_a_downgrade() {
    let (port, server) = serve(|mut p| {
        p.send(b"230 Already logged in\r\n");
        p.rest()
    });
    assert_eq!(
        connect(Protocol::Ftp, port).unwrap_err().kind(),
        ErrorKind::Downgrade
    );
    assert!(server.join().unwrap().is_empty());
}

#[test]
fn ftp_prot_p_refused_fails_the_transfer() {
    let (port, server) = serve(|mut p| {
        p.send(b"220 ready\r\n");
        p.line();
        p.send(b"234 go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        t.line();
        t.send(b"200 PBSZ 0 successful\r\n");
        t.line();
        t.send(b"536 Requested PROT level not supported\r\n");
    });
    let mut control = connect(Protocol::Ftp, port).unwrap();
    let e = control.ftp_data("RETR f").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert!(e.to_string().contains("536"), "{e}");
    server.join().unwrap();
}

#[test]
fn ftp_methods_refuse_other_protocols() {
    let (port, server) = serve(|p| {
        p.tls(server_config(&pki().server));
    });
    let mut conn = connect(Protocol::Tls, port).unwrap();
    assert_eq!(
        conn.ftp_data("LIST").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    server.join().unwrap();
}

#[test]
fn ftp_sieve_and_http_injection_after_the_go_ahead_is_refused() {
    let (port, server) = serve(|mut p| {
        p.send(b"220 ftp ready\r\n");
        p.line();
        p.send(b"234 go\r\n230 User logged in\r\n");
    });
    assert_eq!(
        connect(Protocol::Ftp, port).unwrap_err().kind(),
        ErrorKind::Injection
    );
    server.join().unwrap();

    let (port, server) = serve(|mut p| {
        p.send(SIEVE_CAPS);
        p.line();
        p.send(b"OK \"go\"\r\n\"SASL\" \"PLAIN\"\r\nOK\r\n");
    });
    assert_eq!(
        connect(Protocol::Sieve, port).unwrap_err().kind(),
        ErrorKind::Injection
    );
    server.join().unwrap();

    let (port, server) = serve(|mut p| {
        while !p.line().is_empty() {}
        p.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        );
    });
    assert_eq!(
        connect(Protocol::Http, port).unwrap_err().kind(),
        ErrorKind::Injection
    );
    server.join().unwrap();
}

#[test]
fn postgres_direct_tls_refuses_a_server_that_ignores_alpn() {
    // A TLS server that does not speak PostgreSQL (no ALPN agreed): cross-protocol confusion.
    let (port, server) = serve(|p| {
        let mut conn = rustls::ServerConnection::new(server_config(&pki().server)).unwrap();
        let mut sock = p.sock;
        while conn.is_handshaking() && conn.complete_io(&mut sock).is_ok() {}
    });
    let e = connect(Protocol::PostgresDirect, port).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProtocolViolation, "{e}");
    assert!(e.to_string().contains("ALPN"), "{e}");
    server.join().unwrap();
}

/// A server that, like PostgreSQL before 18 (`ssl_ecdh_curve = prime256v1`), accepts only P-256.
fn p256_only_server_config() -> Arc<rustls::ServerConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .kx_groups
        .retain(|g| g.name() == rustls::NamedGroup::secp256r1);
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki().server.chain.clone(), pki().server.key())
        .unwrap();
    Arc::new(cfg)
}

/// Two round trips to a secure channel with a PostgreSQL server that accepts only P-256: the
/// first flight carries a P-256 key share (SMTP's, to the same kind of server, needs a
/// HelloRetryRequest, which shows the check can fail). The group the server chose is remembered
/// per server name in the config's one session store, so a later connection of any protocol to
/// that name starts with it.
#[test]
fn postgres_first_flight_suits_a_p256_only_server_without_a_hello_retry() {
    let serve_pg = || {
        serve(|mut p| {
            read_ssl_request(&mut p);
            p.send(b"S");
            let mut t = p.tls(p256_only_server_config());
            let mut startup = [0u8; 4];
            let _ = t.stream.read_exact(&mut startup);
        })
    };
    let config = client_config();
    for _ in 0..2 {
        let (port, server) = serve_pg();
        let mut conn = starttls::connect(&config, Protocol::Postgres, "localhost", port).unwrap();
        assert_eq!(conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
        conn.write_all(b"\0\0\0\x08").unwrap();
        conn.flush().unwrap();
        server.join().unwrap();
    }
    // The same server kind for SMTP: rustls' default first flight (X25519MLKEM768 + X25519)
    // costs a HelloRetryRequest with a fresh config, none with the one that learned the group.
    let serve_smtp = || {
        serve(|mut p| {
            p.send(b"220 mx ESMTP\r\n");
            p.line();
            p.send(b"250-mx\r\n250 STARTTLS\r\n");
            p.line();
            p.send(b"220 go\r\n");
            let mut t = p.tls(p256_only_server_config());
            t.line();
        })
    };
    // Without resumption the group is still remembered (no ticket is): only the first of two
    // connections pays the retry.
    let fresh = client_builder().session_resumption(false).build().unwrap();
    for (config, expected) in [
        (&fresh, rustls::HandshakeKind::FullWithHelloRetryRequest),
        (&fresh, rustls::HandshakeKind::Full),
        (&config, rustls::HandshakeKind::Full),
    ] {
        let (port, server) = serve_smtp();
        let mut conn = starttls::connect(config, Protocol::Smtp, "localhost", port).unwrap();
        assert_eq!(conn.handshake_kind(), Some(expected));
        conn.write_all(b"EHLO x\r\n").unwrap();
        conn.flush().unwrap();
        server.join().unwrap();
    }
}

/// `session_resumption(false)` sends no ticket even to a server that issued one (the store keeps
/// only the key-exchange group); with resumption on, the second connection resumes.
#[test]
fn session_resumption_off_never_resumes() {
    let cfg = server_config(&pki().server);
    for (resume, second) in [
        (true, rustls::HandshakeKind::Resumed),
        (false, rustls::HandshakeKind::Full),
    ] {
        let config = client_builder().session_resumption(resume).build().unwrap();
        for expected in [rustls::HandshakeKind::Full, second] {
            let cfg = cfg.clone();
            let (port, server) = serve(move |p| {
                let mut t = p.tls(cfg);
                t.line();
            });
            let mut conn = starttls::connect(&config, Protocol::Tls, "localhost", port).unwrap();
            // The tickets arrive after the handshake: read until the server closes.
            conn.write_all(b"bye\r\n").unwrap();
            conn.flush().unwrap();
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest);
            assert_eq!(conn.handshake_kind(), Some(expected), "resume={resume}");
            server.join().unwrap();
        }
    }
}

/// A MySQL HandshakeV10 packet (sequence 0) with these capability flags.
fn mysql_greeting(capabilities: u32) -> Vec<u8> {
    let mut p = vec![10];
    p.extend_from_slice(b"8.0.36\0");
    p.extend_from_slice(&9u32.to_le_bytes());
    p.extend_from_slice(b"abcdefgh\0");
    p.extend_from_slice(&(capabilities as u16).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&((capabilities >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
    let mut packet = (p.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(0);
    packet.extend(p);
    packet
}

const MYSQL_CAPS: u32 = 0x000F_AA8D; // 4.1, SSL, secure connection, plugin auth, ...
const CLIENT_SSL: u32 = 0x800;

fn read_mysql_packet(p: &mut Peer) -> Vec<u8> {
    let mut header = [0u8; 4];
    p.sock.read_exact(&mut header).unwrap();
    let len = usize::from(header[0]) | usize::from(header[1]) << 8;
    let mut body = vec![0u8; len];
    p.sock.read_exact(&mut body).unwrap();
    let mut all = header.to_vec();
    all.extend(body);
    all
}

#[test]
fn mysql_ssl_request_then_tls() {
    let (port, server) = serve(|mut p| {
        p.send(&mysql_greeting(MYSQL_CAPS));
        let request = read_mysql_packet(&mut p);
        let mut t = p.tls(server_config(&pki().server));
        // Inside TLS the client's handshake response (sequence 2) would come here.
        let mut first = [0u8; 4];
        t.stream.read_exact(&mut first).unwrap();
        (request, first)
    });
    let mut conn = connect(Protocol::Mysql, port).unwrap();
    assert!(conn.is_encrypted());
    assert_eq!(conn.greeting(), Some("8.0.36"));
    assert_eq!(conn.starttls_offered(), Some(true));
    conn.write_all(b"\x20\0\0\x02").unwrap();
    conn.flush().unwrap();
    let (request, first) = server.join().unwrap();
    // A 32-byte SSL request, sequence 1, CLIENT_SSL and CLIENT_PROTOCOL_41 set.
    assert_eq!(&request[..4], &[32, 0, 0, 1]);
    let flags = u32::from_le_bytes(request[4..8].try_into().unwrap());
    assert_ne!(flags & CLIENT_SSL, 0);
    assert_ne!(flags & 0x200, 0);
    assert_eq!(&first, b"\x20\0\0\x02");
}

#[test]
fn mysql_without_client_ssl_fails_and_nothing_is_sent() {
    let (port, server) = serve(|mut p| {
        p.send(&mysql_greeting(MYSQL_CAPS & !CLIENT_SSL));
        p.rest()
    });
    let e = connect(Protocol::Mysql, port).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotOffered, "{e}");
    assert!(server.join().unwrap().is_empty());
}

#[test]
fn mysql_bytes_after_the_greeting_are_injection() {
    let (port, server) = serve(|mut p| {
        let mut g = mysql_greeting(MYSQL_CAPS);
        g.extend_from_slice(b"\x07\0\0\x02\0\0\0\x02\0\0\0");
        p.send(&g);
        let _ = p.rest();
    });
    let e = connect(Protocol::Mysql, port).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Injection, "{e}");
    server.join().unwrap();
}

#[test]
fn mysql_error_greeting_is_a_refusal_with_the_servers_words() {
    let (port, server) = serve(|mut p| {
        p.send(b"\x2a\0\0\0\xff\x69\x04Host '127.0.0.1' is blocked because of many");
        let _ = p.rest();
    });
    let e = connect(Protocol::Mysql, port).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(
        e.to_string()
            .contains("ERROR 1129: Host '127.0.0.1' is blocked"),
        "{e}"
    );
    server.join().unwrap();
}
