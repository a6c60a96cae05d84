//! `starttls check --audit`: every finding proved by a scripted server with that one flaw, a
//! scripted server without flaws audited clean, and the library's own server side (`serve`)
//! audited clean for every protocol the probes speak.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rustls::{ServerConnection, StreamOwned};

/// One flaw at a time (all false: a server that does everything right).
#[derive(Clone, Copy, Default, Debug)]
struct Flaws {
    /// Runs commands pipelined after STARTTLS inside TLS (CVE-2011-0411).
    injection: bool,
    /// Answers AUTH before TLS with a challenge.
    plaintext_login: bool,
    /// Opens a mail transaction before TLS.
    plaintext_mail: bool,
    /// Answers a plaintext command sent where the ClientHello goes.
    plaintext_after_go_ahead: bool,
    /// Still lists STARTTLS in EHLO inside TLS.
    starttls_inside_tls: bool,
    /// Says go to STARTTLS inside TLS.
    second_starttls: bool,
    /// Answers a TLS 1.0 ClientHello with a TLS 1.0 ServerHello.
    tls10: bool,
    /// Greets a client that spoke first and then says go to its STARTTLS.
    early_talker: bool,
}

/// An SMTP server with `flaws`, serving connections one after another until the test ends.
fn smtp_server(flaws: Flaws) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let _ = session(flaws, sock);
        }
    });
    port
}

fn session(flaws: Flaws, sock: TcpStream) -> std::io::Result<()> {
    // A greet pause, as Postfix's postscreen: a client that talks first is an early talker.
    std::thread::sleep(Duration::from_millis(150));
    let mut probe = [0u8; 1];
    sock.set_nonblocking(true)?;
    let early = matches!(sock.peek(&mut probe), Ok(n) if n > 0);
    sock.set_nonblocking(false)?;
    let mut out = sock.try_clone()?;
    if early && !flaws.early_talker {
        out.write_all(b"554 5.5.1 Error: talking before the greeting\r\n")?;
        return Ok(());
    }
    out.write_all(b"220 mx.test ESMTP\r\n")?;
    // Buffered reading, as a careless server does: pipelined bytes sit in the buffer.
    let mut reader = BufReader::new(sock.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                let auth = if flaws.plaintext_login {
                    "250-AUTH PLAIN\r\n"
                } else {
                    ""
                };
                out.write_all(
                    format!("250-mx.test\r\n250-PIPELINING\r\n{auth}250 STARTTLS\r\n").as_bytes(),
                )?;
            }
            "AUTH" if flaws.plaintext_login => {
                out.write_all(b"334 \r\n")?;
                let mut cancel = String::new();
                reader.read_line(&mut cancel)?;
                out.write_all(b"501 5.7.0 Authentication aborted\r\n")?;
            }
            "AUTH" => out.write_all(b"530 5.7.0 Must issue a STARTTLS command first\r\n")?,
            "MAIL" if flaws.plaintext_mail => out.write_all(b"250 2.1.0 Ok\r\n")?,
            "MAIL" => out.write_all(b"530 5.7.0 Must issue a STARTTLS command first\r\n")?,
            "RSET" | "NOOP" => out.write_all(b"250 2.0.0 Ok\r\n")?,
            "QUIT" => {
                out.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            "STARTTLS" => {
                out.write_all(b"220 2.0.0 Ready to start TLS\r\n")?;
                let pipelined = reader.buffer().to_vec();
                return after_go_ahead(flaws, sock, pipelined);
            }
            _ => out.write_all(b"502 5.5.2 Error: command not recognized\r\n")?,
        }
    }
}

