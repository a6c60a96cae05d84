//! POP3 (RFC 1939, RFC 2449, RFC 2595): both sides of the dialog before TLS, the steps inside it
//! (CAPA again, AUTH or USER/PASS), and the goodbye.
//!
//! `+OK` greeting → `STLS` → `+OK` → TLS. CAPA is not sent before TLS: its answer could not be
//! trusted, and `STLS` itself tells whether TLS is available, which saves a round trip.

use crate::error::{Error, Phase, Result};
use crate::protocol::sasl::{self, AuthOutcome, Login, Secret, ServerSays, explain_challenge};
use crate::protocol::{
    Dialog, DialogContext, Greeting, PreTls, ServerContext, ServerPreTls, ServerStep, client_quit,
    goodbye_line, serve_commands, verb,
};
use crate::wire::{Wire, line_text, printable};

enum Status {
    Ok,
    Err,
}

fn status(line: &[u8], phase: Phase) -> Result<Status> {
    let word_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    match &line[..word_end] {
        b"+OK" => Ok(Status::Ok),
        b"-ERR" => Ok(Status::Err),
        _ => Err(Error::violation_in(
            phase,
            "reply is neither +OK nor -ERR",
            &printable(line),
        )),
    }
}

pub(crate) fn client_greeting(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<Greeting> {
    let line = wire.read_line(&ctx.deadline(Phase::Greeting))?;
    let text = line_text(&line);
    match status(&line, Phase::Greeting)? {
        Status::Ok => Ok(Greeting {
            text,
            capabilities: None,
        }),
        Status::Err => Err(Error::Refused {
            phase: Phase::Greeting,
            reply: text,
        }),
    }
}

pub(crate) fn client_starttls(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
    let mut pre = PreTls::new();
    pre.greeting = Some(client_greeting(wire, ctx)?.text);

    let deadline = ctx.deadline(Phase::StartTls);
    wire.send_line("STLS", &deadline)?;
    let line = wire.read_line(&deadline)?;
    match status(&line, Phase::StartTls)? {
        Status::Ok => {
            pre.starttls_offered = Some(true);
            Ok(pre)
        }
        Status::Err => {
            pre.starttls_offered = Some(false);
            let reason = Error::Refused {
                phase: Phase::StartTls,
                reply: printable(&line),
            };
            ctx.tls_impossible(pre, reason)
        }
    }
}

/// `CAPA`: the capability lines of the multi-line answer (RFC 2449).
pub(crate) fn client_capabilities(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
) -> Result<Vec<String>> {
    let deadline = ctx.deadline(Phase::Capabilities);
    wire.send_line("CAPA", &deadline)?;
    let first = wire.read_line(&deadline)?;
    if let Status::Err = status(&first, Phase::Capabilities)? {
        return Err(Error::Refused {
            phase: Phase::Capabilities,
            reply: printable(&first),
        });
    }
    super::read_dot_terminated(wire, &deadline)
}

// --- server side ---

pub(crate) fn server_greeting(ctx: &ServerContext<'_>) -> String {
    format!("+OK {}\r\n", ctx.greeting_or("POP3 ready"))
}

/// The server's pre-TLS dialog: greeting, CAPA with STLS only, `-ERR` for credentials.
pub(crate) fn server_starttls(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
) -> Result<ServerPreTls> {
    wire.send_reply(&server_greeting(ctx), &ctx.deadline(Phase::Greeting))?;
    serve_commands(wire, ctx, |line| {
        let (verb, rest) = verb(line);
        match verb.as_str() {
            "CAPA" => ServerStep::Reply(
                "+OK Capability list follows\r\nSTLS\r\nIMPLEMENTATION starttls\r\n.\r\n".into(),
            ),
            "STLS" if rest.is_empty() => {
                ServerStep::GoAhead("+OK Begin TLS negotiation now\r\n".into())
            }
            "USER" | "PASS" | "APOP" | "AUTH" => ServerStep::Reply(
                "-ERR [AUTH] Authentication is not permitted before STLS\r\n".into(),
            ),
            "QUIT" => ServerStep::Close("+OK Bye\r\n".into(), client_quit()),
            _ => ServerStep::Reply("-ERR Command not permitted before STLS\r\n".into()),
        }
    })?;
    Ok(ServerPreTls::default())
}

// --- authentication inside TLS ---

/// The strongest SASL mechanism CAPA lists (SCRAM-SHA-256-PLUS, SCRAM-SHA-256, PLAIN), else
/// `USER`/`PASS` when it lists USER.
pub(crate) fn client_authenticate(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    caps: &[String],
    login: &Login<'_>,
) -> Result<AuthOutcome> {
    let creds = login.creds;
    let deadline = ctx.deadline(Phase::Read);
    let offered = super::listed_after(caps, "SASL");
    if let Some(mut mechanism) = super::mechanisms::choose(&offered, login) {
        // RFC 5034: +OK on success, `+ ` with a challenge.
        return sasl::line_exchange(wire, &deadline, "AUTH", &mut *mechanism, |wire| {
            let line = wire.read_line(&deadline)?;
            let text = line_text(&line);
            Ok(if line.starts_with(b"+OK") {
                ServerSays::Success {
                    reply: text,
                    data: None,
                }
            } else if let Some(payload) = text.strip_prefix('+') {
                ServerSays::Challenge(payload.to_owned())
            } else {
                ServerSays::Failure(text)
            })
        });
    }
    let status_reply = |wire: &mut Wire<'_>| -> Result<(bool, String)> {
        let line = wire.read_line(&deadline)?;
        let text = line_text(&line);
        Ok((line.starts_with(b"+OK"), text))
    };
    let fail = |mechanism, reply: String| Error::AuthFailed {
        mechanism,
        reply: explain_challenge(&reply),
    };
    if creds.allows_protocol_login() && super::has_capability(caps, "USER") {
        let user = Secret::concat(&["USER ", creds.user()]);
        wire.send_secret_line(user.as_str(), "USER <user>", &deadline)?;
        let (ok, reply) = status_reply(wire)?;
        if !ok {
            return Err(fail("USER/PASS", reply));
        }
        let pass = Secret::concat(&["PASS ", creds.password()]);
        wire.send_secret_line(pass.as_str(), "PASS <password>", &deadline)?;
        let (ok, reply) = status_reply(wire)?;
        return if ok {
            Ok(AuthOutcome::new("USER/PASS", reply))
        } else {
            Err(fail("USER/PASS", reply))
        };
    }
    Err(super::no_mechanism(caps))
}

