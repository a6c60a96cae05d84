//! Server configuration: certificates (with SNI choice), client-certificate verification,
//! ALPN, TLS versions, resumption, the greeting, timeouts. Built once, shared across threads.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::config::{AlpnVariants, ProtocolAlpn, Timeouts, TlsVersion};
use crate::x509::crypto_provider;

/// An ALPN protocol id.
type AlpnId = &'static [u8];
use crate::error::{Error, Result};
use crate::wire::{DialogLine, DialogObserver, Limits};

#[derive(Clone, Debug)]
enum Pem {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl Pem {
    fn load(&self, what: &str) -> Result<Vec<u8>> {
        match self {
            Pem::Bytes(b) => Ok(b.clone()),
            Pem::File(p) => std::fs::read(p)
                .map_err(|e| Error::Config(format!("cannot read {what} {}: {e}", p.display()))),
        }
    }
}

#[derive(Clone, Debug)]
struct Identity {
    /// `None`: the default certificate; `Some(name)`: chosen when the client asks for `name`.
    sni: Option<String>,
    chain: Pem,
    key: Pem,
}

/// Whether and how clients must present certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients may present a certificate; it is verified when they do.
    Optional,
    /// Clients must present a certificate that verifies.
    Required,
}

/// Builds a [`ServerConfig`]. Setters never fail; [`build`](Self::build) reports problems.
#[derive(Clone, Default)]
pub struct ServerConfigBuilder {
    identities: Vec<Identity>,
    client_auth: Option<(ClientAuth, Pem)>,
    alpn: Vec<Vec<u8>>,
    min_version: TlsVersion,
    tickets: bool,
    hostname: Option<String>,
    greeting: Option<String>,
    timeouts: Timeouts,
    observer: Option<Arc<DialogObserver>>,
}

impl ServerConfigBuilder {
    /// The certificate chain and private key (PEM: RSA, ECDSA or Ed25519; PKCS#8, PKCS#1 or
    /// SEC1), served when no SNI-specific certificate matches.
    pub fn certificate_pem(mut self, chain: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.identities.push(Identity {
            sni: None,
            chain: Pem::Bytes(chain.into()),
            key: Pem::Bytes(key.into()),
        });
        self
    }

    /// As [`certificate_pem`](Self::certificate_pem), read from files when built.
    pub fn certificate_files(mut self, chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.identities.push(Identity {
            sni: None,
            chain: Pem::File(chain.as_ref().to_path_buf()),
            key: Pem::File(key.as_ref().to_path_buf()),
        });
        self
    }

    /// A certificate served when the client's SNI is `name` (case-insensitive).
    pub fn sni_certificate_pem(
        mut self,
        name: impl Into<String>,
        chain: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.identities.push(Identity {
            sni: Some(name.into().to_ascii_lowercase()),
            chain: Pem::Bytes(chain.into()),
            key: Pem::Bytes(key.into()),
        });
        self
    }

    /// Verifies client certificates against the CAs in this PEM.
    pub fn client_auth_pem(mut self, mode: ClientAuth, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.client_auth = Some((mode, Pem::Bytes(ca_pem.into())));
        self
    }

    /// As [`client_auth_pem`](Self::client_auth_pem), read from a file when built.
    pub fn client_auth_file(mut self, mode: ClientAuth, ca_file: impl AsRef<Path>) -> Self {
        self.client_auth = Some((mode, Pem::File(ca_file.as_ref().to_path_buf())));
        self
    }

    /// ALPN protocols the server accepts, most preferred first.
    pub fn alpn<P: Into<Vec<u8>>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one ALPN protocol.
    pub fn add_alpn(mut self, protocol: impl Into<Vec<u8>>) -> Self {
        self.alpn.push(protocol.into());
        self
    }

    /// The lowest TLS version accepted (1.2 by default).
    pub fn min_tls_version(mut self, v: TlsVersion) -> Self {
        self.min_version = v;
        self
    }

    /// Stateless session tickets (TLS 1.2 and 1.3) in addition to the in-memory session cache,
    /// which is always on. Off by default.
    pub fn session_tickets(mut self, yes: bool) -> Self {
        self.tickets = yes;
        self
    }

