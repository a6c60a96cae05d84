//! PostgreSQL SSLRequest (protocol 3.0, "SSL Session Encryption"): both sides of the step
//! before TLS, and the client's login inside it (StartupMessage, SCRAM-SHA-256(-PLUS), md5 or
//! the password, up to ReadyForQuery).
//!
//! The client sends the 8-byte SSLRequest; the server answers with exactly one byte: `S` to
//! start TLS, `N` to refuse. Anything else (an `E` ErrorResponse from an ancient or hostile
//! server) fails closed, and any byte after the `S` is an injection (CVE-2021-23222).

use crate::error::{Error, Phase, Result};
use crate::protocol::sasl::{
    self, AuthOutcome, ChannelBindings, Credentials, Login, Mechanism, Proof, Secret,
};
use crate::protocol::{Dialog, DialogContext, PreTls, ServerContext, ServerPreTls};
use crate::wire::{Deadline, Direction, Wire, printable};

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

// --- login inside TLS ---

/// A backend message larger than this is refused (an ErrorResponse or a ParameterStatus is far
/// smaller; nothing before ReadyForQuery carries data).
const MAX_BACKEND_MESSAGE: usize = 64 * 1024;
/// Messages between AuthenticationOk and ReadyForQuery, at most.
const MAX_STARTUP_MESSAGES: usize = 256;

/// A frontend message: type byte (none for the StartupMessage), length, body.
fn frontend(kind: Option<u8>, parts: &[&[u8]]) -> Secret {
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 4;
    let mut out = Vec::with_capacity(len + 1);
    out.extend(kind);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    Secret::from_vec(out)
}

/// One backend message: its type and body, bounded.
fn read_backend(wire: &mut Wire<'_>, deadline: &Deadline) -> Result<(u8, Vec<u8>)> {
    let head = wire.read_bytes(5, deadline)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=MAX_BACKEND_MESSAGE + 4).contains(&len) {
        return Err(Error::violation(
            deadline.phase(),
            format!(
                "backend message {:?} with a length of {len}",
                char::from(head[0])
            ),
        ));
    }
    Ok((head[0], wire.read_bytes(len - 4, deadline)?))
}

/// An ErrorResponse's severity, SQLSTATE and message, for people.
fn error_text(body: &[u8]) -> String {
    let mut fields = std::collections::BTreeMap::new();
    for field in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        fields.insert(field[0], printable(&field[1..]));
    }
    let get = |k: u8| fields.get(&k).cloned().unwrap_or_default();
    format!("{} {} {}", get(b'S'), get(b'C'), get(b'M'))
}

/// The body of an authentication request after its 4-byte code, at least `n` bytes of it.
fn auth_data<'b>(body: &'b [u8], n: usize, deadline: &Deadline) -> Result<&'b [u8]> {
    body.get(4..)
        .filter(|d| d.len() >= n)
        .ok_or_else(|| Error::violation(deadline.phase(), "authentication request too short"))
}

