//! A mail domain's transport security as a sending MTA sees it: MTA-STS (RFC 8461) — the
//! `_mta-sts` TXT record and the policy file, parsed strictly, and the rule that matches an MX
//! host against the policy's patterns — and TLS-RPT (RFC 8460) — the `_smtp._tls` record.
//! Everything here is text from the network: bounded, and refused whole when malformed (a
//! sender then treats the domain as having no policy, RFC 8461 §3.1/§3.3).

use std::io::{Read, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::ClientConfig;
use crate::connect::{ConnectOptions, connect_with};
use crate::dns::Resolver;
use crate::error::{Error, Phase, Result};
use crate::protocol::Protocol;

/// The largest policy file accepted (RFC 8461 §3.3 leaves the bound to the sender; 64 KB is
/// what the large providers document).
/// (Private: cbindgen would write a public constant into the C header.)
const MAX_POLICY_BYTES: usize = 64 * 1024;

/// The longest `max_age` a policy may ask for: one year (RFC 8461 §3.2).
const MAX_POLICY_AGE: u32 = 31_557_600;

/// What a policy asks of senders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtaStsMode {
    /// Deliver only over verified TLS to a listed MX; otherwise do not deliver.
    Enforce,
    /// Check as for `Enforce`, report failures (TLS-RPT), deliver anyway.
    Testing,
    /// The domain withdrew its policy.
    None,
}

impl MtaStsMode {
    /// The policy file's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            MtaStsMode::Enforce => "enforce",
            MtaStsMode::Testing => "testing",
            MtaStsMode::None => "none",
        }
    }
}

/// An MTA-STS policy (RFC 8461 §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtaStsPolicy {
    /// What senders must do.
    pub mode: MtaStsMode,
    /// The MX patterns: host names, or `*.` and a domain (one leftmost label).
    pub mx: Vec<String>,
    /// How long a sender may cache the policy, in seconds.
    pub max_age: u32,
}

impl MtaStsPolicy {
    /// Parses a policy file: `key: value` lines ending in LF or CRLF; `version: STSv1`,
    /// `mode`, `max_age` exactly once each, `mx` once or more (unless the mode is `none`);
    /// unknown keys ignored (RFC 8461 §3.2). Anything else is [`Error::ProtocolViolation`].
    pub fn parse(body: &[u8]) -> Result<MtaStsPolicy> {
        if body.len() > MAX_POLICY_BYTES {
            return Err(bad(format!(
                "the policy is {} bytes, more than {MAX_POLICY_BYTES}",
                body.len()
            )));
        }
        let text = std::str::from_utf8(body).map_err(|_| bad("the policy is not UTF-8".into()))?;
        let (mut version, mut mode, mut max_age) = (None, None, None);
        let mut mx = Vec::new();
        for raw in text.split('\n') {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                continue;
            }
            if line.contains('\r') || line.chars().any(|c| c.is_control() && c != '\t') {
                return Err(bad(format!("a control character in {}", shown(line))));
            }
            let (key, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("{} is not `key: value`", shown(line))))?;
            let value = value.trim_matches([' ', '\t']);
            let once = |slot: &mut Option<String>, name: &str| match slot {
                Some(_) => Err(bad(format!("`{name}` appears twice"))),
                None => {
                    *slot = Some(value.to_owned());
                    Ok(())
                }
            };
            match key {
                "version" => once(&mut version, "version")?,
                "mode" => once(&mut mode, "mode")?,
                "max_age" => once(&mut max_age, "max_age")?,
                "mx" => mx.push(mx_pattern(value)?),
                // Keys are 1-32 of ALPHA / DIGIT / "_" / "-" / "." (sts-policy-ext-name).
                other if valid_extension_key(other) => {}
                other => return Err(bad(format!("{} is not a policy key", shown(other)))),
            }
        }
        match version.as_deref() {
            Some("STSv1") => {}
            Some(v) => return Err(bad(format!("version {} is not STSv1", shown(v)))),
            None => return Err(bad("no `version: STSv1`".into())),
        }
        let mode = match mode.as_deref() {
            Some("enforce") => MtaStsMode::Enforce,
            Some("testing") => MtaStsMode::Testing,
            Some("none") => MtaStsMode::None,
            Some(m) => {
                return Err(bad(format!(
                    "mode {} is not enforce, testing or none",
                    shown(m)
                )));
            }
            None => return Err(bad("no `mode`".into())),
        };
        let max_age = match max_age.as_deref() {
            Some(a) if !a.is_empty() && a.len() <= 10 && a.bytes().all(|b| b.is_ascii_digit()) => a
                .parse::<u64>()
                .ok()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= MAX_POLICY_AGE)
                .ok_or_else(|| bad(format!("max_age {a} is more than {}", MAX_POLICY_AGE)))?,
            Some(a) => return Err(bad(format!("max_age {} is not a number", shown(a)))),
            None => return Err(bad("no `max_age`".into())),
        };
        if mx.is_empty() && mode != MtaStsMode::None {
            return Err(bad(format!("mode {} without any `mx`", mode.as_str())));
        }
        Ok(MtaStsPolicy { mode, mx, max_age })
    }

    /// Whether `host` (an MX host name) matches one of the policy's patterns (RFC 8461 §4.1):
    /// equal ignoring case and a final dot, or `*.DOMAIN` standing for exactly one label.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
                None => host == *pattern,
            })
    }
}

