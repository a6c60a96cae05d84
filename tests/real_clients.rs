//! Real third-party clients against the library's server side: `openssl s_client -starttls`
//! for every protocol it knows, and Python's smtplib, imaplib, poplib, ftplib and nntplib
//! `starttls()`. A client that is not installed is reported as skipped.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::*;
use starttls::{Connection, Protocol, ServerConfig};

fn server_cfg() -> ServerConfig {
    ServerConfig::builder()
        .certificate_pem(pki().server.chain_pem.clone(), pki().server.key_pem.clone())
        .hostname("mx.test")
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn ca_file(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("starttls-real-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&path, &pki().ca_pem).unwrap();
    path
}

/// Accepts one connection with `protocol`, then runs `app` (the application after TLS).
fn serve_app(
    protocol: Protocol,
    app: impl FnOnce(&mut Connection) + Send + 'static,
) -> (u16, JoinHandle<Result<String, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        match starttls::accept(&server_cfg(), protocol, sock) {
            Ok(mut conn) => {
                let version = format!("{:?}", conn.tls_version());
                app(&mut conn);
                // Every orderly end sends close_notify, whoever closed first.
                let _ = conn.close();
                Ok(version)
            }
            Err(e) => Err(e.to_string()),
        }
    });
    (port, handle)
}

/// Reads until the peer closes (s_client closes when its stdin ends).
fn drain(conn: &mut Connection) {
    let mut buf = [0u8; 1024];
    while matches!(std::io::Read::read(conn, &mut buf), Ok(n) if n > 0) {}
}

