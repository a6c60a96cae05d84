//! MySQL and MariaDB: the client/server protocol's TLS upgrade, both sides.
//!
//! The server speaks first with its initial handshake packet (HandshakeV10), whose capability
//! flags say `CLIENT_SSL` when it can do TLS; the client answers with an SSL request (a
//! handshake response cut short after the capability flags, with `CLIENT_SSL` set) and both
//! start TLS at once. There is no go-ahead: for the client any byte after the server's
//! greeting is an injection; for the server anything after the SSL request that is not a TLS
//! record is (the client's ClientHello may legitimately follow the request at once). The
//! client's real handshake response (with its credentials) goes inside TLS.
//!
//! Packets are a 3-byte little-endian length, a 1-byte sequence number, then the payload.

use crate::error::{Error, Phase, Result};
use crate::protocol::sasl::{AuthOutcome, Login, Proof, Secret};
use crate::protocol::{Dialog, DialogContext, PreTls, ServerContext, ServerPreTls};
use crate::wire::{Deadline, Direction, Wire, printable};
use crate::x509::{Digest, digest};

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_LONG_FLAG: u32 = 0x4;
const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_MULTI_STATEMENTS: u32 = 0x1_0000;
const CLIENT_MULTI_RESULTS: u32 = 0x2_0000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x20_0000;

/// What the client asks for, of what the server offers (the SSL request must announce the same
/// flags as the handshake response that follows inside TLS).
const CLIENT_WANTS: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;

/// A greeting is some 80 to 130 bytes; more than this before TLS is a protocol violation.
const MAX_GREETING: usize = 1024;
/// The largest packet the login reads (an auth switch or an OK stays far below it).
const MAX_LOGIN_PACKET: usize = 16 * 1024;
/// utf8mb4_general_ci.
const CHARSET: u8 = 45;

/// The capability names shown for a greeting (informational: it came in plaintext).
const NAMES: [(u32, &str); 8] = [
    (CLIENT_PROTOCOL_41, "PROTOCOL_41"),
    (CLIENT_SSL, "SSL"),
    (CLIENT_TRANSACTIONS, "TRANSACTIONS"),
    (CLIENT_SECURE_CONNECTION, "SECURE_CONNECTION"),
    (CLIENT_MULTI_STATEMENTS, "MULTI_STATEMENTS"),
    (CLIENT_MULTI_RESULTS, "MULTI_RESULTS"),
    (CLIENT_PLUGIN_AUTH, "PLUGIN_AUTH"),
    (CLIENT_CONNECT_WITH_DB, "CONNECT_WITH_DB"),
];

/// Reads one packet: its sequence number must be `seq`, its payload at most `max` bytes.
fn read_packet(wire: &mut Wire<'_>, seq: u8, max: usize, deadline: &Deadline) -> Result<Vec<u8>> {
    let len = read_header(wire, seq, deadline)?;
    if len == 0 || len > max {
        return Err(Error::violation(
            deadline.phase(),
            format!("a {len}-byte packet (at most {max} here)"),
        ));
    }
    wire.read_bytes(len, deadline)
}

/// Reads a packet header: its sequence number must be `seq`; returns the payload's length.
fn read_header(wire: &mut Wire<'_>, seq: u8, deadline: &Deadline) -> Result<usize> {
    let header = wire.read_bytes(4, deadline)?;
    if header[3] != seq {
        return Err(Error::violation_in(
            deadline.phase(),
            format!("packet sequence number {} where {seq} was due", header[3]),
            &printable(&header),
        ));
    }
    Ok(usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16)
}

/// `payload` as packet `seq`, in one allocation of the exact size (a payload may hold a
/// secret: no reallocation leaves a copy behind).
fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let mut p = Vec::with_capacity(4 + payload.len());
    p.extend_from_slice(&[len[0], len[1], len[2], seq]);
    p.extend_from_slice(payload);
    p
}