/// An `mx` value, lower-cased: a host name, or `*.` and one (RFC 8461 §3.2).
fn mx_pattern(value: &str) -> Result<String> {
    let name = value.strip_prefix("*.").unwrap_or(value);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !ok {
        return Err(bad(format!(
            "mx {} is not a host name or *.domain",
            shown(value)
        )));
    }
    Ok(value.trim_end_matches('.').to_ascii_lowercase())
}

fn valid_extension_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 32
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The `_mta-sts` TXT record (RFC 8461 §3.1): `v=STSv1; id=...;`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtaStsRecord {
    /// The policy's instance id (1-32 letters and digits): a new id means a new policy.
    pub id: String,
}

impl MtaStsRecord {
    /// Picks the record out of a name's TXT records: those not starting with `v=STSv1` are
    /// ignored; anything but exactly one that parses is an error (the domain then has no
    /// usable policy, RFC 8461 §3.1). `Ok(None)` when there is none at all.
    pub fn from_txt(records: &[String]) -> Result<Option<MtaStsRecord>> {
        let sts: Vec<&String> = records
            .iter()
            .filter(|r| r.starts_with("v=STSv1;") || r.as_str() == "v=STSv1")
            .collect();
        match sts.as_slice() {
            [] => Ok(None),
            [one] => MtaStsRecord::parse(one).map(Some),
            more => Err(bad(format!(
                "{} _mta-sts records (one is allowed)",
                more.len()
            ))),
        }
    }

    /// Parses one record: `v=STSv1` first, then `id`, other fields ignored.
    pub fn parse(text: &str) -> Result<MtaStsRecord> {
        let fields = tag_fields(text)?;
        if fields.first().map(|(k, v)| (k.as_str(), v.as_str())) != Some(("v", "STSv1")) {
            return Err(bad(format!("{} does not start with v=STSv1", shown(text))));
        }
        let id = fields
            .iter()
            .find(|(k, _)| k == "id")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| bad(format!("{} has no id", shown(text))))?;
        if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad(format!(
                "id {} is not 1-32 letters and digits",
                shown(&id)
            )));
        }
        Ok(MtaStsRecord { id })
    }
}

/// The `_smtp._tls` TXT record (RFC 8460 §3): `v=TLSRPTv1; rua=URI[,URI]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsRptRecord {
    /// Where reports go: `mailto:` and `https:` URIs.
    pub rua: Vec<String>,
}

impl TlsRptRecord {
    /// Picks the record out of `_smtp._tls`'s TXT records (those starting with
    /// `v=TLSRPTv1`); more than one, or a malformed one, is an error. `Ok(None)` for none.
    pub fn from_txt(records: &[String]) -> Result<Option<TlsRptRecord>> {
        let rpt: Vec<&String> = records
            .iter()
            .filter(|r| r.starts_with("v=TLSRPTv1"))
            .collect();
        match rpt.as_slice() {
            [] => Ok(None),
            [one] => TlsRptRecord::parse(one).map(Some),
            more => Err(bad(format!(
                "{} _smtp._tls records (one is allowed)",
                more.len()
            ))),
        }
    }

