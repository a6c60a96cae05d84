//! `starttls`: test a server's STARTTLS from the shell, serve it to mail clients, or watch the
//! whole thing work on loopback. A thin user of the library's Rust API.
//!
//! The options, output and exit codes are a published contract: see README.md.

mod apps;
mod audit;
mod certinfo;
mod check;
mod cli;
mod demo;
mod json;
mod mail;
mod mx;
mod pki;
mod report;
mod serve;
mod tunnel;

use std::ffi::OsString;

use clap::FromArgMatches;
use zeroize::Zeroizing;

use check::CheckOptions;
use cli::{CheckArgs, Cli, Command, MxArgs, ServeArgs, TunnelArgs};
use report::{Report, ReportError};

fn main() {
    std::process::exit(run(std::env::args_os().collect()));
}

fn run(args: Vec<OsString>) -> i32 {
    // Two words outside clap's declaration, so that completions never offer them: the old
    // spelling of --version, and the build step that writes the manual pages (see Makefile).
    match args.get(1..).unwrap_or_default() {
        [v] if v == "version" => {
            println!("{}", starttls::version());
            return 0;
        }
        [m, dir] if m == "manpages" => {
            let dir = std::path::Path::new(dir);
            return match cli::write_manpages(dir) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!(
                        "starttls: cannot write the manual pages into {}: {e}",
                        dir.display()
                    );
                    1
                }
            };
        }
        _ => {}
    }
    let (is_check, json, nagios) = check_output_form(&args);
    // Refused before clap sees it, so that no message can echo the value (`--password=SECRET`).
    // Not declared to clap at all: clap would suggest it for every typo near it.
    let words = args.iter().skip(1).take_while(|a| *a != "--");
    if is_check
        && words
            .filter_map(|w| w.to_str())
            .any(|w| w == "--password" || w.starts_with("--password="))
    {
        return check_usage_error(
            "--password is not accepted (ps would show it): use --password-file or STARTTLS_PASSWORD",
            json,
            nagios,
        );
    }
    let cli = match cli::command()
        .try_get_matches_from(&args)
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m))
    {
        Ok(cli) => cli,
        Err(e) => return parse_failure(&e, is_check, json, nagios),
    };
    match cli.command {
        Command::Check(a) => {
            let (json, nagios) = (a.json, a.nagios);
            match check_options(*a) {
                Ok(opts) => check::run(&opts),
                Err(message) => check_usage_error(&message, json, nagios),
            }
        }
        Command::Serve(a) => serve::run(&serve_options(a)),
        Command::Tunnel(a) => tunnel::run(&tunnel_options(*a)),
        Command::Mx(a) => mx::run(&mx_options(a)),
        Command::Demo => demo::run(),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut cli::command(),
                "starttls",
                &mut std::io::stdout(),
            );
            0
        }
    }
}

/// Whether this is `check`, and whether it asked for `--json` or `--nagios`: a command line clap
/// refuses still gets its answer in the form the caller parses.
fn check_output_form(args: &[OsString]) -> (bool, bool, bool) {
    let words: Vec<&OsString> = args.iter().skip(1).take_while(|a| *a != "--").collect();
    let is_check = words.first().is_some_and(|w| *w == "check");
    let json = is_check && words.iter().any(|w| *w == "--json");
    let nagios = is_check && words.iter().any(|w| *w == "--nagios");
    (is_check, json, nagios)
}

/// A command line clap refused (or `--help`/`--version`, which clap reports the same way).
fn parse_failure(e: &clap::Error, is_check: bool, json: bool, nagios: bool) -> i32 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    if is_check && (json || nagios) {
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let message = first.strip_prefix("error: ").unwrap_or(first);
        return check_usage_error(message, json, nagios);
    }
    let _ = e.print();
    2
}

fn check_usage_error(message: &str, json: bool, nagios: bool) -> i32 {
    if nagios {
        // The monitoring-plugins form of a usage error: UNKNOWN.
        println!("STARTTLS UNKNOWN - usage: {}", message.replace('|', " "));
        3
    } else if json {
        let mut report = Report::usage_failure(message.to_owned());
        report.url = String::new();
        report::print_report(&report, true);
        2
    } else {
        eprintln!("starttls: check: {message}\n(starttls check --help lists the options)");
        2
    }
}

