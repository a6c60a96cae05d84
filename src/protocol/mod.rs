//! The protocols: one table of every protocol's facts, and the pieces their dialogs share.
//!
//! Each protocol's file holds its client and server dialog before TLS, the steps it runs inside
//! TLS (capabilities again, the implicit-TLS greeting), its login and its goodbye, and implements
//! [`Dialog`] once. Adding a protocol is one row in [`TABLE`] plus its own file. Every dialog
//! runs on the same [`Wire`], policy and error machinery, and none of them knows about
//! connections.

use std::fmt;
use std::str::FromStr;

use crate::config::{KeyShare, Policy, ProtocolAlpn, Timeouts};
use crate::error::{Error, Phase, Result};
use crate::wire::{Deadline, Wire};

pub(crate) mod ftp;
pub(crate) mod http;
pub(crate) mod imap;
pub(crate) mod ldap;
pub(crate) mod mechanisms;
pub(crate) mod mysql;
pub(crate) mod nntp;
pub(crate) mod pop3;
pub(crate) mod postgres;
pub(crate) mod sasl;
pub(crate) mod scram;
mod server;
pub(crate) mod sieve;
pub(crate) mod smtp;
pub(crate) mod xmpp;

use sasl::{AuthOutcome, Login};
pub(crate) use server::{
    MAX_COMMANDS_BEFORE_TLS, ServerContext, ServerPreTls, ServerStep, client_quit, serve_commands,
    verb,
};

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
    /// MySQL and MariaDB: the SSL request after the server's greeting, port 3306.
    Mysql,
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

/// What the library knows about one protocol.
pub(crate) struct ProtocolInfo {
    pub protocol: Protocol,
    /// The frozen number naming it in the C ABI (`STARTTLS_PROTO_*`) and Python.
    pub code: u32,
    /// The URL scheme (`smtp`, `imaps`, ...).
    pub scheme: &'static str,
    pub default_port: Option<u16>,
    /// TLS starts at once (RFC 8314) instead of after a STARTTLS dialog.
    pub implicit: bool,
    pub alpn: ProtocolAlpn,
    /// The client's first key share (PostgreSQL: P-256, which its servers accept).
    pub key_share: KeyShare,
    /// The dialog spoken around TLS; `None` for bare TLS.
    pub dialog: Option<&'static dyn Dialog>,
}

const fn row(
    protocol: Protocol,
    code: u32,
    scheme: &'static str,
    default_port: Option<u16>,
    implicit: bool,
    dialog: &'static dyn Dialog,
) -> ProtocolInfo {
    ProtocolInfo {
        protocol,
        code,
        scheme,
        default_port,
        implicit,
        alpn: ProtocolAlpn::Config,
        key_share: KeyShare::Default,
        dialog: Some(dialog),
    }
}

const STARTTLS: bool = false;
const IMPLICIT: bool = true;
const SMTP: smtp::Smtp = smtp::Smtp(smtp::Hello::Ehlo);
const XMPP_CLIENT: xmpp::Xmpp = xmpp::Xmpp(xmpp::Kind::Client);

