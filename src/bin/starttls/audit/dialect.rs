//! The line protocols' commands and replies as the audit's probes need them: on purpose out of
//! order (a command before the greeting, two in one segment), so not the library's dialogs.
//! Reads never go past a reply's last line, so that TLS can start right after a go-ahead.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use starttls::{Connection, Protocol};

/// Bounds on what a server may send in one reply.
const MAX_LINE: usize = 4096;
const MAX_LINES: usize = 200;

/// A byte stream read line by line, exactly.
pub trait Lines {
    /// One line without its CRLF, escaped for people; `UnexpectedEof` at the end.
    fn line(&mut self) -> io::Result<String>;
    fn send(&mut self, text: &str) -> io::Result<()>;
}

/// A plaintext socket, read a byte at a time (nothing past the line is taken).
pub struct Plain<'a>(pub &'a TcpStream);

impl Lines for Plain<'_> {
    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.0.read(&mut byte) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) if line.len() >= MAX_LINE => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
                }
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(text(&line))
    }

    fn send(&mut self, text: &str) -> io::Result<()> {
        self.0.write_all(text.as_bytes())
    }
}

impl Lines for Connection {
    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        if self.read_line_bounded(&mut line, MAX_LINE)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        Ok(text(&line))
    }

    fn send(&mut self, text: &str) -> io::Result<()> {
        self.write_all(text.as_bytes())?;
        self.flush()
    }
}

fn text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    starttls::escape_controls(&String::from_utf8_lossy(line)).into_owned()
}

/// A whole reply: its lines, escaped.
#[derive(Debug, Default, Clone)]
pub struct Reply {
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    fn first(&self) -> &str {
        self.lines.first().map_or("", String::as_str)
    }
}

/// The line protocols with a STARTTLS the probes can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Smtp,
    Lmtp,
    Imap,
    Pop3,
    Nntp,
    Ftp,
    Sieve,
}

/// What a command expects back, beyond its status line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A status (SMTP/FTP continuation lines included).
    Status,
    /// A status, then lines up to "." when the status is positive (POP3 CAPA, NNTP 101).
    DotList,
    /// IMAP: untagged lines up to the tagged one; ManageSieve: lines up to OK/NO/BYE.
    Tagged,
}

impl Dialect {
    pub fn of(protocol: Protocol) -> Option<Dialect> {
        Some(match protocol {
            Protocol::Smtp | Protocol::Submission => Dialect::Smtp,
            Protocol::Lmtp => Dialect::Lmtp,
            Protocol::Imap => Dialect::Imap,
            Protocol::Pop3 => Dialect::Pop3,
            Protocol::Nntp => Dialect::Nntp,
            Protocol::Ftp => Dialect::Ftp,
            Protocol::Sieve => Dialect::Sieve,
            _ => return None,
        })
    }

    /// Reads one reply of the given shape; IMAP's ends with `tag`.
    fn read(self, io: &mut impl Lines, shape: Shape, tag: &str) -> io::Result<Reply> {
        let mut reply = Reply::default();
        loop {
            let line = io.line()?;
            let done = match (self, shape) {
                (Dialect::Imap, Shape::Tagged) => {
                    line.starts_with(&format!("{tag} ")) || line.starts_with("+")
                }
                (Dialect::Sieve, Shape::Tagged) => starts_sieve_status(&line),
                (_, Shape::DotList) => {
                    if reply.lines.is_empty() {
                        !(line.starts_with("+OK") || line.starts_with('1'))
                    } else {
                        line == "."
                    }
                }
                _ => {
                    // SMTP/FTP/NNTP: "ddd-" goes on; "ddd " (or FTP's text lines) until the
                    // code again with a space.
                    match reply.lines.first() {
                        None => line.as_bytes().get(3) != Some(&b'-'),
                        Some(first) => {
                            line.starts_with(&format!("{} ", &first[..first.len().min(3)]))
                        }
                    }
                }
            };
            reply.lines.push(line);
            if done {
                return Ok(reply);
            }
            if reply.lines.len() >= MAX_LINES {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"));
            }
        }
    }

    /// The greeting (ManageSieve's is its capability list).
    pub fn greeting(self, io: &mut impl Lines) -> io::Result<Reply> {
        match self {
            Dialect::Imap | Dialect::Pop3 => Ok(Reply {
                lines: vec![io.line()?],
            }),
            Dialect::Sieve => self.read(io, Shape::Tagged, ""),
            _ => self.read(io, Shape::Status, ""),
        }
    }

