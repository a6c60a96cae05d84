//! The protocols, and the pieces every protocol's dialog shares.
//!
//! Each protocol's file holds its pre-TLS dialog and nothing else; they all run on the same
//! [`Wire`], policy and error machinery.

use std::fmt;
use std::str::FromStr;

use crate::auth::{AuthOutcome, Credentials};
use crate::config::{Policy, Timeouts};
use crate::error::{Error, Phase, Result};
use crate::wire::{Deadline, Transport, Wire};

pub(crate) mod ftp;
pub(crate) mod http;
pub(crate) mod imap;
pub(crate) mod ldap;
pub(crate) mod nntp;
pub(crate) mod pop3;
pub(crate) mod postgres;
pub(crate) mod sieve;
pub(crate) mod smtp;
pub(crate) mod xmpp;

/// What to speak before TLS (or whether TLS comes first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// SMTP relay with STARTTLS (RFC 3207), port 25.
    Smtp,
    /// SMTP message submission with STARTTLS (RFC 6409), port 587.
    Submission,
    /// LMTP with STARTTLS (RFC 2033): as SMTP, with `LHLO`. No IANA port; 24 by convention.
    Lmtp,
    /// IMAP with STARTTLS (RFC 3501, RFC 9051), port 143.
    Imap,
    /// POP3 with STLS (RFC 2595), port 110.
    Pop3,
    /// LDAP with the StartTLS extended operation (RFC 4511 §4.14), port 389.
    Ldap,
    /// FTP with AUTH TLS (RFC 4217), port 21; protected data connections resume the control
    /// connection's TLS session ([`crate::Connection::ftp_data`]).
    Ftp,
    /// NNTP with STARTTLS (RFC 4642), port 119.
    Nntp,
    /// XMPP client-to-server with STARTTLS (RFC 6120 §5), port 5222. The server name is the XMPP
    /// domain (`to=`), which may differ from the host connected to.
    Xmpp,
    /// XMPP server-to-server with STARTTLS (`jabber:server`), port 5269.
    XmppServer,
    /// ManageSieve with STARTTLS (RFC 5804), port 4190.
    Sieve,
    /// PostgreSQL with SSLRequest, port 5432.
    Postgres,
    /// HTTP/1.1 Upgrade to TLS (RFC 2817), port 80.
    Http,
    /// SMTP submission over implicit TLS (RFC 8314), port 465.
    Smtps,
    /// IMAP over implicit TLS, port 993.
    Imaps,
    /// POP3 over implicit TLS, port 995.
    Pop3s,
    /// NNTP over implicit TLS, port 563.
    Nntps,
    /// LDAP over implicit TLS, port 636.
    Ldaps,
    /// XMPP client over direct TLS (XEP-0368, ALPN `xmpp-client`), port 5223.
    Xmpps,
    /// FTP over implicit TLS, port 990.
    Ftps,
    /// PostgreSQL 17+ direct TLS (`sslnegotiation=direct`, ALPN `postgresql`), port 5432.
    PostgresDirect,
    /// HTTPS: TLS first, then HTTP (the caller speaks first), port 443.
    Https,
    /// TLS straight away, no protocol dialog (the caller speaks first, or already ran its own).
    Tls,
}

/// The dialog spoken around TLS: which module's functions run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Smtp,
    Lmtp,
    Imap,
    Pop3,
    Ldap,
    Ftp,
    Nntp,
    Xmpp(xmpp::Kind),
    Sieve,
    Postgres,
    Http,
}

impl Dialect {
    /// Whether the protocol has a capability list to fetch inside TLS.
    pub fn has_capabilities(self) -> bool {
        !matches!(self, Dialect::Ldap | Dialect::Postgres | Dialect::Http)
    }
}

impl Protocol {
    /// Every protocol, for listings and feature queries.
    pub const ALL: [Protocol; 23] = [
        Protocol::Smtp,
        Protocol::Submission,
        Protocol::Lmtp,
        Protocol::Imap,
        Protocol::Pop3,
        Protocol::Ldap,
        Protocol::Ftp,
        Protocol::Nntp,
        Protocol::Xmpp,
        Protocol::XmppServer,
        Protocol::Sieve,
        Protocol::Postgres,
        Protocol::Http,
        Protocol::Smtps,
        Protocol::Imaps,
        Protocol::Pop3s,
        Protocol::Nntps,
        Protocol::Ldaps,
        Protocol::Xmpps,
        Protocol::Ftps,
        Protocol::PostgresDirect,
        Protocol::Https,
        Protocol::Tls,
    ];

