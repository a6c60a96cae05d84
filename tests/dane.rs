//! DANE (TLSA records per connection) and SPKI pins, over real handshakes on loopback against the
//! library's own server side, for every protocol: what authenticates, what is refused, what the
//! connection reports, and that a session made under one trust decision never serves another.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use starttls::{
    ClientConfig, ConnectOptions, Credentials, DaneStatus, ErrorKind, Protocol, ServerConfig,
    TlsaRecord, Verification,
};

/// A server identity nobody's roots know: a private CA and a leaf for `name`.
struct Identity {
    chain_pem: String,
    key_pem: String,
    leaf: Vec<u8>,
    leaf_spki: Vec<u8>,
    ca: Vec<u8>,
    ca_spki: Vec<u8>,
}

fn identity(name: &str) -> Identity {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "private mail CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_spki = rcgen::PublicKeyData::subject_public_key_info(&ca_key);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Identity {
        // The CA is sent too, as DANE-TA needs.
        chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
        leaf: leaf.der().to_vec(),
        leaf_spki: rcgen::PublicKeyData::subject_public_key_info(&key),
        ca: ca.der().to_vec(),
        ca_spki,
    }
}

/// One identity for the whole test binary: the server's certificate is for mx.example.net,
/// and its CA is trusted by no client config here.
fn mx() -> &'static Identity {
    static MX: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    MX.get_or_init(|| identity("mx.example.net"))
}

fn server_for(id: &Identity) -> ServerConfig {
    ServerConfig::builder()
        .certificate_pem(id.chain_pem.clone(), id.key_pem.clone())
        .hostname("mx.test")
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Accepts `n` connections with the library's server side; each result's `is_ok`.
fn accept(protocol: Protocol, cfg: ServerConfig, n: usize) -> (u16, JoinHandle<Vec<bool>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        (0..n)
            .map(|_| {
                let (sock, _) = listener.accept().unwrap();
                starttls::accept(&cfg, protocol, sock).is_ok()
            })
            .collect()
    });
    (port, handle)
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// `U S 1 sha256(selected)` for a certificate and its public key.
fn sha256_record(usage: u8, selector: u8, cert: &[u8], spki: &[u8]) -> TlsaRecord {
    let selected = if selector == 1 { spki } else { cert };
    TlsaRecord::new(usage, selector, 1, sha256(selected))
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use rustls::crypto::hash::HashAlgorithm;
    provider()
        .cipher_suites
        .iter()
        .filter_map(|s| s.tls13())
        .map(|s| s.common.hash_provider)
        .find(|h| h.algorithm() == HashAlgorithm::SHA256)
        .unwrap()
        .hash(data)
        .as_ref()
        .to_vec()
}

fn dane(records: Vec<TlsaRecord>) -> ConnectOptions {
    ConnectOptions::new().server_name("localhost").tlsa(records)
}

#[test]
fn dane_ee_authenticates_every_protocol_without_the_name_or_a_known_ca() {
    let record = sha256_record(3, 1, &mx().leaf, &mx().leaf_spki);
    for protocol in Protocol::ALL.iter().copied() {
        let (port, server) = accept(protocol, server_for(mx()), 1);
        // The certificate is for mx.example.net, from a CA the config does not trust, and
        // "localhost" is verified: DANE-EE alone decides (RFC 7672 §3.1.1).
        let conn = starttls::connect_with(
            &client_config(),
            protocol,
            "127.0.0.1",
            port,
            &dane(vec![record.clone()]),
        )
        .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        assert_eq!(conn.verification(), &Verification::Verified, "{protocol}");
        assert_eq!(conn.dane(), Some(&DaneStatus::Matched(record.clone())));
        drop(conn);
        assert_eq!(server.join().unwrap(), [true], "{protocol}");
    }
}

#[test]
fn a_record_set_that_matches_nothing_is_a_certificate_error_naming_the_records() {
    let mut wrong = sha256_record(3, 1, &mx().leaf, &mx().leaf_spki);
    wrong.data[0] ^= 0x80;
    let stranger = identity("mx.example.net");
    let other = sha256_record(2, 0, &stranger.ca, &stranger.ca_spki);
    for protocol in Protocol::ALL.iter().copied() {
        let (port, server) = accept(protocol, server_for(mx()), 1);
        let e = starttls::connect_with(
            &client_config(),
            protocol,
            "127.0.0.1",
            port,
            &dane(vec![wrong.clone(), other.clone()]),
        )
        .map(|_| ())
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Certificate, "{protocol}: {e}");
        let message = e.to_string();
        assert!(
            message.contains(&hex(&wrong.data)[..16]) && message.contains("2 0 1 "),
            "{protocol}: {message}"
        );
        assert_eq!(e.presented_chain().unwrap()[0].as_ref(), mx().leaf);
        let _ = server.join();
    }
}

