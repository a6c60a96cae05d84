//! Bounded, deadline-driven reading and writing of protocol lines and messages, over a plain
//! socket before TLS and over the TLS stream for the steps a dialog runs inside it.
//!
//! The go-ahead rule (DESIGN §4.1.1) lives here: the reader *peeks* at the socket and consumes
//! exactly one line at a time, so it never takes a byte past the end of a reply out of the kernel.
//! Anything still waiting after the go-ahead is reported as an injection by
//! [`Wire::ensure_nothing_after_go_ahead`], and nothing the reader saw is ever handed to TLS.

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::error::{Error, Phase, Result};
pub use crate::text::escape_controls;

pub(crate) mod ber;
pub(crate) mod transport;
pub(crate) mod xml;

pub(crate) use transport::Transport;

/// Bounds on what a peer may send before TLS. Exceeding one is a protocol violation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Longest accepted line, CRLF excluded.
    pub max_line: usize,
    /// Most lines in one reply (continuations, untagged responses, list items).
    pub max_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8192,
            max_lines: 512,
        }
    }
}

/// An instant by which a step must be finished, and the phase it belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    at: Instant,
    phase: Phase,
}

impl Deadline {
    pub fn after(timeout: Duration, phase: Phase) -> Deadline {
        let now = Instant::now();
        // An absurdly large timeout saturates instead of overflowing.
        let at = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(86400 * 365));
        Deadline { at, phase }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Time left, or a timeout error naming the phase once it has run out.
    /// This deadline, or `limit` if that comes first.
    pub fn not_after(self, limit: &Deadline) -> Deadline {
        Deadline {
            at: self.at.min(limit.at),
            phase: self.phase,
        }
    }

    pub fn remaining(&self) -> Result<Duration> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(Error::Timeout { phase: self.phase })
        } else {
            Ok(left)
        }
    }
}

/// Which way a line went, for logs and transcripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From this side to the peer.
    Sent,
    /// From the peer to this side.
    Received,
}

/// One line of the dialog, as a transcript keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialogLine {
    /// Who said it.
    pub direction: Direction,
    /// True when it travelled inside TLS.
    pub encrypted: bool,
    /// The line without its CRLF, control characters escaped.
    pub text: String,
}

/// A function that sees every dialog line as it happens (for logs and `-v`).
pub type DialogObserver = dyn Fn(&DialogLine) + Send + Sync;

/// The line reader/writer every text protocol's dialog runs on.
pub(crate) struct Wire<'a> {
    io: &'a mut dyn Transport,
    limits: Limits,
    encrypted: bool,
    transcript: Vec<DialogLine>,
    observer: Option<&'a DialogObserver>,
}

impl<'a> Wire<'a> {
    /// A wire over a plaintext transport.
    pub fn new(io: &'a mut dyn Transport, limits: Limits) -> Self {
        Wire {
            io,
            limits,
            encrypted: false,
            transcript: Vec::new(),
            observer: None,
        }
    }

