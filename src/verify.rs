//! Certificate verifiers, one family used by every protocol: the configured roots (recording
//! the chain the server presented), the `dangerous` one, SPKI pins on top of either, and DANE
//! (RFC 6698, RFC 7671; RFC 7672 for SMTP) with TLSA records given per connection.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};
use crate::text::{base64_decode, base64_encode};
use crate::x509::{Digest, digest, sha256, spki};

/// One TLSA record (RFC 6698 §2.1): how a server's certificate is to be matched.
///
/// Parsed from the presentation form `dig` prints, `"3 1 1 0f3c…"` (the hex may be split by
/// spaces); [`Display`](fmt::Display) writes it back the same way.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TlsaRecord {
    /// 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// 0 the whole certificate, 1 its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0 the selected bytes themselves, 1 their SHA-256, 2 their SHA-512.
    pub matching_type: u8,
    /// What the selected (and hashed) bytes must equal.
    pub data: Vec<u8>,
}

impl TlsaRecord {
    /// A record from its four fields (any values: unusable ones are ignored when connecting).
    pub fn new(usage: u8, selector: u8, matching_type: u8, data: impl Into<Vec<u8>>) -> Self {
        TlsaRecord {
            usage,
            selector,
            matching_type,
            data: data.into(),
        }
    }

    /// Why this record cannot be used, or `None` if it can. `smtp`: RFC 7672's rules (SMTP
    /// between MTAs), where the PKIX usages are unusable.
    pub fn unusable(&self, smtp: bool) -> Option<&'static str> {
        let digest_len = match self.matching_type {
            0 => None,
            1 => Some(32),
            2 => Some(64),
            _ => return Some("unknown matching type"),
        };
        if self.usage > 3 {
            Some("unknown usage")
        } else if smtp && self.usage < 2 {
            Some("PKIX usages are not used for SMTP (RFC 7672 §3.1.3)")
        } else if self.selector > 1 {
            Some("unknown selector")
        } else if digest_len.is_some_and(|n| n != self.data.len()) {
            Some("digest of the wrong length")
        } else if self.data.is_empty() {
            Some("no data")
        } else {
            None
        }
    }

    /// Whether `cert` (DER) is the one this record names (selector and matching type applied).
    fn matches(&self, cert: &[u8]) -> bool {
        let selected = match self.selector {
            0 => cert,
            1 => match spki(cert) {
                Some(key) => key,
                None => return false,
            },
            _ => return false,
        };
        match self.matching_type {
            0 => selected == self.data.as_slice(),
            1 => digest(Digest::Sha256, selected) == self.data,
            2 => digest(Digest::Sha512, selected) == self.data,
            _ => false,
        }
    }

    /// The record for messages: long data shortened.
    fn short(&self) -> String {
        let hex = hex(&self.data);
        let data = match hex.get(..16) {
            Some(start) if hex.len() > 20 => format!("{start}…"),
            _ => hex,
        };
        format!(
            "{} {} {} {data}",
            self.usage, self.selector, self.matching_type
        )
    }
}

impl fmt::Display for TlsaRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.usage,
            self.selector,
            self.matching_type,
            hex(&self.data)
        )
    }
}

impl fmt::Debug for TlsaRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsaRecord({self})")
    }
}

impl FromStr for TlsaRecord {
    type Err = Error;

    /// `"U S M HEX"`: three numbers 0–255, then the data in hex (spaces within it allowed).
    fn from_str(text: &str) -> Result<TlsaRecord> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "TLSA record {:?}: {why} (expected \"USAGE SELECTOR MATCHING-TYPE HEX\", e.g. \
                 \"3 1 1 0f3c…\")",
                crate::text::escape_controls(text)
            ))
        };
        // A whole `dig` line (`_25._tcp.mx. 300 IN TLSA 3 1 1 ...`): the fields after TLSA.
        let all: Vec<&str> = text.split_ascii_whitespace().collect();
        let start = all
            .iter()
            .position(|f| f.eq_ignore_ascii_case("TLSA"))
            .map_or(0, |i| i + 1);
        let mut fields = all[start..].iter().copied();
        let mut number = |name: &str| {
            fields
                .next()
                .ok_or_else(|| bad(&format!("no {name}")))?
                .parse::<u8>()
                .map_err(|_| bad(&format!("the {name} is not a number from 0 to 255")))
        };
        let (usage, selector, matching_type) = (
            number("usage")?,
            number("selector")?,
            number("matching type")?,
        );
        let hex: String = fields.collect();
        if hex.is_empty() {
            return Err(bad("no data"));
        }
        let data = unhex(&hex).ok_or_else(|| bad("the data is not hex"))?;
        Ok(TlsaRecord::new(usage, selector, matching_type, data))
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// What DANE decided for a connection made with TLSA records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaneStatus {
    /// This record authenticated the server.
    Matched(TlsaRecord),
    /// None of the records could be used (unknown parameters, PKIX usages for SMTP, malformed).
    /// SMTP then carries on encrypted but unauthenticated, as RFC 7672 §2.2 says (the connection
    /// reports [`crate::Verification::Skipped`], so no login runs on it); other protocols fall
    /// back to the configuration's own verification.
    NoUsableRecords,
}

