//! NNTP (RFC 3977, RFC 4642): both sides of the dialog before TLS, the steps inside it
//! (CAPABILITIES again, AUTHINFO), and the goodbye.
//!
//! `200`/`201` greeting → `STARTTLS` → `382` → TLS. CAPABILITIES is not sent before TLS: its
//! answer could not be trusted, and `STARTTLS` itself says whether TLS is available (580 or 502
//! when not), which saves a round trip. After TLS the client re-issues CAPABILITIES.

use crate::error::{Error, Phase, Result};
use crate::protocol::sasl::{self, AuthOutcome, Login, Secret, ServerSays, explain_challenge};
use crate::protocol::{
    Dialog, DialogContext, Greeting, PreTls, ServerContext, ServerPreTls, ServerStep, client_quit,
    goodbye_line, serve_commands, verb,
};
use crate::wire::{Deadline, Wire, line_text, printable};

/// A status line: the code and the whole line for messages.
fn status(wire: &mut Wire<'_>, deadline: &Deadline) -> Result<(u16, String)> {
    let line = wire.read_line(deadline)?;
    let digits = line.get(..3).filter(|d| d.iter().all(u8::is_ascii_digit));
    let sep_ok = matches!(line.get(3), None | Some(b' '));
    match digits {
        Some(d) if sep_ok && (b'1'..=b'5').contains(&d[0]) => {
            let code = d.iter().fold(0u16, |a, b| a * 10 + u16::from(b - b'0'));
            Ok((code, line_text(&line)))
        }
        _ => Err(Error::violation_in(
            deadline.phase(),
            "malformed status line",
            &printable(&line),
        )),
    }
}

pub(crate) fn client_greeting(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<Greeting> {
    let (code, text) = status(wire, &ctx.deadline(Phase::Greeting))?;
    match code {
        200 | 201 => Ok(Greeting {
            text,
            capabilities: None,
        }),
        400..=599 => Err(Error::Refused {
            phase: Phase::Greeting,
            reply: text,
        }),
        _ => Err(Error::violation_in(
            Phase::Greeting,
            "greeting is not 200 or 201",
            &text,
        )),
    }
}

pub(crate) fn client_starttls(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
    let mut pre = PreTls::new();
    pre.greeting = Some(client_greeting(wire, ctx)?.text);

    let deadline = ctx.deadline(Phase::StartTls);
    wire.send_line("STARTTLS", &deadline)?;
    let (code, text) = status(wire, &deadline)?;
    match code {
        382 => {
            pre.starttls_offered = Some(true);
            Ok(pre)
        }
        400..=599 => {
            // 580: cannot start TLS; 502/500: not available or unknown.
            pre.starttls_offered = Some(false);
            let reason = Error::Refused {
                phase: Phase::StartTls,
                reply: text,
            };
            ctx.tls_impossible(pre, reason)
        }
        _ => Err(Error::violation_in(
            Phase::StartTls,
            "unexpected reply to STARTTLS",
            &text,
        )),
    }
}

/// `CAPABILITIES` → `101` and a dot-terminated list.
pub(crate) fn client_capabilities(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
) -> Result<Vec<String>> {
    let deadline = ctx.deadline(Phase::Capabilities);
    wire.send_line("CAPABILITIES", &deadline)?;
    let (code, text) = status(wire, &deadline)?;
    if code != 101 {
        return Err(Error::Refused {
            phase: Phase::Capabilities,
            reply: text,
        });
    }
    super::read_dot_terminated(wire, &deadline)
}

// --- server side ---

pub(crate) fn server_greeting(ctx: &ServerContext<'_>) -> String {
    format!("200 {}\r\n", ctx.greeting_or("NNTP service ready"))
}

/// The server's pre-TLS dialog: greeting, CAPABILITIES with STARTTLS, `483` for what needs TLS.
pub(crate) fn server_starttls(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
) -> Result<ServerPreTls> {
    wire.send_reply(&server_greeting(ctx), &ctx.deadline(Phase::Greeting))?;
    serve_commands(wire, ctx, |line| {
        let (verb, rest) = verb(line);
        match verb.as_str() {
            "CAPABILITIES" => {
                ServerStep::Reply("101 Capability list:\r\nVERSION 2\r\nSTARTTLS\r\n.\r\n".into())
            }
            "STARTTLS" if rest.is_empty() => {
                ServerStep::GoAhead("382 Continue with TLS negotiation\r\n".into())
            }
            "QUIT" => ServerStep::Close("205 Bye\r\n".into(), client_quit()),
            "DATE" | "HELP" | "MODE" | "AUTHINFO" | "LIST" | "GROUP" | "ARTICLE" | "POST"
            | "OVER" | "HDR" | "NEWNEWS" | "NEWGROUPS" | "IHAVE" | "STAT" | "HEAD" | "BODY" => {
                ServerStep::Reply("483 Encryption required: use STARTTLS\r\n".into())
            }
            _ => ServerStep::Reply("500 Unknown command\r\n".into()),
        }
    })?;
    Ok(ServerPreTls::default())
}

// --- authentication inside TLS ---

/// The strongest SASL mechanism offered (SCRAM-SHA-256-PLUS, SCRAM-SHA-256, PLAIN) when
/// AUTHINFO lists SASL (RFC 4643), else `AUTHINFO USER`/`PASS`.
pub(crate) fn client_authenticate(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    caps: &[String],
    login: &Login<'_>,
) -> Result<AuthOutcome> {
    let creds = login.creds;
    let deadline = ctx.deadline(Phase::Read);
    let authinfo = |word: &str| {
        caps.iter().any(|c| {
            let mut w = c.split_ascii_whitespace();
            w.next().is_some_and(|f| f.eq_ignore_ascii_case("AUTHINFO"))
                && w.any(|m| m.eq_ignore_ascii_case(word))
        })
    };
    let done = |mechanism: &'static str, (code, reply): (u16, String)| {
        if code == 281 {
            Ok(AuthOutcome::new(mechanism, reply))
        } else {
            Err(Error::AuthFailed {
                mechanism,
                reply: explain_challenge(&reply),
            })
        }
    };
    if authinfo("SASL") {
        let offered = super::listed_after(caps, "SASL");
        if let Some(mut mechanism) = super::mechanisms::choose(&offered, login) {
            // RFC 4643 §2.4: 281 on success, 283 with the server's last message, 383 with a
            // challenge.
            return sasl::line_exchange(
                wire,
                &deadline,
                "AUTHINFO SASL",
                &mut *mechanism,
                |wire| {
                    let (code, reply) = status(wire, &deadline)?;
                    let payload = reply.get(4..).unwrap_or_default().to_owned();
                    Ok(match code {
                        281 => ServerSays::Success { reply, data: None },
                        283 => ServerSays::Success {
                            reply,
                            data: Some(payload),
                        },
                        383 => ServerSays::Challenge(payload),
                        _ => ServerSays::Failure(reply),
                    })
                },
            );
        }
    }
    if creds.allows_protocol_login() && authinfo("USER") {
        let user = Secret::concat(&["AUTHINFO USER ", creds.user()]);
        wire.send_secret_line(user.as_str(), "AUTHINFO USER <user>", &deadline)?;
        let (code, reply) = status(wire, &deadline)?;
        if code != 381 {
            return done("USER/PASS", (code, reply));
        }
        let pass = Secret::concat(&["AUTHINFO PASS ", creds.password()]);
        wire.send_secret_line(pass.as_str(), "AUTHINFO PASS <password>", &deadline)?;
        return done("USER/PASS", status(wire, &deadline)?);
    }
    Err(super::no_mechanism(caps))
}