    /// Calls `observer` with each line as it is sent or received.
    pub fn observed_by(mut self, observer: Option<&'a DialogObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// A wire over a TLS transport (the transcript marks its lines as encrypted).
    pub fn inside_tls(io: &'a mut dyn Transport, limits: Limits) -> Self {
        Wire {
            encrypted: true,
            ..Wire::new(io, limits)
        }
    }

    fn record(&mut self, direction: Direction, text: String) {
        let line = DialogLine {
            direction,
            encrypted: self.encrypted,
            text,
        };
        if let Some(observe) = self.observer {
            observe(&line);
        }
        self.transcript.push(line);
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The last line received, as the transcript shows it.
    pub fn last_received(&self) -> Option<&str> {
        self.transcript
            .iter()
            .rev()
            .find(|l| l.direction == Direction::Received)
            .map(|l| l.text.as_str())
    }

    /// What was said so far, in order, with secrets never included (the dialog has none).
    pub fn take_transcript(&mut self) -> Vec<DialogLine> {
        std::mem::take(&mut self.transcript)
    }

    /// Reads one CRLF-terminated line (returned without the CRLF) before `deadline`.
    ///
    /// Consumes exactly the line's bytes. Rejects a line longer than the limit, a bare LF or CR,
    /// and NUL bytes. A close before the line ends is [`Error::Closed`].
    pub fn read_line(&mut self, deadline: &Deadline) -> Result<Vec<u8>> {
        let line = self.read_line_unrecorded(deadline)?;
        self.record(Direction::Received, line_text(&line));
        Ok(line)
    }

    /// As [`read_line`](Self::read_line), but the transcript and observer do not see the line:
    /// the caller notes what may be shown (a server redacting credentials a client sent).
    pub fn read_line_unrecorded(&mut self, deadline: &Deadline) -> Result<Vec<u8>> {
        let phase = deadline.phase();
        let mut line: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        // Room for the longest line plus its CRLF; one byte more proves a line too long.
        let cap = self.limits.max_line + 3;
        loop {
            let left = deadline.remaining()?;
            self.io
                .set_read_timeout(Some(left))
                .map_err(|e| Error::from_io(phase, e))?;
            let want = chunk.len().min(cap - line.len());
            let n = retry_interrupted(|| self.io.peek(&mut chunk[..want]))
                .map_err(|e| Error::from_io(phase, e))?;
            if n == 0 {
                return Err(Error::Closed { phase });
            }
            let seen = &chunk[..n];
            let take = match seen.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => n,
            };
            self.io
                .consume(take)
                .map_err(|e| Error::from_io(phase, e))?;
            line.extend_from_slice(&seen[..take]);
            if line.last() == Some(&b'\n') {
                break;
            }
            if line.len() > self.limits.max_line + 1 {
                return Err(Error::violation(
                    phase,
                    format!("line longer than {} bytes", self.limits.max_line),
                ));
            }
        }
        if line.len() < 2 || line[line.len() - 2] != b'\r' {
            return Err(Error::violation_in(
                phase,
                "line ended with a bare LF instead of CRLF",
                &printable(&line),
            ));
        }
        line.truncate(line.len() - 2);
        if line.len() > self.limits.max_line {
            return Err(Error::violation(
                phase,
                format!("line longer than {} bytes", self.limits.max_line),
            ));
        }
        if line.contains(&0) {
            return Err(Error::violation_in(
                phase,
                "NUL byte in line",
                &printable(&line),
            ));
        }
        if line.contains(&b'\r') {
            return Err(Error::violation_in(
                phase,
                "bare CR in line",
                &printable(&line),
            ));
        }
        Ok(line)
    }

    /// A complete line that is already waiting, read as [`read_line`](Self::read_line) reads
    /// one; `None` when nothing, or only part of a line, is waiting. Never waits for the peer.
    pub fn waiting_line(&mut self, deadline: &Deadline) -> Result<Option<Vec<u8>>> {
        let phase = deadline.phase();
        let pending = self
            .io
            .pending_now()
            .map_err(|e| Error::from_io(phase, e))?;
        if pending == 0 {
            return Ok(None);
        }
        let mut look = vec![0u8; self.limits.max_line + 2];
        let n =
            retry_interrupted(|| self.io.peek(&mut look)).map_err(|e| Error::from_io(phase, e))?;
        if !look[..n].contains(&b'\n') {
            return Ok(None);
        }
        self.read_line(deadline).map(Some)
    }

    /// Consumes whitespace already waiting (XMPP keepalives between elements), at most `max`
    /// bytes in all; anything else stays waiting for the caller's checks. Never waits.
    pub fn skip_waiting_whitespace(&mut self, deadline: &Deadline, max: usize) -> Result<()> {
        let phase = deadline.phase();
        let mut skipped = 0;
        loop {
            let pending = self
                .io
                .pending_now()
                .map_err(|e| Error::from_io(phase, e))?;
            if pending == 0 {
                return Ok(());
            }
            let mut look = [0u8; 512];
            let n = retry_interrupted(|| self.io.peek(&mut look))
                .map_err(|e| Error::from_io(phase, e))?;
            let blank = look[..n]
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .count();
            if skipped + blank > max {
                return Err(Error::violation(
                    phase,
                    format!("more than {max} bytes of whitespace waiting"),
                ));
            }
            if blank == 0 {
                return Ok(());
            }
            self.io
                .consume(blank)
                .map_err(|e| Error::from_io(phase, e))?;
            skipped += blank;
            if blank < n {
                return Ok(());
            }
        }
    }

    /// Reads exactly `n` bytes (binary protocols) before `deadline`, consuming nothing more.
    pub fn read_bytes(&mut self, n: usize, deadline: &Deadline) -> Result<Vec<u8>> {
        let phase = deadline.phase();
        let mut out = Vec::with_capacity(n.min(4096));
        let mut chunk = [0u8; 4096];
        while out.len() < n {
            let left = deadline.remaining()?;
            self.io
                .set_read_timeout(Some(left))
                .map_err(|e| Error::from_io(phase, e))?;
            let want = chunk.len().min(n - out.len());
            let got = retry_interrupted(|| self.io.peek(&mut chunk[..want]))
                .map_err(|e| Error::from_io(phase, e))?;
            if got == 0 {
                return Err(Error::Closed { phase });
            }
            self.io.consume(got).map_err(|e| Error::from_io(phase, e))?;
            out.extend_from_slice(&chunk[..got]);
        }
        Ok(out)
    }

    /// Records a line of a binary dialog in the transcript (a description, not the bytes).
    pub fn note(&mut self, direction: Direction, text: String) {
        self.record(direction, text);
    }

    /// Sends one command line (CRLF appended) before `deadline`.
    ///
    /// Checks first that the peer has not sent anything unasked: a reply that arrives before its
    /// command is a desynchronisation attempt, and is refused rather than read later.
    pub fn send_line(&mut self, line: &str, deadline: &Deadline) -> Result<()> {
        self.ensure_quiet(deadline.phase(), &format!(" before `{line}`"))?;
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send_raw(&bytes, deadline)?;
        self.record(Direction::Sent, line.to_owned());
        Ok(())
    }

    /// Sends a line that carries a secret: the transcript and the observer see `shown` instead,
    /// and the encoded line is wiped after sending.
    pub fn send_secret_line(&mut self, line: &str, shown: &str, deadline: &Deadline) -> Result<()> {
        self.ensure_quiet(deadline.phase(), &format!(" before `{shown}`"))?;
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(line.len() + 2));
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send_raw(&bytes, deadline)?;
        self.record(Direction::Sent, shown.to_owned());
        Ok(())
    }