/// POP3 (RFC 1939, RFC 2595).
pub(crate) struct Pop3;

impl Dialog for Pop3 {
    fn client_starttls(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
        client_starttls(wire, ctx)
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
        goodbye_line(wire, ctx, "QUIT")
    }

    fn server_starttls(
        &self,
        wire: &mut Wire<'_>,
        ctx: &ServerContext<'_>,
    ) -> Result<ServerPreTls> {
        server_starttls(wire, ctx)
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
    use crate::protocol::testing::{self, with_ctx};
    use crate::wire::Limits;
    use crate::wire::script::{Script, Step};

    fn run(policy: Policy, steps: Vec<Step>) -> (Result<PreTls>, Script) {
        testing::run(policy, steps, client_starttls)
    }

    #[test]
    fn stls_err_is_refused_and_nothing_more_is_sent() {
        let (r, s) = run(
            Policy::Require,
            vec![
                Step::Server(b"+OK POP3 ready\r\n"),
                Step::Client(b"STLS\r\n"),
                Step::Server(b"-ERR Command not permitted\r\n"),
            ],
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert_eq!(e.reply(), Some("-ERR Command not permitted"));
        assert_eq!(s.written_text(), "STLS\r\n");
    }

    #[test]
    fn err_greeting_is_refused() {
        let (r, s) = run(Policy::Require, vec![Step::Server(b"-ERR busy\r\n")]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Refused);
        assert!(s.all_written.is_empty());
    }

    #[test]
    fn odd_reply_to_stls_is_a_violation() {
        for odd in [&b"+OKAY\r\n"[..], b"OK\r\n", b"+ok\r\n", b"220 go\r\n"] {
            let odd = testing::leak(odd);
            let (r, _) = run(
                Policy::Require,
                vec![
                    Step::Server(b"+OK hi\r\n"),
                    Step::Client(b"STLS\r\n"),
                    Step::Server(odd),
                ],
            );
            assert_eq!(
                r.unwrap_err().kind(),
                ErrorKind::ProtocolViolation,
                "{odd:?}"
            );
        }
    }

    #[test]
    fn opportunistic_err_is_plaintext() {
        let (r, _) = run(
            Policy::Opportunistic,
            vec![
                Step::Server(b"+OK hi\r\n"),
                Step::Client(b"STLS\r\n"),
                Step::Server(b"-ERR no\r\n"),
            ],
        );
        let pre = r.unwrap();
        assert_eq!(pre.starttls_offered, Some(false));
        assert!(matches!(
            pre.outcome,
            Outcome::Plaintext(Error::Refused { .. })
        ));
    }

    #[test]
    fn go_ahead_in_three_turns() {
        let (r, s) = run(
            Policy::Require,
            vec![
                Step::Server(b"+OK Dovecot ready.\r\n"),
                Step::Client(b"STLS\r\n"),
                Step::Server(b"+OK Begin TLS negotiation now.\r\n"),
            ],
        );
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn capa_is_dot_unstuffed_and_bounded() {
        let mut s = Script::new(vec![
            Step::Client(b"CAPA\r\n"),
            Step::Server(b"+OK\r\nTOP\r\n..odd\r\nUIDL\r\n.\r\n"),
        ]);
        let caps = with_ctx(Policy::Require, |ctx| {
            client_capabilities(&mut Wire::new(&mut s, Limits::default()), ctx)
        })
        .unwrap();
        assert_eq!(caps, vec!["TOP", ".odd", "UIDL"]);

        let flood = testing::leak(b"X\r\n".repeat(5000));
        let mut s = Script::new(vec![
            Step::Client(b"CAPA\r\n"),
            Step::Server(b"+OK\r\n"),
            Step::Server(flood),
        ]);
        let e = with_ctx(Policy::Require, |ctx| {
            client_capabilities(&mut Wire::new(&mut s, Limits::default()), ctx)
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProtocolViolation);
    }
}