#[test]
fn openssl_s_client_starttls_for_every_protocol_it_knows() {
    if !have("openssl", "version") {
        eprintln!("SKIPPED openssl s_client: openssl is not installed");
        return;
    }
    let ca = ca_file("s_client");
    let cases: [(Protocol, &str); 11] = [
        (Protocol::Smtp, "smtp"),
        (Protocol::Lmtp, "lmtp"),
        (Protocol::Imap, "imap"),
        (Protocol::Pop3, "pop3"),
        (Protocol::Ftp, "ftp"),
        (Protocol::Xmpp, "xmpp"),
        (Protocol::XmppServer, "xmpp-server"),
        (Protocol::Nntp, "nntp"),
        (Protocol::Sieve, "sieve"),
        (Protocol::Ldap, "ldap"),
        (Protocol::Postgres, "postgres"),
    ];
    for (protocol, name) in cases {
        let (port, server) = serve_app(protocol, drain);
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-brief",
                "-verify_return_error",
                "-starttls",
                name,
            ])
            .args(["-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .arg("-CAfile")
            .arg(&ca)
            .args(["-xmpphost", "localhost"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        let result = server.join().unwrap();
        assert!(
            result.is_ok(),
            "s_client -starttls {name}: server: {result:?}\n{log}"
        );
        assert!(
            out.status.success() && !log.contains("unexpected eof"),
            "s_client -starttls {name} reported an error: {:?}\n{log}",
            out.status
        );
        assert!(
            log.contains("Verification: OK"),
            "s_client -starttls {name}:\n{log}"
        );
        assert!(
            log.contains("Protocol version: TLSv1.3"),
            "s_client -starttls {name}:\n{log}"
        );
    }
}

/// A minimal line-based application after TLS: answers each command by its first word.
fn line_app(
    answers: &'static [(&'static str, &'static str)],
    last: &'static str,
) -> impl FnOnce(&mut Connection) {
    move |conn: &mut Connection| loop {
        let line = read_line(conn);
        if line.is_empty() {
            return;
        }
        let (tag, rest) = line.split_once(' ').unwrap_or((&line, ""));
        let (word, tagged) = match answers.iter().find(|(w, _)| tag.eq_ignore_ascii_case(w)) {
            Some(hit) => (hit, None),
            // IMAP: the command follows the tag.
            None => match answers.iter().find(|(w, _)| {
                rest.split(' ')
                    .next()
                    .is_some_and(|v| v.eq_ignore_ascii_case(w))
            }) {
                Some(hit) => (hit, Some(tag.to_string())),
                None => panic!("unexpected command {line:?}"),
            },
        };
        let reply = match tagged {
            Some(t) => word.1.replace("TAG", &t),
            None => word.1.to_string(),
        };
        conn.write_all(reply.as_bytes()).unwrap();
        if word.0.eq_ignore_ascii_case(last) {
            return;
        }
    }
}

fn python(script: &str, port: u16, ca: &PathBuf) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-W", "ignore", "-c", script, &port.to_string()])
        .arg(ca)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn python_stdlib_clients_starttls() {
    if !have("python3", "--version") {
        eprintln!("SKIPPED Python stdlib clients: python3 is not installed");
        return;
    }
    let ca = ca_file("python");
    let prelude = "import sys, ssl\nport = int(sys.argv[1])\nctx = ssl.create_default_context(cafile=sys.argv[2])\n";
    type App = Box<dyn FnOnce(&mut Connection) + Send>;
    let cases: Vec<(Protocol, &str, App)> = vec![
        (
            Protocol::Smtp,
            "import smtplib\ns = smtplib.SMTP('localhost', port)\ns.starttls(context=ctx)\ncode, _ = s.ehlo()\nassert code == 250, code\nassert s.has_extn('auth')\ns.quit()\nprint('ok', s)",
            Box::new(line_app(
                &[
                    ("EHLO", "250-mx.test\r\n250 AUTH PLAIN\r\n"),
                    ("QUIT", "221 bye\r\n"),
                ],
                "QUIT",
            )),
        ),
        (
            Protocol::Imap,
            "import imaplib\nm = imaplib.IMAP4('localhost', port)\nm.starttls(ssl_context=ctx)\nassert 'AUTH=PLAIN' in m.capabilities, m.capabilities\nm.logout()\nprint('ok')",
            Box::new(line_app(
                &[
                    (
                        "CAPABILITY",
                        "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nTAG OK done\r\n",
                    ),
                    ("LOGOUT", "* BYE\r\nTAG OK bye\r\n"),
                ],
                "LOGOUT",
            )),
        ),
        (
            Protocol::Pop3,
            "import poplib\np = poplib.POP3('localhost', port)\np.stls(context=ctx)\nprint(p.quit())",
            Box::new(line_app(&[("QUIT", "+OK bye\r\n")], "QUIT")),
        ),
        (
            Protocol::Ftp,
            "import ftplib\nf = ftplib.FTP_TLS(context=ctx)\nf.connect('localhost', port)\nf.auth()\nf.prot_p()\nprint(f.quit())",
            Box::new(line_app(
                &[
                    ("PBSZ", "200 PBSZ=0\r\n"),
                    ("PROT", "200 Protection set to Private\r\n"),
                    ("QUIT", "221 bye\r\n"),
                ],
                "QUIT",
            )),
        ),
        (
            Protocol::Nntp,
            "import nntplib\nn = nntplib.NNTP('localhost', port, usenetrc=False)\nn.starttls(context=ctx)\nassert 'READER' in n.getcapabilities()\nprint(n.quit())",
            Box::new(line_app(
                &[
                    ("CAPABILITIES", "101 list\r\nVERSION 2\r\nREADER\r\n.\r\n"),
                    ("QUIT", "205 bye\r\n"),
                ],
                "QUIT",
            )),
        ),
    ];
    for (protocol, body, app) in cases {
        let (port, server) = serve_app(protocol, app);
        let (ok, log) = python(&format!("{prelude}{body}"), port, &ca);
        let result = server.join().unwrap();
        assert!(ok, "python {protocol}: {log}\nserver: {result:?}");
        assert!(
            result.is_ok(),
            "python {protocol}: server: {result:?}\n{log}"
        );
    }
}

/// SMTP after TLS, enough for swaks and curl to send a message.
fn smtp_app(conn: &mut Connection) {
    loop {
        let line = read_line(conn);
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "" => return,
            "EHLO" => b"250-mx.test\r\n250-8BITMIME\r\n250 SIZE 100000\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 OK\r\n",
            "DATA" => {
                conn.write_all(b"354 go ahead\r\n").unwrap();
                while read_line(conn) != "." {}
                b"250 2.0.0 queued\r\n"
            }
            "QUIT" => {
                conn.write_all(b"221 2.0.0 bye\r\n").unwrap();
                return;
            }
            _ => b"502 5.5.1 not implemented\r\n",
        };
        conn.write_all(reply).unwrap();
    }
}

/// POP3 after TLS, enough for curl to list a mailbox.
fn pop3_app(conn: &mut Connection) {
    loop {
        let line = read_line(conn);
        let verb = line
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "" => return,
            "CAPA" => b"+OK\r\nUSER\r\nUIDL\r\n.\r\n",
            "USER" | "PASS" | "NOOP" => b"+OK\r\n",
            "STAT" => b"+OK 0 0\r\n",
            "LIST" | "UIDL" => b"+OK\r\n.\r\n",
            "QUIT" => {
                conn.write_all(b"+OK bye\r\n").unwrap();
                return;
            }
            _ => b"-ERR unknown\r\n",
        };
        conn.write_all(reply).unwrap();
    }
}

