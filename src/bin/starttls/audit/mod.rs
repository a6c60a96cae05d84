//! `starttls check --audit`: the attacks the library refuses, pointed at a server. Each probe
//! is one polite connection (no credential is ever sent, each ends with the protocol's
//! goodbye, every wait bounded); each finding has an id, a severity and the server's words.

mod dialect;
mod legacy;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use starttls::{ClientConfig, ConnectOptions, Protocol, Timeouts, TlsVersion};

use crate::json::Json;
use dialect::{Dialect, InTls, Lines, Plain, Reply};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub title: String,
    /// What the server said (escaped), or what was observed.
    pub evidence: String,
}

/// One probe: what it tried and how it came out (`clean`, `finding`, `skipped`, `error`).
pub struct Probe {
    pub id: &'static str,
    pub outcome: &'static str,
    pub detail: String,
}

#[derive(Default)]
pub struct Audit {
    pub findings: Vec<Finding>,
    pub probes: Vec<Probe>,
}

impl Audit {
    /// The worst finding's severity (`None`: no finding at all).
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Whether anything above "info" was found (the check then exits 6).
    pub fn failed(&self) -> bool {
        self.worst().is_some_and(|s| s > Severity::Info)
    }

    fn record(&mut self, id: &'static str, result: Result<Vec<Finding>, String>) {
        let (outcome, detail) = match result {
            Ok(found) if found.is_empty() => ("clean", String::new()),
            Ok(found) => {
                let detail = found.iter().map(|f| f.id).collect::<Vec<_>>().join(", ");
                let outcome = if found.iter().all(|f| f.severity == Severity::Info) {
                    "clean"
                } else {
                    "finding"
                };
                self.findings.extend(found);
                (outcome, detail)
            }
            Err(why) if why.starts_with(SKIPPED) => ("skipped", why[SKIPPED.len()..].to_owned()),
            Err(why) => ("error", why),
        };
        self.probes.push(Probe {
            id,
            outcome,
            detail,
        });
    }

