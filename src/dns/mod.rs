//! A small stub resolver for DANE: DNS messages (hickory-proto) over std UDP and TCP, no async
//! runtime. It asks a validating resolver (resolv.conf's, or one named) with the DO bit set and
//! believes an answer secure only when that resolver set AD — the model Postfix follows with
//! `smtp_dns_support_level = dnssec` and a local validating resolver. It validates nothing
//! itself, so the path to the resolver must be trusted: AD is believed only from loopback
//! resolvers, from resolv.conf with `options trust-ad` (as glibc does), or when the caller says
//! so ([`Resolver::trust_ad`]); otherwise every answer is insecure (no DANE).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::error::{Error, Phase, Result};
use crate::verify::TlsaRecord;
use crate::wire::Deadline;

/// The largest UDP answer asked for (the DNS flag day 2020 value): bigger ones come truncated
/// and are asked again over TCP.
const UDP_PAYLOAD: u16 = 1232;

/// Where queries go: one or more recursive, validating resolvers, tried in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
    /// Whether the AD bit of these resolvers' answers is believed.
    trust_ad: bool,
}

/// The records a lookup found, and whether the resolver vouched for them (DNSSEC, AD bit).
/// No records (NXDOMAIN or no data) is an answer too: `secure` then says whether their absence
/// was proven.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<T> {
    /// The records of the type asked for (after any CNAME the resolver followed).
    pub records: Vec<T>,
    /// The resolver validated the answer (it set the AD bit).
    pub secure: bool,
}

impl Resolver {
    /// The nameservers in `/etc/resolv.conf`.
    pub fn system() -> Result<Resolver> {
        let text = std::fs::read_to_string("/etc/resolv.conf")
            .map_err(|e| Error::Config(format!("cannot read /etc/resolv.conf: {e}")))?;
        Resolver::from_resolv_conf(&text)
    }

    /// The `nameserver` lines of a resolv.conf text (port 53). AD is believed when every one is
    /// on loopback, or the text has `options trust-ad`.
    pub fn from_resolv_conf(text: &str) -> Result<Resolver> {
        let trust_ad_option = text.lines().any(|l| {
            l.trim()
                .strip_prefix("options")
                .is_some_and(|o| o.split_whitespace().any(|w| w == "trust-ad"))
        });
        let servers: Vec<SocketAddr> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|rest| rest.split_whitespace().next())
            // A zone index (fe80::1%eth0) is not something this stub can use: skipped.
            .filter_map(|a| a.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if servers.is_empty() {
            return Err(Error::Config("no usable nameserver in resolv.conf".into()));
        }
        let trust_ad = trust_ad_option || servers.iter().all(|s| s.ip().is_loopback());
        Ok(Resolver { servers, trust_ad })
    }

    /// One resolver at `server`; its AD bit is believed if it is on loopback.
    pub fn at(server: SocketAddr) -> Resolver {
        Resolver {
            servers: vec![server],
            trust_ad: server.ip().is_loopback(),
        }
    }

    /// Believe (or not) the AD bit of these resolvers: for a validating resolver reached over
    /// a path you trust that is not loopback. Anyone on an untrusted path can set AD.
    pub fn trust_ad(mut self, yes: bool) -> Resolver {
        self.trust_ad = yes;
        self
    }

    /// Whether answers can be secure at all (the AD bit is believed).
    pub fn trusts_ad(&self) -> bool {
        self.trust_ad
    }