    /// The frozen number naming this protocol in the C ABI (`STARTTLS_PROTO_*`) and Python.
    pub fn code(self) -> u32 {
        match self {
            Protocol::Smtp => 1,
            Protocol::Lmtp => 2,
            Protocol::Imap => 3,
            Protocol::Pop3 => 4,
            Protocol::Ldap => 5,
            Protocol::Ftp => 6,
            Protocol::Xmpp => 7,
            Protocol::Nntp => 8,
            Protocol::Sieve => 9,
            Protocol::Postgres => 10,
            Protocol::Http => 11,
            Protocol::Tls => 12,
            Protocol::Submission => 13,
            Protocol::Smtps => 14,
            Protocol::Imaps => 15,
            Protocol::Pop3s => 16,
            Protocol::Nntps => 17,
            Protocol::PostgresDirect => 18,
            Protocol::Https => 19,
            Protocol::Ldaps => 20,
            Protocol::XmppServer => 21,
            Protocol::Xmpps => 22,
            Protocol::Ftps => 23,
        }
    }

    /// The protocol for a number from [`code`](Self::code), if this build supports it.
    pub fn from_code(code: u32) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.code() == code)
    }

    /// The URL scheme naming this protocol (`smtp`, `imaps`, ...).
    pub fn scheme(self) -> &'static str {
        let s = self.scheme_nul();
        s.strip_suffix('\0').unwrap_or(s)
    }

    /// [`scheme`](Self::scheme) with a terminating NUL, for C.
    pub(crate) fn scheme_nul(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp\0",
            Protocol::Submission => "submission\0",
            Protocol::Lmtp => "lmtp\0",
            Protocol::Imap => "imap\0",
            Protocol::Pop3 => "pop3\0",
            Protocol::Ldap => "ldap\0",
            Protocol::Ftp => "ftp\0",
            Protocol::Ftps => "ftps\0",
            Protocol::Nntp => "nntp\0",
            Protocol::Xmpp => "xmpp\0",
            Protocol::XmppServer => "xmpp-server\0",
            Protocol::Xmpps => "xmpps\0",
            Protocol::Sieve => "sieve\0",
            Protocol::Postgres => "postgres\0",
            Protocol::Http => "http\0",
            Protocol::Smtps => "smtps\0",
            Protocol::Imaps => "imaps\0",
            Protocol::Pop3s => "pop3s\0",
            Protocol::Nntps => "nntps\0",
            Protocol::Ldaps => "ldaps\0",
            Protocol::PostgresDirect => "postgres-direct\0",
            Protocol::Https => "https\0",
            Protocol::Tls => "tls\0",
        }
    }

    /// The usual port, when there is one.
    pub fn default_port(self) -> Option<u16> {
        match self {
            Protocol::Smtp => Some(25),
            Protocol::Submission => Some(587),
            Protocol::Lmtp => Some(24),
            Protocol::Imap => Some(143),
            Protocol::Pop3 => Some(110),
            Protocol::Ldap => Some(389),
            Protocol::Ftp => Some(21),
            Protocol::Ftps => Some(990),
            Protocol::Ldaps => Some(636),
            Protocol::Nntp => Some(119),
            Protocol::Xmpp => Some(5222),
            Protocol::XmppServer => Some(5269),
            Protocol::Xmpps => Some(5223),
            Protocol::Sieve => Some(4190),
            Protocol::Postgres | Protocol::PostgresDirect => Some(5432),
            Protocol::Http => Some(80),
            Protocol::Smtps => Some(465),
            Protocol::Imaps => Some(993),
            Protocol::Pop3s => Some(995),
            Protocol::Nntps => Some(563),
            Protocol::Https => Some(443),
            Protocol::Tls => None,
        }
    }

    /// True when TLS starts at once (RFC 8314) instead of after a STARTTLS dialog.
    pub fn is_implicit(self) -> bool {
        matches!(
            self,
            Protocol::Smtps
                | Protocol::Imaps
                | Protocol::Pop3s
                | Protocol::Nntps
                | Protocol::Ldaps
                | Protocol::Xmpps
                | Protocol::Ftps
                | Protocol::PostgresDirect
                | Protocol::Https
                | Protocol::Tls
        )
    }

    /// True when the peer must agree to [`required_alpn`](Self::required_alpn) (PostgreSQL
    /// direct TLS, as libpq insists); for XMPP direct TLS it is only offered.
    pub(crate) fn alpn_mandatory(self) -> bool {
        self == Protocol::PostgresDirect
    }

    /// ALPN this protocol offers, overriding the config's (PostgreSQL and XMPP direct TLS).
    pub(crate) fn required_alpn(self) -> Option<&'static [u8]> {
        match self {
            Protocol::PostgresDirect => Some(b"postgresql"),
            Protocol::Xmpps => Some(b"xmpp-client"),
            _ => None,
        }
    }

    pub(crate) fn dialect(self) -> Option<Dialect> {
        match self {
            Protocol::Smtp | Protocol::Submission | Protocol::Smtps => Some(Dialect::Smtp),
            Protocol::Lmtp => Some(Dialect::Lmtp),
            Protocol::Imap | Protocol::Imaps => Some(Dialect::Imap),
            Protocol::Pop3 | Protocol::Pop3s => Some(Dialect::Pop3),
            Protocol::Ldap | Protocol::Ldaps => Some(Dialect::Ldap),
            Protocol::Ftp | Protocol::Ftps => Some(Dialect::Ftp),
            Protocol::Nntp | Protocol::Nntps => Some(Dialect::Nntp),
            Protocol::Xmpp | Protocol::Xmpps => Some(Dialect::Xmpp(xmpp::Kind::Client)),
            Protocol::XmppServer => Some(Dialect::Xmpp(xmpp::Kind::Server)),
            Protocol::Sieve => Some(Dialect::Sieve),
            Protocol::Postgres | Protocol::PostgresDirect => Some(Dialect::Postgres),
            Protocol::Http | Protocol::Https => Some(Dialect::Http),
            Protocol::Tls => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

impl FromStr for Protocol {
    type Err = Error;

    /// Parses a scheme name, case-insensitively.
    fn from_str(s: &str) -> Result<Protocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.scheme().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::InvalidArgument(format!("unknown protocol {s:?}")))
    }
}

