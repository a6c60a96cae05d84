//! Authentication inside TLS, per protocol, against scripted servers: the right mechanism from
//! the capabilities fetched inside TLS, success and failure, nothing sent without TLS, and no
//! credential in the transcript, the observer or the error.

mod common;

use std::io::Read;
use std::sync::{Arc, Mutex};

use common::*;
use starttls::{Credentials, ErrorKind, Policy, Protocol};

const PASSWORD: &str = "s3cr3t-p4ss";

fn creds() -> Credentials {
    Credentials::new("alice", PASSWORD)
}

/// base64("\0alice\0s3cr3t-p4ss")
const PLAIN: &str = "AGFsaWNlAHMzY3IzdC1wNHNz";

/// One exchange inside TLS: what the client must send (exactly), and the reply.
type Exchange = (&'static str, &'static [u8]);

/// A server: `pre` runs in plaintext up to the go-ahead (returns nothing), then TLS, then each
/// exchange; returns the lines the client sent inside TLS.
fn server(
    pre: fn(&mut Peer),
    exchanges: Vec<Exchange>,
) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    serve(move |mut p| {
        pre(&mut p);
        let mut t = p.tls(server_config(&pki().server));
        let mut seen = Vec::new();
        for (expect, reply) in exchanges {
            let line = t.line();
            assert_eq!(line, expect);
            seen.push(line);
            t.send(reply);
        }
        seen
    })
}

struct Observed {
    lines: Arc<Mutex<Vec<String>>>,
    config: starttls::ClientConfig,
}

fn observed() -> Observed {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let config = client_builder()
        .on_dialog_line(move |l| sink.lock().unwrap().push(l.text.clone()))
        .build()
        .unwrap();
    Observed { lines, config }
}

fn assert_no_secret(conn: &starttls::Connection, obs: &Observed, extra: &str) {
    for l in conn.transcript() {
        assert!(
            !l.text.contains(PASSWORD) && !l.text.contains(PLAIN),
            "transcript: {}",
            l.text
        );
    }
    for l in obs.lines.lock().unwrap().iter() {
        assert!(!l.contains(PASSWORD) && !l.contains(PLAIN), "observer: {l}");
    }
    assert!(
        !extra.contains(PASSWORD) && !extra.contains(PLAIN),
        "{extra}"
    );
}

fn smtp_pre(p: &mut Peer) {
    p.send(b"220 mx ESMTP\r\n");
    p.line();
    // AUTH offered before TLS: it must not count.
    p.send(b"250-mx\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n");
    p.line();
    p.send(b"220 go\r\n");
}

#[test]
fn smtp_auth_plain_success_and_nothing_secret_logged() {
    let (port, srv) = server(
        smtp_pre,
        vec![
            ("EHLO [127.0.0.1]", b"250-mx\r\n250 AUTH LOGIN PLAIN\r\n"),
            (
                "AUTH PLAIN AGFsaWNlAHMzY3IzdC1wNHNz",
                b"235 2.7.0 Authentication successful\r\n",
            ),
        ],
    );
    let obs = observed();
    let mut conn = starttls::connect(&obs.config, Protocol::Submission, "localhost", port).unwrap();
    let outcome = conn.authenticate(&creds()).unwrap();
    assert_eq!(outcome.mechanism, "PLAIN");
    assert_eq!(outcome.reply, "235 2.7.0 Authentication successful");
    assert_no_secret(&conn, &obs, "");
    assert!(
        conn.transcript()
            .iter()
            .any(|l| l.text == "AUTH PLAIN <credentials>")
    );
    srv.join().unwrap();
}

#[test]
fn smtp_auth_login_when_plain_is_absent_and_failure_carries_the_reply() {
    let (port, srv) = server(
        smtp_pre,
        vec![
            ("EHLO [127.0.0.1]", b"250-mx\r\n250 AUTH LOGIN\r\n"),
            ("AUTH LOGIN", b"334 VXNlcm5hbWU6\r\n"),
            ("YWxpY2U=", b"334 UGFzc3dvcmQ6\r\n"),
            (
                "czNjcjN0LXA0c3M=",
                b"535 5.7.8 Authentication credentials invalid\r\n",
            ),
        ],
    );
    let obs = observed();
    let mut conn = starttls::connect(&obs.config, Protocol::Submission, "localhost", port).unwrap();
    let e = conn.authenticate(&creds()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed);
    assert_eq!(
        e.reply(),
        Some("535 5.7.8 Authentication credentials invalid")
    );
    assert_no_secret(&conn, &obs, &e.to_string());
    srv.join().unwrap();
}

