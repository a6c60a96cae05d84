//! PostgreSQL SSLRequest (protocol 3.0, "SSL Session Encryption"): both sides of the step
//! before TLS.
//!
//! The client sends the 8-byte SSLRequest; the server answers with exactly one byte: `S` to
//! start TLS, `N` to refuse. Anything else (an `E` ErrorResponse from an ancient or hostile
//! server) fails closed, and any byte after the `S` is an injection (CVE-2021-23222).

use crate::error::{Error, Phase, Result};
use crate::protocol::{Dialog, DialogContext, PreTls, ServerContext, ServerPreTls};
use crate::wire::{Direction, Wire, printable};

/// Length 8, then the SSLRequest code 80877103 (1234 << 16 | 5679), both big-endian.
pub(crate) const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

pub(crate) fn client_starttls(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
    let mut pre = PreTls::new();
    let deadline = ctx.deadline(Phase::StartTls);
    wire.send_message(&SSL_REQUEST, &deadline)?;
    wire.note(Direction::Sent, "SSLRequest".into());
    let answer = wire.read_bytes(1, &deadline)?;
    wire.note(Direction::Received, printable(&answer));
    match answer[..] {
        [b'S'] => {
            pre.starttls_offered = Some(true);
            Ok(pre)
        }
        [b'N'] => {
            pre.starttls_offered = Some(false);
            let reason = Error::Refused {
                phase: Phase::StartTls,
                reply: "N (the server does not accept TLS)".into(),
            };
            ctx.tls_impossible(pre, reason)
        }
        [b'E'] => Err(Error::violation_in(
            Phase::StartTls,
            "ErrorResponse instead of S or N to the SSLRequest",
            "E",
        )),
        _ => Err(Error::violation_in(
            Phase::StartTls,
            "answer to the SSLRequest is neither S nor N",
            &printable(&answer),
        )),
    }
}

// --- server side ---

const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
const PROTOCOL_3: u32 = 196_608;

/// An ErrorResponse with SQLSTATE 28000 (invalid authorization specification).
fn tls_required_error() -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28000"),
        (b'M', "TLS is required"),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(
        &u32::try_from(body.len() + 4)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    msg.extend(body);
    msg
}

/// The server's side: answers SSLRequest with `S` (GSSENCRequest with `N`, then waits for the
/// SSLRequest); a StartupMessage in plaintext gets an ErrorResponse and the connection ends.
pub(crate) fn server_starttls(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
) -> Result<ServerPreTls> {
    for _ in 0..2 {
        let deadline = ctx.deadline(Phase::StartTls);
        let header = wire.read_bytes(8, &deadline)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let code = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        match (len, code) {
            (8, SSL_REQUEST_CODE) => {
                wire.note(Direction::Received, "SSLRequest".into());
                wire.ensure_nothing_after_go_ahead()?;
                wire.send_raw(b"S", &deadline)?;
                wire.note(Direction::Sent, "S".into());
                return Ok(ServerPreTls::default());
            }
            (8, GSSENC_REQUEST_CODE) => {
                wire.note(Direction::Received, "GSSENCRequest".into());
                wire.send_raw(b"N", &deadline)?;
                wire.note(Direction::Sent, "N".into());
            }
            (_, PROTOCOL_3) => {
                wire.note(Direction::Received, "StartupMessage (plaintext)".into());
                wire.send_raw(&tls_required_error(), &deadline)?;
                wire.note(
                    Direction::Sent,
                    "ErrorResponse FATAL 28000 TLS is required".into(),
                );
                return Err(Error::Refused {
                    phase: Phase::StartTls,
                    reply: "the client sent a StartupMessage without TLS".into(),
                });
            }
            _ => {
                return Err(Error::violation_in(
                    Phase::StartTls,
                    "not an SSLRequest",
                    &printable(&header),
                ));
            }
        }
    }
    Err(Error::violation(
        Phase::StartTls,
        "no SSLRequest after GSSENCRequest",
    ))
}

/// PostgreSQL's SSLRequest (and direct TLS, which has no dialog before TLS).
pub(crate) struct Postgres;

impl Dialog for Postgres {
    fn client_starttls(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
        client_starttls(wire, ctx)
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

    fn run(policy: Policy, steps: Vec<Step>) -> (Result<PreTls>, Script, Result<()>) {
        let mut s = Script::new(steps);
        let (r, after) = with_ctx(policy, |ctx| {
            let mut w = Wire::new(&mut s, Limits::default());
            let r = client_starttls(&mut w, ctx);
            let after = w.ensure_nothing_after_go_ahead();
            (r, after)
        });
        (r, s, after)
    }

    #[test]
    fn n_is_a_refusal() {
        let (r, s, _) = run(
            Policy::Require,
            vec![Step::Client(&SSL_REQUEST), Step::Server(b"N")],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Refused);
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn error_response_is_an_error_even_when_opportunistic() {
        let (r, _, _) = run(
            Policy::Opportunistic,
            vec![
                Step::Client(&SSL_REQUEST),
                Step::Server(b"E\0\0\0\x50SFATAL\0"),
            ],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn anything_else_is_a_violation() {
        for odd in [&b"s"[..], b"\x16", b"Y"] {
            let odd: &'static [u8] = Box::leak(odd.to_vec().into_boxed_slice());
            let (r, _, _) = run(
                Policy::Require,
                vec![Step::Client(&SSL_REQUEST), Step::Server(odd)],
            );
            assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        }
    }

    #[test]
    fn byte_after_s_is_injection() {
        let (r, _, after) = run(
            Policy::Require,
            vec![Step::Client(&SSL_REQUEST), Step::Server(b"SX")],
        );
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
        assert_eq!(after.unwrap_err().kind(), ErrorKind::Injection);
    }

    #[test]
    fn s_alone_is_the_go_ahead() {
        let (r, s, after) = run(
            Policy::Require,
            vec![Step::Client(&SSL_REQUEST), Step::Server(b"S")],
        );
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
        assert!(after.is_ok());
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn opportunistic_n_is_plaintext() {
        let (r, _, _) = run(
            Policy::Opportunistic,
            vec![Step::Client(&SSL_REQUEST), Step::Server(b"N")],
        );
        assert!(matches!(
            r.unwrap().outcome,
            Outcome::Plaintext(Error::Refused { .. })
        ));
    }

    #[test]
    fn stall_is_a_timeout() {
        let (r, _, _) = run(
            Policy::Require,
            vec![Step::Client(&SSL_REQUEST), Step::Stall],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Timeout);
    }
}
