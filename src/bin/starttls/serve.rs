//! `starttls serve`: the library's server side as a test server for mail clients.

use std::net::TcpListener;
use std::time::Duration;

use starttls::{Protocol, ServerConfig};

use crate::{apps, pki};

pub struct ServeOptions {
    pub protocol: Protocol,
    pub listen: String,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub domain: String,
    pub max_connections: Option<u64>,
    pub verbose: bool,
}

/// Builds the server config: the given certificate, or a throw-away one (whose CA is written
/// to a file and returned).
pub fn server_config(
    opts: &ServeOptions,
) -> Result<(ServerConfig, Option<std::path::PathBuf>), String> {
    let mut b = ServerConfig::builder()
        .hostname(&opts.domain)
        .timeout(Duration::from_secs(60));
    if opts.verbose {
        b = b.on_dialog_line(|l| {
            let who = match l.direction {
                starttls::Direction::Sent => "S:",
                starttls::Direction::Received => "C:",
            };
            let tls = if l.encrypted { " [TLS]" } else { "" };
            eprintln!("{who}{tls} {}", l.text);
        });
    }
    let ca_path = match (&opts.cert, &opts.key) {
        (Some(c), Some(k)) => {
            b = b.certificate_files(c, k);
            None
        }
        (None, None) => {
            let pki = pki::make(&opts.domain)?;
            b = b.certificate_pem(pki.chain_pem.into_bytes(), pki.key_pem.into_bytes());
            Some(pki::write_ca(&pki.ca_pem)?)
        }
        _ => return Err("--cert and --key go together".into()),
    };
    let config = b.build().map_err(|e| e.to_string())?;
    Ok((config, ca_path))
}

/// Runs the server; returns the exit status.
pub fn run(opts: &ServeOptions) -> i32 {
    let (config, ca_path) = match server_config(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("starttls serve: {e}");
            return 2;
        }
    };
    let listener = match TcpListener::bind(&opts.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("starttls serve: cannot listen on {}: {e}", opts.listen);
            if let Some(ca) = &ca_path {
                pki::remove_ca(ca);
            }
            return 8;
        }
    };
    let addr = listener
        .local_addr()
        .map_or_else(|_| opts.listen.clone(), |a| a.to_string());
    if let Some(ca) = &ca_path {
        println!("throw-away CA certificate: {}", ca.display());
    }
    println!("serving {} on {addr} as {}", opts.protocol, opts.domain);
    let mut served = 0u64;
    let mut workers = Vec::new();
    for stream in listener.incoming() {
        let Ok(sock) = stream else { continue };
        let peer = sock
            .peer_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        let (config, protocol, domain) = (config.clone(), opts.protocol, opts.domain.clone());
        workers.push(std::thread::spawn(move || {
            let line = match starttls::accept(&config, protocol, sock) {
                Ok(mut conn) => {
                    let version = match conn.tls_version() {
                        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                        _ => "?",
                    };
                    let client = conn
                        .peer_name()
                        .map(|n| format!(" client_name={:?}", n.get_untrusted()))
                        .unwrap_or_default();
                    match apps::session(protocol, &domain, &mut conn) {
                        Ok(summary) => format!("outcome=ok tls={version}{client} {summary}"),
                        Err(e) => format!("outcome=ok tls={version}{client} session_error={e:?}"),
                    }
                }
                Err(e) => format!(
                    "outcome=refused error={} message={:?}",
                    e.kind().name(),
                    e.to_string()
                ),
            };
            println!("peer={peer} protocol={protocol} {}", line.trim_end());
        }));
        served += 1;
        if opts.max_connections.is_some_and(|max| served >= max) {
            break;
        }
    }
    for w in workers {
        let _ = w.join();
    }
    // The throw-away CA is only useful while this server runs (an interrupted run leaves it in
    // the temporary directory, named after the process id).
    if let Some(ca) = &ca_path {
        pki::remove_ca(ca);
    }
    0
}
