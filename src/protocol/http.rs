//! HTTP/1.1 Upgrade to TLS (RFC 2817): both sides of the request before TLS, and the answer to
//! `OPTIONS *` inside it.
//!
//! `OPTIONS * HTTP/1.1` with `Upgrade: TLS/1.0` and `Connection: Upgrade` → `101 Switching
//! Protocols` naming TLS in its `Upgrade` header → TLS. Any other status is a refusal.

use crate::error::{Error, Phase, Result};
use crate::protocol::{Dialog, DialogContext, PreTls, ServerContext, ServerPreTls};
use crate::wire::{Deadline, Direction, Wire, line_text, printable};

pub(crate) fn client_starttls(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
    let mut pre = PreTls::new();
    let deadline = ctx.deadline(Phase::StartTls);
    let host = if ctx.server_name.contains(':') {
        format!("[{}]", ctx.server_name)
    } else {
        ctx.server_name.to_owned()
    };
    let host = match ctx.port {
        Some(p) if p != 80 => format!("{host}:{p}"),
        _ => host,
    };
    for line in [
        "OPTIONS * HTTP/1.1",
        &format!("Host: {host}"),
        "Upgrade: TLS/1.0",
        "Connection: Upgrade",
        "",
    ] {
        wire.send_line(line, &deadline)?;
    }

    let response = read_response(wire, &deadline)?;
    let (code, status, upgrade_to_tls) = (response.code, response.status, response.upgrade_to_tls);
    match code {
        101 if upgrade_to_tls => {
            pre.starttls_offered = Some(true);
            Ok(pre)
        }
        101 => Err(Error::violation_in(
            Phase::StartTls,
            "101 without an Upgrade header naming TLS",
            &status,
        )),
        100..=199 => Err(Error::violation_in(
            Phase::StartTls,
            "unexpected interim response",
            &status,
        )),
        _ => {
            pre.starttls_offered = Some(false);
            let reason = Error::Refused {
                phase: Phase::StartTls,
                reply: status,
            };
            let pre = ctx.tls_impossible(pre, reason)?;
            // Opportunistic: the refusal's body must not be left for the application to read as
            // its own.
            discard_body(wire, &deadline, response.body)?;
            Ok(pre)
        }
    }
}

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Length(usize),
    /// Chunked or until close: not read before or right after TLS.
    Unbounded,
}

/// The largest response body read during the upgrade.
const MAX_BODY: usize = 64 * 1024;

struct Response {
    code: u16,
    status: String,
    upgrade_to_tls: bool,
    body: Body,
}

/// Reads a status line and headers (bounded).
fn read_response(wire: &mut Wire<'_>, deadline: &Deadline) -> Result<Response> {
    let phase = deadline.phase();
    let status_line = wire.read_line(deadline)?;
    let status = line_text(&status_line);
    let code = parse_status(&status_line).ok_or_else(|| {
        Error::violation_in(phase, "malformed status line", &printable(&status_line))
    })?;
    let mut upgrade_to_tls = false;
    let mut body = Body::Length(0);
    let max = wire.limits().max_lines;
    let mut headers = 0;
    loop {
        let line = wire.read_line(deadline)?;
        if line.is_empty() {
            break;
        }
        headers += 1;
        if headers > max {
            return Err(Error::violation(
                phase,
                format!("more than {max} header lines"),
            ));
        }
        let text = line_text(&line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(Error::violation_in(phase, "malformed header", &text));
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade_to_tls |= value
                .split(',')
                .any(|p| p.trim().to_ascii_uppercase().starts_with("TLS/"));
        } else if name.eq_ignore_ascii_case("content-length") {
            body = match value.trim().parse::<usize>() {
                Ok(n) => Body::Length(n),
                Err(_) => return Err(Error::violation_in(phase, "bad Content-Length", &text)),
            };
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            body = Body::Unbounded;
        }
    }
    Ok(Response {
        code,
        status,
        upgrade_to_tls,
        body,
    })
}

