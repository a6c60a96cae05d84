//! What the line reader needs from a byte stream: look without taking, then take exactly.
//!
//! A plain socket peeks with `MSG_PEEK`, so bytes past a reply stay in the kernel where the
//! go-ahead check can see them. A TLS stream has no kernel buffer to leave them in, so it keeps
//! a small look-ahead that the connection later hands to the application: nothing is lost.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use crate::sys::Socket;
use std::time::{Duration, Instant};

pub(crate) trait Transport {
    /// Copies waiting bytes into `buf` without consuming them; blocks until at least one byte is
    /// there or the peer closed (`Ok(0)`).
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Consumes `n` bytes that a previous `peek` showed.
    fn consume(&mut self, n: usize) -> io::Result<()>;
    /// How many bytes are waiting right now, without blocking.
    fn pending_now(&mut self) -> io::Result<usize>;
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
    fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()>;
}

/// A plain socket as the dialog before TLS sees it. Every wait is a `poll()` with the time
/// left and every peek or send is non-blocking, so no socket option is set per step. What one
/// peek showed is remembered (it is still in the kernel, untaken), so the lines of a multi-line
/// reply cost one read each, not a wait, a peek and a read each.
pub(crate) struct PlainTransport<'a> {
    tcp: &'a TcpStream,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// The head of the kernel's receive queue, as last peeked: a prefix of what is there.
    seen: Vec<u8>,
    /// Nothing has been read since this side last sent (or ever), and the peer is slow to
    /// answer (a server waiting for a client's next command): wait before peeking instead of
    /// peeking twice. A client's peer answers at once on loopback, so there the peek comes first.
    answer_due: bool,
    wait_first: bool,
}

