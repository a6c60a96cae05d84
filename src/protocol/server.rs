//! What every protocol's server side shares before TLS: the context, the bounded command loop
//! (pipelining after STARTTLS refused, the whole dialog under one deadline), and the redaction
//! of credentials a client sends anyway.

use std::borrow::Cow;

use crate::config::Timeouts;
use crate::error::{Error, Phase, Result};
use crate::server_config::ServerConfig;
use crate::wire::{Deadline, Wire};

/// What a server dialog needs besides the wire.
pub(crate) struct ServerContext<'a> {
    pub timeouts: &'a Timeouts,
    /// The host name announced in greetings.
    pub hostname: &'a str,
    /// The configured greeting text, if any.
    pub greeting: Option<&'a str>,
    /// When the whole dialog must be over, however many commands the client sends.
    pub dialog_end: Deadline,
}

/// The whole pre-TLS dialog of one server connection lasts at most this many reply timeouts (a
/// client trickling commands cannot hold a worker for `MAX_COMMANDS_BEFORE_TLS` of them).
pub(crate) const DIALOG_REPLY_TIMEOUTS: u32 = 4;

impl<'a> ServerContext<'a> {
    pub fn new(config: &'a ServerConfig) -> ServerContext<'a> {
        ServerContext::with(
            &config.inner.timeouts,
            &config.inner.hostname,
            config.inner.greeting.as_deref(),
        )
    }

    pub fn with(timeouts: &'a Timeouts, hostname: &'a str, greeting: Option<&'a str>) -> Self {
        let whole = timeouts.reply.saturating_mul(DIALOG_REPLY_TIMEOUTS);
        ServerContext {
            timeouts,
            hostname,
            greeting,
            dialog_end: Deadline::after(whole, Phase::StartTls),
        }
    }

    /// The deadline for one client command: the reply timeout, within the whole dialog's.
    pub fn deadline(&self, phase: Phase) -> Deadline {
        Deadline::after(self.timeouts.reply, phase).not_after(&self.dialog_end)
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

/// Most commands a client may send before STARTTLS; more is a protocol violation.
pub(crate) const MAX_COMMANDS_BEFORE_TLS: usize = 32;

/// The command loop of a line-based server dialog: reads commands (bounded in length, count and
/// time), answers each through `handle`, and returns after sending the go-ahead. A client that
/// pipelined anything after its STARTTLS gets no go-ahead: that is an injection.
pub(crate) fn serve_commands(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
    mut handle: impl FnMut(&str) -> ServerStep,
) -> Result<()> {
    let mut sasl_pending = false;
    for _ in 0..MAX_COMMANDS_BEFORE_TLS {
        let deadline = ctx.deadline(Phase::StartTls);
        let line = wire.read_line_unrecorded(&deadline)?;
        let text = crate::wire::line_text(&line);
        let shown = redact_command(&text, &mut sasl_pending).into_owned();
        wire.note(crate::wire::Direction::Received, shown.clone());
        match handle(&text) {
            ServerStep::Reply(reply) => wire.send_reply(&reply, &deadline)?,
            ServerStep::GoAhead(reply) => {
                wire.ensure_nothing_after_go_ahead()?;
                return wire.send_reply(&reply, &deadline);
            }
            ServerStep::Close(reply, error) => {
                wire.send_reply(&reply, &deadline)?;
                return Err(shown_in(error, &text, &shown));
            }
        }
    }
    Err(Error::violation(
        Phase::StartTls,
        format!("more than {MAX_COMMANDS_BEFORE_TLS} commands before STARTTLS"),
    ))
}

/// An error that quotes the client's command quotes it as it may be shown (a protocol's refusal
/// of an IMAP or ManageSieve literal names the whole line, which may hold a password).
fn shown_in(error: Error, line: &str, shown: &str) -> Error {
    match error {
        Error::ProtocolViolation {
            phase,
            detail,
            reply: Some(quoted),
        } if quoted == line => Error::ProtocolViolation {
            phase,
            detail,
            reply: Some(shown.to_owned()),
        },
        other => other,
    }
}

/// What a server may show of a client's command before TLS: credentials the client sent anyway
/// (and which are refused) are replaced, as the client side never shows its own. `sasl_pending`
/// carries over to the next line: after `AUTH` a bare line is a SASL response.
pub(crate) fn redact_command<'a>(line: &'a str, sasl_pending: &mut bool) -> Cow<'a, str> {
    let was_pending = std::mem::take(sasl_pending);
    let words: Vec<&str> = line.split(' ').collect();
    let upper = |i: usize| {
        words
            .get(i)
            .map(|w| w.trim_matches('"').to_ascii_uppercase())
    };
    // IMAP commands start with a tag.
    let known = |w: &str| {
        matches!(
            w,
            "AUTH" | "AUTHENTICATE" | "LOGIN" | "PASS" | "ACCT" | "APOP" | "AUTHINFO"
        )
    };
    let v = match (upper(0), upper(1)) {
        (Some(w), _) if known(&w) => 0,
        (_, Some(w)) if known(&w) => 1,
        _ if was_pending && !line.contains(' ') && !line.is_empty() => {
            *sasl_pending = true;
            return Cow::Borrowed("<credentials>");
        }
        _ => return Cow::Borrowed(line),
    };
    let keep = |n: usize, shown: &str| Cow::Owned(format!("{} {shown}", words[..n].join(" ")));
    match upper(v).as_deref().unwrap_or_default() {
        "AUTH" | "AUTHENTICATE" => {
            if matches!(upper(v + 1).as_deref(), Some("TLS" | "SSL")) {
                return Cow::Borrowed(line); // FTP's AUTH TLS: the STARTTLS of FTP.
            }
            *sasl_pending = true;
            if words.len() > v + 2 {
                keep(v + 2, "<credentials>")
            } else {
                Cow::Borrowed(line)
            }
        }
        "AUTHINFO" => match upper(v + 1).as_deref() {
            Some("PASS") => keep(v + 2, "<password>"),
            Some("SASL" | "GENERIC") => {
                *sasl_pending = true;
                if words.len() > v + 3 {
                    keep(v + 3, "<credentials>")
                } else {
                    Cow::Borrowed(line)
                }
            }
            _ => Cow::Borrowed(line),
        },
        "PASS" | "ACCT" => keep(v + 1, "<password>"),
        _ => keep(v + 1, "<credentials>"), // LOGIN, APOP
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_a_client_sends_before_tls_are_redacted() {
        let cases = [
            (
                "AUTH PLAIN AGFsaWNlAHMzY3IzdA==",
                "AUTH PLAIN <credentials>",
            ),
            ("a1 LOGIN alice s3cr3t", "a1 LOGIN <credentials>"),
            (
                "a2 AUTHENTICATE PLAIN AGFsaWNlAHMzY3IzdA==",
                "a2 AUTHENTICATE PLAIN <credentials>",
            ),
            ("PASS s3cr3t", "PASS <password>"),
            ("APOP alice 0123abcd", "APOP <credentials>"),
            ("AUTHINFO PASS s3cr3t", "AUTHINFO PASS <password>"),
            (
                "AUTHINFO SASL PLAIN AGFs",
                "AUTHINFO SASL PLAIN <credentials>",
            ),
            (
                "AUTHENTICATE \"PLAIN\" \"AGFs\"",
                "AUTHENTICATE \"PLAIN\" <credentials>",
            ),
            ("AUTH TLS", "AUTH TLS"),
            ("EHLO client.example", "EHLO client.example"),
            ("AUTHINFO USER alice", "AUTHINFO USER alice"),
        ];
        for (line, shown) in cases {
            assert_eq!(redact_command(line, &mut false), shown, "{line}");
        }
        // A SASL exchange without an initial response: the next bare line is a secret.
        let mut pending = false;
        assert_eq!(redact_command("AUTH LOGIN", &mut pending), "AUTH LOGIN");
        assert_eq!(redact_command("YWxpY2U=", &mut pending), "<credentials>");
        assert_eq!(redact_command("czNjcjN0", &mut pending), "<credentials>");
        assert_eq!(redact_command("QUIT now", &mut pending), "QUIT now");
        assert_eq!(redact_command("NOOP", &mut pending), "NOOP");
    }
}