fn after_go_ahead(flaws: Flaws, sock: TcpStream, pipelined: Vec<u8>) -> std::io::Result<()> {
    let mut first = [0u8; 16];
    let n = sock.peek(&mut first)?;
    if n > 0 && first[0] != 0x16 {
        if flaws.plaintext_after_go_ahead {
            (&sock).write_all(b"250 2.0.0 Ok\r\n")?;
        }
        return Ok(());
    }
    // A ClientHello record: its hello version sits at bytes 9-10.
    if flaws.tls10 && n >= 11 && first[9..11] == [3, 1] {
        let mut hello = vec![3, 1];
        hello.extend_from_slice(&[0x42; 32]);
        hello.extend_from_slice(&[0, 0xc0, 0x13, 0]);
        let mut record = vec![
            22,
            3,
            1,
            0,
            (hello.len() + 4) as u8,
            2,
            0,
            0,
            hello.len() as u8,
        ];
        record.extend_from_slice(&hello);
        (&sock).write_all(&record)?;
        return Ok(());
    }
    let mut conn = ServerConnection::new(server_config(&pki().server)).unwrap();
    let mut sock = sock;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    let mut tls = StreamOwned::new(conn, sock);
    if flaws.injection {
        for line in String::from_utf8_lossy(&pipelined).lines() {
            if line.eq_ignore_ascii_case("NOOP") {
                tls.write_all(b"250 2.0.0 Ok (injected)\r\n")?;
            }
        }
        tls.flush()?;
    }
    loop {
        let line = read_line(&mut tls);
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "" => return Ok(()),
            "EHLO" => {
                let starttls = if flaws.starttls_inside_tls {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                tls.write_all(format!("250-mx.test\r\n{starttls}250 AUTH PLAIN\r\n").as_bytes())?;
            }
            "STARTTLS" if flaws.second_starttls => {
                tls.write_all(b"220 2.0.0 Ready to start TLS\r\n")?;
                tls.flush()?;
                return Ok(());
            }
            "STARTTLS" => tls.write_all(b"554 5.5.1 Error: TLS already active\r\n")?,
            "NOOP" | "RSET" => tls.write_all(b"250 2.0.0 Ok\r\n")?,
            "QUIT" => {
                tls.write_all(b"221 2.0.0 Bye\r\n")?;
                tls.conn.send_close_notify();
                tls.flush()?;
                return Ok(());
            }
            _ => tls.write_all(b"502 5.5.2 Error: command not recognized\r\n")?,
        }
        tls.flush()?;
    }
}

fn ca_file() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("starttls-audit-ca-{}.pem", std::process::id()));
    static WRITTEN: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    WRITTEN.get_or_init(|| std::fs::write(&path, &pki().ca_pem).unwrap());
    path
}

/// `starttls check --audit --json URL`: the exit code and the audit's findings as
/// (id, severity) pairs, with the whole JSON for messages.
fn audit(url: &str) -> (i32, Vec<(String, String)>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_starttls"))
        .args([
            "check",
            "--audit",
            "--json",
            "--timeout",
            "5",
            "--servername",
            "localhost",
        ])
        .arg("--ca-file")
        .arg(ca_file())
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    let findings = findings(&json);
    (out.status.code().unwrap_or(-1), findings, json)
}

/// The (id, severity) of each finding in the JSON, read by Python's json module (the object
/// must parse, and `audit` must be there).
fn findings(json: &str) -> Vec<(String, String)> {
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import json,sys\nfor f in json.load(sys.stdin)['audit']['findings']: print(f['id'], f['severity'])",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin.take().unwrap().write_all(json.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "not an audit report: {json}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, s)| (id.to_owned(), s.to_owned()))
        .collect()
}

fn above_info(f: &[(String, String)]) -> Vec<&str> {
    f.iter()
        .filter(|(_, s)| s != "info")
        .map(|(id, _)| id.as_str())
        .collect()
}

#[test]
fn a_server_without_flaws_audits_clean() {
    let port = smtp_server(Flaws::default());
    let (code, found, json) = audit(&format!("smtp://127.0.0.1:{port}"));
    assert_eq!(above_info(&found), Vec::<&str>::new(), "{json}");
    assert_eq!(code, 0, "{json}");
    // The facts are still reported: the groups and suites, the login inside TLS only.
    for id in ["tls-groups", "tls-cipher-suites", "login-only-inside-tls"] {
        assert!(found.iter().any(|(f, _)| f == id), "{id}: {json}");
    }
    assert!(!json.contains("\"outcome\":\"error\""), "{json}");
}

