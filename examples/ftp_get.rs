//! Log in to an FTP server over AUTH TLS and download a file over a protected data connection
//! that resumes the control connection's TLS session.
//!
//!     cargo run --example ftp_get -- HOST PORT USER PASSWORD PATH [--ca-file PEM]
//!
//! The password is sent only inside TLS. The file goes to standard output.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;

use starttls::{ClientConfig, Connection, Protocol};

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

/// Sends one command and returns the (last line of the) reply, failing on 4xx/5xx.
fn command(conn: &mut Connection, line: &str) -> Result<String, Box<dyn std::error::Error>> {
    conn.write_all(format!("{line}\r\n").as_bytes())?;
    let mut reader = BufReader::new(conn);
    let mut reply = String::new();
    loop {
        reply.clear();
        reader.read_line(&mut reply)?;
        let done = reply.len() >= 4 && reply.as_bytes()[3] == b' ';
        if done || reply.is_empty() {
            break;
        }
    }
    if reply.starts_with(['4', '5']) || reply.is_empty() {
        return Err(format!(
            "{} refused: {}",
            line.split(' ').next().unwrap_or(line),
            reply.trim()
        )
        .into());
    }
    Ok(reply.trim_end().to_owned())
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: ftp_get HOST PORT USER PASSWORD PATH [--ca-file PEM]";
    let [host, port, user, password, path, rest @ ..] = args else {
        return Err(usage.into());
    };
    let mut builder = ClientConfig::builder();
    if let [flag, ca] = rest {
        if flag != "--ca-file" {
            return Err(usage.into());
        }
        builder = builder.trust_ca_file(ca);
    }
    let config = builder.build()?;
    let mut control = starttls::connect(&config, Protocol::Ftp, host, port.parse()?)?;
    eprintln!(
        "control: {:?} {:?}",
        control.tls_version(),
        control.cipher_suite()
    );
    command(&mut control, &format!("USER {user}"))?;
    command(&mut control, &format!("PASS {password}"))?;
    command(&mut control, "TYPE I")?;

    let mut data = control.ftp_data(&format!("RETR {path}"))?;
    eprintln!(
        "data connection resumed the control session: {}",
        data.is_resumed()
    );
    let mut file = Vec::new();
    data.read_to_end(&mut file)?;
    std::io::stdout().write_all(&file)?;
    eprintln!("{}", control.ftp_finish()?);
    command(&mut control, "QUIT")?;
    control.close()?;
    Ok(())
}
