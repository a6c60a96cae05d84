//! Facts about a peer's certificate for programs that check fingerprints or expiry themselves
//! (msmtp's `tls_fingerprint`, fetchmail's `sslfingerprint`, monitoring probes): validity,
//! subject, issuer and names as text, and SHA-256 of the certificate and of its public key.
//!
//! A strict, bounded DER reader for the few fields needed. The certificate already passed (or,
//! with `dangerous` verification, was at least parsed by) rustls; this reader still treats it as
//! hostile input: every length is checked, nothing is trusted, text is escaped.

use crate::text::escape_controls;
use crate::x509::{Der, Digest, digest, sha256};

/// What a certificate says about itself (the peer sent it: show it, decide with care).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Start of validity, Unix time (seconds).
    pub not_before: i64,
    /// End of validity, Unix time (seconds).
    pub not_after: i64,
    /// The subject's distinguished name, e.g. `CN=mx.example.org, O=Example`.
    pub subject: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// The subject alternative names: DNS names, IP addresses, e-mail addresses, in order.
    pub subject_alt_names: Vec<String>,
    /// SHA-256 of the whole certificate (DER).
    pub sha256: [u8; 32],
    /// SHA-256 of the SubjectPublicKeyInfo (DER): the pin that survives a renewal with the same
    /// key (curl's `sha256//`, DANE selector 1).
    pub spki_sha256: [u8; 32],
}

impl CertificateFacts {
    /// Parses a DER certificate; `None` if it is not one this reader understands.
    pub fn from_der(der: &[u8]) -> Option<CertificateFacts> {
        let mut cert = Der::new(der).sequence()?;
        let mut tbs = cert.sequence()?;
        if tbs.peek_tag() == Some(0xa0) {
            tbs.take(0xa0)?; // version
        }
        tbs.take(0x02)?; // serialNumber
        tbs.sequence()?; // signature algorithm
        let issuer = name(tbs.sequence()?)?;
        let mut validity = tbs.sequence()?;
        let not_before = time(&mut validity)?;
        let not_after = time(&mut validity)?;
        let subject = name(tbs.sequence()?)?;
        let spki = tbs.element(0x30)?;
        let mut subject_alt_names = Vec::new();
        while let Some(tag) = tbs.peek_tag() {
            let value = tbs.take(tag)?;
            if tag == 0xa3 {
                subject_alt_names = alt_names(Der::new(value).sequence()?)?;
            }
        }
        Some(CertificateFacts {
            not_before,
            not_after,
            subject,
            issuer,
            subject_alt_names,
            sha256: sha256(der),
            spki_sha256: sha256(spki),
        })
    }
}

/// RFC 5929 `tls-server-end-point` for a DER certificate: its hash with the hash function of
/// its signature algorithm, SHA-256 in place of MD5 and SHA-1. `None` for an algorithm without
/// one hash (Ed25519, RSASSA-PSS).
pub(crate) fn server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    let mut cert = Der::new(der).sequence()?;
    cert.sequence()?; // tbsCertificate
    let oid = cert.sequence()?.take(0x06)?;
    let algorithm = match oid {
        // sha256WithRSAEncryption, ecdsa-with-SHA256; md5/sha1 with RSA, ecdsa-with-SHA1
        [
            0x2a,
            0x86,
            0x48,
            0x86,
            0xf7,
            0x0d,
            0x01,
            0x01,
            0x0b | 0x04 | 0x05,
        ]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01] => Digest::Sha256,
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03] => Digest::Sha384,
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04] => Digest::Sha512,
        _ => return None,
    };
    Some(digest(algorithm, der))
}

/// A Name as `A=v, B=w`, in the order written, attribute types by their usual short names.
fn name(mut rdns: Der<'_>) -> Option<String> {
    let mut parts = Vec::new();
    while rdns.peek_tag().is_some() {
        let mut set = Der::new(rdns.take(0x31)?);
        while set.peek_tag().is_some() {
            let mut attr = set.sequence()?;
            let oid = attr.take(0x06)?;
            let tag = attr.peek_tag()?;
            let value = attr.take(tag)?;
            parts.push(format!(
                "{}={}",
                attribute_name(oid),
                string_value(tag, value)
            ));
        }
    }
    Some(parts.join(", "))
}

fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x55, 0x04, 0x05] => "serialNumber".into(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".into(),
        _ => format!("OID.{}", oid_text(oid)),
    }
}

