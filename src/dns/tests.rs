//! The stub against scripted resolvers on loopback: what it believes, what it refuses.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::thread;

use hickory_proto::rr::Record;
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, MX, TLSA, TXT};

use super::*;
use crate::error::ErrorKind;

/// How a scripted resolver answers one query.
#[derive(Clone)]
enum Reply {
    /// These TLSA records (or A 192.0.2.1 for an A query), AD as given.
    Records { ad: bool, truncated_over_udp: bool },
    /// No records, with this code and AD.
    Empty { code: ResponseCode, ad: bool },
    /// A wrong id first, then garbage, then the real answer.
    NoiseFirst,
    /// Nothing at all.
    Silent,
}

fn resolver(reply: Reply) -> (SocketAddr, thread::JoinHandle<Vec<Message>>) {
    resolver_seeing(reply, usize::MAX)
}

fn tlsa_data() -> Vec<u8> {
    (0..32).collect()
}

/// The answer to `query` that `reply` describes.
fn respond(query: &Message, reply: &Reply, over_tcp: bool) -> Message {
    let mut m = Message::response(query.metadata.id, OpCode::Query);
    m.add_query(query.queries[0].clone());
    let q = &query.queries[0];
    match reply {
        Reply::Records {
            ad,
            truncated_over_udp,
        } => {
            m.metadata.authentic_data = *ad;
            if *truncated_over_udp && !over_tcp {
                m.metadata.truncation = true;
                return m;
            }
            let data = match q.query_type() {
                RecordType::A => RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                RecordType::TLSA => RData::TLSA(TLSA::new(
                    CertUsage::from(3),
                    Selector::from(1),
                    Matching::from(1),
                    tlsa_data(),
                )),
                RecordType::MX => {
                    // Two exchanges, out of order, and one record of another owner that must
                    // be ignored.
                    let mx = |p, n: &str| RData::MX(MX::new(p, Name::from_ascii(n).unwrap()));
                    m.add_answer(Record::from_rdata(
                        q.name().clone(),
                        300,
                        mx(20, "MX2.Example."),
                    ));
                    m.add_answer(Record::from_rdata(
                        Name::from_ascii("other.example.").unwrap(),
                        300,
                        mx(1, "evil.example."),
                    ));
                    mx(10, "mx1.example.")
                }
                RecordType::TXT => RData::TXT(TXT::new(vec![
                    "v=STSv1; ".to_owned(),
                    "id=20261205;".to_owned(),
                ])),
                _ => return m,
            };
            m.add_answer(Record::from_rdata(q.name().clone(), 300, data));
        }
        Reply::Empty { code, ad } => {
            m.metadata.response_code = *code;
            m.metadata.authentic_data = *ad;
        }
        Reply::NoiseFirst | Reply::Silent => {}
    }
    m
}

