//! The socket calls std does not offer, through rustix (no `unsafe` here): a vectored send that
//! never raises SIGPIPE, whether the caller put a socket in non-blocking mode, and the calls the
//! dialog before TLS is built on: a wait with the time left (poll), a peek and a send that never
//! block (`MSG_DONTWAIT`), so that no socket option is set per step.
//!
//! std sends single buffers with `MSG_NOSIGNAL`, but its vectored write is `writev`, which has no
//! flags: rustls writes TLS records that way, so a write to a peer that has gone away killed the
//! host process (a C program with the default SIGPIPE disposition). A library must never raise a
//! signal in its host; a dead peer is an error code.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::ops::Deref;

use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags, recv, send, sendmsg};

/// A connected socket whose every send carries `MSG_NOSIGNAL` (what TLS streams are built on).
#[derive(Debug)]
pub(crate) struct Socket(TcpStream);

impl Socket {
    pub fn new(tcp: TcpStream) -> Socket {
        Socket(tcp)
    }
}

impl Deref for Socket {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        &self.0
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Socket {
    /// `send(MSG_NOSIGNAL)` (std's own single-buffer write).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    /// `sendmsg(MSG_NOSIGNAL)`: all the buffers in one call, as `writev` would, without SIGPIPE.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut control = SendAncillaryBuffer::default();
        Ok(sendmsg(&self.0, bufs, &mut control, SendFlags::NOSIGNAL)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Waits until the socket is readable (or writable, with `write`), at most `timeout`; false when
/// the time ran out. Interrupted waits are retried with the whole timeout (a bound, not exact).
pub(crate) fn wait(tcp: &TcpStream, write: bool, timeout: Duration) -> io::Result<bool> {
    let events = if write { PollFlags::OUT } else { PollFlags::IN };
    let ts = Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    loop {
        let mut fds = [PollFd::new(tcp, events)];
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until one of the given sockets is readable (data, end of stream or an error), at most
/// `timeout`; says which. `None` entries are not waited on. All false when the time ran out.
pub(crate) fn wait_readable(
    socks: [Option<&TcpStream>; 2],
    timeout: Duration,
) -> io::Result<[bool; 2]> {
    let ts = Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let which: Vec<usize> = (0..2).filter(|&i| socks[i].is_some()).collect();
    loop {
        let mut fds: Vec<PollFd<'_>> = socks
            .iter()
            .flatten()
            .map(|s| PollFd::new(*s, PollFlags::IN))
            .collect();
        match poll(&mut fds, Some(&ts)) {
            Ok(_) => {
                let mut ready = [false; 2];
                for (fd, &i) in fds.iter().zip(&which) {
                    ready[i] = !fd.revents().is_empty();
                }
                return Ok(ready);
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Copies what is waiting into `buf` without taking it and without waiting: `Ok(0)` when
/// nothing is there, `UnexpectedEof` when the peer closed.
pub(crate) fn peek_now(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    match recv(tcp, &mut *buf, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((_, 0)) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok((_, n)) => Ok(n.min(buf.len())),
        Err(rustix::io::Errno::AGAIN) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Sends what the socket takes now, without waiting and without SIGPIPE; `Ok(0)` when its buffer
/// is full.
pub(crate) fn send_now(tcp: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    match send(tcp, buf, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::AGAIN) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Whether `O_NONBLOCK` is set on the socket (by the caller: the library itself only ever
/// switches it on for a moment and back).
pub(crate) fn is_nonblocking(tcp: &TcpStream) -> bool {
    rustix::fs::fcntl_getfl(tcp).is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn peeks_and_waits_never_block_past_their_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(peek_now(&client, &mut buf).unwrap(), 0);
        assert!(!wait(&client, false, Duration::from_millis(20)).unwrap());
        server.write_all(b"220 hi\r\n").unwrap();
        assert!(wait(&client, false, Duration::from_secs(5)).unwrap());
        assert_eq!(peek_now(&client, &mut buf).unwrap(), 8);
        // Peeking takes nothing.
        assert_eq!(peek_now(&client, &mut buf).unwrap(), 8);
        assert!(wait(&client, true, Duration::from_secs(5)).unwrap());
        assert_eq!(send_now(&client, b"EHLO x\r\n").unwrap(), 8);
        let mut ehlo = [0u8; 8];
        server.read_exact(&mut ehlo).unwrap();
        drop(server);
        let mut rest = [0u8; 8];
        std::io::Read::read_exact(&mut &client, &mut rest).unwrap();
        assert!(wait(&client, false, Duration::from_secs(5)).unwrap());
        assert_eq!(
            peek_now(&client, &mut buf).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn non_blocking_mode_is_seen() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(!is_nonblocking(&tcp));
        tcp.set_nonblocking(true).unwrap();
        assert!(is_nonblocking(&tcp));
    }

    #[test]
    fn a_vectored_write_to_a_closed_peer_is_an_error_not_a_signal() {
        // The test harness keeps SIGPIPE's default disposition for this check to mean anything
        // only in a C host (tests/c/sigpipe.c); here the error itself is checked.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sock = Socket::new(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
        drop(listener.accept().unwrap());
        let chunk = [0u8; 4096];
        let mut failed = None;
        for _ in 0..64 {
            if let Err(e) = sock.write_vectored(&[IoSlice::new(&chunk), IoSlice::new(&chunk)]) {
                failed = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let e = failed.expect("writes to a closed peer kept succeeding");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{e:?}"
        );
    }
}
