//! The SASL toolkit every protocol's login step uses: credentials, secrets that wipe themselves,
//! client mechanisms (PLAIN, EXTERNAL, OAUTHBEARER and XOAUTH2 here, SCRAM in `scram`) behind
//! one [`Mechanism`] interface that each protocol's exchange drives, base64, and challenge
//! decoding for messages. Which mechanism a login uses is `mechanisms::choose`.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::wire::{Deadline, Wire};

/// What proves who the client is: a password, an OAuth 2.0 bearer token, or the TLS client
/// certificate (SASL EXTERNAL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proof {
    Password,
    BearerToken,
    ClientCertificate,
}

/// A user name and password (or bearer token), and optionally an authorization identity. The
/// secret is not shown by `Debug`; every copy the library makes, these included, is zeroed when
/// dropped.
#[derive(Clone)]
pub struct Credentials {
    user: Zeroizing<String>,
    password: Zeroizing<String>,
    authzid: Option<Zeroizing<String>>,
    database: Option<String>,
    proof: Proof,
    only: Option<String>,
}

impl Credentials {
    /// `user` and `password` for the protocol's login; no authorization identity.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            user: Zeroizing::new(user.into()),
            password: Zeroizing::new(password.into()),
            authzid: None,
            database: None,
            proof: Proof::Password,
            only: None,
        }
    }

    /// An OAuth 2.0 bearer token for `user`, which the caller obtained (the library fetches
    /// none): SASL OAUTHBEARER (RFC 7628) where offered, else XOAUTH2. A server's JSON error
    /// (`invalid_token`, the scope it wants) is decoded into the failure's message.
    pub fn bearer_token(user: impl Into<String>, token: impl Into<String>) -> Credentials {
        Credentials {
            proof: Proof::BearerToken,
            ..Credentials::new(user, token)
        }
    }

    /// SASL EXTERNAL: the client certificate the config presents in the TLS handshake is the
    /// identity (with [`with_authzid`](Self::with_authzid), the identity to act as).
    pub fn client_certificate() -> Credentials {
        Credentials {
            proof: Proof::ClientCertificate,
            ..Credentials::new(String::new(), String::new())
        }
    }

    /// Uses only this SASL mechanism (`SCRAM-SHA-256`, `PLAIN`, `XOAUTH2`, ...), and no
    /// protocol-specific login, instead of the strongest one offered: for a server whose
    /// strongest mechanism is broken. Not offered is [`Error::NotOffered`].
    pub fn only_mechanism(mut self, name: impl Into<String>) -> Credentials {
        self.only = Some(name.into().to_ascii_uppercase());
        self
    }

    pub(crate) fn proof(&self) -> Proof {
        self.proof
    }

    /// The one SASL mechanism asked for (upper case), if any.
    pub(crate) fn only_mechanism_name(&self) -> Option<&str> {
        self.only.as_deref()
    }

    /// Whether a protocol's own login (LOGIN, USER/PASS, simple bind, ...) may be used: for a
    /// password, unless one SASL mechanism was asked for.
    pub(crate) fn allows_protocol_login(&self) -> bool {
        self.proof == Proof::Password && self.only.is_none()
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

    /// Credentials travel in protocol lines: line breaks and NUL would let them forge commands
    /// (and in a bearer token message, the field separator ^A would forge fields).
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |s: &str| s.contains(['\r', '\n', '\0']);
        match self.proof {
            Proof::Password => {
                if self.user.is_empty() || bad(&self.user) || bad(&self.password) {
                    return Err(Error::InvalidArgument(
                        "user and password must be non-empty text without CR, LF or NUL".into(),
                    ));
                }
            }
            Proof::BearerToken => {
                let bad = |s: &str| s.is_empty() || bad(s) || s.contains('\x01');
                if bad(&self.user) || bad(&self.password) {
                    return Err(Error::InvalidArgument(
                        "user and token must be non-empty text without CR, LF, NUL or ^A".into(),
                    ));
                }
            }
            Proof::ClientCertificate => {}
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
            .field("proof", &self.proof)
            .field("only", &self.only)
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
    /// What the mechanism learnt about a failure along the way (a bearer token's JSON error).
    fn failure_detail(&self) -> Option<String> {
        None
    }
}

/// The server rejected the login: its reply (base64 decoded for people), and what the
/// mechanism learnt along the way.
pub(crate) fn rejected(mechanism: &dyn Mechanism, reply: &str) -> Error {
    let mut reply = explain_challenge(reply);
    if let Some(detail) = mechanism.failure_detail() {
        reply = format!("{reply} ({detail})");
    }
    Error::AuthFailed {
        mechanism: mechanism.name(),
        reply,
    }
}

/// The first message as the protocols send it: base64, or `=` for an empty one (RFC 4954,
/// RFC 4959, RFC 5034, RFC 4643, RFC 6120), which a bare space would not say.
pub(crate) fn initial_response(mechanism: &mut dyn Mechanism) -> Result<Secret> {
    let first = mechanism.initial()?;
    if first.as_bytes().is_empty() {
        return Ok(Secret::from_vec(b"=".to_vec()));
    }
    Ok(base64_secret(first.as_bytes()))
}

/// SASL EXTERNAL (RFC 4422 appendix A): the TLS client certificate is the identity; the message
/// is the authorization identity, or empty.
pub(crate) struct External<'a>(pub &'a Credentials);

