//! `starttls demo`: every protocol on loopback with a certificate made on the spot, checked
//! with the client side, plus the attacks the library must refuse. Exit 0 only if all pass.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use starttls::{Protocol, ServerConfig};

use crate::check::{self, CheckOptions};
use crate::report::Report;
use crate::{apps, pki};

struct Row {
    name: String,
    tls: String,
    cipher: String,
    passed: bool,
    result: String,
    ms: u128,
}

fn listener() -> Result<(TcpListener, u16), String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot listen: {e}"))?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    Ok((l, port))
}

pub fn run() -> i32 {
    match demo() {
        Ok(all_passed) => i32::from(!all_passed),
        Err(e) => {
            eprintln!("starttls demo: {e}");
            1
        }
    }
}

fn demo() -> Result<bool, String> {
    let pki = pki::make("localhost")?;
    let server = ServerConfig::builder()
        .certificate_pem(
            pki.chain_pem.clone().into_bytes(),
            pki.key_pem.clone().into_bytes(),
        )
        .hostname("localhost")
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let opts = CheckOptions {
        ca_pem: Some(pki.ca_pem.clone()),
        timeout: Some(Duration::from_secs(10)),
        ..CheckOptions::default()
    };
    let (client, capture) = check::client_config(&opts).map_err(|e| e.to_string())?;
    println!(
        "starttls demo: a throw-away CA, a certificate for localhost, and every protocol on 127.0.0.1\n"
    );

    let mut rows = Vec::new();
    for protocol in Protocol::ALL {
        let (listener, port) = listener()?;
        let cfg = server.clone();
        let served = thread::spawn(move || {
            let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
            let mut conn = starttls::accept(&cfg, protocol, sock).map_err(|e| e.to_string())?;
            apps::session(protocol, "localhost", &mut conn).map_err(|e| e.to_string())
        });
        let started = Instant::now();
        let url = format!("{protocol}://localhost:{port}");
        let report = check::check_with(&client, &capture, &url, &opts);
        let server_result = served
            .join()
            .unwrap_or_else(|_| Err("server thread panicked".into()));
        rows.push(protocol_row(
            protocol,
            &report,
            server_result,
            started.elapsed().as_millis(),
        ));
    }
    rows.extend(attack_rows(&client, &capture, &server, &opts)?);

    println!(
        "{:<38} {:<8} {:<24} {:>6}  result",
        "protocol / attack", "TLS", "cipher", "ms"
    );
    for r in &rows {
        println!(
            "{:<38} {:<8} {:<24} {:>6}  {} {}",
            r.name,
            r.tls,
            r.cipher,
            r.ms,
            if r.passed { "PASS" } else { "FAIL" },
            r.result
        );
    }
    let failed = rows.iter().filter(|r| !r.passed).count();
    println!("\n{} passed, {failed} failed", rows.len() - failed);
    Ok(failed == 0)
}

fn protocol_row(
    protocol: Protocol,
    report: &Report,
    server: Result<String, String>,
    ms: u128,
) -> Row {
    let (passed, result) = match (&report.error, &server) {
        (None, Ok(_)) if report.ok() && report.verified => {
            (true, "encrypted and verified".to_owned())
        }
        (Some(e), _) => (false, format!("{}: {}", e.code, e.message)),
        (None, Err(e)) => (false, format!("server: {e}")),
        (None, Ok(_)) => (false, report.verdict()),
    };
    Row {
        name: protocol.scheme().to_owned(),
        tls: report.tls_version.clone().unwrap_or_default(),
        cipher: report.cipher_suite.clone().unwrap_or_default(),
        passed,
        result,
        ms,
    }
}