    /// Asks for the capabilities (ManageSieve has them from the greeting: `None`).
    pub fn hello(self, io: &mut impl Lines, client_name: &str) -> io::Result<Option<Reply>> {
        let (command, shape, tag) = match self {
            Dialect::Smtp => (format!("EHLO {client_name}"), Shape::Status, ""),
            Dialect::Lmtp => (format!("LHLO {client_name}"), Shape::Status, ""),
            Dialect::Imap => ("h CAPABILITY".to_owned(), Shape::Tagged, "h"),
            Dialect::Pop3 => ("CAPA".to_owned(), Shape::DotList, ""),
            Dialect::Nntp => ("CAPABILITIES".to_owned(), Shape::DotList, ""),
            Dialect::Ftp => ("FEAT".to_owned(), Shape::Status, ""),
            Dialect::Sieve => return Ok(None),
        };
        io.send(&format!("{command}\r\n"))?;
        self.read(io, shape, tag).map(Some)
    }

    /// The capability words of a hello reply or greeting, upper-cased, one per item.
    pub fn capabilities(self, reply: &Reply) -> Vec<String> {
        let lines = reply.lines.iter();
        let items: Vec<String> = match self {
            Dialect::Smtp | Dialect::Lmtp => lines
                .skip(1)
                .map(|l| l.get(4..).unwrap_or("").to_owned())
                .collect(),
            Dialect::Imap => lines
                .filter_map(|l| l.strip_prefix("* CAPABILITY "))
                .flat_map(|l| l.split(' ').map(str::to_owned))
                .collect(),
            Dialect::Pop3 | Dialect::Nntp => lines.skip(1).filter(|l| *l != ".").cloned().collect(),
            Dialect::Ftp => lines
                .skip(1)
                .filter(|l| l.starts_with(' '))
                .map(|l| l.trim().to_owned())
                .collect(),
            Dialect::Sieve => lines
                .filter(|l| l.starts_with('"'))
                .map(|l| l.replace('"', "").trim().to_owned())
                .collect(),
        };
        items.into_iter().map(|i| i.to_ascii_uppercase()).collect()
    }

