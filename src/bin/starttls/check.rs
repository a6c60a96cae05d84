//! `starttls check`: connect, upgrade, verify, ask again inside TLS, close politely, report.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use starttls::{
    ClientConfig, ConnectOptions, Connection, DaneStatus, DialogLine, Direction, Error, Policy,
    Protocol, Timeouts, TlsVersion, TlsaRecord, Verification,
};

use zeroize::Zeroizing;

use crate::certinfo::CertInfo;
use crate::report::{
    AuthReport, DaneLookupReport, DaneReport, Report, ReportError, Target, print_report,
};

/// What proves the identity for `--user` / `--sasl-external`.
#[derive(Clone)]
pub enum Login {
    Password(Zeroizing<String>),
    BearerToken(Zeroizing<String>),
    ClientCertificate,
}

/// What `check` was asked to do. (No `Debug`: it holds the password.)
#[derive(Clone, Default)]
pub struct CheckOptions {
    pub url: String,
    pub ca_file: Option<String>,
    pub ca_pem: Option<String>,
    pub servername: Option<String>,
    pub client_name: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub opportunistic: bool,
    pub insecure: bool,
    /// `--tlsa`: authenticate by these records (DANE).
    pub tlsa: Vec<TlsaRecord>,
    /// `--dane`: look the records (and the addresses) up, through `--resolver` if given.
    pub dane: bool,
    pub resolver: Option<std::net::SocketAddr>,
    /// `--pin-sha256`, and `--pin-only`.
    pub pins: Vec<String>,
    pub pin_only: bool,
    pub tls13: bool,
    /// `--tls-max 1.2`: offer TLS 1.2 only.
    pub tls12_max: bool,
    /// `--warn-days` / `--crit-days`: a certificate with at most this many days left fails
    /// with kind `expiring` (exit 11).
    pub warn_days: Option<u32>,
    pub crit_days: Option<u32>,
    /// `--nagios`: the monitoring-plugins line and exit codes.
    pub nagios: bool,
    /// `--mail-from` / `--rcpt-to`: a test message after the upgrade and the login.
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    pub timeout: Option<Duration>,
    pub json: bool,
    pub verbose: bool,
    /// Log in after the upgrade (`--user`, `--sasl-external`), with this proof and authorization
    /// identity.
    pub user: Option<String>,
    pub login: Option<Login>,
    pub authzid: Option<String>,
    /// PostgreSQL and MySQL: the database to log in to, or to use.
    pub database: Option<String>,
    /// `--audit`: probe the server with the attacks the library refuses.
    pub audit: bool,
}

/// Parses the URL: any scheme the library knows, a name, an IPv4 address or `[IPv6]`, and an
/// optional port (the protocol's usual one otherwise). A trailing `/` is allowed.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not SCHEME://HOST[:PORT]"))?;
    let protocol: Protocol = scheme
        .parse()
        .map_err(|_| format!("unknown scheme {scheme:?} (try: {})", schemes()))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!("{url:?}: only SCHEME://HOST[:PORT] is accepted"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed [IPv6] address"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{url:?}: {h:?} is not an IPv6 address"));
        }
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("{url:?}: junk after the address")),
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((_, _)) if authority.parse::<std::net::Ipv6Addr>().is_ok() => {
                let port = protocol
                    .default_port()
                    .map_or_else(|| ":PORT".to_owned(), |p| format!(":{p}"));
                return Err(format!(
                    "{url:?}: an IPv6 address goes in brackets: {scheme}://[{authority}]{port}"
                ));
            }
            Some((h, _)) if h.contains(':') => {
                return Err(format!(
                    "{url:?}: an IPv6 address goes in brackets, with the port after them: \
                     {scheme}://[ADDRESS]:PORT"
                ));
            }
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
        None => protocol
            .default_port()
            .ok_or_else(|| format!("{url:?}: scheme {scheme} has no default port"))?,
    };
    Ok(Target {
        protocol,
        host,
        port,
    })
}

