//! The SASL toolkit every protocol's login step uses: credentials, secrets that wipe themselves,
//! client mechanisms (PLAIN here, SCRAM in `scram`) behind one [`Mechanism`] interface that each
//! protocol's exchange drives, the choice among those a server offers, base64, and challenge
//! decoding for messages.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A user name and password, and optionally an authorization identity. The password is not
/// shown by `Debug`; every copy the library makes, these included, is zeroed when dropped.
#[derive(Clone)]
pub struct Credentials {
    user: Zeroizing<String>,
    password: Zeroizing<String>,
    authzid: Option<Zeroizing<String>>,
    database: Option<String>,
}

impl Credentials {
    /// `user` and `password` for the protocol's login; no authorization identity.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            user: Zeroizing::new(user.into()),
            password: Zeroizing::new(password.into()),
            authzid: None,
            database: None,
        }
    }

    /// Acts as `authzid` (SASL authorization identity) where the mechanism carries one.
    pub fn with_authzid(mut self, authzid: impl Into<String>) -> Credentials {
        self.authzid = Some(Zeroizing::new(authzid.into()));
        self
    }

    /// The database to log in to, where the protocol has one (PostgreSQL; the default there is
    /// the user name).
    pub fn with_database(mut self, database: impl Into<String>) -> Credentials {
        self.database = Some(database.into());
        self
    }

    pub(crate) fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    pub(crate) fn user(&self) -> &str {
        &self.user
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// Credentials travel in protocol lines: line breaks and NUL would let them forge commands.
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |s: &str| s.contains(['\r', '\n', '\0']);
        if self.user.is_empty() || bad(&self.user) || bad(&self.password) {
            return Err(Error::InvalidArgument(
                "user and password must be non-empty text without CR, LF or NUL".into(),
            ));
        }
        if self.authzid.as_deref().is_some_and(|a| bad(a)) {
            return Err(Error::InvalidArgument(
                "authzid must not contain CR, LF or NUL".into(),
            ));
        }
        if self
            .database
            .as_deref()
            .is_some_and(|d| d.is_empty() || bad(d))
        {
            return Err(Error::InvalidArgument(
                "database must be non-empty text without CR, LF or NUL".into(),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user.as_str())
            .field("password", &"<hidden>")
            .field("authzid", &self.authzid.as_deref())
            .field("database", &self.database)
            .finish()
    }
}

/// Bytes that carry a secret: built at their exact size (no reallocation leaves a copy behind)
/// and zeroed when dropped.
pub(crate) struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// The parts joined, in one allocation of the exact size.
    pub fn concat(parts: &[&str]) -> Secret {
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            out.extend_from_slice(p.as_bytes());
        }
        Secret(Zeroizing::new(out))
    }

    /// Takes over bytes that carry a secret.
    pub fn from_vec(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// How the login went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthOutcome {
    /// What was used: `SCRAM-SHA-256-PLUS`, `SCRAM-SHA-256`, `PLAIN`, `LOGIN`, `USER/PASS`,
    /// `simple bind`, ...
    pub mechanism: &'static str,
    /// The channel binding the login was bound to (`tls-exporter`, `tls-server-end-point`), when
    /// the mechanism had one: the server proved it saw this very TLS connection.
    pub channel_binding: Option<&'static str>,
    /// The server's success reply (printable).
    pub reply: String,
}

impl AuthOutcome {
    /// A login without channel binding.
    pub(crate) fn new(mechanism: &'static str, reply: String) -> AuthOutcome {
        AuthOutcome {
            mechanism,
            channel_binding: None,
            reply,
        }
    }

    /// The outcome of a login with `mechanism`.
    pub(crate) fn of(mechanism: &dyn Mechanism, reply: String) -> AuthOutcome {
        AuthOutcome {
            mechanism: mechanism.name(),
            channel_binding: mechanism.channel_binding(),
            reply,
        }
    }
}