#[test]
fn dane_ta_anchors_on_the_sent_ca_and_checks_the_name() {
    let record = sha256_record(2, 1, &mx().ca, &mx().ca_spki);
    for protocol in [Protocol::Smtp, Protocol::Imap, Protocol::Ldap] {
        let (port, server) = accept(protocol, server_for(mx()), 2);
        let conn = starttls::connect_with(
            &client_config(),
            protocol,
            "127.0.0.1",
            port,
            &ConnectOptions::new()
                .server_name("mx.example.net")
                .tlsa([record.clone()]),
        )
        .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        assert_eq!(conn.dane(), Some(&DaneStatus::Matched(record.clone())));
        drop(conn);
        // The same anchor for another name: refused, saying why.
        let e = starttls::connect_with(
            &client_config(),
            protocol,
            "127.0.0.1",
            port,
            &dane(vec![record.clone()]),
        )
        .map(|_| ())
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Certificate);
        assert!(e.to_string().contains("matched, but"), "{e}");
        let _ = server.join();
    }
}

#[test]
fn smtp_with_only_pkix_records_is_encrypted_unauthenticated_and_refuses_a_login() {
    // PKIX-EE is unusable between MTAs (RFC 7672 §3.1.3): none usable, so encrypted and
    // unauthenticated (§2.2), which no password may cross.
    let record = sha256_record(1, 1, &mx().leaf, &mx().leaf_spki);
    let (port, server) = accept(Protocol::Smtp, server_for(mx()), 1);
    let mut conn = starttls::connect_with(
        &client_config(),
        Protocol::Smtp,
        "127.0.0.1",
        port,
        &dane(vec![record.clone()]),
    )
    .unwrap();
    assert!(conn.is_encrypted());
    assert_eq!(conn.dane(), Some(&DaneStatus::NoUsableRecords));
    assert!(matches!(
        conn.verification(),
        Verification::Skipped { problem: Some(p) } if p.contains("RFC 7672")
    ));
    let e = conn
        .authenticate(&Credentials::new("alice", "secret"))
        .unwrap_err();
    assert!(e.to_string().contains("not verified"), "{e}");
    drop(conn);
    let _ = server.join();

    // Submission is not SMTP between MTAs: the same record is a PKIX-EE constraint there, and
    // PKIX fails (the CA is not trusted), so the connection is refused.
    let (port, server) = accept(Protocol::Submission, server_for(mx()), 1);
    let e = starttls::connect_with(
        &client_config(),
        Protocol::Submission,
        "127.0.0.1",
        port,
        &dane(vec![record]),
    )
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Certificate, "{e}");
    let _ = server.join();
}

/// Reads to the end: the server's session tickets are taken in on the way (TLS 1.3 sends them
/// after the handshake), so the next connection could resume.
fn drain(mut conn: starttls::Connection) {
    let mut buf = [0u8; 64];
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
}

#[test]
fn a_session_made_under_dane_never_resumes_without_it_and_the_reverse() {
    // The config trusts the test CA, whose server certificate is for localhost.
    let config = client_config();
    let cfg = ServerConfig::builder()
        .certificate_pem(pki().server.chain_pem.clone(), pki().server.key_pem.clone())
        .hostname("mx.test")
        .build()
        .unwrap();
    let (port, server) = accept(Protocol::Smtp, cfg, 3);
    // A verified connection leaves a session in the config's store; the next one resumes it.
    drain(starttls::connect(&config, Protocol::Smtp, "localhost", port).unwrap());
    let again = starttls::connect(&config, Protocol::Smtp, "localhost", port).unwrap();
    assert!(
        again.is_resumed(),
        "this server resumes: the test below means something"
    );
    drain(again);
    // DANE with a record that matches nothing: resuming that session would skip the check.
    let mut wrong = sha256_record(3, 0, &pki().server.chain[0], &[]);
    wrong.data[5] ^= 1;
    let e = starttls::connect_with(
        &config,
        Protocol::Smtp,
        "localhost",
        port,
        &ConnectOptions::new().tlsa([wrong]),
    )
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Certificate, "{e}");
    let _ = server.join();

    // The reverse: a session DANE authenticated (the CA unknown to the config) must not let a
    // plain connection from the same config resume past its roots.
    let (port, server) = accept(Protocol::Smtp, server_for(mx()), 2);
    let record = sha256_record(3, 1, &mx().leaf, &mx().leaf_spki);
    drain(
        starttls::connect_with(
            &config,
            Protocol::Smtp,
            "localhost",
            port,
            &ConnectOptions::new().tlsa([record]),
        )
        .unwrap(),
    );
    let e = starttls::connect(&config, Protocol::Smtp, "localhost", port)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Certificate, "{e}");
    let _ = server.join();
}

