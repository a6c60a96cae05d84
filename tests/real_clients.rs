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
    let dir = std::env::temp_dir().join(format!("starttls-real-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&path, &pki().ca_pem).unwrap();
    path
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
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