/// Every protocol, in the order of [`Protocol`]'s variants (a test checks it).
const ROWS: [ProtocolInfo; 24] = {
    use Protocol as P;
    [
        row(P::Smtp, 1, "smtp", Some(25), STARTTLS, &SMTP),
        row(P::Submission, 13, "submission", Some(587), STARTTLS, &SMTP),
        row(
            P::Lmtp,
            2,
            "lmtp",
            Some(24),
            STARTTLS,
            &smtp::Smtp(smtp::Hello::Lhlo),
        ),
        row(P::Imap, 3, "imap", Some(143), STARTTLS, &imap::Imap),
        row(P::Pop3, 4, "pop3", Some(110), STARTTLS, &pop3::Pop3),
        row(P::Ldap, 5, "ldap", Some(389), STARTTLS, &ldap::Ldap),
        row(P::Ftp, 6, "ftp", Some(21), STARTTLS, &ftp::Ftp),
        row(P::Nntp, 8, "nntp", Some(119), STARTTLS, &nntp::Nntp),
        row(P::Xmpp, 7, "xmpp", Some(5222), STARTTLS, &XMPP_CLIENT),
        row(
            P::XmppServer,
            21,
            "xmpp-server",
            Some(5269),
            STARTTLS,
            &xmpp::Xmpp(xmpp::Kind::Server),
        ),
        row(P::Sieve, 9, "sieve", Some(4190), STARTTLS, &sieve::Sieve),
        ProtocolInfo {
            key_share: KeyShare::P256First,
            ..row(
                P::Postgres,
                10,
                "postgres",
                Some(5432),
                STARTTLS,
                &postgres::Postgres,
            )
        },
        row(P::Http, 11, "http", Some(80), STARTTLS, &http::Http),
        row(P::Mysql, 24, "mysql", Some(3306), STARTTLS, &mysql::Mysql),
        row(P::Smtps, 14, "smtps", Some(465), IMPLICIT, &SMTP),
        row(P::Imaps, 15, "imaps", Some(993), IMPLICIT, &imap::Imap),
        row(P::Pop3s, 16, "pop3s", Some(995), IMPLICIT, &pop3::Pop3),
        row(P::Nntps, 17, "nntps", Some(563), IMPLICIT, &nntp::Nntp),
        row(P::Ldaps, 20, "ldaps", Some(636), IMPLICIT, &ldap::Ldap),
        ProtocolInfo {
            alpn: ProtocolAlpn::Offer(b"xmpp-client"),
            ..row(P::Xmpps, 22, "xmpps", Some(5223), IMPLICIT, &XMPP_CLIENT)
        },
        row(P::Ftps, 23, "ftps", Some(990), IMPLICIT, &ftp::Ftp),
        ProtocolInfo {
            alpn: ProtocolAlpn::Require(b"postgresql"),
            key_share: KeyShare::P256First,
            ..row(
                P::PostgresDirect,
                18,
                "postgres-direct",
                Some(5432),
                IMPLICIT,
                &postgres::Postgres,
            )
        },
        row(P::Https, 19, "https", Some(443), IMPLICIT, &http::Http),
        ProtocolInfo {
            protocol: P::Tls,
            code: 12,
            scheme: "tls",
            default_port: None,
            implicit: IMPLICIT,
            alpn: ProtocolAlpn::Config,
            key_share: KeyShare::Default,
            dialog: None,
        },
    ]
};

static TABLE: [ProtocolInfo; 24] = ROWS;

impl Protocol {
    /// Every protocol, for listings and feature queries.
    pub const ALL: [Protocol; 24] = {
        let mut all = [Protocol::Tls; 24];
        let mut i = 0;
        while i < all.len() {
            all[i] = ROWS[i].protocol;
            i += 1;
        }
        all
    };

    /// This protocol's row in the table.
    pub(crate) fn info(self) -> &'static ProtocolInfo {
        &TABLE[self as usize]
    }

    /// The frozen number naming this protocol in the C ABI (`STARTTLS_PROTO_*`) and Python.
    pub fn code(self) -> u32 {
        self.info().code
    }

    /// The protocol for a number from [`code`](Self::code), if this build supports it.
    pub fn from_code(code: u32) -> Option<Protocol> {
        TABLE.iter().find(|r| r.code == code).map(|r| r.protocol)
    }

    /// The URL scheme naming this protocol (`smtp`, `imaps`, ...).
    pub fn scheme(self) -> &'static str {
        self.info().scheme
    }

    /// The usual port, when there is one.
    pub fn default_port(self) -> Option<u16> {
        self.info().default_port
    }

    /// True when TLS starts at once (RFC 8314) instead of after a STARTTLS dialog.
    pub fn is_implicit(self) -> bool {
        self.info().implicit
    }

    /// Whether [`Connection::authenticate`](crate::Connection::authenticate) has a login step
    /// for this protocol (not for `tls`, HTTP, or the server-to-server XMPP namespace).
    pub fn has_login(self) -> bool {
        self.dialog().is_some_and(|d| d.has_login())
    }

    /// The ALPN this protocol asks for (PostgreSQL and XMPP direct TLS have their own).
    pub(crate) fn alpn(self) -> ProtocolAlpn {
        self.info().alpn
    }

    /// The key share this protocol's first flight carries.
    pub(crate) fn key_share(self) -> KeyShare {
        self.info().key_share
    }

    /// The dialog spoken around TLS; `None` for bare TLS.
    pub(crate) fn dialog(self) -> Option<&'static dyn Dialog> {
        self.info().dialog
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
        TABLE
            .iter()
            .find(|r| r.scheme.eq_ignore_ascii_case(s))
            .map(|r| r.protocol)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown protocol {s:?}")))
    }
}