    pub fn json(&self) -> Json {
        Json::Obj(vec![
            (
                "findings",
                Json::Arr(
                    self.findings
                        .iter()
                        .map(|f| {
                            Json::Obj(vec![
                                ("id", Json::str(f.id)),
                                ("severity", Json::str(f.severity.name())),
                                ("title", Json::str(&f.title)),
                                ("evidence", Json::str(&f.evidence)),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                "probes",
                Json::Arr(
                    self.probes
                        .iter()
                        .map(|p| {
                            Json::Obj(vec![
                                ("id", Json::str(p.id)),
                                ("outcome", Json::str(p.outcome)),
                                ("detail", Json::str(&p.detail)),
                            ])
                        })
                        .collect(),
                ),
            ),
        ])
    }

    pub fn human(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!(
                "{:<23} {} {}: {} ({})\n",
                "audit finding",
                f.severity.name().to_ascii_uppercase(),
                f.id,
                f.title,
                f.evidence.replace('\n', " | ")
            ));
        }
        let above = self
            .findings
            .iter()
            .filter(|f| f.severity > Severity::Info)
            .count();
        let skipped: Vec<&str> = self
            .probes
            .iter()
            .filter(|p| p.outcome != "clean" && p.outcome != "finding")
            .map(|p| p.id)
            .collect();
        out.push_str(&format!(
            "{:<23} {} probe(s), {} finding(s) above info{}\n",
            "audit",
            self.probes.len(),
            above,
            if skipped.is_empty() {
                String::new()
            } else {
                format!("; not concluded: {}", skipped.join(", "))
            }
        ));
        out
    }
}

/// A probe that does not apply (its reason follows the marker).
const SKIPPED: &str = "skipped: ";

fn skipped(why: impl std::fmt::Display) -> String {
    format!("{SKIPPED}{why}")
}

/// What every probe needs.
struct Ctx {
    protocol: Protocol,
    port: u16,
    addrs: Vec<SocketAddr>,
    server_name: String,
    client_name: String,
    timeout: Duration,
    /// How long to wait for something a correct server never sends.
    settle: Duration,
    /// TLS for probes: any certificate (the check itself verifies; no credential is sent).
    tls: ClientConfig,
}

/// Runs every probe that applies to the protocol, against `host:port`.
pub fn run(
    protocol: Protocol,
    host: &str,
    port: u16,
    server_name: &str,
    client_name: Option<&str>,
    timeout: Duration,
) -> Audit {
    let mut audit = Audit::default();
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            audit.record("connect", Err(format!("cannot resolve {host}: {e}")));
            return audit;
        }
    };
    let tls = match probe_config(timeout, client_name, None, None, None) {
        Ok(c) => c,
        Err(e) => {
            audit.record("connect", Err(e.to_string()));
            return audit;
        }
    };
    let ctx = Ctx {
        protocol,
        port,
        addrs,
        server_name: server_name.to_owned(),
        client_name: client_name.unwrap_or("starttls-audit.invalid").to_owned(),
        timeout,
        settle: timeout.min(Duration::from_secs(2)),
        tls,
    };
    if let Some(d) = Dialect::of(protocol) {
        audit.record("plaintext-login", probe_plaintext(&ctx, d));
        audit.record("command-injection", probe_injection(&ctx, d));
        audit.record(
            "plaintext-after-go-ahead",
            probe_plaintext_after_go_ahead(&ctx, d),
        );
        audit.record("starttls-before-greeting", probe_before_greeting(&ctx, d));
        audit.record("inside-tls", probe_inside_tls(&ctx, d));
    }
    for version in [legacy::TLS10, legacy::TLS11] {
        let id = if version == legacy::TLS10 {
            "tls1.0"
        } else {
            "tls1.1"
        };
        audit.record(id, probe_legacy(&ctx, version));
    }
    audit.record("tls-groups", probe_groups(&ctx));
    audit.record("tls-cipher-suites", probe_suites(&ctx));
    audit
}

fn probe_config(
    timeout: Duration,
    client_name: Option<&str>,
    group: Option<rustls::NamedGroup>,
    suite: Option<rustls::CipherSuite>,
    max: Option<TlsVersion>,
) -> starttls::Result<ClientConfig> {
    let mut b = ClientConfig::builder()
        .timeouts(Timeouts::all(timeout))
        .dangerous_accept_any_certificate(true)
        .session_resumption(false);
    if let Some(n) = client_name {
        b = b.client_name(n);
    }
    if let Some(g) = group {
        b = b.key_exchange_groups([g]);
    }
    if let Some(s) = suite {
        b = b.cipher_suites([s]);
    }
    if let Some(v) = max {
        b = b.max_tls_version(v);
    }
    b.build()
}

fn connect(ctx: &Ctx) -> Result<TcpStream, String> {
    let mut last = None;
    for addr in &ctx.addrs {
        match TcpStream::connect_timeout(addr, ctx.timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(ctx.timeout))
                    .map_err(|e| e.to_string())?;
                s.set_write_timeout(Some(ctx.timeout))
                    .map_err(|e| e.to_string())?;
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(format!(
        "cannot connect: {}",
        last.map_or_else(|| "no address".to_owned(), |e| e.to_string())
    ))
}

impl Ctx {
    /// One probe's whole time: a few steps' worth, however the server paces its bytes.
    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout * 4
    }
}

fn io(e: std::io::Error) -> String {
    format!("the server stopped answering: {e}")
}

/// A new connection greeted and asked for its capabilities (before TLS).
fn opened(
    ctx: &Ctx,
    d: Dialect,
    deadline: Instant,
) -> Result<(TcpStream, Reply, Vec<String>), String> {
    let tcp = connect(ctx)?;
    let mut p = Plain::new(&tcp, deadline);
    let greeting = d.greeting(&mut p).map_err(io)?;
    let caps = match d.hello(&mut p, &ctx.client_name).map_err(io)? {
        Some(reply) => d.capabilities(&reply),
        None => d.capabilities(&greeting),
    };
    Ok((tcp, greeting, caps))
}

/// Probe: a login and a mail transaction offered in plaintext, before STARTTLS.
fn probe_plaintext(ctx: &Ctx, d: Dialect) -> Result<Vec<Finding>, String> {
    let deadline = ctx.deadline();
    let (tcp, _, caps) = opened(ctx, d, deadline)?;
    let mut found = Vec::new();
    let mut p = Plain::new(&tcp, deadline);
    let has = |word: &str| {
        caps.iter().any(|c| {
            c == word || c.starts_with(&format!("{word} ")) || c.starts_with(&format!("{word}="))
        })
    };
    // An empty list (a failed CAPABILITY) says nothing either way.
    let advertised = !caps.is_empty()
        && match d {
            Dialect::Smtp | Dialect::Lmtp => has("AUTH"),
            Dialect::Imap => !has("LOGINDISABLED"),
            Dialect::Pop3 => has("USER") || has("SASL"),
            Dialect::Nntp => has("AUTHINFO"),
            Dialect::Sieve => caps.iter().any(|c| c.starts_with("SASL ") && c.len() > 5),
            Dialect::Ftp => false,
        };
    if advertised {
        let what = match d {
            Dialect::Imap => "LOGIN is allowed before TLS (no LOGINDISABLED)".to_owned(),
            _ => "a login is advertised before TLS".to_owned(),
        };
        found.push(Finding {
            id: "login-advertised-before-tls",
            severity: Severity::Low,
            title: what,
            evidence: caps.join(" "),
        });
    }
    let (mechanism, secret) = d.mechanism(&caps);
    let (challenged, reply) = d.try_login(&mut p, &mechanism).map_err(io)?;
    // POP3 USER/PASS and NNTP AUTHINFO USER/PASS are logins of their own, password in clear.
    let user = if challenged && secret {
        None
    } else {
        d.try_user(&mut p).map_err(io)?.filter(|(asked, _)| *asked)
    };
    let clear = match (&user, challenged) {
        (Some((_, r)), _) => Some((d.user_command(), true, r.clone())),
        (None, true) => Some((mechanism.clone(), secret, reply)),
        (None, false) => None,
    };
    if let Some((how, secret, reply)) = clear {
        found.push(Finding {
            id: "plaintext-login-accepted",
            severity: if secret {
                Severity::Medium
            } else {
                Severity::Low
            },
            title: if secret {
                format!(
                    "the server starts a {how} login in plaintext: a client's password would \
                     cross the network in clear (an attacker who strips STARTTLS gets it)"
                )
            } else {
                format!(
                    "the server starts a {how} login in plaintext: the password is not sent, \
                     but the exchange is open to offline guessing and to an attacker posing \
                     as the server"
                )
            },
            evidence: reply.text(),
        });
    }
    if let Some((accepted, reply)) = d.try_mail(&mut p).map_err(io)? {
        if accepted {
            // A public MX must take mail without TLS (RFC 3207 §4); submission should not.
            let submission = ctx.protocol == Protocol::Submission;
            found.push(Finding {
                id: "plaintext-mail-accepted",
                severity: if submission {
                    Severity::Medium
                } else {
                    Severity::Info
                },
                title: if submission {
                    "the submission server opens a mail transaction in plaintext".into()
                } else {
                    "mail is accepted in plaintext (normal for a public MX, RFC 3207 §4)".into()
                },
                evidence: reply.text(),
            });
        }
    }
    d.quit(&mut p);
    Ok(found)
}

/// Whether the STARTTLS go-ahead came: on a refusal the probe does not apply.
fn starttls_go(d: Dialect, p: &mut Plain<'_>) -> Result<Reply, String> {
    let (go, reply) = d.go_ahead(p).map_err(io)?;
    if go {
        Ok(reply)
    } else {
        Err(skipped(format!("STARTTLS refused: {}", reply.text())))
    }
}

/// Bytes waiting on the socket now (after a short wait), up to a few KB, without blocking.
fn waiting(tcp: &TcpStream, wait: Duration) -> Result<Vec<u8>, String> {
    tcp.set_read_timeout(Some(wait))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let got = match (&*tcp).read(&mut buf) {
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            0
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => return Err(e.to_string()),
    };
    buf.truncate(got);
    Ok(buf)
}

fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    starttls::escape_controls(text.trim_end()).into_owned()
}

