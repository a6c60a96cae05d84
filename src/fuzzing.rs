//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not a stable API).
//!
//! Each runs a real dialog — the same code a connection runs — over an in-memory peer whose
//! bytes are the fuzzer's input, so every parser of peer input is reached the way a hostile
//! peer would reach it. Nothing may panic, loop without end or allocate without bound.

use std::io;
use std::time::Duration;

use crate::config::{Policy, Timeouts};
use crate::error::Result;
use crate::protocol::sasl::{ChannelBindings, Credentials, Login};
use crate::protocol::{DialogContext, Outcome, Protocol, ServerContext};
use crate::wire::{Limits, Transport, Wire};

/// A peer that has already sent `data` and then closed; what we write is counted and dropped.
struct Replay<'a> {
    data: &'a [u8],
    pos: usize,
    written: usize,
}

impl<'a> Replay<'a> {
    fn new(data: &'a [u8]) -> Self {
        Replay {
            data,
            pos: 0,
            written: 0,
        }
    }
}

/// The client's side of a dialog as a connection would set it up.
fn client_context(policy: Policy) -> DialogContext {
    DialogContext::new(
        policy,
        Timeouts::default(),
        "fuzz.test".into(),
        "server.test".into(),
        Some(25),
    )
}

impl Transport for Replay<'_> {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.data[self.pos..];
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn consume(&mut self, n: usize) -> io::Result<()> {
        if n > self.data.len() - self.pos {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n;
        Ok(())
    }

    fn pending_now(&mut self) -> io::Result<usize> {
        Ok(self.data.len() - self.pos)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.written += buf.len();
        // The dialogs send a bounded number of short commands.
        assert!(self.written < 1 << 20, "unbounded writes");
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn set_write_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// The client side of `protocol`'s pre-TLS dialog against `server_bytes`, under both policies,
/// then the go-ahead check; and the capability request that runs inside TLS.
pub fn client_dialog(protocol: Protocol, server_bytes: &[u8]) {
    let Some(dialog) = protocol.dialog() else {
        return;
    };
    for policy in [Policy::Require, Policy::Opportunistic] {
        let mut peer = Replay::new(server_bytes);
        let mut ctx = client_context(policy);
        let mut wire = Wire::new(&mut peer, Limits::default());
        let result: Result<()> = dialog.client_starttls(&mut wire, &mut ctx).and_then(|pre| {
            if let Outcome::GoAhead = pre.outcome {
                wire.ensure_nothing_after_go_ahead()?;
            }
            Ok(())
        });
        drop(result);
        let _ = wire.take_transcript();
        drop(wire);
        assert!(peer.pos <= server_bytes.len());
    }
    let mut peer = Replay::new(server_bytes);
    let mut ctx = client_context(Policy::Require);
    let mut wire = Wire::inside_tls(&mut peer, Limits::default());
    let _ = dialog.client_greeting(&mut wire, &mut ctx);
    let _ = dialog.client_capabilities(&mut wire, &mut ctx);
    let _ = dialog.client_after_starttls(&mut wire, &mut ctx);
    client_login(protocol, server_bytes);
}

/// The login inside TLS against `server_bytes`, with every mechanism offered in each
/// protocol's spelling, for a password, a bearer token and a client certificate: the SASL
/// exchanges, SCRAM's and the bearer tokens' parsers of server messages, PostgreSQL's backend
/// messages.
fn client_login(protocol: Protocol, server_bytes: &[u8]) {
    let Some(dialog) = protocol.dialog() else {
        return;
    };
    if !dialog.has_login() {
        return;
    }
    let offered = "PLAIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS OAUTHBEARER XOAUTH2 EXTERNAL";
    let caps: Vec<String> = [
        format!("AUTH {offered}"),
        format!("SASL {offered}"),
        format!("mechanisms {offered}"),
        "AUTHINFO USER SASL".into(),
        "SASL-IR".into(),
        "USER".into(),
    ]
    .into_iter()
    .chain(offered.split(' ').map(|m| format!("AUTH={m}")))
    .collect();
    let bindings = ChannelBindings {
        exporter: Some(zeroize::Zeroizing::new(vec![7; 32])),
        server_end_point: Some(vec![9; 32]),
    };
    for creds in [
        Credentials::new("fuzz", "password"),
        Credentials::bearer_token("fuzz", "token"),
        Credentials::client_certificate(),
    ] {
        let login = Login {
            creds: &creds,
            bindings: &bindings,
        };
        let mut peer = Replay::new(server_bytes);
        let mut ctx = client_context(Policy::Require);
        let mut wire = Wire::inside_tls(&mut peer, Limits::default());
        let _ = dialog.client_authenticate(&mut wire, &mut ctx, &caps, &login);
    }
}

/// The server side of `protocol`'s pre-TLS dialog against `client_bytes`.
pub fn server_dialog(protocol: Protocol, client_bytes: &[u8]) {
    let Some(dialog) = protocol.dialog() else {
        return;
    };
    let timeouts = Timeouts::default();
    let ctx = ServerContext::with(&timeouts, "fuzz.test", None);
    let mut peer = Replay::new(client_bytes);
    let mut wire = Wire::new(&mut peer, Limits::default());
    let _ = dialog.server_starttls(&mut wire, &ctx);
}

/// The reader of a peer certificate's facts.
pub fn certificate(bytes: &[u8]) {
    let _ = crate::CertificateFacts::from_der(bytes);
}

/// A resolver's answer to a TLSA query (the first two bytes are its id, so that the answer
/// can match the query).
#[cfg(feature = "dns")]
pub fn dns_answer(bytes: &[u8]) {
    let id = u16::from_be_bytes([
        bytes.first().copied().unwrap_or(0),
        bytes.get(1).copied().unwrap_or(0),
    ]);
    let _ = crate::dns::tlsa_in_answer(id, bytes);
}

/// The check of the peer's first TLS record.
pub fn first_record(bytes: &[u8]) {
    let _ = crate::handshake::first_record_verdict(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dialog_survives_garbage_and_truncation() {
        let samples: [&[u8]; 7] = [
            b"",
            b"\x00\xff\r\n\r\n{9999999}\r\n",
            b"334 cj1hYmMscz1RUT09LGk9MQ==\r\n+ e30=\r\n383 x\r\n{3}\r\nabc\r\nR\0\0\0\x08\0\0\0\x0a",
            b"220-a\r\n220 b\r\n250-x\r\n250 STARTTLS\r\n220 go\r\nEXTRA",
            b"* OK [CAPABILITY STARTTLS] x\r\nS1 OK\r\n",
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features><proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ];
        for protocol in Protocol::ALL {
            for s in samples {
                client_dialog(protocol, s);
                server_dialog(protocol, s);
                // Every prefix: a peer that stops anywhere.
                for cut in 0..s.len().min(64) {
                    client_dialog(protocol, &s[..cut]);
                    server_dialog(protocol, &s[..cut]);
                }
            }
        }
        first_record(&[0x16, 0x03]);
    }
}
