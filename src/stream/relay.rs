//! Relaying bytes between two ends until both are done: an encrypted connection and a plaintext
//! socket (a TLS front or a TLS-terminating tunnel), or two sockets (a tunnel whose client does
//! the TLS itself). One thread, one buffer, `poll` on both sockets: a connection cannot be split
//! into a reading and a writing half.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use rustls::ConnectionCommon;

use super::{Connection, Inner};
use crate::error::{Error, Phase};
use crate::sys::Socket;

/// What a relay carried and how it ended.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Relayed {
    /// Bytes read from the first end (the connection, for [`Connection::relay`]) and written to
    /// the second.
    pub first_to_second: u64,
    /// Bytes read from the second end and written to the first.
    pub second_to_first: u64,
    /// Why the relay stopped early: `None` when both ends finished their streams (an encrypted
    /// end with close_notify). [`Error::Timeout`] when both ends stayed silent for the idle
    /// time, [`Error::Closed`] when one end vanished (a TLS peer without close_notify).
    pub error: Option<Error>,
}

/// The size of one read: a whole TLS record's plaintext.
const CHUNK: usize = 16 * 1024;

impl Connection {
    /// Relays this connection's decrypted bytes to `other` and `other`'s bytes into this
    /// connection until both directions have ended, then returns what was carried. The end of
    /// one direction is passed on (close_notify and a write shutdown towards the connection's
    /// peer, a write shutdown on `other`) and the other direction goes on, as long as one end
    /// says something at least every `idle_timeout` (zero: no limit). Writes wait at most
    /// `idle_timeout` too. Bytes the connection had already buffered go first.
    pub fn relay(&mut self, other: &TcpStream, idle_timeout: Duration) -> Relayed {
        relay(&mut [End::Tls(self), End::Plain(other)], idle_timeout)
    }
}

/// Relays bytes between two sockets until both directions have ended (as
/// [`Connection::relay`]): the raw relay of a tunnel whose client does the TLS handshake itself,
/// after [`negotiate`](crate::negotiate) ran the dialog.
pub fn relay_sockets(first: &TcpStream, second: &TcpStream, idle_timeout: Duration) -> Relayed {
    relay(&mut [End::Plain(first), End::Plain(second)], idle_timeout)
}

enum End<'a> {
    Tls(&'a mut Connection),
    Plain(&'a TcpStream),
}

impl End<'_> {
    fn tcp(&self) -> &TcpStream {
        match self {
            End::Tls(c) => c.tcp_stream(),
            End::Plain(s) => s,
        }
    }

    /// Whether a read can go on without waiting on the socket: bytes in the connection's
    /// buffer or decrypted, or a close_notify that came with the last records (its peer may
    /// keep the socket open, which then never becomes readable again). A TLS error is final.
    fn ready_now(&mut self) -> io::Result<bool> {
        let End::Tls(c) = self else {
            return Ok(false);
        };
        if !c.lookahead.available().is_empty() {
            return Ok(true);
        }
        let state = match &mut c.inner {
            Inner::Tls(s) => s.conn.process_new_packets(),
            Inner::ServerTls(s) => s.conn.process_new_packets(),
            Inner::Plain(_) => return Ok(false),
        }
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(state.plaintext_bytes_to_read() > 0 || state.peer_has_closed())
    }

    fn set_timeouts(&mut self, idle: Duration) -> io::Result<()> {
        let t = (!idle.is_zero()).then_some(idle);
        self.tcp().set_read_timeout(t)?;
        self.tcp().set_write_timeout(t)
    }

    /// Reads what a readable socket brought: `Ok(None)` when it was only TLS records without
    /// application data (session tickets, key updates). A connection's own read would block
    /// there, waiting for data that may never come while the other end has something to say.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let c = match self {
            End::Plain(s) => return (&**s).read(buf).map(Some),
            End::Tls(c) => c,
        };
        if !End::Tls(c).ready_now()? {
            let (bytes, closed) = match &mut c.inner {
                Inner::Tls(s) => take_records(&mut s.conn, &mut s.sock)?,
                Inner::ServerTls(s) => take_records(&mut s.conn, &mut s.sock)?,
                Inner::Plain(s) => return (&*s).read(buf).map(Some),
            };
            if !End::Tls(c).ready_now()? {
                return match (bytes, closed) {
                    (_, true) => Ok(Some(0)),
                    // The socket ended without close_notify: the stream may have been cut.
                    (0, false) => Err(io::ErrorKind::UnexpectedEof.into()),
                    _ => Ok(None),
                };
            }
        }
        c.read(buf).map(Some)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            End::Tls(c) => {
                c.write_all(buf)?;
                c.flush()
            }
            // std sends with MSG_NOSIGNAL: a vanished peer is an error, not a signal.
            End::Plain(s) => (&**s).write_all(buf),
        }
    }

    /// Passes the end of a direction on: no more bytes will come this way.
    fn close_write(&mut self) -> Result<(), Error> {
        match self {
            End::Tls(c) => c.close(),
            End::Plain(s) => match s.shutdown(Shutdown::Write) {
                Err(e) if e.kind() != io::ErrorKind::NotConnected => {
                    Err(Error::from_io(Phase::Close, e))
                }
                _ => Ok(()),
            },
        }
    }
}

