//! The little X.509 and crypto the verifiers and reports need, below the configuration: the
//! crypto provider, a strict DER reader, a certificate's SubjectPublicKeyInfo, and the digests
//! DANE and pins compare with.
//!
//! Certificates are peer input: every length is checked, nothing is trusted.

/// The crypto provider: aws-lc-rs when its feature is on, else ring. Chosen explicitly so that
/// both features together never make rustls panic over an ambiguous default.
pub(crate) fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    {
        std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    {
        std::sync::Arc::new(rustls::crypto::ring::default_provider())
    }
}

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!("enable the `aws-lc-rs` (default) or the `ring` feature");

/// A digest by name (DANE matching types 1 and 2, pins, `tls-server-end-point`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Digest {
    /// For MySQL's `mysql_native_password` only, which is built on it.
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

/// `data` hashed with `digest`, by the crate's crypto provider library.
pub(crate) fn digest(digest: Digest, data: &[u8]) -> Vec<u8> {
    #[cfg(feature = "aws-lc-rs")]
    use aws_lc_rs::digest as imp;
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    use ring::digest as imp;
    let algorithm = match digest {
        Digest::Sha1 => &imp::SHA1_FOR_LEGACY_USE_ONLY,
        Digest::Sha256 => &imp::SHA256,
        Digest::Sha384 => &imp::SHA384,
        Digest::Sha512 => &imp::SHA512,
    };
    imp::digest(algorithm, data).as_ref().to_vec()
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(&digest(Digest::Sha256, data));
    out
}

/// The SubjectPublicKeyInfo of a DER certificate, whole (tag and length included): what DANE
/// selector 1 and SPKI pins hash. `None` if `cert` is not a certificate this reader understands.
pub(crate) fn spki(cert: &[u8]) -> Option<&[u8]> {
    let mut cert = Der::new(cert).sequence()?;
    let mut tbs = cert.sequence()?;
    if tbs.peek_tag() == Some(0xa0) {
        tbs.take(0xa0)?; // version
    }
    tbs.take(0x02)?; // serialNumber
    tbs.sequence()?; // signature algorithm
    tbs.sequence()?; // issuer
    tbs.sequence()?; // validity
    tbs.sequence()?; // subject
    tbs.element(0x30)
}

/// A DER reader over a byte slice: every read is bounds-checked.
pub(crate) struct Der<'a> {
    data: &'a [u8],
}

impl<'a> Der<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Der<'a> {
        Der { data }
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// The next element whole (tag, length and content) if it has `tag`.
    pub(crate) fn element(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (header, len) = self.header(tag)?;
        let whole = self.data.get(..header.checked_add(len)?)?;
        self.data = &self.data[whole.len()..];
        Some(whole)
    }

    /// The content of the next element if it has `tag`.
    pub(crate) fn take(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (header, _) = self.header(tag)?;
        self.element(tag).map(|whole| &whole[header..])
    }

    pub(crate) fn sequence(&mut self) -> Option<Der<'a>> {
        self.take(0x30).map(Der::new)
    }

    /// The header length and content length of the next element, if it has `tag`. Definite
    /// lengths only, at most 4 length bytes (DER).
    fn header(&self, tag: u8) -> Option<(usize, usize)> {
        if self.peek_tag()? != tag {
            return None;
        }
        let first = *self.data.get(1)?;
        if first < 0x80 {
            return Some((2, usize::from(first)));
        }
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = self.data.get(2..2 + n)?;
        let len = bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
        Some((2 + n, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_the_empty_string() {
        // FIPS 180-4 test values.
        assert!(
            hex(&digest(Digest::Sha256, b""))
                .starts_with("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(digest(Digest::Sha384, b"").len(), 48);
        assert!(hex(&digest(Digest::Sha512, b"")).starts_with("cf83e1357eefb8bdf1542850d66d8007"));
    }

    #[test]
    fn spki_is_the_key_rcgen_put_in() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            spki(cert.der()),
            Some(&rcgen::PublicKeyData::subject_public_key_info(&key)[..])
        );
        for cut in 0..cert.der().len() {
            assert!(spki(&cert.der()[..cut]).is_none(), "{cut}");
        }
    }

    #[test]
    fn lengths_past_the_end_are_refused() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x03, 0x02, 0x01],
        ] {
            assert!(Der::new(bad).sequence().is_none(), "{bad:?}");
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
