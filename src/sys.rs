//! The socket calls std does not offer, through rustix (no `unsafe` here): a vectored send that
//! never raises SIGPIPE, and whether the caller put a socket in non-blocking mode.
//!
//! std sends single buffers with `MSG_NOSIGNAL`, but its vectored write is `writev`, which has no
//! flags: rustls writes TLS records that way, so a write to a peer that has gone away killed the
//! host process (a C program with the default SIGPIPE disposition). A library must never raise a
//! signal in its host; a dead peer is an error code.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::ops::Deref;

use rustix::net::{SendAncillaryBuffer, SendFlags, sendmsg};

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
