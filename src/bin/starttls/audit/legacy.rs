//! TLS 1.0 and 1.1, which rustls cannot speak: a minimal ClientHello offering only one of them,
//! and the server's first record judged. A ServerHello for that version means the server still
//! accepts it; an alert or a close means it does not. Only the first record is read (at most a
//! record's length), and nothing after the ServerHello is looked at: the probe never finishes a
//! handshake.

use std::io::Read;

pub const TLS10: u16 = 0x0301;
pub const TLS11: u16 = 0x0302;

/// What the server answered to a ClientHello offering only one old version.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A ServerHello for the version offered (or an older one: SSL 3.0).
    Accepted { version: u16, cipher_suite: u16 },
    /// An alert, a ServerHello for a newer version than offered, or a close; why, in words.
    Refused(String),
}

pub fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        other => format!("0x{other:04x}"),
    }
}

/// Suites a TLS 1.0/1.1 server would pick from: ECDHE and RSA key exchange with AES-CBC, 3DES,
/// and the renegotiation SCSV.
const SUITES: [u16; 10] = [
    0xc013, 0xc014, 0xc009, 0xc00a, 0x002f, 0x0035, 0x0033, 0x0039, 0x000a, 0x00ff,
];

/// The record: handshake (22), record version 1.0, a ClientHello for `version`. `server_name`
/// (a DNS name, not an address) goes in SNI. `random` needs no strength: the handshake is never
/// finished.
pub fn client_hello(version: u16, server_name: Option<&str>, random: [u8; 32]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&random);
    body.push(0); // no session id
    put_u16(&mut body, u16::try_from(SUITES.len() * 2).unwrap_or(0));
    for s in SUITES {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    let mut ext = Vec::new();
    // SNI carries no trailing dot (RFC 6066 §3).
    let server_name = server_name.map(|n| n.trim_end_matches('.'));
    if let Some(name) = server_name.filter(|n| is_dns_name(n)) {
        let n = name.as_bytes();
        let len = u16::try_from(n.len()).unwrap_or(0);
        put_u16(&mut ext, 0x0000);
        put_u16(&mut ext, len + 5);
        put_u16(&mut ext, len + 3);
        ext.push(0); // host_name
        put_u16(&mut ext, len);
        ext.extend_from_slice(n);
    }
    // supported_groups: x25519, secp256r1, secp384r1; ec_point_formats: uncompressed.
    ext.extend_from_slice(&[
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18,
    ]);
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    put_u16(&mut body, u16::try_from(ext.len()).unwrap_or(0));
    body.extend_from_slice(&ext);

    let mut handshake = vec![1]; // client_hello
    put_u24(&mut handshake, body.len());
    handshake.extend_from_slice(&body);
    let mut record = vec![22, 0x03, 0x01];
    put_u16(&mut record, u16::try_from(handshake.len()).unwrap_or(0));
    record.extend_from_slice(&handshake);
    record
}

fn is_dns_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.parse::<std::net::IpAddr>().is_err()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u24(out: &mut Vec<u8>, v: usize) {
    let v = u32::try_from(v).unwrap_or(0);
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

/// The largest record a peer may send (RFC 5246 §6.2.3: 2^14 + 2048 for a ciphertext).
const MAX_RECORD: usize = 16384 + 2048;

/// Reads the server's first record, whole: its header and at most MAX_RECORD bytes of body.
/// `Ok(None)` when the server closed before sending anything.
pub fn read_record(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 5];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len > MAX_RECORD {
        // Judged as it is: `judge` refuses the length without a body.
        return Ok(Some(header.to_vec()));
    }
    let mut record = header.to_vec();
    record.resize(5 + len, 0);
    r.read_exact(&mut record[5..])?;
    Ok(Some(record))
}

/// Judges the server's first record. `Err` when it is not a TLS answer at all (plaintext, a
/// malformed record): the caller reports it as such.
pub fn judge(record: &[u8], offered: u16) -> Result<Answer, String> {
    let [kind, major, _minor, l1, l2, body @ ..] = record else {
        return Err(format!(
            "a {}-byte answer is not a TLS record",
            record.len()
        ));
    };
    if *major != 3 {
        return Err(format!(
            "not a TLS record (first bytes {:02x?})",
            &record[..3]
        ));
    }
    let len = usize::from(u16::from_be_bytes([*l1, *l2]));
    if len > MAX_RECORD || body.len() != len {
        return Err(format!("a record of {len} bytes, {} present", body.len()));
    }
    match kind {
        21 => match body {
            [_level, description] => Ok(Answer::Refused(format!(
                "alert {}",
                alert_name(*description)
            ))),
            _ => Err("an alert record that is not 2 bytes".into()),
        },
        22 => server_hello(body, offered),
        other => Err(format!(
            "record type {other} where a ServerHello or an alert goes"
        )),
    }
}

