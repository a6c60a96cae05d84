//! SCRAM-SHA-256 and SCRAM-SHA-256-PLUS, client side (RFC 5802, RFC 7677), with channel binding
//! to the TLS connection (`tls-exporter`, RFC 9266; `tls-server-end-point`, RFC 5929).
//!
//! client-first `n=user,r=nonce` → server-first `r=nonce+more,s=salt,i=count` → client-final
//! `c=binding,r=...,p=proof` → server-final `v=signature`. The server's signature is checked:
//! a server that does not know the password (or saw another TLS connection, with binding) fails.
//! The password is used as its UTF-8 bytes: SASLprep is the identity for ASCII, and a server
//! that normalises a non-ASCII password differently rejects the login rather than accepting a
//! wrong one.

use rustls::SupportedCipherSuite;
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::tls13::{Hkdf, OkmBlock};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::protocol::sasl::{Credentials, Mechanism, Secret, base64_decode, base64_encode};
use crate::wire::printable;

/// Iteration counts above this are refused: a hostile server could otherwise make the client
/// spend unbounded time (RFC 7677 asks for at least 4096; servers use 4096 to a few 100,000).
pub(crate) const MAX_ITERATIONS: u32 = 1_000_000;
/// A server message longer than this is refused.
const MAX_MESSAGE: usize = 4096;
const HASH_LEN: usize = 32;

/// What the client says about channel binding in its GS2 header.
#[derive(Clone, Copy)]
pub(crate) enum Binding<'a> {
    /// `p=NAME`: bound to this data (the -PLUS mechanism).
    Bound { name: &'static str, data: &'a [u8] },
    /// `y`: the client could bind but the server did not offer the -PLUS mechanism.
    ServerLacksIt,
    /// `n`: the client cannot bind.
    Unsupported,
}

impl Binding<'_> {
    fn gs2_header(&self) -> String {
        match self {
            Binding::Bound { name, .. } => format!("p={name},,"),
            Binding::ServerLacksIt => "y,,".to_owned(),
            Binding::Unsupported => "n,,".to_owned(),
        }
    }
}

enum State {
    Start,
    /// client-first sent: its bare part, kept for the AuthMessage.
    SentFirst {
        client_first_bare: String,
    },
    /// client-final sent: the server signature that proves the server.
    SentFinal {
        expected: Zeroizing<[u8; HASH_LEN]>,
    },
    Verified,
    Failed,
}

/// One SCRAM-SHA-256(-PLUS) login.
pub(crate) struct Scram<'a> {
    creds: &'a Credentials,
    binding: Binding<'a>,
    nonce: String,
    state: State,
}

impl<'a> Scram<'a> {
    pub fn new(creds: &'a Credentials, binding: Binding<'a>) -> Scram<'a> {
        Scram {
            creds,
            binding,
            nonce: String::new(),
            state: State::Start,
        }
    }

    /// With a fixed client nonce (the RFC's test vectors).
    #[cfg(test)]
    fn with_nonce(creds: &'a Credentials, binding: Binding<'a>, nonce: &str) -> Scram<'a> {
        Scram {
            nonce: nonce.to_owned(),
            ..Scram::new(creds, binding)
        }
    }

    fn fail(&mut self, what: String) -> Error {
        self.state = State::Failed;
        Error::AuthFailed {
            mechanism: self.name(),
            reply: what,
        }
    }

    /// server-first → client-final (with the proof), and the server signature to expect.
    fn client_final(&mut self, client_first_bare: &str, server_first: &[u8]) -> Result<Secret> {
        let text = message_text(server_first).map_err(|e| self.fail(e))?;
        let first = ServerFirst::parse(text, &self.nonce).map_err(|e| self.fail(e))?;
        let mut channel = self.binding.gs2_header().into_bytes();
        if let Binding::Bound { data, .. } = self.binding {
            channel.extend_from_slice(data);
        }
        let without_proof = format!("c={},r={}", base64_encode(&channel), first.nonce);
        let auth_message = format!("{client_first_bare},{text},{without_proof}");
        let crypto = Crypto::new().ok_or_else(|| self.fail("no HMAC-SHA-256 available".into()))?;
        let salted = crypto.salted_password(
            self.creds.password().as_bytes(),
            &first.salt,
            first.iterations,
        );
        let client_key = crypto.hmac(&salted[..], b"Client Key");
        let stored_key = crypto.hash(&client_key[..]);
        let signature = crypto.hmac(&stored_key[..], auth_message.as_bytes());
        let mut proof = Zeroizing::new([0u8; HASH_LEN]);
        for (p, (k, s)) in proof
            .iter_mut()
            .zip(client_key.iter().zip(signature.iter()))
        {
            *p = k ^ s;
        }
        let server_key = crypto.hmac(&salted[..], b"Server Key");
        let expected = crypto.hmac(&server_key[..], auth_message.as_bytes());
        self.state = State::SentFinal { expected };
        let proof = base64_encode(&proof[..]);
        Ok(Secret::concat(&[&without_proof, ",p=", &proof]))
    }

    /// server-final: `v=` the server's signature, or `e=` its error.
    fn verify(&mut self, server_final: &[u8]) -> Result<()> {
        let State::SentFinal { expected } = &self.state else {
            return Err(self.fail("server-final message out of order".into()));
        };
        let expected = expected.clone();
        let text = message_text(server_final).map_err(|e| self.fail(e))?;
        let first = text.split(',').next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(self.fail(format!(
                "the server refused: {}",
                printable(error.as_bytes())
            )));
        }
        let Some(signature) = first.strip_prefix("v=").and_then(base64_decode) else {
            return Err(self.fail(format!(
                "server-final message without a signature: {}",
                printable(text.as_bytes())
            )));
        };
        if !constant_time_eq(&signature, &expected[..]) {
            return Err(self.fail(
                "wrong server signature: the server does not know the password, or it is \
                 not the end of this TLS connection"
                    .into(),
            ));
        }
        self.state = State::Verified;
        Ok(())
    }
}

