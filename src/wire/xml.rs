//! A small, strict, bounded XML token reader for XMPP's pre-TLS stream.
//!
//! It reads one token at a time from the [`Wire`], consuming exactly that token's bytes (a tag
//! ends at its `>`; text ends before the next `<`), so it never reads past the `<proceed/>` that
//! starts TLS. What XMPP forbids is refused (RFC 6120 §11.1): DOCTYPE, comments, CDATA,
//! processing instructions other than the XML declaration, and entity references other than the
//! five predefined ones and character references. Each token is bounded by the line limit.

use crate::error::{Error, Phase, Result};
use crate::wire::{Deadline, Direction, Wire, printable};

/// One XML token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Token {
    /// `<?xml ...?>`
    Declaration,
    /// `<name a='v'>` or, with `empty`, `<name a='v'/>`.
    Start {
        name: String,
        attrs: Vec<(String, String)>,
        empty: bool,
    },
    /// `</name>`
    End { name: String },
    /// Character data, entities decoded.
    Text(String),
}

impl Token {
    /// The bytes the token holds (names, attributes, text), for size limits.
    pub fn size(&self) -> usize {
        match self {
            Token::Declaration => 0,
            Token::Start { name, attrs, .. } => {
                name.len() + attrs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            }
            Token::End { name } => name.len(),
            Token::Text(t) => t.len(),
        }
    }
}

impl Wire<'_> {
    /// Reads the next XML token before `deadline`. With `text_ok` false (between stanzas, before
    /// the stream header) only whitespace may stand between tags, and anything else fails at once
    /// instead of waiting for a `<` that a non-XMPP peer will never send.
    pub fn read_xml(&mut self, deadline: &Deadline, text_ok: bool) -> Result<Token> {
        let phase = deadline.phase();
        let max = self.limits().max_line;
        let mut raw: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut scan = Scan::default();
        loop {
            let want = chunk.len().min(max + 1 - raw.len());
            let got = self.peek_some(&mut chunk[..want], deadline)?;
            let seen = &chunk[..got];
            let is_text = raw.first().copied().unwrap_or(seen[0]) != b'<';
            let take = if is_text {
                // Text runs up to (not including) the next '<'.
                seen.iter().position(|&b| b == b'<').unwrap_or(got)
            } else {
                scan.end_of_tag(seen).map_or(got, |i| i + 1)
            };
            if is_text && !text_ok && !seen[..take].iter().all(u8::is_ascii_whitespace) {
                let text = printable(&seen[..take]);
                return Err(Error::violation_in(
                    phase,
                    "not XML (text outside an element)",
                    &text,
                ));
            }
            self.consume_peeked(take, phase)?;
            raw.extend_from_slice(&seen[..take]);
            let complete = if is_text { take < got } else { scan.done };
            if complete {
                break;
            }
            if raw.len() > max {
                return Err(Error::violation(
                    phase,
                    format!("XML token longer than {max} bytes"),
                ));
            }
        }
        let text = printable(&raw);
        // The text of a SASL `<auth>` or `<response>` is a credential (a client may send one
        // before TLS, and is refused): it is never shown.
        let secret = !raw.starts_with(b"<")
            && self.last_received().is_some_and(|l| {
                ["<auth", "<response"].iter().any(|p| {
                    l.strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with([' ', '>']))
                })
            });
        let shown = if secret {
            "<credentials>".to_owned()
        } else {
            text
        };
        self.note(Direction::Received, shown.clone());
        parse_token(&raw).map_err(|what| Error::violation_in(phase, format!("XML: {what}"), &shown))
    }
}

/// Tracks where a tag ends: the first `>` outside a quoted attribute value.
#[derive(Default)]
struct Scan {
    quote: Option<u8>,
    done: bool,
}

impl Scan {
    fn end_of_tag(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            match self.quote {
                Some(q) if b == q => self.quote = None,
                Some(_) => {}
                None if b == b'"' || b == b'\'' => self.quote = Some(b),
                None if b == b'>' => {
                    self.done = true;
                    return Some(i);
                }
                None => {}
            }
        }
        None
    }
}