/// Probe (CVE-2011-0411 and family): STARTTLS and a harmless command in one segment. A server
/// that answers the second command inside TLS ran plaintext an attacker could have injected.
fn probe_injection(ctx: &Ctx, d: Dialect) -> Result<Vec<Finding>, String> {
    let deadline = ctx.deadline();
    let (tcp, _, _) = opened(ctx, d, deadline)?;
    let mut p = Plain::new(&tcp, deadline);
    p.send(&format!("{}{}", d.starttls(), d.noop()))
        .map_err(io)?;
    // Refusing STARTTLS when something follows it (or hanging up) is the safest answer.
    match d.go_ahead(&mut p) {
        Ok((true, _)) => {}
        Ok((false, _)) | Err(_) => return Ok(Vec::new()),
    }
    // Anything the server sends before our ClientHello: a plaintext answer to the pipelined
    // command (run outside TLS), a notice, or an alert (its TLS stack choking on the command:
    // a refusal).
    let early = waiting(&tcp, ctx.settle)?;
    if let Some(&first) = early.first() {
        if first == 0x15 || first == 0x16 {
            return Ok(Vec::new());
        }
        let text = String::from_utf8_lossy(&early);
        return Ok(vec![if d.positive(&text) {
            Finding {
                id: "pipelined-command-answered-before-tls",
                severity: Severity::Low,
                title: "the command pipelined after STARTTLS was run and answered in plaintext \
                        after the go-ahead"
                    .into(),
                evidence: shown(&early),
            }
        } else {
            Finding {
                id: "plaintext-notice-after-go-ahead",
                severity: Severity::Info,
                title: "the server answered the pipelined command with a plaintext notice".into(),
                evidence: shown(&early),
            }
        }]);
    }
    let options = ConnectOptions::new().server_name(&ctx.server_name);
    let mut conn = match starttls::handshake_only_with(&ctx.tls, tcp, &options) {
        Ok(c) => c,
        // A server that hangs up or sends an alert instead of starting TLS refused too.
        Err(e)
            if matches!(
                e.kind(),
                starttls::ErrorKind::Closed | starttls::ErrorKind::Tls
            ) =>
        {
            return Ok(Vec::new());
        }
        // Plaintext that came later than the wait: still the pipelined command's answer.
        Err(e) if e.kind() == starttls::ErrorKind::Injection => {
            return Ok(vec![Finding {
                id: "pipelined-command-answered-before-tls",
                severity: Severity::Low,
                title: "plaintext came after the go-ahead where the server's TLS should be".into(),
                evidence: e.to_string(),
            }]);
        }
        Err(e) => return Err(format!("TLS after the go-ahead failed: {e}")),
    };
    let mut tls = InTls {
        conn: &mut conn,
        deadline,
    };
    // ManageSieve re-sends its capabilities inside TLS, unasked: they are not the answer. A
    // bare OK with no capability before it is (a server that does not re-send them).
    let mut answered = None;
    if d == Dialect::Sieve {
        let caps = d.greeting(&mut tls).map_err(io)?;
        if caps.lines.len() == 1 {
            answered = Some(caps);
        }
    }
    if answered.is_none() {
        tls.deadline = Instant::now() + ctx.settle;
        answered = match d.noop_reply(&mut tls) {
            Ok(reply) => Some(reply),
            // Nothing within the wait: the pipelined command was discarded, as it must be.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            // The server closing on the pipelined command is a refusal too.
            Err(_) => return Ok(Vec::new()),
        };
    }
    let found = answered.map_or_else(Vec::new, |reply| {
        vec![Finding {
            id: "command-injection",
            severity: Severity::High,
            title: "a command sent in plaintext with STARTTLS was answered inside TLS \
                    (CVE-2011-0411): an attacker can inject commands into the encrypted session"
                .into(),
            evidence: reply.text(),
        }]
    });
    tls.deadline = deadline.max(Instant::now() + ctx.timeout);
    d.quit(&mut tls);
    let _ = conn.close();
    Ok(found)
}