impl Mechanism for Scram<'_> {
    fn name(&self) -> &'static str {
        match self.binding {
            Binding::Bound { .. } => "SCRAM-SHA-256-PLUS",
            _ => "SCRAM-SHA-256",
        }
    }

    fn channel_binding(&self) -> Option<&'static str> {
        match self.binding {
            Binding::Bound { name, .. } => Some(name),
            _ => None,
        }
    }

    fn initial(&mut self) -> Result<Secret> {
        if !matches!(self.state, State::Start) {
            return Err(self.fail("client-first message sent twice".into()));
        }
        if self.nonce.is_empty() {
            self.nonce = fresh_nonce().ok_or_else(|| self.fail("no random source".into()))?;
        }
        let bare = format!("n={},r={}", saslname(self.creds.user()), self.nonce);
        let first = Secret::concat(&[&self.binding.gs2_header(), &bare]);
        self.state = State::SentFirst {
            client_first_bare: bare,
        };
        Ok(first)
    }

    fn answer(&mut self, challenge: &[u8]) -> Result<Secret> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::SentFirst { client_first_bare } => {
                self.client_final(&client_first_bare, challenge)
            }
            state @ State::SentFinal { .. } => {
                // The server-final message as a challenge: the answer is empty.
                self.state = state;
                self.verify(challenge)?;
                Ok(Secret::from_vec(Vec::new()))
            }
            _ => Err(self.fail(format!("unexpected challenge: {}", printable(challenge)))),
        }
    }

    fn finish(&mut self, data: Option<&[u8]>) -> Result<()> {
        if let (Some(data), State::SentFinal { .. }) = (data, &self.state) {
            return self.verify(data);
        }
        match self.state {
            State::Verified => Ok(()),
            _ => Err(self.fail(
                "the server reported success without proving it knows the password (no \
                 server signature)"
                    .into(),
            )),
        }
    }
}

/// `user` as a SCRAM saslname: `=` and `,` escaped (RFC 5802 §5.1).
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

fn message_text(bytes: &[u8]) -> std::result::Result<&str, String> {
    if bytes.len() > MAX_MESSAGE {
        return Err(format!("server message of {} bytes", bytes.len()));
    }
    match std::str::from_utf8(bytes) {
        Ok(t) if !t.contains(|c: char| c.is_control()) => Ok(t),
        _ => Err(format!(
            "server message is not printable text: {}",
            printable(bytes)
        )),
    }
}

/// The parts of a server-first message that matter.
struct ServerFirst<'t> {
    nonce: &'t str,
    salt: Vec<u8>,
    iterations: u32,
}

