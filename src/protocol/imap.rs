//! IMAP (RFC 3501, RFC 9051, RFC 2595): both sides of the dialog before TLS, the steps inside it
//! (CAPABILITY again, AUTHENTICATE/LOGIN), and the goodbye.
//!
//! `* OK [CAPABILITY ... STARTTLS]` greeting → (`CAPABILITY` only when the greeting lacks it)
//! → `STARTTLS` → tagged `OK` → TLS. `* PREAUTH` means the server skipped authentication in
//! plaintext: a downgrade.

use crate::error::{Error, Phase, Result};
use crate::protocol::sasl::{self, AuthOutcome, Login, Mechanism, Secret, explain_challenge};
use crate::protocol::{
    Dialog, DialogContext, Greeting, PreTls, ServerContext, ServerPreTls, ServerStep,
    has_capability, serve_commands,
};
use crate::wire::{Deadline, Wire, line_text, printable};

/// One response line, classified.
#[derive(Debug, PartialEq, Eq)]
enum Response {
    /// `* WORD rest`, with WORD upper-cased.
    Untagged { word: String, rest: String },
    /// `TAG STATUS text`, with STATUS upper-cased.
    Tagged {
        tag: String,
        status: String,
        text: String,
    },
    /// `+ ...`
    Continuation,
}

fn parse(line: &[u8], phase: Phase) -> Result<Response> {
    let text = line_text(line);
    if ends_with_literal(line) {
        // A literal would make the next bytes data of unknown meaning; nothing the dialog
        // needs uses one, so it is refused rather than read.
        return Err(Error::violation_in(
            phase,
            "literal in a dialog response",
            &printable(line),
        ));
    }
    let mut words = text.splitn(3, ' ');
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().to_owned();
    match first {
        "*" if !second.is_empty() => Ok(Response::Untagged {
            word: second.to_ascii_uppercase(),
            rest,
        }),
        "+" => Ok(Response::Continuation),
        tag if !tag.is_empty() && !second.is_empty() && tag != "*" => Ok(Response::Tagged {
            tag: tag.to_owned(),
            status: second.to_ascii_uppercase(),
            text: rest,
        }),
        _ => Err(Error::violation_in(phase, "malformed response", &text)),
    }
}

/// `... {123}` or `... {123+}` at the end of a line announces a literal.
fn ends_with_literal(line: &[u8]) -> bool {
    let Some(body) = line.strip_suffix(b"}") else {
        return false;
    };
    let body = body.strip_suffix(b"+").unwrap_or(body);
    let digits = body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && body[..body.len() - digits].ends_with(b"{")
}

/// The atoms of `[CAPABILITY a b c]` at the start of a response text, if present.
fn capability_code(text: &str) -> Option<Vec<String>> {
    let inner = text.strip_prefix('[')?;
    let end = inner.find(']')?;
    let code = &inner[..end];
    let mut words = code.split_ascii_whitespace();
    let first = words.next()?;
    if !first.eq_ignore_ascii_case("CAPABILITY") {
        return None;
    }
    Some(words.map(str::to_owned).collect())
}

/// Reads the greeting. `trusted` is true inside TLS (implicit TLS), where PREAUTH is fine.
pub(crate) fn client_greeting(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    trusted: bool,
) -> Result<Greeting> {
    let deadline = ctx.deadline(Phase::Greeting);
    let line = wire.read_line(&deadline)?;
    let text = line_text(&line);
    match parse(&line, Phase::Greeting)? {
        Response::Untagged { word, rest } if word == "OK" || (trusted && word == "PREAUTH") => {
            Ok(Greeting {
                capabilities: capability_code(&rest),
                text,
            })
        }
        Response::Untagged { word, .. } if word == "PREAUTH" => {
            Err(Error::Downgrade { reply: text })
        }
        Response::Untagged { word, .. } if word == "BYE" => Err(Error::Refused {
            phase: Phase::Greeting,
            reply: text,
        }),
        _ => Err(Error::violation_in(
            Phase::Greeting,
            "greeting is not * OK",
            &text,
        )),
    }
}