/// Probe: a plaintext command where the ClientHello should be. A server answering it in clear
/// would let an attacker strip TLS after the go-ahead.
fn probe_plaintext_after_go_ahead(ctx: &Ctx, d: Dialect) -> Result<Vec<Finding>, String> {
    let deadline = ctx.deadline();
    let (tcp, _, _) = opened(ctx, d, deadline)?;
    let mut p = Plain::new(&tcp, deadline);
    p.send(d.starttls()).map_err(io)?;
    starttls_go(d, &mut p)?;
    p.send(d.noop()).map_err(io)?;
    let answer = waiting(&tcp, ctx.settle)?;
    // A TLS alert (0x15) or a close is the right answer.
    if answer.is_empty() || answer[0] == 0x15 || answer[0] == 0x16 {
        return Ok(Vec::new());
    }
    // Telling the failure in plaintext before hanging up (ProFTPD: "421 TLS handshake
    // failed") is not running the command.
    if !d.positive(&String::from_utf8_lossy(&answer)) {
        return Ok(vec![Finding {
            id: "plaintext-notice-after-go-ahead",
            severity: Severity::Info,
            title: "the server told in plaintext that TLS did not start, and did not run the \
                    command"
                .into(),
            evidence: shown(&answer),
        }]);
    }
    Ok(vec![Finding {
        id: "plaintext-after-go-ahead",
        severity: Severity::High,
        title: "after its STARTTLS go-ahead the server answered a plaintext command in clear"
            .into(),
        evidence: shown(&answer),
    }])
}