#[test]
fn each_flaw_is_found_with_the_servers_words() {
    let flaw = Flaws::default;
    let cases: [(Flaws, &str, &[&str], &str); 7] = [
        (
            Flaws {
                injection: true,
                ..flaw()
            },
            "smtp",
            &["command-injection"],
            "250 2.0.0 Ok (injected)",
        ),
        (
            Flaws {
                plaintext_login: true,
                ..flaw()
            },
            "smtp",
            &["login-advertised-before-tls", "plaintext-login-accepted"],
            "\"evidence\":\"334 \"",
        ),
        (
            Flaws {
                plaintext_mail: true,
                ..flaw()
            },
            "submission",
            &["plaintext-mail-accepted"],
            "250 2.1.0 Ok",
        ),
        (
            Flaws {
                plaintext_after_go_ahead: true,
                ..flaw()
            },
            "smtp",
            &["plaintext-after-go-ahead"],
            "\"evidence\":\"250 2.0.0 Ok\"",
        ),
        (
            Flaws {
                starttls_inside_tls: true,
                ..flaw()
            },
            "smtp",
            &["starttls-offered-inside-tls"],
            "\"evidence\":\"STARTTLS AUTH PLAIN\"",
        ),
        (
            Flaws {
                second_starttls: true,
                ..flaw()
            },
            "smtp",
            &["second-starttls-accepted"],
            "220 2.0.0 Ready",
        ),
        (
            Flaws {
                tls10: true,
                ..flaw()
            },
            "smtp",
            &["tls1.0-accepted"],
            "ServerHello TLS 1.0",
        ),
    ];
    for (flaws, scheme, ids, words) in cases {
        let port = smtp_server(flaws);
        let (code, found, json) = audit(&format!("{scheme}://127.0.0.1:{port}"));
        assert_eq!(above_info(&found), ids, "{flaws:?}: {json}");
        assert_eq!(code, 6, "{flaws:?}: {json}");
        assert!(
            json.contains(words),
            "{ids:?}: the server's words {words:?} missing: {json}"
        );
    }
    // The same mail transaction on an MX is a fact, not a finding (RFC 3207 §4).
    let port = smtp_server(Flaws {
        plaintext_mail: true,
        ..flaw()
    });
    let (code, found, json) = audit(&format!("smtp://127.0.0.1:{port}"));
    assert!(
        found.contains(&("plaintext-mail-accepted".into(), "info".into())),
        "{json}"
    );
    assert_eq!(code, 0, "{json}");
    // So is an answer to a STARTTLS sent before the greeting.
    let port = smtp_server(Flaws {
        early_talker: true,
        ..flaw()
    });
    let (code, found, json) = audit(&format!("smtp://127.0.0.1:{port}"));
    assert!(
        found.contains(&("starttls-before-greeting-accepted".into(), "info".into())),
        "{json}"
    );
    assert_eq!(code, 0, "{json}");
}

#[test]
fn the_text_report_and_nagios_name_the_findings() {
    /// `check --audit [EXTRA] smtp://127.0.0.1:PORT`: the exit code and stdout.
    fn check(port: u16, extra: &[&str]) -> (Option<i32>, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_starttls"))
            .args([
                "check",
                "--audit",
                "--timeout",
                "5",
                "--servername",
                "localhost",
            ])
            .args(extra)
            .arg("--ca-file")
            .arg(ca_file())
            .arg(format!("smtp://127.0.0.1:{port}"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
    let port = smtp_server(Flaws {
        injection: true,
        ..Flaws::default()
    });
    let (code, text) = check(port, &[]);
    assert_eq!(code, Some(6), "{text}");
    assert!(
        text.contains("audit finding           HIGH command-injection"),
        "{text}"
    );
    assert!(
        text.contains("verdict                 AUDIT FINDINGS: command-injection (high)"),
        "{text}"
    );
    let (code, line) = check(port, &["--nagios"]);
    assert_eq!(code, Some(2), "{line}");
    assert!(
        line.starts_with("STARTTLS CRITICAL - ") && line.contains("command-injection"),
        "{line}"
    );
    // A low finding alone is a WARNING.
    let port = smtp_server(Flaws {
        starttls_inside_tls: true,
        ..Flaws::default()
    });
    let (code, line) = check(port, &["--nagios"]);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.starts_with("STARTTLS WARNING - "), "{line}");
}

/// The library's own server side refuses everything the audit tries.
#[test]
fn serve_audits_clean_for_every_protocol_the_probes_speak() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("starttls-audit-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &pki().server.chain_pem).unwrap();
    std::fs::write(&key, &pki().server.key_pem).unwrap();
    for protocol in [
        "smtp",
        "submission",
        "lmtp",
        "imap",
        "pop3",
        "nntp",
        "ftp",
        "sieve",
        "xmpp",
        "ldap",
        "postgres",
        "mysql",
        "http",
        "smtps",
        "imaps",
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_starttls"))
            .args(["serve", "--protocol", protocol, "--cert"])
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let port: u16 = first
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        let (code, found, json) = audit(&format!("{protocol}://127.0.0.1:{port}"));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(above_info(&found), Vec::<&str>::new(), "{protocol}: {json}");
        assert_eq!(code, 0, "{protocol}: {json}");
        assert!(
            !json.contains("\"outcome\":\"error\""),
            "{protocol}: {json}"
        );
    }
}

/// A line server: `reply(command, inside_tls)` answers each line; `None` ends the session. On
/// a line that `is_starttls` says is STARTTLS, `go` is sent, then what the flaws want.
struct LineServer {
    greeting: &'static str,
    go: fn(&str) -> String,
    is_starttls: fn(&str) -> bool,
    reply: fn(&str, bool) -> Option<String>,
    /// Runs commands pipelined after STARTTLS inside TLS (CVE-2011-0411).
    injection: bool,
    /// What a plaintext command in place of the ClientHello gets (before hanging up).
    plaintext_notice: Option<&'static str>,
}

fn line_server(s: LineServer) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let _ = line_session(&s, sock);
        }
    });
    port
}

