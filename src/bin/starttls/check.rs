//! `starttls check`: connect, upgrade, verify, ask again inside TLS, close politely, report.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use starttls::{
    ClientConfig, Connection, DialogLine, Direction, Error, ErrorKind, Policy, Protocol, Timeouts,
    TlsVersion, Verification,
};

use crate::certinfo::CertInfo;
use crate::json::Json;

/// What `check` was asked to do.
#[derive(Clone, Debug, Default)]
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
    pub tls13: bool,
    pub timeout: Option<Duration>,
    pub json: bool,
    pub verbose: bool,
    /// Log in after the upgrade (`--user`), with this password and authorization identity.
    pub user: Option<String>,
    pub password: Option<String>,
    pub authzid: Option<String>,
}

/// A parsed `SCHEME://HOST[:PORT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
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

/// Everything the report shows.
pub struct Report {
    pub url: String,
    pub target: Option<Target>,
    pub peer_address: Option<String>,
    pub server_name: Option<String>,
    pub starttls_offered: Option<bool>,
    pub encrypted: bool,
    pub verified: bool,
    pub verification_problem: Option<String>,
    pub tls_version: Option<String>,
    pub cipher_suite: Option<String>,
    pub alpn: Option<String>,
    pub certificate: Option<CertInfo>,
    pub chain_length: usize,
    pub greeting: Option<String>,
    pub capabilities_before: Vec<String>,
    pub capabilities_after: Vec<String>,
    pub timings: starttls::Timings,
    pub plaintext_reason: Option<String>,
    pub auth: Option<AuthReport>,
    pub error: Option<ReportError>,
    pub insecure: bool,
    pub opportunistic: bool,
}

/// How the login after the upgrade went.
pub struct AuthReport {
    pub mechanism: String,
    pub ok: bool,
    pub server_reply: Option<String>,
}

/// A failure, in the contract's terms.
pub struct ReportError {
    pub code: &'static str,
    pub kind: &'static str,
    pub message: String,
    pub server_reply: Option<String>,
    pub exit: i32,
}

impl ReportError {
    pub fn usage(message: String) -> ReportError {
        ReportError {
            code: ErrorKind::InvalidArgument.name(),
            kind: "usage",
            message,
            server_reply: None,
            exit: 2,
        }
    }

    /// A failure of the login step: kind `auth`, exit 10, whatever the library's error kind
    /// (rejected, no mechanism inside TLS, not encrypted).
    pub fn auth(e: &Error) -> ReportError {
        match e.kind() {
            ErrorKind::Timeout | ErrorKind::Closed | ErrorKind::Io | ErrorKind::Tls => {
                ReportError::from_error(e)
            }
            _ => ReportError {
                code: e.kind().name(),
                kind: "auth",
                message: e.to_string(),
                server_reply: e.reply().map(str::to_owned),
                exit: 10,
            },
        }
    }

    pub fn from_error(e: &Error) -> ReportError {
        let (kind, exit) = match e.kind() {
            ErrorKind::InvalidArgument => ("usage", 2),
            ErrorKind::Config => ("config", 2),
            ErrorKind::Io | ErrorKind::Resolve => ("network", 8),
            ErrorKind::Closed => ("closed", 8),
            ErrorKind::Timeout => ("timeout", 7),
            ErrorKind::NotOffered | ErrorKind::Downgrade => ("not_offered", 3),
            ErrorKind::Refused => ("refused", 4),
            ErrorKind::ProtocolViolation => ("protocol", 6),
            ErrorKind::Injection => ("injection", 6),
            ErrorKind::NotEncrypted | ErrorKind::AuthFailed => ("auth", 10),
            ErrorKind::Certificate => ("certificate", 5),
            ErrorKind::Tls => ("tls", 9),
            _ => ("internal", 1),
        };
        ReportError {
            code: e.kind().name(),
            kind,
            message: e.to_string(),
            server_reply: e.reply().map(str::to_owned),
            exit,
        }
    }
}

impl Report {
    fn new(url: &str, opts: &CheckOptions) -> Report {
        Report {
            url: url.to_owned(),
            target: None,
            peer_address: None,
            server_name: None,
            starttls_offered: None,
            encrypted: false,
            verified: false,
            verification_problem: None,
            tls_version: None,
            cipher_suite: None,
            alpn: None,
            certificate: None,
            chain_length: 0,
            greeting: None,
            capabilities_before: Vec::new(),
            capabilities_after: Vec::new(),
            timings: starttls::Timings::default(),
            plaintext_reason: None,
            auth: None,
            error: None,
            insecure: opts.insecure,
            opportunistic: opts.opportunistic,
        }
    }

