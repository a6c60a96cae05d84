//! `starttls mx DOMAIN`: a mail domain's inbound transport security as a sending MTA that
//! honours DANE (RFC 7672) and MTA-STS (RFC 8461) sees it: the MX set, each MX host's
//! addresses checked over STARTTLS, DANE from validated TLSA records, the MTA-STS policy
//! fetched over HTTPS, the TLS-RPT record, and a verdict per MX and for the domain.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use starttls::{
    ClientConfig, ConnectOptions, DaneStatus, MtaSts, MtaStsMode, Protocol, Resolver, Timeouts,
    TlsRptRecord, Verification,
};

use crate::json::Json;
use crate::report::ReportError;

pub struct MxOptions {
    pub domain: String,
    pub resolver: Option<SocketAddr>,
    pub ca_file: Option<String>,
    pub port: u16,
    pub timeout: Duration,
    pub client_name: Option<String>,
    pub json: bool,
    pub nagios: bool,
}

/// What a sending MTA would do with one MX (or the domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Deliver over TLS authenticated by DANE or MTA-STS.
    Secure,
    /// Deliver over TLS that nothing authenticates (opportunistic).
    Unauthenticated,
    /// Deliver in plaintext (no STARTTLS, and nothing requires it).
    Plaintext,
    /// Do not deliver: DANE or an enforced MTA-STS policy is not met, or the host is down.
    Refuse,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::Secure => "secure",
            Verdict::Unauthenticated => "unauthenticated",
            Verdict::Plaintext => "plaintext",
            Verdict::Refuse => "refuse",
        }
    }

    /// The exit code, as `check` counts: 0 authenticated TLS, 3 plaintext, 5 not
    /// authenticated (or refused for want of it).
    fn exit(self) -> i32 {
        match self {
            Verdict::Secure => 0,
            Verdict::Plaintext => 3,
            Verdict::Unauthenticated | Verdict::Refuse => 5,
        }
    }
}

/// One address of one MX host, checked.
struct AddressResult {
    address: IpAddr,
    /// The TLS details when an upgrade succeeded (authenticated or not).
    tls: Option<Tls>,
    /// Authenticated by DANE (a record matched), or by the CAs for the MX name.
    dane_matched: Option<String>,
    pkix_verified: bool,
    /// Why the authenticated upgrade failed (certificate, DANE), or why no TLS at all.
    error: Option<ReportError>,
    plaintext_only: bool,
    time: Duration,
}

struct Tls {
    version: String,
    cipher_suite: String,
    subject: Option<String>,
    days_left: Option<i64>,
}

struct HostResult {
    preference: u16,
    host: String,
    dane: Option<starttls::DaneLookup>,
    /// Why DANE does not apply, in words.
    dane_why_not: Option<String>,
    lookup_error: Option<ReportError>,
    /// Whether the MTA-STS policy lists this host (`None`: no policy).
    sts_listed: Option<bool>,
    addresses: Vec<AddressResult>,
    verdict: Verdict,
    reason: String,
}

