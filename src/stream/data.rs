//! Application data through a connection: `Read`, `BufRead` and `Write` over one read buffer,
//! bounded line reads, what is pending inside the library, non-blocking mode, timeouts.

use std::io::{self, BufRead, Read, Write};
use std::time::Duration;

use super::{Connection, Inner};
use crate::error::{Error, Phase, Result};
use crate::wire::set_io_timeouts;
use crate::wire::transport::READ_CHUNK;

impl Connection {
    /// Decrypted bytes that can be read now without touching the socket: what the connection
    /// buffered plus what TLS already decrypted. A `poll()` loop must drain these before it waits
    /// on the socket, which will not signal them.
    pub fn pending(&mut self) -> usize {
        let waiting = self.lookahead.available().len();
        let decrypted = match &mut self.inner {
            Inner::Tls(s) => s
                .conn
                .process_new_packets()
                .map(|io| io.plaintext_bytes_to_read()),
            Inner::ServerTls(s) => s
                .conn
                .process_new_packets()
                .map(|io| io.plaintext_bytes_to_read()),
            Inner::Plain(_) => Ok(0),
        };
        waiting + decrypted.unwrap_or(0)
    }

    /// True when TLS records are queued that the socket has not taken yet (a non-blocking socket
    /// that was full): wait until it is writable and [`flush`](Write::flush).
    pub fn wants_write(&self) -> bool {
        match &self.inner {
            Inner::Tls(s) => s.conn.wants_write(),
            Inner::ServerTls(s) => s.conn.wants_write(),
            Inner::Plain(_) => false,
        }
    }

    /// True when the socket is in non-blocking mode (the caller set `O_NONBLOCK` on it): reads
    /// and writes then fail with [`io::ErrorKind::WouldBlock`] instead of waiting.
    pub fn is_nonblocking(&self) -> bool {
        crate::sys::is_nonblocking(self.tcp_stream())
    }

    /// Reads one line (up to and including its LF) into `line`, through the connection's
    /// buffer, never past the line's end. A line longer than `max` bytes is an
    /// [`io::ErrorKind::InvalidData`] error and nothing is consumed; so is a
    /// [`io::ErrorKind::WouldBlock`] on a non-blocking socket (call again later). Returns the
    /// length, 0 at the end of the stream.
    pub fn read_line_bounded(&mut self, line: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        loop {
            let waiting = self.lookahead.available();
            if let Some(i) = waiting.iter().position(|&b| b == b'\n') {
                if i + 1 > max {
                    return Err(line_too_long(max));
                }
                line.extend_from_slice(&waiting[..=i]);
                self.lookahead.consume(i + 1);
                return Ok(i + 1);
            }
            if waiting.len() >= max {
                return Err(line_too_long(max));
            }
            let Connection {
                inner, lookahead, ..
            } = self;
            let stream = reader(inner);
            if lookahead.fill_more(stream, max)? == 0 {
                // The end of the stream: a last line without its LF.
                let rest = lookahead.available().to_vec();
                lookahead.consume(rest.len());
                line.extend_from_slice(&rest);
                return Ok(rest.len());
            }
        }
    }

    /// Sets this connection's read and write timeout, instead of the config's I/O timeout (an
    /// IMAP IDLE may wait 29 minutes on a config whose I/O timeout is 5). Zero means none.
    pub fn set_io_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.dialog.timeouts.io = timeout;
        set_io_timeouts(self.tcp_stream(), timeout).map_err(|e| Error::from_io(Phase::Read, e))
    }
}

fn line_too_long(max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("line longer than {max} bytes"),
    )
}

/// The stream underneath a connection, for reads that bypass (or refill) its buffer.
fn reader(inner: &mut Inner) -> &mut dyn Read {
    match inner {
        Inner::Tls(s) => &mut **s,
        Inner::ServerTls(s) => &mut **s,
        Inner::Plain(s) => s,
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.lookahead.is_empty() && buf.len() >= READ_CHUNK {
            // A large read goes straight through: no copy via the buffer.
            return reader(&mut self.inner).read(buf);
        }
        let waiting = self.fill_buf()?;
        let n = buf.len().min(waiting.len());
        buf[..n].copy_from_slice(&waiting[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Reads through the connection's buffer: `read_line`, `read_until` and `lines` take a TLS
/// record's worth at a time instead of one small read per call (bound line lengths yourself,
/// with `take`, when the peer is not trusted).
impl BufRead for Connection {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.lookahead.is_empty() {
            let Connection {
                inner, lookahead, ..
            } = self;
            let stream = reader(inner);
            lookahead.refill(stream)?;
        }
        Ok(self.lookahead.available())
    }

    fn consume(&mut self, n: usize) {
        self.lookahead.consume(n);
    }
}

/// The most plaintext handed to rustls per write: three full records, whose ciphertext (about
/// 48 KiB) goes out in one socket write below loopback's 64 KiB MTU. A whole 64 KiB write became
/// 65.6 KB of ciphertext, one full segment and a runt, and ran at half the throughput
/// (bench/run.sh, section 2); a multiple of 16 KiB keeps every record full.
const TLS_WRITE_CHUNK: usize = 3 * 16 * 1024;

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let chunk = &buf[..buf.len().min(TLS_WRITE_CHUNK)];
        match &mut self.inner {
            Inner::Tls(s) => s.write(chunk),
            Inner::ServerTls(s) => s.write(chunk),
            Inner::Plain(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Tls(s) => s.flush(),
            Inner::ServerTls(s) => s.flush(),
            Inner::Plain(s) => s.flush(),
        }
    }
}