pub fn schemes() -> String {
    Protocol::ALL
        .iter()
        .map(|p| p.scheme())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The dialog as it happens, kept for the report when the upgrade fails half-way.
pub type Capture = Arc<Mutex<Vec<DialogLine>>>;

/// Builds the client config from the options; the capture records every dialog line.
pub fn client_config(opts: &CheckOptions) -> Result<(ClientConfig, Capture), Error> {
    let capture: Capture = Arc::default();
    let sink = capture.clone();
    let mut b = ClientConfig::builder().timeouts(Timeouts::all(
        opts.timeout.unwrap_or(Duration::from_secs(10)),
    ));
    if let Some(ca) = &opts.ca_file {
        b = b.trust_ca_file(ca);
    }
    if let Some(pem) = &opts.ca_pem {
        b = b.trust_ca_pem(pem.clone().into_bytes());
    }
    if let Some(n) = &opts.client_name {
        b = b.client_name(n);
    }
    match (&opts.client_cert, &opts.client_key) {
        (Some(c), Some(k)) => b = b.client_auth_files(c, k),
        (None, None) => {}
        _ => {
            return Err(Error::InvalidArgument(
                "--client-cert and --client-key go together".into(),
            ));
        }
    }
    if opts.opportunistic {
        b = b.policy(Policy::Opportunistic);
    }
    if opts.insecure {
        b = b.dangerous_accept_any_certificate(true);
    }
    if opts.tls12_max {
        b = b.max_tls_version(TlsVersion::Tls12);
    }
    for pin in &opts.pins {
        b = b.pin_sha256(pin);
    }
    b = b.pin_only(opts.pin_only);
    // The operator's own choice, as with curl and Firefox: set SSLKEYLOGFILE to get the keys.
    if std::env::var_os("SSLKEYLOGFILE").is_some_and(|f| !f.is_empty()) {
        b = b.key_log_from_env(true);
    }
    if opts.tls13 {
        b = b.min_tls_version(TlsVersion::Tls13);
    }
    let (verbose, to_stderr) = (opts.verbose, opts.json);
    b = b.on_dialog_line(move |l: &DialogLine| {
        if verbose {
            print_dialog_line(l, to_stderr);
        }
        if let Ok(mut lines) = sink.lock() {
            lines.push(l.clone());
        }
    });
    Ok((b.build()?, capture))
}

fn print_dialog_line(l: &DialogLine, to_stderr: bool) {
    let who = match l.direction {
        Direction::Sent => "C:",
        Direction::Received => "S:",
    };
    let tls = if l.encrypted { " [TLS]" } else { "" };
    let text = format!("{who}{tls} {}\n", l.text);
    if to_stderr {
        let _ = std::io::stderr().write_all(text.as_bytes());
    } else {
        let _ = std::io::stdout().write_all(text.as_bytes());
    }
}

fn tls_version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}"),
    }
}

/// An empty report (for failures before anything was tried).
pub fn check_with_nothing(opts: &CheckOptions) -> Report {
    Report::new(&opts.url, opts.insecure, opts.opportunistic)
}

/// Runs the check with a ready config (shared by `demo`).
pub fn check_with(
    config: &ClientConfig,
    capture: &Capture,
    url: &str,
    opts: &CheckOptions,
) -> Report {
    let started = Instant::now();
    if let Ok(mut lines) = capture.lock() {
        lines.clear();
    }
    let mut report = check_inner(config, url, opts);
    if report.error.is_some() {
        fill_from_dialog(&mut report, capture);
    }
    report.timings.total = started.elapsed();
    report
}

/// After a failure: what the dialog showed before it (greeting, whether STARTTLS was offered).
fn fill_from_dialog(report: &mut Report, capture: &Capture) {
    let Ok(lines) = capture.lock() else { return };
    let greeting: Vec<&str> = lines
        .iter()
        .take_while(|l| l.direction == Direction::Received)
        .map(|l| l.text.as_str())
        .collect();
    if !greeting.is_empty() && report.greeting.is_none() {
        report.greeting = Some(greeting.join("\n"));
    }
    let implicit = report
        .target
        .as_ref()
        .is_none_or(|t| t.protocol.is_implicit());
    if let (false, Some(e)) = (implicit, &report.error) {
        report.starttls_offered = match e.kind {
            "not_offered" => Some(false),
            "refused" if !greeting.is_empty() && lines.len() > greeting.len() + 1 => Some(true),
            "injection" | "tls" | "certificate" => Some(true),
            _ => None,
        };
    }
}