pub fn run(opts: &MxOptions) -> i32 {
    let started = Instant::now();
    let domain = opts.domain.trim_end_matches('.').to_ascii_lowercase();
    let resolver = match opts.resolver {
        Some(a) => Resolver::at(a).trust_ad(true),
        None => match Resolver::system() {
            Ok(r) => r,
            Err(e) => return fail(opts, &format!("no resolver: {e}"), 8),
        },
    };
    let mut b = ClientConfig::builder()
        .timeouts(Timeouts::all(opts.timeout))
        .session_resumption(false);
    if let Some(ca) = &opts.ca_file {
        b = b.trust_ca_file(ca);
    }
    if let Some(n) = &opts.client_name {
        b = b.client_name(n);
    }
    let config = match b.build() {
        Ok(c) => c,
        Err(e) => return fail(opts, &e.to_string(), 2),
    };
    let mut insecure = ClientConfig::builder()
        .timeouts(Timeouts::all(opts.timeout))
        .dangerous_accept_any_certificate(true)
        .session_resumption(false);
    if let Some(n) = &opts.client_name {
        insecure = insecure.client_name(n);
    }
    let insecure = match insecure.build() {
        Ok(c) => c,
        Err(e) => return fail(opts, &e.to_string(), 2),
    };

    // The MX set (RFC 5321 §5.1: none means the domain itself; RFC 7505: "0 ." means none).
    let mx = match resolver.lookup_mx(&domain, opts.timeout) {
        Ok(a) => a,
        Err(e) => return fail(opts, &format!("the MX lookup failed: {e}"), 8),
    };
    let null_mx = mx.records.len() == 1 && mx.records[0].1.is_empty();
    let implicit = mx.records.is_empty();
    let hosts: Vec<(u16, String)> = if implicit {
        vec![(0, domain.clone())]
    } else {
        mx.records
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .cloned()
            .collect()
    };

    let sts = starttls::mta_sts_policy(&resolver, &config, &domain, opts.timeout);
    let policy = sts.as_ref().ok().and_then(|s| s.policy.clone());
    let rpt = resolver
        .lookup_txt(&format!("_smtp._tls.{domain}"), opts.timeout)
        .and_then(|a| TlsRptRecord::from_txt(&a.records));

    let mut results = Vec::new();
    for (preference, host) in &hosts {
        results.push(check_host(
            opts,
            &resolver,
            &config,
            &insecure,
            *preference,
            host,
            mx.secure,
            policy.as_ref(),
        ));
    }
    // A sender tries the MX hosts in preference order and delivers to the first it may use.
    let (verdict, reason) = if null_mx {
        (
            Verdict::Refuse,
            "the domain publishes a null MX (RFC 7505): it accepts no mail".to_owned(),
        )
    } else {
        match results.iter().find(|h| h.verdict != Verdict::Refuse) {
            Some(h) => (h.verdict, format!("delivered to {}: {}", h.host, h.reason)),
            None => (
                Verdict::Refuse,
                "no MX host can be used: every one is refused".to_owned(),
            ),
        }
    };
    let report = MxReport {
        domain,
        resolver: resolver
            .servers()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        mx_secure: mx.secure,
        implicit,
        null_mx,
        sts,
        rpt,
        hosts: results,
        verdict,
        reason,
        time: started.elapsed(),
    };
    report.print(opts)
}

#[allow(clippy::too_many_arguments)]
fn check_host(
    opts: &MxOptions,
    resolver: &Resolver,
    config: &ClientConfig,
    insecure: &ClientConfig,
    preference: u16,
    host: &str,
    mx_secure: bool,
    policy: Option<&starttls::MtaStsPolicy>,
) -> HostResult {
    let mut result = HostResult {
        preference,
        host: host.to_owned(),
        dane: None,
        dane_why_not: None,
        lookup_error: None,
        sts_listed: policy
            .filter(|p| p.mode != MtaStsMode::None)
            .map(|p| p.allows(host)),
        addresses: Vec::new(),
        verdict: Verdict::Refuse,
        reason: String::new(),
    };
    let found = match starttls::lookup_dane(resolver, host, opts.port, opts.timeout) {
        Ok(f) => f,
        Err(e) => {
            result.reason = format!("its lookup failed: {e}");
            result.lookup_error = Some(ReportError::from_error(&e));
            return result;
        }
    };
    // DANE needs a validated MX set too (RFC 7672 §2.2.1), unless the domain is its own host.
    let dane = found.applies() && (mx_secure || host == opts.domain.trim_end_matches('.'));
    result.dane_why_not = if dane {
        None
    } else if !mx_secure {
        Some("the MX answer is not DNSSEC-validated".into())
    } else {
        found.why_not().map(str::to_owned)
    };
    for address in &found.addresses {
        result.addresses.push(check_address(
            opts,
            config,
            insecure,
            host,
            *address,
            dane.then_some(&found),
        ));
    }
    result.dane = Some(found);
    let (verdict, reason) = judge(&result, dane, policy);
    result.verdict = verdict;
    result.reason = reason;
    result
}