/// What a dialog needs besides the wire.
pub(crate) struct DialogContext<'a> {
    pub policy: Policy,
    pub timeouts: &'a Timeouts,
    /// The EHLO/LHLO name.
    pub client_name: &'a str,
    /// The name the certificate is checked against (HTTP `Host`).
    pub server_name: &'a str,
    /// The server's port, when known (HTTP `Host`).
    pub port: Option<u16>,
    /// IMAP command tags are `S1`, `S2`, ...: this is the next number.
    pub next_tag: &'a mut u32,
}

impl DialogContext<'_> {
    pub fn deadline(&self, phase: Phase) -> Deadline {
        Deadline::after(self.timeouts.reply, phase)
    }

    /// TLS cannot happen: fail under *require*; carry on in plaintext under *opportunistic*.
    pub fn tls_impossible(&self, mut pre: PreTls, reason: Error) -> Result<PreTls> {
        match self.policy {
            Policy::Require => Err(reason),
            Policy::Opportunistic => {
                pre.outcome = Outcome::Plaintext(reason);
                Ok(pre)
            }
        }
    }

    pub fn imap_tag(&mut self) -> String {
        let tag = format!("S{}", *self.next_tag);
        *self.next_tag += 1;
        tag
    }
}

/// What the pre-TLS dialog learned, and how it ended.
#[derive(Debug)]
pub(crate) struct PreTls {
    /// The greeting, printable (informational: it came in plaintext).
    pub greeting: Option<String>,
    /// Capabilities seen in plaintext, when they were asked for (untrusted).
    pub capabilities: Option<Vec<String>>,
    /// Whether STARTTLS was advertised; `None` when the dialog did not ask.
    pub starttls_offered: Option<bool>,
    pub outcome: Outcome,
}