/// A tagged reply whose tag was never sent: a forged answer queued ahead of a command.
fn stray_tagged(phase: Phase, line: &[u8]) -> Error {
    Error::violation_in(
        phase,
        "tagged reply for a command that was never sent",
        &printable(line),
    )
}

/// `* BYE`: the server ends the session; a refusal with its text.
fn bye(phase: Phase, line: &[u8]) -> Error {
    Error::Refused {
        phase,
        reply: printable(line),
    }
}

/// Untagged responses set aside before one command, at most.
const MAX_SET_ASIDE: usize = 64;

/// A client must accept untagged responses at any time (RFC 9051 §7, RFC 3501 §2.2.2), so the
/// complete ones already waiting before a command are read and set aside: bounded, never
/// trusted, never taken for capabilities. Anything else waiting stays a violation: a tagged
/// reply or a continuation for a command not yet sent (a forged answer queued ahead of it), a
/// literal, or part of a line (the send's unsolicited-data check refuses that).
fn set_aside_untagged(wire: &mut Wire<'_>, deadline: &Deadline) -> Result<()> {
    let phase = deadline.phase();
    let mut count = 0;
    while let Some(line) = wire.waiting_line(deadline)? {
        match parse(&line, phase)? {
            Response::Untagged { word, .. } if word == "BYE" => {
                return Err(bye(phase, &line));
            }
            Response::Untagged { .. } => {}
            Response::Tagged { .. } => {
                return Err(stray_tagged(phase, &line));
            }
            Response::Continuation => {
                return Err(Error::violation_in(
                    phase,
                    "continuation request before the command",
                    &printable(&line),
                ));
            }
        }
        count += 1;
        if count > MAX_SET_ASIDE {
            return Err(Error::violation(
                phase,
                format!("more than {MAX_SET_ASIDE} untagged responses waiting before a command"),
            ));
        }
    }
    Ok(())
}

/// Sends a client line, after setting aside the untagged responses waiting.
fn send(wire: &mut Wire<'_>, line: &str, deadline: &Deadline) -> Result<()> {
    set_aside_untagged(wire, deadline)?;
    wire.send_line(line, deadline)
}

/// Sends a client line that carries a secret (`shown` in the transcript), as [`send`].
fn send_secret(wire: &mut Wire<'_>, line: &str, shown: &str, deadline: &Deadline) -> Result<()> {
    set_aside_untagged(wire, deadline)?;
    wire.send_secret_line(line, shown, deadline)
}

/// Sends `command` with a fresh tag and reads until its tagged reply. Untagged responses are
/// passed to `on_untagged`; `* BYE` ends the dialog as a refusal.
fn command(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    command: &str,
    deadline: &Deadline,
    mut on_untagged: impl FnMut(&str, &str),
) -> Result<(String, String)> {
    let phase = deadline.phase();
    let tag = ctx.imap_tag();
    send(wire, &format!("{tag} {command}"), deadline)?;
    let max = wire.limits().max_lines;
    for _ in 0..max {
        let line = wire.read_line(deadline)?;
        match parse(&line, phase)? {
            Response::Untagged { word, rest } => {
                if word == "BYE" {
                    return Err(bye(phase, &line));
                }
                on_untagged(&word, &rest);
            }
            Response::Tagged {
                tag: t,
                status,
                text,
            } if t == tag => {
                let reply = format!("{t} {status} {text}");
                return Ok((status, reply));
            }
            Response::Tagged { .. } => {
                return Err(stray_tagged(phase, &line));
            }
            Response::Continuation => {
                return Err(Error::violation_in(
                    phase,
                    "unexpected continuation request",
                    &printable(&line),
                ));
            }
        }
    }
    Err(Error::violation(
        phase,
        format!("more than {max} untagged responses"),
    ))
}