fn check_address(
    opts: &MxOptions,
    config: &ClientConfig,
    insecure: &ClientConfig,
    host: &str,
    address: IpAddr,
    dane: Option<&starttls::DaneLookup>,
) -> AddressResult {
    let started = Instant::now();
    let mut r = AddressResult {
        address,
        tls: None,
        dane_matched: None,
        pkix_verified: false,
        error: None,
        plaintext_only: false,
        time: Duration::ZERO,
    };
    let mut options = ConnectOptions::new().server_name(host);
    if let Some(found) = dane {
        options = options.tlsa(found.tlsa.iter().cloned());
    }
    let ip = address.to_string();
    match starttls::connect_with(config, Protocol::Smtp, &ip, opts.port, &options) {
        Ok(mut conn) => {
            r.tls = Some(tls_of(&conn));
            match conn.dane() {
                Some(DaneStatus::Matched(record)) => r.dane_matched = Some(record.to_string()),
                _ => r.pkix_verified = *conn.verification() == Verification::Verified,
            }
            let _ = conn.quit();
        }
        Err(e) => {
            r.plaintext_only = e.kind() == starttls::ErrorKind::NotOffered;
            r.error = Some(ReportError::from_error(&e));
            // Not authenticated: can a sender still encrypt (opportunistic TLS)?
            if matches!(
                e.kind(),
                starttls::ErrorKind::Certificate | starttls::ErrorKind::Tls
            ) {
                let plain = ConnectOptions::new().server_name(host);
                if let Ok(mut conn) =
                    starttls::connect_with(insecure, Protocol::Smtp, &ip, opts.port, &plain)
                {
                    r.tls = Some(tls_of(&conn));
                    let _ = conn.quit();
                }
            }
        }
    }
    r.time = started.elapsed();
    r
}

fn tls_of(conn: &starttls::Connection) -> Tls {
    let info = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(crate::certinfo::CertInfo::parse);
    Tls {
        version: match conn.tls_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
            other => format!("{other:?}"),
        },
        cipher_suite: conn.cipher_suite_name().unwrap_or_default(),
        days_left: info.as_ref().map(crate::certinfo::CertInfo::days_left),
        subject: info.map(|c| c.subject),
    }
}

/// What a sender does with this host: DANE first, then MTA-STS, then opportunistic TLS.
fn judge(h: &HostResult, dane: bool, policy: Option<&starttls::MtaStsPolicy>) -> (Verdict, String) {
    let reached: Vec<&AddressResult> = h
        .addresses
        .iter()
        .filter(|a| a.tls.is_some() || a.plaintext_only)
        .collect();
    if reached.is_empty() {
        let why = h
            .addresses
            .first()
            .and_then(|a| a.error.as_ref())
            .map_or_else(|| "no address".to_owned(), |e| e.message.clone());
        return (Verdict::Refuse, format!("not reachable: {why}"));
    }
    if dane {
        return if h.addresses.iter().all(|a| a.dane_matched.is_some()) {
            (Verdict::Secure, "authenticated by DANE".into())
        } else {
            (
                Verdict::Refuse,
                "DANE applies and the TLSA records do not authenticate every address".into(),
            )
        };
    }
    let opportunistic = || {
        if h.addresses.iter().all(|a| a.tls.is_some()) {
            (
                Verdict::Unauthenticated,
                "STARTTLS works, but neither DANE nor MTA-STS authenticates it".to_owned(),
            )
        } else {
            (
                Verdict::Plaintext,
                "no STARTTLS on every address, and nothing requires it".to_owned(),
            )
        }
    };
    match policy.filter(|p| p.mode != MtaStsMode::None) {
        Some(p) => {
            let listed = p.allows(&h.host);
            let verified = h.addresses.iter().all(|a| a.pkix_verified);
            match (listed, verified, p.mode) {
                (true, true, _) => (Verdict::Secure, "authenticated by MTA-STS".into()),
                (_, _, MtaStsMode::Enforce) => (
                    Verdict::Refuse,
                    if listed {
                        "MTA-STS enforce: the certificate does not verify for the MX name".into()
                    } else {
                        "MTA-STS enforce: the host is not in the policy's mx list".into()
                    },
                ),
                _ => {
                    let (v, why) = opportunistic();
                    (
                        v,
                        format!("{why} (MTA-STS testing would report the failure)"),
                    )
                }
            }
        }
        None => opportunistic(),
    }
}

/// A failure before any host was looked at.
fn fail(opts: &MxOptions, message: &str, exit: i32) -> i32 {
    if opts.nagios {
        println!(
            "STARTTLS UNKNOWN - {}: {}",
            opts.domain,
            message.replace('|', " ")
        );
        return 3;
    }
    if opts.json {
        let j = Json::Obj(vec![
            ("ok", Json::Bool(false)),
            ("domain", Json::str(&opts.domain)),
            ("verdict", Json::Null),
            ("error", Json::str(message)),
        ]);
        println!("{}", j.render());
    } else {
        eprintln!("starttls mx: {message}");
    }
    exit
}

struct MxReport {
    domain: String,
    resolver: String,
    mx_secure: bool,
    implicit: bool,
    null_mx: bool,
    sts: starttls::Result<MtaSts>,
    rpt: starttls::Result<Option<TlsRptRecord>>,
    hosts: Vec<HostResult>,
    verdict: Verdict,
    reason: String,
    time: Duration,
}

