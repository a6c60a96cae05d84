//! `starttls mx`: a scripted validating resolver (MX, A, TLSA, TXT, with or without AD), two
//! MX hosts (`starttls serve`, one with a matching TLSA record, one with a wrong one), an
//! MTA-STS policy host on 127.0.0.73:443 (the library's server side), and the verdicts.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};

use common::*;
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, MX, TLSA, TXT};
use hickory_proto::rr::{Name, RData, RecordType};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

struct Files {
    ca: String,
    cert: String,
    key: String,
    /// The hex SHA-256 of the leaf's SubjectPublicKeyInfo (a DANE-EE 3 1 1 record's data).
    spki_sha256: Vec<u8>,
    chain_pem: String,
    key_pem: String,
}

/// A CA and a certificate for both MX hosts and the policy host of every test domain.
fn files() -> &'static Files {
    static FILES: std::sync::OnceLock<Files> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let names = [
            "mx1.mail.test",
            "mx2.mail.test",
            "mta-sts.mail.test",
            "mta-sts.plain.test",
            "mta-sts.badpolicy.test",
        ];
        let leaf = CertificateParams::new(names.map(str::to_owned).to_vec())
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("starttls-mx-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = |n: &str| dir.join(n).to_string_lossy().into_owned();
        std::fs::write(path("ca.pem"), ca.pem()).unwrap();
        std::fs::write(path("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
        let pin = starttls::pin_sha256(leaf.der()).unwrap();
        Files {
            ca: path("ca.pem"),
            cert: path("cert.pem"),
            key: path("key.pem"),
            spki_sha256: unbase64(&pin),
            chain_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
        }
    })
}

/// `starttls serve --protocol smtp` on `ip:port` (port 0: any), killed when dropped.
struct Smtp(Child, u16);

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn smtp(ip: &str, port: u16) -> Smtp {
    let f = files();
    let mut child = Command::new(env!("CARGO_BIN_EXE_starttls"))
        .args([
            "serve",
            "--protocol",
            "smtp",
            "--listen",
            &format!("{ip}:{port}"),
        ])
        .args([
            "--cert",
            &f.cert,
            "--key",
            &f.key,
            "--domain",
            "mx.mail.test",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    std::thread::spawn(move || for _ in out.lines() {});
    Smtp(child, port)
}

/// The policy host: HTTPS on 127.0.0.73:443, a policy per Host (by the SNI the library
/// verified: the request's Host header). `None` when port 443 cannot be bound (not root).
fn policy_host() -> Option<()> {
    static STARTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        let Ok(listener) = TcpListener::bind("127.0.0.73:443") else {
            return false;
        };
        let f = files();
        let config = starttls::ServerConfig::builder()
            .certificate_pem(f.chain_pem.clone().into_bytes(), f.key_pem.clone().into_bytes())
            .build()
            .unwrap();
        std::thread::spawn(move || {
            for sock in listener.incoming().flatten() {
                let Ok(mut conn) = starttls::accept(&config, starttls::Protocol::Https, sock) else {
                    continue;
                };
                let mut host = String::new();
                loop {
                    let mut line = Vec::new();
                    if conn.read_line_bounded(&mut line, 8192).unwrap_or(0) <= 2 {
                        break;
                    }
                    let l = String::from_utf8_lossy(&line).to_string();
                    if let Some(h) = l.strip_prefix("Host: ") {
                        host = h.trim().to_owned();
                    }
                }
                // The bad domain's policy says enforce without any mx (RFC 8461 §3.2: invalid).
                let body = if host == "mta-sts.badpolicy.test" {
                    "version: STSv1\r\nmode: enforce\r\nmax_age: 60\r\n"
                } else {
                    "version: STSv1\r\nmode: enforce\r\nmx: mx1.mail.test\r\nmax_age: 86400\r\n"
                };
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = conn.close();
            }
        });
        true
    });
    started.then_some(())
}

fn name(n: &str) -> Name {
    Name::from_ascii(n).unwrap()
}

