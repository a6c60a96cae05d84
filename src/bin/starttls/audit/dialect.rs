//! The line protocols' commands and replies as the audit's probes need them: on purpose out of
//! order (a command before the greeting, two in one segment), so not the library's dialogs.
//! Reads never go past a reply's last line, so that TLS can start right after a go-ahead.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

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

/// The time left before `deadline`, as a socket timeout; `TimedOut` once it has passed.
fn left(deadline: Instant) -> io::Result<std::time::Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(left)
}

/// A plaintext socket, read a byte at a time (nothing past the line is taken), every read
/// within the probe's one deadline (a server trickling bytes cannot stretch it).
pub struct Plain<'a> {
    tcp: &'a TcpStream,
    deadline: Instant,
}

impl<'a> Plain<'a> {
    pub fn new(tcp: &'a TcpStream, deadline: Instant) -> Plain<'a> {
        Plain { tcp, deadline }
    }
}

impl Lines for Plain<'_> {
    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            self.tcp.set_read_timeout(Some(left(self.deadline)?))?;
            match (&*self.tcp).read(&mut byte) {
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
        self.tcp.set_write_timeout(Some(left(self.deadline)?))?;
        (&*self.tcp).write_all(text.as_bytes())
    }
}

/// An encrypted connection read line by line, each line within what is left of the deadline.
pub struct InTls<'a> {
    pub conn: &'a mut Connection,
    pub deadline: Instant,
}