    /// Encrypted and verified (or accepted with --insecure), or a plaintext result reported
    /// under --opportunistic.
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && ((self.encrypted && (self.verified || self.insecure))
                || (!self.encrypted && self.opportunistic))
    }

    pub fn exit_code(&self) -> i32 {
        match &self.error {
            Some(e) => e.exit,
            None if self.ok() => 0,
            None => 5,
        }
    }

    pub fn verdict(&self) -> String {
        if let Some(e) = &self.error {
            return format!("FAIL ({}): {}", e.code, e.message);
        }
        match (self.encrypted, self.verified) {
            (true, true) => format!(
                "OK: encrypted ({}) and verified",
                self.tls_version.as_deref().unwrap_or("TLS")
            ),
            (true, false) => format!(
                "ENCRYPTED, NOT VERIFIED (--insecure): {}",
                self.verification_problem
                    .as_deref()
                    .unwrap_or("not checked")
            ),
            (false, _) => format!(
                "NOT ENCRYPTED (--opportunistic): {}",
                self.plaintext_reason.as_deref().unwrap_or("no TLS")
            ),
        }
    }

    pub fn json(&self) -> Json {
        let t = self.target.as_ref();
        let ms = |d: Option<Duration>| d.map_or(Json::Null, |d| Json::Num(d.as_millis() as u64));
        let error = match &self.error {
            None => Json::Null,
            Some(e) => Json::Obj(vec![
                ("code", Json::str(e.code)),
                ("kind", Json::str(e.kind)),
                ("message", Json::str(&e.message)),
                ("server_reply", Json::opt_str(e.server_reply.clone())),
            ]),
        };
        Json::Obj(vec![
            ("ok", Json::Bool(self.ok())),
            ("url", Json::str(&self.url)),
            ("protocol", Json::opt_str(t.map(|t| t.protocol.scheme()))),
            ("host", Json::opt_str(t.map(|t| t.host.clone()))),
            (
                "port",
                t.map_or(Json::Null, |t| Json::Num(u64::from(t.port))),
            ),
            ("peer_address", Json::opt_str(self.peer_address.clone())),
            ("server_name", Json::opt_str(self.server_name.clone())),
            (
                "starttls_offered",
                self.starttls_offered.map_or(Json::Null, Json::Bool),
            ),
            ("encrypted", Json::Bool(self.encrypted)),
            ("verified", Json::Bool(self.verified)),
            (
                "verification_problem",
                Json::opt_str(self.verification_problem.clone()),
            ),
            ("tls_version", Json::opt_str(self.tls_version.clone())),
            ("cipher_suite", Json::opt_str(self.cipher_suite.clone())),
            ("alpn", Json::opt_str(self.alpn.clone())),
            (
                "certificate",
                self.certificate.as_ref().map_or(Json::Null, CertInfo::json),
            ),
            ("chain_length", Json::Num(self.chain_length as u64)),
            ("greeting", Json::opt_str(self.greeting.clone())),
            (
                "capabilities_before",
                Json::strings(&self.capabilities_before),
            ),
            (
                "capabilities_after",
                Json::strings(&self.capabilities_after),
            ),
            (
                "timings_ms",
                Json::Obj(vec![
                    ("connect", ms(self.timings.connect)),
                    ("starttls", ms(self.timings.dialog)),
                    ("handshake", ms(self.timings.handshake)),
                    ("total", Json::Num(self.timings.total.as_millis() as u64)),
                ]),
            ),
            (
                "auth",
                self.auth.as_ref().map_or(Json::Null, |a| {
                    Json::Obj(vec![
                        ("mechanism", Json::str(&a.mechanism)),
                        ("ok", Json::Bool(a.ok)),
                        ("server_reply", Json::opt_str(a.server_reply.clone())),
                    ])
                }),
            ),
            ("error", error),
        ])
    }

    pub fn human(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            out.push_str(&format!("{label:<23} {value}\n"));
        };
        if let Some(t) = &self.target {
            line("target", format!("{} {}:{}", t.protocol, t.host, t.port));
        }
        if let Some(a) = &self.peer_address {
            line("connected to", a.clone());
        }
        if let Some(g) = &self.greeting {
            line("greeting", g.replace('\n', " | "));
        }
        if !self.capabilities_before.is_empty() {
            line(
                "offered before TLS",
                format!("{} (untrusted)", self.capabilities_before.join(", ")),
            );
        }
        if let Some(o) = self.starttls_offered {
            line(
                "STARTTLS",
                if o {
                    "offered".into()
                } else {
                    "not offered".into()
                },
            );
        }
        if self.encrypted {
            line(
                "TLS",
                format!(
                    "{}, {}, ALPN {}",
                    self.tls_version.as_deref().unwrap_or("?"),
                    self.cipher_suite.as_deref().unwrap_or("?"),
                    self.alpn.as_deref().unwrap_or("none")
                ),
            );
        }
        if let Some(c) = &self.certificate {
            line("certificate subject", c.subject.clone());
            line("certificate issuer", c.issuer.clone());
            line("valid", format!("{} to {}", c.not_before, c.not_after));
            let names: Vec<String> = c
                .dns_names
                .iter()
                .map(|n| format!("DNS:{n}"))
                .chain(c.ip_addresses.iter().map(|i| format!("IP:{i}")))
                .collect();
            line("names", names.join(", "));
            line("sha256", c.sha256.clone());
            line("chain length", self.chain_length.to_string());
        }
        if self.encrypted {
            line(
                "verification",
                match (
                    &self.verified,
                    &self.verification_problem,
                    &self.server_name,
                ) {
                    (true, _, Some(n)) => format!("verified for {n}"),
                    (true, _, None) => "verified".into(),
                    (false, Some(p), _) => format!("NOT verified: {p}"),
                    (false, None, _) => "not checked (--insecure), chain would pass".into(),
                },
            );
        }
        if !self.capabilities_after.is_empty() {
            line("capabilities after TLS", self.capabilities_after.join(", "));
        }
        if let Some(a) = &self.auth {
            line(
                "authentication",
                format!(
                    "{} {}{}",
                    a.mechanism,
                    if a.ok { "succeeded" } else { "FAILED" },
                    a.server_reply
                        .as_deref()
                        .map(|r| format!(": {}", r.replace('\n', " | ")))
                        .unwrap_or_default()
                ),
            );
        }
        let ms =
            |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{} ms", d.as_millis()));
        // Nothing was timed when the check was refused before starting (a bad URL, say).
        if self.error.as_ref().is_none_or(|e| e.exit != 2) {
            line(
                "timings",
                format!(
                    "connect {}, starttls {}, handshake {}, total {} ms",
                    ms(self.timings.connect),
                    ms(self.timings.dialog),
                    ms(self.timings.handshake),
                    self.timings.total.as_millis()
                ),
            );
        }
        line("verdict", self.verdict());
        out
    }
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
    Report::new(&opts.url, opts)
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
    let mut report = Report::new(url, opts);
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
    let result = starttls::connect_named(
        config,
        target.protocol,
        &target.host,
        target.port,
        &server_name,
    );
    match result {
        Ok(mut conn) => fill(&mut report, &mut conn, opts),
        Err(e) => report.error = Some(ReportError::from_error(&e)),
    }
    report
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
    if let (Some(user), Some(password)) = (&opts.user, &opts.password) {
        let mut creds = starttls::Credentials::new(user.clone(), password.clone());
        if let Some(a) = &opts.authzid {
            creds = creds.with_authzid(a.clone());
        }
        match conn.authenticate(&creds) {
            Ok(outcome) => {
                report.auth = Some(AuthReport {
                    mechanism: outcome.mechanism.to_owned(),
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
                    ok: false,
                    server_reply: e.reply().map(str::to_owned),
                });
                report.error = Some(ReportError::auth(&e));
                let _ = conn.quit();
                return;
            }
        }
    }
    // A failed goodbye does not make the upgrade fail: it is over by then.
    let _ = conn.quit();
}

/// `starttls check`: returns the exit status.
pub fn run(opts: &CheckOptions) -> i32 {
    let report = match client_config(opts) {
        Ok((config, capture)) => check_with(&config, &capture, &opts.url, opts),
        Err(e) => {
            let mut r = Report::new(&opts.url, opts);
            r.target = parse_url(&opts.url).ok();
            r.error = Some(ReportError::from_error(&e));
            r
        }
    };
    print_report(&report, opts.json);
    report.exit_code()
}

pub fn print_report(report: &Report, json: bool) {
    let text = if json {
        format!("{}\n", report.json().render())
    } else {
        report.human()
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
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