    /// Sends a reply of one or more CRLF-terminated lines, without the unsolicited-data check
    /// (a server may legitimately have pipelined commands waiting).
    pub fn send_reply(&mut self, reply: &str, deadline: &Deadline) -> Result<()> {
        self.send_raw(reply.as_bytes(), deadline)?;
        for line in reply.split("\r\n").filter(|l| !l.is_empty()) {
            self.record(Direction::Sent, line.to_owned());
        }
        Ok(())
    }

    /// Sends bytes as they are, after the same unsolicited-data check as
    /// [`send_line`](Self::send_line) (binary protocols).
    pub fn send_message(&mut self, bytes: &[u8], deadline: &Deadline) -> Result<()> {
        self.ensure_quiet(deadline.phase(), "")?;
        self.send_raw(bytes, deadline)
    }

    /// The unsolicited-data check alone, for a caller that sends in its own way.
    pub fn ensure_quiet_for(&mut self, phase: Phase) -> Result<()> {
        self.ensure_quiet(phase, "")
    }

    /// A reply that arrives before its command is a desynchronisation attempt: refuse it.
    fn ensure_quiet(&mut self, phase: Phase, context: &str) -> Result<()> {
        let pending = self
            .io
            .pending_now()
            .map_err(|e| Error::from_io(phase, e))?;
        if pending > 0 {
            return Err(Error::violation(
                phase,
                format!("{pending} byte(s) of unsolicited data from the peer{context}"),
            ));
        }
        Ok(())
    }