impl PreTls {
    pub fn new() -> PreTls {
        PreTls {
            greeting: None,
            capabilities: None,
            starttls_offered: None,
            outcome: Outcome::GoAhead,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Outcome {
    /// The server said go: TLS starts now.
    GoAhead,
    /// Opportunistic mode, and TLS was impossible for this reason.
    Plaintext(Error),
}

/// What the server said first, read inside TLS for implicit TLS.
pub(crate) struct Greeting {
    pub text: String,
    pub capabilities: Option<Vec<String>>,
}

/// Runs the client side of `dialect`'s pre-TLS dialog, up to and including the go-ahead.
pub(crate) fn client_starttls<T: Transport>(
    dialect: Dialect,
    wire: &mut Wire<'_, T>,
    ctx: &mut DialogContext<'_>,
) -> Result<PreTls> {
    match dialect {
        Dialect::Smtp => smtp::client_starttls(wire, ctx, smtp::Hello::Ehlo),
        Dialect::Lmtp => smtp::client_starttls(wire, ctx, smtp::Hello::Lhlo),
        Dialect::Imap => imap::client_starttls(wire, ctx),
        Dialect::Pop3 => pop3::client_starttls(wire, ctx),
        Dialect::Ldap => ldap::client_starttls(wire, ctx),
        Dialect::Ftp => ftp::client_starttls(wire, ctx),
        Dialect::Nntp => nntp::client_starttls(wire, ctx),
        Dialect::Xmpp(kind) => xmpp::client_starttls(wire, ctx, kind),
        Dialect::Sieve => sieve::client_starttls(wire, ctx),
        Dialect::Postgres => postgres::client_starttls(wire, ctx),
        Dialect::Http => http::client_starttls(wire, ctx),
    }
}

/// What a STARTTLS dialog reads right after the handshake, when the protocol says the server
/// speaks first (ManageSieve re-sends its capabilities; HTTP answers the `OPTIONS *`).
pub(crate) fn client_after_starttls<T: Transport>(
    dialect: Dialect,
    wire: &mut Wire<'_, T>,
    ctx: &mut DialogContext<'_>,
) -> Result<Option<Vec<String>>> {
    match dialect {
        Dialect::Sieve => sieve::read_capabilities(wire, ctx).map(Some),
        Dialect::Http => http::client_after_starttls(wire, ctx).map(|()| None),
        _ => Ok(None),
    }
}

/// Reads the greeting inside TLS, for implicit TLS; `None` when the client speaks first.
pub(crate) fn client_greeting<T: Transport>(
    dialect: Dialect,
    wire: &mut Wire<'_, T>,
    ctx: &mut DialogContext<'_>,
) -> Result<Option<Greeting>> {
    match dialect {
        Dialect::Smtp | Dialect::Lmtp => smtp::client_greeting(wire, ctx).map(Some),
        Dialect::Imap => imap::client_greeting(wire, ctx, true).map(Some),
        Dialect::Pop3 => pop3::client_greeting(wire, ctx).map(Some),
        Dialect::Nntp => nntp::client_greeting(wire, ctx).map(Some),
        Dialect::Ftp => ftp::client_greeting(wire, ctx).map(Some),
        Dialect::Ldap | Dialect::Xmpp(_) | Dialect::Sieve | Dialect::Postgres | Dialect::Http => {
            Ok(None)
        }
    }
}

/// Asks for the capabilities (inside TLS, where they can be trusted).
pub(crate) fn client_capabilities<T: Transport>(
    dialect: Dialect,
    wire: &mut Wire<'_, T>,
    ctx: &mut DialogContext<'_>,
) -> Result<Vec<String>> {
    match dialect {
        Dialect::Smtp => smtp::client_capabilities(wire, ctx, smtp::Hello::Ehlo),
        Dialect::Lmtp => smtp::client_capabilities(wire, ctx, smtp::Hello::Lhlo),
        Dialect::Imap => imap::client_capabilities(wire, ctx),
        Dialect::Pop3 => pop3::client_capabilities(wire, ctx),
        Dialect::Nntp => nntp::client_capabilities(wire, ctx),
        Dialect::Ftp => ftp::client_capabilities(wire, ctx),
        Dialect::Xmpp(kind) => xmpp::client_capabilities(wire, ctx, kind),
        Dialect::Sieve => sieve::client_capabilities(wire, ctx),
        Dialect::Ldap | Dialect::Postgres | Dialect::Http => Err(Error::InvalidArgument(
            "this protocol has no capabilities to fetch".into(),
        )),
    }
}

/// Most commands a client may send before STARTTLS; more is a protocol violation.
pub(crate) const MAX_COMMANDS_BEFORE_TLS: usize = 32;

/// What a server dialog needs besides the wire.
pub(crate) struct ServerContext<'a> {
    pub timeouts: &'a Timeouts,
    /// The host name announced in greetings.
    pub hostname: &'a str,
    /// The configured greeting text, if any.
    pub greeting: Option<&'a str>,
}

impl ServerContext<'_> {
    /// The deadline for one client command (or the handshake's first record).
    pub fn deadline(&self, phase: Phase) -> Deadline {
        Deadline::after(self.timeouts.reply, phase)
    }

    /// The greeting text: configured, or the protocol's default.
    pub fn greeting_or(&self, default: &str) -> String {
        format!("{} {}", self.hostname, self.greeting.unwrap_or(default))
    }
}

/// What the server's pre-TLS dialog learned.
#[derive(Debug, Default)]
pub(crate) struct ServerPreTls {
    /// The name the client gave (EHLO/LHLO argument, XMPP `to`, HTTP `Host`), untrusted.
    pub peer_name: Option<String>,
}

/// How a server answers one pre-TLS command.
pub(crate) enum ServerStep {
    /// Send this reply and wait for the next command.
    Reply(String),
    /// Send this go-ahead; TLS starts next.
    GoAhead(String),
    /// Send this reply and end the connection with this error.
    Close(String, Error),
}

/// The command loop of a line-based server dialog: reads commands (bounded in length, count and
/// time), answers each through `handle`, and returns after sending the go-ahead. A client that
/// pipelined anything after its STARTTLS gets no go-ahead: that is an injection.
pub(crate) fn serve_commands<T: Transport>(
    wire: &mut Wire<'_, T>,
    ctx: &ServerContext<'_>,
    mut handle: impl FnMut(&str) -> ServerStep,
) -> Result<()> {
    for _ in 0..MAX_COMMANDS_BEFORE_TLS {
        let deadline = ctx.deadline(Phase::StartTls);
        let line = wire.read_line(&deadline)?;
        let text = crate::wire::line_text(&line);
        match handle(&text) {
            ServerStep::Reply(reply) => wire.send_reply(&reply, &deadline)?,
            ServerStep::GoAhead(reply) => {
                wire.ensure_nothing_after_go_ahead()?;
                return wire.send_reply(&reply, &deadline);
            }
            ServerStep::Close(reply, error) => {
                wire.send_reply(&reply, &deadline)?;
                return Err(error);
            }
        }
    }
    Err(Error::violation(
        Phase::StartTls,
        format!("more than {MAX_COMMANDS_BEFORE_TLS} commands before STARTTLS"),
    ))
}

/// The client ended the session before TLS (QUIT, LOGOUT, ...).
pub(crate) fn client_quit() -> Error {
    Error::Closed {
        phase: Phase::StartTls,
    }
}

/// The first word of a command, upper-cased, and the rest.
pub(crate) fn verb(line: &str) -> (String, &str) {
    let (v, rest) = line.split_once(' ').unwrap_or((line, ""));
    (v.to_ascii_uppercase(), rest.trim())
}

/// Runs the server side of `dialect`'s pre-TLS dialog, up to and including the go-ahead.
pub(crate) fn server_starttls<T: Transport>(
    dialect: Dialect,
    wire: &mut Wire<'_, T>,
    ctx: &ServerContext<'_>,
) -> Result<ServerPreTls> {
    match dialect {
        Dialect::Smtp => smtp::server_starttls(wire, ctx, smtp::Hello::Ehlo),
        Dialect::Lmtp => smtp::server_starttls(wire, ctx, smtp::Hello::Lhlo),
        Dialect::Imap => imap::server_starttls(wire, ctx),
        Dialect::Pop3 => pop3::server_starttls(wire, ctx),
        Dialect::Ldap => ldap::server_starttls(wire, ctx),
        Dialect::Ftp => ftp::server_starttls(wire, ctx),
        Dialect::Nntp => nntp::server_starttls(wire, ctx),
        Dialect::Xmpp(kind) => xmpp::server_starttls(wire, ctx, kind),
        Dialect::Sieve => sieve::server_starttls(wire, ctx),
        Dialect::Postgres => postgres::server_starttls(wire, ctx),
        Dialect::Http => http::server_starttls(wire, ctx),
    }
}

/// What the server says first inside TLS: the greeting for implicit TLS, for ManageSieve the
/// capabilities it must re-send after STARTTLS, for HTTP the answer to `OPTIONS *`.
pub(crate) fn server_after_tls<T: Transport>(
    dialect: Dialect,
    wire: &mut Wire<'_, T>,
    ctx: &ServerContext<'_>,
    implicit: bool,
) -> Result<()> {
    let deadline = ctx.deadline(Phase::Greeting);
    let greeting = match (dialect, implicit) {
        (Dialect::Smtp, true) => smtp::server_greeting(ctx),
        (Dialect::Imap, true) => imap::server_greeting(ctx, false),
        (Dialect::Pop3, true) => pop3::server_greeting(ctx),
        (Dialect::Nntp, true) => nntp::server_greeting(ctx),
        (Dialect::Ftp, true) => ftp::server_greeting(ctx),
        (Dialect::Sieve, false) => sieve::server_capabilities(ctx, false),
        (Dialect::Http, false) => http::OPTIONS_RESPONSE.to_owned(),
        _ => return Ok(()),
    };
    wire.send_reply(&greeting, &deadline)
}

/// The body of a dot-terminated multi-line answer (POP3, NNTP), dot-unstuffed and bounded.
pub(crate) fn read_dot_terminated<T: Transport>(
    wire: &mut Wire<'_, T>,
    deadline: &Deadline,
) -> Result<Vec<String>> {
    let max = wire.limits().max_lines;
    let mut lines = Vec::new();
    loop {
        let line = wire.read_line(deadline)?;
        if line == b"." {
            return Ok(lines);
        }
        if lines.len() >= max {
            return Err(Error::violation(
                deadline.phase(),
                format!("multi-line answer longer than {max} lines"),
            ));
        }
        let body = line.strip_prefix(b".").unwrap_or(&line);
        lines.push(crate::wire::line_text(body));
    }
}

/// Logs in inside TLS with the protocol's mechanism, chosen from `caps` (fetched inside TLS).
pub(crate) fn client_authenticate<T: Transport>(
    dialect: Dialect,
    wire: &mut Wire<'_, T>,
    ctx: &mut DialogContext<'_>,
    caps: &[String],
    creds: &Credentials,
) -> Result<AuthOutcome> {
    match dialect {
        Dialect::Smtp | Dialect::Lmtp => smtp::client_authenticate(wire, ctx, caps, creds),
        Dialect::Imap => imap::client_authenticate(wire, ctx, caps, creds),
        Dialect::Pop3 => pop3::client_authenticate(wire, ctx, caps, creds),
        Dialect::Nntp => nntp::client_authenticate(wire, ctx, caps, creds),
        Dialect::Sieve => sieve::client_authenticate(wire, ctx, caps, creds),
        Dialect::Xmpp(kind) => xmpp::client_authenticate(wire, ctx, caps, creds, kind),
        Dialect::Ldap => ldap::client_authenticate(wire, ctx, creds),
        Dialect::Ftp => ftp::client_authenticate(wire, ctx, creds),
        Dialect::Postgres | Dialect::Http => Err(Error::InvalidArgument(
            "no login step for this protocol in this library".into(),
        )),
    }
}

/// No mechanism the library can use was offered inside TLS.
pub(crate) fn no_mechanism(offered: &[String]) -> Error {
    Error::NotOffered {
        reply: Some(format!(
            "no supported login mechanism offered inside TLS (capabilities: {})",
            offered.join(", ")
        )),
    }
}

/// The protocol's polite goodbye inside TLS, and its reply where there is one (not checked:
/// the session is ending either way). `stream_open`: an XMPP stream was opened inside TLS.
pub(crate) fn client_goodbye<T: Transport>(
    dialect: Dialect,
    wire: &mut Wire<'_, T>,
    ctx: &mut DialogContext<'_>,
    stream_open: bool,
) -> Result<()> {
    let deadline = ctx.deadline(Phase::Close);
    match dialect {
        Dialect::Smtp | Dialect::Lmtp | Dialect::Pop3 | Dialect::Nntp | Dialect::Ftp => {
            wire.send_line("QUIT", &deadline)?;
            wire.read_line(&deadline).map(|_| ())
        }
        Dialect::Imap => {
            let tag = ctx.imap_tag();
            wire.send_line(&format!("{tag} LOGOUT"), &deadline)?;
            for _ in 0..wire.limits().max_lines {
                let line = wire.read_line(&deadline)?;
                if line.starts_with(tag.as_bytes()) {
                    break;
                }
            }
            Ok(())
        }
        Dialect::Sieve => {
            wire.send_line("LOGOUT", &deadline)?;
            wire.read_line(&deadline).map(|_| ())
        }
        Dialect::Ldap => {
            // UnbindRequest, message 2: no response.
            wire.send_message(&[0x30, 0x05, 0x02, 0x01, 0x02, 0x42, 0x00], &deadline)?;
            wire.note(crate::wire::Direction::Sent, "UnbindRequest".into());
            Ok(())
        }
        Dialect::Xmpp(_) if stream_open => {
            wire.send_message(b"</stream:stream>", &deadline)?;
            wire.note(crate::wire::Direction::Sent, "</stream:stream>".into());
            Ok(())
        }
        Dialect::Xmpp(_) | Dialect::Postgres | Dialect::Http => Ok(()),
    }
}

/// True when `caps` holds `name` as a whole keyword (first word, any case).
pub(crate) fn has_capability(caps: &[String], name: &str) -> bool {
    caps.iter().any(|c| {
        c.split_ascii_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    use crate::wire::Limits;
    use crate::wire::script::{Script, Step};

    /// Runs `dialog` against a scripted peer; returns its result and the script to inspect.
    pub fn run<R>(
        policy: Policy,
        steps: Vec<Step>,
        dialog: impl FnOnce(&mut Wire<'_, Script>, &mut DialogContext<'_>) -> R,
    ) -> (R, Script) {
        let mut script = Script::new(steps);
        let r = with_ctx(policy, |ctx| {
            dialog(&mut Wire::new(&mut script, Limits::default()), ctx)
        });
        (r, script)
    }

    /// Peer bytes built at run time, as the `'static` slices scripts hold.
    pub fn leak(bytes: impl Into<Vec<u8>>) -> &'static [u8] {
        Box::leak(bytes.into().into_boxed_slice())
    }

    /// Runs `f` with a dialog context of the given policy and default timeouts.
    pub fn with_ctx<R>(policy: Policy, f: impl FnOnce(&mut DialogContext<'_>) -> R) -> R {
        let timeouts = Timeouts::default();
        let mut tag = 1;
        let mut ctx = DialogContext {
            policy,
            timeouts: &timeouts,
            client_name: "client.test",
            server_name: "server.test",
            port: None,
            next_tag: &mut tag,
        };
        f(&mut ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(p.scheme().parse::<Protocol>().unwrap(), p);
            assert_eq!(p.to_string().to_uppercase().parse::<Protocol>().unwrap(), p);
        }
        assert!("gopher".parse::<Protocol>().is_err());
    }

    #[test]
    fn protocol_codes_are_frozen() {
        let frozen = [
            (Protocol::Smtp, 1),
            (Protocol::Lmtp, 2),
            (Protocol::Imap, 3),
            (Protocol::Pop3, 4),
            (Protocol::Ldap, 5),
            (Protocol::Nntp, 8),
            (Protocol::Sieve, 9),
            (Protocol::Postgres, 10),
            (Protocol::Http, 11),
            (Protocol::Tls, 12),
            (Protocol::Submission, 13),
            (Protocol::Smtps, 14),
            (Protocol::Imaps, 15),
            (Protocol::Pop3s, 16),
            (Protocol::Nntps, 17),
            (Protocol::PostgresDirect, 18),
            (Protocol::Https, 19),
            (Protocol::Ldaps, 20),
            (Protocol::Xmpp, 7),
            (Protocol::XmppServer, 21),
            (Protocol::Xmpps, 22),
            (Protocol::Ftp, 6),
            (Protocol::Ftps, 23),
        ];
        assert_eq!(frozen.len(), Protocol::ALL.len());
        for (p, c) in frozen {
            assert_eq!(p.code(), c);
            assert_eq!(Protocol::from_code(c), Some(p));
        }
        assert_eq!(Protocol::from_code(0), None);
        assert_eq!(Protocol::from_code(u32::MAX), None);
    }

    #[test]
    fn capability_match_is_whole_word() {
        let caps = vec!["STARTTLSX".to_string(), "SIZE 100".to_string()];
        assert!(!has_capability(&caps, "STARTTLS"));
        assert!(has_capability(&caps, "size"));
    }
}
