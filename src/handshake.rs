//! The TLS handshake shared by both sides: bounded by one deadline, and with the peer's first
//! record checked before rustls may act on it (the last line of the go-ahead rule).

use std::io::{self, Read, Write};
use std::net::TcpStream;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ConnectionCommon, ServerConnection, StreamOwned};

use crate::config::{ClientConfig, ProtocolAlpn};
use crate::error::{Error, Phase, Result};
use crate::server_config::ServerConfig;
use crate::sys::Socket;
use crate::wire::{Deadline, printable};

/// The client's handshake on `tcp` with the rustls config `tls` (the config's for the protocol,
/// or a connection's own), for a protocol that asks for `alpn`, within the config's handshake
/// timeout, the server's first record watched (see [`drive`]).
pub(crate) fn client(
    config: &ClientConfig,
    tls: std::sync::Arc<rustls::ClientConfig>,
    alpn: ProtocolAlpn,
    tcp: TcpStream,
    name: ServerName<'static>,
    after_go_ahead: bool,
) -> Result<StreamOwned<ClientConnection, Socket>> {
    let mut tls = ClientConnection::new(tls, name).map_err(Error::from_tls)?;
    let deadline = Deadline::after(config.inner.timeouts.handshake, Phase::Handshake);
    crate::error::clear_presented_chain();
    let tcp = drive(&mut tls, tcp, deadline, after_go_ahead);
    crate::error::clear_presented_chain();
    let tcp = tcp?;
    // rustls lets a server ignore ALPN; a protocol that needs it must not talk to a server that
    // did not agree.
    if !alpn.accepts(tls.alpn_protocol()) {
        let wanted = String::from_utf8_lossy(alpn.id().unwrap_or_default()).into_owned();
        return Err(Error::violation(
            Phase::Handshake,
            format!("the server did not agree to ALPN {wanted:?}"),
        ));
    }
    Ok(StreamOwned::new(tls, Socket::new(tcp)))
}

/// The server's handshake on `tcp` for a protocol that asks for `alpn`, within the config's
/// handshake timeout, the client's first record watched.
pub(crate) fn server(
    config: &ServerConfig,
    alpn: ProtocolAlpn,
    tcp: TcpStream,
    after_go_ahead: bool,
) -> Result<StreamOwned<ServerConnection, Socket>> {
    let mut tls = ServerConnection::new(config.tls_for(alpn)).map_err(Error::from_tls)?;
    let deadline = Deadline::after(config.inner.timeouts.handshake, Phase::Handshake);
    let tcp = drive(&mut tls, tcp, deadline, after_go_ahead)?;
    if !alpn.accepts(tls.alpn_protocol()) {
        return Err(Error::violation(
            Phase::Handshake,
            "the client did not offer the ALPN this protocol requires",
        ));
    }
    Ok(StreamOwned::new(tls, Socket::new(tcp)))
}

/// A server name to verify (and send in SNI unless it is an address): a DNS name, or an IP
/// address, bare or in brackets.
pub(crate) fn parse_server_name(name: &str) -> Result<ServerName<'static>> {
    let bare = unbracket(name);
    if bare.is_empty() {
        return Err(Error::InvalidArgument("empty server name".into()));
    }
    // An address verifies against the certificate's IP SANs and is never sent in SNI.
    ServerName::try_from(bare.to_owned())
        .map_err(|_| Error::InvalidArgument(format!("invalid server name {name:?}")))
}

/// `[::1]` → `::1`; anything else as it is.
pub(crate) fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Runs the handshake on `tcp` until it completes or fails. `after_go_ahead`: a dialog just
/// ended with a go-ahead, so non-TLS bytes are an injection; otherwise (implicit TLS) they mean
/// the peer does not speak TLS.
fn drive<D>(
    tls: &mut ConnectionCommon<D>,
    mut tcp: TcpStream,
    deadline: Deadline,
    after_go_ahead: bool,
) -> Result<TcpStream> {
    let mut io = HandshakeIo {
        sock: &mut tcp,
        deadline,
        first: FirstRecord::default(),
        not_tls: None,
    };
    while tls.is_handshaking() {
        if let Err(e) = tls.complete_io(&mut io) {
            let Some(seen) = io.not_tls.take() else {
                return Err(Error::from_io(Phase::Handshake, e));
            };
            return Err(if after_go_ahead {
                Error::Injection {
                    bytes: seen.len(),
                    detail: "arrived after the go-ahead where the peer's first TLS record was due"
                        .into(),
                }
            } else {
                Error::violation_in(
                    Phase::Handshake,
                    "the peer did not answer with TLS (a plaintext port?)",
                    &printable(&seen),
                )
            });
        }
    }
    Ok(tcp)
}

