//! ALPN per protocol: what a protocol asks for on top of a config's own list, and the copies of
//! a rustls config that differ only in it.

use std::sync::Arc;

/// The ALPN a protocol asks for, on top of (or instead of) the config's own list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProtocolAlpn {
    /// The config's list as it is.
    Config,
    /// This protocol's own ALPN is offered; a peer that ignores it is still accepted (XMPP).
    Offer(&'static [u8]),
    /// This protocol's own ALPN, and the peer must agree to it (PostgreSQL direct TLS, as libpq
    /// insists: otherwise cross-protocol confusion, ALPACA).
    Require(&'static [u8]),
}

impl ProtocolAlpn {
    /// The protocol's own ALPN id, when it has one.
    pub(crate) fn id(self) -> Option<&'static [u8]> {
        match self {
            ProtocolAlpn::Config => None,
            ProtocolAlpn::Offer(id) | ProtocolAlpn::Require(id) => Some(id),
        }
    }

    /// A handshake that agreed on `agreed` is acceptable for this protocol.
    pub(crate) fn accepts(self, agreed: Option<&[u8]>) -> bool {
        match self {
            ProtocolAlpn::Require(id) => agreed == Some(id),
            ProtocolAlpn::Config | ProtocolAlpn::Offer(_) => true,
        }
    }
}

/// Copies of a rustls config that differ only in ALPN (for the protocols that need their own),
/// made once per config and shared by its connections, so they keep one session cache.
pub(crate) struct AlpnVariants<T>(std::sync::Mutex<Vec<(&'static [u8], Arc<T>)>>);

impl<T> Default for AlpnVariants<T> {
    fn default() -> Self {
        AlpnVariants(std::sync::Mutex::new(Vec::new()))
    }
}

impl<T> AlpnVariants<T> {
    /// The variant for `alpn`, made with `make` the first time.
    pub(crate) fn get_or_make(&self, alpn: &'static [u8], make: impl FnOnce() -> T) -> Arc<T> {
        // A poisoned lock only means another thread panicked mid-push: the list is still valid.
        let mut variants = match self.0.lock() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((_, tls)) = variants.iter().find(|(a, _)| *a == alpn) {
            return tls.clone();
        }
        let tls = Arc::new(make());
        variants.push((alpn, tls.clone()));
        tls
    }
}
