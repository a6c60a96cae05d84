//! `--mail-from ADDR --rcpt-to ADDR`: a short dated test message sent inside TLS after the
//! upgrade (and the login, if any), as swaks sends one: the envelope, DATA, the message, and the
//! reply that queued it.

use std::io::Write;

use starttls::{Connection, Protocol};

/// The longest reply line read (RFC 5321 §4.5.3.1.5 allows 512; servers send more in practice).
const MAX_LINE: usize = 4096;
/// Lines of one (multi-line) reply, at most.
const MAX_LINES: usize = 100;

/// How the test message went.
pub struct MailReport {
    pub queued: bool,
    /// The server's last reply: the one that queued the message, or the refusal.
    pub server_reply: String,
}

/// Whether `protocol` can carry a test message.
pub fn speaks_smtp(protocol: Protocol) -> bool {
    matches!(
        protocol,
        Protocol::Smtp | Protocol::Submission | Protocol::Smtps | Protocol::Lmtp
    )
}

/// An envelope address: printable ASCII, no spaces, brackets or line breaks (it goes into
/// `MAIL FROM:<...>` as it is). `None` when it is acceptable.
pub fn address_problem(address: &str) -> Option<String> {
    let bad = address.is_empty()
        || address.len() > 254
        || !address
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'<' && b != b'>');
    bad.then(|| format!("{address:?} is not an envelope address (user@example.org)"))
}

/// Sends the envelope and the test message. `Err` carries an I/O or protocol problem as text;
/// a refusal by the server is `Ok` with `queued: false` and its reply.
pub fn send_test_message(
    conn: &mut Connection,
    protocol: Protocol,
    from: &str,
    rcpts: &[String],
    tls: &str,
) -> Result<MailReport, String> {
    let refused = |reply: String| {
        Ok(MailReport {
            queued: false,
            server_reply: reply,
        })
    };
    let (code, reply) = command(conn, &format!("MAIL FROM:<{from}>"))?;
    if code / 100 != 2 {
        return refused(reply);
    }
    for rcpt in rcpts {
        let (code, reply) = command(conn, &format!("RCPT TO:<{rcpt}>"))?;
        if code / 100 != 2 {
            let _ = command(conn, "RSET");
            return refused(reply);
        }
    }
    let (code, reply) = command(conn, "DATA")?;
    if code != 354 {
        return refused(reply);
    }
    let body = message(from, rcpts, tls);
    conn.write_all(body.as_bytes())
        .and_then(|()| conn.flush())
        .map_err(|e| format!("sending the message: {e}"))?;
    // LMTP answers once per recipient (RFC 2033 §4.2); all must accept.
    let replies = if protocol == Protocol::Lmtp {
        rcpts.len()
    } else {
        1
    };
    let mut last = String::new();
    for _ in 0..replies {
        let (code, reply) = read_reply(conn)?;
        if code / 100 != 2 {
            return refused(reply);
        }
        last = reply;
    }
    Ok(MailReport {
        queued: true,
        server_reply: last,
    })
}

/// The message: headers, a short text, dot-stuffed (no line starts with a dot), `.` at the end.
fn message(from: &str, rcpts: &[String], tls: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    format!(
        "Date: {}\r\nFrom: <{from}>\r\nTo: {}\r\nSubject: starttls check: test message\r\n\
         Message-ID: <{now}.{}@starttls.check>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n\
         This is a test message from `starttls check`, sent inside {tls} after the upgrade.\r\n\
         .\r\n",
        rfc5322_date(now),
        rcpts
            .iter()
            .map(|r| format!("<{r}>"))
            .collect::<Vec<_>>()
            .join(", "),
        std::process::id(),
    )
}

/// `Fri, 04 Dec 2026 18:00:00 +0000` for a Unix time.
fn rfc5322_date(t: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // From the RFC 3339 form, which the certificate report already computes.
    let iso = crate::certinfo::rfc3339(t);
    let (y, m, d, time) = (&iso[0..4], &iso[5..7], &iso[8..10], &iso[11..19]);
    let month = m.parse::<usize>().map_or("Jan", |m| MONTHS[(m - 1) % 12]);
    let weekday = DAYS[usize::try_from(t.div_euclid(86_400).rem_euclid(7)).unwrap_or(0)];
    format!("{weekday}, {d} {month} {y} {time} +0000")
}

fn command(conn: &mut Connection, line: &str) -> Result<(u16, String), String> {
    conn.write_all(format!("{line}\r\n").as_bytes())
        .and_then(|()| conn.flush())
        .map_err(|e| format!("sending {line}: {e}"))?;
    read_reply(conn)
}

/// One reply, all its lines (escaped for people), and its code.
fn read_reply(conn: &mut Connection) -> Result<(u16, String), String> {
    let mut text = Vec::new();
    for _ in 0..MAX_LINES {
        let mut line = Vec::new();
        let n = conn
            .read_line_bounded(&mut line, MAX_LINE)
            .map_err(|e| format!("reading a reply: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        let bare = line.strip_suffix(b"\n").unwrap_or(&line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        let shown = starttls::escape_controls(&String::from_utf8_lossy(bare)).into_owned();
        let code = line
            .get(..3)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an SMTP reply: {shown}"))?;
        let last = line.get(3) != Some(&b'-');
        text.push(shown);
        if last {
            return Ok((code, text.join("\n")));
        }
    }
    Err(format!("a reply of more than {MAX_LINES} lines"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_addresses() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_796_403_600),
            "Fri, 04 Dec 2026 17:00:00 +0000"
        );
        assert!(address_problem("alice@example.org").is_none());
        for bad in [
            "",
            "a b@x",
            "a@x>\r\nRCPT TO:<evil@x",
            "<a@x>",
            "caf\u{e9}@x",
        ] {
            assert!(address_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn the_message_is_dot_terminated_and_has_no_bare_line_feeds() {
        let m = message("a@x", &["b@y".to_owned(), "c@z".to_owned()], "TLSv1.3");
        assert!(m.ends_with("\r\n.\r\n"));
        assert!(m.contains("To: <b@y>, <c@z>\r\n"));
        assert!(!m.replace("\r\n", "").contains('\n'));
        assert!(!m.lines().any(|l| l.starts_with('.') && l != "."));
    }
}