/// The socket as the handshake sees it: every read and write bounded by the overall deadline,
/// and the server's first record checked before rustls may act on it.
struct HandshakeIo<'a> {
    sock: &'a mut TcpStream,
    deadline: Deadline,
    first: FirstRecord,
    /// The bytes that were not TLS, once seen.
    not_tls: Option<Vec<u8>>,
}

impl Read for HandshakeIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.remaining().map_err(|_| timed_out())?;
        self.sock.set_read_timeout(Some(left))?;
        let n = self.sock.read(buf)?;
        if self.first.feed(&buf[..n]) == Some(false) {
            self.not_tls = Some(buf[..n.min(64)].to_vec());
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not TLS"));
        }
        Ok(n)
    }
}

impl Write for HandshakeIo<'_> {
    /// A flight goes out at once when the socket takes it (it nearly always does: no socket
    /// option set per write); otherwise it waits for room within the deadline.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let n = crate::sys::send_now(self.sock, buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let left = self.deadline.remaining().map_err(|_| timed_out())?;
            if !crate::sys::wait(self.sock, true, left)? {
                return Err(timed_out());
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "handshake deadline passed")
}

/// The verdict of [`FirstRecord`] on `bytes` (for the fuzz targets).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn first_record_verdict(bytes: &[u8]) -> Option<bool> {
    FirstRecord::default().feed(bytes)
}

/// The peer's first TLS record must be a handshake record (ServerHello, ClientHello) or a
/// *fatal* alert.
/// Plaintext fails the check, and so does a warning alert, which rustls would silently skip:
/// either one is data that was not the server's TLS answer.
#[derive(Default)]
struct FirstRecord {
    /// Record header (5 bytes) and, for an alert, its level byte.
    seen: [u8; 6],
    have: usize,
    verdict: Option<bool>,
}

impl FirstRecord {
    /// Feeds received bytes; `Some(true)` once the record is acceptable, `Some(false)` once it is
    /// not, `None` while more bytes are needed.
    fn feed(&mut self, bytes: &[u8]) -> Option<bool> {
        if self.verdict.is_some() {
            return self.verdict;
        }
        let take = (self.seen.len() - self.have).min(bytes.len());
        self.seen[self.have..self.have + take].copy_from_slice(&bytes[..take]);
        self.have += take;
        let b = &self.seen[..self.have];
        self.verdict = match (b.first(), b.get(1), b.get(5)) {
            (Some(0x15 | 0x16), Some(v), _) if *v != 0x03 => Some(false),
            (Some(0x16), Some(_), _) => Some(true),
            (Some(0x15), Some(_), Some(&level)) => Some(level == 2),
            (Some(0x15 | 0x16), _, _) | (None, _, _) => None,
            (Some(_), _, _) => Some(false),
        };
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn verdict(chunks: &[&[u8]]) -> Option<bool> {
        let mut f = FirstRecord::default();
        chunks.iter().map(|c| f.feed(c)).last().flatten()
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            parse_server_name("[::1]"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            parse_server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            parse_server_name("mx.example.org"),
            Ok(ServerName::DnsName(_))
        ));
        for bad in ["", "[]", "bad name", "a..b"] {
            assert_eq!(
                parse_server_name(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn first_record_must_be_handshake_or_fatal_alert() {
        assert_eq!(verdict(&[&[0x16, 0x03, 0x03, 0x00, 0x7a]]), Some(true));
        assert_eq!(verdict(&[&[0x16], &[0x03]]), Some(true));
        assert_eq!(
            verdict(&[&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]]),
            Some(true)
        );
        // A warning alert would be skipped by rustls: it is not the server's answer.
        assert_eq!(
            verdict(&[&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x5a]]),
            Some(false)
        );
        assert_eq!(
            verdict(&[&[0x15, 0x03, 0x03], &[0x00, 0x02], &[0x01]]),
            Some(false)
        );
        assert_eq!(verdict(&[b"250 OK"]), Some(false));
        assert_eq!(verdict(&[b"* OK"]), Some(false));
        assert_eq!(verdict(&[&[0x16, 0x02]]), Some(false));
        assert_eq!(verdict(&[&[0x17, 0x03]]), Some(false));
        assert_eq!(verdict(&[&[0x16]]), None);
        assert_eq!(verdict(&[&[0x15, 0x03, 0x03, 0x00]]), None);
        // Once decided, later bytes change nothing.
        let mut f = FirstRecord::default();
        assert_eq!(f.feed(&[0x16, 0x03]), Some(true));
        assert_eq!(f.feed(b"garbage"), Some(true));
    }
}