impl Lines for InTls<'_> {
    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        self.conn
            .set_io_timeout(left(self.deadline)?)
            .map_err(io::Error::other)?;
        if self.conn.read_line_bounded(&mut line, MAX_LINE)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        Ok(text(&line))
    }

    fn send(&mut self, text: &str) -> io::Result<()> {
        self.conn
            .set_io_timeout(left(self.deadline)?)
            .map_err(io::Error::other)?;
        self.conn.write_all(text.as_bytes())?;
        self.conn.flush()
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
                // POP3 status replies are one line ("+OK ...", "-ERR ...").
                (Dialect::Pop3, Shape::Status) => true,
                (_, Shape::DotList) => {
                    if reply.lines.is_empty() {
                        !(line.starts_with("+OK") || line.starts_with('1'))
                    } else {
                        line == "."
                    }
                }
                _ => {
                    // SMTP/FTP/NNTP: "ddd-" goes on, up to the code again followed by a space
                    // or nothing ("ddd text", a bare "ddd"); FTP's text lines in between.
                    let code = reply.lines.first().map_or(line.get(..3), |f| f.get(..3));
                    line.get(..3) == code && matches!(line.as_bytes().get(3), None | Some(b' '))
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
                .filter(|l| l.to_ascii_uppercase().starts_with("* CAPABILITY "))
                .filter_map(|l| l.get("* CAPABILITY ".len()..))
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
            Dialect::Imap => line.lines().any(|l| l.starts_with("n OK")),
            Dialect::Sieve => starts_word(line, "OK"),
        }
    }

    /// The SASL mechanisms the capabilities name, in their order.
    fn mechanisms(self, caps: &[String]) -> Vec<String> {
        let words = |prefix: &str| -> Vec<String> {
            caps.iter()
                .filter_map(|c| c.strip_prefix(prefix))
                .flat_map(|m| m.split(' '))
                .map(str::to_owned)
                .collect()
        };
        let listed = match self {
            Dialect::Smtp | Dialect::Lmtp => words("AUTH "),
            Dialect::Imap => words("AUTH="),
            Dialect::Pop3 | Dialect::Sieve => words("SASL "),
            Dialect::Nntp => [words("SASL "), words("AUTHINFO SASL ")].concat(),
            Dialect::Ftp => Vec::new(),
        };
        listed
            .into_iter()
            .filter(|m| {
                !m.is_empty()
                    && m.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .collect()
    }

    /// The SASL mechanism to try, and whether it would carry the secret itself in clear:
    /// the first advertised one that does (PLAIN, LOGIN, a bearer token), else the first
    /// advertised, else PLAIN. No mechanism is sent an initial response: nothing secret goes.
    pub fn mechanism(self, caps: &[String]) -> (String, bool) {
        if self == Dialect::Ftp {
            return ("USER/PASS".to_owned(), true);
        }
        let listed = self.mechanisms(caps);
        if let Some(m) = listed.iter().find(|m| sends_secret(m)) {
            return (m.clone(), true);
        }
        match listed.into_iter().next() {
            Some(m) => (m, false),
            None => ("PLAIN".to_owned(), true),
        }
    }

    /// A login attempt that carries no credential: the SASL mechanism `mechanism` without an
    /// initial response (FTP: `USER` for a made-up name). A server that answers with a
    /// challenge (`334`, `+`, `""`, `383`; FTP `331`) would take the password in plaintext.
    /// Returns that, and the reply; a SASL attempt is then cancelled (`*`).
    pub fn try_login(self, io: &mut impl Lines, mechanism: &str) -> io::Result<(bool, Reply)> {
        let command = match self {
            Dialect::Smtp | Dialect::Lmtp | Dialect::Pop3 => format!("AUTH {mechanism}"),
            Dialect::Imap => format!("l AUTHENTICATE {mechanism}"),
            Dialect::Nntp => format!("AUTHINFO SASL {mechanism}"),
            Dialect::Sieve => format!("AUTHENTICATE \"{mechanism}\""),
            Dialect::Ftp => "USER starttls-audit".to_owned(),
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
            Dialect::Ftp => first.starts_with("331"),
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

    /// How [`try_user`](Self::try_user)'s login is called.
    pub fn user_command(self) -> String {
        match self {
            Dialect::Nntp => "AUTHINFO USER/PASS".into(),
            _ => "USER/PASS".into(),
        }
    }

    /// POP3 `USER` and NNTP `AUTHINFO USER` with a made-up name: a server that asks for the
    /// password (`+OK`, `381`) would take it in plaintext. `None` for the other protocols.
    pub fn try_user(self, io: &mut impl Lines) -> io::Result<Option<(bool, Reply)>> {
        let (command, wants_password) = match self {
            Dialect::Pop3 => ("USER starttls-audit\r\n", "+OK"),
            Dialect::Nntp => ("AUTHINFO USER starttls-audit\r\n", "381"),
            _ => return Ok(None),
        };
        io.send(command)?;
        let reply = self.read(io, Shape::Status, "")?;
        Ok(Some((reply.first().starts_with(wants_password), reply)))
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

/// Mechanisms whose exchange carries the password or token itself.
fn sends_secret(mechanism: &str) -> bool {
    matches!(mechanism, "PLAIN" | "LOGIN" | "XOAUTH2" | "OAUTHBEARER")
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
    fn a_bare_code_ends_a_reply_and_ftp_text_lines_do_not() {
        let mut s = Script(
            vec!["250-mx", "250-AUTH LOGIN", "250", "extra"],
            String::new(),
        );
        let caps = Dialect::Smtp.hello(&mut s, "me").unwrap().unwrap();
        assert_eq!(caps.lines.len(), 3);
        let mut s = Script(
            vec!["211-Features:", "211x not the end", " PBSZ", "211 End"],
            String::new(),
        );
        assert_eq!(
            Dialect::Ftp
                .hello(&mut s, "me")
                .unwrap()
                .unwrap()
                .lines
                .len(),
            4
        );
    }

    #[test]
    fn the_login_tried_is_the_first_advertised_mechanism() {
        let caps = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Dialect::Smtp.mechanism(&caps(&["PIPELINING", "AUTH CRAM-MD5 LOGIN"])),
            ("LOGIN".to_owned(), true)
        );
        assert_eq!(
            Dialect::Imap.mechanism(&caps(&["IMAP4REV1", "AUTH=CRAM-MD5"])),
            ("CRAM-MD5".to_owned(), false)
        );
        assert_eq!(
            Dialect::Pop3.mechanism(&caps(&["SASL SCRAM-SHA-256"])),
            ("SCRAM-SHA-256".to_owned(), false)
        );
        assert_eq!(
            Dialect::Nntp.mechanism(&caps(&["AUTHINFO SASL", "SASL DIGEST-MD5"])),
            ("DIGEST-MD5".to_owned(), false)
        );
        assert_eq!(Dialect::Smtp.mechanism(&caps(&["AUTH"])).0, "PLAIN");
        assert_eq!(Dialect::Ftp.mechanism(&[]), ("USER/PASS".to_owned(), true));
        // Nothing from the peer that is not a mechanism name goes into the command.
        assert_eq!(Dialect::Smtp.mechanism(&caps(&["AUTH X\\R\\N"])).0, "PLAIN");
        let mut s = Script(vec!["334 VXNlcm5hbWU6", "501 cancelled"], String::new());
        assert!(Dialect::Smtp.try_login(&mut s, "LOGIN").unwrap().0);
        assert_eq!(s.1, "AUTH LOGIN\r\n*\r\n");
        let mut s = Script(vec!["+OK send PASS"], String::new());
        assert!(Dialect::Pop3.try_user(&mut s).unwrap().unwrap().0);
        let mut s = Script(
            vec!["-ERR [AUTH] Plaintext authentication disallowed"],
            String::new(),
        );
        assert!(!Dialect::Pop3.try_user(&mut s).unwrap().unwrap().0);
        let mut s = Script(vec!["483 Encryption required"], String::new());
        assert!(!Dialect::Nntp.try_user(&mut s).unwrap().unwrap().0);
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
        assert!(Dialect::Smtp.try_login(&mut s, "PLAIN").unwrap().0);
        assert_eq!(s.1, "AUTH PLAIN\r\n*\r\n");
        let mut s = Script(
            vec!["530 5.7.0 Must issue a STARTTLS command first"],
            String::new(),
        );
        assert!(!Dialect::Smtp.try_login(&mut s, "PLAIN").unwrap().0);
        let mut s = Script(vec!["+ ", "l BAD cancelled"], String::new());
        assert!(Dialect::Imap.try_login(&mut s, "PLAIN").unwrap().0);
        let mut s = Script(vec!["l NO [PRIVACYREQUIRED] no"], String::new());
        assert!(!Dialect::Imap.try_login(&mut s, "PLAIN").unwrap().0);
        let mut s = Script(vec!["\"\"", "NO \"cancelled\""], String::new());
        assert!(Dialect::Sieve.try_login(&mut s, "PLAIN").unwrap().0);
        assert_eq!(s.1, "AUTHENTICATE \"PLAIN\"\r\n\"*\"\r\n");
    }
}