fn discard_body(wire: &mut Wire<'_>, deadline: &Deadline, body: Body) -> Result<()> {
    match body {
        Body::Length(0) => Ok(()),
        Body::Length(n) if n <= MAX_BODY => wire.read_bytes(n, deadline).map(|_| ()),
        _ => Err(Error::violation(
            deadline.phase(),
            format!("response body not delimited by a Content-Length of at most {MAX_BODY}"),
        )),
    }
}

/// After TLS the server answers the original `OPTIONS *` request (RFC 2817 §3.3); the answer is
/// read here so that the application's first read is the answer to its own request.
pub(crate) fn client_after_starttls(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<()> {
    let deadline = ctx.deadline(Phase::Capabilities);
    let response = read_response(wire, &deadline)?;
    discard_body(wire, &deadline, response.body)
}

/// The server's answer to `OPTIONS *`, sent right after TLS (RFC 2817 §3.3).
pub(crate) const OPTIONS_RESPONSE: &str =
    "HTTP/1.1 200 OK\r\nAllow: OPTIONS, GET, HEAD, POST\r\nContent-Length: 0\r\n\r\n";

/// A request header as a server may show it: the value of `Authorization` and
/// `Proxy-Authorization` (credentials sent before TLS, and refused) is replaced.
fn redact_header(line: &str) -> String {
    match line.split_once(':') {
        Some((name, _))
            if name.trim().eq_ignore_ascii_case("authorization")
                || name.trim().eq_ignore_ascii_case("proxy-authorization") =>
        {
            format!("{name}: <credentials>")
        }
        _ => line.to_owned(),
    }
}

/// `HTTP/1.x NNN reason` → NNN.
fn parse_status(line: &[u8]) -> Option<u16> {
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), None | Some(b' ')) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u16, |a, d| a * 10 + u16::from(d - b'0')),
    )
}

// --- server side ---

const SWITCHING: &str =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.0, HTTP/1.1\r\nConnection: Upgrade\r\n\r\n";
const UPGRADE_REQUIRED: &str = "HTTP/1.1 426 Upgrade Required\r\nUpgrade: TLS/1.0, HTTP/1.1\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n";

/// The server's side (RFC 2817 §3-4): a request asking to upgrade to TLS gets `101`; any other
/// gets `426 Upgrade Required`. A request with a body is answered and the connection closed (its
/// body would otherwise be read as the next request).
pub(crate) fn server_starttls(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
) -> Result<ServerPreTls> {
    let mut pre = ServerPreTls::default();
    let max = wire.limits().max_lines;
    for _ in 0..super::MAX_COMMANDS_BEFORE_TLS {
        let deadline = ctx.deadline(Phase::StartTls);
        let request = line_text(&wire.read_line(&deadline)?);
        let mut parts = request.split(' ');
        let well_formed = matches!(
            (parts.next(), parts.next(), parts.next(), parts.next()),
            (Some(m), Some(t), Some("HTTP/1.1" | "HTTP/1.0"), None) if !m.is_empty() && !t.is_empty()
        );
        if !well_formed {
            wire.send_reply(
                "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                &deadline,
            )?;
            return Err(Error::violation_in(
                Phase::StartTls,
                "malformed request line",
                &request,
            ));
        }
        let (mut upgrade_tls, mut connection_upgrade, mut has_body) = (false, false, false);
        let mut headers = 0;
        loop {
            let line = wire.read_line_unrecorded(&deadline)?;
            wire.note(Direction::Received, redact_header(&line_text(&line)));
            if line.is_empty() {
                break;
            }
            headers += 1;
            if headers > max {
                return Err(Error::violation(
                    Phase::StartTls,
                    format!("more than {max} header lines"),
                ));
            }
            let text = line_text(&line);
            let Some((name, value)) = text.split_once(':') else {
                return Err(Error::violation_in(
                    Phase::StartTls,
                    "malformed header",
                    &text,
                ));
            };
            let name = name.trim().to_ascii_lowercase();
            let tokens = || value.split(',').map(|t| t.trim().to_ascii_lowercase());
            match name.as_str() {
                "upgrade" => upgrade_tls |= tokens().any(|t| t.starts_with("tls/")),
                "connection" => connection_upgrade |= tokens().any(|t| t == "upgrade"),
                "host" => pre.peer_name = Some(value.trim().to_owned()),
                "content-length" => has_body |= value.trim() != "0",
                "transfer-encoding" => has_body = true,
                _ => {}
            }
        }
        if upgrade_tls && connection_upgrade && !has_body {
            wire.ensure_nothing_after_go_ahead()?;
            wire.send_reply(SWITCHING, &deadline)?;
            return Ok(pre);
        }
        wire.send_reply(UPGRADE_REQUIRED, &deadline)?;
        if has_body {
            return Err(Error::Refused {
                phase: Phase::StartTls,
                reply: format!("request with a body before TLS: {request}"),
            });
        }
    }
    Err(Error::violation(
        Phase::StartTls,
        format!(
            "more than {} requests before the upgrade",
            super::MAX_COMMANDS_BEFORE_TLS
        ),
    ))
}

