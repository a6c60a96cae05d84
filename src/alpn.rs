//! What a protocol asks of TLS beyond the config: its own ALPN, its first key share, and the
//! copies of a rustls config that differ only in those.

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

/// The key share a client's first flight carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyShare {
    /// rustls' own choice (an X25519 share first; X25519MLKEM768 is offered last, without a
    /// share, since the library builds rustls without `prefer-post-quantum`), or the group a
    /// server chose before (rustls remembers it per server name in the session store).
    Default,
    /// P-256 first, for servers that accept only it (PostgreSQL before 18, `ssl_ecdh_curve`):
    /// otherwise the first connection pays a HelloRetryRequest, one round trip more.
    P256First,
}

/// Copies of a rustls config that differ only in what a protocol asks (ALPN, key share), made
/// once per config and shared by its connections, so they keep one session cache.
/// `K` is what tells the copies apart: the ALPN id, or the ALPN id and the key share.
pub(crate) struct AlpnVariants<T, K>(std::sync::Mutex<Vec<(K, Arc<T>)>>);

impl<T, K> Default for AlpnVariants<T, K> {
    fn default() -> Self {
        AlpnVariants(std::sync::Mutex::new(Vec::new()))
    }
}

impl<T, K: PartialEq> AlpnVariants<T, K> {
    /// The variant for `alpn`, made with `make` the first time.
    pub(crate) fn get_or_make(&self, alpn: K, make: impl FnOnce() -> T) -> Arc<T> {
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