/// The DNS of `domain`: MX 10 mx1.mail.test and 20 mx2.mail.test (or what `mx` says), their
/// addresses, TLSA records (mx1 matching, mx2 not), the MTA-STS and TLS-RPT records.
fn zone(
    domain: &str,
    port: u16,
    mx: Option<Vec<RData>>,
) -> HashMap<(String, RecordType), Vec<RData>> {
    let f = files();
    let tlsa = |data: Vec<u8>| {
        RData::TLSA(TLSA::new(
            CertUsage::from(3),
            Selector::from(1),
            Matching::from(1),
            data,
        ))
    };
    let mut t = HashMap::new();
    let mut put = |n: &str, rt: RecordType, d: Vec<RData>| {
        t.insert((format!("{n}."), rt), d);
    };
    put(
        domain,
        RecordType::MX,
        mx.unwrap_or_else(|| {
            vec![
                RData::MX(MX::new(20, name("mx2.mail.test."))),
                RData::MX(MX::new(10, name("mx1.mail.test."))),
            ]
        }),
    );
    put(
        "mx1.mail.test",
        RecordType::A,
        vec![RData::A(A(Ipv4Addr::new(127, 0, 0, 71)))],
    );
    put(
        "mx2.mail.test",
        RecordType::A,
        vec![RData::A(A(Ipv4Addr::new(127, 0, 0, 72)))],
    );
    put(
        &format!("_{port}._tcp.mx1.mail.test"),
        RecordType::TLSA,
        vec![tlsa(f.spki_sha256.clone())],
    );
    put(
        &format!("_{port}._tcp.mx2.mail.test"),
        RecordType::TLSA,
        vec![tlsa(vec![7; 32])],
    );
    put(
        &format!("_mta-sts.{domain}"),
        RecordType::TXT,
        vec![RData::TXT(TXT::new(vec!["v=STSv1; id=1;".into()]))],
    );
    put(
        &format!("mta-sts.{domain}"),
        RecordType::A,
        vec![RData::A(A(Ipv4Addr::new(127, 0, 0, 73)))],
    );
    put(
        &format!("_smtp._tls.{domain}"),
        RecordType::TXT,
        vec![RData::TXT(TXT::new(vec![format!(
            "v=TLSRPTv1; rua=mailto:r@{domain}"
        )]))],
    );
    t
}

/// `starttls mx --json DOMAIN` against the resolver on `dns`: exit code and the JSON, read by
/// Python's json module into `key=value` lines the test checks.
fn mx(dns: u16, port: u16, domain: &str, checks: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_starttls"))
        .args([
            "mx",
            "--json",
            "--timeout",
            "5",
            "--resolver",
            &format!("127.0.0.1:{dns}"),
        ])
        .args([
            "--ca-file",
            &files().ca,
            "--port",
            &port.to_string(),
            domain,
        ])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut py = Command::new("python3")
        .args([
            "-c",
            &format!("import json,sys\nr=json.load(sys.stdin)\nh=r['hosts']\n{checks}"),
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin.take().unwrap().write_all(json.as_bytes()).unwrap();
    let checked = py.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "{domain}: {}\n{json}",
        String::from_utf8_lossy(&checked.stderr)
    );
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn mx_hosts_are_judged_by_dane_then_mta_sts() {
    if policy_host().is_none() {
        eprintln!("SKIPPED starttls mx: port 443 on 127.0.0.73 cannot be bound (not root)");
        return;
    }
    let one = smtp("127.0.0.71", 0);
    let _two = smtp("127.0.0.72", one.1);
    let port = one.1;

    // Validated DNS: mx1's record matches, mx2's does not; DANE decides before MTA-STS.
    let dns = scripted_resolver(zone("mail.test", port, None), true);
    let (code, json) = mx(
        dns,
        port,
        "mail.test",
        "
assert r['verdict'] == 'secure' and r['mx']['secure']
assert [x['host'] for x in h] == ['mx1.mail.test', 'mx2.mail.test']
assert h[0]['verdict'] == 'secure' and h[0]['dane']['applies'], h[0]
assert h[0]['addresses'][0]['dane_matched'].startswith('3 1 1 ')
assert h[1]['verdict'] == 'refuse' and h[1]['dane']['applies'], h[1]
assert r['mta_sts']['mode'] == 'enforce' and r['tls_rpt']['rua'] == ['mailto:r@mail.test']
",
    );
    assert_eq!(code, 0, "{json}");

    // Without the AD bit nothing is DANE: MTA-STS enforce authenticates mx1 and refuses mx2,
    // which its policy does not list.
    let dns = scripted_resolver(zone("plain.test", port, None), false);
    let (code, json) = mx(
        dns,
        port,
        "plain.test",
        "
assert r['verdict'] == 'secure' and not r['mx']['secure']
assert not h[0]['dane']['applies'] and h[0]['addresses'][0]['pkix_verified'], h[0]
assert h[0]['verdict'] == 'secure' and h[0]['mta_sts_listed'] is True
assert h[1]['verdict'] == 'refuse' and h[1]['mta_sts_listed'] is False, h[1]
",
    );
    assert_eq!(code, 0, "{json}");

    // A malformed policy (enforce without mx) is no policy: TLS that nothing authenticates.
    let dns = scripted_resolver(zone("badpolicy.test", port, None), false);
    let (code, json) = mx(
        dns,
        port,
        "badpolicy.test",
        "
assert 'without any' in r['mta_sts']['error'], r['mta_sts']
assert r['verdict'] == 'unauthenticated' and h[0]['verdict'] == 'unauthenticated'
",
    );
    assert_eq!(code, 5, "{json}");

    // A null MX accepts no mail.
    let null = vec![RData::MX(MX::new(0, Name::root()))];
    let dns = scripted_resolver(zone("null.test", port, Some(null)), true);
    let (code, json) = mx(
        dns,
        port,
        "null.test",
        "
assert r['mx']['null_mx'] and r['verdict'] == 'refuse' and h == []
",
    );
    assert_eq!(code, 5, "{json}");
}