    /// The host name the server announces in its greetings (default `localhost`).
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = Some(name.into());
        self
    }

    /// The text of the greeting after the code and host name (a protocol-specific default
    /// otherwise, e.g. `ESMTP ready`).
    pub fn greeting(mut self, text: impl Into<String>) -> Self {
        self.greeting = Some(text.into());
        self
    }

    /// Per-phase timeouts: `reply` bounds each client command before TLS.
    pub fn timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }

    /// The same timeout for every phase.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeouts = Timeouts::all(t);
        self
    }

    /// The timeouts set so far.
    pub fn current_timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Calls `observer` with every dialog line, as for the client.
    pub fn on_dialog_line(
        mut self,
        observer: impl Fn(&DialogLine) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Removes the observer.
    pub fn without_dialog_observer(mut self) -> Self {
        self.observer = None;
        self
    }

    /// Builds the immutable, shareable config.
    pub fn build(self) -> Result<ServerConfig> {
        let provider = crypto_provider();
        let mut default = None;
        let mut by_name = Vec::new();
        for id in &self.identities {
            let chain_pem = id.chain.load("certificate chain")?;
            let key_pem = id.key.load("private key")?;
            let chain = CertificateDer::pem_slice_iter(&chain_pem)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Config(format!("certificate chain: bad PEM: {e}")))?;
            if chain.is_empty() {
                return Err(Error::Config(
                    "certificate chain: no CERTIFICATE found".into(),
                ));
            }
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| Error::Config(format!("private key: {e}")))?;
            let certified = CertifiedKey::from_der(chain, key, &provider)
                .map_err(|e| Error::Config(format!("certificate and key: {e}")))?;
            match &id.sni {
                None => default = Some(Arc::new(certified)),
                Some(name) => by_name.push((name.clone(), Arc::new(certified))),
            }
        }
        if default.is_none() && by_name.is_empty() {
            return Err(Error::Config("a server needs a certificate and key".into()));
        }
        let versions: &[&'static rustls::SupportedProtocolVersion] = match self.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| Error::Config(format!("TLS versions: {e}")))?;
        let builder = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some((mode, ca)) => {
                let pem = ca.load("client CA file")?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert =
                        cert.map_err(|e| Error::Config(format!("client CA: bad PEM: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| Error::Config(format!("client CA: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(Error::Config("client CA: no CERTIFICATE found".into()));
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let verifier = match mode {
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                    ClientAuth::Required => verifier,
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| Error::Config(format!("client verifier: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut tls = builder.with_cert_resolver(Arc::new(SniResolver { default, by_name }));
        if self.alpn.iter().any(|p| p.is_empty() || p.len() > 255) {
            return Err(Error::Config(
                "each ALPN protocol must be 1 to 255 bytes".into(),
            ));
        }
        tls.alpn_protocols = self.alpn.clone();
        if self.tickets {
            tls.ticketer = ticketer()?;
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
        let hostname = self.hostname.unwrap_or_else(|| "localhost".to_owned());
        if hostname.is_empty() || !hostname.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(format!(
                "hostname {hostname:?} is not a host name"
            )));
        }
        if let Some(g) = &self.greeting {
            if g.chars().any(char::is_control) {
                return Err(Error::Config(
                    "the greeting must be one line of text".into(),
                ));
            }
        }
        Ok(ServerConfig {
            inner: Arc::new(ServerInner {
                tls: Arc::new(tls),
                hostname,
                greeting: self.greeting,
                timeouts: self.timeouts,
                limits: Limits::default(),
                observer: self.observer,
                tls_with_alpn: AlpnVariants::default(),
            }),
        })
    }
}

#[cfg(feature = "aws-lc-rs")]
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>> {
    rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| Error::Config(format!("tickets: {e}")))
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>> {
    rustls::crypto::ring::Ticketer::new().map_err(|e| Error::Config(format!("tickets: {e}")))
}

/// Picks the certificate for the client's SNI, falling back to the default one.
#[derive(Debug)]
struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    by_name: Vec<(String, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = hello.server_name() {
            let sni = sni.to_ascii_lowercase();
            if let Some((_, key)) = self.by_name.iter().find(|(n, _)| *n == sni) {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }
}

/// An immutable server configuration, shareable across threads. Clone it freely.
#[derive(Clone)]
pub struct ServerConfig {
    pub(crate) inner: Arc<ServerInner>,
}

pub(crate) struct ServerInner {
    pub tls: Arc<rustls::ServerConfig>,
    pub hostname: String,
    pub greeting: Option<String>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub observer: Option<Arc<DialogObserver>>,
    /// TLS configs with a protocol's ALPN, made on first use (same certificates and caches).
    pub tls_with_alpn: AlpnVariants<rustls::ServerConfig, AlpnId>,
}

impl ServerConfig {
    /// The rustls config for a protocol's ALPN: the shared one, or for a protocol with its own
    /// ALPN (PostgreSQL and XMPP direct TLS) a copy that accepts it.
    pub(crate) fn tls_for(&self, alpn: ProtocolAlpn) -> Arc<rustls::ServerConfig> {
        let Some(alpn) = alpn.id() else {
            return self.inner.tls.clone();
        };
        if self.inner.tls.alpn_protocols.iter().any(|p| p == alpn) {
            return self.inner.tls.clone();
        }
        self.inner.tls_with_alpn.get_or_make(alpn, || {
            let mut tls = (*self.inner.tls).clone();
            tls.alpn_protocols.push(alpn.to_vec());
            tls
        })
    }

    /// Starts a builder (a certificate is required).
    pub fn builder() -> ServerConfigBuilder {
        ServerConfigBuilder::default()
    }

    /// The rustls configuration underneath, for inspection.
    pub fn rustls_config(&self) -> &Arc<rustls::ServerConfig> {
        &self.inner.tls
    }

    /// The host name announced in greetings.
    pub fn hostname(&self) -> &str {
        &self.inner.hostname
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("hostname", &self.inner.hostname)
            .field("greeting", &self.inner.greeting)
            .field("timeouts", &self.inner.timeouts)
            .field("alpn", &self.inner.tls.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ServerConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfigBuilder")
            .field("identities", &self.identities.len())
            .field("client_auth", &self.client_auth.as_ref().map(|(m, _)| *m))
            .field("alpn", &self.alpn)
            .field("min_version", &self.min_version)
            .field("tickets", &self.tickets)
            .field("hostname", &self.hostname)
            .field("greeting", &self.greeting)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn a_certificate_is_required() {
        let e = ServerConfig::builder().build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn missing_files_and_bad_pem_are_config_errors() {
        let e = ServerConfig::builder()
            .certificate_files("/nonexistent/c.pem", "/nonexistent/k.pem")
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("/nonexistent/c.pem"));
        let e = ServerConfig::builder()
            .certificate_pem(b"junk".to_vec(), b"junk".to_vec())
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }
}