/// A resolver on 127.0.0.1 (UDP and TCP on one port) answering every query with `reply`;
/// returns its address and the first `wanted` queries it saw over UDP.
fn resolver_seeing(reply: Reply, wanted: usize) -> (SocketAddr, thread::JoinHandle<Vec<Message>>) {
    // One port for both: a free TCP port, then the same UDP port (taken by something else now
    // and then: try another).
    let (udp, tcp) = (0..50)
        .find_map(|_| {
            let tcp = TcpListener::bind("127.0.0.1:0").ok()?;
            let udp = UdpSocket::bind(tcp.local_addr().ok()?).ok()?;
            Some((udp, tcp))
        })
        .expect("a port free for both UDP and TCP");
    let addr = udp.local_addr().unwrap();
    let tcp_reply = reply.clone();
    thread::spawn(move || {
        while let Ok((mut s, _)) = tcp.accept() {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut q).unwrap();
            let query = Message::from_vec(&q).unwrap();
            let a = respond(&query, &tcp_reply, true).to_vec().unwrap();
            let mut out = u16::try_from(a.len()).unwrap().to_be_bytes().to_vec();
            out.extend_from_slice(&a);
            s.write_all(&out).unwrap();
        }
    });
    let handle = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let query = Message::from_vec(&buf[..n]).unwrap();
            match &reply {
                Reply::Silent => {}
                Reply::NoiseFirst => {
                    let mut wrong = respond(
                        &query,
                        &Reply::Records {
                            ad: true,
                            truncated_over_udp: false,
                        },
                        false,
                    );
                    wrong.metadata.id = query.metadata.id.wrapping_add(1);
                    udp.send_to(&wrong.to_vec().unwrap(), from).unwrap();
                    udp.send_to(b"\x00\x01garbage", from).unwrap();
                    let right = respond(
                        &query,
                        &Reply::Records {
                            ad: false,
                            truncated_over_udp: false,
                        },
                        false,
                    );
                    udp.send_to(&right.to_vec().unwrap(), from).unwrap();
                }
                r => {
                    udp.send_to(&respond(&query, r, false).to_vec().unwrap(), from)
                        .unwrap();
                }
            }
            seen.push(query);
            if seen.len() == wanted {
                break;
            }
        }
        seen
    });
    (addr, handle)
}

const T: Duration = Duration::from_secs(2);

#[test]
fn a_validated_tlsa_answer_is_secure_and_the_query_asks_for_dnssec() {
    let (addr, seen) = resolver_seeing(
        Reply::Records {
            ad: true,
            truncated_over_udp: false,
        },
        1,
    );
    let a = Resolver::at(addr)
        .lookup_tlsa("mx.example.org", 25, T)
        .unwrap();
    assert!(a.secure);
    assert_eq!(a.records, [TlsaRecord::new(3, 1, 1, tlsa_data())]);
    let seen = seen.join().unwrap();
    let q = &seen[0];
    assert_eq!(q.queries[0].name().to_ascii(), "_25._tcp.mx.example.org.");
    assert_eq!(q.queries[0].query_type(), RecordType::TLSA);
    assert!(q.metadata.recursion_desired);
    assert!(q.edns.as_ref().unwrap().flags().dnssec_ok);
}

#[test]
fn without_ad_an_answer_is_insecure() {
    let (addr, _) = resolver(Reply::Records {
        ad: false,
        truncated_over_udp: false,
    });
    let r = Resolver::at(addr);
    let a = r.lookup_tlsa("mx.example.org", 25, T).unwrap();
    assert!(!a.secure);
    assert_eq!(a.records.len(), 1);
    let ip = r.lookup_ip("mx.example.org", T).unwrap();
    assert!(!ip.secure);
    assert_eq!(ip.records, [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))]);
}

#[test]
fn a_truncated_answer_is_asked_again_over_tcp() {
    let (addr, _) = resolver(Reply::Records {
        ad: true,
        truncated_over_udp: true,
    });
    let a = Resolver::at(addr)
        .lookup_tlsa("mx.example.org", 25, T)
        .unwrap();
    assert!(a.secure);
    assert_eq!(a.records.len(), 1);
}

#[test]
fn nxdomain_and_nodata_are_answers_secure_or_not() {
    for ad in [true, false] {
        for code in [ResponseCode::NXDomain, ResponseCode::NoError] {
            let (addr, _) = resolver(Reply::Empty { code, ad });
            let a = Resolver::at(addr)
                .lookup_tlsa("mx.example.org", 25, T)
                .unwrap();
            assert!(a.records.is_empty());
            assert_eq!(a.secure, ad, "{code}");
        }
    }
}

#[test]
fn servfail_fails_closed_naming_the_likely_cause() {
    for code in [ResponseCode::ServFail, ResponseCode::Refused] {
        let (addr, _) = resolver(Reply::Empty { code, ad: false });
        let e = Resolver::at(addr)
            .lookup_tlsa("mx.example.org", 25, T)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Resolve, "{e}");
        assert!(e.to_string().contains(&code.to_string()), "{e}");
    }
    let (addr, _) = resolver(Reply::Empty {
        code: ResponseCode::ServFail,
        ad: false,
    });
    let e = Resolver::at(addr).lookup_ip("x.example", T).unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
}