pub(crate) fn client_starttls(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
    let mut pre = PreTls::new();
    let greeting = match client_greeting(wire, ctx, false) {
        Ok(g) => g,
        Err(e @ Error::Downgrade { .. }) => {
            pre.greeting = e.reply().map(str::to_owned);
            return ctx.tls_impossible(pre, e);
        }
        Err(e) => return Err(e),
    };
    pre.greeting = Some(greeting.text);

    // The greeting's capabilities save a round trip when they already announce STARTTLS.
    let caps = match greeting.capabilities {
        Some(c) if has_capability(&c, "STARTTLS") => c,
        _ => capability_command(wire, ctx, Phase::Capabilities)?.0,
    };
    let offered = has_capability(&caps, "STARTTLS");
    pre.starttls_offered = Some(offered);
    let shown = format!("CAPABILITY {}", caps.join(" "));
    pre.capabilities = Some(caps);
    if !offered {
        let reason = Error::NotOffered { reply: Some(shown) };
        return ctx.tls_impossible(pre, reason);
    }

    let deadline = ctx.deadline(Phase::StartTls);
    // Untagged data before the go-ahead is allowed by IMAP and ignored: it is untrusted.
    let (status, reply) = command(wire, ctx, "STARTTLS", &deadline, |_, _| {})?;
    match status.as_str() {
        "OK" => Ok(pre),
        "NO" | "BAD" => {
            let reason = Error::Refused {
                phase: Phase::StartTls,
                reply,
            };
            ctx.tls_impossible(pre, reason)
        }
        _ => Err(Error::violation_in(
            Phase::StartTls,
            "unexpected reply to STARTTLS",
            &reply,
        )),
    }
}

/// `CAPABILITY`: the atoms of every untagged CAPABILITY response, and the tagged reply.
fn capability_command(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    phase: Phase,
) -> Result<(Vec<String>, String)> {
    let deadline = ctx.deadline(phase);
    let mut caps = Vec::new();
    let (status, reply) = command(wire, ctx, "CAPABILITY", &deadline, |word, rest| {
        if word == "CAPABILITY" {
            caps.extend(rest.split_ascii_whitespace().map(str::to_owned));
        }
    })?;
    if status != "OK" {
        return Err(Error::Refused { phase, reply });
    }
    if caps.is_empty() {
        // RFC 9051 allows the list as a response code of the tagged OK instead.
        let text = reply.splitn(3, ' ').nth(2).unwrap_or_default();
        caps = capability_code(text).unwrap_or_default();
    }
    Ok((caps, reply))
}

pub(crate) fn client_capabilities(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
) -> Result<Vec<String>> {
    Ok(capability_command(wire, ctx, Phase::Capabilities)?.0)
}

// --- server side ---

const SERVER_CAPABILITIES: &str = "IMAP4rev1 STARTTLS LOGINDISABLED";

/// The greeting; before TLS it advertises STARTTLS and LOGINDISABLED, which saves clients a
/// CAPABILITY round trip.
pub(crate) fn server_greeting(ctx: &ServerContext<'_>, before_tls: bool) -> String {
    let caps = if before_tls {
        SERVER_CAPABILITIES
    } else {
        "IMAP4rev1"
    };
    format!(
        "* OK [CAPABILITY {caps}] {}\r\n",
        ctx.greeting_or("IMAP4rev1 ready")
    )
}