/// What clap cannot say alone: the checks that look at several options, and reading secrets.
fn check_options(a: CheckArgs) -> Result<CheckOptions, String> {
    let tls13 = a.tls_min == "1.3";
    let tls12_max = a.tls_max == "1.2";
    if tls12_max && tls13 {
        return Err("--tls-max 1.2 is below --tls-min 1.3".into());
    }
    if let (Some(w), Some(c)) = (a.warn_days, a.crit_days) {
        if c > w {
            return Err(format!("--crit-days {c} is above --warn-days {w}"));
        }
    }
    for address in a.mail_from.iter().chain(&a.rcpt_to) {
        if let Some(problem) = mail::address_problem(address) {
            return Err(problem);
        }
    }
    if a.insecure && (!a.tlsa.is_empty() || !a.pin_sha256.is_empty() || a.dane) {
        return Err(
            "--insecure would ignore --tlsa, --dane and --pin-sha256: use one or the other".into(),
        );
    }
    if a.insecure && (a.user.is_some() || a.sasl_external) {
        return Err(
            "--insecure cannot be combined with --user: the password would go to whoever \
             presented the unverified certificate; trust the server's CA with --ca-file instead"
                .into(),
        );
    }
    let login = match (
        &a.user,
        &a.password_file,
        &a.oauth2_token_file,
        a.sasl_external,
    ) {
        (None, _, _, true) => Some(check::Login::ClientCertificate),
        (None, Some(_), _, _) => return Err("--password-file needs --user".into()),
        (None, _, Some(_), _) => return Err("--oauth2-token-file needs --user".into()),
        (None, None, None, false) => None,
        (Some(_), Some(file), _, _) => Some(check::Login::Password(read_secret_file(
            "--password-file",
            file,
        )?)),
        (Some(_), None, Some(file), _) => Some(check::Login::BearerToken(read_secret_file(
            "--oauth2-token-file",
            file,
        )?)),
        (Some(_), None, None, _) => Some(check::Login::Password(Zeroizing::new(
            std::env::var("STARTTLS_PASSWORD").map_err(|_| {
                "--user needs a password: --password-file FILE or STARTTLS_PASSWORD".to_owned()
            })?,
        ))),
    };
    Ok(CheckOptions {
        user: a.user,
        login,
        authzid: a.authzid,
        database: a.database,
        url: a.url,
        ca_file: a.ca_file,
        ca_pem: None,
        servername: a.servername,
        client_name: a.client_name,
        client_cert: a.client_cert,
        client_key: a.client_key,
        opportunistic: a.opportunistic,
        insecure: a.insecure,
        tlsa: a.tlsa,
        dane: a.dane,
        resolver: a.resolver,
        pins: a.pin_sha256,
        pin_only: a.pin_only,
        tls13,
        tls12_max,
        mail_from: a.mail_from,
        rcpt_to: a.rcpt_to,
        warn_days: a.warn_days,
        crit_days: a.crit_days,
        nagios: a.nagios,
        timeout: Some(a.timeout),
        json: a.json,
        verbose: a.verbose,
        audit: a.audit,
    })
}

/// The first line of a file that holds a secret, refused when group or others may read it (as
/// ssh and fetchmail insist), naming its mode.
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

fn serve_options(a: ServeArgs) -> serve::ServeOptions {
    serve::ServeOptions {
        max_concurrent: usize::try_from(a.max_concurrent).unwrap_or(usize::MAX),
        idle_timeout: std::time::Duration::from_secs(a.idle_timeout),
        protocol: a.protocol,
        listen: a.listen,
        cert: a.cert,
        key: a.key,
        domain: a.domain,
        max_connections: a.max_connections,
        verbose: a.verbose,
    }
}

fn tunnel_options(a: TunnelArgs) -> tunnel::TunnelOptions {
    let mode = match (a.terminate, a.front) {
        (true, _) => tunnel::Mode::Terminate,
        (_, true) => tunnel::Mode::Front,
        _ => tunnel::Mode::Raw,
    };
    tunnel::TunnelOptions {
        mode,
        protocol: a.protocol,
        listen: a.listen,
        connect: a.connect,
        servername: a.servername,
        ca_file: a.ca_file,
        client_name: a.client_name,
        cert: a.cert,
        key: a.key,
        domain: a.domain,
        max_connections: a.max_connections,
        max_concurrent: usize::try_from(a.max_concurrent).unwrap_or(usize::MAX),
        idle_timeout: std::time::Duration::from_secs(a.idle_timeout),
        timeout: a.timeout,
        verbose: a.verbose,
    }
}

fn mx_options(a: MxArgs) -> mx::MxOptions {
    mx::MxOptions {
        domain: a.domain,
        resolver: a.resolver,
        ca_file: a.ca_file,
        port: a.port,
        timeout: a.timeout,
        client_name: a.client_name,
        json: a.json,
        nagios: a.nagios,
    }
}
