//! FTP (RFC 959, RFC 2228, RFC 4217): both sides of the dialog before TLS, the steps inside it
//! (FEAT, USER/PASS, QUIT), and the replies the protected data channel needs (PBSZ/PROT,
//! EPSV/PASV, transfer replies).
//!
//! `220` greeting → `AUTH TLS` → `234` → TLS. FEAT is not sent before TLS: its answer could not
//! be trusted, and AUTH TLS itself says whether TLS is available. A `230` greeting (already
//! logged in, in plaintext) is a downgrade.

use crate::error::{Error, Phase, Result};
use crate::protocol::sasl::{AuthOutcome, Login, Secret};
use crate::protocol::{
    Dialog, DialogContext, Greeting, PreTls, ServerContext, ServerPreTls, ServerStep, client_quit,
    goodbye_line, serve_commands, verb,
};
use crate::wire::{Deadline, Wire, line_text, printable};

/// One FTP reply: the code and its lines.
#[derive(Debug)]
pub(crate) struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    fn is_negative(&self) -> bool {
        (400..600).contains(&self.code)
    }
}

/// Reads one reply (RFC 959 §4.2): `NNN text`, or `NNN-text` ... `NNN text`, where the lines in
/// between may be any text.
pub(crate) fn read_reply(wire: &mut Wire<'_>, deadline: &Deadline) -> Result<Reply> {
    let phase = deadline.phase();
    let first = wire.read_line(deadline)?;
    let code = reply_code(&first)
        .ok_or_else(|| Error::violation_in(phase, "malformed reply line", &printable(&first)))?;
    let mut lines = vec![line_text(&first)];
    if first.get(3) == Some(&b'-') {
        let end = format!("{code} ");
        let max = wire.limits().max_lines;
        loop {
            if lines.len() >= max {
                return Err(Error::violation(
                    phase,
                    format!("reply longer than {max} lines"),
                ));
            }
            let line = wire.read_line(deadline)?;
            let text = line_text(&line);
            let last = text.starts_with(&end) || text == end.trim_end();
            lines.push(text);
            if last {
                break;
            }
        }
    } else if !matches!(first.get(3), None | Some(b' ')) {
        return Err(Error::violation_in(
            phase,
            "malformed reply line",
            &printable(&first),
        ));
    }
    Ok(Reply { code, lines })
}

fn reply_code(line: &[u8]) -> Option<u16> {
    let d = line.get(..3)?;
    if !d.iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&d[0]) {
        return None;
    }
    Some(d.iter().fold(0u16, |a, b| a * 10 + u16::from(b - b'0')))
}