/// A hostile peer for one attack, and the error the library must answer it with.
fn attack_rows(
    client: &starttls::ClientConfig,
    capture: &check::Capture,
    server: &ServerConfig,
    opts: &CheckOptions,
) -> Result<Vec<Row>, String> {
    type Script = fn(TcpStream);
    let hostile: [(&str, Protocol, Script, &str); 4] = [
        (
            "smtp server injects after its 220",
            Protocol::Smtp,
            inject_after_go_ahead,
            "STARTTLS_ERR_INJECTION",
        ),
        (
            "smtp server strips STARTTLS",
            Protocol::Smtp,
            strip_starttls,
            "STARTTLS_ERR_NOT_OFFERED",
        ),
        (
            "imap server sends PREAUTH",
            Protocol::Imap,
            preauth,
            "STARTTLS_ERR_DOWNGRADE",
        ),
        (
            "postgres server queues bytes after S",
            Protocol::Postgres,
            postgres_inject,
            "STARTTLS_ERR_INJECTION",
        ),
    ];
    let mut rows = Vec::new();
    for (name, protocol, script, expected) in hostile {
        let (listener, port) = listener()?;
        let peer = thread::spawn(move || {
            if let Ok((sock, _)) = listener.accept() {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
                script(sock);
            }
        });
        let started = Instant::now();
        let url = format!("{protocol}://localhost:{port}");
        let report = check::check_with(client, capture, &url, opts);
        let _ = peer.join();
        let got = report.error.as_ref().map_or("none", |e| e.code);
        rows.push(Row {
            name: name.to_owned(),
            tls: String::new(),
            cipher: String::new(),
            passed: got == expected,
            result: format!("refused with {got}"),
            ms: started.elapsed().as_millis(),
        });
    }

    // The server side: a client pipelines a command after STARTTLS.
    let (listener, port) = listener()?;
    let cfg = server.clone();
    let accepted = thread::spawn(move || {
        let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
        match starttls::accept(&cfg, Protocol::Smtp, sock) {
            Ok(_) => Ok("accepted".to_owned()),
            Err(e) => Ok(e.kind().name().to_owned()),
        }
    });
    let started = Instant::now();
    if let Ok(mut sock) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = sock.write_all(b"EHLO attacker\r\nSTARTTLS\r\nMAIL FROM:<evil@example>\r\n");
        let mut sink = Vec::new();
        let _ = sock.read_to_end(&mut sink);
    }
    let got: Result<String, String> = accepted.join().unwrap_or_else(|_| Err("panicked".into()));
    let got = got.unwrap_or_else(|e| e);
    rows.push(Row {
        name: "client pipelines MAIL after STARTTLS".into(),
        tls: String::new(),
        cipher: String::new(),
        passed: got == "STARTTLS_ERR_INJECTION",
        result: format!("server refused with {got}"),
        ms: started.elapsed().as_millis(),
    });
    Ok(rows)
}

fn read_line(sock: &mut TcpStream) {
    let mut b = [0u8; 1];
    while sock.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {}
}

fn inject_after_go_ahead(mut sock: TcpStream) {
    let _ = sock.write_all(b"220 demo ESMTP\r\n");
    read_line(&mut sock);
    let _ = sock.write_all(b"250-demo\r\n250 STARTTLS\r\n");
    read_line(&mut sock);
    let _ = sock.write_all(b"220 go ahead\r\n250-forged\r\n250 AUTH PLAIN\r\n");
    let _ = sock.read(&mut [0u8; 64]);
}

fn strip_starttls(mut sock: TcpStream) {
    let _ = sock.write_all(b"220 demo ESMTP\r\n");
    read_line(&mut sock);
    let _ = sock.write_all(b"250-demo\r\n250 AUTH PLAIN LOGIN\r\n");
    let _ = sock.read(&mut [0u8; 64]);
}

fn preauth(mut sock: TcpStream) {
    let _ = sock.write_all(b"* PREAUTH [CAPABILITY IMAP4rev1] logged in as you, in plaintext\r\n");
    let _ = sock.read(&mut [0u8; 64]);
}

fn postgres_inject(mut sock: TcpStream) {
    let mut req = [0u8; 8];
    let _ = sock.read_exact(&mut req);
    let _ = sock.write_all(b"SR\0\0\0\x08\0\0\0\0");
    let _ = sock.read(&mut [0u8; 64]);
}