fn parse_token(raw: &[u8]) -> std::result::Result<Token, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "invalid UTF-8".to_owned())?;
    if let Some(c) = text.chars().find(|c| !is_xml_char(*c)) {
        return Err(format!(
            "character U+{:04X} is not allowed in XML",
            c as u32
        ));
    }
    let Some(inner) = text.strip_prefix('<') else {
        return Ok(Token::Text(decode(text)?));
    };
    let inner = inner.strip_suffix('>').ok_or("unterminated tag")?;
    if let Some(decl) = inner.strip_prefix("?xml") {
        if decl.ends_with('?') && decl.starts_with(|c: char| c.is_ascii_whitespace()) {
            return Ok(Token::Declaration);
        }
        return Err("processing instruction".into());
    }
    if inner.starts_with('?') {
        return Err("processing instruction".into());
    }
    if inner.starts_with('!') {
        return Err("DOCTYPE, comment or CDATA section (forbidden in XMPP)".into());
    }
    if let Some(name) = inner.strip_prefix('/') {
        let name = name.trim_end();
        check_name(name)?;
        return Ok(Token::End {
            name: name.to_owned(),
        });
    }
    let (body, empty) = match inner.strip_suffix('/') {
        Some(b) => (b, true),
        None => (inner, false),
    };
    let name_end = body
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(body.len());
    let name = &body[..name_end];
    check_name(name)?;
    let attrs = parse_attributes(&body[name_end..])?;
    Ok(Token::Start {
        name: name.to_owned(),
        attrs,
        empty,
    })
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ':' | '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("bad element or attribute name {name:?}"))
    }
}

fn parse_attributes(mut s: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut attrs: Vec<(String, String)> = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(attrs);
        }
        let eq = s.find('=').ok_or("attribute without a value")?;
        let name = s[..eq].trim_end();
        check_name(name)?;
        let rest = s[eq + 1..].trim_start();
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"');
        let quote = quote.ok_or("unquoted attribute value")?;
        let close = rest[1..]
            .find(quote)
            .ok_or("unterminated attribute value")?;
        let raw_value = &rest[1..1 + close];
        if raw_value.contains('<') {
            return Err("'<' in an attribute value".into());
        }
        if attrs.iter().any(|(n, _)| n == name) {
            return Err(format!("duplicate attribute {name}"));
        }
        attrs.push((name.to_owned(), decode(raw_value)?));
        s = &rest[close + 2..];
        if !s.is_empty() && !s.starts_with(|c: char| c.is_ascii_whitespace()) {
            return Err("no space between attributes".into());
        }
    }
}

/// Decodes the five predefined entities and character references; anything else is refused.
/// XML 1.0 §2.2 `Char`: no C0 control but TAB, LF and CR (DEL and C1 are allowed, and escaped
/// wherever the text reaches a person).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}'
}

fn decode(s: &str) -> std::result::Result<String, String> {
    if !s.contains('&') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after.find(';').ok_or("unterminated entity reference")?;
        let entity = &after[..semi];
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    return Err(format!(
                        "entity reference &{entity}; (only predefined ones)"
                    ));
                };
                code.and_then(char::from_u32)
                    .filter(|c| is_xml_char(*c))
                    .ok_or("character reference to a character XML does not allow")?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits `prefix:local` into its parts.
pub(crate) fn split_name(name: &str) -> (Option<&str>, &str) {
    match name.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, name),
    }
}

/// Namespace scopes, one per open element.
#[derive(Default)]
pub(crate) struct Namespaces {
    scopes: Vec<Vec<(Option<String>, String)>>,
}

impl Namespaces {
    /// Opens an element: records its `xmlns` / `xmlns:p` declarations.
    pub fn push(&mut self, attrs: &[(String, String)]) {
        let decls = attrs
            .iter()
            .filter_map(|(n, v)| match n.as_str() {
                "xmlns" => Some((None, v.clone())),
                _ => n
                    .strip_prefix("xmlns:")
                    .map(|p| (Some(p.to_owned()), v.clone())),
            })
            .collect();
        self.scopes.push(decls);
    }