#[test]
fn answers_to_another_query_and_garbage_are_ignored() {
    // The forged answer (another id) claims AD; the real one does not: the real one counts.
    let (addr, _) = resolver(Reply::NoiseFirst);
    let a = Resolver::at(addr)
        .lookup_tlsa("mx.example.org", 25, T)
        .unwrap();
    assert!(!a.secure);
}

#[test]
fn a_silent_resolver_times_out_within_the_deadline() {
    let (addr, _) = resolver(Reply::Silent);
    let started = std::time::Instant::now();
    let e = Resolver::at(addr)
        .lookup_tlsa("mx.example.org", 25, Duration::from_millis(300))
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Resolve | ErrorKind::Timeout),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn resolv_conf_and_server_addresses() {
    let r = Resolver::from_resolv_conf(
        "# comment\nsearch example.org\nnameserver 127.0.0.53\nnameserver ::1\n\
         nameserver fe80::1%eth0\noptions edns0\n",
    )
    .unwrap();
    assert_eq!(
        r.servers(),
        [
            "127.0.0.53:53".parse().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
    assert_eq!(
        Resolver::from_resolv_conf("search x\n").unwrap_err().kind(),
        ErrorKind::Config
    );
    for (text, want) in [
        ("127.0.0.53", "127.0.0.53:53"),
        ("127.0.0.53:5353", "127.0.0.53:5353"),
        ("::1", "[::1]:53"),
        ("[::1]", "[::1]:53"),
        ("[::1]:5353", "[::1]:5353"),
    ] {
        assert_eq!(Resolver::parse_server(text).unwrap(), want.parse().unwrap());
    }
    for bad in ["", "localhost", "1.2.3.4:99999", "[::1", "1.2.3.4:x"] {
        assert_eq!(
            Resolver::parse_server(bad).unwrap_err().kind(),
            ErrorKind::InvalidArgument,
            "{bad:?}"
        );
    }
    assert_eq!(
        Resolver::at("127.0.0.1:53".parse().unwrap())
            .lookup_tlsa("bad name..example", 25, T)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn every_cut_and_flip_of_an_answer_is_read_without_panicking() {
    let name = Name::from_ascii("_25._tcp.mx.example.").unwrap();
    let mut q = query(&name, RecordType::TLSA);
    q.metadata.id = 0x1234;
    let mut m = respond(
        &q,
        &Reply::Records {
            ad: true,
            truncated_over_udp: false,
        },
        true,
    );
    m.metadata.id = 0x1234;
    let bytes = m.to_vec().unwrap();
    let whole = tlsa_in_answer(0x1234, &bytes).unwrap();
    assert_eq!(whole.records, [TlsaRecord::new(3, 1, 1, tlsa_data())]);
    assert!(whole.secure);
    // Another id, or another question: not an answer to this query.
    assert!(tlsa_in_answer(0x1235, &bytes).is_none());
    for cut in 0..bytes.len() {
        assert!(tlsa_in_answer(0x1234, &bytes[..cut]).is_none_or(|a| a.records.len() <= 1));
    }
    let mut flipped = bytes.clone();
    for i in 0..flipped.len() {
        flipped[i] ^= 0xff;
        let _ = tlsa_in_answer(0x1234, &flipped);
        flipped[i] ^= 0xff;
    }
}

#[test]
fn ad_is_believed_only_from_a_trusted_path() {
    let (addr, _) = resolver(Reply::Records {
        ad: true,
        truncated_over_udp: false,
    });
    let untrusted = Resolver::at(addr).trust_ad(false);
    assert!(!untrusted.trusts_ad());
    let a = untrusted.lookup_tlsa("mx.example.org", 25, T).unwrap();
    assert!(!a.secure, "AD believed from an untrusted resolver");
    assert_eq!(a.records.len(), 1);
    // resolv.conf: loopback only, or `options trust-ad`.
    let conf = |text: &str| Resolver::from_resolv_conf(text).unwrap().trusts_ad();
    assert!(conf("nameserver 127.0.0.53\nnameserver ::1\n"));
    assert!(!conf("nameserver 127.0.0.53\nnameserver 192.0.2.53\n"));
    assert!(conf("nameserver 192.0.2.53\noptions edns0 trust-ad\n"));
    assert!(!Resolver::at("192.0.2.53:53".parse().unwrap()).trusts_ad());
    assert!(
        Resolver::at("192.0.2.53:53".parse().unwrap())
            .trust_ad(true)
            .trusts_ad()
    );
}

#[test]
fn servfail_is_final_and_a_second_resolver_is_not_asked() {
    let (bogus, _) = resolver(Reply::Empty {
        code: ResponseCode::ServFail,
        ad: false,
    });
    let (other, seen) = resolver_seeing(
        Reply::Records {
            ad: false,
            truncated_over_udp: false,
        },
        1,
    );
    let r = Resolver::from_resolv_conf(&format!(
        "nameserver {}\nnameserver {}\n",
        bogus.ip(),
        other.ip()
    ))
    .unwrap();
    // Both on 127.0.0.1 but different ports: build the pair directly.
    let r = Resolver {
        servers: vec![bogus, other],
        ..r
    };
    let e = r.lookup_tlsa("mx.example.org", 25, T).unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
    // The second resolver saw nothing (its thread gives up after its read timeout).
    drop(r);
    assert!(seen.join().unwrap().is_empty());
}

#[test]
fn records_of_another_owner_are_ignored_and_a_cname_chain_is_followed() {
    let name = Name::from_ascii("_25._tcp.mx.example.").unwrap();
    let mut q = query(&name, RecordType::TLSA);
    q.metadata.id = 7;
    let tlsa = |owner: &str| {
        Record::from_rdata(
            Name::from_ascii(owner).unwrap(),
            60,
            RData::TLSA(TLSA::new(
                CertUsage::from(3),
                Selector::from(1),
                Matching::from(1),
                tlsa_data(),
            )),
        )
    };
    let mut m = Message::response(7, OpCode::Query);
    m.add_query(q.queries[0].clone());
    m.add_answer(tlsa("_25._tcp.elsewhere.example."));
    let a = tlsa_in_answer(7, &m.to_vec().unwrap()).unwrap();
    assert!(a.records.is_empty(), "a record for another name counted");
    m.add_answer(Record::from_rdata(
        name.clone(),
        60,
        RData::CNAME(hickory_proto::rr::rdata::CNAME(
            Name::from_ascii("_25._tcp.elsewhere.example.").unwrap(),
        )),
    ));
    let a = tlsa_in_answer(7, &m.to_vec().unwrap()).unwrap();
    assert_eq!(a.records.len(), 1, "the CNAME's target was not followed");
}

#[test]
fn mx_records_come_sorted_by_preference_without_strangers() {
    let (server, _seen) = resolver(Reply::Records {
        ad: true,
        truncated_over_udp: false,
    });
    let r = Resolver::at(server).trust_ad(true);
    let mx = r.lookup_mx("example.org", Duration::from_secs(5)).unwrap();
    assert_eq!(
        mx.records,
        [
            (10, "mx1.example".to_owned()),
            (20, "mx2.example".to_owned())
        ]
    );
    assert!(mx.secure);
}

#[test]
fn txt_strings_are_joined() {
    let (server, _seen) = resolver(Reply::Records {
        ad: false,
        truncated_over_udp: false,
    });
    let txt = Resolver::at(server)
        .lookup_txt("_mta-sts.example.org", Duration::from_secs(5))
        .unwrap();
    assert_eq!(txt.records, ["v=STSv1; id=20261205;"]);
    assert!(!txt.secure);
}
