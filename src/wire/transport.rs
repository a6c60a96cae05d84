//! What the line reader needs from a byte stream: look without taking, then take exactly.
//!
//! A plain socket peeks with `MSG_PEEK`, so bytes past a reply stay in the kernel where the
//! go-ahead check can see them. A TLS stream has no kernel buffer to leave them in, so it keeps
//! a small look-ahead that the connection later hands to the application: nothing is lost.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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

impl Transport for TcpStream {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::peek(self, buf)
    }

    fn consume(&mut self, mut n: usize) -> io::Result<()> {
        let mut scratch = [0u8; 4096];
        while n > 0 {
            let want = n.min(scratch.len());
            match Read::read(self, &mut scratch[..want]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(got) => n -= got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn pending_now(&mut self) -> io::Result<usize> {
        self.set_nonblocking(true)?;
        let mut probe = [0u8; 1024];
        let r = TcpStream::peek(self, &mut probe);
        self.set_nonblocking(false)?;
        match r {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(self, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Write::flush(self)
    }

    fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }

    fn set_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
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

/// Anything readable and writable: a TLS stream of either side.
pub(crate) trait ReadWrite: Read + Write {}

impl<T: Read + Write> ReadWrite for T {}

/// A TLS stream seen as a transport, for dialog steps inside TLS (capabilities again, the
/// implicit-TLS greeting). `lookahead` belongs to the connection, which serves it to `read` first;
/// `sock` is a handle on the same socket, for its timeouts.
pub(crate) struct TlsTransport<'a> {
    pub stream: &'a mut dyn ReadWrite,
    pub sock: TcpStream,
    pub lookahead: &'a mut ReadBuffer,
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
        self.sock.set_read_timeout(t)
    }

    fn set_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(t)
    }
}