/// The server's pre-TLS dialog: tagged commands; LOGIN and AUTHENTICATE get
/// `NO [PRIVACYREQUIRED]`; a literal (whose data would follow unseen) ends the connection.
pub(crate) fn server_starttls(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
) -> Result<ServerPreTls> {
    wire.send_reply(&server_greeting(ctx, true), &ctx.deadline(Phase::Greeting))?;
    serve_commands(wire, ctx, |line| {
        let Some((tag, command)) = line.split_once(' ') else {
            return ServerStep::Reply("* BAD Missing command\r\n".into());
        };
        if tag.is_empty()
            || tag == "*"
            || tag == "+"
            || tag.contains(['(', ')', '{', '%', '"', '\\'])
        {
            return ServerStep::Reply("* BAD Invalid tag\r\n".into());
        }
        if ends_with_literal(line.as_bytes()) {
            return ServerStep::Close(
                format!("{tag} BAD Literals are not accepted before STARTTLS\r\n"),
                Error::violation_in(Phase::StartTls, "literal before STARTTLS", line),
            );
        }
        let (verb, rest) = super::verb(command);
        match verb.as_str() {
            "CAPABILITY" => ServerStep::Reply(format!(
                "* CAPABILITY {SERVER_CAPABILITIES}\r\n{tag} OK CAPABILITY completed\r\n"
            )),
            "NOOP" => ServerStep::Reply(format!("{tag} OK NOOP completed\r\n")),
            "STARTTLS" if rest.is_empty() => {
                ServerStep::GoAhead(format!("{tag} OK Begin TLS negotiation now\r\n"))
            }
            "LOGIN" | "AUTHENTICATE" => ServerStep::Reply(format!(
                "{tag} NO [PRIVACYREQUIRED] Authentication is disabled before STARTTLS\r\n"
            )),
            "LOGOUT" => ServerStep::Close(
                format!("* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n"),
                super::client_quit(),
            ),
            _ => ServerStep::Reply(format!("{tag} BAD Command not valid before STARTTLS\r\n")),
        }
    })?;
    Ok(ServerPreTls::default())
}

// --- authentication inside TLS ---

/// How a tagged command ended, or a continuation request in the middle.
enum Tagged {
    Done { status: String, reply: String },
    Continue(String),
}

/// Reads until the tagged reply for `tag` (untagged responses skipped, bounded).
fn read_tagged(wire: &mut Wire<'_>, deadline: &Deadline, tag: &str) -> Result<Tagged> {
    let phase = deadline.phase();
    for _ in 0..wire.limits().max_lines {
        let line = wire.read_line(deadline)?;
        match parse(&line, phase)? {
            Response::Untagged { word, .. } if word == "BYE" => {
                return Err(bye(phase, &line));
            }
            Response::Untagged { .. } => {}
            Response::Continuation => return Ok(Tagged::Continue(line_text(&line))),
            Response::Tagged {
                tag: t,
                status,
                text,
            } if t == tag => {
                let reply = format!("{t} {status} {text}");
                return Ok(Tagged::Done { status, reply });
            }
            Response::Tagged { .. } => {
                return Err(stray_tagged(phase, &line));
            }
        }
    }
    Err(Error::violation(phase, "too many untagged responses"))
}

/// `s` as an IMAP quoted string, into a buffer that never reallocates (it may hold a password).
fn quoted(s: &str) -> Secret {
    let mut out = Vec::with_capacity(2 * s.len() + 2);
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'\\' || b == b'"' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    Secret::from_vec(out)
}

