//! Enough of each protocol after TLS for real clients to finish a session against `serve` and
//! `demo`: an SMTP sink, IMAP and POP3 with empty mailboxes, and the like.

use std::io::{BufRead, Read, Write};

use starttls::{Connection, Protocol};

/// The longest command line kept; the rest of a longer line is read and dropped.
const MAX_LINE: usize = 8192;

/// Reads one line through the connection's buffer (CRLF stripped, at most `MAX_LINE` bytes
/// kept); `None` at the end of the stream or on an error.
fn read_line(conn: &mut Connection) -> Option<String> {
    let mut line = Vec::new();
    let mut any = false;
    loop {
        let buf = match conn.fill_buf() {
            Ok(b) if !b.is_empty() => b,
            _ if !any => return None,
            _ => break,
        };
        any = true;
        let (take, done) = match memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&buf[..take.min(room)]);
        conn.consume(take);
        if done {
            break;
        }
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}

use memchr::memchr;

/// Reads an SMTP message body up to its end (a line holding only `.`) through the buffer,
/// without keeping it; returns its size, or `None` if the stream ended first.
fn read_data(conn: &mut Connection) -> Option<u64> {
    let mut size = 0u64;
    // The start of the current line, as far as it matters: "", ".", ".\r" or "other".
    let mut start: &[u8] = b"";
    let mut other = false;
    loop {
        let buf = conn.fill_buf().ok().filter(|b| !b.is_empty())?;
        let mut at = 0;
        let mut finished = None;
        while at < buf.len() {
            let (end, newline) = match memchr(b'\n', &buf[at..]) {
                Some(i) => (at + i, true),
                None => (buf.len(), false),
            };
            for &b in &buf[at..end] {
                start = match (start, b, other) {
                    (_, _, true) => b"",
                    (b"", b'.', _) => b".",
                    (b".", b'\r', _) => b".\r",
                    _ => {
                        other = true;
                        b""
                    }
                };
                if other {
                    break;
                }
            }
            if newline {
                let dot = !other && (start == b"." || start == b".\r");
                start = b"";
                other = false;
                if dot {
                    finished = Some(end + 1);
                    break;
                }
                at = end + 1;
            } else {
                at = end;
            }
        }
        let took = finished.unwrap_or(buf.len());
        size += took as u64;
        conn.consume(took);
        if finished.is_some() {
            return Some(size);
        }
    }
}