pub(crate) fn client_greeting(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<Greeting> {
    let deadline = ctx.deadline(Phase::Greeting);
    let mut reply = read_reply(wire, &deadline)?;
    if reply.code == 120 {
        // "Service ready in nnn minutes": the real greeting follows.
        reply = read_reply(wire, &deadline)?;
    }
    match reply.code {
        220 => Ok(Greeting {
            text: reply.text(),
            capabilities: None,
        }),
        230 => Err(Error::Downgrade {
            reply: reply.text(),
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

pub(crate) fn client_starttls(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
    let mut pre = PreTls::new();
    match client_greeting(wire, ctx) {
        Ok(g) => pre.greeting = Some(g.text),
        Err(e @ Error::Downgrade { .. }) => {
            pre.greeting = e.reply().map(str::to_owned);
            return ctx.tls_impossible(pre, e);
        }
        Err(e) => return Err(e),
    }
    let deadline = ctx.deadline(Phase::StartTls);
    wire.send_line("AUTH TLS", &deadline)?;
    let reply = read_reply(wire, &deadline)?;
    match reply.code {
        234 => {
            pre.starttls_offered = Some(true);
            Ok(pre)
        }
        _ if reply.is_negative() => {
            pre.starttls_offered = Some(false);
            let reason = Error::Refused {
                phase: Phase::StartTls,
                reply: reply.text(),
            };
            ctx.tls_impossible(pre, reason)
        }
        _ => Err(Error::violation_in(
            Phase::StartTls,
            "unexpected reply to AUTH TLS",
            &reply.text(),
        )),
    }
}

/// `FEAT` → `211-` list: the feature lines (inside TLS).
pub(crate) fn client_capabilities(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
) -> Result<Vec<String>> {
    let deadline = ctx.deadline(Phase::Capabilities);
    wire.send_line("FEAT", &deadline)?;
    let reply = read_reply(wire, &deadline)?;
    if reply.code != 211 {
        return Err(Error::Refused {
            phase: Phase::Capabilities,
            reply: reply.text(),
        });
    }
    let n = reply.lines.len();
    Ok(reply
        .lines
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 0 && *i + 1 != n)
        .map(|(_, l)| l.trim().to_owned())
        .collect())
}

/// Sends `command` and reads its reply, which must have code `expect`.
pub(crate) fn command(
    wire: &mut Wire<'_>,
    ctx: &DialogContext,
    command: &str,
    expect: &[u16],
) -> Result<Reply> {
    let deadline = ctx.deadline(Phase::Read);
    wire.send_line(command, &deadline)?;
    let reply = read_reply(wire, &deadline)?;
    if expect.contains(&reply.code) {
        Ok(reply)
    } else {
        Err(Error::Refused {
            phase: Phase::Read,
            reply: reply.text(),
        })
    }
}

/// Where to open the data connection: always the control connection's peer address, with the
/// port from `229 (|||port|)` or `227 (h1,h2,h3,h4,p1,p2)`. The address in a 227 reply is
/// ignored: following it would let the server (or a MITM) point the client at any host.
pub(crate) fn data_port(reply: &Reply) -> Result<u16> {
    let text = reply.text();
    let bad = || Error::violation_in(Phase::Read, "cannot parse the passive-mode reply", &text);
    match reply.code {
        229 => {
            let open = text.find('(').ok_or_else(bad)?;
            let close = text[open..].find(')').ok_or_else(bad)? + open;
            let inner = &text[open + 1..close];
            let delim = inner.chars().next().ok_or_else(bad)?;
            let fields: Vec<&str> = inner.split(delim).collect();
            // (|||port|) splits into ["", "", "", "port", ""].
            if fields.len() != 5 {
                return Err(bad());
            }
            fields[3]
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(bad)
        }
        227 => {
            // Only the first line, and each candidate looked at through a short window: linear.
            let first = reply.lines.first().map(String::as_str).unwrap_or_default();
            let after_code = first.get(3..).unwrap_or_default();
            let port = after_code
                .char_indices()
                .filter(|(i, c)| {
                    c.is_ascii_digit() && !after_code[..*i].ends_with(|p: char| p.is_ascii_digit())
                })
                .find_map(|(i, _)| {
                    let end = after_code.len().min(i + 32);
                    after_code.get(i..end).and_then(pasv_port)
                });
            port.ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// `h1,h2,h3,h4,p1,p2` at the start of `s`: the port, if the six numbers are there.
fn pasv_port(s: &str) -> Option<u16> {
    let numbers: Vec<u16> = s
        .split(',')
        .take(6)
        .map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u16>().ok().filter(|n| *n <= 255)
        })
        .collect::<Option<_>>()?;
    if numbers.len() != 6 {
        return None;
    }
    let port = numbers[4] * 256 + numbers[5];
    (port != 0).then_some(port)
}

// --- server side ---

pub(crate) fn server_greeting(ctx: &ServerContext<'_>) -> String {
    format!("220 {}\r\n", ctx.greeting_or("FTP server ready"))
}

/// The server's pre-TLS dialog on the control connection: greeting, FEAT, `AUTH TLS` → `234`,
/// `530` for logins and everything else that needs TLS.
pub(crate) fn server_starttls(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
) -> Result<ServerPreTls> {
    wire.send_reply(&server_greeting(ctx), &ctx.deadline(Phase::Greeting))?;
    serve_commands(wire, ctx, |line| {
        let (verb, rest) = verb(line);
        match verb.as_str() {
            "AUTH" if ["TLS", "TLS-C", "SSL"].contains(&rest.to_ascii_uppercase().as_str()) => {
                ServerStep::GoAhead("234 AUTH TLS successful\r\n".into())
            }
            "AUTH" => ServerStep::Reply("504 Unknown security mechanism\r\n".into()),
            "FEAT" => ServerStep::Reply(
                "211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n211 End\r\n".into(),
            ),
            "PBSZ" | "PROT" => ServerStep::Reply("503 Bad sequence: AUTH TLS first\r\n".into()),
            "QUIT" => ServerStep::Close("221 Goodbye\r\n".into(), client_quit()),
            "NOOP" => ServerStep::Reply("200 OK\r\n".into()),
            _ => ServerStep::Reply("530 TLS required: use AUTH TLS first\r\n".into()),
        }
    })?;
    Ok(ServerPreTls::default())
}

// --- authentication inside TLS ---

/// `USER` / `PASS` (RFC 959), inside TLS.
pub(crate) fn client_authenticate(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    login: &Login<'_>,
) -> Result<AuthOutcome> {
    let creds = login.creds;
    if !creds.allows_protocol_login() {
        return Err(Error::NoLoginMechanism {
            reply: "FTP logs in with USER and PASS only: a password is needed".into(),
        });
    }
    let deadline = ctx.deadline(Phase::Read);
    let user = Secret::concat(&["USER ", creds.user()]);
    wire.send_secret_line(user.as_str(), "USER <user>", &deadline)?;
    let mut reply = read_reply(wire, &deadline)?;
    if reply.code == 331 || reply.code == 332 {
        let pass = Secret::concat(&["PASS ", creds.password()]);
        wire.send_secret_line(pass.as_str(), "PASS <password>", &deadline)?;
        reply = read_reply(wire, &deadline)?;
    }
    if reply.code == 230 || reply.code == 202 {
        Ok(AuthOutcome::new("USER/PASS", reply.text()))
    } else {
        Err(Error::AuthFailed {
            mechanism: "USER/PASS",
            reply: reply.text(),
        })
    }
}

/// FTP's control connection (RFC 4217).
pub(crate) struct Ftp;

impl Dialog for Ftp {
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

    /// `USER`/`PASS` needs no FEAT.
    fn login_needs_capabilities(&self) -> bool {
        false
    }

    fn has_login(&self) -> bool {
        true
    }

    fn client_authenticate(
        &self,
        wire: &mut Wire<'_>,
        ctx: &mut DialogContext,
        _caps: &[String],
        login: &Login<'_>,
    ) -> Result<AuthOutcome> {
        client_authenticate(wire, ctx, login)
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
    use crate::protocol::testing::{self, leak};
    use crate::wire::script::{Script, Step};

    fn run(policy: Policy, steps: Vec<Step>) -> (Result<PreTls>, Script) {
        testing::run(policy, steps, client_starttls)
    }

    #[test]
    fn greeting_230_is_a_downgrade_and_nothing_is_sent() {
        let (r, s) = run(
            Policy::Require,
            vec![Step::Server(b"230 User logged in, proceed.\r\n")],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Downgrade);
        assert!(s.all_written.is_empty());
    }

    #[test]
    fn auth_tls_refusals() {
        for refusal in [
            &b"534 Request denied for policy reasons.\r\n"[..],
            b"500 AUTH not understood\r\n",
            b"431 Unable to accept\r\n",
        ] {
            let (r, s) = run(
                Policy::Require,
                vec![
                    Step::Server(b"220 ftp ready\r\n"),
                    Step::Client(b"AUTH TLS\r\n"),
                    Step::Server(leak(refusal)),
                ],
            );
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Refused);
            assert_eq!(s.remaining(), 0);
        }
    }

    #[test]
    fn odd_replies_to_auth_tls_are_violations() {
        for odd in [&b"334 ADAT=\r\n"[..], b"200 ok\r\n", b"234x\r\n"] {
            let (r, _) = run(
                Policy::Require,
                vec![
                    Step::Server(b"220 hi\r\n"),
                    Step::Client(b"AUTH TLS\r\n"),
                    Step::Server(leak(odd)),
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
    fn multiline_greeting_with_free_text_lines() {
        let (r, s) = run(
            Policy::Require,
            vec![
                Step::Server(b"220-Welcome\r\n  any text here\r\n220-more\r\n220 ready\r\n"),
                Step::Client(b"AUTH TLS\r\n"),
                Step::Server(b"234 AUTH TLS successful\r\n"),
            ],
        );
        let pre = r.unwrap();
        assert!(matches!(pre.outcome, Outcome::GoAhead));
        assert_eq!(
            pre.greeting.unwrap(),
            "220-Welcome\n  any text here\n220-more\n220 ready"
        );
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn endless_multiline_reply_is_bounded() {
        let flood = leak(format!("220-a\r\n{}", "x\r\n".repeat(5000)));
        let (r, _) = run(Policy::Require, vec![Step::Server(flood)]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn opportunistic_refusal_is_plaintext() {
        let (r, _) = run(
            Policy::Opportunistic,
            vec![
                Step::Server(b"220 hi\r\n"),
                Step::Client(b"AUTH TLS\r\n"),
                Step::Server(b"502 no\r\n"),
            ],
        );
        assert!(matches!(
            r.unwrap().outcome,
            Outcome::Plaintext(Error::Refused { .. })
        ));
    }

    fn reply(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![format!("{code} {text}")],
        }
    }

    #[test]
    fn passive_replies_give_only_a_port() {
        assert_eq!(
            data_port(&reply(229, "Entering Extended Passive Mode (|||6446|)")).unwrap(),
            6446
        );
        assert_eq!(data_port(&reply(229, "ok (!!!21!)")).unwrap(), 21);
        // The address in a 227 is ignored, only the port is used.
        assert_eq!(
            data_port(&reply(227, "Entering Passive Mode (10,0,0,99,25,46).")).unwrap(),
            25 * 256 + 46
        );
        assert_eq!(data_port(&reply(227, "=192,168,1,1,4,1")).unwrap(), 1025);
        for bad in [
            reply(229, "no parens"),
            reply(229, "(|||0|)"),
            reply(229, "(|||99999|)"),
            reply(227, "(1,2,3,4,5)"),
            reply(227, "(1,2,3,4,300,1)"),
            reply(200, "(|||21|)"),
        ] {
            assert!(data_port(&bad).is_err(), "{bad:?}");
        }
    }
}
