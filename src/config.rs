//! Client configuration: trust, identity, policy and timeouts, built once and shared.
//!
//! A [`ClientConfig`] is immutable and cheap to clone (an `Arc` inside). Every connection made
//! from the same config shares its TLS session cache, so later connections resume.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

pub(crate) use crate::alpn::{AlpnVariants, KeyShare, ProtocolAlpn};
use crate::error::{Error, Result};
use crate::verify::{
    AcceptAnyCertificate, DaneVerifier, PinVerifier, RecordingVerifier, TlsaRecord, parse_pin,
};
use crate::wire::{DialogLine, DialogObserver, Limits};
use crate::x509::crypto_provider;

/// What to do when the server cannot or will not start TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Fail with a distinct error and send nothing more in plaintext. The default.
    #[default]
    Require,
    /// Carry on unencrypted; the [`crate::Connection`] then reports `is_encrypted() == false` and
    /// why. Only for callers that would otherwise send in plaintext anyway.
    Opportunistic,
}

/// A TLS version bound (lowest accepted, highest offered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 (as the lowest: 1.2 and 1.3, the default; as the highest: 1.2 only).
    #[default]
    Tls12,
    /// TLS 1.3 (as the lowest: 1.3 only).
    Tls13,
}

/// Timeouts per phase. All are finite and must stay above zero; each fires as
/// [`Error::Timeout`] naming its phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing TCP, per resolved address.
    pub connect: Duration,
    /// Receiving one whole reply (greeting, capabilities, go-ahead): an overall deadline, so a
    /// peer that drips one byte at a time still times out.
    pub reply: Duration,
    /// The whole TLS handshake.
    pub handshake: Duration,
    /// Each read or write on the finished connection.
    pub io: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            reply: Duration::from_secs(30),
            handshake: Duration::from_secs(15),
            io: Duration::from_secs(300),
        }
    }
}

impl Timeouts {
    /// The same timeout for every phase.
    pub fn all(t: Duration) -> Timeouts {
        Timeouts {
            connect: t,
            reply: t,
            handshake: t,
            io: t,
        }
    }
}

#[derive(Clone, Debug)]
enum Trust {
    WebPki,
    System,
    PemFile(PathBuf),
    Pem(Vec<u8>),
}

#[derive(Clone, Debug)]
enum ClientAuth {
    Pem { chain: Vec<u8>, key: Vec<u8> },
    Files { chain: PathBuf, key: PathBuf },
}

/// Builds a [`ClientConfig`]. Setters never fail; [`build`](Self::build) reports every problem.
#[derive(Clone, Default)]
pub struct ClientConfigBuilder {
    observer: Option<Arc<DialogObserver>>,
    trust: Vec<Trust>,
    client_auth: Option<ClientAuth>,
    client_name: Option<String>,
    alpn: Vec<Vec<u8>>,
    min_version: TlsVersion,
    /// `None`: TLS 1.3.
    max_version: Option<TlsVersion>,
    policy: Policy,
    timeouts: Timeouts,
    dangerous_no_verify: bool,
    dangerous_login_unverified: bool,
    fetch_capabilities: bool,
    no_resumption: bool,
    key_log: bool,
    pins: Vec<String>,
    pin_only: bool,
    /// `None`: every suite / group the provider has.
    cipher_suites: Option<Vec<rustls::CipherSuite>>,
    kx_groups: Option<Vec<rustls::NamedGroup>>,
}

impl ClientConfigBuilder {
    /// Trusts the built-in Mozilla roots (webpki-roots). This is the default when no other trust
    /// is chosen; choosing another replaces it unless this is called too.
    pub fn trust_webpki_roots(mut self) -> Self {
        self.trust.push(Trust::WebPki);
        self
    }

    /// Trusts the operating system's certificate store.
    pub fn trust_system_roots(mut self) -> Self {
        self.trust.push(Trust::System);
        self
    }