    /// Sends bytes as they are (binary protocols, or a line already framed).
    pub fn send_raw(&mut self, bytes: &[u8], deadline: &Deadline) -> Result<()> {
        let phase = deadline.phase();
        let left = deadline.remaining()?;
        self.io
            .set_write_timeout(Some(left))
            .map_err(|e| Error::from_io(phase, e))?;
        self.io
            .write_all(bytes)
            .map_err(|e| Error::from_io(phase, e))?;
        self.io.flush().map_err(|e| Error::from_io(phase, e))
    }

    /// The go-ahead rule: after the reply that starts TLS, nothing may be waiting.
    pub fn ensure_nothing_after_go_ahead(&mut self) -> Result<()> {
        let pending = self
            .io
            .pending_now()
            .map_err(|e| Error::from_io(Phase::StartTls, e))?;
        if pending > 0 {
            return Err(Error::Injection {
                bytes: pending,
                detail: "received right after the go-ahead reply".into(),
            });
        }
        Ok(())
    }
}

fn retry_interrupted<R>(mut f: impl FnMut() -> io::Result<R>) -> io::Result<R> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Peer bytes as text for parsing and reporting: lossy UTF-8 with control characters escaped,
/// never truncated (lines are already bounded).
pub(crate) fn line_text(bytes: &[u8]) -> String {
    escape_controls(&String::from_utf8_lossy(bytes)).into_owned()
}