/// Probe: STARTTLS sent before the greeting. Most servers simply read it after greeting (an
/// early talker is a spam sign Postfix's postscreen drops): reported as a fact.
fn probe_before_greeting(ctx: &Ctx, d: Dialect) -> Result<Vec<Finding>, String> {
    let tcp = connect(ctx)?;
    let mut p = Plain::new(&tcp, ctx.deadline());
    p.send(d.starttls()).map_err(io)?;
    match d.greeting(&mut p) {
        Ok(_) => {}
        // Hanging up on an early talker is a fine answer (Postfix's postscreen does).
        Err(_) => return Ok(Vec::new()),
    }
    let found = match d.go_ahead(&mut Plain::new(&tcp, Instant::now() + ctx.settle)) {
        // No RFC forbids it and TLS then starts as usual: a fact about the server's state
        // machine (it reads ahead of its own greeting), not a weakness by itself.
        Ok((true, reply)) => vec![Finding {
            id: "starttls-before-greeting-accepted",
            severity: Severity::Info,
            title: "STARTTLS sent before the greeting got a go-ahead (the server reads \
                    commands sent ahead of its greeting)"
                .into(),
            evidence: reply.text(),
        }],
        _ => Vec::new(),
    };
    if found.is_empty() {
        d.quit(&mut Plain::new(&tcp, Instant::now() + ctx.timeout));
    }
    Ok(found)
}