fn verb(line: &str) -> String {
    line.split([' ', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

/// Runs the session after TLS as the server named `domain`; returns a short summary for the log.
pub fn session(protocol: Protocol, domain: &str, conn: &mut Connection) -> std::io::Result<String> {
    match protocol {
        Protocol::Smtp | Protocol::Submission | Protocol::Smtps | Protocol::Lmtp => {
            smtp(domain, conn)
        }
        Protocol::Imap | Protocol::Imaps => imap(conn),
        Protocol::Pop3 | Protocol::Pop3s => pop3(conn),
        Protocol::Nntp | Protocol::Nntps => nntp(conn),
        Protocol::Ftp | Protocol::Ftps => ftp(conn),
        Protocol::Sieve => sieve(conn),
        Protocol::Xmpp | Protocol::XmppServer | Protocol::Xmpps => xmpp(domain, conn),
        Protocol::Http | Protocol::Https => http(conn),
        Protocol::Ldap | Protocol::Ldaps => ldap(conn),
        Protocol::Mysql => mysql(conn),
        _ => drain(conn),
    }
}

fn smtp(domain: &str, conn: &mut Connection) -> std::io::Result<String> {
    let mut messages = 0;
    let ehlo = format!("250-{domain}\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SIZE 10485760\r\n");
    let helo = format!("250 {domain}\r\n");
    while let Some(line) = read_line(conn) {
        let reply: &[u8] = match verb(&line).as_str() {
            "EHLO" | "LHLO" => ehlo.as_bytes(),
            "HELO" => helo.as_bytes(),
            "STARTTLS" => b"503 5.5.1 TLS already active\r\n",
            "AUTH" => b"235 2.7.0 Authentication successful\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 OK\r\n",
            "DATA" => {
                conn.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                if read_data(conn).is_none() {
                    break;
                }
                messages += 1;
                b"250 2.0.0 Message accepted (discarded)\r\n"
            }
            "QUIT" => {
                conn.write_all(b"221 2.0.0 Bye\r\n")?;
                break;
            }
            _ => b"500 5.5.2 Command unrecognized\r\n",
        };
        conn.write_all(reply)?;
    }
    Ok(format!("messages={messages}"))
}

fn imap(conn: &mut Connection) -> std::io::Result<String> {
    while let Some(line) = read_line(conn) {
        let mut words = line.splitn(3, ' ');
        let tag = words.next().unwrap_or("*");
        let reply = match words
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase()
            .as_str()
        {
            "CAPABILITY" => format!(
                "* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\n{tag} OK CAPABILITY completed\r\n"
            ),
            "NOOP" | "LOGIN" => format!("{tag} OK completed\r\n"),
            "AUTHENTICATE" => {
                // Without an initial response the client sends it after a continuation.
                if line.split(' ').count() < 4 {
                    conn.write_all(b"+ \r\n")?;
                    read_line(conn);
                }
                format!("{tag} OK authenticated\r\n")
            }
            "STARTTLS" => format!("{tag} BAD TLS already active\r\n"),
            "SELECT" | "EXAMINE" => format!("* 0 EXISTS\r\n{tag} OK [READ-WRITE] completed\r\n"),
            "LIST" => format!("* LIST () \"/\" INBOX\r\n{tag} OK LIST completed\r\n"),
            "LOGOUT" => {
                conn.write_all(
                    format!("* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n").as_bytes(),
                )?;
                break;
            }
            _ => format!("{tag} BAD Command not implemented\r\n"),
        };
        conn.write_all(reply.as_bytes())?;
    }
    Ok(String::new())
}

fn pop3(conn: &mut Connection) -> std::io::Result<String> {
    while let Some(line) = read_line(conn) {
        let reply: &[u8] = match verb(&line).as_str() {
            "CAPA" => b"+OK\r\nUSER\r\nUIDL\r\nSASL PLAIN\r\n.\r\n",
            "STLS" => b"-ERR TLS already active\r\n",
            "AUTH" if line.split(' ').count() == 2 => {
                conn.write_all(b"+ \r\n")?;
                read_line(conn);
                b"+OK authenticated\r\n"
            }
            "USER" | "PASS" | "NOOP" | "AUTH" | "RSET" => b"+OK\r\n",
            "STAT" => b"+OK 0 0\r\n",
            "LIST" | "UIDL" => b"+OK 0 messages\r\n.\r\n",
            "QUIT" => {
                conn.write_all(b"+OK Bye\r\n")?;
                break;
            }
            _ => b"-ERR Unknown command\r\n",
        };
        conn.write_all(reply)?;
    }
    Ok(String::new())
}

fn nntp(conn: &mut Connection) -> std::io::Result<String> {
    while let Some(line) = read_line(conn) {
        let reply: &[u8] = match verb(&line).as_str() {
            "CAPABILITIES" => b"101 Capability list:\r\nVERSION 2\r\nREADER\r\n.\r\n",
            "MODE" => b"200 Reader mode, posting permitted\r\n",
            "DATE" => b"111 20260101000000\r\n",
            "STARTTLS" => b"502 TLS already active\r\n",
            "QUIT" => {
                conn.write_all(b"205 Bye\r\n")?;
                break;
            }
            _ => b"500 Unknown command\r\n",
        };
        conn.write_all(reply)?;
    }
    Ok(String::new())
}

fn ftp(conn: &mut Connection) -> std::io::Result<String> {
    while let Some(line) = read_line(conn) {
        let reply: &[u8] = match verb(&line).as_str() {
            "USER" => b"331 Password required\r\n",
            "PASS" => b"230 Logged in\r\n",
            "PBSZ" => b"200 PBSZ=0\r\n",
            "PROT" => b"200 Protection level set\r\n",
            "FEAT" => b"211-Features:\r\n PBSZ\r\n PROT\r\n UTF8\r\n211 End\r\n",
            "SYST" => b"215 UNIX Type: L8\r\n",
            "PWD" => b"257 \"/\"\r\n",
            "TYPE" | "NOOP" => b"200 OK\r\n",
            "AUTH" => b"503 TLS already active\r\n",
            "QUIT" => {
                conn.write_all(b"221 Goodbye\r\n")?;
                break;
            }
            _ => b"502 Command not implemented (no data connections here)\r\n",
        };
        conn.write_all(reply)?;
    }
    Ok(String::new())
}

fn sieve(conn: &mut Connection) -> std::io::Result<String> {
    while let Some(line) = read_line(conn) {
        let reply: &[u8] = match verb(&line).trim_matches('"') {
            "CAPABILITY" => b"\"IMPLEMENTATION\" \"starttls\"\r\n\"SIEVE\" \"\"\r\n\"SASL\" \"PLAIN\"\r\n\"VERSION\" \"1.0\"\r\nOK\r\n",
            "NOOP" | "AUTHENTICATE" => b"OK\r\n",
            "LISTSCRIPTS" => b"OK\r\n",
            "LOGOUT" => {
                conn.write_all(b"OK \"Bye\"\r\n")?;
                break;
            }
            _ => b"NO \"Not implemented\"\r\n",
        };
        conn.write_all(reply)?;
    }
    Ok(String::new())
}

/// XMPP after TLS: answers the client's new stream header with features, then waits for the
/// stream's end.
fn xmpp(domain: &str, conn: &mut Connection) -> std::io::Result<String> {
    let mut seen = Vec::new();
    // Wait for the opening <stream:stream ...> (after an optional declaration).
    'header: loop {
        let buf = conn.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let mut took = 0;
        for &b in buf {
            took += 1;
            seen.push(b);
            if b == b'>' && !seen.ends_with(b"?>") && seen.windows(7).any(|w| w == b"stream:") {
                conn.consume(took);
                break 'header;
            }
        }
        conn.consume(took);
        if seen.len() > MAX_LINE {
            return Ok("stream header too long".into());
        }
    }
    if seen.is_empty() {
        return Ok(String::new());
    }
    let from: String = domain
        .chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '\'' => "&apos;".to_owned(),
            c => c.to_string(),
        })
        .collect();
    conn.write_all(
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' id='s2' from='{from}' \
             version='1.0'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
             <mechanism>PLAIN</mechanism></mechanisms></stream:features>"
        )
        .as_bytes(),
    )?;
    drain(conn)?;
    conn.write_all(b"</stream:stream>")?;
    Ok(String::new())
}

