//! Upgrade a connection to a real server and show what was negotiated.
//!
//!     cargo run --example check -- smtp mail.example.org 25
//!     cargo run --example check -- imap imap.example.org        # default port
//!     cargo run --example check -- pop3s pop.example.org 995 --ca-file ca.pem
//!
//! The `starttls` command (a later release) does this with more options; this example shows how
//! little code a Rust program needs.

use std::process::ExitCode;

use starttls::{ClientConfig, Protocol};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: check PROTOCOL HOST [PORT] [--ca-file PEM]";
    let protocol: Protocol = args.first().ok_or(usage)?.parse()?;
    let host = args.get(1).ok_or(usage)?;
    let port = match args.get(2).filter(|a| !a.starts_with("--")) {
        Some(p) => p.parse()?,
        None => protocol
            .default_port()
            .ok_or("this protocol needs a PORT")?,
    };
    let mut builder = ClientConfig::builder().fetch_capabilities_after_tls(true);
    if let Some(i) = args.iter().position(|a| a == "--ca-file") {
        builder = builder.trust_ca_file(args.get(i + 1).ok_or(usage)?);
    }
    let config = builder.build()?;

    let mut conn = starttls::connect(&config, protocol, host, port)?;
    for line in conn.transcript() {
        let who = match line.direction {
            starttls::Direction::Sent => "C",
            starttls::Direction::Received => "S",
        };
        let tls = if line.encrypted { " (TLS)" } else { "" };
        println!("{who}{tls}: {}", line.text);
    }
    println!("TLS version:  {:?}", conn.tls_version());
    println!("cipher suite: {:?}", conn.cipher_suite());
    println!("verification: {:?}", conn.verification());
    println!("capabilities after TLS: {:?}", conn.capabilities());
    conn.close()?;
    Ok(())
}