fn check_inner(config: &ClientConfig, url: &str, opts: &CheckOptions) -> Report {
    let mut report = Report::new(url, opts.insecure, opts.opportunistic);
    let target = match parse_url(url) {
        Ok(t) => t,
        Err(e) => {
            report.error = Some(ReportError::usage(e));
            return report;
        }
    };
    report.target = Some(target.clone());
    let server_name = opts
        .servername
        .clone()
        .unwrap_or_else(|| target.host.clone());
    report.server_name = Some(server_name.clone());
    report.pin_only = opts.pin_only;
    if !opts.tlsa.is_empty() || opts.dane {
        report.dane = Some(DaneReport {
            records: opts.tlsa.iter().map(ToString::to_string).collect(),
            status: None,
            lookup: None,
        });
    }
    let options = ConnectOptions::new()
        .server_name(&server_name)
        .tlsa(opts.tlsa.iter().cloned());
    let result = if opts.dane {
        match dane_lookup(&target, opts) {
            Ok((found, resolver)) => {
                if let Some(d) = &mut report.dane {
                    if found.applies() {
                        d.records.extend(found.tlsa.iter().map(ToString::to_string));
                    }
                    d.lookup = Some(DaneLookupReport {
                        found: found.clone(),
                        resolver,
                    });
                }
                starttls::connect_dane(
                    config,
                    target.protocol,
                    &target.host,
                    target.port,
                    &found,
                    &options,
                )
            }
            Err(e) => {
                // Fails closed: nothing was sent to the server.
                let mut error = ReportError::from_error(&e);
                if e.kind() == starttls::ErrorKind::Resolve {
                    error.kind = "dane";
                    error.exit = 5;
                }
                report.error = Some(error);
                return report;
            }
        }
    } else {
        starttls::connect_with(config, target.protocol, &target.host, target.port, &options)
    };
    let leaf = match result {
        Ok(mut conn) => {
            if let (Some(d), Some(status)) = (&mut report.dane, conn.dane()) {
                d.status = Some(status.clone());
                // SMTP with none usable: encrypted, not authenticated (RFC 7672 §2.2), which a
                // check reports as the DANE failure it is.
                if *status == DaneStatus::NoUsableRecords
                    && conn.verification() != &Verification::Verified
                {
                    report.error = Some(ReportError {
                        code: "STARTTLS_ERR_CERTIFICATE",
                        kind: "dane",
                        message: "no usable TLSA record: encrypted but not authenticated \
                                  (RFC 7672 §2.2)"
                            .into(),
                        server_reply: None,
                        exit: 5,
                        critical: true,
                    });
                }
            }
            let leaf = conn.peer_certificates().and_then(|c| c.first().cloned());
            fill(&mut report, &mut conn, opts);
            leaf
        }
        Err(e) => {
            // A rejected certificate is still reported: what it says, and why it was refused.
            let leaf = e.presented_chain().and_then(|c| c.first().cloned());
            if let Some(chain) = e.presented_chain() {
                report.chain_length = chain.len();
                report.certificate = chain.first().and_then(CertInfo::parse);
            }
            report.error = Some(ReportError::from_error(&e));
            leaf
        }
    };
    // Whether the key matched a pin, however the check went (a pin is the first thing to
    // look at when the server's key changed).
    if !opts.pins.is_empty() {
        let pin = leaf.and_then(|c| starttls::pin_sha256(&c));
        report.pin = pin.map(|p| {
            opts.pins
                .iter()
                .any(|given| given.trim().trim_start_matches("sha256//") == p)
        });
    }
    report
}

/// `--dane`: the addresses and TLSA records through the resolver, and which resolver.
fn dane_lookup(
    target: &Target,
    opts: &CheckOptions,
) -> Result<(starttls::DaneLookup, String), Error> {
    // A resolver the operator names is trusted to validate; resolv.conf's only on loopback or
    // with `options trust-ad` (as glibc decides).
    let resolver = match opts.resolver {
        Some(addr) => starttls::Resolver::at(addr).trust_ad(true),
        None => starttls::Resolver::system()?,
    };
    let mut names: Vec<String> = resolver.servers().iter().map(ToString::to_string).collect();
    if !resolver.trusts_ad() {
        names.push("(AD not believed: not loopback, no trust-ad in resolv.conf)".into());
    }
    let timeout = opts.timeout.unwrap_or(Duration::from_secs(10));
    let found = starttls::lookup_dane(&resolver, &target.host, target.port, timeout)?;
    Ok((found, names.join(", ")))
}