    /// Trusts the CA certificates in this PEM file (read when the config is built).
    pub fn trust_ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.trust.push(Trust::PemFile(path.as_ref().to_path_buf()));
        self
    }

    /// Trusts the CA certificates in these PEM bytes.
    pub fn trust_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.trust.push(Trust::Pem(pem.into()));
        self
    }

    /// Presents this client certificate chain and key (PEM) when the server asks (mTLS).
    pub fn client_auth_pem(mut self, chain: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_auth = Some(ClientAuth::Pem {
            chain: chain.into(),
            key: key.into(),
        });
        self
    }

    /// As [`client_auth_pem`](Self::client_auth_pem), read from files when the config is built.
    pub fn client_auth_files(mut self, chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.client_auth = Some(ClientAuth::Files {
            chain: chain.as_ref().to_path_buf(),
            key: key.as_ref().to_path_buf(),
        });
        self
    }

    /// The name sent in SMTP `EHLO` / LMTP `LHLO`. Default: the local address as an address
    /// literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`), which is always true.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// ALPN protocols to offer, most preferred first.
    pub fn alpn<P: Into<Vec<u8>>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one ALPN protocol after those already set.
    pub fn add_alpn(mut self, protocol: impl Into<Vec<u8>>) -> Self {
        self.alpn.push(protocol.into());
        self
    }

    /// The timeouts set so far.
    pub fn current_timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Removes an observer set with [`on_dialog_line`](Self::on_dialog_line).
    pub fn without_dialog_observer(mut self) -> Self {
        self.observer = None;
        self
    }

    /// The lowest TLS version to accept (1.2 by default).
    pub fn min_tls_version(mut self, v: TlsVersion) -> Self {
        self.min_version = v;
        self
    }

    /// The highest TLS version to offer (1.3 by default): 1.2 to test a server's TLS 1.2.
    /// Above the lowest one is a configuration error at `build`.
    pub fn max_tls_version(mut self, v: TlsVersion) -> Self {
        self.max_version = Some(v);
        self
    }

    /// Offers only these cipher suites (default: all of [`supported_cipher_suites`], strongest
    /// first), in the provider's order. A suite this build does not have, or none left for the
    /// TLS versions allowed, is a configuration error at `build`.
    ///
    /// [`supported_cipher_suites`]: crate::supported_cipher_suites
    pub fn cipher_suites(mut self, suites: impl IntoIterator<Item = rustls::CipherSuite>) -> Self {
        self.cipher_suites = Some(suites.into_iter().collect());
        self
    }

    /// Offers only these key exchange groups (default: all of
    /// [`supported_key_exchange_groups`], post-quantum hybrid first), in the provider's order. A
    /// group this build does not have is a configuration error at `build`.
    ///
    /// [`supported_key_exchange_groups`]: crate::supported_key_exchange_groups
    pub fn key_exchange_groups(
        mut self,
        groups: impl IntoIterator<Item = rustls::NamedGroup>,
    ) -> Self {
        self.kx_groups = Some(groups.into_iter().collect());
        self
    }

    /// Require (default) or opportunistic.
    pub fn policy(mut self, p: Policy) -> Self {
        self.policy = p;
        self
    }

    /// Per-phase timeouts.
    pub fn timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }

    /// The same timeout for every phase.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeouts = Timeouts::all(t);
        self
    }

    /// After TLS, ask the server for its capabilities again (EHLO, CAPABILITY, CAPA) and keep
    /// them in the connection. Off by default: it costs a round trip.
    pub fn fetch_capabilities_after_tls(mut self, yes: bool) -> Self {
        self.fetch_capabilities = yes;
        self
    }

    /// Whether connections from this config share a TLS session cache and resume (default on).
    pub fn session_resumption(mut self, yes: bool) -> Self {
        self.no_resumption = !yes;
        self
    }

    /// Writes the TLS secrets of every connection to the file named by the `SSLKEYLOGFILE`
    /// environment variable (NSS key log format, which Wireshark reads to decrypt a capture),
    /// when it is set. Off by default: anyone who reads that file reads the traffic.
    pub fn key_log_from_env(mut self, yes: bool) -> Self {
        self.key_log = yes;
        self
    }

    /// Calls `observer` with every dialog line as it is sent or received, on the connecting
    /// thread (logs, `-v` output). Lines are printable: control characters are escaped.
    pub fn on_dialog_line(
        mut self,
        observer: impl Fn(&DialogLine) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Also requires the server's public key to match this pin: the base64 SHA-256 of its
    /// SubjectPublicKeyInfo, bare or as curl writes it (`sha256//…`). Call it again for each key
    /// to accept (the next key before a rollover). A malformed pin is an error at `build`. A
    /// certificate that matches no pin is [`Error::Certificate`], which carries the presented
    /// chain: [`crate::pin_sha256`] of its leaf is the pin to trust on first use.
    pub fn pin_sha256(mut self, pin: impl Into<String>) -> Self {
        self.pins.push(pin.into());
        self
    }

    /// With pins set: the pins alone decide, the roots are not consulted (names and validity are
    /// not checked either), as msmtp's `tls_fingerprint` and fetchmail's `sslfingerprint` do for
    /// the self-signed certificates common in mail. Without pins `build` refuses it.
    pub fn pin_only(mut self, yes: bool) -> Self {
        self.pin_only = yes;
        self
    }

    /// **Dangerous**: accept any certificate. The handshake's signatures are still checked, and
    /// the connection reports what verification would have said
    /// ([`crate::Verification::Skipped`]). For tests and diagnosis only.
    pub fn dangerous_accept_any_certificate(mut self, yes: bool) -> Self {
        self.dangerous_no_verify = yes;
        self
    }

    /// **Dangerous**: let [`crate::Connection::authenticate`] send credentials over a connection
    /// whose certificate was not verified (see
    /// [`dangerous_accept_any_certificate`](Self::dangerous_accept_any_certificate)). Without it a
    /// login on such a connection is refused: whoever presented the certificate would get the
    /// password.
    pub fn dangerous_allow_login_without_verification(mut self, yes: bool) -> Self {
        self.dangerous_login_unverified = yes;
        self
    }

    /// Builds the immutable, shareable config.
    pub fn build(self) -> Result<ClientConfig> {
        let provider = restricted(
            crypto_provider(),
            self.cipher_suites.as_deref(),
            self.kx_groups.as_deref(),
        )?;
        let roots = self.load_roots()?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| {
                    Error::Config(format!("cannot build the certificate verifier: {e}"))
                })?;
        let versions: &[&'static rustls::SupportedProtocolVersion] = match (
            self.min_version,
            self.max_version.unwrap_or(TlsVersion::Tls13),
        ) {
            (TlsVersion::Tls12, TlsVersion::Tls13) => {
                &[&rustls::version::TLS13, &rustls::version::TLS12]
            }
            (TlsVersion::Tls12, TlsVersion::Tls12) => &[&rustls::version::TLS12],
            (TlsVersion::Tls13, TlsVersion::Tls13) => &[&rustls::version::TLS13],
            (TlsVersion::Tls13, TlsVersion::Tls12) => {
                return Err(Error::Config(
                    "the highest TLS version (1.2) is below the lowest (1.3)".into(),
                ));
            }
        };
        let pins = self
            .pins
            .iter()
            .map(|p| parse_pin(p))
            .collect::<Result<Vec<_>>>()?;
        if self.pin_only && pins.is_empty() {
            return Err(Error::Config("pin-only without any pin".into()));
        }
        if self.dangerous_no_verify && !pins.is_empty() {
            return Err(Error::Config(
                "pins and accepting any certificate contradict each other".into(),
            ));
        }
        let client_auth = match &self.client_auth {
            None => None,
            Some(auth) => Some(load_client_auth(auth)?),
        };
        let make = |provider: Arc<CryptoProvider>| -> Result<rustls::ClientConfig> {
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|e| Error::Config(format!("TLS versions: {e}")))?;
            let roots: Arc<dyn ServerCertVerifier> = if self.dangerous_no_verify {
                Arc::new(AcceptAnyCertificate {
                    provider: provider.clone(),
                })
            } else {
                Arc::new(RecordingVerifier(verifier.clone()))
            };
            let chosen: Arc<dyn ServerCertVerifier> = if pins.is_empty() {
                roots
            } else {
                Arc::new(PinVerifier {
                    pins: pins.clone(),
                    inner: (!self.pin_only).then_some(roots),
                    provider: provider.clone(),
                })
            };
            let builder = builder.dangerous().with_custom_certificate_verifier(chosen);
            let mut tls = match &client_auth {
                None => builder.with_no_client_auth(),
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .map_err(|e| Error::Config(format!("client certificate: {e}")))?,
            };
            tls.alpn_protocols = self.alpn.clone();
            if self.key_log {
                tls.key_log = Arc::new(rustls::KeyLogFile::new());
            }
            Ok(tls)
        };
        let mut tls = make(provider.clone())?;
        if self.no_resumption {
            // No tickets, but still the group each server chose: without it every connection
            // to a server that rejects the first key share pays a HelloRetryRequest.
            tls.resumption = rustls::client::Resumption::store(Arc::new(KxHintsOnly::default()))
                .tls12_resumption(rustls::client::Tls12Resumption::Disabled);
        }
        // The same, with a P-256 key share first (PostgreSQL servers before 18 accept only that),
        // sharing the session store, so the group a server chose is remembered for both.
        let mut tls_p256_first = make(Arc::new(p256_first(&provider)))?;
        tls_p256_first.resumption = tls.resumption.clone();
        if self.alpn.iter().any(|p| p.is_empty() || p.len() > 255) {
            return Err(Error::Config(
                "each ALPN protocol must be 1 to 255 bytes".into(),
            ));
        }
        if let Some(name) = &self.client_name {
            validate_client_name(name)?;
        }
        let t = self.timeouts;
        if [t.connect, t.reply, t.handshake, t.io]
            .iter()
            .any(Duration::is_zero)
        {
            return Err(Error::Config(
                "every timeout must be greater than zero".into(),
            ));
        }
        Ok(ClientConfig {
            inner: Arc::new(Inner {
                tls: Arc::new(tls),
                tls_p256_first: Arc::new(tls_p256_first),
                verifier,
                provider,
                pins,
                resumption: !self.no_resumption,
                policy: self.policy,
                timeouts: self.timeouts,
                client_name: self.client_name,
                fetch_capabilities: self.fetch_capabilities,
                dangerous_no_verify: self.dangerous_no_verify,
                dangerous_login_unverified: self.dangerous_login_unverified,
                limits: Limits::default(),
                observer: self.observer,
                tls_with_alpn: AlpnVariants::default(),
            }),
        })
    }

    fn load_roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        let trust = if self.trust.is_empty() {
            &[Trust::WebPki][..]
        } else {
            &self.trust[..]
        };
        for t in trust {
            match t {
                Trust::WebPki => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                Trust::System => {
                    let found = rustls_native_certs::load_native_certs();
                    let (added, _) = roots.add_parsable_certificates(found.certs);
                    if added == 0 {
                        let why = found
                            .errors
                            .first()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default();
                        return Err(Error::Config(format!(
                            "no usable certificates in the system store{why}"
                        )));
                    }
                }
                Trust::PemFile(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        Error::Config(format!("cannot read CA file {}: {e}", path.display()))
                    })?;
                    add_pem_roots(&mut roots, &pem, &path.display().to_string())?;
                }
                Trust::Pem(pem) => add_pem_roots(&mut roots, pem, "CA PEM")?,
            }
        }
        Ok(roots)
    }
}