/// One protocol's dialog around TLS, both sides. Each protocol file implements it once; a step
/// a protocol does not have keeps the default.
pub(crate) trait Dialog: Sync {
    /// Client: the pre-TLS dialog, up to and including the go-ahead.
    fn client_starttls(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls>;

    /// Client, after a STARTTLS handshake: what the server says first inside TLS, when the
    /// protocol says it speaks first (ManageSieve re-sends its capabilities; HTTP answers the
    /// `OPTIONS *`).
    fn client_after_starttls(
        &self,
        _wire: &mut Wire<'_>,
        _ctx: &mut DialogContext,
    ) -> Result<Option<Vec<String>>> {
        Ok(None)
    }

    /// Client, implicit TLS: the greeting read inside TLS; `None` when the client speaks first.
    fn client_greeting(
        &self,
        _wire: &mut Wire<'_>,
        _ctx: &mut DialogContext,
    ) -> Result<Option<Greeting>> {
        Ok(None)
    }

    /// Whether the protocol has a capability list to fetch inside TLS.
    fn has_capabilities(&self) -> bool {
        true
    }

    /// Client: asks for the capabilities (inside TLS, where they can be trusted).
    fn client_capabilities(
        &self,
        _wire: &mut Wire<'_>,
        _ctx: &mut DialogContext,
    ) -> Result<Vec<String>> {
        Err(Error::InvalidArgument(
            "this protocol has no capabilities to fetch".into(),
        ))
    }

    /// Whether the login step chooses its mechanism from the capabilities (fetched first).
    fn login_needs_capabilities(&self) -> bool {
        self.has_capabilities()
    }

    /// Whether the library has a login step for the protocol.
    fn has_login(&self) -> bool {
        false
    }

    /// Client: logs in inside TLS with a mechanism chosen from `caps` (fetched inside TLS; empty
    /// for a protocol without capabilities).
    fn client_authenticate(
        &self,
        _wire: &mut Wire<'_>,
        _ctx: &mut DialogContext,
        _caps: &[String],
        _login: &Login<'_>,
    ) -> Result<AuthOutcome> {
        Err(Error::InvalidArgument(
            "no login step for this protocol in this library".into(),
        ))
    }

    /// Client: the protocol's polite goodbye inside TLS, and its reply where there is one (not
    /// checked: the session is ending either way).
    fn client_goodbye(&self, _wire: &mut Wire<'_>, _ctx: &mut DialogContext) -> Result<()> {
        Ok(())
    }

    /// Server: the pre-TLS dialog, up to and including the go-ahead.
    fn server_starttls(&self, wire: &mut Wire<'_>, ctx: &ServerContext<'_>)
    -> Result<ServerPreTls>;

    /// Server: what it says first inside TLS — the greeting for implicit TLS, for ManageSieve the
    /// capabilities it must re-send after STARTTLS, for HTTP the answer to `OPTIONS *`.
    fn server_first_inside_tls(&self, _ctx: &ServerContext<'_>, _implicit: bool) -> Option<String> {
        None
    }
}

/// The client side of one connection's dialog: who is talking to whom, and the little state a
/// protocol keeps across steps. A connection owns one and hands it to every step.
pub(crate) struct DialogContext {
    pub policy: Policy,
    pub timeouts: Timeouts,
    /// The EHLO/LHLO name.
    pub client_name: String,
    /// The name the certificate is checked against (HTTP `Host`, XMPP `to`).
    pub server_name: String,
    /// The server's port, when known (HTTP `Host`).
    pub port: Option<u16>,
    pub session: SessionState,
}

/// What a protocol remembers between the steps of one session.
#[derive(Debug)]
pub(crate) struct SessionState {
    /// IMAP: command tags are `S1`, `S2`, ...; LDAP: message ids (1 is StartTLS). This is the
    /// next IMAP number, the last LDAP one.
    pub next_id: u32,
    /// FTP: `PBSZ 0` / `PROT P` were sent.
    pub ftp_data_protected: bool,
    /// XMPP: a stream was opened inside TLS (it is closed by the goodbye).
    pub xmpp_stream_open: bool,
    /// MySQL: what the greeting said that the login needs (the scramble, the plugin, the
    /// flags the SSL request announced); whether the login succeeded (the goodbye needs it).
    pub mysql: Option<mysql::Hello>,
    pub mysql_logged_in: bool,
}

impl DialogContext {
    pub fn new(
        policy: Policy,
        timeouts: Timeouts,
        client_name: String,
        server_name: String,
        port: Option<u16>,
    ) -> DialogContext {
        DialogContext {
            policy,
            timeouts,
            client_name,
            server_name,
            port,
            session: SessionState {
                next_id: 1,
                ftp_data_protected: false,
                xmpp_stream_open: false,
                mysql: None,
                mysql_logged_in: false,
            },
        }
    }

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
        let tag = format!("S{}", self.session.next_id);
        self.session.next_id += 1;
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

/// The goodbye of the line protocols: one command (`QUIT`, `LOGOUT`) and its one-line reply.
pub(crate) fn goodbye_line(wire: &mut Wire<'_>, ctx: &DialogContext, command: &str) -> Result<()> {
    let deadline = ctx.deadline(Phase::Close);
    wire.send_line(command, &deadline)?;
    wire.read_line(&deadline).map(|_| ())
}

/// The body of a dot-terminated multi-line answer (POP3, NNTP), dot-unstuffed and bounded.
pub(crate) fn read_dot_terminated(wire: &mut Wire<'_>, deadline: &Deadline) -> Result<Vec<String>> {
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

/// No mechanism the library can use was offered inside TLS.
pub(crate) fn no_mechanism(offered: &[String]) -> Error {
    Error::NoLoginMechanism {
        reply: format!("the capabilities are: {}", offered.join(", ")),
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

/// The words after `keyword` in the capability lines that start with it (any case): the SASL
/// mechanisms of `SASL PLAIN SCRAM-SHA-256` (POP3, NNTP, ManageSieve) or of XMPP's
/// `mechanisms PLAIN ...`.
pub(crate) fn listed_after(caps: &[String], keyword: &str) -> Vec<String> {
    caps.iter()
        .filter_map(|c| {
            let mut words = c.split_ascii_whitespace();
            words
                .next()
                .filter(|w| w.eq_ignore_ascii_case(keyword))
                .map(|_| words.map(str::to_owned).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
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
        dialog: impl FnOnce(&mut Wire<'_>, &mut DialogContext) -> R,
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
    pub fn with_ctx<R>(policy: Policy, f: impl FnOnce(&mut DialogContext) -> R) -> R {
        let mut ctx = DialogContext::new(
            policy,
            Timeouts::default(),
            "client.test".into(),
            "server.test".into(),
            None,
        );
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
            (Protocol::Mysql, 24),
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
    fn the_table_is_in_variant_order_with_unique_codes_and_schemes() {
        for (i, row) in TABLE.iter().enumerate() {
            assert_eq!(row.protocol as usize, i, "{:?}", row.protocol);
            assert_eq!(row.dialog.is_none(), row.protocol == Protocol::Tls);
        }
        let mut codes: Vec<_> = TABLE.iter().map(|r| r.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), TABLE.len());
        let mut schemes: Vec<_> = TABLE.iter().map(|r| r.scheme).collect();
        schemes.sort_unstable();
        schemes.dedup();
        assert_eq!(schemes.len(), TABLE.len());
    }

    #[test]
    fn capability_match_is_whole_word() {
        let caps = vec!["STARTTLSX".to_string(), "SIZE 100".to_string()];
        assert!(!has_capability(&caps, "STARTTLS"));
        assert!(has_capability(&caps, "size"));
    }
}