    pub fn pop(&mut self) {
        self.scopes.pop();
    }

    pub fn depth(&self) -> usize {
        self.scopes.len()
    }

    /// The namespace of `prefix` (None: the default namespace) in the innermost scope.
    pub fn resolve(&self, prefix: Option<&str>) -> Option<&str> {
        self.scopes.iter().rev().find_map(|scope| {
            scope
                .iter()
                .find(|(p, _)| p.as_deref() == prefix)
                .map(|(_, uri)| uri.as_str())
        })
    }
}

impl Wire<'_> {
    /// Peeks at least one byte before `deadline`.
    fn peek_some(&mut self, buf: &mut [u8], deadline: &Deadline) -> Result<usize> {
        let phase = deadline.phase();
        let left = deadline.remaining()?;
        self.io
            .set_read_timeout(Some(left))
            .map_err(|e| Error::from_io(phase, e))?;
        let n =
            super::retry_interrupted(|| self.io.peek(buf)).map_err(|e| Error::from_io(phase, e))?;
        if n == 0 {
            return Err(Error::Closed { phase });
        }
        Ok(n)
    }

    fn consume_peeked(&mut self, n: usize, phase: Phase) -> Result<()> {
        self.io.consume(n).map_err(|e| Error::from_io(phase, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(name: &str, attrs: &[(&str, &str)], empty: bool) -> Token {
        Token::Start {
            name: name.into(),
            attrs: attrs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            empty,
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(
            parse_token(b"<?xml version='1.0'?>"),
            Ok(Token::Declaration)
        );
        assert_eq!(
            parse_token(b"<starttls xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"/>"),
            Ok(start(
                "starttls",
                &[("xmlns", "urn:ietf:params:xml:ns:xmpp-tls")],
                true
            ))
        );
        assert_eq!(
            parse_token(b"<stream:features>"),
            Ok(start("stream:features", &[], false))
        );
        assert_eq!(
            parse_token(b"</stream:features >"),
            Ok(Token::End {
                name: "stream:features".into()
            })
        );
        assert_eq!(
            parse_token(b"a &lt;b&gt; &#65;&#x42;"),
            Ok(Token::Text("a <b> AB".into()))
        );
        assert_eq!(
            parse_token(b"<a x='1 > 2' y=\"it's\">"),
            Ok(start("a", &[("x", "1 > 2"), ("y", "it's")], false))
        );
    }

    #[test]
    fn forbidden_constructs_are_refused() {
        for bad in [
            &b"<!DOCTYPE stream [<!ENTITY x 'y'>]>"[..],
            b"<!-- comment -->",
            b"<![CDATA[x]]>",
            b"<?php evil?>",
            b"&xxe;",
            b"&#0;",
            b"<a x=1>",
            b"<a x='1' x='2'>",
            b"<a x='<'>",
            b"<1a>",
            b"<a x='1'y='2'>",
            b"\xff",
            b"<a\0>",
        ] {
            assert!(
                parse_token(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn tag_end_respects_quotes() {
        let mut s = Scan::default();
        assert_eq!(s.end_of_tag(b"<a x='>' y"), None);
        assert_eq!(s.end_of_tag(b"='\">'>rest"), Some(5));
    }

    #[test]
    fn namespaces_resolve_innermost_first() {
        let mut ns = Namespaces::default();
        ns.push(&[
            ("xmlns".into(), "jabber:client".into()),
            (
                "xmlns:stream".into(),
                "http://etherx.jabber.org/streams".into(),
            ),
        ]);
        ns.push(&[("xmlns".into(), "urn:ietf:params:xml:ns:xmpp-tls".into())]);
        assert_eq!(ns.resolve(None), Some("urn:ietf:params:xml:ns:xmpp-tls"));
        assert_eq!(
            ns.resolve(Some("stream")),
            Some("http://etherx.jabber.org/streams")
        );
        ns.pop();
        assert_eq!(ns.resolve(None), Some("jabber:client"));
        assert_eq!(ns.resolve(Some("nope")), None);
        assert_eq!(split_name("stream:features"), (Some("stream"), "features"));
    }
}