/// Checks that `pem` holds at least one usable CA certificate (for setters that fail early).
pub(crate) fn check_ca_pem(pem: &[u8], what: &str) -> Result<()> {
    add_pem_roots(&mut RootCertStore::empty(), pem, what)
}

fn add_pem_roots(roots: &mut RootCertStore, pem: &[u8], what: &str) -> Result<()> {
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| Error::Config(format!("{what}: bad PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Config(format!("{what}: unusable CA certificate: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(Error::Config(format!("{what}: no CERTIFICATE found")));
    }
    Ok(())
}

fn load_client_auth(
    auth: &ClientAuth,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| Error::Config(format!("cannot read {}: {e}", p.display())))
    };
    let (chain, key) = match auth {
        ClientAuth::Pem { chain, key } => (chain.clone(), key.clone()),
        ClientAuth::Files { chain, key } => (read(chain)?, read(key)?),
    };
    let certs = CertificateDer::pem_slice_iter(&chain)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("client certificate chain: bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(
            "client certificate chain: no CERTIFICATE found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| Error::Config(format!("client key: {e}")))?;
    Ok((certs, key))
}

fn validate_client_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'"');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "client name {name:?} is not a domain or address literal"
        )))
    }
}

/// A session store that keeps each server's key-exchange group and nothing to resume with.
#[derive(Debug)]
struct KxHintsOnly(rustls::client::ClientSessionMemoryCache);