    /// Parses one record: `v=TLSRPTv1` first, then `rua` with one or more `mailto:` or
    /// `https:` URIs separated by commas.
    pub fn parse(text: &str) -> Result<TlsRptRecord> {
        let fields = tag_fields(text)?;
        if fields.first().map(|(k, v)| (k.as_str(), v.as_str())) != Some(("v", "TLSRPTv1")) {
            return Err(bad(format!(
                "{} does not start with v=TLSRPTv1",
                shown(text)
            )));
        }
        let rua = fields
            .iter()
            .find(|(k, _)| k == "rua")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| bad(format!("{} has no rua", shown(text))))?;
        let uris: Vec<String> = rua.split(',').map(|u| u.trim().to_owned()).collect();
        for uri in &uris {
            let ok = match uri.split_once(':') {
                Some(("mailto", rest)) => rest.contains('@') && !rest.contains(char::is_whitespace),
                Some(("https", rest)) => rest.starts_with("//") && rest.len() > 2,
                _ => false,
            };
            if !ok {
                return Err(bad(format!(
                    "rua {} is not a mailto: or https: URI",
                    shown(uri)
                )));
            }
        }
        Ok(TlsRptRecord { rua: uris })
    }
}

/// What a domain publishes for MTA-STS, as a sender finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtaSts {
    /// The `_mta-sts` record; `None` when the domain has none (no MTA-STS).
    pub record: Option<MtaStsRecord>,
    /// The policy fetched over HTTPS (present whenever `record` is).
    pub policy: Option<MtaStsPolicy>,
}

/// Looks up `_mta-sts.DOMAIN` and, when it is there, fetches and parses the policy from
/// `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (RFC 8461 §3): the host's addresses from
/// `resolver`, the certificate verified for `mta-sts.DOMAIN` as `config` says (the webpki roots
/// by default), no redirects, at most 64 KB, everything within `timeout`. A
/// record without a policy that can be fetched and parsed is an error: a sender then has no
/// usable policy (and must not deliver less safely than without one).
pub fn mta_sts_policy(
    resolver: &Resolver,
    config: &ClientConfig,
    domain: &str,
    timeout: Duration,
) -> Result<MtaSts> {
    mta_sts_policy_at(resolver, config, domain, 443, timeout)
}

pub(crate) fn mta_sts_policy_at(
    resolver: &Resolver,
    config: &ClientConfig,
    domain: &str,
    port: u16,
    timeout: Duration,
) -> Result<MtaSts> {
    let started = Instant::now();
    let left = || timeout.saturating_sub(started.elapsed());
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let txt = resolver.lookup_txt(&format!("_mta-sts.{domain}"), left())?;
    let Some(record) = MtaStsRecord::from_txt(&txt.records)? else {
        return Ok(MtaSts {
            record: None,
            policy: None,
        });
    };
    let host = format!("mta-sts.{domain}");
    let addresses = resolver.lookup_ip(&host, left())?.records;
    let body = fetch_policy(config, &host, &addresses, port)?;
    Ok(MtaSts {
        record: Some(record),
        policy: Some(MtaStsPolicy::parse(&body)?),
    })
}