fn fill(report: &mut Report, conn: &mut Connection, opts: &CheckOptions) {
    report.peer_address = conn.peer_addr().map(|a| a.to_string());
    report.starttls_offered = conn.starttls_offered();
    report.encrypted = conn.is_encrypted();
    report.greeting = conn.greeting().map(str::to_owned);
    report.capabilities_before = conn
        .capabilities_before_tls()
        .map(|c| c.get_untrusted().clone())
        .unwrap_or_default();
    report.plaintext_reason = conn.plaintext_reason().map(ToString::to_string);
    match conn.verification() {
        Verification::Verified => report.verified = true,
        Verification::Skipped { problem } => report.verification_problem = problem.clone(),
        _ => {}
    }
    report.tls_version = conn.tls_version().map(tls_version_name);
    report.cipher_suite = conn.cipher_suite_name();
    report.key_exchange = conn.key_exchange_group();
    report.alpn = conn
        .alpn_protocol()
        .map(|a| String::from_utf8_lossy(a).into_owned());
    if let Some(chain) = conn.peer_certificates() {
        report.chain_length = chain.len();
        report.certificate = chain.first().and_then(CertInfo::parse);
    }
    report.timings = conn.timings();
    if conn.is_encrypted() {
        let has_caps = !matches!(
            conn.protocol(),
            Protocol::Tls
                | Protocol::Postgres
                | Protocol::PostgresDirect
                | Protocol::Mysql
                | Protocol::Http
                | Protocol::Https
                | Protocol::Ldap
                | Protocol::Ldaps
        );
        if has_caps {
            match conn.fetch_capabilities() {
                Ok(caps) => report.capabilities_after = caps.to_vec(),
                Err(e) => {
                    report.error = Some(ReportError::from_error(&e));
                    return;
                }
            }
        }
    }
    if let Some(login) = &opts.login {
        let user = opts.user.as_deref().unwrap_or_default();
        let mut creds = match login {
            Login::Password(p) => starttls::Credentials::new(user, p.as_str()),
            Login::BearerToken(t) => starttls::Credentials::bearer_token(user, t.as_str()),
            Login::ClientCertificate => starttls::Credentials::client_certificate(),
        };
        if let Some(a) = &opts.authzid {
            creds = creds.with_authzid(a.clone());
        }
        if let Some(d) = &opts.database {
            creds = creds.with_database(d.clone());
        }
        match conn.authenticate(&creds) {
            Ok(outcome) => {
                report.auth = Some(AuthReport {
                    mechanism: outcome.mechanism.to_owned(),
                    channel_binding: outcome.channel_binding,
                    ok: true,
                    server_reply: Some(outcome.reply),
                });
            }
            Err(e) => {
                let mechanism = match &e {
                    Error::AuthFailed { mechanism, .. } => (*mechanism).to_owned(),
                    _ => "none".to_owned(),
                };
                report.auth = Some(AuthReport {
                    mechanism,
                    channel_binding: None,
                    ok: false,
                    server_reply: e.reply().map(str::to_owned),
                });
                report.error = Some(ReportError::auth(&e));
                let _ = conn.quit();
                return;
            }
        }
    }
    if let Some(from) = &opts.mail_from {
        let tls = report.tls_version.clone().unwrap_or_else(|| "TLS".into());
        let protocol = conn.protocol();
        match crate::mail::send_test_message(conn, protocol, from, &opts.rcpt_to, &tls) {
            Ok(mail) => {
                if !mail.queued {
                    report.error = Some(ReportError::refused(
                        "the test message was refused".into(),
                        mail.server_reply.clone(),
                    ));
                }
                report.mail = Some(mail);
            }
            Err(problem) => {
                report.error = Some(ReportError::mail_failed(problem));
                return;
            }
        }
    }
    // A failed goodbye does not make the upgrade fail: it is over by then.
    let _ = conn.quit();
}