impl Default for KxHintsOnly {
    fn default() -> Self {
        KxHintsOnly(rustls::client::ClientSessionMemoryCache::new(256))
    }
}

impl rustls::client::ClientSessionStore for KxHintsOnly {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: rustls::NamedGroup) {
        self.0.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.0.kx_hint(server_name)
    }

    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls12ClientSessionValue,
    ) {
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls13ClientSessionValue,
    ) {
    }

    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        None
    }
}

/// The provider with only the suites and groups asked for (each must exist in it).
fn restricted(
    provider: Arc<CryptoProvider>,
    suites: Option<&[rustls::CipherSuite]>,
    groups: Option<&[rustls::NamedGroup]>,
) -> Result<Arc<CryptoProvider>> {
    if suites.is_none() && groups.is_none() {
        return Ok(provider);
    }
    let mut p = (*provider).clone();
    if let Some(wanted) = suites {
        if let Some(missing) = wanted
            .iter()
            .find(|w| !p.cipher_suites.iter().any(|s| s.suite() == **w))
        {
            return Err(Error::Config(format!(
                "cipher suite {missing:?} is not supported by this build"
            )));
        }
        p.cipher_suites.retain(|s| wanted.contains(&s.suite()));
        if p.cipher_suites.is_empty() {
            return Err(Error::Config("no cipher suite left to offer".into()));
        }
    }
    if let Some(wanted) = groups {
        if let Some(missing) = wanted
            .iter()
            .find(|w| !p.kx_groups.iter().any(|g| g.name() == **w))
        {
            return Err(Error::Config(format!(
                "key exchange group {missing:?} is not supported by this build"
            )));
        }
        p.kx_groups.retain(|g| wanted.contains(&g.name()));
        if p.kx_groups.is_empty() {
            return Err(Error::Config("no key exchange group left to offer".into()));
        }
    }
    Ok(Arc::new(p))
}

