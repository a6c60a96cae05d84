//! `starttls`: test a server's STARTTLS from the shell, serve it to mail clients, or watch the
//! whole thing work on loopback. A thin user of the library's Rust API.
//!
//! The options, output and exit codes are a published contract: see README.md.

mod apps;
mod args;
mod certinfo;
mod check;
mod demo;
mod json;
mod mail;
mod pki;
mod report;
mod serve;

use std::time::Duration;

use zeroize::Zeroizing;

use args::Args;
use check::CheckOptions;
use report::{Report, ReportError};

const USAGE: &str = "\
usage: starttls check [OPTIONS] SCHEME://HOST[:PORT]
       starttls serve --protocol P [--listen ADDR:PORT] [--cert CHAIN.pem --key KEY.pem]
                      [--domain NAME] [--max-connections N] [--max-concurrent N]
                      [--idle-timeout SECS] [-v]
       starttls demo
       starttls --version | --help

check options:
  --ca-file PEM            trust only these CAs (default: the built-in webpki roots)
  --servername NAME        the name to verify and send in SNI (and XMPP to=) instead of HOST
  --client-name NAME       the EHLO/LHLO name
  --client-cert PEM --client-key PEM
                           present a client certificate
  --opportunistic          report a server without STARTTLS instead of failing
  --insecure               accept any certificate, but still report what was wrong
  --tls-min 1.2|1.3        the lowest TLS version (default 1.2)
  --tls-max 1.2|1.3        the highest TLS version offered (default 1.3)
  --warn-days N            fail as `expiring` (exit 11) when the certificate has N days or
                           fewer left; --crit-days N the same, CRITICAL for --nagios
  --nagios                 one monitoring-plugins line (STARTTLS OK - ... | time=..s
                           days_left=..), exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
  --timeout SECS           per-step timeout (default 10)
  --json                   one JSON object on stdout
  -v, --verbose            print the dialog, before TLS and after
  --user NAME              log in after the upgrade, inside TLS only, with the strongest
                           mechanism offered: SCRAM-SHA-256-PLUS, SCRAM-SHA-256, PLAIN, ...
                           (LDAP: NAME is the bind DN, e.g. cn=admin,dc=example,dc=org)
  --password-file FILE     the password (first line); else $STARTTLS_PASSWORD
  --oauth2-token-file FILE log in with this OAuth 2.0 bearer token (first line; chmod 600)
                           instead of a password: OAUTHBEARER or XOAUTH2
  --sasl-external          log in with the --client-cert certificate (SASL EXTERNAL)
  --authzid NAME           the authorization identity (SASL)
  --database NAME          PostgreSQL: the database to log in to (default: the user name)
  --mail-from ADDR         smtp/submission/smtps/lmtp: after the upgrade (and the login),
  --rcpt-to ADDR           send a short dated test message inside TLS; --rcpt-to repeats

serve options:
  --protocol P             any scheme check accepts: smtp, imap, imaps, ldap, xmpp, ...
  --listen ADDR:PORT       where to listen (default 127.0.0.1:0, the port is printed)
  --cert PEM --key PEM     the certificate chain and key (default: a throw-away CA and
                           certificate for --domain; the CA's file is printed)
  --domain NAME            the server's name in greetings and the throw-away certificate
  --max-connections N      exit after serving N connections (default: serve until killed)
  --max-concurrent N       serve at most N connections at once; more wait to be accepted
                           (default 256)
  --idle-timeout SECS      close a session idle this long after TLS (default 60); the whole
                           dialog before TLS gets at most 4 x 30 s
  -v                       print every dialog line

exit status: 0 ok, 1 internal, 2 usage, 3 not offered or downgraded, 4 refused,
             5 certificate, 6 protocol violation or injection, 7 timeout, 8 network, 9 TLS,
             10 authentication";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(run(args));
}

fn run(mut args: Vec<String>) -> i32 {
    if args.is_empty() {
        eprintln!("{USAGE}");
        return 2;
    }
    let command = args.remove(0);
    match command.as_str() {
        "check" => check_command(Args::new(args)),
        "serve" => serve_command(Args::new(args)),
        "demo" if args.is_empty() => demo::run(),
        "demo" => usage_error("demo takes no arguments"),
        "--version" | "-V" | "version" => {
            println!("{}", starttls::version());
            0
        }
        "--help" | "-h" | "help" => {
            println!("{USAGE}");
            0
        }
        other => usage_error(&format!("unknown command {other:?}")),
    }
}

fn usage_error(message: &str) -> i32 {
    eprintln!("starttls: {message}\n(starttls --help lists the commands and options)");
    2
}