#[test]
fn tlsa_with_a_config_that_accepts_anything_is_refused_before_connecting() {
    let config = client_builder()
        .dangerous_accept_any_certificate(true)
        .build()
        .unwrap();
    let e = starttls::connect_with(
        &config,
        Protocol::Smtp,
        "127.0.0.1",
        1,
        &dane(vec![sha256_record(3, 1, &mx().leaf, &mx().leaf_spki)]),
    )
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn pins_alone_authenticate_a_self_signed_server_and_a_mismatch_carries_its_pin() {
    let pin = starttls::pin_sha256(&mx().leaf).unwrap();
    let pinned = |pins: &[&str]| {
        let mut b = ClientConfig::builder()
            .timeout(Duration::from_secs(5))
            .pin_only(true);
        for p in pins {
            b = b.pin_sha256(*p);
        }
        b.build().unwrap()
    };
    let other = starttls::pin_sha256(&identity("x.example").leaf).unwrap();
    for protocol in Protocol::ALL.iter().copied() {
        let (port, server) = accept(protocol, server_for(mx()), 2);
        // Pin-only, the next key's pin beside the current one (a rollover), curl's form.
        let conn = starttls::connect(
            &pinned(&[&other, &format!("sha256//{pin}")]),
            protocol,
            "127.0.0.1",
            port,
        )
        .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        assert_eq!(conn.verification(), &Verification::Verified);
        drop(conn);
        let e = starttls::connect(&pinned(&[&other]), protocol, "127.0.0.1", port)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Certificate, "{protocol}");
        assert!(e.to_string().contains(&pin), "{protocol}: {e}");
        // Trust on first use: the presented leaf's pin is the one to retry with.
        let leaf = &e.presented_chain().unwrap()[0];
        assert_eq!(starttls::pin_sha256(leaf).as_deref(), Some(pin.as_str()));
        let _ = server.join();
    }
}

#[test]
fn a_pin_is_checked_in_addition_to_the_roots_by_default() {
    let config = |pin: &str| client_builder().pin_sha256(pin).build().unwrap();
    let good = starttls::pin_sha256(&pki().server.chain[0]).unwrap();
    let cfg = || {
        ServerConfig::builder()
            .certificate_pem(pki().server.chain_pem.clone(), pki().server.key_pem.clone())
            .hostname("mx.test")
            .build()
            .unwrap()
    };
    let (port, server) = accept(Protocol::Imap, cfg(), 3);
    starttls::connect(&config(&good), Protocol::Imap, "localhost", port).unwrap();
    // The roots pass, the pin does not: refused.
    let other = starttls::pin_sha256(&mx().leaf).unwrap();
    let e = starttls::connect(&config(&other), Protocol::Imap, "localhost", port)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Certificate);
    // The pin matches, the name does not: refused by the roots.
    let e = starttls::connect_named(&config(&good), Protocol::Imap, "127.0.0.1", port, "x.test")
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Certificate);
    let _ = server.join();
}

#[test]
fn bad_pins_and_pin_only_without_pins_are_config_errors() {
    for bad in [
        "",
        "abc",
        "sha256//not base64!",
        "sha1//AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ] {
        let e = ClientConfig::builder().pin_sha256(bad).build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{bad:?}");
    }
    let e = ClientConfig::builder().pin_only(true).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = ClientConfig::builder()
        .pin_sha256(starttls::pin_sha256(&mx().leaf).unwrap())
        .dangerous_accept_any_certificate(true)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[test]
fn tlsa_records_make_tls_mandatory_even_under_the_opportunistic_policy() {
    // An MTA's usual policy is opportunistic; once validated TLSA records apply, a stripped
    // STARTTLS must fail (RFC 7672 §2.2), not carry on in plaintext.
    let config = client_builder()
        .policy(starttls::Policy::Opportunistic)
        .build()
        .unwrap();
    let (port, server) = serve(|mut p| {
        p.send(b"220 mx.test ESMTP\r\n");
        p.line();
        p.send(b"250-mx.test\r\n250 SIZE 1000\r\n");
        p.rest()
    });
    let e = starttls::connect_with(
        &config,
        Protocol::Smtp,
        "127.0.0.1",
        port,
        &dane(vec![sha256_record(3, 1, &mx().leaf, &mx().leaf_spki)]),
    )
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotOffered, "{e}");
    // Nothing more was sent in plaintext (no MAIL FROM, no QUIT with a payload).
    let rest = String::from_utf8_lossy(&server.join().unwrap()).into_owned();
    assert!(!rest.contains("MAIL"), "{rest}");
    // Without records the same config carries on in plaintext, as asked.
    let (port, _server) = serve(|mut p| {
        p.send(b"220 mx.test ESMTP\r\n");
        p.line();
        p.send(b"250-mx.test\r\n250 SIZE 1000\r\n");
        p.rest()
    });
    let conn = starttls::connect(&config, Protocol::Smtp, "127.0.0.1", port).unwrap();
    assert!(!conn.is_encrypted());
}