/// An ERR packet's code and message, escaped (peer text).
fn error_packet_text(payload: &[u8]) -> String {
    let code = match payload.get(1..3) {
        Some(c) => u16::from_le_bytes([c[0], c[1]]),
        None => 0,
    };
    let mut text = payload.get(3..).unwrap_or_default();
    // `#` and a five-character SQLSTATE, when the server speaks protocol 4.1.
    if text.first() == Some(&b'#') && text.len() >= 6 {
        text = &text[6..];
    }
    format!("ERROR {code}: {}", printable(text))
}

/// What the client needs of a HandshakeV10: the server version and the capability flags.
struct ServerGreeting {
    version: String,
    capabilities: u32,
    /// The nonce the login hashes with (without its NUL).
    scramble: Vec<u8>,
    /// The server's default authentication plugin.
    plugin: String,
}

/// What the login inside TLS needs from the greeting read before it.
#[derive(Debug)]
pub(crate) struct Hello {
    flags: u32,
    scramble: Vec<u8>,
    plugin: String,
}

/// Parses a HandshakeV10 payload strictly (every field bounded by the payload).
fn parse_greeting(payload: &[u8]) -> Option<ServerGreeting> {
    let (&protocol, rest) = payload.split_first()?;
    if protocol != 10 {
        return None;
    }
    let nul = rest.iter().position(|&b| b == 0)?;
    let version = printable(&rest[..nul]);
    let rest = &rest[nul + 1..];
    // Connection id (4), scramble part 1 (8), filler (1), capabilities, lower half (2).
    let lower = rest.get(13..15)?;
    let mut capabilities = u32::from(u16::from_le_bytes([lower[0], lower[1]]));
    let mut scramble = rest.get(4..12)?.to_vec();
    let mut plugin = String::new();
    // Charset (1) and status (2), then the upper half, when the packet goes on.
    if let Some(upper) = rest.get(18..20) {
        capabilities |= u32::from(u16::from_le_bytes([upper[0], upper[1]])) << 16;
        if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            // The scramble's second part: max(13, length - 8) bytes, the last one a NUL.
            let total = usize::from(*rest.get(20)?);
            let part2 = rest.get(31..31 + total.saturating_sub(8).max(13))?;
            scramble.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
            let tail = &rest[31 + part2.len()..];
            if capabilities & CLIENT_PLUGIN_AUTH != 0 {
                let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
                plugin = String::from_utf8_lossy(&tail[..end]).into_owned();
            }
        }
    }
    Some(ServerGreeting {
        version,
        capabilities,
        scramble,
        plugin,
    })
}

pub(crate) fn client_starttls(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
    let mut pre = PreTls::new();
    let deadline = ctx.deadline(Phase::Greeting);
    let payload = read_packet(wire, 0, MAX_GREETING, &deadline)?;
    if payload.first() == Some(&0xff) {
        let text = error_packet_text(&payload);
        wire.note(Direction::Received, text.clone());
        return Err(Error::Refused {
            phase: Phase::Greeting,
            reply: text,
        });
    }
    let Some(greeting) = parse_greeting(&payload) else {
        return Err(Error::violation_in(
            Phase::Greeting,
            "not a MySQL protocol 10 greeting",
            &printable(&payload[..payload.len().min(64)]),
        ));
    };
    let names: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| greeting.capabilities & bit != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect();
    wire.note(
        Direction::Received,
        format!("greeting: {} [{}]", greeting.version, names.join(" ")),
    );
    pre.greeting = Some(greeting.version.clone());
    pre.capabilities = Some(names);
    let offered = greeting.capabilities & CLIENT_SSL != 0;
    pre.starttls_offered = Some(offered);
    if !offered {
        let reason = Error::NotOffered {
            reply: Some(format!(
                "{} (no CLIENT_SSL in its capabilities)",
                greeting.version
            )),
        };
        return ctx.tls_impossible(pre, reason);
    }
    if greeting.capabilities & CLIENT_PROTOCOL_41 == 0 {
        return Err(Error::violation(
            Phase::Greeting,
            "the server does not speak protocol 4.1, whose SSL request this client sends",
        ));
    }
    let flags = (CLIENT_WANTS & greeting.capabilities) | CLIENT_SSL | CLIENT_PROTOCOL_41;
    let mut request = flags.to_le_bytes().to_vec();
    request.extend_from_slice(&0x0100_0000u32.to_le_bytes()); // max packet: 16 MiB
    request.push(CHARSET);
    request.extend_from_slice(&[0; 23]);
    let deadline = ctx.deadline(Phase::StartTls);
    // Sent as it is: bytes already waiting behind the greeting are not a desynchronised reply
    // but plaintext queued for after TLS, which the go-ahead check next names an injection.
    wire.send_raw(&packet(1, &request), &deadline)?;
    wire.note(
        Direction::Sent,
        format!("SSL request (flags {flags:#010x})"),
    );
    ctx.session.mysql = Some(Hello {
        flags,
        scramble: greeting.scramble,
        plugin: greeting.plugin,
    });
    Ok(pre)
}