/// IMAP after TLS, enough for curl to log in and list.
fn imap_app(conn: &mut Connection) {
    loop {
        let line = read_line(conn);
        let mut words = line.split(' ');
        let (tag, verb) = (
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
        );
        let reply = match verb.to_ascii_uppercase().as_str() {
            "" => return,
            // curl keeps the LOGINDISABLED it saw before TLS (it does not forget pre-TLS
            // capabilities), so it needs a SASL mechanism to log in.
            "CAPABILITY" => {
                format!("* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\n{tag} OK done\r\n")
            }
            "LOGIN" | "AUTHENTICATE" | "SELECT" | "EXAMINE" | "NOOP" => {
                format!("{tag} OK done\r\n")
            }
            "LIST" => format!("* LIST () \"/\" INBOX\r\n{tag} OK done\r\n"),
            "LOGOUT" => {
                conn.write_all(format!("* BYE\r\n{tag} OK bye\r\n").as_bytes())
                    .unwrap();
                return;
            }
            _ => format!("{tag} BAD unknown\r\n"),
        };
        conn.write_all(reply.as_bytes()).unwrap();
    }
}

#[test]
fn curl_ssl_reqd_smtp_imap_pop3() {
    if !have("curl", "--version") {
        eprintln!("SKIPPED curl: not installed");
        return;
    }
    let ca = ca_file("curl");
    let mail = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("starttls-curl-mail-{}", std::process::id()));
    std::fs::write(&mail, "Subject: test\r\n\r\nhello\r\n").unwrap();
    type App = fn(&mut Connection);
    let cases: [(Protocol, &str, &[&str], App); 3] = [
        (
            Protocol::Smtp,
            "smtp",
            &["--mail-from", "a@test", "--mail-rcpt", "b@test", "-T"],
            smtp_app,
        ),
        (Protocol::Imap, "imap", &["-u", "user:pass"], imap_app),
        (Protocol::Pop3, "pop3", &["-u", "user:pass"], pop3_app),
    ];
    for (protocol, scheme, extra, app) in cases {
        let (port, server) = serve_app(protocol, app);
        let mut cmd = Command::new("curl");
        cmd.args(["--silent", "--show-error", "--ssl-reqd", "--max-time", "20"])
            .arg("--cacert")
            .arg(&ca)
            .arg(format!("{scheme}://localhost:{port}/"))
            .args(extra);
        if protocol == Protocol::Smtp {
            cmd.arg(&mail);
        }
        let out = cmd.output().unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let result = server.join().unwrap();
        assert!(
            out.status.success(),
            "curl {scheme}: {log}\nserver: {result:?}"
        );
        assert!(result.is_ok(), "curl {scheme}: server: {result:?}");
    }
}

#[test]
fn gnutls_cli_starttls_protocols() {
    if !have("gnutls-cli", "--version") {
        eprintln!("SKIPPED gnutls-cli: not installed (Debian package gnutls-bin)");
        return;
    }
    let ca = ca_file("gnutls");
    for (protocol, name) in [
        (Protocol::Smtp, "smtp"),
        (Protocol::Imap, "imap"),
        (Protocol::Pop3, "pop3"),
        (Protocol::Ftp, "ftp"),
        (Protocol::Xmpp, "xmpp"),
        (Protocol::Ldap, "ldap"),
        (Protocol::Nntp, "nntp"),
        (Protocol::Sieve, "sieve"),
        (Protocol::Postgres, "postgres"),
        (Protocol::Lmtp, "lmtp"),
    ] {
        let (port, server) = serve_app(protocol, drain);
        let out = Command::new("gnutls-cli")
            .arg(format!("--starttls-proto={name}"))
            .arg(format!("--x509cafile={}", ca.display()))
            .args(["-p", &port.to_string(), "localhost"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let result = server.join().unwrap();
        assert!(
            result.is_ok(),
            "gnutls-cli {name}: server: {result:?}\n{log}"
        );
        assert!(
            out.status.success() && !log.contains("non-properly terminated"),
            "gnutls-cli {name} reported an error: {:?}\n{log}",
            out.status
        );
        assert!(
            log.contains("Handshake was completed"),
            "gnutls-cli {name}:\n{log}"
        );
    }
}

#[test]
fn swaks_sends_a_message_over_starttls() {
    if !have("swaks", "--version") {
        eprintln!("SKIPPED swaks: not installed");
        return;
    }
    let ca = ca_file("swaks");
    let (port, server) = serve_app(Protocol::Smtp, smtp_app);
    let out = Command::new("swaks")
        .args([
            "--tls",
            "--tls-verify",
            "--server",
            &format!("localhost:{port}"),
        ])
        .arg("--tls-ca-path")
        .arg(&ca)
        .args(["--from", "a@test", "--to", "b@test", "--timeout", "20"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    let result = server.join().unwrap();
    assert!(
        out.status.success(),
        "swaks:\n{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(result.is_ok(), "swaks: server: {result:?}");
    assert!(log.contains("250 2.0.0 queued"), "{log}");
}