    /// `ADDR[:PORT]` as an operator writes it: `127.0.0.53`, `127.0.0.53:5353`, `::1`,
    /// `[::1]:5353` (port 53 by default).
    pub fn parse_server(text: &str) -> Result<SocketAddr> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, 53));
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr);
        }
        if let Some(ip) = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<IpAddr>().ok())
        {
            return Ok(SocketAddr::new(ip, 53));
        }
        Err(Error::InvalidArgument(format!(
            "resolver {:?} is not ADDRESS[:PORT]",
            crate::text::escape_controls(text)
        )))
    }

    /// The resolvers asked, in order.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// The IPv4 and IPv6 addresses of `host`, secure only if both answers were.
    pub fn lookup_ip(&self, host: &str, timeout: Duration) -> Result<Answer<IpAddr>> {
        let deadline = Deadline::after(timeout, Phase::Resolve);
        let mut all = Answer {
            records: Vec::new(),
            secure: true,
        };
        for rtype in [RecordType::A, RecordType::AAAA] {
            let a = self.lookup(host, rtype, &deadline, |data| match data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })?;
            all.records.extend(a.records);
            all.secure &= a.secure;
        }
        Ok(all)
    }

    /// The TLSA records of `_PORT._tcp.HOST` (RFC 6698 §3).
    pub fn lookup_tlsa(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Answer<TlsaRecord>> {
        let deadline = Deadline::after(timeout, Phase::Resolve);
        let name = format!("_{port}._tcp.{}", host.trim_end_matches('.'));
        self.lookup(&name, RecordType::TLSA, &deadline, tlsa_record)
    }

    /// The MX records of `domain` as (preference, exchange), the exchange without its final
    /// dot; a null MX (RFC 7505, "0 .") is an empty exchange. Sorted by preference (ties keep
    /// the resolver's order). No records means no MX: the domain itself is the mail host
    /// (RFC 5321 §5.1), which the caller decides.
    pub fn lookup_mx(&self, domain: &str, timeout: Duration) -> Result<Answer<(u16, String)>> {
        let deadline = Deadline::after(timeout, Phase::Resolve);
        let mut answer = self.lookup(domain, RecordType::MX, &deadline, |data| match data {
            RData::MX(mx) => Some((
                mx.preference,
                mx.exchange
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
            )),
            _ => None,
        })?;
        answer.records.sort_by_key(|(preference, _)| *preference);
        Ok(answer)
    }

    /// The TXT records of `name`, each one's character-strings joined (RFC 7208 §3.3 style),
    /// as text (bytes that are not UTF-8 replaced; the callers' formats are ASCII).
    pub fn lookup_txt(&self, name: &str, timeout: Duration) -> Result<Answer<String>> {
        let deadline = Deadline::after(timeout, Phase::Resolve);
        self.lookup(name, RecordType::TXT, &deadline, |data| match data {
            RData::TXT(txt) => {
                let joined: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                Some(String::from_utf8_lossy(&joined).into_owned())
            }
            _ => None,
        })
    }

    /// Asks each resolver in turn until one answers within `deadline`. Only a transport failure
    /// (no answer) moves on to the next: SERVFAIL or another error code is final, since a
    /// validating resolver says SERVFAIL for bogus data, and a second, perhaps non-validating
    /// resolver must not turn that into an insecure answer.
    fn lookup<T>(
        &self,
        name: &str,
        rtype: RecordType,
        deadline: &Deadline,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Answer<T>> {
        let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
            .map_err(|e| Error::InvalidArgument(format!("{name:?} is not a DNS name: {e}")))?;
        let mut last = None;
        for (i, server) in self.servers.iter().enumerate() {
            // Each resolver left gets an equal share of the time left.
            let left = deadline.remaining()?;
            let share = left / u32::try_from(self.servers.len() - i).unwrap_or(u32::MAX);
            match exchange(*server, &fqdn, rtype, share) {
                Ok(m) => {
                    return match records_in(&m, rtype, &pick) {
                        Ok(mut answer) => {
                            answer.secure &= self.trust_ad;
                            Ok(answer)
                        }
                        Err(why) => Err(Error::Resolve {
                            host: format!("{name} ({rtype})"),
                            source: Some(io::Error::other(format!("{server} answered {why}"))),
                        }),
                    };
                }
                Err(e) => last = Some(format!("{server}: {e}")),
            }
        }
        Err(Error::Resolve {
            host: format!("{name} ({rtype})"),
            source: Some(io::Error::other(
                last.unwrap_or_else(|| "no resolver to ask".into()),
            )),
        })
    }
}

/// The records of type `rtype` in an answer, and whether it was validated; an answer that is
/// neither NOERROR nor NXDOMAIN is an error, said in words.
pub(crate) fn records_in<T>(
    m: &Message,
    rtype: RecordType,
    pick: impl Fn(&RData) -> Option<T>,
) -> std::result::Result<Answer<T>, String> {
    match m.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {
            // Only records owned by the name asked, or by the targets of a CNAME chain that
            // starts there (a resolver follows it), count.
            let mut owners: Vec<Name> = m.queries.iter().map(|q| q.name().clone()).collect();
            for r in &m.answers {
                if let RData::CNAME(target) = &r.data {
                    if owners.contains(&r.name) && !owners.contains(&target.0) {
                        owners.push(target.0.clone());
                    }
                }
            }
            Ok(Answer {
                records: m
                    .answers
                    .iter()
                    .filter(|r| r.record_type() == rtype && owners.contains(&r.name))
                    .filter_map(|r| pick(&r.data))
                    .collect(),
                secure: m.metadata.authentic_data,
            })
        }
        ResponseCode::ServFail => Err(format!(
            "{} (from a validating resolver: a bogus signature or a broken zone)",
            ResponseCode::ServFail
        )),
        code => Err(code.to_string()),
    }
}