fn check_command(mut a: Args) -> i32 {
    let json = a.flag(&["--json"]);
    let nagios = a.flag(&["--nagios"]);
    let parsed = parse_check(&mut a, json, nagios).and_then(|mut opts| {
        let positionals = a.positionals()?;
        match positionals.as_slice() {
            [url] => {
                opts.url = url.clone();
                Ok(opts)
            }
            [] => Err("a URL is required".to_owned()),
            _ => Err(format!("one URL only, got {}", positionals.len())),
        }
    });
    match parsed {
        Ok(opts) => check::run(&opts),
        // The monitoring-plugins form of a usage error: UNKNOWN.
        Err(message) if nagios => {
            println!("STARTTLS UNKNOWN - usage: {}", message.replace('|', " "));
            3
        }
        Err(message) if json => {
            let mut report = Report::usage_failure(message);
            report.url = String::new();
            report::print_report(&report, true);
            2
        }
        Err(message) => usage_error(&format!("check: {message}")),
    }
}

fn parse_check(a: &mut Args, json: bool, nagios: bool) -> Result<CheckOptions, String> {
    if a.flag(&["--help", "-h"]) {
        println!("{USAGE}");
        std::process::exit(0);
    }
    let timeout = match a.value("--timeout")? {
        None => None,
        Some(t) => {
            let secs: f64 = t
                .parse()
                .map_err(|_| format!("--timeout {t:?} is not a number"))?;
            if !(secs > 0.0 && secs <= 86_400.0) {
                return Err(format!(
                    "--timeout {t}: must be greater than 0 and at most 86400 seconds"
                ));
            }
            Some(Duration::from_secs_f64(secs))
        }
    };
    let tls13 = match a.value("--tls-min")?.as_deref() {
        None | Some("1.2") => false,
        Some("1.3") => true,
        Some(other) => return Err(format!("--tls-min {other:?}: use 1.2 or 1.3")),
    };
    let tls12_max = match a.value("--tls-max")?.as_deref() {
        None | Some("1.3") => false,
        Some("1.2") => true,
        Some(other) => return Err(format!("--tls-max {other:?}: use 1.2 or 1.3")),
    };
    if tls12_max && tls13 {
        return Err("--tls-max 1.2 is below --tls-min 1.3".into());
    }
    let days = |name: &str, a: &mut Args| -> Result<Option<u32>, String> {
        a.value(name)?
            .map(|d| {
                d.parse::<u32>()
                    .map_err(|_| format!("{name} {d:?}: a whole number of days"))
            })
            .transpose()
    };
    let warn_days = days("--warn-days", a)?;
    let crit_days = days("--crit-days", a)?;
    if let (Some(w), Some(c)) = (warn_days, crit_days) {
        if c > w {
            return Err(format!("--crit-days {c} is above --warn-days {w}"));
        }
    }
    let mail_from = a.value("--mail-from")?;
    let mut rcpt_to = Vec::new();
    while let Some(r) = a.value("--rcpt-to")? {
        rcpt_to.push(r);
    }
    if mail_from.is_some() == rcpt_to.is_empty() {
        return Err("--mail-from and --rcpt-to go together".into());
    }
    for address in mail_from.iter().chain(&rcpt_to) {
        if let Some(problem) = mail::address_problem(address) {
            return Err(problem);
        }
    }
    if nagios && json {
        return Err("--nagios and --json exclude each other".into());
    }
    let user = a.value("--user")?;
    let password_file = a.value("--password-file")?;
    let token_file = a.value("--oauth2-token-file")?;
    let sasl_external = a.flag(&["--sasl-external"]);
    let authzid = a.value("--authzid")?;
    let database = a.value("--database")?;
    if database.is_some() && user.is_none() {
        return Err("--database needs --user".into());
    }
    // Every spelling, and never its value: `--password=SECRET` must not be echoed either.
    if a.flag_or_assignment("--password") {
        return Err("--password is not accepted (ps would show it): use --password-file or STARTTLS_PASSWORD".into());
    }
    let insecure = a.flag(&["--insecure"]);
    if insecure && (user.is_some() || sasl_external) {
        return Err(
            "--insecure cannot be combined with --user: the password would go to whoever \
             presented the unverified certificate; trust the server's CA with --ca-file instead"
                .into(),
        );
    }
    let login = match (&user, password_file, token_file, sasl_external) {
        (_, Some(_), Some(_), _) => {
            return Err("--password-file and --oauth2-token-file exclude each other".into());
        }
        (Some(_), _, _, true) => {
            return Err("--sasl-external logs in with the certificate: no --user".into());
        }
        (None, _, _, true) => Some(check::Login::ClientCertificate),
        (None, Some(_), _, _) => return Err("--password-file needs --user".into()),
        (None, _, Some(_), _) => return Err("--oauth2-token-file needs --user".into()),
        (None, None, None, false) => None,
        (Some(_), Some(file), None, false) => Some(check::Login::Password(read_secret_file(
            "--password-file",
            &file,
        )?)),
        (Some(_), None, Some(file), false) => Some(check::Login::BearerToken(read_secret_file(
            "--oauth2-token-file",
            &file,
        )?)),
        (Some(_), None, None, false) => Some(check::Login::Password(Zeroizing::new(
            std::env::var("STARTTLS_PASSWORD").map_err(|_| {
                "--user needs a password: --password-file FILE or STARTTLS_PASSWORD".to_owned()
            })?,
        ))),
    };
    let client_cert = a.value("--client-cert")?;
    if sasl_external && client_cert.is_none() {
        return Err("--sasl-external needs --client-cert (and --client-key)".into());
    }
    Ok(CheckOptions {
        user,
        login,
        authzid,
        database,
        url: String::new(),
        ca_file: a.value("--ca-file")?,
        ca_pem: None,
        servername: a.value("--servername")?,
        client_name: a.value("--client-name")?,
        client_cert,
        client_key: a.value("--client-key")?,
        opportunistic: a.flag(&["--opportunistic"]),
        insecure,
        tls13,
        tls12_max,
        mail_from,
        rcpt_to,
        warn_days,
        crit_days,
        nagios,
        timeout,
        json,
        verbose: a.flag(&["-v", "--verbose"]),
    })
}

