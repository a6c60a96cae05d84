//! The whole thing on loopback, no setup: a throw-away CA and certificate are made on the spot,
//! small SMTP, IMAP and POP3 servers listen on 127.0.0.1, and the library upgrades a connection
//! to each, then meets a server that injects plaintext after its go-ahead and refuses it.
//!
//!     cargo run --example demo

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use starttls::{ClientConfig, Direction, Protocol};

type Script = fn(&mut TcpStream, &Arc<ServerConfig>);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (ca_pem, server_tls) = make_pki()?;
    let config = ClientConfig::builder()
        .trust_ca_pem(ca_pem.into_bytes())
        .fetch_capabilities_after_tls(true)
        .build()?;

    let demos: [(&str, Protocol, Script); 4] = [
        ("SMTP submission", Protocol::Submission, smtp_server),
        ("IMAP", Protocol::Imap, imap_server),
        ("POP3", Protocol::Pop3, pop3_server),
        (
            "SMTP server that injects after 220",
            Protocol::Smtp,
            injecting_server,
        ),
    ];
    for (title, protocol, script) in demos {
        println!("== {title} ==");
        let port = spawn(script, server_tls.clone())?;
        match starttls::connect(&config, protocol, "localhost", port) {
            Ok(mut conn) => {
                for line in conn.transcript() {
                    let who = if line.direction == Direction::Sent {
                        "C"
                    } else {
                        "S"
                    };
                    let tls = if line.encrypted { " [TLS]" } else { "" };
                    println!("  {who}{tls}: {}", line.text);
                }
                println!(
                    "  => encrypted with {:?}, {:?}, certificate {:?}",
                    conn.tls_version().ok_or("no TLS version")?,
                    conn.cipher_suite().ok_or("no cipher suite")?,
                    conn.verification()
                );
                conn.close()?;
            }
            Err(e) => println!("  => refused, as it must be: {e} [{}]", e.kind().name()),
        }
    }
    Ok(())
}

fn make_pki() -> Result<(String, Arc<ServerConfig>), Box<dyn std::error::Error>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&key, &ca)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)?;
    Ok((ca.pem(), Arc::new(server)))
}

fn spawn(script: Script, tls: Arc<ServerConfig>) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    thread::spawn(move || {
        if let Ok((mut sock, _)) = listener.accept() {
            script(&mut sock, &tls);
        }
    });
    Ok(port)
}

fn line(r: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while r.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).trim_end().to_owned()
}

/// The server's side of the handshake, on a clone of the socket.
fn tls(
    sock: &mut TcpStream,
    cfg: &Arc<ServerConfig>,
) -> Option<StreamOwned<ServerConnection, TcpStream>> {
    let mut conn = ServerConnection::new(cfg.clone()).ok()?;
    let mut sock = sock.try_clone().ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).ok()?;
    }
    Some(StreamOwned::new(conn, sock))
}

fn smtp_server(sock: &mut TcpStream, cfg: &Arc<ServerConfig>) {
    let _ = sock.write_all(b"220 demo.localhost ESMTP\r\n");
    line(sock);
    let _ = sock.write_all(b"250-demo.localhost\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
    line(sock);
    let _ = sock.write_all(b"220 2.0.0 Ready to start TLS\r\n");
    if let Some(mut t) = tls(sock, cfg) {
        line(&mut t);
        let _ = t.write_all(b"250-demo.localhost\r\n250-AUTH PLAIN\r\n250 SIZE 10240000\r\n");
        let _ = t.flush();
    }
}

fn imap_server(sock: &mut TcpStream, cfg: &Arc<ServerConfig>) {
    let _ = sock.write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] demo ready\r\n");
    line(sock);
    let _ = sock.write_all(b"S1 OK Begin TLS negotiation now\r\n");
    if let Some(mut t) = tls(sock, cfg) {
        line(&mut t);
        let _ = t.write_all(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nS2 OK done\r\n");
        let _ = t.flush();
    }
}

fn pop3_server(sock: &mut TcpStream, cfg: &Arc<ServerConfig>) {
    let _ = sock.write_all(b"+OK demo POP3 ready\r\n");
    line(sock);
    let _ = sock.write_all(b"+OK Begin TLS\r\n");
    if let Some(mut t) = tls(sock, cfg) {
        line(&mut t);
        let _ = t.write_all(b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n");
        let _ = t.flush();
    }
}

fn injecting_server(sock: &mut TcpStream, _cfg: &Arc<ServerConfig>) {
    let _ = sock.write_all(b"220 demo.localhost ESMTP\r\n");
    line(sock);
    let _ = sock.write_all(b"250-demo.localhost\r\n250 STARTTLS\r\n");
    line(sock);
    // CVE-2011-0411 style: a forged reply rides in the same segment as the go-ahead.
    let _ = sock.write_all(b"220 Ready\r\n250-forged\r\n250 AUTH PLAIN\r\n");
    let _ = sock.read(&mut [0u8; 16]);
}