/// What a login step has to work with: the credentials and what the TLS connection offers to
/// bind the login to.
pub(crate) struct Login<'a> {
    pub creds: &'a Credentials,
    pub bindings: &'a ChannelBindings,
}

/// The channel bindings of one TLS connection (computed by the connection, which has the TLS
/// state; a protocol only passes them to its mechanism).
#[derive(Default)]
pub(crate) struct ChannelBindings {
    /// RFC 9266 `tls-exporter`: 32 bytes of keying material (TLS 1.3 only).
    pub exporter: Option<Zeroizing<Vec<u8>>>,
    /// RFC 5929 `tls-server-end-point`: the hash of the server's certificate.
    pub server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// The binding a SASL mechanism uses: `tls-exporter` where there is one (RFC 9266 makes it
    /// the default on TLS 1.3), else `tls-server-end-point`.
    pub fn preferred(&self) -> Option<(&'static str, &[u8])> {
        if let Some(e) = &self.exporter {
            return Some(("tls-exporter", e.as_slice()));
        }
        self.server_end_point
            .as_deref()
            .map(|d| ("tls-server-end-point", d))
    }
}

/// A client SASL mechanism as a protocol's exchange drives it: the first message, an answer to
/// each server challenge, and the check of the server's last word. Messages are raw bytes (the
/// protocol base64-encodes them).
pub(crate) trait Mechanism {
    fn name(&self) -> &'static str;
    /// The channel binding in force, if any.
    fn channel_binding(&self) -> Option<&'static str> {
        None
    }
    /// The client's first message (sent as the initial response where the protocol allows).
    fn initial(&mut self) -> Result<Secret>;
    /// The answer to a server challenge. An error means: cancel the exchange, fail with it.
    fn answer(&mut self, challenge: &[u8]) -> Result<Secret>;
    /// The server reported success, with `data` when it sent additional data along. A
    /// mechanism that authenticates the server fails here if the server has not proved itself.
    fn finish(&mut self, data: Option<&[u8]>) -> Result<()>;
}

/// SASL PLAIN (RFC 4616): everything in the first message; no challenge expected.
pub(crate) struct Plain<'a>(pub &'a Credentials);

impl Mechanism for Plain<'_> {
    fn name(&self) -> &'static str {
        "PLAIN"
    }

    fn initial(&mut self) -> Result<Secret> {
        let authzid = self.0.authzid.as_deref().map_or("", String::as_str);
        Ok(Secret::concat(&[
            authzid,
            "\0",
            &self.0.user,
            "\0",
            &self.0.password,
        ]))
    }

    fn answer(&mut self, challenge: &[u8]) -> Result<Secret> {
        Err(Error::AuthFailed {
            mechanism: "PLAIN",
            reply: format!(
                "the server asked for more after the credentials: {}",
                crate::wire::printable(challenge)
            ),
        })
    }

    fn finish(&mut self, _: Option<&[u8]>) -> Result<()> {
        Ok(())
    }
}

/// The strongest mechanism among `offered` (SASL names, any case) that this library has for
/// these credentials: SCRAM-SHA-256-PLUS when the connection has a channel binding, then
/// SCRAM-SHA-256, then PLAIN. `None`: the protocol's own fallback, if any, is next.
pub(crate) fn choose<'a>(offered: &[String], login: &Login<'a>) -> Option<Box<dyn Mechanism + 'a>> {
    let has = |m: &str| offered.iter().any(|o| o.eq_ignore_ascii_case(m));
    let binding = login.bindings.preferred();
    if has("SCRAM-SHA-256-PLUS") {
        if let Some((name, data)) = binding {
            return Some(Box::new(super::scram::Scram::new(
                login.creds,
                super::scram::Binding::Bound { name, data },
            )));
        }
    }
    if has("SCRAM-SHA-256") {
        // `y`: this client could bind, but the server did not offer it (RFC 5802 §6); a server
        // that does support binding then knows the offer was stripped.
        let cb = if binding.is_some() {
            super::scram::Binding::ServerLacksIt
        } else {
            super::scram::Binding::Unsupported
        };
        return Some(Box::new(super::scram::Scram::new(login.creds, cb)));
    }
    if has("PLAIN") {
        return Some(Box::new(Plain(login.creds)));
    }
    None
}