fn oid_text(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut value = 0u64;
    for (i, &b) in oid.iter().enumerate() {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
        if i > 64 {
            break;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// A directory string as text, controls escaped (peer text).
fn string_value(tag: u8, value: &[u8]) -> String {
    let text = match tag {
        // BMPString: UTF-16BE.
        0x1e => {
            let units: Vec<u16> = value
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => String::from_utf8_lossy(value).into_owned(),
    };
    escape_controls(&text).into_owned()
}

/// UTCTime or GeneralizedTime (`...Z`) as Unix time.
fn time(validity: &mut Der<'_>) -> Option<i64> {
    let tag = validity.peek_tag()?;
    let text = std::str::from_utf8(validity.take(tag)?).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits.get(r)?.parse::<i64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = num(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 14) => (num(0..4)?, 4),
        _ => return None,
    };
    let (month, day) = (num(rest..rest + 2)?, num(rest + 2..rest + 4)?);
    let (h, m, s) = (
        num(rest + 4..rest + 6)?,
        num(rest + 6..rest + 8)?,
        num(rest + 8..rest + 10)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The names in the subjectAltName extension, if present.
fn alt_names(mut extensions: Der<'_>) -> Option<Vec<String>> {
    while extensions.peek_tag().is_some() {
        let mut ext = extensions.sequence()?;
        let oid = ext.take(0x06)?;
        if ext.peek_tag() == Some(0x01) {
            ext.take(0x01)?; // critical
        }
        let value = ext.take(0x04)?;
        if oid != [0x55, 0x1d, 0x11] {
            continue;
        }
        let mut names = Der::new(value).sequence()?;
        let mut out = Vec::new();
        while let Some(tag) = names.peek_tag() {
            let v = names.take(tag)?;
            match tag {
                0x82 => out.push(format!("DNS:{}", string_value(0x16, v))),
                0x81 => out.push(format!("email:{}", string_value(0x16, v))),
                0x87 => out.push(format!("IP:{}", ip_text(v))),
                _ => {}
            }
        }
        return Some(out);
    }
    Some(Vec::new())
}

fn ip_text(bytes: &[u8]) -> String {
    match <[u8; 4]>::try_from(bytes) {
        Ok(v4) => std::net::Ipv4Addr::from(v4).to_string(),
        Err(_) => match <[u8; 16]>::try_from(bytes) {
            Ok(v6) => std::net::Ipv6Addr::from(v6).to_string(),
            Err(_) => "?".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(names: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mx.example.org");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example\u{1b}[2J");
        params.not_before = rcgen::date_time_ymd(2026, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 3, 4);
        let cert = params.self_signed(&key).unwrap();
        (
            cert.der().to_vec(),
            rcgen::PublicKeyData::subject_public_key_info(&key),
        )
    }

    #[test]
    fn facts_of_a_real_certificate() {
        let (der, spki) = make(&["mx.example.org", "127.0.0.1"]);
        let f = CertificateFacts::from_der(&der).unwrap();
        assert_eq!(f.not_before, 1_767_312_000); // 2026-01-02T00:00:00Z
        assert_eq!(f.not_after, 2_561_500_800); // 2051-03-04T00:00:00Z (GeneralizedTime)
        assert_eq!(f.subject, "CN=mx.example.org, O=Example\\u{1b}[2J");
        assert_eq!(f.issuer, f.subject);
        assert_eq!(f.subject_alt_names, ["DNS:mx.example.org", "IP:127.0.0.1"]);
        assert_eq!(f.spki_sha256, sha256(&spki));
        assert_eq!(f.sha256, sha256(&der));
        assert_ne!(f.sha256, f.spki_sha256);
    }

    #[test]
    fn every_truncation_and_garbage_is_refused_without_panicking() {
        let (der, _) = make(&["a.example"]);
        for cut in 0..der.len() {
            assert!(CertificateFacts::from_der(&der[..cut]).is_none(), "{cut}");
        }
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(CertificateFacts::from_der(bad).is_none());
        }
        let mut flipped = der.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = CertificateFacts::from_der(&flipped);
            flipped[i] ^= 0xff;
        }
    }

    #[test]
    fn times_and_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        let mut utc = Der::new(b"\x17\x0d491231235959Z");
        assert_eq!(time(&mut utc), Some(2_524_607_999));
        let mut old = Der::new(b"\x17\x0d500101000000Z");
        assert_eq!(time(&mut old), Some(-631_152_000));
        for bad in [
            &b"\x17\x0d4912312359599"[..],
            b"\x17\x0b4912312359Z",
            b"\x18\x0d491231235959Z",
            b"\x17\x0d491331235959Z",
        ] {
            assert_eq!(time(&mut Der::new(bad)), None, "{bad:?}");
        }
        assert_eq!(
            oid_text(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }
}
