//! The TLS handshake shared by both sides: bounded by one deadline, and with the peer's first
//! record checked before rustls may act on it (the last line of the go-ahead rule).

use std::io::{self, Read, Write};
use std::net::TcpStream;

use rustls::ConnectionCommon;

use crate::error::{Error, Phase, Result};
use crate::wire::{Deadline, printable};

/// Runs the handshake on `tcp` until it completes or fails. `after_go_ahead`: a dialog just
/// ended with a go-ahead, so non-TLS bytes are an injection; otherwise (implicit TLS) they mean
/// the peer does not speak TLS.
pub(crate) fn drive<D>(
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
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.deadline.remaining().map_err(|_| timed_out())?;
        self.sock.set_write_timeout(Some(left))?;
        self.sock.write(buf)
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

    fn verdict(chunks: &[&[u8]]) -> Option<bool> {
        let mut f = FirstRecord::default();
        chunks.iter().map(|c| f.feed(c)).last().flatten()
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