/// The password message for md5: `md5` + hex(md5(hex(md5(password + user)) + salt)).
fn md5_password(creds: &Credentials, salt: &[u8]) -> Secret {
    let inner = Secret::concat(&[creds.password(), creds.user()]);
    let inner_hex = Secret::from_vec(hex(&md5(inner.as_bytes())).into_bytes());
    let mut outer = Vec::with_capacity(inner_hex.as_bytes().len() + salt.len());
    outer.extend_from_slice(inner_hex.as_bytes());
    outer.extend_from_slice(salt);
    let outer = Secret::from_vec(outer);
    Secret::concat(&["md5", &hex(&md5(outer.as_bytes())), "\0"])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Logs in inside TLS: the StartupMessage (user, database: the user name unless given), then
/// what the server asks for: SCRAM-SHA-256-PLUS bound to its certificate
/// (`tls-server-end-point`, the only binding PostgreSQL has), SCRAM-SHA-256, md5 or the
/// password, up to ReadyForQuery. The connection is then ready for queries.
pub(crate) fn client_authenticate(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    login: &Login<'_>,
) -> Result<AuthOutcome> {
    let creds = login.creds;
    if creds.proof() != Proof::Password {
        return Err(Error::NoLoginMechanism {
            reply: "PostgreSQL logins here take a password (SCRAM, md5 or cleartext); \
                    certificate logins happen in the TLS handshake alone"
                .into(),
        });
    }
    let deadline = ctx.deadline(Phase::Read);
    let database = creds.database().unwrap_or(creds.user());
    let startup = frontend(
        None,
        &[
            &PROTOCOL_3.to_be_bytes(),
            b"user\0",
            creds.user().as_bytes(),
            b"\0database\0",
            database.as_bytes(),
            b"\0\0",
        ],
    );
    wire.send_message(startup.as_bytes(), &deadline)?;
    wire.note(
        Direction::Sent,
        format!(
            "StartupMessage user={} database={}",
            printable(creds.user().as_bytes()),
            printable(database.as_bytes())
        ),
    );
    let bindings = ChannelBindings {
        exporter: None,
        server_end_point: login.bindings.server_end_point.clone(),
    };
    let pg_login = Login {
        creds,
        bindings: &bindings,
    };
    let mut name: &'static str = "trust";
    let mut mechanism: Option<Box<dyn Mechanism + '_>> = None;
    let send = |wire: &mut Wire<'_>, message: Secret, shown: String| -> Result<()> {
        wire.send_message(message.as_bytes(), &deadline)?;
        wire.note(Direction::Sent, shown);
        Ok(())
    };
    let failed = |name: &'static str, body: &[u8]| Error::AuthFailed {
        mechanism: name,
        reply: error_text(body),
    };
    for _ in 0..sasl::MAX_CHALLENGES + 4 {
        let (kind, body) = read_backend(wire, &deadline)?;
        match kind {
            b'E' => return Err(failed(name, &body)),
            b'N' => continue,
            b'R' => {}
            other => {
                return Err(Error::violation(
                    deadline.phase(),
                    format!(
                        "backend message {:?} before authentication ended",
                        char::from(other)
                    ),
                ));
            }
        }
        if body.len() < 4 {
            return Err(Error::violation(
                deadline.phase(),
                "authentication request too short",
            ));
        }
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        wire.note(
            Direction::Received,
            format!("Authentication request {code}"),
        );
        match code {
            0 => {
                if let Some(m) = &mut mechanism {
                    m.finish(None)?;
                }
                return ready_for_query(wire, &deadline, name, mechanism.as_deref());
            }
            3 | 5 if !creds.allows_protocol_login() => {
                return Err(Error::NoLoginMechanism {
                    reply: format!(
                        "the server asks for a {} password, not a SASL mechanism",
                        if code == 3 { "cleartext" } else { "md5" }
                    ),
                });
            }
            3 => {
                name = "password";
                let message = frontend(Some(b'p'), &[creds.password().as_bytes(), b"\0"]);
                send(wire, message, "PasswordMessage <password>".into())?;
            }
            5 => {
                name = "md5";
                let salt = &auth_data(&body, 4, &deadline)?[..4];
                let hashed = md5_password(creds, salt);
                let message = frontend(Some(b'p'), &[hashed.as_bytes()]);
                send(wire, message, "PasswordMessage <md5 password>".into())?;
            }
            10 => {
                let offered: Vec<String> = auth_data(&body, 0, &deadline)?
                    .split(|&b| b == 0)
                    .filter(|m| !m.is_empty())
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .collect();
                let Some(mut m) = super::mechanisms::choose(&offered, &pg_login)
                    .filter(|m| m.name().starts_with("SCRAM"))
                else {
                    return Err(Error::NoLoginMechanism {
                        reply: format!(
                            "no SASL mechanism this library has (the server offers: {})",
                            printable(offered.join(" ").as_bytes())
                        ),
                    });
                };
                name = m.name();
                let first = m.initial()?;
                let len = u32::try_from(first.as_bytes().len()).unwrap_or(u32::MAX);
                let message = frontend(
                    Some(b'p'),
                    &[name.as_bytes(), b"\0", &len.to_be_bytes(), first.as_bytes()],
                );
                send(
                    wire,
                    message,
                    format!("SASLInitialResponse {name} <credentials>"),
                )?;
                mechanism = Some(m);
            }
            11 | 12 => {
                let Some(m) = &mut mechanism else {
                    return Err(Error::violation(
                        deadline.phase(),
                        "SASL continuation without a SASL exchange",
                    ));
                };
                let data = auth_data(&body, 0, &deadline)?;
                if code == 12 {
                    m.finish(Some(data))?;
                } else {
                    let answer = m.answer(data)?;
                    let message = frontend(Some(b'p'), &[answer.as_bytes()]);
                    send(wire, message, "SASLResponse <response>".into())?;
                }
            }
            other => {
                let what = match other {
                    2 => "Kerberos V5",
                    7 | 8 => "GSSAPI",
                    9 => "SSPI",
                    _ => "an unknown method",
                };
                return Err(Error::NoLoginMechanism {
                    reply: format!(
                        "the server asks for {what} (authentication request {other}), which this \
                         library does not do"
                    ),
                });
            }
        }
    }
    Err(sasl::too_many_challenges(deadline.phase()))
}

