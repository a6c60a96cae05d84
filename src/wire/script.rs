//! A scripted in-memory peer for unit tests of the dialogs.
//!
//! The script alternates what the peer sends and what the client must write. A read with
//! nothing to deliver and no further peer data behaves as a socket whose timeout fired.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use super::Transport;

#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// The peer sends these bytes (one segment).
    Server(&'static [u8]),
    /// The client must write exactly this.
    Client(&'static [u8]),
    /// The peer goes silent: reads time out.
    Stall,
    /// The peer closes the connection.
    Eof,
}

pub(crate) struct Script {
    steps: VecDeque<Step>,
    available: Vec<u8>,
    written: Vec<u8>,
    consumed: usize,
    /// Everything the client wrote, for assertions.
    pub all_written: Vec<u8>,
}

impl Script {
    pub fn new(steps: Vec<Step>) -> Self {
        Script {
            steps: steps.into(),
            available: Vec::new(),
            written: Vec::new(),
            consumed: 0,
            all_written: Vec::new(),
        }
    }

    /// Bytes the client has consumed from the peer.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// Script steps not yet played.
    pub fn remaining(&self) -> usize {
        self.steps.len()
    }

    pub fn written_text(&self) -> String {
        String::from_utf8_lossy(&self.all_written).into_owned()
    }

    /// Moves the next peer segment into the receive buffer when it is the peer's turn.
    fn arrive(&mut self) -> io::Result<bool> {
        if !self.available.is_empty() {
            return Ok(true);
        }
        match self.steps.front() {
            Some(Step::Server(b)) => {
                self.available.extend_from_slice(b);
                self.steps.pop_front();
                Ok(true)
            }
            Some(Step::Eof) | None => Ok(false),
            // Client's turn, or a stall: nothing will come.
            Some(Step::Client(_)) | Some(Step::Stall) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "script: peer silent",
            )),
        }
    }
}

impl Transport for Script {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.arrive()? {
            return Ok(0);
        }
        let n = buf.len().min(self.available.len());
        buf[..n].copy_from_slice(&self.available[..n]);
        Ok(n)
    }

    fn consume(&mut self, n: usize) -> io::Result<()> {
        assert!(n <= self.available.len(), "consumed more than peeked");
        self.available.drain(..n);
        self.consumed += n;
        Ok(())
    }

    fn pending_now(&mut self) -> io::Result<usize> {
        match self.arrive() {
            Ok(true) => Ok(self.available.len()),
            Ok(false) | Err(_) => Ok(0),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.all_written.extend_from_slice(buf);
        self.written.extend_from_slice(buf);
        while let Some(Step::Client(expected)) = self.steps.front() {
            if self.written.len() < expected.len() {
                break;
            }
            assert_eq!(
                String::from_utf8_lossy(&self.written[..expected.len()]),
                String::from_utf8_lossy(expected),
                "client wrote something other than the script expects"
            );
            self.written.drain(..expected.len());
            self.steps.pop_front();
        }
        if !self.written.is_empty() && !matches!(self.steps.front(), Some(Step::Client(_))) {
            panic!(
                "client wrote {:?} when the script expected no write",
                String::from_utf8_lossy(&self.written)
            );
        }
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