/// GET /.well-known/mta-sts.txt on each address in turn until one answers.
fn fetch_policy(
    config: &ClientConfig,
    host: &str,
    addresses: &[IpAddr],
    port: u16,
) -> Result<Vec<u8>> {
    let mut last = Error::Resolve {
        host: host.to_owned(),
        source: None,
    };
    for ip in addresses {
        let options = ConnectOptions::new().server_name(host);
        match connect_with(config, Protocol::Https, &ip.to_string(), port, &options) {
            Ok(mut conn) => {
                let got = http_get(&mut conn, host);
                let _ = conn.close();
                return got;
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One HTTP/1.1 request and its answer's body: 200 only (a redirect is refused, RFC 8461
/// §3.3), `text/plain`, a body of at most MAX_POLICY_BYTES by Content-Length, chunks or close.
fn http_get(conn: &mut crate::stream::Connection, host: &str) -> Result<Vec<u8>> {
    let request = format!(
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nUser-Agent: starttls/{}\r\n\
         Accept: text/plain\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    conn.write_all(request.as_bytes())
        .and_then(|()| conn.flush())
        .map_err(|e| Error::from_io(Phase::Write, e))?;
    let status = header_line(conn)?;
    let code = status
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .ok_or_else(|| bad(format!("{} is not an HTTP status line", shown(&status))))?;
    if code != "200" {
        let why = if code.starts_with('3') {
            "a redirect, which MTA-STS does not follow"
        } else {
            "not 200"
        };
        return Err(Error::Refused {
            phase: Phase::Read,
            reply: format!("{} ({why})", crate::text::escape_controls(&status)),
        });
    }
    let (mut length, mut chunked, mut plain) = (None, false, false);
    for _ in 0..100 {
        let line = header_line(conn)?;
        if line.is_empty() {
            if !plain {
                return Err(bad("the policy is not served as text/plain".into()));
            }
            return if chunked {
                read_chunked(conn)
            } else {
                read_body(conn, length)
            };
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("{} is not a header", shown(&line))))?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| bad(format!("Content-Length {}", shown(value))))?;
                if length.replace(n).is_some_and(|m| m != n) {
                    return Err(bad("two different Content-Length headers".into()));
                }
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-type" => {
                plain = value
                    .split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"));
            }
            _ => {}
        }
    }
    Err(bad("more than 100 header lines".into()))
}

/// One header line without its CRLF, at most 8 KB.
fn header_line(conn: &mut crate::stream::Connection) -> Result<String> {
    let mut line = Vec::new();
    match conn.read_line_bounded(&mut line, 8192) {
        Ok(0) => Err(Error::Closed { phase: Phase::Read }),
        Ok(_) => {
            let text = String::from_utf8_lossy(&line);
            Ok(text.trim_end_matches(['\r', '\n']).to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(bad("a header line longer than 8 KB".into()))
        }
        Err(e) => Err(Error::from_io(Phase::Read, e)),
    }
}

/// The body by its length, or up to the close; more than MAX_POLICY_BYTES is refused.
fn read_body(conn: &mut crate::stream::Connection, length: Option<usize>) -> Result<Vec<u8>> {
    if length.is_some_and(|n| n > MAX_POLICY_BYTES) {
        return Err(bad(format!(
            "a policy of {} bytes, more than {MAX_POLICY_BYTES}",
            length.unwrap_or(0)
        )));
    }
    let limit = length.unwrap_or(MAX_POLICY_BYTES + 1);
    let mut body = Vec::new();
    conn.take(limit as u64)
        .read_to_end(&mut body)
        .map_err(|e| Error::from_io(Phase::Read, e))?;
    if body.len() > MAX_POLICY_BYTES {
        return Err(bad(format!(
            "a policy longer than {MAX_POLICY_BYTES} bytes"
        )));
    }
    if length.is_some_and(|n| n != body.len()) {
        return Err(bad("the policy ended before its Content-Length".into()));
    }
    Ok(body)
}

/// A chunked body (RFC 9112 §7.1), its total bounded.
fn read_chunked(conn: &mut crate::stream::Connection) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = header_line(conn)?;
        let hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| bad(format!("chunk size {}", shown(hex))))?;
        if size == 0 {
            // Trailers, up to the empty line.
            for _ in 0..100 {
                if header_line(conn)?.is_empty() {
                    return Ok(body);
                }
            }
            return Err(bad("more than 100 trailer lines".into()));
        }
        if body.len() + size > MAX_POLICY_BYTES {
            return Err(bad(format!(
                "a policy longer than {MAX_POLICY_BYTES} bytes"
            )));
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])
            .map_err(|e| Error::from_io(Phase::Read, e))?;
        if !header_line(conn)?.is_empty() {
            return Err(bad("a chunk not followed by CRLF".into()));
        }
    }
}