impl MxReport {
    fn print(&self, opts: &MxOptions) -> i32 {
        let exit = self.verdict.exit();
        if opts.nagios {
            let state = match self.verdict {
                Verdict::Secure => ("OK", 0),
                Verdict::Unauthenticated => ("WARNING", 1),
                Verdict::Plaintext | Verdict::Refuse => ("CRITICAL", 2),
            };
            println!(
                "STARTTLS {} - {}: {}: {} | time={:.3}s mx={}",
                state.0,
                self.domain,
                self.verdict.name(),
                self.reason.replace(['|', '\n'], " "),
                self.time.as_secs_f64(),
                self.hosts.len()
            );
            return state.1;
        }
        if opts.json {
            println!("{}", self.json().render());
        } else {
            print!("{}", self.human());
        }
        exit
    }

    fn sts_json(&self) -> Json {
        match &self.sts {
            Ok(MtaSts {
                record: None,
                policy: _,
            }) => Json::Null,
            Ok(s) => Json::Obj(vec![
                ("id", Json::opt_str(s.record.as_ref().map(|r| r.id.clone()))),
                (
                    "mode",
                    Json::opt_str(s.policy.as_ref().map(|p| p.mode.as_str())),
                ),
                (
                    "mx",
                    s.policy
                        .as_ref()
                        .map_or(Json::Null, |p| Json::strings(&p.mx)),
                ),
                (
                    "max_age",
                    s.policy
                        .as_ref()
                        .map_or(Json::Null, |p| Json::Num(u64::from(p.max_age))),
                ),
                ("error", Json::Null),
            ]),
            Err(e) => Json::Obj(vec![
                ("id", Json::Null),
                ("mode", Json::Null),
                ("mx", Json::Null),
                ("max_age", Json::Null),
                ("error", Json::str(e.to_string())),
            ]),
        }
    }

    fn json(&self) -> Json {
        let rpt = match &self.rpt {
            Ok(None) => Json::Null,
            Ok(Some(r)) => Json::Obj(vec![("rua", Json::strings(&r.rua)), ("error", Json::Null)]),
            Err(e) => Json::Obj(vec![
                ("rua", Json::Null),
                ("error", Json::str(e.to_string())),
            ]),
        };
        let hosts = self
            .hosts
            .iter()
            .map(|h| {
                let addresses = h
                    .addresses
                    .iter()
                    .map(|a| {
                        Json::Obj(vec![
                            ("address", Json::str(a.address.to_string())),
                            ("starttls", Json::Bool(a.tls.is_some())),
                            (
                                "tls_version",
                                Json::opt_str(a.tls.as_ref().map(|t| t.version.clone())),
                            ),
                            (
                                "cipher_suite",
                                Json::opt_str(a.tls.as_ref().map(|t| t.cipher_suite.clone())),
                            ),
                            (
                                "certificate_subject",
                                Json::opt_str(a.tls.as_ref().and_then(|t| t.subject.clone())),
                            ),
                            (
                                "days_left",
                                a.tls
                                    .as_ref()
                                    .and_then(|t| t.days_left)
                                    .map_or(Json::Null, Json::Int),
                            ),
                            ("pkix_verified", Json::Bool(a.pkix_verified)),
                            ("dane_matched", Json::opt_str(a.dane_matched.clone())),
                            (
                                "error",
                                a.error.as_ref().map_or(Json::Null, |e| {
                                    Json::Obj(vec![
                                        ("kind", Json::str(e.kind)),
                                        ("message", Json::str(&e.message)),
                                    ])
                                }),
                            ),
                            ("time_ms", Json::Num(a.time.as_millis() as u64)),
                        ])
                    })
                    .collect();
                let dane = h.dane.as_ref().map_or(Json::Null, |d| {
                    Json::Obj(vec![
                        ("applies", Json::Bool(h.dane_why_not.is_none())),
                        ("why_not", Json::opt_str(h.dane_why_not.clone())),
                        ("addresses_secure", Json::Bool(d.addresses_secure)),
                        ("tlsa_secure", Json::Bool(d.tlsa_secure)),
                        (
                            "tlsa",
                            Json::Arr(d.tlsa.iter().map(|t| Json::str(t.to_string())).collect()),
                        ),
                    ])
                });
                Json::Obj(vec![
                    ("host", Json::str(&h.host)),
                    ("preference", Json::Num(u64::from(h.preference))),
                    ("dane", dane),
                    (
                        "mta_sts_listed",
                        h.sts_listed.map_or(Json::Null, Json::Bool),
                    ),
                    (
                        "lookup_error",
                        Json::opt_str(h.lookup_error.as_ref().map(|e| e.message.clone())),
                    ),
                    ("addresses", Json::Arr(addresses)),
                    ("verdict", Json::str(h.verdict.name())),
                    ("reason", Json::str(&h.reason)),
                ])
            })
            .collect();
        Json::Obj(vec![
            ("ok", Json::Bool(self.verdict == Verdict::Secure)),
            ("domain", Json::str(&self.domain)),
            ("resolver", Json::str(&self.resolver)),
            (
                "mx",
                Json::Obj(vec![
                    ("secure", Json::Bool(self.mx_secure)),
                    ("implicit", Json::Bool(self.implicit)),
                    ("null_mx", Json::Bool(self.null_mx)),
                ]),
            ),
            ("mta_sts", self.sts_json()),
            ("tls_rpt", rpt),
            ("hosts", Json::Arr(hosts)),
            ("verdict", Json::str(self.verdict.name())),
            ("reason", Json::str(&self.reason)),
            ("time_ms", Json::Num(self.time.as_millis() as u64)),
        ])
    }