/// Server challenges answered in one exchange, at most.
pub(crate) const MAX_CHALLENGES: usize = 8;

/// The bytes of a base64 server challenge; anything else is a protocol violation.
pub(crate) fn challenge(payload: &str, phase: crate::error::Phase) -> Result<Vec<u8>> {
    base64_decode(payload.trim())
        .ok_or_else(|| Error::violation_in(phase, "SASL challenge is not base64", payload))
}

/// The error for an exchange that does not end.
pub(crate) fn too_many_challenges(phase: crate::error::Phase) -> Error {
    Error::violation(phase, format!("more than {MAX_CHALLENGES} SASL challenges"))
}

/// `data` as standard base64, in a buffer that wipes itself.
pub(crate) fn base64_secret(data: &[u8]) -> Secret {
    Secret::from_vec(base64_encode(data).into_bytes())
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` if it is not base64.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A server challenge or reply with its base64 text decoded (and escaped), for messages.
pub(crate) fn explain_challenge(reply: &str) -> String {
    let payload = reply
        .strip_prefix("334 ")
        .or_else(|| reply.strip_prefix("+ "))
        .map(str::trim);
    match payload.and_then(base64_decode) {
        Some(decoded) if !decoded.is_empty() => {
            format!("{reply} (decoded: {})", crate::wire::printable(&decoded))
        }
        _ => reply.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_known_answers() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"\0alice\0secret"), "AGFsaWNlAHNlY3JldA==");
        assert_eq!(base64_decode("VXNlcm5hbWU6").unwrap(), b"Username:");
        assert_eq!(base64_decode("Zg").unwrap(), b"f");
        assert!(base64_decode("not base64!").is_none());
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
    }

    #[test]
    fn credentials_with_line_breaks_are_refused_and_debug_hides_the_password() {
        assert!(Credentials::new("a\r\nQUIT", "p").check().is_err());
        assert!(Credentials::new("a", "p\0").check().is_err());
        assert!(Credentials::new("", "p").check().is_err());
        let c = Credentials::new("alice", "hunter2");
        assert!(c.check().is_ok());
        assert!(!format!("{c:?}").contains("hunter2"));
        let plain = |c: &Credentials| base64_secret(Plain(c).initial().unwrap().as_bytes());
        assert_eq!(plain(&c).as_str(), "AGFsaWNlAGh1bnRlcjI=");
        assert_eq!(
            plain(&Credentials::new("alice", "x").with_authzid("bob")).as_str(),
            base64_encode(b"bob\0alice\0x")
        );
        assert!(Plain(&c).answer(b"more?").is_err());
    }

    #[test]
    fn secrets_are_built_at_their_exact_size() {
        let s = Secret::concat(&["AUTH PLAIN ", "AGFsaWNlAGh1bnRlcjI="]);
        assert_eq!(s.as_str(), "AUTH PLAIN AGFsaWNlAGh1bnRlcjI=");
        assert_eq!(s.0.capacity(), s.0.len());
        let c = Credentials::new("alice", "hunter2").with_authzid("bob");
        let p = Plain(&c).initial().unwrap();
        assert_eq!(p.0.capacity(), p.0.len());
    }

    #[test]
    fn challenges_are_decoded_for_messages() {
        assert_eq!(
            explain_challenge("334 UGFzc3dvcmQ6"),
            "334 UGFzc3dvcmQ6 (decoded: Password:)"
        );
        assert_eq!(explain_challenge("535 5.7.8 no"), "535 5.7.8 no");
    }
}
