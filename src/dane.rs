//! DANE for a destination found in DNS (RFC 7672 §2.2): the host's addresses and TLSA records
//! through a validating resolver ([`Resolver`]), then the upgrade authenticated by those
//! records. Insecure answers mean no DANE (the config's verification decides); a failed lookup
//! (SERVFAIL, which a validating resolver returns for a bogus signature, or no answer) fails
//! closed: nothing is sent to the server.

use std::net::IpAddr;

use crate::config::ClientConfig;
use crate::connect::{ConnectOptions, connect_with};
use crate::dns::Resolver;
use crate::error::{Error, Phase, Result};
use crate::protocol::Protocol;
use crate::stream::Connection;
use crate::verify::TlsaRecord;

/// What the DNS lookups for DANE found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaneLookup {
    /// The host's addresses, as the resolver gave them.
    pub addresses: Vec<IpAddr>,
    /// The resolver validated the address records. DANE applies only then (RFC 7672 §2.2.2):
    /// otherwise the TLSA records are not even asked for.
    pub addresses_secure: bool,
    /// The TLSA records of `_PORT._tcp.HOST`, kept only when their answer was validated.
    pub tlsa: Vec<TlsaRecord>,
    /// The TLSA answer (records, or their proven absence) was validated.
    pub tlsa_secure: bool,
}

impl DaneLookup {
    /// Whether DANE authenticates this destination: validated addresses and validated,
    /// non-empty TLSA records.
    pub fn applies(&self) -> bool {
        self.addresses_secure && self.tlsa_secure && !self.tlsa.is_empty()
    }

    /// Why DANE does not apply, in words; `None` when it does.
    pub fn why_not(&self) -> Option<&'static str> {
        if !self.addresses_secure {
            Some("the host's address records are not DNSSEC-validated")
        } else if !self.tlsa_secure {
            Some("the TLSA answer is not DNSSEC-validated")
        } else if self.tlsa.is_empty() {
            Some("the host has no TLSA records (validated denial)")
        } else {
            None
        }
    }
}

/// Looks up `host`'s addresses and, when they are validated, its TLSA records for `port`,
/// within `timeout` for each lookup.
pub fn lookup_dane(
    resolver: &Resolver,
    host: &str,
    port: u16,
    timeout: std::time::Duration,
) -> Result<DaneLookup> {
    if crate::handshake::unbracket(host).parse::<IpAddr>().is_ok() {
        return Err(Error::InvalidArgument(format!(
            "DANE needs a host name, not the address {host}"
        )));
    }
    let ip = resolver.lookup_ip(host, timeout)?;
    if ip.records.is_empty() {
        return Err(Error::Resolve {
            host: host.to_owned(),
            source: Some(std::io::Error::other("no address records")),
        });
    }
    let mut found = DaneLookup {
        addresses: ip.records,
        addresses_secure: ip.secure,
        tlsa: Vec::new(),
        tlsa_secure: false,
    };
    if found.addresses_secure {
        let tlsa = resolver.lookup_tlsa(host, port, timeout)?;
        found.tlsa_secure = tlsa.secure;
        if tlsa.secure {
            found.tlsa = tlsa.records;
        }
    }
    Ok(found)
}

/// Connects to `host:port` as DANE says (RFC 7672 §2.2), with what [`lookup_dane`] found:
/// when DANE applies, the server is authenticated by those TLSA records (on top of any in
/// `options`), otherwise as `config` and `options` say. The looked-up addresses are tried in
/// turn while connecting fails; the certificate is verified for `options`' server name, or
/// `host`.
///
/// ```no_run
/// let config = starttls::ClientConfig::builder().build()?;
/// let resolver = starttls::Resolver::system()?;
/// let found = starttls::lookup_dane(&resolver, "mx.example.org", 25, std::time::Duration::from_secs(5))?;
/// let options = starttls::ConnectOptions::new();
/// let conn = starttls::connect_dane(&config, starttls::Protocol::Smtp, "mx.example.org", 25, &found, &options)?;
/// println!("{:?} ({:?})", conn.dane(), found.why_not());
/// # Ok::<(), starttls::Error>(())
/// ```
pub fn connect_dane(
    config: &ClientConfig,
    protocol: Protocol,
    host: &str,
    port: u16,
    found: &DaneLookup,
    options: &ConnectOptions,
) -> Result<Connection> {
    let mut options = options.clone();
    if options.server_name.is_none() {
        options.server_name = Some(host.to_owned());
    }
    if found.applies() {
        options.tlsa.extend(found.tlsa.iter().cloned());
    }
    let mut last = None;
    for address in &found.addresses {
        match connect_with(config, protocol, &address.to_string(), port, &options) {
            Ok(conn) => return Ok(conn),
            // Another address may answer; any later failure is this server's.
            Err(e) if e.phase() == Some(Phase::Connect) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(Error::Resolve {
        host: host.to_owned(),
        source: None,
    }))
}