fn server_hello(body: &[u8], offered: u16) -> Result<Answer, String> {
    let [2, a, b, c, hello @ ..] = body else {
        return Err("the first handshake message is not a ServerHello".into());
    };
    let len = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
    let hello = hello
        .get(..len)
        .ok_or("a ServerHello longer than its record")?;
    // version(2) random(32) session_id<0..32> cipher_suite(2) compression(1)
    let [v1, v2, rest @ ..] = hello else {
        return Err("a ServerHello without a version".into());
    };
    let version = u16::from_be_bytes([*v1, *v2]);
    let rest = rest.get(32..).ok_or("a ServerHello without its random")?;
    let (&sid_len, rest) = rest
        .split_first()
        .ok_or("a ServerHello without a session id")?;
    if sid_len > 32 {
        return Err(format!("a session id of {sid_len} bytes"));
    }
    let rest = rest
        .get(usize::from(sid_len)..)
        .ok_or("a ServerHello cut in its session id")?;
    let [s1, s2, _compression, ..] = rest else {
        return Err("a ServerHello without its cipher suite".into());
    };
    let cipher_suite = u16::from_be_bytes([*s1, *s2]);
    if version <= offered && version >= 0x0300 {
        Ok(Answer::Accepted {
            version,
            cipher_suite,
        })
    } else {
        Ok(Answer::Refused(format!(
            "a ServerHello for {} to a ClientHello for {}",
            version_name(version),
            version_name(offered)
        )))
    }
}

fn alert_name(d: u8) -> String {
    match d {
        0 => "close_notify".into(),
        10 => "unexpected_message".into(),
        40 => "handshake_failure".into(),
        47 => "illegal_parameter".into(),
        50 => "decode_error".into(),
        70 => "protocol_version".into(),
        71 => "insufficient_security".into(),
        80 => "internal_error".into(),
        86 => "inappropriate_fallback".into(),
        112 => "unrecognized_name".into(),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_record(version: u16, sid: &[u8], suite: u16) -> Vec<u8> {
        let mut hello = version.to_be_bytes().to_vec();
        hello.extend_from_slice(&[7; 32]);
        hello.push(u8::try_from(sid.len()).unwrap());
        hello.extend_from_slice(sid);
        hello.extend_from_slice(&suite.to_be_bytes());
        hello.push(0);
        let mut hs = vec![2];
        put_u24(&mut hs, hello.len());
        hs.extend_from_slice(&hello);
        let mut rec = vec![22, 3, 1];
        put_u16(&mut rec, u16::try_from(hs.len()).unwrap());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn a_server_hello_for_the_version_offered_is_acceptance() {
        let rec = hello_record(TLS10, &[1; 32], 0xc013);
        assert_eq!(
            judge(&rec, TLS10),
            Ok(Answer::Accepted {
                version: TLS10,
                cipher_suite: 0xc013
            })
        );
        // SSL 3.0 to a TLS 1.0 hello is acceptance of something worse.
        let rec = hello_record(0x0300, &[], 0x000a);
        assert!(matches!(
            judge(&rec, TLS10),
            Ok(Answer::Accepted {
                version: 0x0300,
                ..
            })
        ));
    }

    #[test]
    fn alerts_and_newer_versions_are_refusals() {
        assert_eq!(
            judge(&[21, 3, 3, 0, 2, 2, 70], TLS11),
            Ok(Answer::Refused("alert protocol_version".into()))
        );
        let rec = hello_record(0x0303, &[], 0xc02f);
        assert!(matches!(judge(&rec, TLS11), Ok(Answer::Refused(why)) if why.contains("TLS 1.2")));
    }

    #[test]
    fn malformed_answers_are_errors_not_verdicts() {
        for bad in [
            &b""[..],
            b"250 OK\r\n",                       // plaintext
            &[22, 3, 1, 0, 10, 2, 0, 0, 6],      // body shorter than its length
            &[21, 3, 3, 0, 3, 2, 70, 0],         // a 3-byte alert
            &[23, 3, 3, 0, 1, 0],                // application data first
            &[22, 3, 1, 0, 4, 1, 0, 0, 0],       // not a ServerHello
            &[22, 3, 1, 0, 6, 2, 0, 0, 2, 3, 1], // cut after the version
        ] {
            assert!(judge(bad, TLS10).is_err(), "{bad:?}");
        }
        // A session id longer than 32 bytes.
        let mut rec = hello_record(TLS10, &[1; 32], 0xc013);
        rec[5 + 4 + 2 + 32] = 33;
        assert!(judge(&rec, TLS10).is_err());
        // A handshake length beyond the record.
        let mut rec = hello_record(TLS10, &[], 0xc013);
        rec[8] = 0xff;
        assert!(judge(&rec, TLS10).is_err());
    }

    #[test]
    fn oversized_records_are_not_read() {
        let mut r: &[u8] = &[22, 3, 1, 0xff, 0xff, 1, 2, 3];
        let header = read_record(&mut r).unwrap().unwrap();
        assert_eq!(header.len(), 5);
        assert!(judge(&header, TLS10).is_err());
        let mut closed: &[u8] = &[];
        assert_eq!(read_record(&mut closed).unwrap(), None);
    }

    #[test]
    fn the_client_hello_is_well_formed() {
        let rec = client_hello(TLS11, Some("mx.example.org"), [9; 32]);
        assert_eq!(&rec[..3], &[22, 3, 1]);
        assert_eq!(
            usize::from(u16::from_be_bytes([rec[3], rec[4]])),
            rec.len() - 5
        );
        assert_eq!(rec[5], 1);
        let hs_len = usize::from(rec[6]) << 16 | usize::from(rec[7]) << 8 | usize::from(rec[8]);
        assert_eq!(hs_len, rec.len() - 9);
        assert_eq!(&rec[9..11], &TLS11.to_be_bytes());
        assert!(rec.windows(14).any(|w| w == b"mx.example.org"));
        // An address is not a name: no SNI.
        let rec = client_hello(TLS10, Some("127.0.0.1"), [9; 32]);
        assert!(!rec.windows(9).any(|w| w == b"127.0.0.1"));
    }
}
