//! SMTP, submission and LMTP (RFC 5321, RFC 3207, RFC 2033): both sides of the dialog before
//! TLS, the steps inside it (EHLO again, AUTH), and the goodbye.
//!
//! greeting `220` → `EHLO`/`LHLO` → `STARTTLS` in the 250 list → `STARTTLS` → `220` → TLS.
//! After TLS the client speaks first (EHLO again, RFC 3207 §4.2).

use crate::error::{Error, Phase, Result};
use crate::protocol::sasl::{
    self, AuthOutcome, Login, Secret, ServerSays, base64_encode, explain_challenge,
};
use crate::protocol::{
    Dialog, DialogContext, Greeting, PreTls, ServerContext, ServerPreTls, ServerStep, client_quit,
    goodbye_line, has_capability, serve_commands, verb,
};
use crate::wire::{Deadline, Wire, line_text, printable};

/// Which hello the dialect uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hello {
    Ehlo,
    Lhlo,
}

impl Hello {
    fn verb(self) -> &'static str {
        match self {
            Hello::Ehlo => "EHLO",
            Hello::Lhlo => "LHLO",
        }
    }
}

/// One SMTP reply: a code and one or more lines of text.
#[derive(Debug)]
pub(crate) struct Reply {
    pub code: u16,
    /// The text of each line, after the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// The whole reply as the server sent it (printable), for messages.
    pub fn text(&self) -> String {
        let n = self.lines.len();
        let mut out = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.push_str(&format!("{}{sep}{l}", self.code));
        }
        out
    }

    fn is_negative(&self) -> bool {
        (400..600).contains(&self.code)
    }
}

/// Reads one (possibly multi-line) reply before `deadline`.
pub(crate) fn read_reply(wire: &mut Wire<'_>, deadline: &Deadline) -> Result<Reply> {
    let phase = deadline.phase();
    let max_lines = wire.limits().max_lines;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let line = wire.read_line(deadline)?;
        let (this_code, last, text) = parse_line(&line)
            .ok_or_else(|| Error::violation_in(phase, "malformed reply line", &printable(&line)))?;
        match code {
            None => code = Some(this_code),
            Some(c) if c != this_code => {
                return Err(Error::violation_in(
                    phase,
                    format!("reply code changed from {c} in a multi-line reply"),
                    &printable(&line),
                ));
            }
            Some(_) => {}
        }
        lines.push(text);
        if last {
            break;
        }
        if lines.len() >= max_lines {
            return Err(Error::violation(
                phase,
                format!("reply longer than {max_lines} lines"),
            ));
        }
    }
    Ok(Reply {
        code: code.unwrap_or_default(),
        lines,
    })
}

/// `NNN text` (last), `NNN-text` (more follow) or a bare `NNN` (last).
fn parse_line(line: &[u8]) -> Option<(u16, bool, String)> {
    let digits = line.get(..3)?;
    // RFC 5321 §4.2: first digit 2-5, second 0-5, third 0-9.
    if !digits.iter().all(u8::is_ascii_digit)
        || !(b'2'..=b'5').contains(&digits[0])
        || digits[1] > b'5'
    {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Some((code, true, String::new())),
        Some(b' ') => Some((code, true, line_text(&line[4..]))),
        Some(b'-') => Some((code, false, line_text(&line[4..]))),
        Some(_) => None,
    }
}

