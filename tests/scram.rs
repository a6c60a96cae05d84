//! SCRAM-SHA-256(-PLUS) logins against a scripted SCRAM server that checks the client's proof
//! and its channel binding against its own end of the TLS connection: success with
//! `tls-exporter`, a server that lies about its signature, a binding that does not match (a
//! man in the middle with its own TLS connection), a mechanism list without -PLUS, and no secret
//! in any transcript or error.

mod common;

use common::*;
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::tls13::{Hkdf, OkmBlock};
use starttls::{Credentials, ErrorKind, Protocol};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";

// --- a SCRAM-SHA-256 server, independent of the library's client ---

struct Crypto {
    hkdf: &'static dyn Hkdf,
    hash: &'static dyn rustls::crypto::hash::Hash,
}

fn crypto() -> Crypto {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .iter()
        .find_map(|s| match s {
            rustls::SupportedCipherSuite::Tls13(t)
                if t.common.hash_provider.algorithm() == HashAlgorithm::SHA256 =>
            {
                Some(Crypto {
                    hkdf: t.hkdf_provider,
                    hash: t.common.hash_provider,
                })
            }
            _ => None,
        })
        .unwrap()
}

impl Crypto {
    fn hmac(&self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        self.hkdf
            .hmac_sign(&OkmBlock::new(key), msg)
            .as_ref()
            .to_vec()
    }
    fn h(&self, data: &[u8]) -> Vec<u8> {
        self.hash.hash(data).as_ref().to_vec()
    }
}

/// How the scripted server behaves.
#[derive(Clone, Copy, PartialEq)]
enum Server {
    Honest,
    /// Sends a server signature computed from another password.
    WrongSignature,
    /// Checks the binding against another TLS connection's exporter (a man in the middle).
    OtherConnection,
    /// Reports success right after the client's proof, without its own signature.
    SkipsProof,
}

struct ScramServer {
    behaviour: Server,
    binding: Vec<u8>,
    gs2: String,
    first_bare: String,
    server_first: String,
    nonce: String,
}

const SALT: &[u8] = b"0123456789abcdef";
const ITERATIONS: u32 = 4096;

impl ScramServer {
    fn new(behaviour: Server, exporter: Vec<u8>) -> ScramServer {
        let binding = if behaviour == Server::OtherConnection {
            vec![0x42; 32]
        } else {
            exporter
        };
        ScramServer {
            behaviour,
            binding,
            gs2: String::new(),
            first_bare: String::new(),
            server_first: String::new(),
            nonce: String::new(),
        }
    }

    /// client-first → server-first.
    fn first(&mut self, client_first: &[u8]) -> Vec<u8> {
        let text = String::from_utf8(client_first.to_vec()).unwrap();
        let mut parts = text.splitn(3, ',');
        let (flag, authzid) = (parts.next().unwrap(), parts.next().unwrap());
        self.gs2 = format!("{flag},{authzid},");
        self.first_bare = parts.next().unwrap().to_owned();
        assert!(
            self.first_bare.starts_with(&format!("n={USER},r=")),
            "{text}"
        );
        let client_nonce = &self.first_bare[format!("n={USER},r=").len()..];
        self.nonce = format!("{client_nonce}SRVnonce");
        self.server_first = format!("r={},s={},i={ITERATIONS}", self.nonce, base64(SALT));
        self.server_first.clone().into_bytes()
    }

    fn salted(password: &str) -> Vec<u8> {
        let c = crypto();
        let mut block = SALT.to_vec();
        block.extend_from_slice(&1u32.to_be_bytes());
        let mut u = c.hmac(password.as_bytes(), &block);
        let mut out = u.clone();
        for _ in 1..ITERATIONS {
            u = c.hmac(password.as_bytes(), &u);
            out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
        }
        out
    }