// --- the login inside TLS ---

/// The authentication plugins this client speaks.
const NATIVE: &str = "mysql_native_password";
const CACHING_SHA2: &str = "caching_sha2_password";

/// `a` XOR `b` (equal lengths).
fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// The auth response of `plugin` for `password` and the server's `nonce`; `None` for a plugin
/// this client does not speak.
fn auth_response(plugin: &str, password: &str, nonce: &[u8]) -> Option<Secret> {
    if password.is_empty() {
        return Some(Secret::from_vec(Vec::new()));
    }
    let (hash, stage1) = match plugin {
        // SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password)))
        NATIVE => (
            Digest::Sha1,
            Secret::from_vec(digest(Digest::Sha1, password.as_bytes())),
        ),
        // SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce)
        CACHING_SHA2 => (
            Digest::Sha256,
            Secret::from_vec(digest(Digest::Sha256, password.as_bytes())),
        ),
        _ => return None,
    };
    // Every intermediate is wiped too: SHA1(SHA1(password)) is what the server stores.
    let stage2 = Secret::from_vec(digest(hash, stage1.as_bytes()));
    let mixed = Secret::from_vec(match hash {
        Digest::Sha1 => [nonce, stage2.as_bytes()].concat(),
        _ => [stage2.as_bytes(), nonce].concat(),
    });
    let mask = Secret::from_vec(digest(hash, mixed.as_bytes()));
    Some(Secret::from_vec(xor(stage1.as_bytes(), mask.as_bytes())))
}

/// A length-encoded integer (as short auth responses need: below 251, one byte).
fn lenenc(n: usize) -> Vec<u8> {
    match u8::try_from(n) {
        Ok(b) if b < 251 => vec![b],
        _ => {
            let mut v = vec![0xfc];
            v.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes());
            v
        }
    }
}