fn line_session(s: &LineServer, sock: TcpStream) -> std::io::Result<()> {
    let mut out = sock.try_clone()?;
    out.write_all(s.greeting.as_bytes())?;
    let mut reader = BufReader::new(sock.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end().to_owned();
        if (s.is_starttls)(&line) {
            out.write_all((s.go)(&line).as_bytes())?;
            let pipelined = String::from_utf8_lossy(reader.buffer()).into_owned();
            let mut first = [0u8; 1];
            if sock.peek(&mut first)? == 0 {
                return Ok(());
            }
            if first[0] != 0x16 {
                if let Some(notice) = s.plaintext_notice {
                    out.write_all(notice.as_bytes())?;
                }
                return Ok(());
            }
            let mut conn = ServerConnection::new(server_config(&pki().server)).unwrap();
            let mut sock = sock;
            while conn.is_handshaking() {
                conn.complete_io(&mut sock)?;
            }
            let mut tls = StreamOwned::new(conn, sock);
            if s.injection {
                for l in pipelined.lines() {
                    if let Some(r) = (s.reply)(l, true) {
                        tls.write_all(r.as_bytes())?;
                    }
                }
                tls.flush()?;
            }
            loop {
                let l = read_line(&mut tls);
                if l.is_empty() {
                    return Ok(());
                }
                match (s.reply)(&l, true) {
                    Some(r) => {
                        tls.write_all(r.as_bytes())?;
                        tls.flush()?;
                    }
                    None => {
                        tls.conn.send_close_notify();
                        tls.flush()?;
                        return Ok(());
                    }
                }
            }
        }
        match (s.reply)(&line, false) {
            Some(r) => out.write_all(r.as_bytes())?,
            None => return Ok(()),
        }
    }
}

fn imap_tag(line: &str) -> (&str, String) {
    let mut words = line.splitn(3, ' ');
    let tag = words.next().unwrap_or("*");
    (tag, words.next().unwrap_or("").to_ascii_uppercase())
}

/// IMAP, done right unless a flaw is asked for.
fn imap_server(
    injection: bool,
    plaintext_notice: Option<&'static str>,
    plaintext_login: bool,
) -> u16 {
    fn reply(line: &str, tls: bool, login: bool) -> Option<String> {
        let (tag, verb) = imap_tag(line);
        Some(match verb.as_str() {
            "CAPABILITY" if tls => {
                format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n")
            }
            "CAPABILITY" if login => {
                format!("* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN\r\n{tag} OK done\r\n")
            }
            "CAPABILITY" => {
                format!("* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n{tag} OK done\r\n")
            }
            "AUTHENTICATE" if login && !tls => "+ \r\n".to_owned(),
            "AUTHENTICATE" => format!("{tag} NO [PRIVACYREQUIRED] TLS first\r\n"),
            "NOOP" => format!("{tag} OK NOOP completed\r\n"),
            "STARTTLS" => format!("{tag} BAD TLS already active\r\n"),
            "LOGOUT" => return None,
            _ if line == "*" => "l BAD cancelled\r\n".to_owned(),
            _ => format!("{tag} BAD unknown\r\n"),
        })
    }
    let s = LineServer {
        greeting: "* OK ready\r\n",
        go: |l| format!("{} OK Begin TLS negotiation now\r\n", imap_tag(l).0),
        is_starttls: |l| imap_tag(l).1 == "STARTTLS" && !l.is_empty(),
        reply: if plaintext_login {
            |l, tls| reply(l, tls, true)
        } else {
            |l, tls| reply(l, tls, false)
        },
        injection,
        plaintext_notice,
    };
    line_server(s)
}