/// Probe: the capabilities before and inside TLS, and a second STARTTLS inside TLS.
fn probe_inside_tls(ctx: &Ctx, d: Dialect) -> Result<Vec<Finding>, String> {
    // Before TLS as a client sees them (POP3's library dialog does not ask).
    let deadline = ctx.deadline();
    let (tcp, _, before) = opened(ctx, d, deadline)?;
    d.quit(&mut Plain::new(&tcp, deadline));
    drop(tcp);
    let config = ClientConfig::builder()
        .timeouts(Timeouts::all(ctx.timeout))
        .dangerous_accept_any_certificate(true)
        .fetch_capabilities_after_tls(true)
        .client_name(&ctx.client_name)
        .build()
        .map_err(|e| e.to_string())?;
    let tcp = connect(ctx)?;
    let options = ConnectOptions::new().server_name(&ctx.server_name);
    let mut conn = starttls::upgrade_with(&config, ctx.protocol, tcp, &options)
        .map_err(|e| skipped(format!("no STARTTLS: {e}")))?;
    let after: Vec<String> = conn
        .capabilities()
        .unwrap_or_default()
        .iter()
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let mut found = Vec::new();
    let starttls = d.starttls_capability();
    if after.iter().any(|c| c == starttls) {
        found.push(Finding {
            id: "starttls-offered-inside-tls",
            // FTP's FEAT lists what the server supports, whatever the state (RFC 2389).
            severity: if d == Dialect::Ftp {
                Severity::Info
            } else {
                Severity::Low
            },
            title: format!("{starttls} is still offered inside TLS"),
            evidence: after.join(" "),
        });
    }
    let lost: Vec<&String> = before
        .iter()
        .filter(|c| *c != starttls && !after.contains(c))
        .filter(|c| !c.starts_with("AUTH") && !c.starts_with("SASL") && *c != "LOGINDISABLED")
        .collect();
    if !lost.is_empty() && !after.is_empty() {
        found.push(Finding {
            id: "capabilities-lost-inside-tls",
            severity: Severity::Info,
            title: "capabilities offered before TLS are gone inside it".into(),
            evidence: lost
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        });
    }
    let auth = |caps: &[String]| {
        caps.iter()
            .filter(|c| c.starts_with("AUTH") || c.starts_with("SASL"))
            .cloned()
            .collect::<Vec<_>>()
    };
    if auth(&before).is_empty() && !auth(&after).is_empty() {
        found.push(Finding {
            id: "login-only-inside-tls",
            severity: Severity::Info,
            title: "the login mechanisms are offered inside TLS only, as they should be".into(),
            evidence: auth(&after).join(" "),
        });
    }
    let mut tls = InTls {
        conn: &mut conn,
        deadline: ctx.deadline(),
    };
    tls.send(d.starttls()).map_err(io)?;
    match d.go_ahead(&mut tls) {
        Ok((true, reply)) => {
            found.push(Finding {
                id: "second-starttls-accepted",
                severity: Severity::Medium,
                title: "a second STARTTLS inside TLS got a go-ahead".into(),
                evidence: reply.text(),
            });
            let _ = conn.close();
        }
        Ok((false, _)) => {
            let _ = conn.quit();
        }
        Err(e) => return Err(io(e)),
    }
    Ok(found)
}

/// Probe: a ClientHello offering only TLS 1.0 or 1.1, after the protocol's go-ahead.
fn probe_legacy(ctx: &Ctx, version: u16) -> Result<Vec<Finding>, String> {
    let tcp = connect(ctx)?;
    let tcp = starttls::negotiate(&ctx.tls, ctx.protocol, tcp, &ctx.server_name)
        .map_err(|e| skipped(format!("no STARTTLS: {e}")))?;
    tcp.set_read_timeout(Some(ctx.timeout))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(ctx.timeout))
        .map_err(|e| e.to_string())?;
    let hello = legacy::client_hello(version, Some(&ctx.server_name), pseudo_random());
    (&tcp).write_all(&hello).map_err(io)?;
    let record = match legacy::read_record(&mut &tcp) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    match legacy::judge(&record, version)? {
        legacy::Answer::Accepted {
            version: v,
            cipher_suite,
        } => {
            let ssl3 = v == 0x0300;
            Ok(vec![Finding {
                // Named after what the server chose (a 1.0 answer to a 1.1 hello is 1.0).
                id: if ssl3 {
                    "ssl3-accepted"
                } else if v == legacy::TLS10 {
                    "tls1.0-accepted"
                } else {
                    "tls1.1-accepted"
                },
                severity: if ssl3 {
                    Severity::High
                } else {
                    Severity::Medium
                },
                title: format!(
                    "the server accepts {} (deprecated by RFC 8996)",
                    legacy::version_name(v)
                ),
                evidence: format!(
                    "ServerHello {} with cipher suite 0x{cipher_suite:04x}",
                    legacy::version_name(v)
                ),
            }])
        }
        legacy::Answer::Refused(_) => Ok(Vec::new()),
    }
}