/// The SHA-256 pin of a certificate's public key (its SubjectPublicKeyInfo), in base64: the
/// form curl's `--pinnedpubkey sha256//…` and [`crate::ClientConfigBuilder::pin_sha256`] take.
/// `None` if `cert` (DER) is not a certificate.
pub fn pin_sha256(cert: &[u8]) -> Option<String> {
    spki(cert).map(|key| base64_encode(&sha256(key)))
}

/// A pin as given (`sha256//BASE64` or the bare base64) → its 32 bytes.
pub(crate) fn parse_pin(text: &str) -> Result<[u8; 32]> {
    let b64 = text.trim();
    let b64 = b64.strip_prefix("sha256//").unwrap_or(b64);
    base64_decode(b64)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            Error::Config(format!(
                "pin {:?} is not the base64 of a SHA-256 (32 bytes: 44 characters with the \
                 final '=', optionally after \"sha256//\")",
                crate::text::escape_controls(text)
            ))
        })
}

/// A certificate error with our own words (a rustls `Other` certificate error).
fn rejected(message: String) -> rustls::Error {
    #[derive(Debug)]
    struct Why(String);
    impl fmt::Display for Why {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Why {}
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Why(message)))))
}

/// Notes the chain the server presented, so that a rejected certificate can still be shown
/// ([`Error::presented_chain`]).
fn record_chain(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) {
    let chain = std::iter::once(end_entity)
        .chain(intermediates)
        .map(|c| c.clone().into_owned())
        .collect();
    crate::error::record_presented_chain(chain);
}

/// The handshake signature checks every verifier here shares: the peer must hold the key of
/// the certificate it shows, whatever decided that the certificate is acceptable.
macro_rules! signatures_by_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// The webpki verifier, which first notes the chain the server presented: a rejected
/// certificate can then still be shown ([`Error::presented_chain`]). Nothing else differs.
#[derive(Debug)]
pub(crate) struct RecordingVerifier(pub Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        record_chain(end_entity, intermediates);
        self.0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.0.root_hint_subjects()
    }
}

/// The `dangerous` verifier: any certificate is accepted, but handshake signatures are still
/// verified so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
pub(crate) struct AcceptAnyCertificate {
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signatures_by_provider!();
}

/// SPKI pins: the leaf's public key must hash to one of `pins`, after `inner` (the configured
/// verification) accepted the chain — or alone, when `inner` is `None` (pin-only, for the
/// self-signed servers common in mail).
#[derive(Debug)]
pub(crate) struct PinVerifier {
    pub pins: Vec<[u8; 32]>,
    pub inner: Option<Arc<dyn ServerCertVerifier>>,
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        record_chain(end_entity, intermediates);
        if let Some(inner) = &self.inner {
            inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        let Some(key) = spki(end_entity) else {
            return Err(rejected(
                "the certificate's public key cannot be read, so no pin can match".into(),
            ));
        };
        if self.pins.contains(&sha256(key)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rejected(format!(
                "the certificate's public key matches no pin; its pin is sha256//{}",
                base64_encode(&sha256(key))
            )))
        }
    }

    signatures_by_provider!();
}

/// DANE for one connection: `records` decide, as RFC 7671 (and RFC 7672 when `smtp`) say.
/// What was decided is kept for the connection to report.
#[derive(Debug)]
pub(crate) struct DaneVerifier {
    records: Vec<TlsaRecord>,
    smtp: bool,
    /// The configured verification: PKIX for usages 0 and 1, and the fallback when no record
    /// is usable (protocols other than SMTP).
    pkix: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    status: Mutex<Option<DaneStatus>>,
}