/// The cipher suites this build can offer, in the order it prefers them (TLS 1.3 first).
pub fn supported_cipher_suites() -> Vec<rustls::CipherSuite> {
    crypto_provider()
        .cipher_suites
        .iter()
        .map(|s| s.suite())
        .collect()
}

/// The key exchange groups this build can offer, in the order it prefers them.
pub fn supported_key_exchange_groups() -> Vec<rustls::NamedGroup> {
    crypto_provider()
        .kx_groups
        .iter()
        .map(|g| g.name())
        .collect()
}

/// `provider` with secp256r1 first among its key exchange groups (the others keep their order):
/// its first flight then carries a P-256 key share.
fn p256_first(provider: &CryptoProvider) -> CryptoProvider {
    let mut p = provider.clone();
    p.kx_groups
        .sort_by_key(|g| g.name() != rustls::NamedGroup::secp256r1);
    p
}

/// An immutable client configuration, shareable across threads. Clone it freely.
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub tls: Arc<rustls::ClientConfig>,
    /// `tls` with a P-256 key share in the first flight (same store, verifier and identity).
    pub tls_p256_first: Arc<rustls::ClientConfig>,
    /// The real verifier, also used to report what was wrong when verification is skipped.
    pub verifier: Arc<WebPkiServerVerifier>,
    pub provider: Arc<CryptoProvider>,
    /// SPKI pins every connection's certificate must match (checked by the verifier in `tls`).
    pub pins: Vec<[u8; 32]>,
    /// Whether connections resume sessions (`tls` has a real session store).
    pub resumption: bool,
    pub policy: Policy,
    pub timeouts: Timeouts,
    pub client_name: Option<String>,
    pub fetch_capabilities: bool,
    pub dangerous_no_verify: bool,
    pub dangerous_login_unverified: bool,
    pub limits: Limits,
    pub observer: Option<Arc<DialogObserver>>,
    /// TLS configs with a protocol's required ALPN, made on first use; they share the session
    /// cache with `tls`.
    pub tls_with_alpn: AlpnVariants<rustls::ClientConfig, (&'static [u8], KeyShare)>,
}