impl Mechanism for External<'_> {
    fn name(&self) -> &'static str {
        "EXTERNAL"
    }

    fn initial(&mut self) -> Result<Secret> {
        let authzid = self.0.authzid.as_deref().map_or("", String::as_str);
        Ok(Secret::concat(&[authzid]))
    }

    fn answer(&mut self, challenge: &[u8]) -> Result<Secret> {
        Err(Error::AuthFailed {
            mechanism: "EXTERNAL",
            reply: format!(
                "the server sent a challenge EXTERNAL does not have: {}",
                crate::wire::printable(challenge)
            ),
        })
    }

    fn finish(&mut self, _: Option<&[u8]>) -> Result<()> {
        Ok(())
    }
}

/// A bearer token: OAUTHBEARER (RFC 7628) or Google's and Microsoft's XOAUTH2. A failure comes as
/// a challenge carrying a JSON error, answered with a dummy message so that the server ends the
/// exchange; the JSON's fields go into the failure's message.
pub(crate) struct Bearer<'a> {
    creds: &'a Credentials,
    xoauth2: bool,
    error: Option<String>,
}

impl<'a> Bearer<'a> {
    pub fn oauthbearer(creds: &'a Credentials) -> Bearer<'a> {
        Bearer {
            creds,
            xoauth2: false,
            error: None,
        }
    }

    pub fn xoauth2(creds: &'a Credentials) -> Bearer<'a> {
        Bearer {
            xoauth2: true,
            ..Bearer::oauthbearer(creds)
        }
    }
}

impl Mechanism for Bearer<'_> {
    fn name(&self) -> &'static str {
        if self.xoauth2 {
            "XOAUTH2"
        } else {
            "OAUTHBEARER"
        }
    }

    fn initial(&mut self) -> Result<Secret> {
        let (user, token) = (self.creds.user(), self.creds.password());
        Ok(if self.xoauth2 {
            Secret::concat(&["user=", user, "\x01auth=Bearer ", token, "\x01\x01"])
        } else {
            let user = user.replace('=', "=3D").replace(',', "=2C");
            Secret::concat(&["n,a=", &user, ",\x01auth=Bearer ", token, "\x01\x01"])
        })
    }

    fn answer(&mut self, challenge: &[u8]) -> Result<Secret> {
        if self.error.is_some() {
            return Err(Error::AuthFailed {
                mechanism: self.name(),
                reply: "a second challenge after the error".into(),
            });
        }
        self.error = Some(json_error(challenge));
        // RFC 7628 §3.2.3: a single ^A; XOAUTH2 expects an empty line.
        Ok(Secret::from_vec(if self.xoauth2 {
            Vec::new()
        } else {
            vec![1]
        }))
    }

    fn finish(&mut self, _: Option<&[u8]>) -> Result<()> {
        Ok(())
    }