/// A SASL exchange (RFC 9051 §6.2.2): `AUTHENTICATE NAME`, with the first message as an
/// initial response when SASL-IR is offered (RFC 4959), else after the first `+`; each further
/// `+` challenge answered on a line of its own, until the tagged reply. A mechanism that refuses
/// a challenge cancels with `*` and fails with its own reason.
fn sasl_exchange(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    caps: &[String],
    mechanism: &mut dyn Mechanism,
) -> Result<AuthOutcome> {
    let deadline = ctx.deadline(Phase::Read);
    let name = mechanism.name();
    let tag = ctx.imap_tag();
    let first = mechanism.initial()?;
    let mut first_pending = true;
    if has_capability(caps, "SASL-IR") {
        // An empty initial response is `=` (RFC 4959).
        let first = if first.as_bytes().is_empty() {
            Secret::concat(&["="])
        } else {
            sasl::base64_secret(first.as_bytes())
        };
        let line = Secret::concat(&[&tag, " AUTHENTICATE ", name, " ", first.as_str()]);
        let shown = format!("{tag} AUTHENTICATE {name} <credentials>");
        send_secret(wire, line.as_str(), &shown, &deadline)?;
        first_pending = false;
    } else {
        send(wire, &format!("{tag} AUTHENTICATE {name}"), &deadline)?;
    }
    for _ in 0..=sasl::MAX_CHALLENGES {
        match read_tagged(wire, &deadline, &tag)? {
            Tagged::Continue(line) if first_pending => {
                first_pending = false;
                if line.trim_end() != "+" {
                    send(wire, "*", &deadline)?;
                    read_tagged(wire, &deadline, &tag)?;
                    return Err(Error::AuthFailed {
                        mechanism: name,
                        reply: format!(
                            "the server challenged before the first message: {}",
                            explain_challenge(&line)
                        ),
                    });
                }
                let first = sasl::base64_secret(first.as_bytes());
                send_secret(wire, first.as_str(), "<credentials>", &deadline)?;
            }
            Tagged::Continue(line) => {
                let payload = line.strip_prefix('+').unwrap_or_default();
                match sasl::challenge(payload, deadline.phase()).and_then(|c| mechanism.answer(&c))
                {
                    Ok(answer) => {
                        let answer = sasl::base64_secret(answer.as_bytes());
                        send_secret(wire, answer.as_str(), "<response>", &deadline)?;
                    }
                    Err(e) => {
                        // Cancel (RFC 9051 §6.2.2) and fail with the mechanism's reason.
                        send(wire, "*", &deadline)?;
                        read_tagged(wire, &deadline, &tag)?;
                        return Err(e);
                    }
                }
            }
            Tagged::Done { status, reply } if status == "OK" => {
                mechanism.finish(None)?;
                return Ok(AuthOutcome::of(mechanism, reply));
            }
            Tagged::Done { reply, .. } => return Err(sasl::rejected(mechanism, &reply)),
        }
    }
    Err(sasl::too_many_challenges(deadline.phase()))
}

/// The strongest SASL mechanism offered as `AUTH=...` (SCRAM-SHA-256-PLUS, SCRAM-SHA-256,
/// PLAIN), else `LOGIN` unless LOGINDISABLED.
pub(crate) fn client_authenticate(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    caps: &[String],
    login: &Login<'_>,
) -> Result<AuthOutcome> {
    let creds = login.creds;
    let deadline = ctx.deadline(Phase::Read);
    let offered: Vec<String> = caps
        .iter()
        .filter_map(|c| {
            c.get(..5)
                .filter(|p| p.eq_ignore_ascii_case("AUTH="))
                .and_then(|_| c.get(5..))
                .map(str::to_owned)
        })
        .collect();
    if let Some(mut mechanism) = super::mechanisms::choose(&offered, login) {
        return sasl_exchange(wire, ctx, caps, &mut *mechanism);
    }
    if creds.allows_protocol_login() && !has_capability(caps, "LOGINDISABLED") {
        if !creds.user().is_ascii() || !creds.password().is_ascii() {
            return Err(Error::InvalidArgument(
                "non-ASCII credentials need AUTHENTICATE PLAIN, which the server does not offer"
                    .into(),
            ));
        }
        let tag = ctx.imap_tag();
        let (user, password) = (quoted(creds.user()), quoted(creds.password()));
        let line = Secret::concat(&[&tag, " LOGIN ", user.as_str(), " ", password.as_str()]);
        send_secret(
            wire,
            line.as_str(),
            &format!("{tag} LOGIN <credentials>"),
            &deadline,
        )?;
        return match read_tagged(wire, &deadline, &tag)? {
            Tagged::Done { status, reply } if status == "OK" => {
                Ok(AuthOutcome::new("LOGIN", reply))
            }
            Tagged::Done { reply, .. } | Tagged::Continue(reply) => Err(Error::AuthFailed {
                mechanism: "LOGIN",
                reply: explain_challenge(&reply),
            }),
        };
    }
    Err(super::no_mechanism(caps))
}

/// IMAP (RFC 3501, RFC 9051).
pub(crate) struct Imap;

