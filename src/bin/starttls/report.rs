//! What `starttls check` found, and how it is told: the human report and the JSON object whose
//! keys are the command's contract.

use std::io::Write;
use std::time::Duration;

use starttls::{Error, ErrorKind, Protocol};

use crate::certinfo::CertInfo;
use crate::json::Json;

/// A parsed `SCHEME://HOST[:PORT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
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
    /// The key exchange group (`X25519MLKEM768`, `X25519`, `secp256r1`).
    pub key_exchange: Option<String>,
    pub alpn: Option<String>,
    pub certificate: Option<CertInfo>,
    pub chain_length: usize,
    pub greeting: Option<String>,
    pub capabilities_before: Vec<String>,
    pub capabilities_after: Vec<String>,
    pub timings: starttls::Timings,
    pub plaintext_reason: Option<String>,
    pub auth: Option<AuthReport>,
    /// `--mail-from`: how the test message went.
    pub mail: Option<crate::mail::MailReport>,
    /// `--tlsa`: the records given, and what DANE decided (`None`: it did not authenticate).
    pub dane: Option<DaneReport>,
    /// `--pin-sha256`: whether the server's key matched a pin (`None`: no pins, or no key seen).
    pub pin: Option<bool>,
    /// `--pin-only`: the pin alone decided.
    pub pin_only: bool,
    pub error: Option<ReportError>,
    pub insecure: bool,
    pub opportunistic: bool,
    /// `--audit`: what the probes found.
    pub audit: Option<crate::audit::Audit>,
}

/// DANE with `--tlsa`.
pub struct DaneReport {
    pub records: Vec<String>,
    pub status: Option<starttls::DaneStatus>,
    /// `--dane`: what DNS said, and which resolver said it.
    pub lookup: Option<DaneLookupReport>,
}

pub struct DaneLookupReport {
    pub found: starttls::DaneLookup,
    pub resolver: String,
}

impl DaneReport {
    fn json(&self) -> Json {
        let matched = match &self.status {
            Some(starttls::DaneStatus::Matched(r)) => Json::str(r.to_string()),
            _ => Json::Null,
        };
        Json::Obj(vec![
            ("records", Json::strings(&self.records)),
            ("matched", matched),
            (
                "no_usable_records",
                Json::Bool(self.status == Some(starttls::DaneStatus::NoUsableRecords)),
            ),
            (
                "lookup",
                self.lookup.as_ref().map_or(Json::Null, |l| {
                    let addresses: Vec<String> =
                        l.found.addresses.iter().map(ToString::to_string).collect();
                    Json::Obj(vec![
                        ("resolver", Json::str(&l.resolver)),
                        ("addresses", Json::strings(&addresses)),
                        ("addresses_secure", Json::Bool(l.found.addresses_secure)),
                        ("tlsa_secure", Json::Bool(l.found.tlsa_secure)),
                        ("applies", Json::Bool(l.found.applies())),
                    ])
                }),
            ),
        ])
    }

    fn human(&self) -> String {
        if let Some(why) = self.lookup.as_ref().and_then(|l| l.found.why_not()) {
            if self.records.is_empty() {
                return format!("not used: {why}");
            }
        }
        match &self.status {
            Some(starttls::DaneStatus::Matched(r)) => format!("authenticated by TLSA {r}"),
            Some(starttls::DaneStatus::NoUsableRecords) => format!(
                "none of the {} TLSA record(s) usable: encrypted, not authenticated by DANE",
                self.records.len()
            ),
            None => format!(
                "NOT authenticated by the {} TLSA record(s)",
                self.records.len()
            ),
        }
    }
}

/// How the login after the upgrade went.
pub struct AuthReport {
    pub mechanism: String,
    /// The channel binding the login was bound to (`tls-exporter`, `tls-server-end-point`).
    pub channel_binding: Option<&'static str>,
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
    /// For `--nagios`: a failure that is CRITICAL (2) rather than WARNING (1) there.
    pub critical: bool,
}

impl ReportError {
    pub fn usage(message: String) -> ReportError {
        ReportError {
            code: ErrorKind::InvalidArgument.name(),
            kind: "usage",
            message,
            server_reply: None,
            exit: 2,
            critical: true,
        }
    }

    /// The server refused the test message: kind `refused`, exit 4, with its reply.
    pub fn refused(message: String, reply: String) -> ReportError {
        ReportError {
            code: ErrorKind::Refused.name(),
            kind: "refused",
            message: format!("{message}: {reply}"),
            server_reply: Some(reply),
            exit: 4,
            critical: true,
        }
    }

    /// The test message could not be sent (the connection broke, a reply was not SMTP).
    pub fn mail_failed(problem: String) -> ReportError {
        ReportError {
            code: ErrorKind::ProtocolViolation.name(),
            kind: "protocol",
            message: format!("sending the test message: {problem}"),
            server_reply: None,
            exit: 6,
            critical: true,
        }
    }