impl<'a> PlainTransport<'a> {
    /// `wait_first`: the peer usually takes a while to answer (this side is the server).
    pub fn new(tcp: &'a TcpStream, wait_first: bool) -> PlainTransport<'a> {
        PlainTransport {
            wait_first,
            tcp,
            read_timeout: None,
            write_timeout: None,
            seen: Vec::new(),
            answer_due: wait_first,
        }
    }
}

/// A wait without a timeout set still ends (the dialog always sets one).
const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// How much one peek looks at: a whole line and its CRLF fit.
const PEEK_SIZE: usize = 8 * 1024 + 16;

impl Transport for PlainTransport<'_> {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.seen.is_empty() {
            self.seen.resize(PEEK_SIZE, 0);
            let started = Instant::now();
            let timeout = self.read_timeout.unwrap_or(MAX_WAIT);
            let mut n = if self.answer_due {
                Ok(0)
            } else {
                crate::sys::peek_now(self.tcp, &mut self.seen)
            };
            self.answer_due = false;
            // Wait for data with the time left (a wake-up with nothing to read waits again).
            while matches!(n, Ok(0)) {
                let left = timeout.saturating_sub(started.elapsed());
                if left.is_zero() || !crate::sys::wait(self.tcp, false, left)? {
                    self.seen.clear();
                    return Err(io::ErrorKind::TimedOut.into());
                }
                n = crate::sys::peek_now(self.tcp, &mut self.seen);
            }
            match n {
                Ok(n) => self.seen.truncate(n),
                Err(e) => {
                    self.seen.clear();
                    return match e.kind() {
                        io::ErrorKind::UnexpectedEof => Ok(0),
                        _ => Err(e),
                    };
                }
            }
        }
        let n = buf.len().min(self.seen.len());
        buf[..n].copy_from_slice(&self.seen[..n]);
        Ok(n)
    }

    fn consume(&mut self, mut n: usize) -> io::Result<()> {
        self.seen.drain(..n.min(self.seen.len()));
        let mut scratch = [0u8; 4096];
        while n > 0 {
            let want = n.min(scratch.len());
            match Read::read(&mut &*self.tcp, &mut scratch[..want]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(got) => n -= got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn pending_now(&mut self) -> io::Result<usize> {
        if !self.seen.is_empty() {
            return Ok(self.seen.len());
        }
        let mut probe = [0u8; 1024];
        match crate::sys::peek_now(self.tcp, &mut probe) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        self.answer_due = self.wait_first;
        while !buf.is_empty() {
            let n = crate::sys::send_now(self.tcp, buf)?;
            if n == 0 {
                let timeout = self.write_timeout.unwrap_or(MAX_WAIT);
                if !crate::sys::wait(self.tcp, true, timeout)? {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.read_timeout = t;
        Ok(())
    }

    fn set_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.write_timeout = t;
        Ok(())
    }
}

/// Decrypted bytes read from TLS and not yet handed out: the connection's read buffer, shared by
/// the dialog steps inside TLS (which must not lose what follows a reply) and by `read` /
/// `BufRead`. Consuming moves an index, not the bytes. While data streams in (full refills) the
/// allocation is kept, so a bulk reader pays for it once; after a small read it is released once
/// empty, so a connection idling after a command-and-reply exchange holds none.
#[derive(Default)]
pub(crate) struct ReadBuffer {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The last refill was large: more is probably on its way, keep the allocation.
    streaming: bool,
}

/// How much one refill asks the TLS stream for: a whole TLS record's plaintext.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

impl ReadBuffer {
    /// The bytes not yet consumed.
    pub fn available(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            if !self.streaming {
                self.buf = Vec::new();
            }
        }
    }

    /// Reads once more from `stream`, after what is waiting (moved to the front first), so that a
    /// line longer than one refill can be seen whole; the buffer grows to at most `max` bytes
    /// waiting. Returns the count, 0 at the end of the stream.
    pub fn fill_more(&mut self, stream: &mut dyn Read, max: usize) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            (self.pos, self.end) = (0, self.end - self.pos);
        }
        let want = (self.end + READ_CHUNK).min(max.max(self.end + 1));
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let n = loop {
            match stream.read(&mut self.buf[self.end..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.end += n;
        self.streaming = true;
        Ok(n)
    }

    /// Reads once from `stream` into the buffer (which must be empty); returns the count, 0 at
    /// the end of the stream.
    pub fn refill(&mut self, stream: &mut dyn Read) -> io::Result<usize> {
        debug_assert!(self.is_empty());
        if self.buf.len() < READ_CHUNK {
            self.buf.resize(READ_CHUNK, 0);
        }
        let result = loop {
            match stream.read(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = *result.as_ref().unwrap_or(&0);
        (self.pos, self.end) = (0, n);
        self.streaming = n >= READ_CHUNK / 4;
        if n == 0 {
            self.buf = Vec::new();
        }
        result
    }
}

/// A TLS stream of either side, and the socket under it (for its timeouts).
pub(crate) trait TlsStream: Read + Write {
    fn socket(&self) -> &TcpStream;
}

impl TlsStream for rustls::StreamOwned<rustls::ClientConnection, Socket> {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

impl TlsStream for rustls::StreamOwned<rustls::ServerConnection, Socket> {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

/// A TLS stream seen as a transport, for dialog steps inside TLS (capabilities again, the
/// implicit-TLS greeting). `lookahead` belongs to the connection, which serves it to `read` first.
pub(crate) struct TlsTransport<'a> {
    pub stream: &'a mut dyn TlsStream,
    pub lookahead: &'a mut ReadBuffer,
    /// A step set the socket's read timeout, which must go back to the I/O timeout afterwards.
    pub read_timeout_changed: bool,
}

impl Transport for TlsTransport<'_> {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.lookahead.is_empty() {
            self.lookahead.refill(&mut *self.stream)?;
        }
        let waiting = self.lookahead.available();
        let n = buf.len().min(waiting.len());
        buf[..n].copy_from_slice(&waiting[..n]);
        Ok(n)
    }

    fn consume(&mut self, n: usize) -> io::Result<()> {
        if n > self.lookahead.available().len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.lookahead.consume(n);
        Ok(())
    }

    fn pending_now(&mut self) -> io::Result<usize> {
        Ok(self.lookahead.available().len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.stream.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }

    fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.read_timeout_changed = true;
        self.stream.socket().set_read_timeout(t)
    }

    /// Commands inside TLS are a few hundred bytes: the socket takes them at once, and the
    /// connection's I/O write timeout bounds them; no socket option per command.
    fn set_write_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}