/// `starttls check`: returns the exit status.
pub fn run(opts: &CheckOptions) -> i32 {
    // A test message to a protocol that cannot carry one is a usage error, as is a login asked
    // of a protocol without one: before anything is sent.
    if let (Some(_), Ok(target)) = (&opts.mail_from, parse_url(&opts.url)) {
        if !crate::mail::speaks_smtp(target.protocol) {
            let mut r = Report::new(&opts.url, opts.insecure, opts.opportunistic);
            r.target = Some(target.clone());
            r.error = Some(ReportError::usage(format!(
                "--mail-from and --rcpt-to need smtp, submission, smtps or lmtp, not {}",
                target.protocol
            )));
            return finish(r, opts);
        }
    }
    if let (Some(_), Ok(target)) = (&opts.login, parse_url(&opts.url)) {
        if !target.protocol.has_login() {
            let mut r = Report::new(&opts.url, opts.insecure, opts.opportunistic);
            r.target = Some(target.clone());
            r.error = Some(ReportError::usage(format!(
                "{} has no login step: --user, --oauth2-token-file and --sasl-external \
                 are for mail, LDAP, XMPP, FTP, NNTP, ManageSieve and PostgreSQL",
                target.protocol
            )));
            return finish(r, opts);
        }
    }
    let report = match client_config(opts) {
        Ok((config, capture)) => check_with(&config, &capture, &opts.url, opts),
        Err(e) => {
            let mut r = Report::new(&opts.url, opts.insecure, opts.opportunistic);
            r.target = parse_url(&opts.url).ok();
            r.error = Some(ReportError::from_error(&e));
            r
        }
    };
    let mut report = judge_expiry(report, opts);
    if opts.audit {
        report.audit = audit(&report, opts);
    }
    finish(report, opts)
}

/// `--audit`, after the check: unless the check could not reach the server at all (a usage
/// error, a failed DANE lookup, the network), when the probes could not either.
fn audit(report: &Report, opts: &CheckOptions) -> Option<crate::audit::Audit> {
    let target = report.target.as_ref()?;
    if report
        .error
        .as_ref()
        .is_some_and(|e| matches!(e.kind, "usage" | "config" | "dane" | "network" | "timeout"))
    {
        return None;
    }
    let server_name = opts.servername.as_deref().unwrap_or(&target.host);
    let timeout = opts.timeout.unwrap_or(Duration::from_secs(10));
    Some(crate::audit::run(
        target.protocol,
        &target.host,
        target.port,
        server_name,
        opts.client_name.as_deref(),
        timeout,
    ))
}

/// Prints the report in the form asked for; the exit status.
fn finish(report: Report, opts: &CheckOptions) -> i32 {
    if opts.nagios {
        let (line, code) = report.nagios();
        println!("{line}");
        return code;
    }
    print_report(&report, opts.json);
    report.exit_code()
}

/// With `--warn-days`/`--crit-days`, a check that otherwise passed fails as `expiring` (exit 11)
/// when the certificate has at most that many days left.
fn judge_expiry(mut report: Report, opts: &CheckOptions) -> Report {
    if report.error.is_some() || !report.ok() {
        return report;
    }
    let Some(days) = report.certificate.as_ref().map(CertInfo::days_left) else {
        return report;
    };
    let critical = opts.crit_days.is_some_and(|c| days <= i64::from(c));
    let warning = opts.warn_days.is_some_and(|w| days <= i64::from(w));
    if critical || warning {
        let (limit, name) = if critical {
            (opts.crit_days, "--crit-days")
        } else {
            (opts.warn_days, "--warn-days")
        };
        report.error = Some(ReportError::expiring(
            format!(
                "the certificate expires in {days} day(s) ({name} {})",
                limit.unwrap_or_default()
            ),
            critical,
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("smtp://mx.example.org").unwrap();
        assert_eq!(
            (t.protocol, t.host.as_str(), t.port),
            (Protocol::Smtp, "mx.example.org", 25)
        );
        let t = parse_url("imaps://[::1]:10993/").unwrap();
        assert_eq!(
            (t.protocol, t.host.as_str(), t.port),
            (Protocol::Imaps, "::1", 10993)
        );
        let t = parse_url("xmpp-server://example.org").unwrap();
        assert_eq!(t.port, 5269);
        for bad in [
            "mx.example.org",
            "gopher://x",
            "smtp://",
            "smtp://x:0",
            "smtp://x:99999",
            "smtp://[::1",
            "smtp://[nope]:25",
            "smtp://user@x",
            "smtp://x/path",
            "tls://x",
            "smtp://::1",
            "smtp://2001:db8::1:25",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let err = parse_url("imap://::1").unwrap_err();
        assert!(err.contains("imap://[::1]:143"), "{err}");
        let err = parse_url("tls://2001:db8::5").unwrap_err();
        assert!(err.contains("tls://[2001:db8::5]:PORT"), "{err}");
    }

    #[test]
    fn suite_names_are_iana() {
        assert_eq!(
            starttls::iana_cipher_suite_name(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384),
            "TLS_AES_256_GCM_SHA384"
        );
        assert_eq!(
            starttls::iana_cipher_suite_name(
                rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            ),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
    }
}