/// HTTP/1.1 Upgrade to TLS (RFC 2817).
pub(crate) struct Http;

impl Dialog for Http {
    fn client_starttls(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
        client_starttls(wire, ctx)
    }

    /// The answer to the `OPTIONS *` comes inside TLS.
    fn client_after_starttls(
        &self,
        wire: &mut Wire<'_>,
        ctx: &mut DialogContext,
    ) -> Result<Option<Vec<String>>> {
        client_after_starttls(wire, ctx).map(|()| None)
    }

    fn has_capabilities(&self) -> bool {
        false
    }

    fn server_starttls(
        &self,
        wire: &mut Wire<'_>,
        ctx: &ServerContext<'_>,
    ) -> Result<ServerPreTls> {
        server_starttls(wire, ctx)
    }

    fn server_first_inside_tls(&self, _ctx: &ServerContext<'_>, implicit: bool) -> Option<String> {
        (!implicit).then(|| OPTIONS_RESPONSE.to_owned())
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

    const REQUEST: Step = Step::Client(
        b"OPTIONS * HTTP/1.1\r\nHost: server.test\r\nUpgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n",
    );

    fn run(policy: Policy, steps: Vec<Step>) -> (Result<PreTls>, Script) {
        testing::run(policy, steps, client_starttls)
    }

    #[test]
    fn non_101_is_a_refusal() {
        let (r, _) = run(
            Policy::Require,
            vec![
                REQUEST,
                Step::Server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ],
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert_eq!(e.reply(), Some("HTTP/1.1 200 OK"));
    }

    #[test]
    fn switching_to_something_else_is_a_violation() {
        let (r, _) = run(
            Policy::Require,
            vec![
                REQUEST,
                Step::Server(b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n"),
            ],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn garbage_status_and_headers_are_violations() {
        for g in [
            &b"SMTP 220 hi\r\n"[..],
            b"HTTP/1.1 1x1 no\r\n",
            b"HTTP/1.1 101 ok\r\nno colon\r\n\r\n",
        ] {
            let g = testing::leak(g);
            let (r, _) = run(Policy::Require, vec![REQUEST, Step::Server(g)]);
            assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation, "{g:?}");
        }
    }

    #[test]
    fn endless_headers_are_bounded() {
        let flood = testing::leak(b"X-A: b\r\n".repeat(5000));
        let (r, _) = run(
            Policy::Require,
            vec![
                REQUEST,
                Step::Server(b"HTTP/1.1 101 ok\r\n"),
                Step::Server(flood),
            ],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn upgrade_101_is_the_go_ahead() {
        let (r, s) = run(
            Policy::Require,
            vec![
                REQUEST,
                Step::Server(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.0, HTTP/1.1\r\nConnection: Upgrade\r\n\r\n",
                ),
            ],
        );
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn status_parsing() {
        assert_eq!(parse_status(b"HTTP/1.1 101 Switching"), Some(101));
        assert_eq!(parse_status(b"HTTP/1.0 426"), Some(426));
        assert_eq!(parse_status(b"HTTP/2 101 x"), None);
        assert_eq!(parse_status(b"HTTP/1.1 1011 x"), None);
    }
}