/// Renders peer bytes for messages: lossy UTF-8, control characters escaped, length capped, so a
/// hostile reply cannot forge log lines or drive a terminal.
pub(crate) fn printable(bytes: &[u8]) -> String {
    const MAX: usize = 512;
    let text = line_text(bytes);
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Puts a socket the way every step expects it: blocking (each step is bounded by its own
/// deadline), with `TCP_NODELAY` so that flights go out whole, with no Nagle stall between a
/// command and the handshake (DESIGN §6). `ours`: the library connected it itself, already in
/// blocking mode (one system call fewer).
pub(crate) fn prepare_socket(tcp: &TcpStream, ours: bool) -> Result<()> {
    if !ours {
        tcp.set_nonblocking(false)
            .map_err(|e| Error::from_io(Phase::Connect, e))?;
    }
    tcp.set_nodelay(true)
        .map_err(|e| Error::from_io(Phase::Connect, e))
}

/// Sets the socket's timeouts for application I/O after the dialog.
pub(crate) fn set_io_timeouts(sock: &TcpStream, timeout: Duration) -> io::Result<()> {
    let t = if timeout.is_zero() {
        None
    } else {
        Some(timeout)
    };
    sock.set_read_timeout(t)?;
    sock.set_write_timeout(t)
}

#[cfg(test)]
pub(crate) mod script;

#[cfg(test)]
mod tests {
    use super::script::{Script, Step};
    use super::*;
    use crate::error::ErrorKind;

    fn deadline() -> Deadline {
        Deadline::after(Duration::from_secs(5), Phase::Greeting)
    }

    fn read_one(steps: Vec<Step>) -> (Result<Vec<u8>>, Script) {
        let mut s = Script::new(steps);
        let r = Wire::new(&mut s, Limits::default()).read_line(&deadline());
        (r, s)
    }

    #[test]
    fn bare_lf_is_rejected() {
        let (r, _) = read_one(vec![Step::Server(b"220 hi\n")]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn bare_cr_inside_a_line_is_rejected() {
        let (r, _) = read_one(vec![Step::Server(b"220 a\rb\r\n")]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn nul_is_rejected() {
        let (r, _) = read_one(vec![Step::Server(b"220 a\0b\r\n")]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn a_line_of_megabytes_is_rejected_with_bounded_reads() {
        let huge: &'static [u8] = Box::leak(vec![b'A'; 4 << 20].into_boxed_slice());
        let (r, s) = read_one(vec![Step::Server(huge)]);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProtocolViolation);
        assert!(e.to_string().contains("longer than"));
        // It gave up after about one line's worth, not after reading 4 MiB.
        assert!(s.consumed() < 3 * 8192, "consumed {}", s.consumed());
    }

    #[test]
    fn close_mid_line_is_closed() {
        let (r, _) = read_one(vec![Step::Server(b"220 half"), Step::Eof]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Closed);
    }

    #[test]
    fn stall_is_a_timeout_naming_the_phase() {
        let (r, _) = read_one(vec![Step::Server(b"220 ha"), Step::Stall]);
        assert!(matches!(
            r.unwrap_err(),
            Error::Timeout {
                phase: Phase::Greeting
            }
        ));
    }

    #[test]
    fn reads_exactly_one_line_and_leaves_the_rest() {
        let (r, s) = read_one(vec![Step::Server(b"220 one\r\n250 two\r\n")]);
        assert_eq!(r.unwrap(), b"220 one");
        assert_eq!(s.consumed(), 9);
    }

    #[test]
    fn a_line_split_over_segments_is_joined() {
        let (r, _) = read_one(vec![
            Step::Server(b"22"),
            Step::Server(b"0 split"),
            Step::Server(b"\r"),
            Step::Server(b"\n"),
        ]);
        assert_eq!(r.unwrap(), b"220 split");
    }

    #[test]
    fn unsolicited_data_before_a_command_is_refused() {
        let mut s = Script::new(vec![Step::Server(b"250 early\r\n")]);
        let mut w = Wire::new(&mut s, Limits::default());
        let e = w
            .send_line(
                "EHLO x",
                &Deadline::after(Duration::from_secs(1), Phase::Capabilities),
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProtocolViolation);
        assert!(e.to_string().contains("unsolicited"));
    }

    #[test]
    fn bytes_after_go_ahead_are_injection() {
        let mut s = Script::new(vec![Step::Server(b"220 go\r\nEVIL\r\n")]);
        let mut w = Wire::new(&mut s, Limits::default());
        w.read_line(&deadline()).unwrap();
        let e = w.ensure_nothing_after_go_ahead().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Injection);
    }

    #[test]
    fn printable_escapes_controls_and_caps_length() {
        assert_eq!(printable(b"a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable(b"\xff"), "\u{fffd}");
        assert!(printable(&[b'x'; 2000]).len() < 600);
    }

    #[test]
    fn escaping_covers_c0_del_and_c1_and_is_idempotent() {
        let raw = "a\u{1b}[2J\u{7}\u{7f}\u{9b}31m\u{85}z";
        let once = escape_controls(raw).into_owned();
        assert!(!once.chars().any(char::is_control), "{once:?}");
        assert_eq!(once, "a\\u{1b}[2J\\u{7}\\u{7f}\\u{9b}31m\\u{85}z");
        assert_eq!(escape_controls(&once), once);
        assert!(matches!(
            escape_controls("plain"),
            std::borrow::Cow::Borrowed("plain")
        ));
        assert_eq!(line_text(b"x\xc2\x9by"), "x\\u{9b}y");
    }

    #[test]
    fn expired_deadline_is_a_timeout() {
        let d = Deadline::after(Duration::ZERO, Phase::Handshake);
        assert!(matches!(
            d.remaining(),
            Err(Error::Timeout {
                phase: Phase::Handshake
            })
        ));
    }
}