/// The first line of a password file that only its owner can read (as ssh and fetchmail insist):
/// a file readable by group or others is refused, naming its mode.
/// The first line of a file that holds a secret, refused when group or others may read it.
fn read_secret_file(option: &str, file: &str) -> Result<Zeroizing<String>, String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut f =
        std::fs::File::open(file).map_err(|e| format!("cannot read {option} {file}: {e}"))?;
    let mode = f
        .metadata()
        .map_err(|e| format!("cannot read {option} {file}: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{option} {file} is readable by group or others (mode {:03o}): chmod 600 it",
            mode & 0o777
        ));
    }
    let mut text = Zeroizing::new(String::new());
    f.read_to_string(&mut text)
        .map_err(|e| format!("cannot read {option} {file}: {e}"))?;
    Ok(Zeroizing::new(
        text.lines().next().unwrap_or_default().to_owned(),
    ))
}

impl Report {
    fn usage_failure(message: String) -> Report {
        let opts = CheckOptions::default();
        let mut r = check::check_with_nothing(&opts);
        r.error = Some(ReportError::usage(message));
        r
    }
}

fn serve_command(mut a: Args) -> i32 {
    let parsed = (|| -> Result<serve::ServeOptions, String> {
        if a.flag(&["--help", "-h"]) {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let verbose = a.flag(&["-v", "--verbose"]);
        let protocol = a
            .value("--protocol")?
            .ok_or("--protocol is required")?
            .parse()
            .map_err(|_| format!("unknown protocol (try: {})", check::schemes()))?;
        let max_connections = match a.value("--max-connections")? {
            None => None,
            Some(n) => Some(
                n.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--max-connections {n:?} is not a positive number"))?,
            ),
        };
        let positive = |name: &str, v: Option<String>| -> Result<Option<u64>, String> {
            match v {
                None => Ok(None),
                Some(n) => n
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0 && *n <= 1_000_000)
                    .map(Some)
                    .ok_or(format!("{name} {n:?} is not a number from 1 to 1000000")),
            }
        };
        let max_concurrent = positive("--max-concurrent", a.value("--max-concurrent")?)?
            .unwrap_or(serve::DEFAULT_MAX_CONCURRENT as u64);
        let idle_timeout = positive("--idle-timeout", a.value("--idle-timeout")?)?
            .map_or(serve::DEFAULT_IDLE_TIMEOUT, std::time::Duration::from_secs);
        let opts = serve::ServeOptions {
            max_concurrent: usize::try_from(max_concurrent).unwrap_or(usize::MAX),
            idle_timeout,
            protocol,
            listen: a.value("--listen")?.unwrap_or_else(|| "127.0.0.1:0".into()),
            cert: a.value("--cert")?,
            key: a.value("--key")?,
            domain: a.value("--domain")?.unwrap_or_else(|| "localhost".into()),
            max_connections,
            verbose,
        };
        let rest = a.positionals()?;
        if !rest.is_empty() {
            return Err(format!("unexpected argument {:?}", rest[0]));
        }
        Ok(opts)
    })();
    match parsed {
        Ok(opts) => serve::run(&opts),
        Err(message) => usage_error(&format!("serve: {message}")),
    }
}