    /// The capability that announces STARTTLS.
    pub fn starttls_capability(self) -> &'static str {
        match self {
            Dialect::Pop3 => "STLS",
            Dialect::Ftp => "AUTH TLS",
            _ => "STARTTLS",
        }
    }

    /// The STARTTLS command line (with its CRLF).
    pub fn starttls(self) -> &'static str {
        match self {
            Dialect::Imap => "s STARTTLS\r\n",
            Dialect::Pop3 => "STLS\r\n",
            Dialect::Ftp => "AUTH TLS\r\n",
            _ => "STARTTLS\r\n",
        }
    }

    /// Reads the answer to STARTTLS; `Ok(true)` for a go-ahead.
    pub fn go_ahead(self, io: &mut impl Lines) -> io::Result<(bool, Reply)> {
        let reply = self.read(io, self.simple_shape(), "s")?;
        Ok((self.says_go(&reply, "s"), reply))
    }

    fn says_go(self, reply: &Reply, tag: &str) -> bool {
        let first = reply.first();
        let last = reply.lines.last().map_or("", String::as_str);
        match self {
            Dialect::Smtp | Dialect::Lmtp => first.starts_with("220"),
            Dialect::Nntp => first.starts_with("382"),
            Dialect::Ftp => first.starts_with("234"),
            Dialect::Imap => last.starts_with(&format!("{tag} OK")),
            Dialect::Pop3 => first.starts_with("+OK"),
            Dialect::Sieve => starts_word(last, "OK"),
        }
    }

    fn simple_shape(self) -> Shape {
        match self {
            Dialect::Imap | Dialect::Sieve => Shape::Tagged,
            _ => Shape::Status,
        }
    }

    /// A harmless command with a one-reply answer (NNTP has no NOOP: DATE).
    pub fn noop(self) -> &'static str {
        match self {
            Dialect::Imap => "n NOOP\r\n",
            Dialect::Nntp => "DATE\r\n",
            _ => "NOOP\r\n",
        }
    }

    /// Reads the answer to [`noop`](Self::noop).
    pub fn noop_reply(self, io: &mut impl Lines) -> io::Result<Reply> {
        self.read(io, self.simple_shape(), "n")
    }

    /// Whether a reply line (to a NOOP, DATE) is positive: the command was carried out.
    pub fn positive(self, line: &str) -> bool {
        match self {
            Dialect::Smtp | Dialect::Lmtp | Dialect::Ftp => line.starts_with('2'),
            Dialect::Nntp => line.starts_with("111"),
            Dialect::Pop3 => line.starts_with("+OK"),
            Dialect::Imap => line.starts_with("n OK") || line.starts_with("* "),
            Dialect::Sieve => starts_word(line, "OK"),
        }
    }

    /// A login attempt that carries no credential: SASL PLAIN without its initial response
    /// (FTP: a USER command for `anonymous`). A server that answers with a challenge (`334`,
    /// `+`, `""`, `383`; FTP `331`) would take the password in plaintext. Returns that, and the
    /// reply; the attempt is then cancelled (`*`).
    pub fn try_login(self, io: &mut impl Lines) -> io::Result<(bool, Reply)> {
        let command = match self {
            Dialect::Smtp | Dialect::Lmtp | Dialect::Pop3 => "AUTH PLAIN",
            Dialect::Imap => "l AUTHENTICATE PLAIN",
            Dialect::Nntp => "AUTHINFO SASL PLAIN",
            Dialect::Sieve => "AUTHENTICATE \"PLAIN\"",
            Dialect::Ftp => "USER anonymous",
        };
        io.send(&format!("{command}\r\n"))?;
        let reply = match self {
            Dialect::Imap => self.read(io, Shape::Tagged, "l")?,
            Dialect::Sieve => {
                // A challenge is a quoted string or a literal on its own line; anything else
                // goes on to OK/NO/BYE.
                let first = io.line()?;
                if first.starts_with('"') || first.starts_with('{') || starts_sieve_status(&first) {
                    Reply { lines: vec![first] }
                } else {
                    let mut rest = self.read(io, Shape::Tagged, "")?;
                    rest.lines.insert(0, first);
                    rest
                }
            }
            _ => self.read(io, Shape::Status, "")?,
        };
        let first = reply.first();
        let challenged = match self {
            Dialect::Smtp | Dialect::Lmtp => first.starts_with("334"),
            Dialect::Imap | Dialect::Pop3 => first.starts_with('+') && !first.starts_with("+OK"),
            Dialect::Nntp => first.starts_with("383"),
            Dialect::Sieve => first.starts_with('"') || first.starts_with('{'),
            Dialect::Ftp => first.starts_with("331") || first.starts_with("230"),
        };
        if challenged && self != Dialect::Ftp {
            io.send(if self == Dialect::Sieve {
                "\"*\"\r\n"
            } else {
                "*\r\n"
            })?;
            let _ = match self {
                Dialect::Imap => self.read(io, Shape::Tagged, "l"),
                Dialect::Sieve => self.read(io, Shape::Tagged, ""),
                _ => self.read(io, Shape::Status, ""),
            };
        }
        Ok((challenged, reply))
    }

    /// SMTP: a mail transaction opened with a reserved sender (RFC 2606), then reset.
    pub fn try_mail(self, io: &mut impl Lines) -> io::Result<Option<(bool, Reply)>> {
        if !matches!(self, Dialect::Smtp | Dialect::Lmtp) {
            return Ok(None);
        }
        io.send("MAIL FROM:<starttls-audit@example.invalid>\r\n")?;
        let reply = self.read(io, Shape::Status, "")?;
        let accepted = reply.first().starts_with("250");
        io.send("RSET\r\n")?;
        self.read(io, Shape::Status, "")?;
        Ok(Some((accepted, reply)))
    }

    /// Says goodbye and reads the answer (errors ignored: the probe is over).
    pub fn quit(self, io: &mut impl Lines) {
        let command = match self {
            Dialect::Imap => "q LOGOUT\r\n",
            Dialect::Sieve => "LOGOUT\r\n",
            _ => "QUIT\r\n",
        };
        if io.send(command).is_ok() {
            let _ = self.read(io, self.simple_shape(), "q");
        }
    }
}

fn starts_sieve_status(line: &str) -> bool {
    ["OK", "NO", "BYE"].iter().any(|w| starts_word(line, w))
}