/// NNTP (RFC 3977, RFC 4642).
pub(crate) struct Nntp;

impl Dialog for Nntp {
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
    fn refusals_580_and_502_fail_and_send_nothing_more() {
        for refusal in [
            &b"580 Can not initiate TLS negotiation\r\n"[..],
            b"502 Command unavailable\r\n",
        ] {
            let refusal = testing::leak(refusal);
            let (r, s) = run(
                Policy::Require,
                vec![
                    Step::Server(b"200 news.test ready\r\n"),
                    Step::Client(b"STARTTLS\r\n"),
                    Step::Server(refusal),
                ],
            );
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Refused);
            assert_eq!(
                e.reply().map(|r| &r[..3]),
                Some(&String::from_utf8_lossy(&refusal[..3])[..])
            );
            assert_eq!(s.written_text(), "STARTTLS\r\n");
        }
    }

    #[test]
    fn odd_codes_are_not_a_go_ahead() {
        for odd in [&b"200 ok\r\n"[..], b"381 more\r\n", b"382-x\r\n", b"38\r\n"] {
            let odd = testing::leak(odd);
            let (r, _) = run(
                Policy::Require,
                vec![
                    Step::Server(b"200 hi\r\n"),
                    Step::Client(b"STARTTLS\r\n"),
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
    fn greeting_400_and_502_are_refusals() {
        for g in [&b"400 busy\r\n"[..], b"502 go away\r\n"] {
            let g = testing::leak(g);
            let (r, s) = run(Policy::Require, vec![Step::Server(g)]);
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Refused);
            assert!(s.all_written.is_empty());
        }
    }

    #[test]
    fn opportunistic_580_is_plaintext() {
        let (r, _) = run(
            Policy::Opportunistic,
            vec![
                Step::Server(b"201 hi\r\n"),
                Step::Client(b"STARTTLS\r\n"),
                Step::Server(b"580 no\r\n"),
            ],
        );
        assert!(matches!(
            r.unwrap().outcome,
            Outcome::Plaintext(Error::Refused { .. })
        ));
    }

    #[test]
    fn go_ahead_in_three_turns() {
        let (r, s) = run(
            Policy::Require,
            vec![
                Step::Server(b"200 INN ready\r\n"),
                Step::Client(b"STARTTLS\r\n"),
                Step::Server(b"382 Begin TLS negotiation now\r\n"),
            ],
        );
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn capabilities_list_is_read_and_bounded() {
        let mut s = Script::new(vec![
            Step::Client(b"CAPABILITIES\r\n"),
            Step::Server(b"101 Capability list:\r\nVERSION 2\r\nREADER\r\nAUTHINFO USER\r\n.\r\n"),
        ]);
        let caps = with_ctx(Policy::Require, |ctx| {
            client_capabilities(&mut Wire::new(&mut s, Limits::default()), ctx)
        })
        .unwrap();
        assert_eq!(caps, vec!["VERSION 2", "READER", "AUTHINFO USER"]);

        let flood = testing::leak(b"X\r\n".repeat(5000));
        let mut s = Script::new(vec![
            Step::Client(b"CAPABILITIES\r\n"),
            Step::Server(b"101 list\r\n"),
            Step::Server(flood),
        ]);
        let e = with_ctx(Policy::Require, |ctx| {
            client_capabilities(&mut Wire::new(&mut s, Limits::default()), ctx)
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProtocolViolation);
    }
}