    /// client-final → server-final (`v=` or `e=`).
    fn last(&mut self, client_final: &[u8]) -> Vec<u8> {
        let c = crypto();
        let text = String::from_utf8(client_final.to_vec()).unwrap();
        let (without_proof, proof) = text.rsplit_once(",p=").unwrap();
        let mut cb = self.gs2.clone().into_bytes();
        if self.gs2.starts_with("p=") {
            cb.extend_from_slice(&self.binding);
        }
        if !without_proof.starts_with(&format!("c={},r={}", base64(&cb), self.nonce)) {
            return b"e=channel-bindings-dont-match".to_vec();
        }
        let auth = format!("{},{},{without_proof}", self.first_bare, self.server_first);
        let salted = Self::salted(PASSWORD);
        let client_key = c.hmac(&salted, b"Client Key");
        let signature = c.hmac(&c.h(&client_key), auth.as_bytes());
        let recovered: Vec<u8> = unbase64(proof)
            .iter()
            .zip(&signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if c.h(&recovered) != c.h(&client_key) {
            return b"e=invalid-proof".to_vec();
        }
        let key_source = if self.behaviour == Server::WrongSignature {
            Self::salted("another password")
        } else {
            salted
        };
        let server_key = c.hmac(&key_source, b"Server Key");
        format!("v={}", base64(&c.hmac(&server_key, auth.as_bytes()))).into_bytes()
    }
}

fn exporter(t: &TlsPeer) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    t.stream
        .conn
        .export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None)
        .unwrap();
    out
}

// --- per protocol: the server side of the exchange, up to and including the final reply ---