/// POP3, with USER/PASS before TLS when `plaintext_user`.
fn pop3_server(plaintext_user: bool) -> u16 {
    fn reply(line: &str, tls: bool, user: bool) -> Option<String> {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        Some(match verb.as_str() {
            "CAPA" if tls => "+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n".to_owned(),
            "CAPA" if user => "+OK\r\nSTLS\r\nUSER\r\n.\r\n".to_owned(),
            "CAPA" => "+OK\r\nSTLS\r\n.\r\n".to_owned(),
            "USER" if user || tls => "+OK send PASS\r\n".to_owned(),
            "USER" | "AUTH" => "-ERR [AUTH] Plaintext authentication disallowed\r\n".to_owned(),
            "NOOP" => "+OK\r\n".to_owned(),
            "STLS" => "-ERR already in TLS\r\n".to_owned(),
            "QUIT" => return None,
            _ => "-ERR unknown\r\n".to_owned(),
        })
    }
    line_server(LineServer {
        greeting: "+OK ready\r\n",
        go: |_| "+OK Begin TLS negotiation now\r\n".to_owned(),
        is_starttls: |l| l.eq_ignore_ascii_case("STLS"),
        reply: if plaintext_user {
            |l, tls| reply(l, tls, true)
        } else {
            |l, tls| reply(l, tls, false)
        },
        injection: false,
        plaintext_notice: None,
    })
}

#[test]
fn imap_and_pop3_flaws_are_found_and_notices_are_not_flaws() {
    let url = |scheme: &str, port: u16| format!("{scheme}://127.0.0.1:{port}");
    let (code, found, json) = audit(&url("imap", imap_server(false, None, false)));
    assert_eq!((code, above_info(&found)), (0, vec![]), "{json}");
    let (code, found, json) = audit(&url("imap", imap_server(true, None, false)));
    assert_eq!(
        (code, above_info(&found)),
        (6, vec!["command-injection"]),
        "{json}"
    );
    assert!(json.contains("NOOP completed"), "{json}");
    // "* BYE" in plaintext where TLS should start is how IMAP tells the failure: not a flaw.
    let (code, found, json) = audit(&url(
        "imap",
        imap_server(false, Some("* BYE TLS negotiation failed\r\n"), false),
    ));
    assert_eq!((code, above_info(&found)), (0, vec![]), "{json}");
    assert!(
        found.contains(&("plaintext-notice-after-go-ahead".into(), "info".into())),
        "{json}"
    );
    // A plaintext answer to the command is.
    let (code, found, json) = audit(&url(
        "imap",
        imap_server(false, Some("n OK NOOP completed\r\n"), false),
    ));
    assert_eq!(
        (code, above_info(&found)),
        (6, vec!["plaintext-after-go-ahead"]),
        "{json}"
    );
    let (code, found, json) = audit(&url("imap", imap_server(false, None, true)));
    assert_eq!(
        (code, above_info(&found)),
        (
            6,
            vec!["login-advertised-before-tls", "plaintext-login-accepted"]
        ),
        "{json}"
    );
    let (code, found, json) = audit(&url("pop3", pop3_server(false)));
    assert_eq!((code, above_info(&found)), (0, vec![]), "{json}");
    let (code, found, json) = audit(&url("pop3", pop3_server(true)));
    assert_eq!(
        (code, above_info(&found)),
        (
            6,
            vec!["login-advertised-before-tls", "plaintext-login-accepted"]
        ),
        "{json}"
    );
    assert!(json.contains("+OK send PASS"), "{json}");
}
