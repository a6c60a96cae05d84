//! `starttls serve` as a person leaves it running: every session ends with close_notify (real
//! clients exit 0 and report a clean close), and finished session threads are not kept.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use starttls::Protocol;

/// A running `starttls serve`, killed when dropped.
struct Serve {
    child: Child,
    port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files() -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("starttls-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca, &pki().ca_pem).unwrap();
    std::fs::write(&cert, &pki().server.chain_pem).unwrap();
    std::fs::write(&key, &pki().server.key_pem).unwrap();
    (ca, cert, key)
}

fn serve(protocol: &str, extra: &[&str]) -> Serve {
    let (_, cert, key) = files();
    let mut child = Command::new(env!("CARGO_BIN_EXE_starttls"))
        .args(["serve", "--protocol", protocol, "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // "serving smtp on 127.0.0.1:PORT as localhost"
    let port = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    // Keep reading the log so that the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    Serve { child, port }
}

/// The protocols s_client and gnutls-cli speak, with what a person types to end the session
/// (nothing: the client closes first).
const GOODBYES: [(&str, &str, &str); 9] = [
    ("smtp", "smtp", "EHLO me\nQUIT\n"),
    ("lmtp", "lmtp", "LHLO me\nQUIT\n"),
    ("imap", "imap", "a CAPABILITY\na LOGOUT\n"),
    ("pop3", "pop3", "CAPA\nQUIT\n"),
    ("nntp", "nntp", "CAPABILITIES\nQUIT\n"),
    ("ftp", "ftp", "FEAT\nQUIT\n"),
    ("sieve", "sieve", "CAPABILITY\nLOGOUT\n"),
    ("ldap", "ldap", ""),
    ("postgres", "postgres", ""),
];

#[test]
fn s_client_ends_every_session_cleanly_against_serve() {
    if !have("openssl", "version") {
        eprintln!("SKIPPED s_client against serve: openssl is not installed");
        return;
    }
    let (ca, _, _) = files();
    for (protocol, name, goodbye) in GOODBYES {
        let server = serve(protocol, &["--max-connections", "1"]);
        let mut client = Command::new("openssl")
            .args([
                "s_client",
                "-brief",
                "-verify_return_error",
                "-crlf",
                "-starttls",
                name,
            ])
            .args(["-connect", &format!("127.0.0.1:{}", server.port)])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .arg("-CAfile")
            .arg(&ca)
            // Wait for the server to end the session after the goodbye, instead of closing first.
            .args(if goodbye.is_empty() {
                &[][..]
            } else {
                &["-ign_eof"][..]
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        client
            .stdin
            .take()
            .unwrap()
            .write_all(goodbye.as_bytes())
            .unwrap();
        let out = client.wait_with_output().unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !log.contains("unexpected eof"),
            "s_client -starttls {name} against serve: {:?}\n{log}",
            out.status
        );
        assert!(log.contains("Verification: OK"), "{name}:\n{log}");
    }
}

#[test]
fn gnutls_cli_ends_every_session_cleanly_against_serve() {
    if !have("gnutls-cli", "--version") {
        eprintln!("SKIPPED gnutls-cli against serve: not installed (Debian package gnutls-bin)");
        return;
    }
    let (ca, _, _) = files();
    for (protocol, name, goodbye) in GOODBYES {
        if goodbye.is_empty() {
            continue; // gnutls-cli closes first: nothing to learn about the server's close
        }
        let server = serve(protocol, &["--max-connections", "1"]);
        let mut client = Command::new("gnutls-cli")
            .arg(format!("--starttls-proto={name}"))
            .arg(format!("--x509cafile={}", ca.display()))
            .args(["-p", &server.port.to_string(), "localhost"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = client.stdin.take().unwrap();
        stdin.write_all(goodbye.as_bytes()).unwrap();
        // gnutls-cli ends when the server closes; keep stdin open until then.
        let out = client.wait_with_output().unwrap();
        drop(stdin);
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !log.contains("non-properly terminated"),
            "gnutls-cli {name} against serve: {:?}\n{log}",
            out.status
        );
        assert!(log.contains("Handshake was completed"), "{name}:\n{log}");
    }
}

/// Threads and memory mappings of a process (an exited thread that was never joined keeps its
/// stack and guard page mapped).
fn threads_and_mappings(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|t| t.trim().parse().ok())
        .unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    (threads, maps.lines().count())
}

fn one_session(config: &starttls::ClientConfig, port: u16) {
    let mut conn = starttls::connect(config, Protocol::Smtp, "localhost", port).unwrap();
    conn.quit().unwrap();
}

#[test]
fn finished_session_threads_are_not_kept() {
    let server = serve("smtp", &[]);
    let config = client_config();
    for _ in 0..20 {
        one_session(&config, server.port);
    }
    std::thread::sleep(Duration::from_millis(200));
    let (_, maps_before) = threads_and_mappings(server.child.id());
    for _ in 0..300 {
        one_session(&config, server.port);
    }
    std::thread::sleep(Duration::from_millis(200));
    let (threads, maps_after) = threads_and_mappings(server.child.id());
    // Only the accepting thread is left; 300 kept threads would leave ~600 more mappings.
    assert!(threads <= 2, "{threads} threads after every session ended");
    assert!(
        maps_after < maps_before + 60,
        "mappings grew from {maps_before} to {maps_after} over 300 sessions"
    );
}

#[test]
fn at_most_max_concurrent_sessions_run_and_the_rest_wait() {
    let server = serve("smtp", &["--max-concurrent", "4"]);
    let pid = server.child.id();
    // Ten clients that connect and never speak: four are served (and wait in their greeting),
    // the others wait in the listen queue.
    let idle: Vec<_> = (0..10)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (threads, _) = threads_and_mappings(pid);
    assert!(
        threads <= 1 + 4,
        "{threads} threads for 10 idle connections"
    );
    drop(idle);
    // Once they are gone, an honest client is served.
    std::thread::sleep(Duration::from_millis(300));
    one_session(&client_config(), server.port);
}