impl<'t> ServerFirst<'t> {
    /// `[m=ext,]r=nonce,s=salt,i=count[,ext...]`: the nonce must extend the client's, the salt
    /// be base64, the count within bounds; a mandatory extension (`m=`) is not understood.
    fn parse(text: &'t str, client_nonce: &str) -> std::result::Result<ServerFirst<'t>, String> {
        let shown = || printable(text.as_bytes());
        let mut parts = text.split(',');
        let mut next = |key: &str| {
            parts
                .next()
                .and_then(|p| p.strip_prefix(key))
                .ok_or_else(|| format!("malformed server-first message (no {key}): {}", shown()))
        };
        if text.starts_with("m=") {
            return Err(format!(
                "server-first message with a mandatory extension: {}",
                shown()
            ));
        }
        let nonce = next("r=")?;
        if nonce.len() <= client_nonce.len()
            || !nonce.starts_with(client_nonce)
            || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return Err(format!(
                "the server's nonce does not extend the client's: {}",
                shown()
            ));
        }
        let salt = next("s=")?;
        let salt = base64_decode(salt)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("salt is not base64: {}", shown()))?;
        let count = next("i=")?;
        let iterations = count
            .parse::<u32>()
            .ok()
            .filter(|&i| i >= 1 && !count.starts_with(['+', '0']))
            .ok_or_else(|| format!("bad iteration count: {}", shown()))?;
        if iterations > MAX_ITERATIONS {
            return Err(format!(
                "iteration count {iterations} is above the limit of {MAX_ITERATIONS}"
            ));
        }
        Ok(ServerFirst {
            nonce,
            salt,
            iterations,
        })
    }
}