impl ClientConfig {
    /// Starts a builder with the safe defaults: webpki roots, require, TLS ≥ 1.2, finite timeouts.
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder::default()
    }

    /// The policy connections made with this config follow.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// The timeouts connections made with this config use.
    pub fn timeouts(&self) -> Timeouts {
        self.inner.timeouts
    }

    /// Whether certificate verification is switched off (dangerous).
    pub fn is_dangerous(&self) -> bool {
        self.inner.dangerous_no_verify
    }

    /// The rustls configuration underneath, for inspection.
    pub fn rustls_config(&self) -> &Arc<rustls::ClientConfig> {
        &self.inner.tls
    }

    /// The rustls config for a protocol: the shared one, or for a protocol that needs its own ALPN
    /// (PostgreSQL and XMPP direct TLS) or key share (PostgreSQL) a copy with the same session
    /// cache.
    pub(crate) fn tls_for(
        &self,
        alpn: ProtocolAlpn,
        key_share: KeyShare,
    ) -> Arc<rustls::ClientConfig> {
        let base = match key_share {
            KeyShare::Default => &self.inner.tls,
            KeyShare::P256First => &self.inner.tls_p256_first,
        };
        match alpn.id() {
            None => base.clone(),
            Some(id) => self.inner.tls_with_alpn.get_or_make((id, key_share), || {
                let mut tls = (**base).clone();
                tls.alpn_protocols = vec![id.to_vec()];
                tls
            }),
        }
    }

    /// A rustls config for one connection that DANE authenticates with `records` (RFC 7672
    /// rules when `smtp`), and its verifier, which then says what it decided. Pins still apply.
    /// A resumed session skips verification, so a session made under one connection's records
    /// must never serve another connection: rustls already refuses to resume under another
    /// verifier, and the store is the connection's own as well (its FTP data channels share it).
    pub(crate) fn tls_with_dane(
        &self,
        alpn: ProtocolAlpn,
        key_share: KeyShare,
        records: Vec<TlsaRecord>,
        smtp: bool,
    ) -> (Arc<rustls::ClientConfig>, Arc<DaneVerifier>) {
        let inner = &self.inner;
        let dane = Arc::new(DaneVerifier::new(
            records,
            smtp,
            inner.verifier.clone(),
            inner.provider.clone(),
        ));
        let verifier: Arc<dyn ServerCertVerifier> = if inner.pins.is_empty() {
            dane.clone()
        } else {
            Arc::new(PinVerifier {
                pins: inner.pins.clone(),
                inner: Some(dane.clone()),
                provider: inner.provider.clone(),
            })
        };
        let mut tls = (*self.tls_for(alpn, key_share)).clone();
        tls.dangerous().set_certificate_verifier(verifier);
        if inner.resumption {
            // FTP data channels resume their control connection's session, and only that.
            tls.resumption = rustls::client::Resumption::in_memory_sessions(4);
        }
        (Arc::new(tls), dane)
    }

    /// Runs the real verifier on a chain (used to report what was wrong when verification was
    /// skipped).
    pub(crate) fn check_chain(
        &self,
        chain: &[CertificateDer<'_>],
        name: &ServerName<'_>,
    ) -> std::result::Result<(), rustls::Error> {
        let (end_entity, intermediates) = chain
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        self.inner
            .verifier
            .verify_server_cert(end_entity, intermediates, name, &[], UnixTime::now())
            .map(|_| ())
    }
}