#[test]
fn a_mechanism_offered_only_before_tls_is_not_used() {
    let (port, srv) = server(
        smtp_pre,
        vec![("EHLO [127.0.0.1]", b"250-mx\r\n250 SIZE 100\r\n")],
    );
    let mut conn = starttls::connect(&client_config(), Protocol::Smtp, "localhost", port).unwrap();
    let e = conn.authenticate(&creds()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotOffered, "{e}");
    assert_eq!(
        srv.join().unwrap(),
        ["EHLO [127.0.0.1]"],
        "nothing but EHLO may be sent"
    );
}

#[test]
fn credentials_are_never_sent_without_tls() {
    let (port, srv) = serve(|mut p| {
        p.send(b"220 mx ESMTP\r\n");
        p.line();
        // No STARTTLS, and AUTH on offer in plaintext.
        p.send(b"250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
        let mut rest = Vec::new();
        let _ = p.sock.read_to_end(&mut rest);
        rest
    });
    let config = client_builder()
        .policy(Policy::Opportunistic)
        .build()
        .unwrap();
    let mut conn = starttls::connect(&config, Protocol::Smtp, "localhost", port).unwrap();
    assert!(!conn.is_encrypted());
    let e = conn.authenticate(&creds()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotEncrypted);
    drop(conn);
    assert!(
        srv.join().unwrap().is_empty(),
        "nothing may be sent in plaintext"
    );
}

fn imap_pre(p: &mut Peer) {
    p.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n");
    p.line();
    p.send(b"S1 OK go\r\n");
}

#[test]
fn imap_authenticate_plain_with_and_without_sasl_ir_and_login() {
    let cases: [(Vec<Exchange>, &str); 3] = [
        (
            vec![
                (
                    "S2 CAPABILITY",
                    b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\nS2 OK done\r\n",
                ),
                (
                    "S3 AUTHENTICATE PLAIN AGFsaWNlAHMzY3IzdC1wNHNz",
                    b"S3 OK Logged in\r\n",
                ),
            ],
            "PLAIN",
        ),
        (
            vec![
                (
                    "S2 CAPABILITY",
                    b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nS2 OK done\r\n",
                ),
                ("S3 AUTHENTICATE PLAIN", b"+ \r\n"),
                ("AGFsaWNlAHMzY3IzdC1wNHNz", b"S3 OK Logged in\r\n"),
            ],
            "PLAIN",
        ),
        (
            vec![
                ("S2 CAPABILITY", b"* CAPABILITY IMAP4rev1\r\nS2 OK done\r\n"),
                ("S3 LOGIN \"alice\" \"s3cr3t-p4ss\"", b"S3 OK Logged in\r\n"),
            ],
            "LOGIN",
        ),
    ];
    for (exchanges, mechanism) in cases {
        let (port, srv) = server(imap_pre, exchanges);
        let obs = observed();
        let mut conn = starttls::connect(&obs.config, Protocol::Imap, "localhost", port).unwrap();
        assert_eq!(conn.authenticate(&creds()).unwrap().mechanism, mechanism);
        assert_no_secret(&conn, &obs, "");
        srv.join().unwrap();
    }
    // LOGINDISABLED inside TLS and no SASL: nothing to use.
    let (port, srv) = server(
        imap_pre,
        vec![(
            "S2 CAPABILITY",
            b"* CAPABILITY IMAP4rev1 LOGINDISABLED\r\nS2 OK done\r\n",
        )],
    );
    let mut conn = starttls::connect(&client_config(), Protocol::Imap, "localhost", port).unwrap();
    let e = conn.authenticate(&creds()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotOffered);
    // Not "does not offer STARTTLS": TLS is up; it is the login that has nothing to use.
    assert!(
        e.to_string().contains("no login mechanism") && !e.to_string().contains("STARTTLS"),
        "{e}"
    );
    srv.join().unwrap();
    // A NO is an authentication failure with the reply.
    let (port, srv) = server(
        imap_pre,
        vec![
            (
                "S2 CAPABILITY",
                b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\nS2 OK done\r\n",
            ),
            (
                "S3 AUTHENTICATE PLAIN AGFsaWNlAHMzY3IzdC1wNHNz",
                b"S3 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
            ),
        ],
    );
    let mut conn = starttls::connect(&client_config(), Protocol::Imap, "localhost", port).unwrap();
    let e = conn.authenticate(&creds()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed);
    assert!(e.to_string().contains("AUTHENTICATIONFAILED"), "{e}");
    srv.join().unwrap();
}

fn pop3_pre(p: &mut Peer) {
    p.send(b"+OK hi\r\n");
    p.line();
    p.send(b"+OK go\r\n");
}

#[test]
fn pop3_auth_plain_or_user_pass() {
    let (port, srv) = server(
        pop3_pre,
        vec![
            ("CAPA", b"+OK\r\nSASL PLAIN\r\nUSER\r\n.\r\n"),
            ("AUTH PLAIN AGFsaWNlAHMzY3IzdC1wNHNz", b"+OK Logged in.\r\n"),
        ],
    );
    let mut conn = starttls::connect(&client_config(), Protocol::Pop3, "localhost", port).unwrap();
    assert_eq!(conn.authenticate(&creds()).unwrap().mechanism, "PLAIN");
    srv.join().unwrap();

    let (port, srv) = server(
        pop3_pre,
        vec![
            ("CAPA", b"+OK\r\nUSER\r\n.\r\n"),
            ("USER alice", b"+OK\r\n"),
            (
                "PASS s3cr3t-p4ss",
                b"-ERR [AUTH] Authentication failed.\r\n",
            ),
        ],
    );
    let obs = observed();
    let mut conn = starttls::connect(&obs.config, Protocol::Pop3, "localhost", port).unwrap();
    let e = conn.authenticate(&creds()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed);
    assert_no_secret(&conn, &obs, &e.to_string());
    srv.join().unwrap();
}

#[test]
fn nntp_sieve_ftp_and_ldap_logins() {
    // NNTP AUTHINFO USER/PASS.
    let (port, srv) = server(
        |p| {
            p.send(b"200 news\r\n");
            p.line();
            p.send(b"382 go\r\n");
        },
        vec![
            (
                "CAPABILITIES",
                b"101 list\r\nVERSION 2\r\nAUTHINFO USER\r\n.\r\n",
            ),
            ("AUTHINFO USER alice", b"381 password please\r\n"),
            (
                "AUTHINFO PASS s3cr3t-p4ss",
                b"281 Authentication accepted\r\n",
            ),
        ],
    );
    let mut conn = starttls::connect(&client_config(), Protocol::Nntp, "localhost", port).unwrap();
    assert_eq!(conn.authenticate(&creds()).unwrap().mechanism, "USER/PASS");
    srv.join().unwrap();

    // ManageSieve: the capabilities re-sent after TLS decide.
    let (port, srv) = serve(|mut p| {
        p.send(b"\"STARTTLS\"\r\nOK\r\n");
        p.line();
        p.send(b"OK \"go\"\r\n");
        let mut t = p.tls(server_config(&pki().server));
        t.send(b"\"SASL\" \"PLAIN\"\r\nOK\r\n");
        let line = t.line();
        t.send(b"OK \"Logged in.\"\r\n");
        line
    });
    let mut conn = starttls::connect(&client_config(), Protocol::Sieve, "localhost", port).unwrap();
    assert_eq!(conn.authenticate(&creds()).unwrap().mechanism, "PLAIN");
    assert_eq!(
        srv.join().unwrap(),
        format!("AUTHENTICATE \"PLAIN\" \"{PLAIN}\"")
    );

    // FTP USER/PASS.
    let (port, srv) = server(
        |p| {
            p.send(b"220 ftp\r\n");
            p.line();
            p.send(b"234 go\r\n");
        },
        vec![
            ("USER alice", b"331 Password required\r\n"),
            ("PASS s3cr3t-p4ss", b"230 Logged in\r\n"),
        ],
    );
    let mut conn = starttls::connect(&client_config(), Protocol::Ftp, "localhost", port).unwrap();
    assert_eq!(conn.authenticate(&creds()).unwrap().mechanism, "USER/PASS");
    srv.join().unwrap();

    // LDAP simple bind: the BindRequest carries the DN and password; resultCode 49 fails.
    let (port, srv) = serve(|mut p| {
        let mut req = [0u8; 31];
        p.sock.read_exact(&mut req).unwrap();
        p.send(&[
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ]);
        let mut t = p.tls(server_config(&pki().server));
        let mut bind = vec![0u8; 2];
        t.stream.read_exact(&mut bind).unwrap();
        let mut body = vec![0u8; bind[1] as usize];
        t.stream.read_exact(&mut body).unwrap();
        t.send(&[
            0x30, 0x0c, 0x02, 0x01, 0x02, 0x61, 0x07, 0x0a, 0x01, 49, 0x04, 0x00, 0x04, 0x00,
        ]);
        body
    });
    let mut conn = starttls::connect(&client_config(), Protocol::Ldap, "localhost", port).unwrap();
    let e = conn
        .authenticate(&Credentials::new("cn=alice,dc=example,dc=org", PASSWORD))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed);
    assert!(e.to_string().contains("invalidCredentials"), "{e}");
    let body = srv.join().unwrap();
    assert!(
        body.windows(PASSWORD.len())
            .any(|w| w == PASSWORD.as_bytes())
    );
    assert!(body.windows(26).any(|w| w == b"cn=alice,dc=example,dc=org"));
}

