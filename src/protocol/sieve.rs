//! ManageSieve (RFC 5804): both sides of the dialog before TLS, the steps inside it (the
//! capabilities re-sent, AUTHENTICATE), and the goodbye.
//!
//! The greeting is the capability list (`"NAME" "value"` lines) ending in `OK`; `STARTTLS` →
//! `OK` → TLS; the server then re-sends its capabilities unasked, and the client reads them
//! (they are the trusted ones).

use crate::error::{Error, Phase, Result};
use crate::protocol::sasl::{self, AuthOutcome, Login, Mechanism, Secret};
use crate::protocol::{
    Dialog, DialogContext, PreTls, ServerContext, ServerPreTls, ServerStep, goodbye_line,
    has_capability, serve_commands,
};
use crate::wire::{Deadline, Wire, line_text, printable};

/// One line of a ManageSieve response.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A capability: its quoted strings, joined by a space (`SASL PLAIN LOGIN`).
    Capability(String),
    /// `OK`, `NO` or `BYE` (upper-cased), with the rest of the line.
    Status(String, String),
}

fn parse(line: &[u8], phase: Phase) -> Result<Line> {
    let bad = |what: &str| Error::violation_in(phase, what.to_owned(), &printable(line));
    if line.first() == Some(&b'"') {
        let mut words = Vec::new();
        let mut rest = line;
        while !rest.is_empty() {
            let (word, after) = quoted(rest).ok_or_else(|| bad("malformed quoted string"))?;
            words.push(word);
            rest = match after {
                [] => after,
                [b' ', more @ ..] => more,
                _ => return Err(bad("junk after a quoted string")),
            };
        }
        return Ok(Line::Capability(words.join(" ")));
    }
    if line.ends_with(b"}") {
        return Err(bad("literal in a dialog response"));
    }
    let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let word = String::from_utf8_lossy(&line[..end]).to_ascii_uppercase();
    match word.as_str() {
        "OK" | "NO" | "BYE" => Ok(Line::Status(word, printable(line))),
        _ => Err(bad("expected a quoted capability or OK/NO/BYE")),
    }
}