/// The login: HandshakeResponse41 with the default plugin's answer, an auth switch or the
/// caching_sha2 exchange if the server asks, to the OK packet; then the database, if one.
pub(crate) fn client_authenticate(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    login: &Login<'_>,
) -> Result<AuthOutcome> {
    let creds = login.creds;
    if creds.proof() != Proof::Password {
        return Err(Error::NoLoginMechanism {
            reply: "MySQL logins here take a password (mysql_native_password or \
                    caching_sha2_password)"
                .into(),
        });
    }
    let Some(hello) = ctx.session.mysql.take() else {
        return Err(Error::InvalidArgument(
            "no MySQL greeting was read on this connection".into(),
        ));
    };
    let deadline = ctx.deadline(Phase::Read);
    let mut plugin = if hello.plugin == CACHING_SHA2 {
        CACHING_SHA2
    } else {
        NATIVE
    };
    let Some(answer) = auth_response(plugin, creds.password(), &hello.scramble) else {
        return Err(Error::NoLoginMechanism {
            reply: format!("authentication plugin {plugin}"),
        });
    };
    // Sized up front and wiped on drop: it holds the proof.
    let mut response = zeroize::Zeroizing::new(Vec::with_capacity(
        48 + creds.user().len() + answer.as_bytes().len() + plugin.len(),
    ));
    response.extend_from_slice(&hello.flags.to_le_bytes());
    response.extend_from_slice(&0x0100_0000u32.to_le_bytes());
    response.push(CHARSET);
    response.extend_from_slice(&[0; 23]);
    response.extend_from_slice(creds.user().as_bytes());
    response.push(0);
    if hello.flags & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        response.extend(lenenc(answer.as_bytes().len()));
    } else {
        response.push(u8::try_from(answer.as_bytes().len()).unwrap_or(u8::MAX));
    }
    response.extend_from_slice(answer.as_bytes());
    if hello.flags & CLIENT_PLUGIN_AUTH != 0 {
        response.extend_from_slice(plugin.as_bytes());
        response.push(0);
    }
    let response = Secret::from_vec(packet(2, &response));
    wire.send_message(response.as_bytes(), &deadline)?;
    wire.note(
        Direction::Sent,
        format!(
            "handshake response: user {} with {plugin} <proof>",
            printable(creds.user().as_bytes())
        ),
    );
    let mut seq = 3u8;
    for _ in 0..4 {
        let payload = read_packet(wire, seq, MAX_LOGIN_PACKET, &deadline)?;
        seq = seq.wrapping_add(1);
        match payload.first() {
            Some(0x00) => {
                wire.note(Direction::Received, "OK".into());
                ctx.session.mysql_logged_in = true;
                if let Some(db) = creds.database() {
                    use_database(wire, db, &deadline)?;
                }
                return Ok(AuthOutcome {
                    mechanism: plugin,
                    channel_binding: None,
                    reply: "OK".into(),
                });
            }
            Some(0xff) => {
                let text = error_packet_text(&payload);
                wire.note(Direction::Received, text.clone());
                return Err(Error::AuthFailed {
                    mechanism: plugin,
                    reply: text,
                });
            }
            Some(0xfe) => {
                // Auth switch: another plugin, with its own nonce.
                let body = &payload[1..];
                let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                let name = String::from_utf8_lossy(&body[..end]).into_owned();
                let data = body.get(end + 1..).unwrap_or_default();
                let nonce = data.strip_suffix(&[0]).unwrap_or(data);
                wire.note(
                    Direction::Received,
                    format!("auth switch to {}", printable(name.as_bytes())),
                );
                plugin = match name.as_str() {
                    NATIVE => NATIVE,
                    CACHING_SHA2 => CACHING_SHA2,
                    _ => {
                        return Err(Error::NoLoginMechanism {
                            reply: format!(
                                "the server switches to the plugin {}, which this library lacks",
                                printable(name.as_bytes())
                            ),
                        });
                    }
                };
                let Some(answer) = auth_response(plugin, creds.password(), nonce) else {
                    return Err(Error::NoLoginMechanism { reply: name });
                };
                let p = Secret::from_vec(packet(seq, answer.as_bytes()));
                wire.send_message(p.as_bytes(), &deadline)?;
                wire.note(Direction::Sent, format!("{plugin} <proof>"));
                seq = seq.wrapping_add(1);
            }
            Some(0x01) if plugin == CACHING_SHA2 => match payload.get(1) {
                // Fast authentication succeeded: the OK follows.
                Some(3) => wire.note(Direction::Received, "fast auth OK".into()),
                // Full authentication: the password itself, which only verified TLS may carry
                // (`authenticate` refuses anything else).
                Some(4) => {
                    wire.note(Direction::Received, "full authentication".into());
                    let password = Secret::concat(&[creds.password(), "\0"]);
                    let p = Secret::from_vec(packet(seq, password.as_bytes()));
                    wire.send_message(p.as_bytes(), &deadline)?;
                    wire.note(Direction::Sent, "<password> (inside TLS)".into());
                    seq = seq.wrapping_add(1);
                }
                _ => {
                    return Err(Error::violation(
                        deadline.phase(),
                        "an unknown caching_sha2_password step",
                    ));
                }
            },
            _ => {
                return Err(Error::violation_in(
                    deadline.phase(),
                    "not an OK, ERR or auth switch during the login",
                    &printable(&payload[..payload.len().min(32)]),
                ));
            }
        }
    }
    Err(Error::violation(deadline.phase(), "too many login steps"))
}