/// `k=v; k=v` fields of a DNS record (a trailing `;` allowed), in order.
fn tag_fields(text: &str) -> Result<Vec<(String, String)>> {
    if text.len() > 2048 || text.chars().any(char::is_control) {
        return Err(bad(format!("{} is not a tag record", shown(text))));
    }
    let mut out = Vec::new();
    for part in text.split(';') {
        let part = part.trim_matches([' ', '\t']);
        if part.is_empty() {
            continue;
        }
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{} is not key=value", shown(part))))?;
        out.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(out)
}

fn bad(detail: String) -> Error {
    Error::ProtocolViolation {
        phase: Phase::Read,
        detail,
        reply: None,
    }
}

/// Peer text for a message: escaped and cut short.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(80).collect();
    format!("{:?}", crate::text::escape_controls(&cut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::server_config::ServerConfig;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use std::net::TcpListener;

    const HOST: &str = "mta-sts.example.test";

    /// A CA (its PEM) and a server config presenting a certificate it signed for HOST.
    fn pki() -> (String, ServerConfig) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![HOST.to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let server = ServerConfig::builder()
            .certificate_pem(leaf.pem().into_bytes(), key.serialize_pem().into_bytes())
            .build()
            .unwrap();
        (ca.pem(), server)
    }

    /// An HTTPS server on loopback that answers one request with `response`; returns the
    /// port and the request it read.
    fn https(response: Vec<u8>) -> (String, u16, std::thread::JoinHandle<String>) {
        let (ca, server) = pki();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let mut conn = crate::accept::accept(&server, Protocol::Https, sock).unwrap();
            let mut request = String::new();
            loop {
                let mut line = Vec::new();
                conn.read_line_bounded(&mut line, 8192).unwrap();
                if line == b"\r\n" || line.is_empty() {
                    break;
                }
                request.push_str(&String::from_utf8_lossy(&line));
            }
            let _ = conn.write_all(&response);
            let _ = conn.flush();
            let _ = conn.close();
            request
        });
        (ca, port, handle)
    }

    fn fetch(response: &[u8]) -> (Result<Vec<u8>>, String) {
        let (ca, port, server) = https(response.to_vec());
        let config = ClientConfig::builder()
            .trust_ca_pem(ca.into_bytes())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let got = fetch_policy(&config, HOST, &["127.0.0.1".parse().unwrap()], port);
        (got, server.join().unwrap())
    }

    #[test]
    fn the_policy_comes_by_length_by_chunks_or_until_the_close() {
        let (got, request) = fetch(
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{GOOD}", GOOD.len()).as_bytes(),
        );
        assert_eq!(
            MtaStsPolicy::parse(&got.unwrap()).unwrap().mode,
            MtaStsMode::Enforce
        );
        assert!(
            request.starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains(&format!("Host: {HOST}\r\n")), "{request}");
        let (got, _) = fetch(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nversi\r\n9\r\non: STSv1\r\n0\r\n\r\n");
        assert_eq!(got.unwrap(), b"version: STSv1");
        let (got, _) =
            fetch(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\n");
        assert_eq!(got.unwrap(), b"version: STSv1\n");
    }

    #[test]
    fn redirects_other_types_and_oversized_bodies_are_refused() {
        let (got, _) = fetch(b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.example/\r\nContent-Length: 0\r\n\r\n");
        let e = got.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert!(e.to_string().contains("redirect"), "{e}");
        let (got, _) = fetch(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(got.unwrap_err().kind(), ErrorKind::Refused);
        let (got, _) =
            fetch(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi");
        assert!(got.unwrap_err().to_string().contains("text/plain"));
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            MAX_POLICY_BYTES + 1
        );
        let (got, _) = fetch(big.as_bytes());
        assert_eq!(got.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        let mut endless = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        endless.resize(endless.len() + MAX_POLICY_BYTES + 10, b'x');
        let (got, _) = fetch(&endless);
        assert_eq!(got.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        let (got, _) = fetch(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nfffff\r\n");
        assert_eq!(got.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        let (got, _) = fetch(b"SMTP/1.0 220 hello\r\n\r\n");
        assert_eq!(got.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn the_policy_host_must_present_a_certificate_for_its_name() {
        let (_, port, _server) = https(b"HTTP/1.1 200 OK\r\n\r\n".to_vec());
        // The webpki roots do not know the test CA.
        let config = ClientConfig::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let e = fetch_policy(&config, HOST, &["127.0.0.1".parse().unwrap()], port).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Certificate, "{e}");
    }

    const GOOD: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\nmx: *.backup.example.org\r\nmax_age: 604800\r\n";

    #[test]
    fn malformed_policies_are_refused_whole() {
        for bad in [
            "",
            "mode: enforce\nmx: a.example\nmax_age: 1\n", // no version
            "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", // another version
            "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n", // enforce without mx
            "version: STSv1\nmode: enforce\nmx: a.example\n", // no max_age
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n",
            "version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\ngarbage line\n",
            "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: mx.example/evil\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nbad key: x\n",
            "version: STSv1\rmode: enforce\nmx: a.example\nmax_age: 1\n", // a bare CR
            "version: STSv1\nmode: enforce\nmx: a.\x1b[31mexample\nmax_age: 1\n",
            "Version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", // keys are exact
        ] {
            let e = MtaStsPolicy::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(
                e.kind(),
                crate::error::ErrorKind::ProtocolViolation,
                "{bad:?}"
            );
            assert!(!e.to_string().contains('\x1b'), "{e}");
        }
        assert!(MtaStsPolicy::parse(&[0xff, 0xfe]).is_err());
        let mut big = GOOD.as_bytes().to_vec();
        big.resize(MAX_POLICY_BYTES + 1, b'\n');
        assert!(MtaStsPolicy::parse(&big).is_err());
    }

    #[test]
    fn a_policy_parses_with_lf_or_crlf_and_unknown_keys() {
        let p = MtaStsPolicy::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(p.mode, MtaStsMode::Enforce);
        assert_eq!(p.mx, ["mx1.example.org", "*.backup.example.org"]);
        assert_eq!(p.max_age, 604_800);
        let lf = GOOD.replace("\r\n", "\n") + "future_key: whatever\n";
        assert_eq!(MtaStsPolicy::parse(lf.as_bytes()).unwrap(), p);
        let none = MtaStsPolicy::parse(b"version: STSv1\nmode: none\nmax_age: 0").unwrap();
        assert_eq!((none.mode, none.mx.len()), (MtaStsMode::None, 0));
    }

    #[test]
    fn the_wildcard_stands_for_exactly_one_label() {
        let p = MtaStsPolicy::parse(GOOD.as_bytes()).unwrap();
        assert!(p.allows("mx1.example.org"));
        assert!(p.allows("MX1.Example.Org."));
        assert!(p.allows("b1.backup.example.org"));
        assert!(!p.allows("backup.example.org"));
        assert!(!p.allows("a.b.backup.example.org"));
        assert!(!p.allows("mx2.example.org"));
        assert!(!p.allows("evilmx1.example.org"));
    }

    #[test]
    fn the_sts_record_is_one_record_with_an_id() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            MtaStsRecord::from_txt(&r(&["v=spf1 -all", "v=STSv1; id=20261205T1;"])).unwrap(),
            Some(MtaStsRecord {
                id: "20261205T1".into()
            })
        );
        assert_eq!(MtaStsRecord::from_txt(&r(&["v=spf1 -all"])).unwrap(), None);
        for bad in [
            &["v=STSv1; id=a;", "v=STSv1; id=b;"][..],
            &["v=STSv1;"],
            &["v=STSv1; id=has space;"],
            &["v=STSv1; id=0123456789012345678901234567890123;"],
            &["v=STSv1; id=x!;"],
        ] {
            assert!(MtaStsRecord::from_txt(&r(bad)).is_err(), "{bad:?}");
        }
        assert!(MtaStsRecord::parse("id=x; v=STSv1").is_err());
    }

    #[test]
    fn the_tls_rpt_record_names_where_reports_go() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let rec = TlsRptRecord::from_txt(&r(&[
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.org,https://reports.example.org/tlsrpt",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(rec.rua.len(), 2);
        assert_eq!(TlsRptRecord::from_txt(&r(&["other"])).unwrap(), None);
        for bad in [
            "v=TLSRPTv1;",
            "v=TLSRPTv1; rua=ftp://x",
            "v=TLSRPTv1; rua=mailto:nobody",
            "v=TLSRPTv1; rua=https:",
            "rua=mailto:a@b; v=TLSRPTv1",
        ] {
            assert!(TlsRptRecord::parse(bad).is_err(), "{bad:?}");
        }
    }
}