/// A quoted string at the start of `s` (RFC 5804 §4: `\"` and `\\` escapes); the text and what
/// follows it.
fn quoted(s: &[u8]) -> Option<(String, &[u8])> {
    let body = s.strip_prefix(b"\"")?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            // Decoded text is peer text like any other: controls escaped.
            b'"' => return Some((line_text(&out), &body[i + 1..])),
            b'\\' => {
                let next = *body.get(i + 1)?;
                if next != b'"' && next != b'\\' {
                    return None;
                }
                out.push(next);
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// Reads a capability list up to its `OK` (the greeting, the answer to CAPABILITY, and the
/// list re-sent after TLS).
pub(crate) fn read_capabilities(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
) -> Result<Vec<String>> {
    read_list(wire, &ctx.deadline(Phase::Capabilities))
}

fn read_list(wire: &mut Wire<'_>, deadline: &Deadline) -> Result<Vec<String>> {
    let phase = deadline.phase();
    let max = wire.limits().max_lines;
    let mut caps = Vec::new();
    while caps.len() <= max {
        let line = wire.read_line(deadline)?;
        match parse(&line, phase)? {
            Line::Capability(c) => caps.push(c),
            Line::Status(s, _) if s == "OK" => return Ok(caps),
            Line::Status(_, reply) => return Err(Error::Refused { phase, reply }),
        }
    }
    Err(Error::violation(
        phase,
        format!("capability list longer than {max} lines"),
    ))
}

pub(crate) fn client_starttls(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
    let mut pre = PreTls::new();
    let caps = read_list(wire, &ctx.deadline(Phase::Greeting))?;
    let offered = has_capability(&caps, "STARTTLS");
    pre.greeting = caps
        .iter()
        .find(|c| c.starts_with("IMPLEMENTATION "))
        .cloned();
    pre.starttls_offered = Some(offered);
    pre.capabilities = Some(caps);
    if !offered {
        let shown = pre.capabilities.as_deref().unwrap_or_default().join(", ");
        return ctx.tls_impossible(pre, Error::NotOffered { reply: Some(shown) });
    }
    let deadline = ctx.deadline(Phase::StartTls);
    wire.send_line("STARTTLS", &deadline)?;
    let line = wire.read_line(&deadline)?;
    match parse(&line, Phase::StartTls)? {
        Line::Status(s, _) if s == "OK" => Ok(pre),
        Line::Status(_, reply) => {
            let reason = Error::Refused {
                phase: Phase::StartTls,
                reply,
            };
            ctx.tls_impossible(pre, reason)
        }
        Line::Capability(_) => Err(Error::violation_in(
            Phase::StartTls,
            "capability line instead of a reply to STARTTLS",
            &printable(&line),
        )),
    }
}

/// `CAPABILITY` → the list and `OK`.
pub(crate) fn client_capabilities(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
) -> Result<Vec<String>> {
    let deadline = ctx.deadline(Phase::Capabilities);
    wire.send_line("CAPABILITY", &deadline)?;
    read_list(wire, &deadline)
}

// --- server side ---

/// The capability list ending in OK: with STARTTLS before TLS, with SASL PLAIN after.
pub(crate) fn server_capabilities(ctx: &ServerContext<'_>, before_tls: bool) -> String {
    let mut out = String::from("\"IMPLEMENTATION\" \"starttls\"\r\n\"SIEVE\" \"\"\r\n");
    if before_tls {
        out.push_str("\"STARTTLS\"\r\n\"SASL\" \"\"\r\n");
    } else {
        out.push_str("\"SASL\" \"PLAIN\"\r\n");
    }
    let text = ctx
        .greeting_or("ManageSieve ready")
        .replace(['"', '\\'], "");
    out.push_str(&format!("\"VERSION\" \"1.0\"\r\nOK \"{text}\"\r\n"));
    out
}

/// The server's pre-TLS dialog; after TLS the library re-sends the capabilities (RFC 5804
/// §2.2), so the connection stands where the client speaks next.
pub(crate) fn server_starttls(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
) -> Result<ServerPreTls> {
    wire.send_reply(
        &server_capabilities(ctx, true),
        &ctx.deadline(Phase::Greeting),
    )?;
    serve_commands(wire, ctx, |line| {
        if line.ends_with('}') {
            return ServerStep::Close(
                "BYE \"Literals are not accepted before STARTTLS\"\r\n".into(),
                Error::violation_in(Phase::StartTls, "literal before STARTTLS", line),
            );
        }
        let (verb, rest) = super::verb(line);
        match verb.trim_matches('"') {
            "STARTTLS" if rest.is_empty() => {
                ServerStep::GoAhead("OK \"Begin TLS negotiation now\"\r\n".into())
            }
            "CAPABILITY" => ServerStep::Reply(server_capabilities(ctx, true)),
            "NOOP" => ServerStep::Reply("OK \"NOOP completed\"\r\n".into()),
            "LOGOUT" => ServerStep::Close("OK \"Bye\"\r\n".into(), super::client_quit()),
            _ => ServerStep::Reply("NO (ENCRYPT-NEEDED) \"Use STARTTLS first\"\r\n".into()),
        }
    })?;
    Ok(ServerPreTls::default())
}

// --- authentication inside TLS ---

/// The longest SASL challenge taken as a literal.
const MAX_CHALLENGE_LITERAL: usize = 4096;

/// A server challenge line: a quoted string, or a literal `{n}` whose bytes follow (RFC 5804
/// §2.1 allows either); `None` for a status line.
fn challenge_text(wire: &mut Wire<'_>, line: &[u8], deadline: &Deadline) -> Result<Option<String>> {
    let phase = deadline.phase();
    if let Some(inner) = line.strip_prefix(b"{").and_then(|l| l.strip_suffix(b"}")) {
        let digits = inner.strip_suffix(b"+").unwrap_or(inner);
        let n = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<usize>().ok())
            .filter(|&n| n <= MAX_CHALLENGE_LITERAL)
            .ok_or_else(|| {
                Error::violation_in(phase, "bad SASL challenge literal", &printable(line))
            })?;
        let bytes = wire.read_bytes(n, deadline)?;
        if !wire.read_line(deadline)?.is_empty() {
            return Err(Error::violation(
                phase,
                "junk after a SASL challenge literal",
            ));
        }
        return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
    }
    match parse(line, phase)? {
        Line::Capability(c) => Ok(Some(c)),
        Line::Status(..) => Ok(None),
    }
}

/// The data of an `OK (SASL "...")` response code: the server's last SASL message.
fn sasl_response_code(line: &[u8]) -> Option<String> {
    let rest = line.get(3..)?;
    let code = rest.strip_prefix(b"(")?;
    let (word, after) = code.split_at(code.iter().position(|&b| b == b' ')?);
    if !word.eq_ignore_ascii_case(b"SASL") {
        return None;
    }
    quoted(&after[1..]).map(|(text, _)| text)
}

/// A SASL exchange (RFC 5804 §2.1): `AUTHENTICATE "NAME" "initial-response"`, each challenge
/// (a string) answered with a string, until `OK` (with the server's last message as
/// `(SASL "...")` when it has one) or `NO`. A mechanism that refuses a challenge cancels with
/// `"*"` and fails with its own reason.
fn sasl_exchange(
    wire: &mut Wire<'_>,
    deadline: &Deadline,
    mechanism: &mut dyn Mechanism,
) -> Result<AuthOutcome> {
    let name = mechanism.name();
    let phase = deadline.phase();
    let first = sasl::base64_secret(mechanism.initial()?.as_bytes());
    let line = Secret::concat(&["AUTHENTICATE \"", name, "\" \"", first.as_str(), "\""]);
    let shown = format!("AUTHENTICATE \"{name}\" <credentials>");
    wire.send_secret_line(line.as_str(), &shown, deadline)?;
    for _ in 0..sasl::MAX_CHALLENGES {
        let line = wire.read_line(deadline)?;
        let Some(challenge) = challenge_text(wire, &line, deadline)? else {
            let text = printable(&line);
            if !line.get(..2).is_some_and(|w| w.eq_ignore_ascii_case(b"OK")) {
                return Err(sasl::rejected(mechanism, &text));
            }
            let data = match sasl_response_code(&line) {
                Some(d) => Some(sasl::challenge(&d, phase)?),
                None => None,
            };
            mechanism.finish(data.as_deref())?;
            return Ok(AuthOutcome::of(mechanism, text));
        };
        match sasl::challenge(&challenge, phase).and_then(|c| mechanism.answer(&c)) {
            Ok(answer) => {
                let answer = sasl::base64_secret(answer.as_bytes());
                let quoted = Secret::concat(&["\"", answer.as_str(), "\""]);
                wire.send_secret_line(quoted.as_str(), "<response>", deadline)?;
            }
            Err(e) => {
                wire.send_line("\"*\"", deadline)?;
                wire.read_line(deadline)?;
                return Err(e);
            }
        }
    }
    Err(sasl::too_many_challenges(phase))
}

/// The strongest SASL mechanism the `SASL` capability lists (SCRAM-SHA-256-PLUS,
/// SCRAM-SHA-256, PLAIN), by `AUTHENTICATE` (RFC 5804 §2.1).
pub(crate) fn client_authenticate(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    caps: &[String],
    login: &Login<'_>,
) -> Result<AuthOutcome> {
    let offered = super::listed_after(caps, "SASL");
    let Some(mut mechanism) = super::mechanisms::choose(&offered, login) else {
        return Err(super::no_mechanism(caps));
    };
    let deadline = ctx.deadline(Phase::Read);
    sasl_exchange(wire, &deadline, &mut *mechanism)
}

/// ManageSieve (RFC 5804).
pub(crate) struct Sieve;

impl Dialog for Sieve {
    fn client_starttls(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
        client_starttls(wire, ctx)
    }

    /// The server re-sends its capabilities right after the handshake.
    fn client_after_starttls(
        &self,
        wire: &mut Wire<'_>,
        ctx: &mut DialogContext,
    ) -> Result<Option<Vec<String>>> {
        read_capabilities(wire, ctx).map(Some)
    }

    fn client_capabilities(
        &self,
        wire: &mut Wire<'_>,
        ctx: &mut DialogContext,
    ) -> Result<Vec<String>> {
        client_capabilities(wire, ctx)
    }

    fn has_login(&self) -> bool {
        true
    }

    fn client_authenticate(
        &self,
        wire: &mut Wire<'_>,
        ctx: &mut DialogContext,
        caps: &[String],
        login: &Login<'_>,
    ) -> Result<AuthOutcome> {
        client_authenticate(wire, ctx, caps, login)
    }

    fn client_goodbye(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<()> {
        goodbye_line(wire, ctx, "LOGOUT")
    }

    fn server_starttls(
        &self,
        wire: &mut Wire<'_>,
        ctx: &ServerContext<'_>,
    ) -> Result<ServerPreTls> {
        server_starttls(wire, ctx)
    }

    fn server_first_inside_tls(&self, ctx: &ServerContext<'_>, implicit: bool) -> Option<String> {
        (!implicit).then(|| server_capabilities(ctx, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::error::ErrorKind;
    use crate::protocol::Outcome;
    use crate::protocol::testing;
    use crate::wire::script::{Script, Step};

    const GREETING: Step = Step::Server(
        b"\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\"SIEVE\" \"fileinto reject\"\r\n\"STARTTLS\"\r\n\"VERSION\" \"1.0\"\r\nOK \"Dovecot ready.\"\r\n",
    );

    fn run(policy: Policy, steps: Vec<Step>) -> (Result<PreTls>, Script) {
        testing::run(policy, steps, client_starttls)
    }

    #[test]
    fn stripped_starttls_fails_and_sends_nothing() {
        let (r, s) = run(
            Policy::Require,
            vec![Step::Server(
                b"\"IMPLEMENTATION\" \"x\"\r\n\"SASL\" \"PLAIN\"\r\nOK\r\n",
            )],
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotOffered);
        assert!(e.to_string().contains("SASL PLAIN"));
        assert!(s.all_written.is_empty());
    }

    #[test]
    fn no_and_bye_are_refusals() {
        for answer in [&b"NO \"not now\"\r\n"[..], b"BYE \"going\"\r\n"] {
            let answer = testing::leak(answer);
            let (r, _) = run(
                Policy::Require,
                vec![
                    GREETING,
                    Step::Client(b"STARTTLS\r\n"),
                    Step::Server(answer),
                ],
            );
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Refused);
        }
    }

    #[test]
    fn bye_greeting_is_refused() {
        let (r, _) = run(Policy::Require, vec![Step::Server(b"BYE \"too many\"\r\n")]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Refused);
    }

    #[test]
    fn garbage_and_literals_are_violations() {
        for g in [
            &b"\"unterminated\r\n"[..],
            b"\"A\"junk\r\n",
            b"\"bad \\escape\"\r\n",
            b"HELLO\r\n",
            b"\"SIEVE\" {99999}\r\n",
            b"OK {5}\r\n",
        ] {
            let g = testing::leak(g);
            let (r, _) = run(Policy::Require, vec![Step::Server(g)]);
            assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation, "{g:?}");
        }
    }

    #[test]
    fn endless_capabilities_are_bounded() {
        let flood = testing::leak(b"\"X\"\r\n".repeat(5000));
        let (r, _) = run(Policy::Require, vec![Step::Server(flood)]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn go_ahead_and_capabilities() {
        let (r, s) = run(
            Policy::Require,
            vec![
                GREETING,
                Step::Client(b"STARTTLS\r\n"),
                Step::Server(b"OK \"Begin TLS negotiation now.\"\r\n"),
            ],
        );
        let pre = r.unwrap();
        assert!(matches!(pre.outcome, Outcome::GoAhead));
        assert_eq!(
            pre.greeting.as_deref(),
            Some("IMPLEMENTATION Dovecot Pigeonhole")
        );
        assert_eq!(
            pre.capabilities.unwrap(),
            vec![
                "IMPLEMENTATION Dovecot Pigeonhole",
                "SIEVE fileinto reject",
                "STARTTLS",
                "VERSION 1.0"
            ]
        );
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn opportunistic_without_starttls_is_plaintext() {
        let (r, _) = run(
            Policy::Opportunistic,
            vec![Step::Server(b"\"SASL\" \"PLAIN\"\r\nOK\r\n")],
        );
        assert!(matches!(
            r.unwrap().outcome,
            Outcome::Plaintext(Error::NotOffered { .. })
        ));
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(
            quoted(b"\"a\\\"b\" x"),
            Some(("a\"b".to_string(), &b" x"[..]))
        );
        assert_eq!(quoted(b"\"\""), Some((String::new(), &b""[..])));
        assert_eq!(quoted(b"\"open"), None);
        assert_eq!(quoted(b"bare"), None);
        // A quoted string cannot smuggle a raw control character to a terminal.
        let (text, _) = quoted("\"a\u{1b}[2J\u{9b}b\"".as_bytes()).unwrap();
        assert_eq!(text, "a\\u{1b}[2J\\u{9b}b");
    }
}