fn starts_word(line: &str, word: &str) -> bool {
    line.strip_prefix(word)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines from a script, and what was sent.
    struct Script(Vec<&'static str>, String);

    impl Lines for Script {
        fn line(&mut self) -> io::Result<String> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok(self.0.remove(0).to_owned())
        }
        fn send(&mut self, text: &str) -> io::Result<()> {
            self.1.push_str(text);
            Ok(())
        }
    }

    #[test]
    fn replies_end_where_each_protocol_ends_them() {
        let mut s = Script(
            vec!["250-mx", "250-AUTH PLAIN", "250 STARTTLS", "extra"],
            String::new(),
        );
        let caps = Dialect::Smtp.hello(&mut s, "me").unwrap().unwrap();
        assert_eq!(caps.lines.len(), 3);
        assert_eq!(
            Dialect::Smtp.capabilities(&caps),
            ["AUTH PLAIN", "STARTTLS"]
        );
        let mut s = Script(
            vec![
                "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED",
                "h OK done",
                "extra",
            ],
            String::new(),
        );
        let caps = Dialect::Imap.hello(&mut s, "me").unwrap().unwrap();
        assert_eq!(
            Dialect::Imap.capabilities(&caps),
            ["IMAP4REV1", "STARTTLS", "LOGINDISABLED"]
        );
        let mut s = Script(vec!["+OK", "STLS", "USER", ".", "extra"], String::new());
        let caps = Dialect::Pop3.hello(&mut s, "me").unwrap().unwrap();
        assert_eq!(Dialect::Pop3.capabilities(&caps), ["STLS", "USER"]);
        let mut s = Script(vec!["-ERR no"], String::new());
        assert_eq!(
            Dialect::Pop3.hello(&mut s, "me").unwrap().unwrap().lines,
            ["-ERR no"]
        );
        let mut s = Script(
            vec!["211-Features:", " AUTH TLS", " PBSZ", "211 End"],
            String::new(),
        );
        let caps = Dialect::Ftp.hello(&mut s, "me").unwrap().unwrap();
        assert_eq!(Dialect::Ftp.capabilities(&caps), ["AUTH TLS", "PBSZ"]);
        let mut s = Script(
            vec!["\"IMPLEMENTATION\" \"x\"", "\"STARTTLS\"", "OK \"hi\""],
            String::new(),
        );
        let g = Dialect::Sieve.greeting(&mut s).unwrap();
        assert_eq!(
            Dialect::Sieve.capabilities(&g),
            ["IMPLEMENTATION X", "STARTTLS"]
        );
    }

    #[test]
    fn endless_replies_are_bounded() {
        let lines: Vec<&'static str> = std::iter::repeat_n("250-x", 500).collect();
        let mut s = Script(lines, String::new());
        assert!(Dialect::Smtp.hello(&mut s, "me").is_err());
    }

    #[test]
    fn go_aheads_and_challenges_are_told_apart() {
        for (d, go, no) in [
            (Dialect::Smtp, "220 go", "454 no"),
            (Dialect::Nntp, "382 go", "580 no"),
            (Dialect::Ftp, "234 go", "534 no"),
            (Dialect::Imap, "s OK go", "s NO no"),
            (Dialect::Pop3, "+OK go", "-ERR no"),
            (Dialect::Sieve, "OK \"go\"", "NO \"no\""),
        ] {
            let mut s = Script(vec![go], String::new());
            assert!(d.go_ahead(&mut s).unwrap().0, "{d:?}");
            let mut s = Script(vec![no], String::new());
            assert!(!d.go_ahead(&mut s).unwrap().0, "{d:?}");
        }
        let mut s = Script(vec!["334 ", "501 cancelled"], String::new());
        assert!(Dialect::Smtp.try_login(&mut s).unwrap().0);
        assert_eq!(s.1, "AUTH PLAIN\r\n*\r\n");
        let mut s = Script(
            vec!["530 5.7.0 Must issue a STARTTLS command first"],
            String::new(),
        );
        assert!(!Dialect::Smtp.try_login(&mut s).unwrap().0);
        let mut s = Script(vec!["+ ", "l BAD cancelled"], String::new());
        assert!(Dialect::Imap.try_login(&mut s).unwrap().0);
        let mut s = Script(vec!["l NO [PRIVACYREQUIRED] no"], String::new());
        assert!(!Dialect::Imap.try_login(&mut s).unwrap().0);
        let mut s = Script(vec!["\"\"", "NO \"cancelled\""], String::new());
        assert!(Dialect::Sieve.try_login(&mut s).unwrap().0);
        assert_eq!(s.1, "AUTHENTICATE \"PLAIN\"\r\n\"*\"\r\n");
    }
}