/// After AuthenticationOk: parameter statuses, the cancel key and notices, up to ReadyForQuery.
/// An ErrorResponse here is a refusal of the session, not of the credentials.
fn ready_for_query(
    wire: &mut Wire<'_>,
    deadline: &Deadline,
    name: &'static str,
    mechanism: Option<&(dyn Mechanism + '_)>,
) -> Result<AuthOutcome> {
    for _ in 0..MAX_STARTUP_MESSAGES {
        let (kind, body) = read_backend(wire, deadline)?;
        match kind {
            b'Z' => {
                let reply = format!("ReadyForQuery ({})", printable(&body));
                wire.note(Direction::Received, reply.clone());
                return Ok(match mechanism {
                    Some(m) => AuthOutcome::of(m, reply),
                    None => AuthOutcome::new(name, reply),
                });
            }
            b'S' | b'K' | b'N' => {}
            // Logged in, but the session was refused (no such database, too many clients).
            b'E' => {
                return Err(Error::Refused {
                    phase: deadline.phase(),
                    reply: error_text(&body),
                });
            }
            other => {
                return Err(Error::violation(
                    deadline.phase(),
                    format!(
                        "backend message {:?} before ReadyForQuery",
                        char::from(other)
                    ),
                ));
            }
        }
    }
    Err(Error::violation(
        deadline.phase(),
        format!("more than {MAX_STARTUP_MESSAGES} messages before ReadyForQuery"),
    ))
}

/// MD5 (RFC 1321), for PostgreSQL's md5 password method only.
fn md5(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(2^32 * |sin(i + 1)|)
    let k: [u32; 64] =
        std::array::from_fn(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32);
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut msg = zeroize::Zeroizing::new(data.to_vec());
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_le_bytes());
    for chunk in msg.chunks(64) {
        let m: [u32; 16] = std::array::from_fn(|i| {
            u32::from_le_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ])
        });
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rotated = a
                .wrapping_add(f)
                .wrapping_add(k[i])
                .wrapping_add(m[g])
                .rotate_left(S[i]);
            (a, d, c) = (d, c, b);
            b = b.wrapping_add(rotated);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 16];
    for (i, word) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// PostgreSQL's SSLRequest (and direct TLS, which has no dialog before TLS), and the login.
pub(crate) struct Postgres;

impl Dialog for Postgres {
    fn client_starttls(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
        client_starttls(wire, ctx)
    }

    fn has_capabilities(&self) -> bool {
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
    use crate::protocol::sasl::{AuthOutcome, ChannelBindings, Credentials, Login};
    use crate::protocol::testing::{self, with_ctx};
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

    // --- login inside TLS ---

    fn msg(kind: u8, body: &[u8]) -> &'static [u8] {
        let mut m = vec![kind];
        m.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        m.extend_from_slice(body);
        testing::leak(m)
    }