fn http(conn: &mut Connection) -> std::io::Result<String> {
    let mut requests = 0;
    while let Some(line) = read_line(conn) {
        if line.is_empty() {
            continue;
        }
        while let Some(header) = read_line(conn) {
            if header.is_empty() {
                break;
            }
        }
        requests += 1;
        let body = "hello from starttls serve\n";
        conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )?;
    }
    Ok(format!("requests={requests}"))
}

/// Reads one LDAPMessage (tag, definite length up to 64 KiB, content).
fn read_ldap_message(conn: &mut Connection) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 2];
    if conn.read_exact(&mut head).is_err() {
        return Ok(None);
    }
    let len = if head[1] < 0x80 {
        usize::from(head[1])
    } else {
        let n = usize::from(head[1] & 0x7f);
        if n == 0 || n > 3 {
            return Ok(None);
        }
        let mut bytes = [0u8; 3];
        conn.read_exact(&mut bytes[..n])?;
        bytes[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b))
    };
    if head[0] != 0x30 || len > 65536 {
        return Ok(None);
    }
    let mut content = vec![0u8; len];
    conn.read_exact(&mut content)?;
    Ok(Some(content))
}

/// LDAP after StartTLS: any Bind succeeds, any Search returns no entries, Unbind ends.
fn ldap(conn: &mut Connection) -> std::io::Result<String> {
    let mut binds = 0;
    while let Some(msg) = read_ldap_message(conn)? {
        // messageID INTEGER (short form), then the operation's tag.
        if msg.len() < 3 || msg[0] != 0x02 || usize::from(msg[1]) + 2 >= msg.len() {
            break;
        }
        let id = &msg[..2 + usize::from(msg[1])];
        let op = msg[id.len()];
        let response_tag = match op {
            0x60 => {
                binds += 1;
                0x61
            }
            0x63 => 0x65,
            0x42 => break,
            _ => 0x78,
        };
        // LDAPResult: success, empty matchedDN and diagnosticMessage.
        let result = [0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00];
        let mut body = id.to_vec();
        body.push(response_tag);
        body.push(result.len() as u8);
        body.extend_from_slice(&result);
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        conn.write_all(&out)?;
    }
    Ok(format!("binds={binds}"))
}

/// One MySQL packet inside TLS, at most 64 KiB: (sequence, payload); `None` at the end.
fn read_mysql_packet(conn: &mut Connection) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 4];
    if conn.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len > 64 * 1024 {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    conn.read_exact(&mut payload)?;
    Ok(Some((header[3], payload)))
}

fn write_mysql_packet(conn: &mut Connection, seq: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut out = vec![len[0], len[1], len[2], seq];
    out.extend_from_slice(payload);
    conn.write_all(&out)?;
    conn.flush()
}

/// MySQL after TLS: any handshake response logs in (a test server), COM_PING answers OK,
/// COM_QUIT ends, anything else is ERR 1047.
fn mysql(conn: &mut Connection) -> std::io::Result<String> {
    // OK: no rows, no insert id, SERVER_STATUS_AUTOCOMMIT, no warnings.
    const OK: [u8; 7] = [0, 0, 0, 2, 0, 0, 0];
    let Some((seq, _response)) = read_mysql_packet(conn)? else {
        return Ok(String::new());
    };
    write_mysql_packet(conn, seq.wrapping_add(1), &OK)?;
    let mut pings = 0;
    while let Some((_, command)) = read_mysql_packet(conn)? {
        match command.first() {
            Some(0x01) | None => break,
            Some(0x0e) => {
                pings += 1;
                write_mysql_packet(conn, 1, &OK)?;
            }
            Some(_) => {
                let mut err = vec![0xff];
                err.extend_from_slice(&1047u16.to_le_bytes());
                err.extend_from_slice(b"#08S01this test server answers COM_PING only");
                write_mysql_packet(conn, 1, &err)?;
            }
        }
    }
    Ok(format!("logged in, {pings} ping(s)"))
}

fn drain(conn: &mut Connection) -> std::io::Result<String> {
    let mut buf = [0u8; 4096];
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
    Ok(String::new())
}