    /// The certificate is inside `--warn-days` (or `--crit-days`, `critical`): kind `expiring`,
    /// exit 11, whatever else went well.
    pub fn expiring(message: String, critical: bool) -> ReportError {
        ReportError {
            code: "STARTTLS_CERT_EXPIRING",
            kind: "expiring",
            message,
            server_reply: None,
            exit: 11,
            critical,
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
                critical: true,
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
            critical: true,
        }
    }
}

impl Report {
    /// An empty report for `url`, checked with `--insecure` / `--opportunistic` as given.
    pub fn new(url: &str, insecure: bool, opportunistic: bool) -> Report {
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
            key_exchange: None,
            alpn: None,
            certificate: None,
            chain_length: 0,
            greeting: None,
            capabilities_before: Vec::new(),
            capabilities_after: Vec::new(),
            timings: starttls::Timings::default(),
            plaintext_reason: None,
            auth: None,
            mail: None,
            dane: None,
            pin: None,
            pin_only: false,
            error: None,
            insecure,
            opportunistic,
            audit: None,
        }
    }

    /// Encrypted and verified (or accepted with --insecure), or a plaintext result reported
    /// under --opportunistic.
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && !self.audit.as_ref().is_some_and(crate::audit::Audit::failed)
            && ((self.encrypted && (self.verified || self.insecure))
                || (!self.encrypted && self.opportunistic))
    }

    pub fn exit_code(&self) -> i32 {
        match &self.error {
            Some(e) => e.exit,
            None if self.ok() => 0,
            // The check passed; the audit found something above "info".
            None if self.audit.as_ref().is_some_and(crate::audit::Audit::failed) => 6,
            None => 5,
        }
    }

    /// The monitoring-plugins form (Nagios, Icinga, ...): one line `STARTTLS STATE - summary |
    /// perfdata` and its exit code: 0 OK, 1 WARNING (expiring inside `--warn-days`), 2
    /// CRITICAL (inside `--crit-days`, or the check failed), 3 UNKNOWN (usage, internal).
    pub fn nagios(&self) -> (String, i32) {
        let (mut state, mut code) = match &self.error {
            None if self.ok() => ("OK", 0),
            None if self.audit.as_ref().is_some_and(crate::audit::Audit::failed) => ("OK", 0),
            None => ("CRITICAL", 2),
            Some(e) if e.exit == 1 || e.exit == 2 => ("UNKNOWN", 3),
            Some(e) if e.kind == "expiring" && !e.critical => ("WARNING", 1),
            Some(_) => ("CRITICAL", 2),
        };
        // The audit's worst finding, when it is worse than the check's own state: a low one
        // WARNING, a medium or high one CRITICAL.
        let audit = match self.audit.as_ref().and_then(crate::audit::Audit::worst) {
            Some(crate::audit::Severity::Low) => ("WARNING", 1),
            Some(crate::audit::Severity::Medium | crate::audit::Severity::High) => ("CRITICAL", 2),
            _ => ("OK", 0),
        };
        if code != 3 && audit.1 > code {
            (state, code) = audit;
        }
        let summary = match &self.error {
            Some(e) => format!("{}: {}{}", self.url, e.message, self.audit_summary()),
            None if !self.ok() && self.audit.is_some() => {
                format!("{}: {}", self.url, self.verdict())
            }
            None => {
                let expiry = self.certificate.as_ref().map_or(String::new(), |c| {
                    format!(", certificate expires in {} day(s)", c.days_left())
                });
                format!("{}: {}{expiry}", self.url, self.verdict())
            }
        };
        let mut perf = format!("time={:.3}s", self.timings.total.as_secs_f64());
        if let Some(c) = &self.certificate {
            perf.push_str(&format!(" days_left={}", c.days_left()));
        }
        // One line: anything the peer said is already escaped; `|` would split the perfdata.
        let summary = summary.replace(['\n', '|'], " ");
        (format!("STARTTLS {state} - {summary} | {perf}"), code)
    }

    /// The usage of the TLSA record that authenticated the server, if one did.
    fn dane_usage(&self) -> Option<u8> {
        match self.dane.as_ref().and_then(|d| d.status.as_ref()) {
            Some(starttls::DaneStatus::Matched(r)) => Some(r.usage),
            _ => None,
        }
    }

    /// "; AUDIT FINDINGS: id (severity), ..." when the audit found anything above info.
    fn audit_summary(&self) -> String {
        let Some(a) = self.audit.as_ref().filter(|a| a.failed()) else {
            return String::new();
        };
        let ids: Vec<String> = a
            .findings
            .iter()
            .filter(|f| f.severity > crate::audit::Severity::Info)
            .map(|f| format!("{} ({})", f.id, f.severity.name()))
            .collect();
        format!("; AUDIT FINDINGS: {}", ids.join(", "))
    }

    pub fn verdict(&self) -> String {
        if let Some(e) = &self.error {
            return format!("FAIL ({}): {}{}", e.code, e.message, self.audit_summary());
        }
        if self.audit.as_ref().is_some_and(crate::audit::Audit::failed) {
            return self.audit_summary()[2..].to_owned();
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
            ("key_exchange", Json::opt_str(self.key_exchange.clone())),
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
                        (
                            "channel_binding",
                            Json::opt_str(a.channel_binding.map(str::to_owned)),
                        ),
                        ("ok", Json::Bool(a.ok)),
                        ("server_reply", Json::opt_str(a.server_reply.clone())),
                    ])
                }),
            ),
            (
                "mail",
                self.mail.as_ref().map_or(Json::Null, |m| {
                    Json::Obj(vec![
                        ("queued", Json::Bool(m.queued)),
                        ("server_reply", Json::str(&m.server_reply)),
                    ])
                }),
            ),
            (
                "dane",
                self.dane.as_ref().map_or(Json::Null, DaneReport::json),
            ),
            ("pin", self.pin.map_or(Json::Null, Json::Bool)),
            (
                "audit",
                self.audit
                    .as_ref()
                    .map_or(Json::Null, crate::audit::Audit::json),
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
            let host = if t.host.contains(':') {
                format!("[{}]", t.host)
            } else {
                t.host.clone()
            };
            line("target", format!("{} {host}:{}", t.protocol, t.port));
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
                    "{}, {}, key exchange {}, ALPN {}",
                    self.tls_version.as_deref().unwrap_or("?"),
                    self.cipher_suite.as_deref().unwrap_or("?"),
                    self.key_exchange.as_deref().unwrap_or("?"),
                    self.alpn.as_deref().unwrap_or("none")
                ),
            );
        }
        if let Some(c) = &self.certificate {
            line("certificate subject", c.subject.clone());
            line("certificate issuer", c.issuer.clone());
            line(
                "certificate key",
                format!("{}, signed {}", c.public_key, c.signature_algorithm),
            );
            line(
                "valid",
                format!(
                    "{} to {} ({} days left)",
                    c.not_before,
                    c.not_after,
                    c.days_left()
                ),
            );
            let names: Vec<String> = c
                .dns_names
                .iter()
                .map(|n| format!("DNS:{n}"))
                .chain(c.ip_addresses.iter().map(|i| format!("IP:{i}")))
                .collect();
            line("names", names.join(", "));
            line("sha256", c.sha256.clone());
            line("key pin", format!("sha256//{}", c.pin_sha256));
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
                    // Say what really authenticated the server: DANE-EE and pin-only check
                    // no name.
                    (true, _, _) if self.dane_usage() == Some(3) => {
                        "authenticated by a DANE-EE record (names and dates not checked)".into()
                    }
                    (true, _, _) if self.pin_only && self.pin == Some(true) => {
                        "authenticated by its key pin alone (no CA, names or dates checked)".into()
                    }
                    (true, _, Some(n)) if self.dane_usage() == Some(2) => {
                        format!("verified for {n} under the DANE-TA record's CA")
                    }
                    (true, _, Some(n)) => format!("verified for {n}"),
                    (true, _, None) => "verified".into(),
                    (false, Some(p), _) => format!("NOT verified: {p}"),
                    (false, None, _) => "not checked (--insecure), chain would pass".into(),
                },
            );
        }
        // The DANE line only once a handshake said something (not for a usage error or a
        // lookup that stopped the check before any connection).
        if let Some(d) = self.dane.as_ref().filter(|_| {
            self.encrypted || self.error.as_ref().is_some_and(|e| e.kind == "certificate")
        }) {
            line("DANE", d.human());
        }
        if let Some(p) = self.pin {
            line(
                "pin check",
                if p {
                    "the key matches a pin".to_owned()
                } else {
                    "the key matches NO pin".to_owned()
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
                    "{}{} {}{}",
                    a.mechanism,
                    a.channel_binding
                        .map(|b| format!(" (bound to the TLS connection: {b})"))
                        .unwrap_or_default(),
                    if a.ok { "succeeded" } else { "FAILED" },
                    a.server_reply
                        .as_deref()
                        .map(|r| format!(": {}", r.replace('\n', " | ")))
                        .unwrap_or_default()
                ),
            );
        }
        if let Some(m) = &self.mail {
            line(
                "test message",
                format!(
                    "{}: {}",
                    if m.queued { "queued" } else { "REFUSED" },
                    m.server_reply.replace('\n', " | ")
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
        if let Some(a) = &self.audit {
            out.push_str(&a.human());
        }
        let mut line = |label: &str, value: String| {
            out.push_str(&format!("{label:<23} {value}\n"));
        };
        line("verdict", self.verdict());
        out
    }
}

pub fn print_report(report: &Report, json: bool) {
    let text = if json {
        format!("{}\n", report.json().render())
    } else {
        report.human()
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
}