/// COM_INIT_DB: the database to use, after the login.
fn use_database(wire: &mut Wire<'_>, db: &str, deadline: &Deadline) -> Result<()> {
    let mut p = vec![0x02];
    p.extend_from_slice(db.as_bytes());
    wire.send_message(&packet(0, &p), deadline)?;
    wire.note(Direction::Sent, format!("use {}", printable(db.as_bytes())));
    let reply = read_packet(wire, 1, MAX_LOGIN_PACKET, deadline)?;
    if reply.first() == Some(&0x00) {
        wire.note(Direction::Received, "OK".into());
        Ok(())
    } else {
        let text = error_packet_text(&reply);
        wire.note(Direction::Received, text.clone());
        Err(Error::Refused {
            phase: deadline.phase(),
            reply: text,
        })
    }
}

/// COM_QUIT after a login (before one the server waits for the handshake response, and a
/// close is the goodbye).
fn client_goodbye(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<()> {
    if ctx.session.mysql_logged_in {
        let deadline = ctx.deadline(Phase::Read);
        wire.send_message(&packet(0, &[0x01]), &deadline)?;
        wire.note(Direction::Sent, "COM_QUIT".into());
    }
    Ok(())
}

// --- server side ---

/// ER_SECURE_TRANSPORT_REQUIRED, as MySQL sends it with `require_secure_transport=ON`.
fn tls_required_error(seq: u8) -> Vec<u8> {
    let mut payload = vec![0xff];
    payload.extend_from_slice(&3159u16.to_le_bytes());
    payload.extend_from_slice(b"#HY000");
    payload.extend_from_slice(
        b"Connections using insecure transport are prohibited: use TLS (CLIENT_SSL)",
    );
    packet(seq, &payload)
}

/// The server's HandshakeV10: `CLIENT_SSL` among the capabilities, a fresh scramble.
fn server_greeting(hostname: &str) -> Result<Vec<u8>> {
    let mut scramble = [0u8; 20];
    crate::x509::crypto_provider()
        .secure_random
        .fill(&mut scramble)
        .map_err(|_| Error::Config("no random numbers for the MySQL scramble".into()))?;
    // A scramble is NUL-free printable-ish bytes in real servers; keep it NUL-free.
    for b in &mut scramble {
        *b = (*b % 94) + 33;
    }
    let capabilities = CLIENT_WANTS | CLIENT_SSL | CLIENT_CONNECT_WITH_DB | CLIENT_MULTI_STATEMENTS;
    let mut p = vec![10];
    let version = format!("8.0.0-starttls {}", hostname.replace('\0', ""));
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes()); // connection id
    p.extend_from_slice(&scramble[..8]);
    p.push(0);
    p.extend_from_slice(&(capabilities as u16).to_le_bytes());
    p.push(CHARSET);
    p.extend_from_slice(&2u16.to_le_bytes()); // SERVER_STATUS_AUTOCOMMIT
    p.extend_from_slice(&((capabilities >> 16) as u16).to_le_bytes());
    p.push(21); // scramble length, with its NUL
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&scramble[8..]);
    p.push(0);
    p.extend_from_slice(b"mysql_native_password\0");
    Ok(packet(0, &p))
}

pub(crate) fn server_starttls(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
) -> Result<ServerPreTls> {
    let deadline = ctx.deadline(Phase::Greeting);
    wire.send_raw(&server_greeting(ctx.hostname)?, &deadline)?;
    wire.note(Direction::Sent, "greeting (CLIENT_SSL offered)".into());
    let deadline = ctx.deadline(Phase::StartTls);
    // An SSL request is 32 bytes; anything else is a handshake response with credentials,
    // which is not even read.
    let len = read_header(wire, 1, &deadline)?;
    let payload = if len == 32 {
        wire.read_bytes(32, &deadline)?
    } else {
        Vec::new()
    };
    let flags = payload
        .get(..4)
        .map_or(0, |f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]));
    if flags & CLIENT_SSL != 0 {
        wire.note(Direction::Received, "SSL request".into());
        // No go-ahead follows: the client's ClientHello may already be here, right behind the
        // request, so "nothing waiting" cannot be the rule. The handshake's first-record check
        // is: anything there that is not a TLS record is the injection (as after any go-ahead).
        return Ok(ServerPreTls::default());
    }
    // A whole handshake response in plaintext carries the user name and the password proof:
    // refused, and not read any further.
    wire.note(
        Direction::Received,
        "handshake response in plaintext (not read)".into(),
    );
    wire.send_raw(&tls_required_error(2), &deadline)?;
    wire.note(Direction::Sent, "ERROR 3159: TLS required".into());
    Err(Error::Refused {
        phase: Phase::StartTls,
        reply: "the client sent its handshake response without TLS".into(),
    })
}