    fn auth(code: u32, rest: &[u8]) -> &'static [u8] {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(rest);
        msg(b'R', &body)
    }

    fn startup(user: &str, database: &str) -> &'static [u8] {
        let params = format!("user\0{user}\0database\0{database}\0\0");
        let mut m = u32::try_from(params.len() + 8)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        m.extend_from_slice(&PROTOCOL_3.to_be_bytes());
        m.extend_from_slice(params.as_bytes());
        testing::leak(m)
    }

    /// After AuthenticationOk: parameters, the cancel key, ReadyForQuery.
    fn ready() -> Vec<Step> {
        vec![Step::Server(testing::leak(
            [
                msg(b'S', b"server_version\x0015.18\0"),
                msg(b'K', &[0, 0, 0, 7, 1, 2, 3, 4]),
                msg(b'Z', b"I"),
            ]
            .concat(),
        ))]
    }

    fn login(creds: &Credentials, steps: Vec<Step>) -> (Result<AuthOutcome>, Script) {
        let bindings = ChannelBindings::default();
        let login = Login {
            creds,
            bindings: &bindings,
        };
        testing::run(Policy::Require, steps, |w, ctx| {
            client_authenticate(w, ctx, &login)
        })
    }

    #[test]
    fn cleartext_and_md5_passwords_as_the_server_asks() {
        let creds = Credentials::new("alice", "secret");
        let mut steps = vec![
            Step::Client(startup("alice", "alice")),
            Step::Server(auth(3, b"")),
            Step::Client(msg(b'p', b"secret\0")),
            Step::Server(auth(0, b"")),
        ];
        steps.extend(ready());
        let (r, s) = login(&creds, steps);
        let outcome = r.unwrap();
        assert_eq!(outcome.mechanism, "password");
        assert_eq!(s.remaining(), 0);
        for l in s.written_text().lines() {
            assert!(!l.is_empty());
        }

        let creds = Credentials::new("alice", "secret").with_database("mail");
        let mut steps = vec![
            Step::Client(startup("alice", "mail")),
            Step::Server(auth(5, &[1, 2, 3, 4])),
            Step::Client(msg(b'p', b"md598a0412b9c31436fc53776e863350083\0")),
            Step::Server(auth(0, b"")),
        ];
        steps.extend(ready());
        let (r, s) = login(&creds, steps);
        assert_eq!(r.unwrap().mechanism, "md5");
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn trust_needs_no_password_and_ends_at_ready_for_query() {
        let creds = Credentials::new("alice", "unused");
        let mut steps = vec![
            Step::Client(startup("alice", "alice")),
            Step::Server(auth(0, b"")),
        ];
        steps.extend(ready());
        let (r, s) = login(&creds, steps);
        let outcome = r.unwrap();
        assert_eq!(outcome.mechanism, "trust");
        assert!(outcome.reply.contains("ReadyForQuery"), "{}", outcome.reply);
        assert_eq!(s.remaining(), 0);
        // Logged in, but no such database: a refusal of the session, not of the password.
        let (r, _) = login(
            &creds,
            vec![
                Step::Client(startup("alice", "alice")),
                Step::Server(auth(0, b"")),
                Step::Server(msg(
                    b'E',
                    b"SFATAL\0C3D000\0Mdatabase \"alice\" does not exist\0\0",
                )),
            ],
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
        assert!(e.to_string().contains("3D000"), "{e}");
    }

    #[test]
    fn the_servers_error_is_an_auth_failure_with_its_fields() {
        let creds = Credentials::new("alice", "wrong");
        let error = msg(
            b'E',
            b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"alice\"\x1b[2J\0\0",
        );
        let (r, _) = login(
            &creds,
            vec![
                Step::Client(startup("alice", "alice")),
                Step::Server(auth(3, b"")),
                Step::Client(msg(b'p', b"wrong\0")),
                Step::Server(error),
            ],
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AuthFailed);
        let text = e.to_string();
        assert!(text.contains("28P01") && text.contains("password authentication failed"));
        assert!(!text.contains('\x1b'), "{text}");
        assert!(!text.contains("wrong\0"), "{text}");
    }

    #[test]
    fn hostile_or_unsupported_answers_are_refused() {
        let creds = Credentials::new("alice", "secret");
        for (answer, kind, says) in [
            // Kerberos, GSSAPI: not done by this library.
            (auth(7, b""), ErrorKind::NotOffered, "GSSAPI"),
            // SASL without a mechanism the library has.
            (
                auth(10, b"SCRAM-SHA-1\0\0"),
                ErrorKind::NotOffered,
                "SCRAM-SHA-1",
            ),
            // SASL steps with no exchange started.
            (auth(11, b"r=abc"), ErrorKind::ProtocolViolation, "SASL"),
            (auth(12, b"v=abc"), ErrorKind::ProtocolViolation, "SASL"),
            // ReadyForQuery before authentication.
            (msg(b'Z', b"I"), ErrorKind::ProtocolViolation, "before"),
            // A length below 4, and one far too large.
            (&b"R\0\0\0\x02"[..], ErrorKind::ProtocolViolation, "length"),
            (
                &b"R\x7f\xff\xff\xff"[..],
                ErrorKind::ProtocolViolation,
                "length",
            ),
            // An authentication request too short for its code.
            (msg(b'R', b"\0\0"), ErrorKind::ProtocolViolation, "short"),
            (auth(5, b"\x01"), ErrorKind::ProtocolViolation, "short"),
        ] {
            let (r, _) = login(
                &creds,
                vec![
                    Step::Client(startup("alice", "alice")),
                    Step::Server(answer),
                ],
            );
            let e = r.unwrap_err();
            assert_eq!(e.kind(), kind, "{answer:?}: {e}");
            assert!(e.to_string().contains(says), "{answer:?}: {e}");
        }
    }

    #[test]
    fn md5_known_answers() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(md5(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }
}