impl DaneVerifier {
    pub(crate) fn new(
        records: Vec<TlsaRecord>,
        smtp: bool,
        pkix: Arc<WebPkiServerVerifier>,
        provider: Arc<CryptoProvider>,
    ) -> DaneVerifier {
        DaneVerifier {
            records,
            smtp,
            pkix,
            provider,
            status: Mutex::new(None),
        }
    }

    /// What the last verification decided (`None` before one ran, or when it failed).
    pub(crate) fn status(&self) -> Option<DaneStatus> {
        self.status.lock().ok().and_then(|s| s.clone())
    }

    fn decided(&self, status: DaneStatus) -> ServerCertVerified {
        if let Ok(mut s) = self.status.lock() {
            *s = Some(status);
        }
        ServerCertVerified::assertion()
    }

    /// DANE-TA: `anchor` (presented at `intermediates[at]`) is the only root; the chain below
    /// it must lead to the leaf, for the name, now.
    fn verify_under(
        &self,
        anchor: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        below: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> std::result::Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots
            .add(anchor.clone().into_owned())
            .map_err(|e| rejected(format!("it cannot be a trust anchor ({e})")))?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rejected(format!("it cannot be a trust anchor ({e})")))?;
        verifier
            .verify_server_cert(end_entity, below, server_name, &[], now)
            .map(|_| ())
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        record_chain(end_entity, intermediates);
        let usable: Vec<&TlsaRecord> = self
            .records
            .iter()
            .filter(|r| r.unusable(self.smtp).is_none())
            .collect();
        if usable.is_empty() {
            if !self.smtp {
                self.pkix.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                )?;
            }
            return Ok(self.decided(DaneStatus::NoUsableRecords));
        }
        let pkix = || {
            self.pkix
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
        };
        // Why a record that named a presented certificate still did not authenticate it.
        let mut failed = Vec::new();
        for record in usable.iter().copied() {
            let outcome = match record.usage {
                // DANE-EE: the record alone; names and validity are not checked (RFC 7672 §3.1.1).
                3 if record.matches(end_entity) => Some(Ok(())),
                // DANE-TA: the presented certificate it names is the trust anchor.
                2 => intermediates
                    .iter()
                    .enumerate()
                    .find(|(_, ca)| record.matches(ca))
                    .map(|(at, ca)| {
                        self.verify_under(ca, end_entity, &intermediates[..at], server_name, now)
                    }),
                // PKIX-EE: the leaf, and PKIX as configured.
                1 if record.matches(end_entity) => Some(pkix()),
                // PKIX-TA: a certificate of the presented chain that the leaf really chains up
                // to (an extra certificate appended beside another path does not count), and
                // PKIX as configured.
                0 => intermediates
                    .iter()
                    .enumerate()
                    .find(|(_, ca)| record.matches(ca))
                    .map(|(at, ca)| {
                        self.verify_under(ca, end_entity, &intermediates[..at], server_name, now)
                            .and_then(|()| pkix())
                    }),
                _ => None,
            };
            match outcome {
                Some(Ok(())) => return Ok(self.decided(DaneStatus::Matched(record.clone()))),
                Some(Err(e)) => failed.push(format!("{} matched, but {e}", record.short())),
                None => {}
            }
        }
        let tried: Vec<String> = usable.iter().map(|r| r.short()).collect();
        let mut message = format!(
            "no TLSA record authenticated the certificate (tried {})",
            tried.join("; ")
        );
        if !failed.is_empty() {
            message += &format!(": {}", failed.join("; "));
        }
        Err(rejected(message))
    }

    signatures_by_provider!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    /// A CA and a leaf it signed, for `name`, perhaps long expired.
    struct Chain {
        leaf: CertificateDer<'static>,
        ca: CertificateDer<'static>,
    }

    fn chain(name: &str, expired: bool) -> Chain {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "DANE test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let leaf = params
            .signed_by(&KeyPair::generate().unwrap(), &ca)
            .unwrap();
        Chain {
            leaf: leaf.der().clone(),
            ca: ca.der().clone(),
        }
    }

    fn provider() -> Arc<CryptoProvider> {
        crate::x509::crypto_provider()
    }

    /// The configured verification: these roots (none: nothing verifies by PKIX).
    fn pkix(roots: &[&CertificateDer<'static>]) -> Arc<WebPkiServerVerifier> {
        let mut store = RootCertStore::empty();
        for r in roots {
            store.add((*r).clone()).unwrap();
        }
        if store.is_empty() {
            // webpki refuses an empty store: trust an unrelated CA instead.
            store.add(chain("unrelated.example", false).ca).unwrap();
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
            .build()
            .unwrap()
    }

    /// A record naming `cert` with this selector and matching type.
    fn record_for(cert: &[u8], usage: u8, selector: u8, matching_type: u8) -> TlsaRecord {
        let selected = if selector == 1 {
            spki(cert).unwrap()
        } else {
            cert
        };
        let data = match matching_type {
            0 => selected.to_vec(),
            1 => digest(Digest::Sha256, selected),
            _ => digest(Digest::Sha512, selected),
        };
        TlsaRecord::new(usage, selector, matching_type, data)
    }

    fn name(n: &str) -> ServerName<'static> {
        ServerName::try_from(n.to_owned()).unwrap()
    }

    /// Runs DANE with `records` on the chain `presented` (leaf first) for `server`.
    fn dane(
        records: Vec<TlsaRecord>,
        smtp: bool,
        roots: &[&CertificateDer<'static>],
        presented: &[CertificateDer<'static>],
        server: &str,
    ) -> (std::result::Result<(), String>, Option<DaneStatus>) {
        let v = DaneVerifier::new(records, smtp, pkix(roots), provider());
        let result = v
            .verify_server_cert(
                &presented[0],
                &presented[1..],
                &name(server),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|e| crate::error::Error::from_tls(e).to_string());
        (result, v.status())
    }

    #[test]
    fn dane_ee_matches_by_every_selector_and_matching_type_and_ignores_name_and_expiry() {
        let c = chain("mx.example.org", true);
        for selector in [0, 1] {
            for matching in [0, 1, 2] {
                let record = record_for(&c.leaf, 3, selector, matching);
                for smtp in [true, false] {
                    // Expired, and for another name: DANE-EE does not care (RFC 7672 §3.1.1).
                    let (result, status) = dane(
                        vec![record.clone()],
                        smtp,
                        &[],
                        std::slice::from_ref(&c.leaf),
                        "other.example",
                    );
                    assert_eq!(result, Ok(()), "3 {selector} {matching}");
                    assert_eq!(status, Some(DaneStatus::Matched(record.clone())));
                }
                // One bit off: nothing matches, and the error names the record tried.
                let mut wrong = record.clone();
                let last = wrong.data.len() - 1;
                wrong.data[last] ^= 1;
                let (result, status) = dane(
                    vec![wrong.clone()],
                    true,
                    &[],
                    std::slice::from_ref(&c.leaf),
                    "mx.example.org",
                );
                let e = result.unwrap_err();
                assert!(e.contains("no TLSA record authenticated"), "{e}");
                assert!(e.contains(&format!("3 {selector} {matching} ")), "{e}");
                assert_eq!(status, None);
            }
        }
    }

    #[test]
    fn dane_ee_of_another_certificate_is_refused() {
        let c = chain("mx.example.org", false);
        let other = chain("mx.example.org", false);
        let (result, _) = dane(
            vec![record_for(&other.leaf, 3, 1, 1)],
            true,
            &[],
            &[c.leaf.clone(), c.ca.clone()],
            "mx.example.org",
        );
        assert!(result.is_err());
    }

    #[test]
    fn dane_ta_makes_the_sent_ca_the_anchor_and_still_checks_the_name() {
        let c = chain("mx.example.org", false);
        let sent = [c.leaf.clone(), c.ca.clone()];
        for selector in [0, 1] {
            for matching in [0, 1, 2] {
                let record = record_for(&c.ca, 2, selector, matching);
                let (result, status) =
                    dane(vec![record.clone()], true, &[], &sent, "mx.example.org");
                assert_eq!(result, Ok(()), "2 {selector} {matching}");
                assert_eq!(status, Some(DaneStatus::Matched(record.clone())));
                // The wrong name: the record matched the CA, but the leaf is not for this name.
                let (result, _) = dane(vec![record.clone()], true, &[], &sent, "evil.example");
                let e = result.unwrap_err();
                assert!(
                    e.contains("matched, but") && e.contains("evil.example"),
                    "{e}"
                );
                // The CA not sent: DANE-TA has nothing to anchor on.
                let (result, _) = dane(
                    vec![record.clone()],
                    true,
                    &[],
                    std::slice::from_ref(&c.leaf),
                    "mx.example.org",
                );
                assert!(result.is_err());
            }
        }
        // A DANE-TA record naming the leaf is not a trust anchor for itself.
        let (result, _) = dane(
            vec![record_for(&c.leaf, 2, 1, 1)],
            true,
            &[],
            &sent,
            "mx.example.org",
        );
        assert!(result.is_err());
        // DANE-TA still checks validity.
        let old = chain("mx.example.org", true);
        let (result, _) = dane(
            vec![record_for(&old.ca, 2, 1, 1)],
            true,
            &[],
            &[old.leaf.clone(), old.ca.clone()],
            "mx.example.org",
        );
        assert!(result.unwrap_err().contains("matched, but"));
    }

    #[test]
    fn pkix_usages_are_unusable_for_smtp_and_constraints_elsewhere() {
        let c = chain("imap.example.org", false);
        let sent = [c.leaf.clone(), c.ca.clone()];
        for (usage, cert) in [(1, &c.leaf), (0, &c.ca)] {
            let record = record_for(cert, usage, 1, 1);
            assert!(record.unusable(true).is_some());
            assert!(record.unusable(false).is_none());
            // SMTP: ignored, so none usable: encrypted, unauthenticated (RFC 7672 §2.2).
            let (result, status) = dane(vec![record.clone()], true, &[], &sent, "imap.example.org");
            assert_eq!(result, Ok(()));
            assert_eq!(status, Some(DaneStatus::NoUsableRecords));
            // Elsewhere: the record and PKIX both.
            let (result, status) = dane(
                vec![record.clone()],
                false,
                &[&c.ca],
                &sent,
                "imap.example.org",
            );
            assert_eq!(result, Ok(()), "usage {usage}");
            assert_eq!(status, Some(DaneStatus::Matched(record.clone())));
            // PKIX failing (a CA not trusted) fails the record.
            let (result, _) = dane(vec![record.clone()], false, &[], &sent, "imap.example.org");
            assert!(result.unwrap_err().contains("matched, but"));
            // A PKIX-TA record for a CA the leaf does not chain up to, appended to the chain
            // beside the real path: no match (the path PKIX took decides, not the list).
            if usage == 0 {
                let stranger = chain("x.example", false).ca;
                let appended = [c.leaf.clone(), c.ca.clone(), stranger.clone()];
                let (result, _) = dane(
                    vec![record_for(&stranger, 0, 1, 1)],
                    false,
                    &[&c.ca],
                    &appended,
                    "imap.example.org",
                );
                assert!(result.is_err(), "an appended CA satisfied PKIX-TA");
            }
            // The record failing (another key) fails even when PKIX passes.
            let other = chain("imap.example.org", false);
            let (result, _) = dane(
                vec![record_for(
                    if usage == 1 { &other.leaf } else { &other.ca },
                    usage,
                    1,
                    1,
                )],
                false,
                &[&c.ca],
                &sent,
                "imap.example.org",
            );
            assert!(result.is_err());
        }
    }

    #[test]
    fn malformed_and_unknown_records_are_ignored() {
        let c = chain("mx.example.org", false);
        let good = record_for(&c.leaf, 3, 1, 1);
        let bad = [
            TlsaRecord::new(4, 1, 1, good.data.clone()),
            TlsaRecord::new(3, 2, 1, good.data.clone()),
            TlsaRecord::new(3, 1, 3, good.data.clone()),
            TlsaRecord::new(3, 1, 1, good.data[..31].to_vec()),
            TlsaRecord::new(3, 1, 2, good.data.clone()),
            TlsaRecord::new(3, 1, 0, Vec::new()),
        ];
        for b in &bad {
            assert!(b.unusable(true).is_some(), "{b}");
        }
        // Mixed with a good one: the good one decides.
        let mut records = bad.to_vec();
        records.push(good.clone());
        let (result, status) = dane(
            records,
            true,
            &[],
            std::slice::from_ref(&c.leaf),
            "mx.example.org",
        );
        assert_eq!(result, Ok(()));
        assert_eq!(status, Some(DaneStatus::Matched(good)));
        // Alone: SMTP is encrypted, unauthenticated; elsewhere the config's verification runs.
        let (result, status) = dane(
            bad.to_vec(),
            true,
            &[],
            std::slice::from_ref(&c.leaf),
            "mx.example.org",
        );
        assert_eq!(
            (result, status),
            (Ok(()), Some(DaneStatus::NoUsableRecords))
        );
        let (result, _) = dane(
            bad.to_vec(),
            false,
            &[],
            std::slice::from_ref(&c.leaf),
            "mx.example.org",
        );
        assert!(result.is_err());
        let (result, status) = dane(
            bad.to_vec(),
            false,
            &[&c.ca],
            std::slice::from_ref(&c.leaf),
            "mx.example.org",
        );
        assert_eq!(
            (result, status),
            (Ok(()), Some(DaneStatus::NoUsableRecords))
        );
    }

    #[test]
    fn tlsa_text_parses_and_bad_text_is_refused() {
        let r: TlsaRecord = "3 1 1 0A0b 0c0D".parse().unwrap();
        assert_eq!(r, TlsaRecord::new(3, 1, 1, vec![0x0a, 0x0b, 0x0c, 0x0d]));
        assert_eq!(r.to_string(), "3 1 1 0a0b0c0d");
        assert_eq!(r.to_string().parse::<TlsaRecord>().unwrap(), r);
        // The whole line dig prints.
        assert_eq!(
            "_25._tcp.mx.example. 300 IN TLSA 3 1 1 0A0B0C0D"
                .parse::<TlsaRecord>()
                .unwrap(),
            r
        );
        // Values out of the known range parse (they are ignored when connecting).
        assert_eq!("255 0 9 ff".parse::<TlsaRecord>().unwrap().usage, 255);
        for bad in [
            "",
            "3",
            "3 1",
            "3 1 1",
            "256 1 1 aa",
            "-1 1 1 aa",
            "3 1 1 zz",
            "3 1 1 abc",
            "x 1 1 aa",
            "3 1 1 aa\u{1b}[2J",
        ] {
            let e = bad.parse::<TlsaRecord>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
            assert!(!e.to_string().contains('\u{1b}'), "{e}");
        }
    }

    #[test]
    fn pins_match_the_leaf_key_alone_or_after_the_roots() {
        let c = chain("mx.example.org", true);
        let pin = pin_sha256(&c.leaf).unwrap();
        assert_eq!(pin.len(), 44);
        assert_eq!(parse_pin(&pin).unwrap(), sha256(spki(&c.leaf).unwrap()));
        assert_eq!(
            parse_pin(&format!("sha256//{pin}")).unwrap(),
            parse_pin(&pin).unwrap()
        );
        for bad in ["", "sha256//", "abcd", "sha1//AAAA", &pin[..40], "!!!!"] {
            assert_eq!(
                parse_pin(bad).unwrap_err().kind(),
                ErrorKind::Config,
                "{bad:?}"
            );
        }
        let verify = |pins: Vec<[u8; 32]>, inner: Option<Arc<dyn ServerCertVerifier>>| {
            PinVerifier {
                pins,
                inner,
                provider: provider(),
            }
            .verify_server_cert(&c.leaf, &[], &name("x.example"), &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| crate::error::Error::from_tls(e).to_string())
        };
        let other = sha256(spki(&chain("a.example", false).leaf).unwrap());
        // Pin-only: expired and for another name, yet the pin decides.
        assert_eq!(verify(vec![other, parse_pin(&pin).unwrap()], None), Ok(()));
        let e = verify(vec![other], None).unwrap_err();
        assert!(
            e.contains("matches no pin") && e.contains(&format!("sha256//{pin}")),
            "{e}"
        );
        // With the roots first: their refusal stands even when the pin matches.
        let roots: Arc<dyn ServerCertVerifier> = Arc::new(RecordingVerifier(pkix(&[&c.ca])));
        let e = verify(vec![parse_pin(&pin).unwrap()], Some(roots)).unwrap_err();
        assert!(!e.contains("pin"), "{e}");
        assert!(pin_sha256(b"not a certificate").is_none());
    }
}