    fn human(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            out.push_str(&format!("{label:<23} {value}\n"));
        };
        line("domain", self.domain.clone());
        line(
            "MX",
            if self.null_mx {
                "null MX (accepts no mail)".into()
            } else if self.implicit {
                format!("none: the domain itself ({})", dnssec(self.mx_secure))
            } else {
                format!("{} host(s) ({})", self.hosts.len(), dnssec(self.mx_secure))
            },
        );
        line(
            "MTA-STS",
            match &self.sts {
                Ok(MtaSts { record: None, .. }) => "no _mta-sts record".into(),
                Ok(MtaSts {
                    record: Some(r),
                    policy: Some(p),
                }) => format!(
                    "id {}, mode {}, mx {}, max_age {}",
                    r.id,
                    p.mode.as_str(),
                    p.mx.join(" "),
                    p.max_age
                ),
                Ok(_) => "record without a policy".into(),
                Err(e) => format!("UNUSABLE: {e}"),
            },
        );
        line(
            "TLS-RPT",
            match &self.rpt {
                Ok(None) => "no _smtp._tls record".into(),
                Ok(Some(r)) => format!("reports to {}", r.rua.join(", ")),
                Err(e) => format!("MALFORMED: {e}"),
            },
        );
        for h in &self.hosts {
            line(
                &format!("MX {} {}", h.preference, h.host),
                format!("{}: {}", h.verdict.name().to_ascii_uppercase(), h.reason),
            );
            if let Some(why) = &h.dane_why_not {
                line("  DANE", format!("does not apply: {why}"));
            } else if let Some(d) = &h.dane {
                line(
                    "  DANE",
                    format!(
                        "applies: {}",
                        d.tlsa
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            if let Some(listed) = h.sts_listed {
                line(
                    "  MTA-STS",
                    if listed {
                        "listed in the policy".into()
                    } else {
                        "NOT listed in the policy".into()
                    },
                );
            }
            for a in &h.addresses {
                let tls = a.tls.as_ref().map_or_else(
                    || "no TLS".to_owned(),
                    |t| {
                        format!(
                            "{}, {}{}",
                            t.version,
                            t.cipher_suite,
                            t.subject
                                .as_ref()
                                .map(|s| format!(", certificate {s}"))
                                .unwrap_or_default()
                        )
                    },
                );
                let auth = if let Some(r) = &a.dane_matched {
                    format!("DANE {r}")
                } else if a.pkix_verified {
                    "verified for the MX name".into()
                } else {
                    a.error
                        .as_ref()
                        .map_or("not authenticated".into(), |e| e.message.clone())
                };
                line(&format!("  {}", a.address), format!("{tls}; {auth}"));
            }
        }
        line(
            "verdict",
            format!(
                "{}: {}",
                self.verdict.name().to_ascii_uppercase(),
                self.reason
            ),
        );
        out
    }
}

fn dnssec(secure: bool) -> &'static str {
    if secure {
        "DNSSEC-validated"
    } else {
        "not DNSSEC-validated"
    }
}
