//! The choice of a login mechanism among those a server offers, for the kind of credentials
//! given: above both the SASL toolkit and SCRAM, which know nothing of each other's choice.

use crate::protocol::sasl::{Bearer, External, Login, Mechanism, Plain, Proof};
use crate::protocol::scram;

/// The strongest mechanism among `offered` (SASL names, any case) that this library has for
/// these credentials. A password: SCRAM-SHA-256-PLUS when the connection has a channel binding,
/// then SCRAM-SHA-256, then PLAIN. A bearer token: OAUTHBEARER, then XOAUTH2. A client
/// certificate: EXTERNAL. Only the one named by `only_mechanism`, when set. `None`: the
/// protocol's own login, if it has one and the credentials allow it, is next.
pub(crate) fn choose<'a>(offered: &[String], login: &Login<'a>) -> Option<Box<dyn Mechanism + 'a>> {
    let creds = login.creds;
    let has = |m: &str| {
        creds.only_mechanism_name().is_none_or(|only| only == m)
            && offered.iter().any(|o| o.eq_ignore_ascii_case(m))
    };
    match creds.proof() {
        Proof::BearerToken => {
            if has("OAUTHBEARER") {
                return Some(Box::new(Bearer::oauthbearer(creds)));
            }
            if has("XOAUTH2") {
                return Some(Box::new(Bearer::xoauth2(creds)));
            }
            return None;
        }
        Proof::ClientCertificate => {
            return has("EXTERNAL").then(|| Box::new(External(creds)) as Box<dyn Mechanism>);
        }
        Proof::Password => {}
    }
    let binding = login.bindings.preferred();
    if has("SCRAM-SHA-256-PLUS") {
        if let Some((name, data)) = binding {
            return Some(Box::new(scram::Scram::new(
                creds,
                scram::Binding::Bound { name, data },
            )));
        }
    }
    if has("SCRAM-SHA-256") {
        // `y`: this client could bind, but the server did not offer it (RFC 5802 §6); a server
        // that does support binding then knows the offer was stripped.
        let cb = if binding.is_some() {
            scram::Binding::ServerLacksIt
        } else {
            scram::Binding::Unsupported
        };
        return Some(Box::new(scram::Scram::new(creds, cb)));
    }
    if has("PLAIN") {
        return Some(Box::new(Plain(creds)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sasl::{ChannelBindings, Credentials};

    fn login<'a>(creds: &'a Credentials, bindings: &'a ChannelBindings) -> Login<'a> {
        Login { creds, bindings }
    }

    fn offered(list: &str) -> Vec<String> {
        list.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn each_kind_of_credentials_gets_its_own_mechanisms_only() {
        let none = ChannelBindings::default();
        let chosen = |c: &Credentials, list: &str| {
            choose(&offered(list), &login(c, &none)).map(|m| m.name())
        };
        let password = Credentials::new("alice", "pw");
        assert_eq!(
            chosen(&password, "PLAIN SCRAM-SHA-256 XOAUTH2"),
            Some("SCRAM-SHA-256")
        );
        assert_eq!(chosen(&password, "OAUTHBEARER EXTERNAL"), None);
        let token = Credentials::bearer_token("alice", "ya29.token");
        assert_eq!(
            chosen(&token, "PLAIN XOAUTH2 OAUTHBEARER"),
            Some("OAUTHBEARER")
        );
        assert_eq!(chosen(&token, "PLAIN LOGIN XOAUTH2"), Some("XOAUTH2"));
        assert_eq!(chosen(&token, "PLAIN LOGIN SCRAM-SHA-256"), None);
        assert!(
            !token.allows_protocol_login(),
            "a token is never sent as a password"
        );
        let cert = Credentials::client_certificate();
        assert_eq!(chosen(&cert, "PLAIN EXTERNAL"), Some("EXTERNAL"));
        assert_eq!(chosen(&cert, "PLAIN"), None);
        let forced = Credentials::new("alice", "pw").only_mechanism("plain");
        assert_eq!(chosen(&forced, "PLAIN SCRAM-SHA-256"), Some("PLAIN"));
        assert_eq!(chosen(&forced, "SCRAM-SHA-256"), None);
        assert!(!forced.allows_protocol_login());
    }
}