#[test]
fn xmpp_sasl_plain_after_the_stream_restart() {
    let (port, srv) = serve(|mut p| {
        let mut buf = [0u8; 1];
        let mut read_tags = |s: &mut dyn Read, n: usize| {
            let mut out = Vec::new();
            for _ in 0..n {
                while s.read(&mut buf).unwrap() == 1 {
                    out.push(buf[0]);
                    if buf[0] == b'>' {
                        break;
                    }
                }
            }
            String::from_utf8(out).unwrap()
        };
        read_tags(&mut p.sock, 2);
        p.send(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='1' version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>");
        read_tags(&mut p.sock, 1);
        p.send(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        let mut t = p.tls(server_config(&pki().server));
        read_tags(&mut t.stream, 2);
        t.send(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='2' version='1.0'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>");
        let auth = read_tags(&mut t.stream, 2);
        t.send(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        auth
    });
    let obs = observed();
    let mut conn = starttls::connect(&obs.config, Protocol::Xmpp, "localhost", port).unwrap();
    assert_eq!(conn.authenticate(&creds()).unwrap().mechanism, "PLAIN");
    assert_no_secret(&conn, &obs, "");
    let auth = srv.join().unwrap();
    assert_eq!(
        auth,
        format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN}</auth>")
    );
}

#[test]
fn credentials_with_line_breaks_are_refused_before_anything_is_sent() {
    let (port, srv) = server(smtp_pre, vec![]);
    let mut conn = starttls::connect(&client_config(), Protocol::Smtp, "localhost", port).unwrap();
    let e = conn
        .authenticate(&Credentials::new("alice\r\nRCPT TO:<x@y>", "p"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(srv.join().unwrap().is_empty());
}

#[test]
fn credentials_are_never_sent_over_an_unverified_connection() {
    // The server presents a certificate for another host; the client accepts any certificate.
    let (port, srv) = serve(|mut p| {
        smtp_pre(&mut p);
        let mut t = p.tls(server_config(&pki().other_host));
        // The first thing the client says inside TLS; a client that refuses says nothing and
        // closes (a reset or an empty read).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.line())).unwrap_or_default()
    });
    let config = client_builder()
        .dangerous_accept_any_certificate(true)
        .build()
        .unwrap();
    let mut conn = starttls::connect(&config, Protocol::Smtp, "localhost", port).unwrap();
    let e = conn.authenticate(&creds()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("not verified"), "{e}");
    drop(conn);
    assert_eq!(
        srv.join().unwrap(),
        "",
        "the client sent something after refusing"
    );
}

#[test]
fn the_dangerous_override_allows_a_login_over_an_unverified_connection() {
    let (port, srv) = serve(|mut p| {
        smtp_pre(&mut p);
        let mut t = p.tls(server_config(&pki().other_host));
        let ehlo = t.line();
        t.send(b"250-mx\r\n250 AUTH PLAIN\r\n");
        let auth = t.line();
        t.send(b"235 2.7.0 ok\r\n");
        (ehlo, auth)
    });
    let config = client_builder()
        .dangerous_accept_any_certificate(true)
        .dangerous_allow_login_without_verification(true)
        .build()
        .unwrap();
    let mut conn = starttls::connect(&config, Protocol::Smtp, "localhost", port).unwrap();
    conn.authenticate(&creds()).unwrap();
    let (_, auth) = srv.join().unwrap();
    assert_eq!(auth, format!("AUTH PLAIN {PLAIN}"));
}

const TOKEN: &str = "ya29.a0-secret-token";

fn smtp_after_tls(caps: &'static [u8], exchanges: Vec<Exchange>) -> Vec<Exchange> {
    let mut all = vec![("EHLO [127.0.0.1]", caps)];
    all.extend(exchanges);
    all
}

#[test]
fn a_bearer_token_logs_in_with_oauthbearer_or_xoauth2_and_never_as_a_password() {
    // OAUTHBEARER over SMTP: base64("n,a=alice,^Aauth=Bearer TOKEN^A^A").
    let oauthbearer = "bixhPWFsaWNlLAFhdXRoPUJlYXJlciB5YTI5LmEwLXNlY3JldC10b2tlbgEB";
    let (port, srv) = server(
        smtp_pre,
        smtp_after_tls(
            b"250-mx\r\n250 AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n",
            vec![(
                Box::leak(format!("AUTH OAUTHBEARER {oauthbearer}").into_boxed_str()),
                b"235 2.7.0 Accepted\r\n",
            )],
        ),
    );
    let obs = observed();
    let mut conn = starttls::connect(&obs.config, Protocol::Submission, "localhost", port).unwrap();
    let outcome = conn
        .authenticate(&Credentials::bearer_token("alice", TOKEN))
        .unwrap();
    assert_eq!(outcome.mechanism, "OAUTHBEARER");
    assert_no_token(&conn, &obs, "");
    srv.join().unwrap();

    // XOAUTH2 over IMAP, rejected with Google's JSON error: the client answers with an empty
    // line, the server fails, and the message carries the decoded error.
    let json = r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#;
    let challenge: &'static [u8] = Box::leak(
        format!("+ {}\r\n", base64(json.as_bytes()))
            .into_bytes()
            .into_boxed_slice(),
    );
    let xoauth2 = base64(format!("user=alice\x01auth=Bearer {TOKEN}\x01\x01").as_bytes());
    let (port, srv) = server(
        imap_pre,
        vec![
            (
                "S2 CAPABILITY",
                b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2\r\nS2 OK done\r\n",
            ),
            (
                Box::leak(format!("S3 AUTHENTICATE XOAUTH2 {xoauth2}").into_boxed_str()),
                challenge,
            ),
            (
                "",
                b"S3 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n",
            ),
        ],
    );
    let obs = observed();
    let mut conn = starttls::connect(&obs.config, Protocol::Imap, "localhost", port).unwrap();
    let e = conn
        .authenticate(&Credentials::bearer_token("alice", TOKEN))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed);
    let text = e.to_string();
    assert!(
        text.contains("XOAUTH2") && text.contains("status=400"),
        "{text}"
    );
    assert!(text.contains("scope=https://mail.google.com/"), "{text}");
    assert_no_token(&conn, &obs, &text);
    srv.join().unwrap();

    // Only PLAIN and LOGIN: a token is not a password, so nothing is sent.
    let (port, srv) = server(
        smtp_pre,
        smtp_after_tls(b"250-mx\r\n250 AUTH PLAIN LOGIN\r\n", vec![]),
    );
    let mut conn =
        starttls::connect(&client_config(), Protocol::Submission, "localhost", port).unwrap();
    let e = conn
        .authenticate(&Credentials::bearer_token("alice", TOKEN))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotOffered, "{e}");
    srv.join().unwrap();
    // FTP has only USER/PASS: a token is not sent there either.
    let (port, srv) = server(
        |p| {
            p.send(b"220 ftp\r\n");
            p.line();
            p.send(b"234 go\r\n");
        },
        vec![],
    );
    let mut conn = starttls::connect(&client_config(), Protocol::Ftp, "localhost", port).unwrap();
    let e = conn
        .authenticate(&Credentials::bearer_token("alice", TOKEN))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotOffered, "{e}");
    srv.join().unwrap();
}

fn assert_no_token(conn: &starttls::Connection, obs: &Observed, extra: &str) {
    let encoded = base64(TOKEN.as_bytes());
    for text in conn
        .transcript()
        .iter()
        .map(|l| l.text.clone())
        .chain(obs.lines.lock().unwrap().iter().cloned())
        .chain([extra.to_owned()])
    {
        assert!(!text.contains(TOKEN) && !text.contains(&encoded), "{text}");
        assert!(!text.contains("auth=Bearer"), "{text}");
    }
}

#[test]
fn sasl_external_logs_in_with_the_client_certificate() {
    // SMTP: `AUTH EXTERNAL =` (an empty initial response is `=`, RFC 4954).
    let (port, srv) = serve(|mut p| {
        smtp_pre(&mut p);
        let mut t = p.tls(server_config_requiring_client_cert(&pki().server));
        let presented = t.stream.conn.peer_certificates().map(<[_]>::len);
        t.line();
        t.send(b"250-mx\r\n250 AUTH PLAIN EXTERNAL\r\n");
        let auth = t.line();
        t.send(b"235 2.7.0 Authenticated by certificate\r\n");
        (presented, auth)
    });
    let config = client_builder()
        .client_auth_pem(pki().client.chain_pem.clone(), pki().client.key_pem.clone())
        .build()
        .unwrap();
    let mut conn = starttls::connect(&config, Protocol::Submission, "localhost", port).unwrap();
    let outcome = conn
        .authenticate(&Credentials::client_certificate())
        .unwrap();
    assert_eq!(outcome.mechanism, "EXTERNAL");
    assert_eq!(srv.join().unwrap(), (Some(1), "AUTH EXTERNAL =".to_owned()));

    // Without a client certificate in the config there is nothing to log in with: refused
    // before anything is sent.
    let (port, srv) = server(smtp_pre, vec![]);
    let mut conn =
        starttls::connect(&client_config(), Protocol::Submission, "localhost", port).unwrap();
    let e = conn
        .authenticate(&Credentials::client_certificate())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("client certificate"), "{e}");
    srv.join().unwrap();

    // LDAP: a SASL bind with EXTERNAL and the authorization identity, no DN, no password.
    let (port, srv) = serve(|mut p| {
        let mut req = [0u8; 31];
        p.sock.read_exact(&mut req).unwrap();
        p.send(&[
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ]);
        let mut t = p.tls(server_config_requiring_client_cert(&pki().server));
        let mut head = vec![0u8; 2];
        t.stream.read_exact(&mut head).unwrap();
        let mut body = vec![0u8; head[1] as usize];
        t.stream.read_exact(&mut body).unwrap();
        t.send(&[
            0x30, 0x0c, 0x02, 0x01, 0x02, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ]);
        body
    });
    let mut conn = starttls::connect(&config, Protocol::Ldap, "localhost", port).unwrap();
    let outcome = conn
        .authenticate(&Credentials::client_certificate().with_authzid("dn:cn=alice"))
        .unwrap();
    assert_eq!(outcome.mechanism, "EXTERNAL");
    let body = srv.join().unwrap();
    // messageID 2, BindRequest { version 3, name "", sasl { "EXTERNAL", "dn:cn=alice" } }
    let mut expected = vec![0x02, 0x01, 0x02, 0x60, 0x1e, 0x02, 0x01, 0x03, 0x04, 0x00];
    expected.extend_from_slice(&[0xa3, 0x17, 0x04, 0x08]);
    expected.extend_from_slice(b"EXTERNAL");
    expected.extend_from_slice(&[0x04, 0x0b]);
    expected.extend_from_slice(b"dn:cn=alice");
    assert_eq!(body, expected);
}