    fn failure_detail(&self) -> Option<String> {
        self.error.clone()
    }
}

/// The string fields of a flat JSON object (an OAuth error: `status`, `scope`, `schemes`, ...),
/// as `key=value` for people; the raw text (escaped) when it is not one.
pub(crate) fn json_error(bytes: &[u8]) -> String {
    fn string(s: &[u8], mut i: usize) -> Option<(String, usize)> {
        if s.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        let mut out = Vec::new();
        while let Some(&b) = s.get(i) {
            match b {
                b'"' => return Some((crate::wire::printable(&out), i + 1)),
                b'\\' => {
                    let e = *s.get(i + 1)?;
                    out.push(match e {
                        b'n' | b'r' | b't' | b'b' | b'f' => b' ',
                        b'u' => b'?',
                        other => other,
                    });
                    i += if e == b'u' { 6 } else { 2 };
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        None
    }
    let skip = |s: &[u8], mut i: usize| {
        while s.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let parse = || -> Option<Vec<String>> {
        let s = bytes;
        let mut i = skip(s, 0);
        if s.get(i) != Some(&b'{') {
            return None;
        }
        let mut fields = Vec::new();
        i = skip(s, i + 1);
        while s.get(i) != Some(&b'}') {
            let (key, next) = string(s, i)?;
            i = skip(s, next);
            if s.get(i) != Some(&b':') {
                return None;
            }
            i = skip(s, i + 1);
            let (value, next) = string(s, i)?;
            fields.push(format!("{key}={value}"));
            i = skip(s, next);
            match s.get(i) {
                Some(b',') => i = skip(s, i + 1),
                Some(b'}') => {}
                _ => return None,
            }
            if fields.len() > 16 {
                return None;
            }
        }
        Some(fields)
    };
    match parse() {
        Some(fields) if !fields.is_empty() => fields.join(" "),
        _ => crate::wire::printable(bytes),
    }
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

/// What one server reply in a line protocol's SASL exchange says.
pub(crate) enum ServerSays {
    /// Logged in; `data` is the server's last SASL message when it came with the success.
    Success { reply: String, data: Option<String> },
    /// A base64 challenge to answer.
    Challenge(String),
    /// Anything else: the login failed.
    Failure(String),
}

/// The SASL exchange of the line protocols (SMTP/LMTP `AUTH`, POP3 `AUTH`, NNTP
/// `AUTHINFO SASL`): `COMMAND NAME initial-response`, each challenge answered on a line of its
/// own, until success or failure, as `read` classifies each reply. A mechanism that refuses a
/// challenge cancels with `*` and fails with its own reason.
pub(crate) fn line_exchange(
    wire: &mut Wire<'_>,
    deadline: &Deadline,
    command: &str,
    mechanism: &mut dyn Mechanism,
    mut read: impl FnMut(&mut Wire<'_>) -> Result<ServerSays>,
) -> Result<AuthOutcome> {
    let name = mechanism.name();
    let phase = deadline.phase();
    let first = initial_response(mechanism)?;
    let line = Secret::concat(&[command, " ", name, " ", first.as_str()]);
    let shown = format!("{command} {name} <credentials>");
    wire.send_secret_line(line.as_str(), &shown, deadline)?;
    for _ in 0..MAX_CHALLENGES {
        match read(wire)? {
            ServerSays::Success { reply, data } => {
                let data = data.map(|d| challenge(&d, phase)).transpose()?;
                mechanism.finish(data.as_deref())?;
                return Ok(AuthOutcome::of(mechanism, reply));
            }
            ServerSays::Failure(reply) => return Err(rejected(mechanism, &reply)),
            ServerSays::Challenge(payload) => {
                match challenge(&payload, phase).and_then(|c| mechanism.answer(&c)) {
                    Ok(answer) => {
                        let answer = base64_secret(answer.as_bytes());
                        wire.send_secret_line(answer.as_str(), "<response>", deadline)?;
                    }
                    Err(e) => {
                        wire.send_line("*", deadline)?;
                        read(wire)?;
                        return Err(e);
                    }
                }
            }
        }
    }
    Err(too_many_challenges(phase))
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

pub(crate) use crate::text::{base64_decode, base64_encode};

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

    #[test]
    fn bearer_token_messages_are_exact_and_their_fields_cannot_be_forged() {
        let c = Credentials::bearer_token("user@example.com", "vF9dft4qmT");
        assert_eq!(
            Bearer::oauthbearer(&c).initial().unwrap().as_bytes(),
            b"n,a=user@example.com,\x01auth=Bearer vF9dft4qmT\x01\x01"
        );
        assert_eq!(
            Bearer::xoauth2(&c).initial().unwrap().as_bytes(),
            b"user=user@example.com\x01auth=Bearer vF9dft4qmT\x01\x01"
        );
        let escaped = Credentials::bearer_token("a=b,c", "t");
        assert!(
            Bearer::oauthbearer(&escaped)
                .initial()
                .unwrap()
                .as_str()
                .starts_with("n,a=a=3Db=2Cc,")
        );
        for bad in [
            Credentials::bearer_token("alice", "tok\x01auth=Bearer other"),
            Credentials::bearer_token("alice\x01host=evil", "tok"),
            Credentials::bearer_token("alice", ""),
            Credentials::bearer_token("alice", "tok\r\nQUIT"),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(!format!("{c:?}").contains("vF9dft4qmT"));
        assert!(Credentials::client_certificate().check().is_ok());
    }

    #[test]
    fn a_bearer_failure_answers_once_and_reports_the_json_error() {
        let c = Credentials::bearer_token("alice", "secret-token");
        let json =
            br#"{"status":"invalid_token","scope":"https://mail.example.com/","schemes":"bearer"}"#;
        let mut m = Bearer::oauthbearer(&c);
        m.initial().unwrap();
        assert_eq!(m.answer(json).unwrap().as_bytes(), b"\x01");
        assert!(m.answer(json).is_err(), "only one error challenge");
        let e = rejected(&m, "535 5.7.8 Authentication failed");
        let text = e.to_string();
        assert!(text.contains("status=invalid_token"), "{text}");
        assert!(text.contains("scope=https://mail.example.com/"), "{text}");
        assert!(!text.contains("secret-token"), "{text}");
        let mut x = Bearer::xoauth2(&c);
        x.initial().unwrap();
        assert!(x.answer(json).unwrap().as_bytes().is_empty());
    }

    #[test]
    fn json_errors_are_decoded_flat_and_hostile_ones_shown_escaped() {
        assert_eq!(
            json_error(br#" { "status" : "401", "schemes":"bearer" } "#),
            "status=401 schemes=bearer"
        );
        assert_eq!(json_error(br#"{"m":"a\"b\nc\u0041"}"#), "m=a\"b c?");
        // Controls stay escaped, whether inside a string or not JSON at all.
        assert!(!json_error(b"{\"m\":\"\x1b[2J\"}").contains('\x1b'));
        assert!(!json_error(b"\x1b[2J not json").contains('\x1b'));
        for not_flat in [
            &br#"{"a":{"b":"c"}}"#[..],
            br#"{"a":1}"#,
            b"[]",
            b"{",
            br#"{"a""#,
        ] {
            assert_eq!(json_error(not_flat), crate::wire::printable(not_flat));
        }
        let many: String = (0..40).map(|i| format!("\"k{i}\":\"v\",")).collect();
        let many = format!("{{{}}}", many.trim_end_matches(','));
        assert_eq!(
            json_error(many.as_bytes()),
            crate::wire::printable(many.as_bytes())
        );
    }

    #[test]
    fn external_sends_the_authzid_or_nothing() {
        let c = Credentials::client_certificate();
        assert!(External(&c).initial().unwrap().as_bytes().is_empty());
        let mut m = External(&c);
        assert_eq!(initial_response(&mut m).unwrap().as_str(), "=");
        let c = Credentials::client_certificate().with_authzid("u:alice");
        assert_eq!(External(&c).initial().unwrap().as_str(), "u:alice");
        assert!(External(&c).answer(b"?").is_err());
    }
}