/// 24 bytes from the OS random source, as base64 (no `,`).
fn fresh_nonce() -> Option<String> {
    let mut bytes = [0u8; 24];
    crate::x509::crypto_provider()
        .secure_random
        .fill(&mut bytes)
        .ok()?;
    Some(base64_encode(&bytes))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA-256 and SHA-256 from the rustls crypto provider the library uses.
struct Crypto {
    hkdf: &'static dyn Hkdf,
    hash: &'static dyn rustls::crypto::hash::Hash,
}

impl Crypto {
    fn new() -> Option<Crypto> {
        let provider = crate::x509::crypto_provider();
        provider.cipher_suites.iter().find_map(|s| match s {
            SupportedCipherSuite::Tls13(t)
                if t.common.hash_provider.algorithm() == HashAlgorithm::SHA256 =>
            {
                Some(Crypto {
                    hkdf: t.hkdf_provider,
                    hash: t.common.hash_provider,
                })
            }
            _ => None,
        })
    }

    fn hash(&self, data: &[u8]) -> Zeroizing<[u8; HASH_LEN]> {
        let mut out = Zeroizing::new([0u8; HASH_LEN]);
        out.copy_from_slice(self.hash.hash(data).as_ref());
        out
    }

    /// HMAC-SHA-256. A key longer than the hash's 64-byte block is hashed first, as HMAC itself
    /// does (the provider takes keys of at most 64 bytes).
    fn hmac(&self, key: &[u8], message: &[u8]) -> Zeroizing<[u8; HASH_LEN]> {
        let hashed;
        let key = if key.len() > OkmBlock::MAX_LEN {
            hashed = self.hash(key);
            &hashed[..]
        } else {
            key
        };
        let tag = self.hkdf.hmac_sign(&OkmBlock::new(key), message);
        let mut out = Zeroizing::new([0u8; HASH_LEN]);
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Hi() of RFC 5802: PBKDF2 with HMAC-SHA-256, one block.
    fn salted_password(
        &self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Zeroizing<[u8; HASH_LEN]> {
        let mut block = Zeroizing::new(Vec::with_capacity(salt.len() + 4));
        block.extend_from_slice(salt);
        block.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &block);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u[..]);
            for (o, x) in out.iter_mut().zip(u.iter()) {
                *o ^= x;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new("user", "pencil")
    }

    const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    /// RFC 7677 §3, byte for byte.
    #[test]
    fn the_rfc_7677_exchange() {
        let c = creds();
        let mut s = Scram::with_nonce(&c, Binding::Unsupported, CLIENT_NONCE);
        assert_eq!(
            s.initial().unwrap().as_str(),
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        );
        assert_eq!(
            s.answer(SERVER_FIRST).unwrap().as_str(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.finish(Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))
            .unwrap();
        assert_eq!(s.name(), "SCRAM-SHA-256");
        assert_eq!(s.channel_binding(), None);
    }

    #[test]
    fn the_server_final_as_a_challenge_gets_an_empty_answer() {
        let c = creds();
        let mut s = Scram::with_nonce(&c, Binding::Unsupported, CLIENT_NONCE);
        s.initial().unwrap();
        s.answer(SERVER_FIRST).unwrap();
        let empty = s
            .answer(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(empty.as_bytes().is_empty());
        s.finish(None).unwrap();
    }

    fn after_first(binding: Binding<'_>) -> (Credentials, String) {
        let c = creds();
        let mut s = Scram::with_nonce(&c, binding, CLIENT_NONCE);
        s.initial().unwrap();
        let out = s.answer(SERVER_FIRST).unwrap().as_str().to_owned();
        (creds(), out)
    }

    #[test]
    fn the_gs2_header_and_binding_data_are_in_the_final_message() {
        let (_, y) = after_first(Binding::ServerLacksIt);
        assert!(y.starts_with("c=eSws,"), "{y}"); // base64("y,,")
        let data = [7u8; 32];
        let c = creds();
        let mut s = Scram::with_nonce(
            &c,
            Binding::Bound {
                name: "tls-exporter",
                data: &data,
            },
            CLIENT_NONCE,
        );
        assert!(
            s.initial()
                .unwrap()
                .as_str()
                .starts_with("p=tls-exporter,,n=user,")
        );
        let fin = s.answer(SERVER_FIRST).unwrap();
        let mut expected = b"p=tls-exporter,,".to_vec();
        expected.extend_from_slice(&data);
        let c_attr = format!("c={},", base64_encode(&expected));
        assert!(fin.as_str().starts_with(&c_attr), "{}", fin.as_str());
        assert_eq!(s.name(), "SCRAM-SHA-256-PLUS");
        assert_eq!(s.channel_binding(), Some("tls-exporter"));
    }

    #[test]
    fn a_wrong_or_missing_server_signature_fails_naming_it() {
        for last in [
            Some(&b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="[..]),
            Some(b"v=not base64"),
            Some(b"e=invalid-proof"),
            None,
        ] {
            let c = creds();
            let mut s = Scram::with_nonce(&c, Binding::Unsupported, CLIENT_NONCE);
            s.initial().unwrap();
            s.answer(SERVER_FIRST).unwrap();
            let e = s.finish(last).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::AuthFailed, "{e}");
            let text = e.to_string();
            assert!(
                text.contains("signature") || text.contains("invalid-proof"),
                "{last:?}: {text}"
            );
            assert!(!text.contains("pencil"), "{text}");
        }
    }

    #[test]
    fn hostile_server_first_messages_are_refused() {
        for bad in [
            &b"r=someoneelsesnonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"[..],
            b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            b"m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=!!!,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000001",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            b"r=rOprNGfwEbeRWgbNEkqOx\x1b[2J,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            b"s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOx,i=4096",
            b"",
            &[0xff, 0xfe],
        ] {
            let c = creds();
            let mut s = Scram::with_nonce(&c, Binding::Unsupported, CLIENT_NONCE);
            s.initial().unwrap();
            let e = s
                .answer(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(e.kind(), crate::ErrorKind::AuthFailed, "{bad:?}: {e}");
            assert!(!e.to_string().contains('\x1b'), "{e}");
            // Nothing more is accepted after a failure.
            assert!(s.finish(None).is_err());
        }
        let long = vec![b'a'; MAX_MESSAGE + 1];
        let c = creds();
        let mut s = Scram::with_nonce(&c, Binding::Unsupported, CLIENT_NONCE);
        s.initial().unwrap();
        assert!(s.answer(&long).is_err());
    }

    #[test]
    fn user_names_are_escaped_and_nonces_are_fresh() {
        assert_eq!(saslname("a=b,c"), "a=3Db=2Cc");
        let c = Credentials::new("a,b", "p");
        let mut one = Scram::new(&c, Binding::Unsupported);
        let mut two = Scram::new(&c, Binding::Unsupported);
        let (one, two) = (one.initial().unwrap(), two.initial().unwrap());
        assert!(
            one.as_str().starts_with("n,,n=a=2Cb,r="),
            "{}",
            one.as_str()
        );
        assert_ne!(one.as_str(), two.as_str());
        assert_eq!(one.as_str().len(), "n,,n=a=2Cb,r=".len() + 32);
    }

    #[test]
    fn long_passwords_hash_the_hmac_key_first() {
        // HMAC-SHA-256 of RFC 4231 test case 6: a 131-byte key.
        let crypto = Crypto::new().unwrap();
        let key = [0xaau8; 131];
        let mac = crypto.hmac(
            &key,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            base64_encode(&mac[..]),
            base64_encode(&[
                0x60, 0xe4, 0x31, 0x59, 0x1e, 0xe0, 0xb6, 0x7f, 0x0d, 0x8a, 0x26, 0xaa, 0xcb, 0xf5,
                0xb7, 0x7f, 0x8e, 0x0b, 0xc6, 0x21, 0x37, 0x28, 0xc5, 0x14, 0x05, 0x46, 0x04, 0x0f,
                0x0e, 0xe3, 0x7f, 0x54
            ])
        );
    }
}
