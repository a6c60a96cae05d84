//! What the report says about a certificate: subject, issuer, validity, names, fingerprint,
//! its public key and signature algorithm.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid_registry, oid2sn};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::json::Json;

pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub not_before: String,
    pub not_after: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub sha256: String,
    /// The SHA-256 pin of the public key (base64), as `--pin-sha256` takes it.
    pub pin_sha256: String,
    /// The end of validity, Unix time.
    pub not_after_unix: i64,
    /// `ECDSA P-256`, `RSA 2048`, `Ed25519`, ...
    pub public_key: String,
    /// `ecdsa-with-SHA256`, `sha256WithRSAEncryption`, ... (the issuer's signature).
    pub signature_algorithm: String,
}

impl CertInfo {
    /// Parses a DER certificate; `None` if it cannot be parsed (the TLS library accepted it, so
    /// this only affects the report).
    pub fn parse(der: &CertificateDer<'_>) -> Option<CertInfo> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push(escape(d)),
                    GeneralName::IPAddress(ip) => ip_addresses.push(ip_text(ip)),
                    _ => {}
                }
            }
        }
        Some(CertInfo {
            subject: escape(&cert.subject().to_string()),
            issuer: escape(&cert.issuer().to_string()),
            not_before: rfc3339(cert.validity().not_before.timestamp()),
            not_after: rfc3339(cert.validity().not_after.timestamp()),
            dns_names,
            ip_addresses,
            sha256: sha256_hex(der.as_ref()),
            pin_sha256: starttls::pin_sha256(der.as_ref()).unwrap_or_default(),
            not_after_unix: cert.validity().not_after.timestamp(),
            public_key: public_key(&cert),
            signature_algorithm: oid_name(&cert.signature_algorithm.algorithm),
        })
    }

    /// Whole days of validity left from now (negative once expired).
    pub fn days_left(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        (self.not_after_unix - now).div_euclid(86_400)
    }

    pub fn json(&self) -> Json {
        Json::Obj(vec![
            ("subject", Json::str(&self.subject)),
            ("issuer", Json::str(&self.issuer)),
            ("not_before", Json::str(&self.not_before)),
            ("not_after", Json::str(&self.not_after)),
            ("dns_names", Json::strings(&self.dns_names)),
            ("ip_addresses", Json::strings(&self.ip_addresses)),
            ("sha256", Json::str(&self.sha256)),
            ("pin_sha256", Json::str(&self.pin_sha256)),
            ("days_left", Json::Int(self.days_left())),
            ("public_key", Json::str(&self.public_key)),
            ("signature_algorithm", Json::str(&self.signature_algorithm)),
        ])
    }
}

/// The key's algorithm and size as people name them: `ECDSA P-256`, `RSA 2048`, `Ed25519`.
fn public_key(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| match oid.to_id_string().as_str() {
            "1.2.840.10045.3.1.7" => "P-256".to_owned(),
            "1.3.132.0.34" => "P-384".to_owned(),
            "1.3.132.0.35" => "P-521".to_owned(),
            _ => oid_name(&oid),
        });
    match (
        spki.algorithm.algorithm.to_id_string().as_str(),
        spki.parsed(),
    ) {
        ("1.3.101.112", _) => "Ed25519".to_owned(),
        ("1.3.101.113", _) => "Ed448".to_owned(),
        (_, Ok(PublicKey::RSA(rsa))) => format!("RSA {}", rsa.key_size()),
        (_, Ok(PublicKey::EC(_))) => format!("ECDSA {}", curve.unwrap_or_default()),
        (_, Ok(key)) => format!("{} {}", oid_name(&spki.algorithm.algorithm), key.key_size()),
        (_, Err(_)) => oid_name(&spki.algorithm.algorithm),
    }
}

/// The registered short name of an OID, else its dotted form.
fn oid_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    oid2sn(oid, oid_registry()).map_or_else(|_| oid.to_id_string(), str::to_owned)
}

/// Certificate text comes from the peer: control characters are escaped.
fn escape(s: &str) -> String {
    starttls::escape_controls(s).into_owned()
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// SHA-256 with the crypto provider rustls already carries (no extra dependency).
pub fn sha256_hex(data: &[u8]) -> String {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(default_provider()));
    let hash = provider
        .cipher_suites
        .iter()
        .filter_map(|s| s.tls13())
        .map(|s| s.common.hash_provider)
        .find(|h| h.algorithm() == rustls::crypto::hash::HashAlgorithm::SHA256);
    match hash {
        Some(h) => h
            .hash(data)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        None => String::new(),
    }
}

fn default_provider() -> rustls::crypto::CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    {
        rustls::crypto::aws_lc_rs::default_provider()
    }
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    {
        rustls::crypto::ring::default_provider()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn escape_strips_controls() {
        assert_eq!(escape("CN=a\u{1b}[2J"), "CN=a\\u{1b}[2J");
    }
}