impl Dialog for Imap {
    fn client_starttls(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
        client_starttls(wire, ctx)
    }

    fn client_greeting(
        &self,
        wire: &mut Wire<'_>,
        ctx: &mut DialogContext,
    ) -> Result<Option<Greeting>> {
        client_greeting(wire, ctx, true).map(Some)
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

    /// `LOGOUT`, then its untagged `BYE` and the tagged reply.
    fn client_goodbye(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<()> {
        let deadline = ctx.deadline(Phase::Close);
        let tag = ctx.imap_tag();
        send(wire, &format!("{tag} LOGOUT"), &deadline)?;
        for _ in 0..wire.limits().max_lines {
            let line = wire.read_line(&deadline)?;
            if line.starts_with(tag.as_bytes()) {
                break;
            }
        }
        Ok(())
    }

    fn server_starttls(
        &self,
        wire: &mut Wire<'_>,
        ctx: &ServerContext<'_>,
    ) -> Result<ServerPreTls> {
        server_starttls(wire, ctx)
    }

    fn server_first_inside_tls(&self, ctx: &ServerContext<'_>, implicit: bool) -> Option<String> {
        implicit.then(|| server_greeting(ctx, false))
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

    fn run(policy: Policy, steps: Vec<Step>) -> (Result<PreTls>, Script) {
        testing::run(policy, steps, client_starttls)
    }

    fn imap(steps: Vec<Step>) -> (Result<PreTls>, Script) {
        run(Policy::Require, steps)
    }

    const GREETING_TLS: Step = Step::Server(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n");

    /// RFC 9051 §7: untagged responses may come at any time. Complete ones waiting before a
    /// command are read and set aside; they are never capabilities.
    #[test]
    fn untagged_data_after_the_greeting_is_set_aside() {
        let (r, s) = imap(vec![
            GREETING_TLS,
            Step::Server(b"* OK [ALERT] maintenance at noon\r\n* 3 EXISTS\r\n"),
            Step::Server(b"* CAPABILITY IMAP4rev1 STARTTLS X-UNSOLICITED\r\n"),
            Step::Client(b"S1 STARTTLS\r\n"),
            Step::Server(b"S1 OK go\r\n"),
        ]);
        let pre = r.unwrap();
        assert!(matches!(pre.outcome, Outcome::GoAhead));
        let caps = pre.capabilities.unwrap();
        assert!(!caps.iter().any(|c| c == "X-UNSOLICITED"), "{caps:?}");
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn untagged_data_before_capability_is_not_taken_for_its_answer() {
        let (r, _) = imap(vec![
            Step::Server(b"* OK hi\r\n"),
            Step::Server(b"* CAPABILITY IMAP4rev1 STARTTLS X-UNSOLICITED\r\n"),
            Step::Client(b"S1 CAPABILITY\r\n"),
            Step::Server(b"* CAPABILITY IMAP4rev1 STARTTLS\r\nS1 OK done\r\n"),
            Step::Client(b"S2 STARTTLS\r\n"),
            Step::Server(b"S2 OK go\r\n"),
        ]);
        let caps = r.unwrap().capabilities.unwrap();
        assert_eq!(caps, ["IMAP4rev1", "STARTTLS"]);
    }

    /// What IMAP never allows unsolicited stays a violation, and nothing is sent after it.
    #[test]
    fn forged_replies_partial_lines_and_literals_before_a_command_are_refused() {
        for (queued, kind, says) in [
            (
                &b"S1 OK Begin TLS now\r\n"[..],
                ErrorKind::ProtocolViolation,
                "never sent",
            ),
            (
                b"+ go ahead\r\n",
                ErrorKind::ProtocolViolation,
                "continuation",
            ),
            (b"* 3 EXI", ErrorKind::ProtocolViolation, "unsolicited"),
            (
                b"* 1 FETCH (BODY[] {5}\r\n",
                ErrorKind::ProtocolViolation,
                "literal",
            ),
            (
                b"* OK fine\r\nS1 OK Begin TLS now\r\n",
                ErrorKind::ProtocolViolation,
                "never sent",
            ),
            (b"* BYE shutting down\r\n", ErrorKind::Refused, "BYE"),
        ] {
            let (r, s) = imap(vec![GREETING_TLS, Step::Server(queued)]);
            let e = r.unwrap_err();
            assert_eq!(e.kind(), kind, "{queued:?}: {e}");
            assert!(e.to_string().contains(says), "{queued:?}: {e}");
            assert!(
                s.all_written.is_empty(),
                "{queued:?}: sent {}",
                s.written_text()
            );
        }
    }

    #[test]
    fn untagged_data_waiting_is_bounded() {
        let flood = testing::leak(b"* 1 EXISTS\r\n".repeat(MAX_SET_ASIDE + 1));
        let (r, s) = imap(vec![GREETING_TLS, Step::Server(flood)]);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProtocolViolation, "{e}");
        assert!(e.to_string().contains("untagged"), "{e}");
        assert!(s.all_written.is_empty());
        // As many as the bound are fine.
        let most = testing::leak(b"* 1 EXISTS\r\n".repeat(MAX_SET_ASIDE));
        let (r, _) = imap(vec![
            GREETING_TLS,
            Step::Server(most),
            Step::Client(b"S1 STARTTLS\r\n"),
            Step::Server(b"S1 OK go\r\n"),
        ]);
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn imap_preauth_is_a_downgrade() {
        let (r, s) = imap(vec![Step::Server(
            b"* PREAUTH [CAPABILITY IMAP4rev1] logged in\r\n",
        )]);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Downgrade);
        assert!(e.to_string().contains("PREAUTH"));
        assert!(
            s.all_written.is_empty(),
            "nothing may be sent after PREAUTH"
        );
    }

    #[test]
    fn preauth_under_opportunistic_is_reported_plaintext() {
        let (r, _) = run(
            Policy::Opportunistic,
            vec![Step::Server(b"* PREAUTH hi\r\n")],
        );
        let pre = r.unwrap();
        assert!(matches!(
            pre.outcome,
            Outcome::Plaintext(Error::Downgrade { .. })
        ));
    }

    #[test]
    fn stripped_capability_fails_closed() {
        let (r, s) = imap(vec![
            Step::Server(b"* OK ready\r\n"),
            Step::Client(b"S1 CAPABILITY\r\n"),
            Step::Server(b"* CAPABILITY IMAP4rev1 LOGIN-REFERRALS\r\nS1 OK done\r\n"),
        ]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::NotOffered);
        assert_eq!(s.written_text(), "S1 CAPABILITY\r\n");
    }

    #[test]
    fn starttls_no_and_bad_are_refusals() {
        for answer in [&b"S1 NO not now\r\n"[..], b"S1 BAD what\r\n"] {
            let answer = testing::leak(answer);
            let (r, _) = imap(vec![
                Step::Server(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"),
                Step::Client(b"S1 STARTTLS\r\n"),
                Step::Server(answer),
            ]);
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Refused);
            assert!(e.reply().unwrap().starts_with("S1 "));
        }
    }

    #[test]
    fn bye_greeting_is_refused() {
        let (r, _) = imap(vec![Step::Server(b"* BYE too busy\r\n")]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Refused);
    }

    #[test]
    fn huge_literal_is_refused_not_read() {
        let (r, s) = imap(vec![
            Step::Server(b"* OK hi\r\n"),
            Step::Client(b"S1 CAPABILITY\r\n"),
            Step::Server(b"* CAPABILITY {999999999}\r\n"),
        ]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        assert!(s.consumed() < 100);
    }

    #[test]
    fn wrong_tag_is_a_violation() {
        let (r, _) = imap(vec![
            Step::Server(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"),
            Step::Client(b"S1 STARTTLS\r\n"),
            Step::Server(b"A7 OK Begin TLS\r\n"),
        ]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn continuation_instead_of_go_ahead_is_a_violation() {
        let (r, _) = imap(vec![
            Step::Server(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"),
            Step::Client(b"S1 STARTTLS\r\n"),
            Step::Server(b"+ go on\r\n"),
        ]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn endless_untagged_responses_are_bounded() {
        let flood = testing::leak(b"* OK noise\r\n".repeat(5000));
        let (r, _) = imap(vec![
            Step::Server(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"),
            Step::Client(b"S1 STARTTLS\r\n"),
            Step::Server(flood),
        ]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn greeting_capabilities_save_a_round_trip() {
        let (r, s) = imap(vec![
            Step::Server(
                b"* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS AUTH=PLAIN] Dovecot ready.\r\n",
            ),
            Step::Client(b"S1 STARTTLS\r\n"),
            Step::Server(b"S1 OK Begin TLS negotiation now.\r\n"),
        ]);
        let pre = r.unwrap();
        assert!(matches!(pre.outcome, Outcome::GoAhead));
        assert_eq!(pre.starttls_offered, Some(true));
        assert_eq!(
            pre.capabilities.unwrap(),
            vec!["IMAP4rev1", "SASL-IR", "STARTTLS", "AUTH=PLAIN"]
        );
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn capability_command_when_greeting_has_none() {
        let (r, s) = imap(vec![
            Step::Server(b"* OK IMAP4rev1 ready\r\n"),
            Step::Client(b"S1 CAPABILITY\r\n"),
            Step::Server(b"* CAPABILITY IMAP4rev1 STARTTLS\r\nS1 OK done\r\n"),
            Step::Client(b"S2 STARTTLS\r\n"),
            Step::Server(b"* OK untagged noise\r\nS2 OK go\r\n"),
        ]);
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn long_capability_lines_are_not_truncated() {
        // Capability lists longer than any message cap (Cyrus sends long ones) must survive whole.
        let mut greeting = b"* OK [CAPABILITY IMAP4rev1".to_vec();
        for i in 0..120 {
            greeting.extend_from_slice(format!(" X-EXT{i}").as_bytes());
        }
        greeting.extend_from_slice(b" STARTTLS] ready\r\n");
        let greeting = testing::leak(greeting);
        let (r, s) = imap(vec![
            Step::Server(greeting),
            Step::Client(b"S1 STARTTLS\r\n"),
            Step::Server(b"S1 OK go\r\n"),
        ]);
        let pre = r.unwrap();
        assert_eq!(pre.capabilities.unwrap().last().unwrap(), "STARTTLS");
        assert_eq!(s.remaining(), 0, "no CAPABILITY round trip was needed");
    }

    #[test]
    fn capability_in_tagged_ok_code_is_used() {
        let (r, _) = imap(vec![
            Step::Server(b"* OK hi\r\n"),
            Step::Client(b"S1 CAPABILITY\r\n"),
            Step::Server(b"S1 OK [CAPABILITY IMAP4rev2 STARTTLS] done\r\n"),
            Step::Client(b"S2 STARTTLS\r\n"),
            Step::Server(b"S2 OK go\r\n"),
        ]);
        assert_eq!(
            r.unwrap().capabilities.unwrap(),
            vec!["IMAP4rev2", "STARTTLS"]
        );
    }

    #[test]
    fn literal_detection() {
        assert!(ends_with_literal(b"* X {5}"));
        assert!(ends_with_literal(b"* X {5+}"));
        assert!(!ends_with_literal(b"* X {}"));
        assert!(!ends_with_literal(b"* X 5}"));
        assert!(!ends_with_literal(b"* OK"));
    }

    #[test]
    fn capability_code_parsing() {
        assert_eq!(
            capability_code("[CAPABILITY IMAP4rev1 STARTTLS] hi"),
            Some(vec!["IMAP4rev1".to_string(), "STARTTLS".to_string()])
        );
        assert_eq!(capability_code("[ALERT] hi"), None);
        assert_eq!(capability_code("hi"), None);
        assert_eq!(capability_code("[CAPABILITY no end"), None);
    }
}