/// Bytes for a ClientHello's random: unpredictable enough for a probe that never finishes a
/// handshake (std's hasher keys are random per process).
fn pseudo_random() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_be_bytes());
    }
    out
}

/// A full upgrade with one group or one suite offered: `Some(true)` when the server took it,
/// `None` when the upgrade failed for another reason (a timeout: inconclusive).
fn accepts(ctx: &Ctx, config: starttls::Result<ClientConfig>) -> Result<Option<bool>, String> {
    let config = config.map_err(|e| e.to_string())?;
    let host = ctx
        .addrs
        .first()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let options = ConnectOptions::new().server_name(&ctx.server_name);
    match starttls::connect_with(&config, ctx.protocol, &host, ctx.port, &options) {
        Ok(mut conn) => {
            let _ = conn.quit();
            Ok(Some(true))
        }
        // Some servers hang up on a ClientHello they cannot agree with instead of an alert
        // (Dovecot: "no suitable key share").
        Err(e)
            if matches!(
                e.kind(),
                starttls::ErrorKind::Tls | starttls::ErrorKind::Closed
            ) =>
        {
            Ok(Some(false))
        }
        Err(_) => Ok(None),
    }
}

/// Probe (info): which key exchange groups the server accepts, one connection each.
fn probe_groups(ctx: &Ctx) -> Result<Vec<Finding>, String> {
    let tries = starttls::supported_key_exchange_groups()
        .into_iter()
        .map(|group| {
            let name = group
                .as_str()
                .map_or_else(|| format!("{group:?}"), str::to_owned);
            let config = probe_config(ctx.timeout, Some(&ctx.client_name), Some(group), None, None);
            (name, config)
        });
    one_at_a_time(ctx, tries, "tls-groups", "key exchange groups")
}

/// Probe (info): which TLS 1.3 and 1.2 cipher suites the server accepts, one connection each.
fn probe_suites(ctx: &Ctx) -> Result<Vec<Finding>, String> {
    let tries = starttls::supported_cipher_suites()
        .into_iter()
        .map(|suite| {
            let tls12 = !suite.as_str().is_some_and(|n| n.starts_with("TLS13_"));
            let max = tls12.then_some(TlsVersion::Tls12);
            let config = probe_config(ctx.timeout, Some(&ctx.client_name), None, Some(suite), max);
            (starttls::iana_cipher_suite_name(suite), config)
        });
    one_at_a_time(ctx, tries, "tls-cipher-suites", "cipher suites")
}

/// An upgrade per config (each offering one thing), and the info finding that lists what the
/// server took and refused.
fn one_at_a_time(
    ctx: &Ctx,
    tries: impl Iterator<Item = (String, starttls::Result<ClientConfig>)>,
    id: &'static str,
    what: &str,
) -> Result<Vec<Finding>, String> {
    let (mut took, mut refused, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    for (name, config) in tries {
        match accepts(ctx, config)? {
            Some(true) => took.push(name),
            Some(false) => refused.push(name),
            None => unknown.push(name),
        }
    }
    if took.is_empty() {
        return Err(format!(
            "none of the {what} was accepted alone, though the check's handshake agreed on one"
        ));
    }
    Ok(vec![Finding {
        id,
        severity: Severity::Info,
        title: format!("{what} the server accepts"),
        evidence: format!(
            "accepted: {}; refused: {}{}",
            list(&took),
            list(&refused),
            if unknown.is_empty() {
                String::new()
            } else {
                format!(
                    "; not concluded (the upgrade failed otherwise): {}",
                    list(&unknown)
                )
            }
        ),
    }])
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(" ")
    }
}