/// One read of TLS records from a socket that poll said is readable, and their processing:
/// the bytes taken (0 at the end of the stream) and whether close_notify has come.
fn take_records<D>(conn: &mut ConnectionCommon<D>, sock: &mut Socket) -> io::Result<(usize, bool)> {
    let n = conn.read_tls(sock)?;
    let state = conn
        .process_new_packets()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((n, state.peer_has_closed()))
}

fn relay(ends: &mut [End<'_>; 2], idle: Duration) -> Relayed {
    let mut done = Relayed::default();
    for end in ends.iter_mut() {
        if let Err(e) = end.set_timeouts(idle) {
            done.error = Some(Error::from_io(Phase::Read, e));
            return done;
        }
    }
    let mut buf = vec![0u8; CHUNK];
    // `open[i]`: bytes may still come from end i (to be written to end 1 - i).
    let mut open = [true, true];
    let wait = if idle.is_zero() {
        Duration::from_secs(u64::from(u32::MAX))
    } else {
        idle
    };
    while open[0] || open[1] {
        let mut ready = [false; 2];
        for i in 0..2 {
            ready[i] = match ends[i].ready_now() {
                Ok(now) => open[i] && now,
                Err(e) => {
                    done.error = Some(Error::from_io(Phase::Read, e));
                    let _ = ends[1 - i].close_write();
                    return done;
                }
            };
        }
        if !ready.contains(&true) {
            let socks = [
                open[0].then(|| ends[0].tcp()),
                open[1].then(|| ends[1].tcp()),
            ];
            match crate::sys::wait_readable(socks, wait) {
                Ok(r) if r.contains(&true) => ready = r,
                Ok(_) => {
                    done.error = Some(Error::Timeout { phase: Phase::Read });
                    break;
                }
                Err(e) => {
                    done.error = Some(Error::from_io(Phase::Read, e));
                    break;
                }
            }
        }
        for from in (0..2).filter(|&i| ready[i]) {
            let to = 1 - from;
            match ends[from].read(&mut buf) {
                Ok(None) => {}
                Ok(Some(0)) => {
                    open[from] = false;
                    if let Err(e) = ends[to].close_write() {
                        done.error.get_or_insert(e);
                    }
                }
                Ok(Some(n)) => {
                    if let Err(e) = ends[to].write_all(&buf[..n]) {
                        done.error = Some(Error::from_io(Phase::Write, e));
                        return done;
                    }
                    let count = if from == 0 {
                        &mut done.first_to_second
                    } else {
                        &mut done.second_to_first
                    };
                    *count += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // A reset, a TLS alert, a peer gone without close_notify: nothing more will
                    // come either way that can be trusted to be whole.
                    done.error = Some(Error::from_io(Phase::Read, e));
                    let _ = ends[to].close_write();
                    return done;
                }
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::net::TcpListener;

    /// Two connected sockets: (the relay's end, the outside end).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let outside = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (inside, _) = listener.accept().unwrap();
        outside
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (inside, outside)
    }

    #[test]
    fn the_end_of_one_direction_is_passed_on_and_the_other_goes_on() {
        let (a_in, mut a_out) = pair();
        let (b_in, mut b_out) = pair();
        let relay =
            std::thread::spawn(move || relay_sockets(&a_in, &b_in, Duration::from_secs(10)));
        a_out.write_all(b"request").unwrap();
        a_out.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        b_out.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"request");
        // The answer still flows after the request's end (a half-closed connection).
        b_out.write_all(&vec![7u8; 100_000]).unwrap();
        drop(b_out);
        let mut answer = Vec::new();
        a_out.read_to_end(&mut answer).unwrap();
        assert_eq!(answer.len(), 100_000);
        let done = relay.join().unwrap();
        assert!(done.error.is_none(), "{:?}", done.error);
        assert_eq!((done.first_to_second, done.second_to_first), (7, 100_000));
    }

    #[test]
    fn silence_on_both_ends_ends_the_relay_as_a_timeout() {
        let (a_in, _a_out) = pair();
        let (b_in, _b_out) = pair();
        let done = relay_sockets(&a_in, &b_in, Duration::from_millis(50));
        assert_eq!(done.error.map(|e| e.kind()), Some(ErrorKind::Timeout));
    }

    #[test]
    fn a_reset_ends_the_relay_with_an_error() {
        let (a_in, a_out) = pair();
        let (b_in, mut b_out) = pair();
        // SO_LINGER 0 would be a reset; closing with unread data does the same on Linux.
        (&a_in).write_all(b"unread").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(a_out);
        let done = relay_sockets(&a_in, &b_in, Duration::from_secs(10));
        assert!(done.error.is_some(), "{done:?}");
        let mut rest = Vec::new();
        let _ = b_out.read_to_end(&mut rest);
        assert!(rest.is_empty());
    }
}