impl fmt::Debug for ClientConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfigBuilder")
            .field("trust", &self.trust)
            .field("client_auth", &self.client_auth.is_some())
            .field("client_name", &self.client_name)
            .field("alpn", &self.alpn)
            .field("min_version", &self.min_version)
            .field("policy", &self.policy)
            .field("timeouts", &self.timeouts)
            .field("dangerous_no_verify", &self.dangerous_no_verify)
            .field(
                "dangerous_login_unverified",
                &self.dangerous_login_unverified,
            )
            .field("fetch_capabilities", &self.fetch_capabilities)
            .field("pins", &self.pins)
            .field("pin_only", &self.pin_only)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("policy", &self.inner.policy)
            .field("timeouts", &self.inner.timeouts)
            .field("client_name", &self.inner.client_name)
            .field("alpn", &self.inner.tls.alpn_protocols)
            .field("dangerous_no_verify", &self.inner.dangerous_no_verify)
            .field(
                "dangerous_login_unverified",
                &self.inner.dangerous_login_unverified,
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn postgres_gets_a_p256_first_flight_and_shares_the_session_store() {
        let c = ClientConfig::builder().build().unwrap();
        let first = |tls: &rustls::ClientConfig| tls.crypto_provider().kx_groups[0].name();
        assert_eq!(
            first(&c.tls_for(ProtocolAlpn::Config, KeyShare::P256First)),
            rustls::NamedGroup::secp256r1
        );
        assert_ne!(
            first(&c.tls_for(ProtocolAlpn::Config, KeyShare::Default)),
            rustls::NamedGroup::secp256r1
        );
        let direct = c.tls_for(ProtocolAlpn::Require(b"postgresql"), KeyShare::P256First);
        assert_eq!(first(&direct), rustls::NamedGroup::secp256r1);
        assert_eq!(direct.alpn_protocols, [b"postgresql".to_vec()]);
    }

    #[test]
    fn tls_version_bounds_build_and_a_max_below_the_min_is_refused() {
        // What each bound negotiates is checked against servers (tests/cli.rs: --tls-max 1.2).
        for (min, max) in [
            (TlsVersion::Tls12, TlsVersion::Tls12),
            (TlsVersion::Tls13, TlsVersion::Tls13),
        ] {
            ClientConfig::builder()
                .min_tls_version(min)
                .max_tls_version(max)
                .build()
                .unwrap();
        }
        let e = ClientConfig::builder()
            .min_tls_version(TlsVersion::Tls13)
            .max_tls_version(TlsVersion::Tls12)
            .build()
            .err()
            .unwrap();
        assert_eq!(e.kind(), crate::ErrorKind::Config, "{e}");
    }

    #[test]
    fn defaults_are_safe() {
        let c = ClientConfig::builder().build().unwrap();
        assert_eq!(c.policy(), Policy::Require);
        assert!(!c.is_dangerous());
        let t = c.timeouts();
        for d in [t.connect, t.reply, t.handshake, t.io] {
            assert!(!d.is_zero() && d <= Duration::from_secs(600));
        }
    }

    #[test]
    fn missing_ca_file_is_a_config_error_naming_it() {
        let e = ClientConfig::builder()
            .trust_ca_file("/nonexistent/ca.pem")
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("/nonexistent/ca.pem"));
    }

    #[test]
    fn pem_without_certificates_is_rejected() {
        let e = ClientConfig::builder()
            .trust_ca_pem(b"just text".to_vec())
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn bad_client_name_is_rejected() {
        for bad in ["", "two words", "line\r\nbreak"] {
            let e = ClientConfig::builder()
                .client_name(bad)
                .build()
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad:?}");
        }
    }

    #[test]
    fn suites_and_groups_can_be_narrowed_to_one() {
        let suite = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
        let group = rustls::NamedGroup::secp384r1;
        let c = ClientConfig::builder()
            .cipher_suites([suite])
            .key_exchange_groups([group])
            .build()
            .unwrap();
        let p = c.inner.tls.crypto_provider();
        let suites: Vec<_> = p.cipher_suites.iter().map(|s| s.suite()).collect();
        let groups: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!((suites, groups), (vec![suite], vec![group]));
        // The P-256-first variant has the same one group.
        assert_eq!(c.inner.tls_p256_first.crypto_provider().kx_groups.len(), 1);
        assert!(supported_cipher_suites().contains(&suite));
        assert!(supported_key_exchange_groups().contains(&group));
    }

    #[test]
    fn unknown_or_impossible_suites_and_groups_are_config_errors() {
        let unknown_suite = ClientConfig::builder()
            .cipher_suites([rustls::CipherSuite::TLS_RSA_WITH_AES_128_CBC_SHA])
            .build()
            .unwrap_err();
        assert_eq!(unknown_suite.kind(), ErrorKind::Config, "{unknown_suite}");
        let unknown_group = ClientConfig::builder()
            .key_exchange_groups([rustls::NamedGroup::FFDHE2048])
            .build()
            .unwrap_err();
        assert_eq!(unknown_group.kind(), ErrorKind::Config, "{unknown_group}");
        let none = ClientConfig::builder()
            .cipher_suites([])
            .build()
            .unwrap_err();
        assert_eq!(none.kind(), ErrorKind::Config);
        // Only a TLS 1.3 suite while only TLS 1.2 is allowed.
        let impossible = ClientConfig::builder()
            .cipher_suites([rustls::CipherSuite::TLS13_AES_128_GCM_SHA256])
            .max_tls_version(TlsVersion::Tls12)
            .build()
            .unwrap_err();
        assert_eq!(impossible.kind(), ErrorKind::Config, "{impossible}");
    }

    #[test]
    fn zero_timeouts_are_rejected() {
        let zero_io = Timeouts {
            io: Duration::ZERO,
            ..Timeouts::default()
        };
        for t in [Timeouts::all(Duration::ZERO), zero_io] {
            let e = ClientConfig::builder().timeouts(t).build().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
        }
    }

    #[test]
    fn empty_alpn_entry_is_rejected() {
        let e = ClientConfig::builder()
            .alpn([Vec::<u8>::new()])
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn client_key_without_chain_is_rejected() {
        let e = ClientConfig::builder()
            .client_auth_pem(Vec::new(), Vec::new())
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }
}