/// SMTP: `AUTH NAME ir` → `334 server-first` → client-final → `334 server-final` → empty →
/// `235` (or `535` after `e=`).
fn smtp_server(offer: &'static str, behaviour: Server) -> (u16, std::thread::JoinHandle<String>) {
    serve(move |mut p| {
        p.send(b"220 mx ESMTP\r\n");
        p.line();
        p.send(b"250-mx\r\n250 STARTTLS\r\n");
        p.line();
        p.send(b"220 go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        let mut scram = ScramServer::new(behaviour, exporter(&t));
        t.line();
        t.send(format!("250-mx\r\n250 AUTH {offer}\r\n").as_bytes());
        let auth = t.line();
        let (mech, ir) = auth.strip_prefix("AUTH ").unwrap().split_once(' ').unwrap();
        let first = scram.first(&unbase64(ir));
        t.send(format!("334 {}\r\n", base64(&first)).as_bytes());
        let last = scram.last(&unbase64(&t.line()));
        if last.starts_with(b"e=") {
            t.send(b"535 5.7.8 Authentication credentials invalid\r\n");
            return format!("{mech} {}", String::from_utf8_lossy(&last));
        }
        if behaviour == Server::SkipsProof {
            t.send(b"235 2.7.0 Authentication successful\r\n");
            return format!("{mech} skipped");
        }
        t.send(format!("334 {}\r\n", base64(&last)).as_bytes());
        let answer = t.line();
        if answer == "*" {
            t.send(b"501 5.7.0 Authentication cancelled\r\n");
            return format!("{mech} cancelled");
        }
        assert_eq!(answer, "");
        t.send(b"235 2.7.0 Authentication successful\r\n");
        format!("{mech} ok {}", scram.gs2)
    })
}

/// IMAP with SASL-IR: `S3 AUTHENTICATE NAME ir` → `+ server-first` → client-final →
/// `+ server-final` → empty → `S3 OK`.
fn imap_server(offer: &'static str, behaviour: Server) -> (u16, std::thread::JoinHandle<String>) {
    serve(move |mut p| {
        p.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n");
        p.line();
        p.send(b"S1 OK go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        let mut scram = ScramServer::new(behaviour, exporter(&t));
        assert_eq!(t.line(), "S2 CAPABILITY");
        let caps: String = offer.split(' ').map(|m| format!(" AUTH={m}")).collect();
        t.send(format!("* CAPABILITY IMAP4rev1 SASL-IR{caps}\r\nS2 OK done\r\n").as_bytes());
        let auth = t.line();
        let rest = auth.strip_prefix("S3 AUTHENTICATE ").unwrap();
        let (mech, ir) = rest.split_once(' ').unwrap();
        let first = scram.first(&unbase64(ir));
        t.send(format!("+ {}\r\n", base64(&first)).as_bytes());
        let last = scram.last(&unbase64(&t.line()));
        if last.starts_with(b"e=") {
            t.send(b"S3 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
            return format!("{mech} {}", String::from_utf8_lossy(&last));
        }
        t.send(format!("+ {}\r\n", base64(&last)).as_bytes());
        let answer = t.line();
        if answer == "*" {
            t.send(b"S3 BAD Authentication cancelled\r\n");
            return format!("{mech} cancelled");
        }
        t.send(b"S3 OK Logged in\r\n");
        format!("{mech} ok {}", scram.gs2)
    })
}

/// POP3: `AUTH NAME ir` → `+ server-first` → client-final → `+ server-final` → empty → `+OK`.
fn pop3_server(offer: &'static str, behaviour: Server) -> (u16, std::thread::JoinHandle<String>) {
    serve(move |mut p| {
        p.send(b"+OK hi\r\n");
        assert_eq!(p.line(), "STLS");
        p.send(b"+OK go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        let mut scram = ScramServer::new(behaviour, exporter(&t));
        assert_eq!(t.line(), "CAPA");
        t.send(format!("+OK\r\nSASL {offer}\r\nUSER\r\n.\r\n").as_bytes());
        let auth = t.line();
        let (mech, ir) = auth.strip_prefix("AUTH ").unwrap().split_once(' ').unwrap();
        let first = scram.first(&unbase64(ir));
        t.send(format!("+ {}\r\n", base64(&first)).as_bytes());
        let last = scram.last(&unbase64(&t.line()));
        if last.starts_with(b"e=") {
            t.send(b"-ERR [AUTH] Authentication failed\r\n");
            return format!("{mech} {}", String::from_utf8_lossy(&last));
        }
        t.send(format!("+ {}\r\n", base64(&last)).as_bytes());
        if t.line() == "*" {
            t.send(b"-ERR cancelled\r\n");
            return format!("{mech} cancelled");
        }
        t.send(b"+OK Logged in\r\n");
        format!("{mech} ok {}", scram.gs2)
    })
}

/// NNTP: `AUTHINFO SASL NAME ir` → `383 server-first` → client-final → `283 server-final`
/// (success with the server's last message, RFC 4643 §2.4).
fn nntp_server(offer: &'static str, behaviour: Server) -> (u16, std::thread::JoinHandle<String>) {
    serve(move |mut p| {
        p.send(b"200 news\r\n");
        assert_eq!(p.line(), "STARTTLS");
        p.send(b"382 go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        let mut scram = ScramServer::new(behaviour, exporter(&t));
        assert_eq!(t.line(), "CAPABILITIES");
        t.send(
            format!("101 list\r\nVERSION 2\r\nAUTHINFO USER SASL\r\nSASL {offer}\r\n.\r\n")
                .as_bytes(),
        );
        let auth = t.line();
        let (mech, ir) = auth
            .strip_prefix("AUTHINFO SASL ")
            .unwrap()
            .split_once(' ')
            .unwrap();
        let first = scram.first(&unbase64(ir));
        t.send(format!("383 {}\r\n", base64(&first)).as_bytes());
        let last = scram.last(&unbase64(&t.line()));
        if last.starts_with(b"e=") {
            t.send(b"481 Authentication failed\r\n");
            return format!("{mech} {}", String::from_utf8_lossy(&last));
        }
        t.send(format!("283 {}\r\n", base64(&last)).as_bytes());
        format!("{mech} ok {}", scram.gs2)
    })
}

/// ManageSieve: `AUTHENTICATE "NAME" "ir"` → server-first as a literal → `"client-final"` →
/// `OK (SASL "server-final")`.
fn sieve_server(offer: &'static str, behaviour: Server) -> (u16, std::thread::JoinHandle<String>) {
    serve(move |mut p| {
        p.send(b"\"STARTTLS\"\r\nOK\r\n");
        p.line();
        p.send(b"OK \"go\"\r\n");
        let mut t = p.tls(server_config(&pki().server));
        let mut scram = ScramServer::new(behaviour, exporter(&t));
        t.send(format!("\"SASL\" \"{offer}\"\r\nOK\r\n").as_bytes());
        let auth = t.line();
        let rest = auth.strip_prefix("AUTHENTICATE \"").unwrap();
        let (mech, ir) = rest.split_once("\" \"").unwrap();
        let mech = mech.to_owned();
        let first = base64(&scram.first(&unbase64(ir.trim_end_matches('"'))));
        t.send(format!("{{{}}}\r\n{first}\r\n", first.len()).as_bytes());
        let last = scram.last(&unbase64(t.line().trim_matches('"')));
        if last.starts_with(b"e=") {
            t.send(b"NO \"Authentication failed.\"\r\n");
            return format!("{mech} {}", String::from_utf8_lossy(&last));
        }
        t.send(format!("OK (SASL \"{}\") \"Logged in.\"\r\n", base64(&last)).as_bytes());
        format!("{mech} ok {}", scram.gs2)
    })
}

fn read_tags(s: &mut dyn std::io::Read, n: usize) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    for _ in 0..n {
        while s.read(&mut b).unwrap() == 1 {
            out.push(b[0]);
            if b[0] == b'>' {
                break;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The text of an element read as its start tag, text and end tag.
fn element_text(s: &mut dyn std::io::Read) -> String {
    let all = read_tags(s, 2);
    let start = all.find('>').unwrap() + 1;
    all[start..all.rfind('<').unwrap()].to_owned()
}

/// XMPP: `<auth mechanism=NAME>ir</auth>` → `<challenge>` → `<response>` →
/// `<success>server-final</success>`.
fn xmpp_server(offer: &'static str, behaviour: Server) -> (u16, std::thread::JoinHandle<String>) {
    const NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
    serve(move |mut p| {
        read_tags(&mut p.sock, 2);
        p.send(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='1' version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>");
        read_tags(&mut p.sock, 1);
        p.send(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        let mut t = p.tls(server_config(&pki().server));
        let mut scram = ScramServer::new(behaviour, exporter(&t));
        read_tags(&mut t.stream, 2);
        let mechs: String = offer
            .split(' ')
            .map(|m| format!("<mechanism>{m}</mechanism>"))
            .collect();
        t.send(format!("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='2' version='1.0'><stream:features><mechanisms xmlns='{NS}'>{mechs}</mechanisms></stream:features>").as_bytes());
        let auth = read_tags(&mut t.stream, 1);
        let mech = auth
            .split("mechanism='")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap()
            .to_owned();
        let ir = {
            let mut rest = read_tags(&mut t.stream, 1);
            rest.truncate(rest.rfind('<').unwrap());
            rest
        };
        let first = scram.first(&unbase64(&ir));
        t.send(format!("<challenge xmlns='{NS}'>{}</challenge>", base64(&first)).as_bytes());
        let last = scram.last(&unbase64(&element_text(&mut t.stream)));
        if last.starts_with(b"e=") {
            t.send(format!("<failure xmlns='{NS}'><not-authorized/></failure>").as_bytes());
            return format!("{mech} {}", String::from_utf8_lossy(&last));
        }
        t.send(format!("<success xmlns='{NS}'>{}</success>", base64(&last)).as_bytes());
        format!("{mech} ok {}", scram.gs2)
    })
}

type StartServer = fn(&'static str, Server) -> (u16, std::thread::JoinHandle<String>);

fn protocols() -> Vec<(Protocol, StartServer)> {
    vec![
        (Protocol::Submission, smtp_server as StartServer),
        (Protocol::Imap, imap_server),
        (Protocol::Pop3, pop3_server),
        (Protocol::Nntp, nntp_server),
        (Protocol::Sieve, sieve_server),
        (Protocol::Xmpp, xmpp_server),
    ]
}

fn login(
    protocol: Protocol,
    port: u16,
) -> (
    starttls::Connection,
    starttls::Result<starttls::AuthOutcome>,
) {
    let mut conn = starttls::connect(&client_config(), protocol, "localhost", port)
        .unwrap_or_else(|e| panic!("{protocol}: {e}"));
    let r = conn.authenticate(&Credentials::new(USER, PASSWORD));
    (conn, r)
}

fn assert_nothing_secret(conn: &starttls::Connection, extra: &str) {
    for l in conn.transcript() {
        assert!(!l.text.contains(PASSWORD), "{}", l.text);
        assert!(
            !l.text.contains("p="),
            "a proof in the transcript: {}",
            l.text
        );
    }
    assert!(!extra.contains(PASSWORD), "{extra}");
}

#[test]
fn scram_plus_is_chosen_over_plain_and_bound_to_the_tls_connection() {
    for (protocol, start) in protocols() {
        let (port, srv) = start("PLAIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS", Server::Honest);
        let (conn, r) = login(protocol, port);
        let outcome = r.unwrap_or_else(|e| panic!("{protocol}: {e}"));
        assert_eq!(outcome.mechanism, "SCRAM-SHA-256-PLUS", "{protocol}");
        assert_eq!(outcome.channel_binding, Some("tls-exporter"), "{protocol}");
        assert_eq!(
            srv.join().unwrap(),
            "SCRAM-SHA-256-PLUS ok p=tls-exporter,,",
            "{protocol}"
        );
        assert_nothing_secret(&conn, "");
    }
}

#[test]
fn scram_without_plus_says_the_client_could_bind() {
    for (protocol, start) in protocols() {
        let (port, srv) = start("PLAIN SCRAM-SHA-256", Server::Honest);
        let (_, r) = login(protocol, port);
        let outcome = r.unwrap_or_else(|e| panic!("{protocol}: {e}"));
        assert_eq!(outcome.mechanism, "SCRAM-SHA-256", "{protocol}");
        assert_eq!(outcome.channel_binding, None);
        // `y`: a server that supports binding sees that its -PLUS offer was stripped.
        assert_eq!(srv.join().unwrap(), "SCRAM-SHA-256 ok y,,", "{protocol}");
    }
}

#[test]
fn a_server_that_does_not_know_the_password_is_refused_and_the_exchange_cancelled() {
    for (protocol, start) in protocols() {
        let (port, srv) = start("SCRAM-SHA-256-PLUS", Server::WrongSignature);
        let (conn, r) = login(protocol, port);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AuthFailed, "{protocol}: {e}");
        assert!(e.to_string().contains("wrong server signature"), "{e}");
        // Where the signature comes as a challenge the client cancels; where it comes with
        // the success (NNTP 283, ManageSieve OK (SASL), XMPP <success/>) the server has already
        // said yes, and the client's login fails all the same.
        let server_saw = srv.join().unwrap();
        match protocol {
            Protocol::Nntp | Protocol::Sieve | Protocol::Xmpp => {
                assert_eq!(server_saw, "SCRAM-SHA-256-PLUS ok p=tls-exporter,,")
            }
            _ => assert_eq!(server_saw, "SCRAM-SHA-256-PLUS cancelled", "{protocol}"),
        }
        assert_nothing_secret(&conn, &e.to_string());
    }
}

#[test]
fn a_binding_to_another_tls_connection_fails() {
    // The server checks the binding against a different exporter, as a man in the middle
    // terminating TLS would: it must refuse, and the client fails the login.
    for (protocol, start) in protocols() {
        let (port, srv) = start("SCRAM-SHA-256-PLUS", Server::OtherConnection);
        let (_, r) = login(protocol, port);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AuthFailed, "{protocol}: {e}");
        assert_eq!(
            srv.join().unwrap(),
            "SCRAM-SHA-256-PLUS e=channel-bindings-dont-match"
        );
    }
}

#[test]
fn the_channel_binding_data_is_this_connections_exporter() {
    // Sanity of the test server itself: a client bound to other data is refused by it.
    let mut s = ScramServer::new(Server::Honest, vec![1; 32]);
    s.first(format!("p=tls-exporter,,n={USER},r=abc").as_bytes());
    let wrong = format!(
        "c={},r=abcSRVnonce,p=AAAA",
        base64(&[b"p=tls-exporter,,".as_slice(), &[2; 32]].concat())
    );
    assert_eq!(s.last(wrong.as_bytes()), b"e=channel-bindings-dont-match");
}

#[test]
fn success_without_the_servers_signature_is_a_failure() {
    let (port, srv) = smtp_server("SCRAM-SHA-256", Server::SkipsProof);
    let (_, r) = login(Protocol::Submission, port);
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    assert!(e.to_string().contains("without proving"), "{e}");
    assert_eq!(srv.join().unwrap(), "SCRAM-SHA-256 skipped");
}