pub(crate) fn client_greeting(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<Greeting> {
    let reply = read_reply(wire, &ctx.deadline(Phase::Greeting))?;
    match reply.code {
        220 => Ok(Greeting {
            text: reply.text(),
            capabilities: None,
        }),
        _ if reply.is_negative() => Err(Error::Refused {
            phase: Phase::Greeting,
            reply: reply.text(),
        }),
        _ => Err(Error::violation_in(
            Phase::Greeting,
            "greeting is not 220",
            &reply.text(),
        )),
    }
}

/// Sends EHLO/LHLO and returns the reply (the caller decides what a failure means).
fn hello(wire: &mut Wire<'_>, ctx: &mut DialogContext, hello: Hello) -> Result<Reply> {
    let deadline = ctx.deadline(Phase::Capabilities);
    wire.send_line(&format!("{} {}", hello.verb(), ctx.client_name), &deadline)?;
    read_reply(wire, &deadline)
}

/// The extension keywords of a 250 EHLO reply (its first line is the server's name).
fn keywords(reply: &Reply) -> Vec<String> {
    reply.lines.iter().skip(1).cloned().collect()
}

pub(crate) fn client_starttls(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    kind: Hello,
) -> Result<PreTls> {
    let mut pre = PreTls::new();
    pre.greeting = Some(client_greeting(wire, ctx)?.text);

    let caps = hello(wire, ctx, kind)?;
    if caps.code == 421 {
        // Service closing: a refusal of the session, not a server without ESMTP.
        return Err(Error::Refused {
            phase: Phase::Capabilities,
            reply: caps.text(),
        });
    }
    if caps.code != 250 {
        // No ESMTP at all (or LHLO refused): no STARTTLS either.
        pre.starttls_offered = Some(false);
        pre.capabilities = Some(Vec::new());
        let reason = Error::NotOffered {
            reply: Some(caps.text()),
        };
        return ctx.tls_impossible(pre, reason);
    }
    let list = keywords(&caps);
    let offered = has_capability(&list, "STARTTLS");
    pre.starttls_offered = Some(offered);
    pre.capabilities = Some(list);
    if !offered {
        let reason = Error::NotOffered {
            reply: Some(caps.text()),
        };
        return ctx.tls_impossible(pre, reason);
    }

    let deadline = ctx.deadline(Phase::StartTls);
    wire.send_line("STARTTLS", &deadline)?;
    let go = read_reply(wire, &deadline)?;
    match go.code {
        220 => Ok(pre),
        _ if go.is_negative() => {
            let reason = Error::Refused {
                phase: Phase::StartTls,
                reply: go.text(),
            };
            ctx.tls_impossible(pre, reason)
        }
        // Only the exact go-ahead may start TLS; anything else leaves the state unknown.
        _ => Err(Error::violation_in(
            Phase::StartTls,
            "unexpected reply to STARTTLS",
            &go.text(),
        )),
    }
}

pub(crate) fn client_capabilities(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    kind: Hello,
) -> Result<Vec<String>> {
    let reply = hello(wire, ctx, kind)?;
    if reply.code != 250 {
        return Err(Error::Refused {
            phase: Phase::Capabilities,
            reply: reply.text(),
        });
    }
    Ok(keywords(&reply))
}

// --- server side ---

pub(crate) fn server_greeting(ctx: &ServerContext<'_>) -> String {
    format!("220 {}\r\n", ctx.greeting_or("ESMTP ready"))
}

/// The server's pre-TLS dialog: greeting, EHLO/LHLO advertising STARTTLS (and nothing that
/// would tempt a client into plaintext), `530` for anything that needs TLS.
pub(crate) fn server_starttls(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
    kind: Hello,
) -> Result<ServerPreTls> {
    let mut pre = ServerPreTls::default();
    wire.send_reply(&server_greeting(ctx), &ctx.deadline(Phase::Greeting))?;
    serve_commands(wire, ctx, |line| {
        let (verb, rest) = verb(line);
        match verb.as_str() {
            v if v == kind.verb() && !rest.is_empty() => {
                pre.peer_name = Some(rest.to_owned());
                ServerStep::Reply(format!(
                    "250-{}\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n",
                    ctx.hostname
                ))
            }
            "EHLO" | "LHLO" | "HELO" if rest.is_empty() => {
                ServerStep::Reply("501 5.5.4 A domain is required\r\n".into())
            }
            "HELO" if kind == Hello::Ehlo => {
                pre.peer_name = Some(rest.to_owned());
                ServerStep::Reply(format!("250 {}\r\n", ctx.hostname))
            }
            "EHLO" | "HELO" | "LHLO" => {
                ServerStep::Reply(format!("500 5.5.1 This server expects {}\r\n", kind.verb()))
            }
            "STARTTLS" if rest.is_empty() => {
                ServerStep::GoAhead("220 2.0.0 Ready to start TLS\r\n".into())
            }
            "STARTTLS" => ServerStep::Reply("501 5.5.4 STARTTLS takes no parameters\r\n".into()),
            "NOOP" | "RSET" => ServerStep::Reply("250 2.0.0 OK\r\n".into()),
            "QUIT" => ServerStep::Close("221 2.0.0 Bye\r\n".into(), client_quit()),
            "AUTH" | "MAIL" | "RCPT" | "DATA" | "BDAT" | "VRFY" | "EXPN" | "ETRN" | "TURN" => {
                ServerStep::Reply("530 5.7.0 Must issue a STARTTLS command first\r\n".into())
            }
            _ => ServerStep::Reply("500 5.5.2 Command unrecognized\r\n".into()),
        }
    })?;
    Ok(pre)
}

// --- authentication inside TLS ---

/// The SASL mechanisms of the EHLO reply's AUTH line(s), upper-cased.
fn auth_mechanisms(caps: &[String]) -> Vec<String> {
    caps.iter()
        .filter_map(|c| {
            let mut words = c.split([' ', '=']);
            words
                .next()
                .filter(|w| w.eq_ignore_ascii_case("AUTH"))
                .map(|_| words.map(str::to_ascii_uppercase).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

fn auth_result(mechanism: &'static str, reply: Reply) -> Result<AuthOutcome> {
    if reply.code == 235 {
        Ok(AuthOutcome::new(mechanism, reply.text()))
    } else {
        Err(Error::AuthFailed {
            mechanism,
            reply: explain_challenge(&reply.text()),
        })
    }
}

/// The strongest SASL mechanism offered (SCRAM-SHA-256-PLUS, SCRAM-SHA-256, PLAIN), else
/// `AUTH LOGIN` (RFC 4954).
pub(crate) fn client_authenticate(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    caps: &[String],
    login: &Login<'_>,
) -> Result<AuthOutcome> {
    let creds = login.creds;
    let mechs = auth_mechanisms(caps);
    let deadline = ctx.deadline(Phase::Read);
    if let Some(mut mechanism) = super::mechanisms::choose(&mechs, login) {
        // RFC 4954: 235 on success, 334 with a challenge.
        return sasl::line_exchange(wire, &deadline, "AUTH", &mut *mechanism, |wire| {
            let reply = read_reply(wire, &deadline)?;
            Ok(match reply.code {
                235 => ServerSays::Success {
                    reply: reply.text(),
                    data: None,
                },
                334 => ServerSays::Challenge(reply.lines.last().cloned().unwrap_or_default()),
                _ => ServerSays::Failure(reply.text()),
            })
        });
    }
    if creds.allows_protocol_login() && mechs.iter().any(|m| m == "LOGIN") {
        wire.send_line("AUTH LOGIN", &deadline)?;
        let mut reply = read_reply(wire, &deadline)?;
        for (secret, shown) in [(creds.user(), "<user>"), (creds.password(), "<password>")] {
            if reply.code != 334 {
                return auth_result("LOGIN", reply);
            }
            let encoded = Secret::from_vec(base64_encode(secret.as_bytes()).into_bytes());
            wire.send_secret_line(encoded.as_str(), shown, &deadline)?;
            reply = read_reply(wire, &deadline)?;
        }
        return auth_result("LOGIN", reply);
    }
    Err(super::no_mechanism(caps))
}

/// SMTP and submission (`EHLO`) or LMTP (`LHLO`).
pub(crate) struct Smtp(pub Hello);

impl Dialog for Smtp {
    fn client_starttls(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
        client_starttls(wire, ctx, self.0)
    }

    fn client_greeting(
        &self,
        wire: &mut Wire<'_>,
        ctx: &mut DialogContext,
    ) -> Result<Option<Greeting>> {
        client_greeting(wire, ctx).map(Some)
    }

    fn client_capabilities(
        &self,
        wire: &mut Wire<'_>,
        ctx: &mut DialogContext,
    ) -> Result<Vec<String>> {
        client_capabilities(wire, ctx, self.0)
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
        goodbye_line(wire, ctx, "QUIT")
    }

    fn server_starttls(
        &self,
        wire: &mut Wire<'_>,
        ctx: &ServerContext<'_>,
    ) -> Result<ServerPreTls> {
        server_starttls(wire, ctx, self.0)
    }

    fn server_first_inside_tls(&self, ctx: &ServerContext<'_>, implicit: bool) -> Option<String> {
        implicit.then(|| server_greeting(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::error::ErrorKind;
    use crate::protocol::Outcome;
    use crate::protocol::testing::with_ctx;
    use crate::wire::Limits;
    use crate::wire::script::{Script, Step};

    fn run(policy: Policy, kind: Hello, steps: Vec<Step>) -> (Result<PreTls>, Script) {
        let mut s = Script::new(steps);
        let r = with_ctx(policy, |ctx| {
            let mut w = Wire::new(&mut s, Limits::default());
            client_starttls(&mut w, ctx, kind)
        });
        (r, s)
    }

    fn smtp(steps: Vec<Step>) -> (Result<PreTls>, Script) {
        run(Policy::Require, Hello::Ehlo, steps)
    }

    const GREETING: Step = Step::Server(b"220 mx.test ESMTP\r\n");
    const EHLO: Step = Step::Client(b"EHLO client.test\r\n");
    const CAPS_TLS: Step = Step::Server(b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n");

    #[test]
    fn stripped_starttls_fails_and_sends_nothing_more() {
        let (r, s) = smtp(vec![
            GREETING,
            EHLO,
            Step::Server(b"250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
        ]);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotOffered);
        assert!(e.to_string().contains("250 8BITMIME"));
        assert_eq!(s.written_text(), "EHLO client.test\r\n");
    }

    #[test]
    fn refused_starttls_fails_with_the_reply() {
        let (r, s) = smtp(vec![
            GREETING,
            EHLO,
            CAPS_TLS,
            Step::Client(b"STARTTLS\r\n"),
            Step::Server(b"454 4.7.0 TLS not available due to temporary reason\r\n"),
        ]);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert_eq!(
            e.reply(),
            Some("454 4.7.0 TLS not available due to temporary reason")
        );
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn odd_success_code_is_not_a_go_ahead() {
        for odd in [&b"250 OK go on\r\n"[..], b"221 bye\r\n", b"354 data\r\n"] {
            let odd: &'static [u8] = Box::leak(odd.to_vec().into_boxed_slice());
            let (r, _) = smtp(vec![
                GREETING,
                EHLO,
                CAPS_TLS,
                Step::Client(b"STARTTLS\r\n"),
                Step::Server(odd),
            ]);
            assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        }
    }

    #[test]
    fn greeting_554_is_refused() {
        let (r, s) = smtp(vec![Step::Server(b"554 5.3.2 go away\r\n")]);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert_eq!(e.phase(), Some(Phase::Greeting));
        assert!(s.all_written.is_empty());
    }

    #[test]
    fn garbage_greeting_is_a_violation() {
        for g in [
            &b"HTTP/1.1 400 Bad\r\n"[..],
            b"22\r\n",
            b"220x\r\n",
            b"999 no\r\n",
        ] {
            let g: &'static [u8] = Box::leak(g.to_vec().into_boxed_slice());
            let (r, _) = smtp(vec![Step::Server(g)]);
            assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation, "{g:?}");
        }
    }

    #[test]
    fn code_change_inside_multiline_reply_is_a_violation() {
        let (r, _) = smtp(vec![Step::Server(b"220-mx\r\n250 mx\r\n")]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn endless_continuation_lines_are_bounded() {
        let many: &'static [u8] = Box::leak(b"220-more\r\n".repeat(10_000).into_boxed_slice());
        let (r, s) = smtp(vec![Step::Server(many)]);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProtocolViolation);
        assert!(e.to_string().contains("lines"));
        assert!(s.consumed() <= 10 * 512 + 10);
    }

    #[test]
    fn close_mid_reply_is_closed() {
        let (r, _) = smtp(vec![
            GREETING,
            EHLO,
            Step::Server(b"250-mx.test\r\n250-PIPE"),
            Step::Eof,
        ]);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed);
        assert_eq!(e.phase(), Some(Phase::Capabilities));
    }

    #[test]
    fn stall_after_starttls_is_a_starttls_timeout() {
        let (r, _) = smtp(vec![
            GREETING,
            EHLO,
            CAPS_TLS,
            Step::Client(b"STARTTLS\r\n"),
            Step::Stall,
        ]);
        assert!(matches!(
            r.unwrap_err(),
            Error::Timeout {
                phase: Phase::StartTls
            }
        ));
    }

    #[test]
    fn reply_pipelined_before_starttls_is_refused() {
        // The peer queues a fake go-ahead behind the EHLO reply, hoping it will be read as the
        // answer to STARTTLS.
        let (r, s) = smtp(vec![
            GREETING,
            EHLO,
            Step::Server(b"250-mx.test\r\n250 STARTTLS\r\n220 fake go\r\n"),
        ]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        assert_eq!(s.written_text(), "EHLO client.test\r\n");
    }

    #[test]
    fn ehlo_421_is_a_refusal_not_a_missing_extension() {
        let (r, _) = smtp(vec![
            GREETING,
            EHLO,
            Step::Server(b"421 4.3.2 shutting down\r\n"),
        ]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Refused);
    }

    #[test]
    fn ehlo_refused_means_not_offered() {
        let (r, _) = smtp(vec![GREETING, EHLO, Step::Server(b"502 5.5.1 what?\r\n")]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::NotOffered);
    }

    #[test]
    fn opportunistic_reports_why_it_is_plaintext() {
        let (r, s) = run(
            Policy::Opportunistic,
            Hello::Ehlo,
            vec![
                GREETING,
                EHLO,
                Step::Server(b"250-mx.test\r\n250 SIZE 1000\r\n"),
            ],
        );
        let pre = r.unwrap();
        assert_eq!(pre.starttls_offered, Some(false));
        assert!(matches!(
            pre.outcome,
            Outcome::Plaintext(Error::NotOffered { .. })
        ));
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn happy_path_with_multiline_greeting() {
        let (r, s) = smtp(vec![
            Step::Server(b"220-mx.test ESMTP\r\n220-more text\r\n220 end\r\n"),
            EHLO,
            Step::Server(b"250-mx.test\r\n250-SIZE 10240000\r\n250-starttls\r\n250 8BITMIME\r\n"),
            Step::Client(b"STARTTLS\r\n"),
            Step::Server(b"220-2.0.0 Ready\r\n220 2.0.0 really\r\n"),
        ]);
        let pre = r.unwrap();
        assert!(matches!(pre.outcome, Outcome::GoAhead));
        assert_eq!(
            pre.greeting.as_deref(),
            Some("220-mx.test ESMTP\n220-more text\n220 end")
        );
        assert_eq!(
            pre.capabilities.unwrap(),
            vec!["SIZE 10240000", "starttls", "8BITMIME"]
        );
        assert_eq!(pre.starttls_offered, Some(true));
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn lmtp_says_lhlo() {
        let (r, s) = run(
            Policy::Require,
            Hello::Lhlo,
            vec![
                Step::Server(b"220 lmtp ready\r\n"),
                Step::Client(b"LHLO client.test\r\n"),
                Step::Server(b"250-lmtp\r\n250 STARTTLS\r\n"),
                Step::Client(b"STARTTLS\r\n"),
                Step::Server(b"220 go\r\n"),
            ],
        );
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn bare_code_line_is_accepted() {
        assert_eq!(parse_line(b"220"), Some((220, true, String::new())));
        assert_eq!(parse_line(b"250-x"), Some((250, false, "x".into())));
        assert_eq!(parse_line(b"2a0 x"), None);
        assert_eq!(parse_line(b"120 x"), None);
        assert_eq!(parse_line(b"260 x"), None);
    }
}
