//! The `starttls` command end to end: exit codes, JSON keys, escaping, serve, demo.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_starttls"))
}

/// The test CA as a file, written once: tests run in parallel, and rewriting it while another
/// test's check reads it made that check see a truncated file (a rare exit 2 in any test).
fn ca_file() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("starttls-cli-test-{}-ca.pem", std::process::id()));
        std::fs::write(&path, &pki().ca_pem).unwrap();
        path
    })
    .clone()
}

fn check(args: &[&str]) -> Output {
    bin().arg("check").args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A well-behaved SMTP server (STARTTLS, EHLO inside TLS, QUIT).
fn good_smtp() -> u16 {
    serve(|mut p| {
        p.send(b"220 mx.test ESMTP\r\n");
        p.line();
        p.send(b"250-mx.test\r\n250 STARTTLS\r\n");
        p.line();
        p.send(b"220 go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        t.line();
        t.send(b"250-mx.test\r\n250 AUTH PLAIN\r\n");
        t.line();
        t.send(b"221 bye\r\n");
    })
    .0
}

const JSON_KEYS: [&str; 26] = [
    "ok",
    "url",
    "protocol",
    "host",
    "port",
    "peer_address",
    "server_name",
    "starttls_offered",
    "encrypted",
    "verified",
    "tls_version",
    "cipher_suite",
    "key_exchange",
    "alpn",
    "certificate",
    "chain_length",
    "greeting",
    "capabilities_before",
    "capabilities_after",
    "timings_ms",
    "connect",
    "handshake",
    "total",
    "dane",
    "pin",
    "error",
];

fn assert_valid_json(text: &str) {
    for key in JSON_KEYS {
        assert!(
            text.contains(&format!("\"{key}\":")),
            "key {key} missing: {text}"
        );
    }
    assert_eq!(
        text.trim().lines().count(),
        1,
        "one JSON object on one line: {text}"
    );
    if let Ok(out) = Command::new("python3")
        .args(["-c", "import json,sys; json.loads(sys.stdin.read())"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
    {
        assert!(
            out.status.success(),
            "not valid JSON: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_ok_in_json_with_every_key() {
    let port = good_smtp();
    let ca = ca_file();
    let o = check(&[
        "--json",
        "--ca-file",
        ca.to_str().unwrap(),
        &format!("smtp://localhost:{port}"),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_valid_json(&out);
    for want in [
        "\"ok\":true",
        "\"encrypted\":true",
        "\"verified\":true",
        "\"tls_version\":\"TLSv1.3\"",
        "\"cipher_suite\":\"TLS_AES",
        "\"starttls_offered\":true",
        "\"capabilities_before\":[\"STARTTLS\"]",
        "\"capabilities_after\":[\"AUTH PLAIN\"]",
        "\"dns_names\":[\"localhost\"]",
        "\"dane\":null",
        "\"pin\":null",
        "\"error\":null",
    ] {
        assert!(out.contains(want), "{want} missing: {out}");
    }
}

#[test]
fn exit_codes_and_error_kinds() {
    let ca = ca_file();
    let ca = ca.to_str().unwrap();
    type Script = fn(Peer);
    let cases: [(Script, &[&str], i32, &str, &str); 4] = [
        (
            |mut p| {
                p.send(b"220 mx\r\n");
                p.line();
                p.send(b"250-mx\r\n250 AUTH PLAIN\r\n");
                p.rest();
            },
            &[],
            3,
            "not_offered",
            "STARTTLS_ERR_NOT_OFFERED",
        ),
        (
            |mut p| {
                p.send(b"220 mx\r\n");
                p.line();
                p.send(b"250-mx\r\n250 STARTTLS\r\n");
                p.line();
                p.send(b"454 4.7.0 TLS not available\r\n");
                p.rest();
            },
            &[],
            4,
            "refused",
            "STARTTLS_ERR_REFUSED",
        ),
        (
            |mut p| {
                p.send(b"220 mx\r\n");
                p.line();
                p.send(b"250-mx\r\n250 STARTTLS\r\n");
                p.line();
                p.send(b"220 go\r\n250 forged\r\n");
                // Held open: a close racing the client's ClientHello would be a reset instead.
                p.rest();
            },
            &[],
            6,
            "injection",
            "STARTTLS_ERR_INJECTION",
        ),
        (
            |mut p| {
                p.rest();
            },
            &["--timeout", "0.5"],
            7,
            "timeout",
            "STARTTLS_ERR_TIMEOUT",
        ),
    ];
    for (script, extra, code, kind, name) in cases {
        let (port, _server) = serve(script);
        let url = format!("smtp://localhost:{port}");
        let mut args = vec!["--json", "--ca-file", ca];
        args.extend_from_slice(extra);
        args.push(&url);
        let o = check(&args);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(code), "{kind}: {out}");
        assert_valid_json(&out);
        assert!(out.contains(&format!("\"kind\":\"{kind}\"")), "{out}");
        assert!(out.contains(&format!("\"code\":\"{name}\"")), "{out}");
        assert!(out.contains("\"ok\":false"), "{out}");
    }
}

#[test]
fn refusal_reports_the_server_reply() {
    let (port, _s) = serve(|mut p| {
        p.send(b"220 mx\r\n");
        p.line();
        p.send(b"250-mx\r\n250 STARTTLS\r\n");
        p.line();
        p.send(b"454 4.7.0 TLS not available\r\n");
        p.rest();
    });
    let o = check(&["--json", &format!("smtp://localhost:{port}")]);
    assert!(
        stdout(&o).contains("\"server_reply\":\"454 4.7.0 TLS not available\""),
        "{}",
        stdout(&o)
    );
}

#[test]
fn wrong_name_is_a_certificate_failure_and_insecure_still_reports_it() {
    let ca = ca_file();
    let port = good_smtp();
    let url = format!("smtp://127.0.0.1:{port}");
    let o = check(&[
        "--ca-file",
        ca.to_str().unwrap(),
        "--servername",
        "wrong.example",
        &url,
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    assert!(stdout(&o).contains("STARTTLS_ERR_CERTIFICATE"));
    // The rejected certificate is still reported, with why it was rejected.
    for shown in [
        "certificate subject",
        "days left)",
        "DNS:localhost",
        "chain length",
    ] {
        assert!(stdout(&o).contains(shown), "{shown}: {}", stdout(&o));
    }

    let port = good_smtp();
    let url = format!("smtp://127.0.0.1:{port}");
    let o = check(&[
        "--insecure",
        "--json",
        "--servername",
        "wrong.example",
        &url,
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("\"verified\":false"), "{out}");
    assert!(out.contains("\"verification_problem\":\""), "{out}");
}

#[test]
fn network_failure_is_exit_8_and_usage_is_exit_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = check(&["--json", &format!("smtp://127.0.0.1:{port}")]);
    assert_eq!(o.status.code(), Some(8), "{}", stdout(&o));
    assert!(stdout(&o).contains("\"kind\":\"network\""));

    for bad in [
        &["gopher://x"][..],
        &["smtp://x", "smtp://y"],
        &["--tls-min", "1.1", "smtp://x"],
        &[],
    ] {
        let o = check(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
    }
    let o = check(&["--json", "--timeout", "soon", "smtp://x"]);
    assert_eq!(o.status.code(), Some(2));
    assert_valid_json(&stdout(&o));
    assert!(stdout(&o).contains("\"kind\":\"usage\""));
    assert_eq!(
        bin().arg("frobnicate").output().unwrap().status.code(),
        Some(2)
    );
    assert_eq!(bin().output().unwrap().status.code(), Some(2));
    assert_eq!(
        bin().arg("--version").output().unwrap().status.code(),
        Some(0)
    );
}

#[test]
fn opportunistic_reports_plaintext_with_exit_0() {
    let (port, _s) = serve(|mut p| {
        p.send(b"220 mx\r\n");
        p.line();
        p.send(b"250-mx\r\n250 SIZE 100\r\n");
        p.rest();
    });
    let o = check(&[
        "--opportunistic",
        "--json",
        &format!("smtp://localhost:{port}"),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("\"encrypted\":false") && out.contains("\"starttls_offered\":false"),
        "{out}"
    );
}

#[test]
fn server_text_is_escaped_and_verbose_shows_both_directions() {
    let (port, _s) = serve(|mut p| {
        p.send(b"220 mx \x1b[2J\x1b]0;pwned\x07 ESMTP\r\n");
        p.line();
        p.send(b"250-mx\r\n250 STARTTLS\r\n");
        p.line();
        p.send(b"220 go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        t.line();
        t.send(b"250 mx\r\n");
        t.line();
        t.send(b"221 bye\r\n");
    });
    let ca = ca_file();
    let o = check(&[
        "-v",
        "--ca-file",
        ca.to_str().unwrap(),
        &format!("smtp://localhost:{port}"),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        !o.stdout.contains(&0x1b) && !o.stdout.contains(&0x07),
        "raw control bytes reached the terminal"
    );
    assert!(out.contains("\\u{1b}[2J"), "{out}");
    assert!(out.contains("C: EHLO"), "{out}");
    assert!(out.contains("S: 220 go"), "{out}");
    assert!(out.contains("C: [TLS] EHLO"), "{out}");
    assert!(out.contains("verdict                 OK"), "{out}");
}

#[test]
fn serve_then_check_against_it() {
    let mut server = bin()
        .args(["serve", "--protocol", "imap", "--max-connections", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let ca_line = lines.next().unwrap().unwrap();
    let ca = ca_line
        .strip_prefix("throw-away CA certificate: ")
        .expect("CA path")
        .to_owned();
    let serving = lines.next().unwrap().unwrap();
    let addr = serving
        .split(" on ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let port = addr.rsplit(':').next().unwrap();
    let o = check(&["--ca-file", &ca, &format!("imap://localhost:{port}")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(server.wait().unwrap().success());
    let log = lines.next().unwrap().unwrap();
    assert!(
        log.contains("protocol=imap outcome=ok tls=TLSv1.3"),
        "{log}"
    );
}

#[test]
fn demo_passes_everything() {
    let o = bin().arg("demo").output().unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
    assert!(
        out.contains("PASS refused with STARTTLS_ERR_INJECTION"),
        "{out}"
    );
}

fn smtp_with_auth(reply: &'static [u8]) -> u16 {
    serve(move |mut p| {
        p.send(b"220 mx.test ESMTP\r\n");
        p.line();
        p.send(b"250-mx.test\r\n250 STARTTLS\r\n");
        p.line();
        p.send(b"220 go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        t.line();
        t.send(b"250-mx.test\r\n250 AUTH PLAIN\r\n");
        let auth = t.line();
        assert_eq!(auth, "AUTH PLAIN AGFsaWNlAHNlY3JldA==");
        t.send(reply);
        t.line();
        t.send(b"221 bye\r\n");
    })
    .0
}

#[test]
fn check_with_user_reports_authentication_in_json_and_exit_codes() {
    let ca = ca_file();
    let port = smtp_with_auth(b"235 2.7.0 Authentication successful\r\n");
    let o = bin()
        .args([
            "check",
            "--json",
            "--ca-file",
            ca.to_str().unwrap(),
            "--user",
            "alice",
        ])
        .arg(format!("submission://localhost:{port}"))
        .env("STARTTLS_PASSWORD", "secret")
        .output()
        .unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains(r#""auth":{"mechanism":"PLAIN","channel_binding":null,"ok":true,"server_reply":"235 2.7.0 Authentication successful"}"#), "{out}");
    assert!(
        !out.contains("secret") && !out.contains("AGFsaWNlAHNlY3JldA"),
        "{out}"
    );

    let port = smtp_with_auth(b"535 5.7.8 Authentication credentials invalid\r\n");
    let pw = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("starttls-cli-pw-{}", std::process::id()));
    std::fs::write(&pw, "secret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = bin()
        .args([
            "check",
            "--json",
            "--ca-file",
            ca.to_str().unwrap(),
            "--user",
            "alice",
            "--password-file",
        ])
        .arg(&pw)
        .arg(format!("submission://localhost:{port}"))
        .env_remove("STARTTLS_PASSWORD")
        .output()
        .unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(10), "{out}");
    assert!(
        out.contains(r#""kind":"auth""#) && out.contains(r#""ok":false"#),
        "{out}"
    );
    assert!(out.contains("535 5.7.8"), "{out}");

    // Never from the command line, and never without a password source.
    let o = check(&["--user", "alice", "--password", "secret", "smtp://x"]);
    assert_eq!(o.status.code(), Some(2));
    let o = bin()
        .args(["check", "--user", "alice", "smtp://x"])
        .env_remove("STARTTLS_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn password_values_are_never_echoed_in_usage_errors() {
    for args in [
        &["check", "--password=hunter2", "smtp://127.0.0.1:1"][..],
        &[
            "check",
            "--json",
            "--password=hunter2",
            "smtp://127.0.0.1:1",
        ],
        &["check", "--password", "hunter2", "smtp://127.0.0.1:1"],
        &["check", "--passwd=hunter2", "smtp://127.0.0.1:1"],
        &["check", "--json", "--pass=hunter2", "smtp://127.0.0.1:1"],
    ] {
        let o = check(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let all = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
        assert!(
            !all.contains("hunter2"),
            "{args:?} echoed the secret: {all}"
        );
    }
}

#[test]
fn a_password_file_readable_by_others_is_refused_naming_its_mode() {
    let pw = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("starttls-cli-pw-mode-{}", std::process::id()));
    std::fs::write(&pw, "hunter2\n").unwrap();
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(mode)).unwrap();
        let o = bin()
            .args(["check", "--user", "alice", "--password-file"])
            .arg(&pw)
            .arg("smtp://127.0.0.1:1")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "mode {mode:o}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("mode {mode:03o}")), "{err}");
        assert!(!err.contains("hunter2"));
    }
    // Owner-only passes the check (and then fails to connect: exit 8, not 2).
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = bin()
        .args([
            "check",
            "--timeout",
            "2",
            "--user",
            "alice",
            "--password-file",
        ])
        .arg(&pw)
        .arg("smtp://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_file(&pw);
}

#[test]
fn insecure_with_user_is_a_usage_error_that_says_why() {
    let o = bin()
        .args([
            "check",
            "--insecure",
            "--user",
            "alice",
            "smtp://127.0.0.1:1",
        ])
        .env("STARTTLS_PASSWORD", "hunter2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--insecure cannot be combined with --user"),
        "{err}"
    );
    let o = bin()
        .args([
            "check",
            "--json",
            "--insecure",
            "--user",
            "alice",
            "smtp://127.0.0.1:1",
        ])
        .env("STARTTLS_PASSWORD", "hunter2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("\"kind\":\"usage\""), "{}", stdout(&o));
}

#[test]
fn check_logs_in_with_a_token_file_and_refuses_loose_files_and_bad_combinations() {
    let ca = ca_file();
    let token = "ya29.cli-secret-token";
    let (port, server) = serve(move |mut p| {
        p.send(b"220 mx.test ESMTP\r\n");
        p.line();
        p.send(b"250-mx.test\r\n250 STARTTLS\r\n");
        p.line();
        p.send(b"220 go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        t.line();
        t.send(b"250-mx.test\r\n250 AUTH PLAIN XOAUTH2\r\n");
        let auth = t.line();
        t.send(b"235 2.7.0 Accepted\r\n");
        t.line();
        t.send(b"221 bye\r\n");
        auth
    });
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("starttls-cli-token-{}", std::process::id()));
    std::fs::write(&file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = bin()
        .args(["check", "--json", "-v", "--ca-file", ca.to_str().unwrap()])
        .args(["--user", "alice", "--oauth2-token-file"])
        .arg(&file)
        .arg(format!("submission://localhost:{port}"))
        .output()
        .unwrap();
    let out = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains(r#""mechanism":"XOAUTH2""#), "{out}");
    assert!(
        !out.contains(token) && !out.contains("auth=Bearer"),
        "{out}"
    );
    assert!(server.join().unwrap().starts_with("AUTH XOAUTH2 "));

    // A token file others can read is refused before connecting, as a password file is.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = check(&[
        "--user",
        "alice",
        "--oauth2-token-file",
        file.to_str().unwrap(),
        "smtp://x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains("chmod 600")
            || String::from_utf8_lossy(&o.stderr).contains("chmod 600")
    );
    for args in [
        &["--oauth2-token-file", file.to_str().unwrap(), "smtp://x"][..],
        &["--sasl-external", "smtp://x"],
        &["--sasl-external", "--user", "alice", "smtp://x"],
        &[
            "--user",
            "alice",
            "--password-file",
            file.to_str().unwrap(),
            "--oauth2-token-file",
            file.to_str().unwrap(),
            "smtp://x",
        ],
    ] {
        let o = check(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stdout(&o));
    }
    let _ = std::fs::remove_file(&file);
}

/// The test certificate is valid until 4096: about 756,000 days.
#[test]
fn warn_and_crit_days_exit_11_and_nagios_speaks_the_monitoring_plugins_form() {
    let ca = ca_file();
    let run = |args: &[&str]| {
        let port = good_smtp();
        let mut all = vec!["--ca-file", ca.to_str().unwrap()];
        all.extend_from_slice(args);
        let url = format!("smtp://localhost:{port}");
        all.push(&url);
        let o = check(&all);
        (o.status.code(), stdout(&o))
    };
    // Within the window: exit 11, kind expiring, days_left reported.
    let (code, out) = run(&["--json", "--warn-days", "1000000"]);
    assert_eq!(code, Some(11), "{out}");
    assert_valid_json(&out);
    assert!(out.contains(r#""kind":"expiring""#), "{out}");
    assert!(out.contains(r#""days_left":7"#), "{out}");
    // Outside it: a normal pass, days_left still there, and the crypto details.
    let (code, out) = run(&["--json", "--warn-days", "30", "--crit-days", "7"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(r#""days_left":"#), "{out}");
    assert!(out.contains(r#""public_key":"ECDSA P-256""#), "{out}");
    assert!(
        out.contains(r#""signature_algorithm":"ecdsa-with-SHA256""#),
        "{out}"
    );
    assert!(out.contains(r#""key_exchange":"X25519"#), "{out}");
    let (code, out) = run(&["--warn-days", "1000000"]);
    assert_eq!(code, Some(11), "{out}");
    assert!(
        out.contains("days left") && out.contains("--warn-days 1000000"),
        "{out}"
    );

    // --nagios: one line first, exit 0 / 1 / 2.
    for (args, expected_code, state) in [
        (&["--nagios"][..], 0, "STARTTLS OK - "),
        (
            &["--nagios", "--warn-days", "1000000"],
            1,
            "STARTTLS WARNING - ",
        ),
        (
            &[
                "--nagios",
                "--warn-days",
                "1000000",
                "--crit-days",
                "1000000",
            ],
            2,
            "STARTTLS CRITICAL - ",
        ),
    ] {
        let (code, out) = run(args);
        assert_eq!(code, Some(expected_code), "{args:?}: {out}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.starts_with(state), "{out}");
        assert!(
            out.contains(" | time=") && out.contains("s days_left="),
            "{out}"
        );
    }
    // A failed check is CRITICAL; a usage error UNKNOWN.
    let refused = serve(|mut p| {
        p.send(b"220 mx.test ESMTP\r\n");
        p.line();
        p.send(b"250 mx.test\r\n");
    })
    .0;
    let o = check(&["--nagios", &format!("smtp://localhost:{refused}")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).starts_with("STARTTLS CRITICAL - "),
        "{}",
        stdout(&o)
    );
    for bad in [
        &["--nagios", "--warn-days", "soon", "smtp://x"][..],
        &["--nagios", "--json", "smtp://x"],
        &[
            "--nagios",
            "--warn-days",
            "5",
            "--crit-days",
            "9",
            "smtp://x",
        ],
    ] {
        let o = check(bad);
        assert_eq!(o.status.code(), Some(3), "{bad:?}");
        assert!(
            stdout(&o).starts_with("STARTTLS UNKNOWN - "),
            "{}",
            stdout(&o)
        );
    }
}

#[test]
fn tls_max_12_negotiates_tls_12() {
    let ca = ca_file();
    let port = good_smtp();
    let o = check(&[
        "--json",
        "--tls-max",
        "1.2",
        "--ca-file",
        ca.to_str().unwrap(),
        &format!("smtp://localhost:{port}"),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains(r#""tls_version":"TLSv1.2""#), "{out}");
    for bad in [
        &["--tls-max", "1.1", "smtp://x"][..],
        &["--tls-max", "1.2", "--tls-min", "1.3", "smtp://x"],
    ] {
        assert_eq!(check(bad).status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn a_login_on_a_protocol_without_one_is_a_usage_error_before_connecting() {
    // Nothing listens on port 9 here: a usage error must come before any connect.
    for url in [
        "https://localhost:9",
        "tls://localhost:9",
        "http://localhost:9",
    ] {
        let o = bin()
            .args(["check", "--json", "--user", "alice", url])
            .env("STARTTLS_PASSWORD", "secret")
            .output()
            .unwrap();
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(2), "{url}: {out}");
        assert!(
            out.contains(r#""kind":"usage""#) && out.contains("no login step"),
            "{out}"
        );
    }
}

#[test]
fn sslkeylogfile_gets_the_session_keys_and_nothing_without_it() {
    let ca = ca_file();
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("starttls-keylog-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let port = good_smtp();
    let o = bin()
        .args(["check", "--ca-file", ca.to_str().unwrap()])
        .arg(format!("smtp://localhost:{port}"))
        .env("SSLKEYLOGFILE", &file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let log = std::fs::read_to_string(&file).expect("the key log was written");
    // NSS key log format, TLS 1.3: label, client random, secret, per line.
    assert!(
        log.lines()
            .any(|l| l.starts_with("CLIENT_TRAFFIC_SECRET_0 ")),
        "{log}"
    );
    assert!(log.lines().all(|l| l.split(' ').count() == 3), "{log}");
    let _ = std::fs::remove_file(&file);
    let port = good_smtp();
    let o = bin()
        .args(["check", "--ca-file", ca.to_str().unwrap()])
        .arg(format!("smtp://localhost:{port}"))
        .env_remove("SSLKEYLOGFILE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(!file.exists());
}

/// An SMTP server that takes a message after the upgrade: returns what it received in DATA,
/// or refuses the second recipient when `refuse` is set.
fn smtp_taking_mail(refuse: bool) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    serve(move |mut p| {
        p.send(b"220 mx.test ESMTP\r\n");
        p.line();
        p.send(b"250-mx.test\r\n250 STARTTLS\r\n");
        p.line();
        p.send(b"220 go\r\n");
        let mut t = p.tls(server_config(&pki().server));
        let mut seen = vec![t.line()];
        t.send(b"250 mx.test\r\n");
        for reply in [&b"250 2.1.0 ok\r\n"[..], b"250 2.1.5 ok\r\n"] {
            seen.push(t.line());
            t.send(reply);
        }
        seen.push(t.line());
        if refuse {
            t.send(b"550 5.1.1 <nobody@example.org>: no such user\r\n");
            seen.push(t.line()); // RSET
            t.send(b"250 2.0.0 ok\r\n");
        } else {
            t.send(b"250 2.1.5 ok\r\n");
            seen.push(t.line());
            t.send(b"354 go ahead\r\n");
            loop {
                let line = t.line();
                seen.push(line.clone());
                if line == "." || line.is_empty() && seen.len() > 40 {
                    break;
                }
            }
            t.send(b"250 2.0.0 Ok: queued as 4ABC\r\n");
        }
        seen.push(t.line());
        t.send(b"221 bye\r\n");
        seen
    })
}

#[test]
fn a_test_message_after_the_upgrade_is_queued_or_its_refusal_reported() {
    let ca = ca_file();
    let args = |port: u16| {
        vec![
            "--json".to_owned(),
            "--ca-file".into(),
            ca.to_str().unwrap().into(),
            "--mail-from".into(),
            "alice@example.org".into(),
            "--rcpt-to".into(),
            "bob@example.org".into(),
            "--rcpt-to".into(),
            "nobody@example.org".into(),
            format!("smtp://localhost:{port}"),
        ]
    };
    let (port, server) = smtp_taking_mail(false);
    let o = bin().arg("check").args(args(port)).output().unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(r#""mail":{"queued":true,"server_reply":"250 2.0.0 Ok: queued as 4ABC"}"#),
        "{out}"
    );
    let seen = server.join().unwrap();
    assert_eq!(seen[1], "MAIL FROM:<alice@example.org>");
    assert_eq!(seen[2], "RCPT TO:<bob@example.org>");
    assert_eq!(seen[3], "RCPT TO:<nobody@example.org>");
    assert_eq!(seen[4], "DATA");
    assert!(seen.iter().any(|l| l.starts_with("Date: ")), "{seen:?}");
    assert!(
        seen.iter()
            .any(|l| l == "To: <bob@example.org>, <nobody@example.org>")
    );
    assert_eq!(seen[seen.len() - 2], ".");

    // A refused recipient: exit 4, kind refused, the reply; the envelope is reset.
    let (port, server) = smtp_taking_mail(true);
    let o = bin().arg("check").args(args(port)).output().unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(
        out.contains(r#""kind":"refused""#) && out.contains("550 5.1.1"),
        "{out}"
    );
    assert!(out.contains(r#""queued":false"#), "{out}");
    assert_eq!(server.join().unwrap()[4], "RSET");

    // Usage: not an SMTP protocol, half an envelope, a forged address.
    for bad in [
        &[
            "--mail-from",
            "a@x",
            "--rcpt-to",
            "b@y",
            "imap://localhost:9",
        ][..],
        &["--mail-from", "a@x", "smtp://localhost:9"],
        &["--rcpt-to", "b@y", "smtp://localhost:9"],
        &[
            "--mail-from",
            "a@x>\r\nRCPT TO:<evil@x",
            "--rcpt-to",
            "b@y",
            "smtp://localhost:9",
        ],
    ] {
        assert_eq!(check(bad).status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn each_subcommand_has_its_own_help_and_typos_get_a_suggestion() {
    for (sub, must) in [
        ("check", "--warn-days"),
        ("serve", "--max-concurrent"),
        ("demo", "loopback"),
        ("completions", "SHELL"),
    ] {
        let o = bin().args([sub, "--help"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{sub}");
        let out = stdout(&o);
        assert!(out.contains(must), "{sub} --help: {out}");
        assert!(
            out.contains(&format!("starttls {sub}")),
            "{sub} --help: {out}"
        );
    }
    // Only check's help carries check's options and the exit codes.
    let serve_help = stdout(&bin().args(["serve", "--help"]).output().unwrap());
    assert!(!serve_help.contains("--warn-days"), "{serve_help}");
    assert!(
        stdout(&bin().args(["check", "--help"]).output().unwrap())
            .contains("11 certificate expiring")
    );

    let o = check(&["--ca-fil", "ca.pem", "smtp://x"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("'--ca-file'"), "{err}");
    // A typo near the refused --password is never answered with "--password".
    let o = check(&["--passwd", "hunter2", "smtp://x"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        !err.contains("'--password'") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn a_double_dash_ends_the_options() {
    // After `--`, "--json" would be the URL: here the URL is the only word, and still checked.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("smtp://127.0.0.1:{port}");
    let o = check(&["--json", "--", &url]);
    assert_eq!(o.status.code(), Some(8), "{}", stdout(&o));
    assert!(stdout(&o).contains("\"kind\":\"network\""));
    // An option after `--` is a positional, and a second URL is a usage error.
    let o = check(&["--", &url, "--json"]);
    assert_eq!(o.status.code(), Some(2));
    // `--password` after `--` is a word, not the refused option: it becomes the (bad) URL.
    let o = check(&["--", "--password=hunter2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("ps would show it"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn completions_print_for_three_shells_and_bash_accepts_its_script() {
    for (shell, must) in [
        ("bash", "complete -F _starttls"),
        ("zsh", "#compdef starttls"),
        ("fish", "complete -c starttls"),
    ] {
        let o = bin().args(["completions", shell]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{shell}");
        let script = stdout(&o);
        assert!(script.contains(must), "{shell}: {script}");
        assert!(
            script.contains("--warn-days"),
            "{shell} lacks check's options"
        );
        // (zsh's script lists even hidden commands under `help`; bash's and fish's do not.)
        if shell != "zsh" {
            assert!(
                !script.contains("manpages"),
                "{shell} completes a hidden command"
            );
        }
    }
    // bash loads the script and registers the function (bash is always there on Debian).
    let script = stdout(&bin().args(["completions", "bash"]).output().unwrap());
    let o = Command::new("bash")
        .args(["-c", "eval \"$0\" && complete -p starttls"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("_starttls"), "{}", stdout(&o));
    // An unknown shell is a usage error naming the ones there are.
    let o = bin().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bash"));
}

#[test]
fn manual_pages_are_written_for_the_command_and_each_subcommand() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("starttls-cli-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = bin().arg("manpages").arg(&dir).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "starttls-check.1",
            "starttls-completions.1",
            "starttls-demo.1",
            "starttls-mx.1",
            "starttls-serve.1",
            "starttls-tunnel.1",
            "starttls.1"
        ]
    );
    let check_page = std::fs::read_to_string(dir.join("starttls-check.1")).unwrap();
    assert!(
        check_page.contains("\n.TH starttls-check 1 "),
        "{check_page}"
    );
    for must in [
        "warn\\-days",
        ".SH \"EXIT STATUS\"",
        "STARTTLS_PASSWORD",
        "SSLKEYLOGFILE",
    ] {
        assert!(check_page.contains(must), "{must}: {check_page}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The server's key digest (DANE 3 1 1) in hex, and its pin in base64.
fn server_key_digest() -> (String, String) {
    let pin = starttls::pin_sha256(&pki().server.chain[0]).unwrap();
    let hex = unbase64(&pin).iter().map(|b| format!("{b:02x}")).collect();
    (hex, pin)
}

#[test]
fn tlsa_authenticates_without_a_ca_and_a_wrong_record_exits_5_naming_it() {
    let (digest, pin) = server_key_digest();
    // No --ca-file: the built-in roots do not know the test CA, so the record decides; the
    // name checked is not the certificate's either (DANE-EE).
    let port = good_smtp();
    let record = format!("3 1 1 {digest}");
    let o = check(&[
        "--json",
        "--tlsa",
        &record,
        "--servername",
        "mx.wrong.example",
        &format!("smtp://127.0.0.1:{port}"),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_valid_json(&out);
    assert!(
        out.contains(&format!(
            "\"dane\":{{\"records\":[\"{record}\"],\"matched\":\"{record}\",\"no_usable_records\":false,\"lookup\":null}}"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("\"pin_sha256\":\"{pin}\"")), "{out}");

    let port = good_smtp();
    let wrong = format!("3 1 1 {}", "ab".repeat(32));
    let o = check(&["--tlsa", &wrong, &format!("smtp://localhost:{port}")]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(5), "{out}");
    for shown in [
        "no TLSA record authenticated",
        "3 1 1 abababab",
        "NOT authenticated by the 1 TLSA record(s)",
        "certificate subject",
    ] {
        assert!(out.contains(shown), "{shown}: {out}");
    }

    // Only records SMTP cannot use: encrypted, not authenticated, not a pass.
    let port = good_smtp();
    let o = check(&[
        "--json",
        "--tlsa",
        &format!("1 1 1 {digest}"),
        &format!("smtp://localhost:{port}"),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(out.contains("\"no_usable_records\":true"), "{out}");
    assert!(out.contains("RFC 7672"), "{out}");
}

#[test]
fn pins_pass_alone_or_fail_with_exit_5_and_pin_false() {
    let (_, pin) = server_key_digest();
    let port = good_smtp();
    let o = check(&[
        "--json",
        "--pin-sha256",
        &format!("sha256//{pin}"),
        "--pin-only",
        "--servername",
        "any.name.example",
        &format!("smtp://127.0.0.1:{port}"),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("\"pin\":true"), "{out}");

    let port = good_smtp();
    let ca = ca_file();
    let other = format!("{}=", "A".repeat(43));
    let o = check(&[
        "--json",
        "--ca-file",
        ca.to_str().unwrap(),
        "--pin-sha256",
        &other,
        &format!("smtp://localhost:{port}"),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(out.contains("\"pin\":false"), "{out}");
    assert!(out.contains(&format!("its pin is sha256//{pin}")), "{out}");
}

#[test]
fn bad_records_pins_and_combinations_are_usage_errors() {
    for args in [
        &["--tlsa", "3 1 1 zz", "smtp://localhost:1"][..],
        &["--tlsa", "3 1", "smtp://localhost:1"],
        // Typos that could never match: refused, not silently ignored.
        &["--tlsa", "3 1 1 abcd", "smtp://localhost:1"],
        &["--tlsa", "9 1 1 00", "smtp://localhost:1"],
        &["--pin-only", "smtp://localhost:1"],
        &["--insecure", "--tlsa", "3 1 1 00", "smtp://localhost:1"],
        &["--insecure", "--pin-sha256", "x", "smtp://localhost:1"],
        &["--pin-sha256", "not a pin", "smtp://localhost:1"],
    ] {
        let o = check(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stdout(&o));
    }
}

/// A validating resolver as the stub sees one: answers A 127.0.0.1 and the given TLSA record
/// for every name, with AD set as told, or SERVFAIL.
fn scripted_resolver(tlsa: Option<Vec<u8>>, ad: bool, servfail: bool) -> std::net::SocketAddr {
    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
    use hickory_proto::rr::rdata::{A, TLSA};
    use hickory_proto::rr::{RData, Record, RecordType};
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        udp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut m = Message::response(q.metadata.id, OpCode::Query);
            m.add_query(q.queries[0].clone());
            m.metadata.authentic_data = ad;
            let name = q.queries[0].name().clone();
            if servfail {
                m.metadata.response_code = ResponseCode::ServFail;
            } else if q.queries[0].query_type() == RecordType::A {
                m.add_answer(Record::from_rdata(
                    name,
                    60,
                    RData::A(A(std::net::Ipv4Addr::LOCALHOST)),
                ));
            } else if let (RecordType::TLSA, Some(data)) = (q.queries[0].query_type(), &tlsa) {
                m.add_answer(Record::from_rdata(
                    name,
                    60,
                    RData::TLSA(TLSA::new(
                        CertUsage::from(3),
                        Selector::from(1),
                        Matching::from(1),
                        data.clone(),
                    )),
                ));
            }
            udp.send_to(&m.to_vec().unwrap(), from).unwrap();
        }
    });
    addr
}

#[test]
fn dane_looks_the_records_up_trusts_only_validated_answers_and_fails_closed() {
    let (digest, _) = server_key_digest();
    let key: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    // Validated and matching: authenticated by DANE, the name and the CA unknown to the cert.
    let resolver = scripted_resolver(Some(key.clone()), true, false);
    let port = good_smtp();
    let o = check(&[
        "--json",
        "--dane",
        "--resolver",
        &resolver.to_string(),
        &format!("smtp://mx.dane.example:{port}"),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!("\"matched\":\"3 1 1 {digest}\"")),
        "{out}"
    );
    assert!(out.contains("\"addresses\":[\"127.0.0.1\"]"), "{out}");
    assert!(out.contains("\"applies\":true"), "{out}");

    // The same record without AD: no DANE; the CAs decide (and know nothing of it here).
    let resolver = scripted_resolver(Some(key), false, false);
    let port = good_smtp();
    let o = check(&[
        "--json",
        "--dane",
        "--resolver",
        &resolver.to_string(),
        &format!("smtp://mx.dane.example:{port}"),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(out.contains("\"applies\":false"), "{out}");
    assert!(out.contains("\"kind\":\"certificate\""), "{out}");

    // SERVFAIL (a bogus zone): fails closed, nothing sent to the server.
    let resolver = scripted_resolver(None, false, true);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let o = check(&[
        "--dane",
        "--resolver",
        &resolver.to_string(),
        &format!("smtp://mx.dane.example:{port}"),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(
        out.contains("SERVFAIL") || out.contains("Server Failure"),
        "{out}"
    );
    assert!(listener.accept().is_err(), "a connection was made");

    // --resolver needs --dane; --dane needs a name.
    assert_eq!(
        check(&["--resolver", "127.0.0.1", "smtp://x:1"])
            .status
            .code(),
        Some(2)
    );
    let o = check(&["--dane", "--resolver", "127.0.0.1:9", "smtp://127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
}