pub(crate) struct Mysql;

impl Dialog for Mysql {
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

    fn client_goodbye(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<()> {
        client_goodbye(wire, ctx)
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
    use crate::protocol::testing::{leak, run};
    use crate::wire::script::Step;

    /// A HandshakeV10 packet with this version and these capabilities.
    fn greeting(version: &[u8], capabilities: u32) -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(version);
        p.push(0);
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(b"abcdefgh\0");
        p.extend_from_slice(&(capabilities as u16).to_le_bytes());
        p.push(CHARSET);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&((capabilities >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
        packet(0, &p)
    }

    /// What the client must send to a server offering `capabilities`.
    fn ssl_request(capabilities: u32) -> Vec<u8> {
        let flags = (CLIENT_WANTS & capabilities) | CLIENT_SSL | CLIENT_PROTOCOL_41;
        let mut r = flags.to_le_bytes().to_vec();
        r.extend_from_slice(&0x0100_0000u32.to_le_bytes());
        r.push(CHARSET);
        r.extend_from_slice(&[0; 23]);
        packet(1, &r)
    }

    const FULL: u32 = CLIENT_WANTS | CLIENT_SSL | CLIENT_CONNECT_WITH_DB;

    #[test]
    fn the_greeting_then_the_ssl_request_and_nothing_else() {
        let (r, script) = run(
            Policy::Require,
            vec![
                Step::Server(leak(greeting(b"8.0.36", FULL))),
                Step::Client(leak(ssl_request(FULL))),
            ],
            |w, ctx| (client_starttls(w, ctx), w.ensure_nothing_after_go_ahead()),
        );
        let (pre, after) = r;
        let pre = pre.unwrap();
        assert!(after.is_ok());
        assert_eq!(pre.greeting.as_deref(), Some("8.0.36"));
        assert_eq!(pre.starttls_offered, Some(true));
        assert!(pre.capabilities.unwrap().contains(&"SSL".to_owned()));
        assert_eq!(script.remaining(), 0);
        // The request's flags are the wanted ones the server has, plus SSL and 4.1.
        let old = CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION;
        let (r, _) = run(
            Policy::Require,
            vec![
                Step::Server(leak(greeting(b"5.5.5-10.11.6-MariaDB", old))),
                Step::Client(leak(ssl_request(old))),
            ],
            client_starttls,
        );
        r.unwrap();
    }

    #[test]
    fn bytes_after_the_greeting_are_an_injection() {
        let mut g = greeting(b"8.0.36", FULL);
        g.extend_from_slice(b"\x05\0\0\x01plain");
        let (r, _) = run(
            Policy::Require,
            vec![Step::Server(leak(g)), Step::Client(leak(ssl_request(FULL)))],
            |w, ctx| (client_starttls(w, ctx), w.ensure_nothing_after_go_ahead()),
        );
        r.0.unwrap();
        assert_eq!(r.1.unwrap_err().kind(), ErrorKind::Injection);
    }

    #[test]
    fn no_client_ssl_is_not_offered_and_nothing_is_sent() {
        let caps = FULL & !CLIENT_SSL;
        let (r, script) = run(
            Policy::Require,
            vec![Step::Server(leak(greeting(b"8.0.36", caps)))],
            client_starttls,
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::NotOffered);
        assert!(script.written_text().is_empty());
        let (r, script) = run(
            Policy::Opportunistic,
            vec![Step::Server(leak(greeting(b"8.0.36", caps)))],
            client_starttls,
        );
        assert!(matches!(r.unwrap().outcome, Outcome::Plaintext(_)));
        assert!(script.written_text().is_empty());
    }

    #[test]
    fn an_error_packet_is_a_refusal_with_its_words_escaped() {
        let mut e = vec![0xff];
        e.extend_from_slice(&1130u16.to_le_bytes());
        e.extend_from_slice(b"Host '10.0.0.1' is not allowed\x1b[2J");
        let (r, _) = run(
            Policy::Require,
            vec![Step::Server(leak(packet(0, &e)))],
            client_starttls,
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        let text = e.to_string();
        assert!(
            text.contains("ERROR 1130: Host '10.0.0.1' is not allowed"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "{text}");
    }

    #[test]
    fn malformed_greetings_are_violations_before_anything_is_sent() {
        let good = greeting(b"8.0.36", FULL);
        let mut wrong_seq = good.clone();
        wrong_seq[3] = 1;
        let mut huge = vec![0xff, 0xff, 0xff, 0];
        huge.extend_from_slice(&[10; 64]);
        let mut protocol_9 = good.clone();
        protocol_9[4] = 9;
        let no_nul = packet(0, b"\x0a8.0.36 and no end");
        let short = packet(0, b"\x0a8.0\0\x01\x02");
        let pre_41 = greeting(b"3.23", CLIENT_SSL);
        for bad in [
            wrong_seq,
            huge,
            protocol_9,
            no_nul,
            short,
            pre_41,
            packet(0, b""),
        ] {
            let (r, script) = run(
                Policy::Require,
                vec![Step::Server(leak(bad.clone()))],
                client_starttls,
            );
            assert_eq!(
                r.map(|_| ()).unwrap_err().kind(),
                ErrorKind::ProtocolViolation,
                "{bad:?}"
            );
            assert!(script.written_text().is_empty(), "{bad:?}");
        }
        // A peer that stops anywhere in the greeting: closed, never a panic.
        for cut in 0..good.len() {
            let (r, _) = run(
                Policy::Require,
                vec![Step::Server(leak(good[..cut].to_vec())), Step::Eof],
                client_starttls,
            );
            assert!(r.is_err(), "{cut}");
        }
    }

    fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The handshake response the client must send after `ssl_request(FULL)`.
    fn handshake_response(user: &str, answer: &[u8], plugin: &str) -> Vec<u8> {
        let flags = (CLIENT_WANTS & FULL) | CLIENT_SSL | CLIENT_PROTOCOL_41;
        let mut r = flags.to_le_bytes().to_vec();
        r.extend_from_slice(&0x0100_0000u32.to_le_bytes());
        r.push(CHARSET);
        r.extend_from_slice(&[0; 23]);
        r.extend_from_slice(user.as_bytes());
        r.push(0);
        r.push(answer.len() as u8);
        r.extend_from_slice(answer);
        r.extend_from_slice(plugin.as_bytes());
        r.push(0);
        packet(2, &r)
    }

    const OK: &[u8] = &[7, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0];

    /// Greeting, SSL request, then the login with `steps`, against a scripted server.
    fn login(
        steps: Vec<Step>,
        creds: &crate::Credentials,
    ) -> (Result<AuthOutcome>, crate::wire::script::Script) {
        let mut all = vec![
            Step::Server(leak(greeting(b"8.0.36", FULL))),
            Step::Client(leak(ssl_request(FULL))),
        ];
        all.extend(steps);
        let bindings = crate::protocol::sasl::ChannelBindings::default();
        let login = Login {
            creds,
            bindings: &bindings,
        };
        run(Policy::Require, all, |w, ctx| {
            client_starttls(w, ctx).unwrap();
            client_authenticate(w, ctx, &login)
        })
    }

    #[test]
    fn native_password_login_with_the_known_answer() {
        // SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw))), computed independently (Python hashlib)
        // for "secret" and the greeting's nonce "abcdefghijklmnopqrst".
        let answer = unhex("8817c50fa779daef010ee7577825b0847df9842e");
        let creds = crate::Credentials::new("alice", "secret");
        let (r, script) = login(
            vec![
                Step::Client(leak(handshake_response("alice", &answer, NATIVE))),
                Step::Server(OK),
            ],
            &creds,
        );
        assert_eq!(r.unwrap().mechanism, NATIVE);
        assert_eq!(script.remaining(), 0);
    }

    #[test]
    fn a_wrong_password_is_auth_failed_with_the_servers_words() {
        let answer = unhex("8817c50fa779daef010ee7577825b0847df9842e");
        let mut err = vec![0xff];
        err.extend_from_slice(&1045u16.to_le_bytes());
        err.extend_from_slice(b"#28000Access denied for user 'alice'");
        let creds = crate::Credentials::new("alice", "secret");
        let (r, _) = login(
            vec![
                Step::Client(leak(handshake_response("alice", &answer, NATIVE))),
                Step::Server(leak(packet(3, &err))),
            ],
            &creds,
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AuthFailed);
        assert!(
            e.to_string()
                .contains("ERROR 1045: Access denied for user 'alice'"),
            "{e}"
        );
    }

    #[test]
    fn an_auth_switch_to_caching_sha2_then_full_authentication_inside_tls() {
        let answer = unhex("8817c50fa779daef010ee7577825b0847df9842e");
        let nonce: Vec<u8> = (1..=20).collect();
        let mut switch = vec![0xfe];
        switch.extend_from_slice(b"caching_sha2_password\0");
        switch.extend_from_slice(&nonce);
        switch.push(0);
        // SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce), computed with Python hashlib.
        let sha2 = unhex("746ebe205d56a0707acb3e796e834e0dd7b1d61743b26bd5202c7a623230c7c9");
        let creds = crate::Credentials::new("alice", "secret");
        let (r, script) = login(
            vec![
                Step::Client(leak(handshake_response("alice", &answer, NATIVE))),
                Step::Server(leak(packet(3, &switch))),
                Step::Client(leak(packet(4, &sha2))),
                Step::Server(leak(packet(5, &[0x01, 0x04]))),
                Step::Client(leak(packet(6, b"secret\0"))),
                Step::Server(&[7, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0]),
            ],
            &creds,
        );
        assert_eq!(r.unwrap().mechanism, CACHING_SHA2);
        assert_eq!(script.remaining(), 0);
    }

    #[test]
    fn odd_login_replies_are_refused() {
        let answer = unhex("8817c50fa779daef010ee7577825b0847df9842e");
        let creds = crate::Credentials::new("alice", "secret");
        let mut unknown_switch = vec![0xfe];
        unknown_switch.extend_from_slice(b"auth_gssapi_client\0xyz\0");
        for (reply, kind) in [
            (packet(3, &unknown_switch), ErrorKind::NotOffered),
            (packet(4, &[0]), ErrorKind::ProtocolViolation),
            (packet(3, &[0x42, 1, 2]), ErrorKind::ProtocolViolation),
            (packet(3, &[0x01, 0x03]), ErrorKind::ProtocolViolation),
        ] {
            let (r, _) = login(
                vec![
                    Step::Client(leak(handshake_response("alice", &answer, NATIVE))),
                    Step::Server(leak(reply.clone())),
                ],
                &creds,
            );
            assert_eq!(r.map(|_| ()).unwrap_err().kind(), kind, "{reply:?}");
        }
    }

    #[test]
    fn the_server_greeting_parses_and_offers_tls() {
        let g = server_greeting("mx.test").unwrap();
        let parsed = parse_greeting(&g[4..]).unwrap();
        assert!(parsed.version.starts_with("8.0.0-starttls mx.test"));
        assert_ne!(parsed.capabilities & CLIENT_SSL, 0);
        assert_ne!(parsed.capabilities & CLIENT_PLUGIN_AUTH, 0);
        assert_eq!(usize::from(g[0]) | usize::from(g[1]) << 8, g.len() - 4);
    }
}