/// The TLSA records a resolver's answer (`bytes`) to a TLSA query with id `id` holds: what the
/// fuzz target drives.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn tlsa_in_answer(id: u16, bytes: &[u8]) -> Option<Answer<TlsaRecord>> {
    let name = Name::from_ascii("_25._tcp.mx.example.").ok()?;
    let mut q = query(&name, RecordType::TLSA);
    q.metadata.id = id;
    let m = answer_to(&q, bytes)?;
    records_in(&m, RecordType::TLSA, tlsa_record).ok()
}

/// A TLSA record from DNS as the verifier takes it.
fn tlsa_record(data: &RData) -> Option<TlsaRecord> {
    match data {
        RData::TLSA(t) => Some(TlsaRecord::new(
            t.cert_usage.into(),
            t.selector.into(),
            t.matching.into(),
            t.cert_data.clone(),
        )),
        _ => None,
    }
}

/// One query to one resolver: UDP, then TCP if the answer came truncated.
fn exchange(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    time: Duration,
) -> io::Result<Message> {
    let deadline = std::time::Instant::now() + time;
    let left = || {
        deadline
            .checked_duration_since(std::time::Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    };
    let query = query(name, rtype);
    let wire = query
        .to_vec()
        .map_err(|e| io::Error::other(format!("cannot encode the query: {e}")))?;
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let udp = UdpSocket::bind(local)?;
    udp.connect(server)?;
    udp.send(&wire)?;
    let mut buf = vec![0u8; 65535];
    let answer = loop {
        udp.set_read_timeout(Some(left()?))?;
        let n = udp.recv(&mut buf)?;
        // Anything that is not the answer to this query (a late answer to an earlier one, a
        // forgery with a guessed port) is dropped, and the wait goes on.
        if let Some(m) = answer_to(&query, &buf[..n]) {
            break m;
        }
    };
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    let mut tcp = TcpStream::connect_timeout(&server, left()?)?;
    tcp.set_write_timeout(Some(left()?))?;
    let len = u16::try_from(wire.len()).map_err(io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(&wire);
    tcp.write_all(&framed)?;
    // Every read within what is left of the deadline (a peer dripping bytes cannot stretch it).
    let mut read_exact = |buf: &mut [u8]| -> io::Result<()> {
        let mut got = 0;
        while got < buf.len() {
            tcp.set_read_timeout(Some(left()?))?;
            match tcp.read(&mut buf[got..])? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        Ok(())
    };
    let mut len = [0u8; 2];
    read_exact(&mut len)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_exact(&mut body)?;
    match answer_to(&query, &body) {
        Some(m) if !m.metadata.truncation => Ok(m),
        Some(_) => Err(io::Error::other("the answer is truncated over TCP too")),
        None => Err(io::Error::other("the TCP answer does not answer the query")),
    }
}

/// A recursive query with EDNS, the DO bit (send DNSSEC records, and validate) and our buffer
/// size.
fn query(name: &Name, rtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true);
    edns.set_max_payload(UDP_PAYLOAD);
    m.set_edns(edns);
    m
}

/// `bytes` decoded, if they are the response to `query`: same id, a response, the same question.
fn answer_to(query: &Message, bytes: &[u8]) -> Option<Message> {
    let m = Message::from_vec(bytes).ok()?;
    let ok = m.metadata.id == query.metadata.id
        && m.metadata.message_type == MessageType::Response
        && m.metadata.op_code == OpCode::Query
        && m.queries.len() == 1
        && m.queries[0].name() == query.queries[0].name()
        && m.queries[0].query_type() == query.queries[0].query_type();
    ok.then_some(m)
}

#[cfg(test)]
mod tests;
