//! Numbers of the C ABI: result codes, protocols, policies, flags. Frozen and append-only; tests
//! check each against the Rust enum it mirrors.

/// Success.
pub const STARTTLS_OK: u32 = 0;
/// Not done yet, on a non-blocking connection: poll the fd for reading (`POLLIN`), then call the
/// same function again. Not an error; nothing was lost.
pub const STARTTLS_WANT_READ: u32 = 1;
/// Not done yet, on a non-blocking connection: poll the fd for writing (`POLLOUT`), then call the
/// same function again. Not an error; nothing was lost.
pub const STARTTLS_WANT_WRITE: u32 = 2;
/// A NULL pointer, an unknown enum value, invalid UTF-8, or a call in the wrong state.
pub const STARTTLS_ERR_INVALID_ARGUMENT: u32 = 100;
/// The configuration could not be built (unreadable CA file, bad key, ...).
pub const STARTTLS_ERR_CONFIG: u32 = 101;
/// A bug inside the library was caught (the host process was not harmed).
pub const STARTTLS_ERR_PANIC: u32 = 102;
/// The caller's buffer is too small; the connection's error message says how much is needed.
pub const STARTTLS_ERR_BUFFER_TOO_SMALL: u32 = 103;
/// An operating-system I/O error.
pub const STARTTLS_ERR_IO: u32 = 200;
/// A step did not finish within its timeout (the message names the phase).
pub const STARTTLS_ERR_TIMEOUT: u32 = 201;
/// The peer closed the connection mid-step, or without close_notify.
pub const STARTTLS_ERR_CLOSED: u32 = 202;
/// The host name did not resolve.
pub const STARTTLS_ERR_RESOLVE: u32 = 203;
/// The server did not offer STARTTLS (or it was stripped on the way).
pub const STARTTLS_ERR_NOT_OFFERED: u32 = 300;
/// The server refused STARTTLS (`454`, `NO`, `-ERR`) or the connection.
pub const STARTTLS_ERR_REFUSED: u32 = 301;
/// The server skipped TLS on its own (IMAP `PREAUTH`).
pub const STARTTLS_ERR_DOWNGRADE: u32 = 302;
/// The peer broke the protocol (malformed, unexpected or oversized reply).
pub const STARTTLS_ERR_PROTOCOL: u32 = 303;
/// Plaintext arrived after the go-ahead and before TLS: a possible injection attack.
pub const STARTTLS_ERR_INJECTION: u32 = 304;
/// Credentials were not sent: the connection is not encrypted.
pub const STARTTLS_ERR_NOT_ENCRYPTED: u32 = 305;
/// The server rejected the login (the message carries its reply).
pub const STARTTLS_ERR_AUTH_FAILED: u32 = 306;
/// The TLS handshake or a TLS record failed.
pub const STARTTLS_ERR_TLS: u32 = 400;
/// The server's certificate was rejected.
pub const STARTTLS_ERR_CERTIFICATE: u32 = 401;

/// SMTP with STARTTLS (RFC 3207), port 25.
pub const STARTTLS_PROTO_SMTP: u32 = 1;
/// LMTP with STARTTLS (RFC 2033).
pub const STARTTLS_PROTO_LMTP: u32 = 2;
/// IMAP with STARTTLS (RFC 3501/9051), port 143.
pub const STARTTLS_PROTO_IMAP: u32 = 3;
/// POP3 with STLS (RFC 2595), port 110.
pub const STARTTLS_PROTO_POP3: u32 = 4;
/// LDAP with the StartTLS extended operation (RFC 4511 §4.14), port 389.
pub const STARTTLS_PROTO_LDAP: u32 = 5;
/// FTP with AUTH TLS (RFC 4217), port 21 (the control connection).
pub const STARTTLS_PROTO_FTP: u32 = 6;
/// XMPP client-to-server with STARTTLS (RFC 6120), port 5222; `server_name` is the XMPP domain.
pub const STARTTLS_PROTO_XMPP: u32 = 7;
/// NNTP with STARTTLS (RFC 4642), port 119.
pub const STARTTLS_PROTO_NNTP: u32 = 8;
/// ManageSieve with STARTTLS (RFC 5804), port 4190; the capabilities re-sent after TLS are read.
pub const STARTTLS_PROTO_SIEVE: u32 = 9;
/// PostgreSQL SSLRequest, port 5432: on return the client sends its StartupMessage.
pub const STARTTLS_PROTO_POSTGRES: u32 = 10;
/// HTTP/1.1 Upgrade to TLS (RFC 2817), port 80.
pub const STARTTLS_PROTO_HTTP: u32 = 11;
/// TLS straight away, no dialog (implicit TLS for any protocol; the caller speaks first).
pub const STARTTLS_PROTO_TLS: u32 = 12;
/// SMTP submission with STARTTLS (RFC 6409), port 587.
pub const STARTTLS_PROTO_SUBMISSION: u32 = 13;
/// SMTP submission over implicit TLS (RFC 8314), port 465: the greeting is read inside TLS.
pub const STARTTLS_PROTO_SMTPS: u32 = 14;
/// IMAP over implicit TLS, port 993: the greeting is read inside TLS.
pub const STARTTLS_PROTO_IMAPS: u32 = 15;
/// POP3 over implicit TLS, port 995: the greeting is read inside TLS.
pub const STARTTLS_PROTO_POP3S: u32 = 16;

/// NNTP over implicit TLS, port 563: the greeting is read inside TLS.
pub const STARTTLS_PROTO_NNTPS: u32 = 17;
/// PostgreSQL 17+ direct TLS (ALPN `postgresql`), port 5432.
pub const STARTTLS_PROTO_POSTGRES_DIRECT: u32 = 18;
/// HTTPS: TLS first, the client speaks first, port 443.
pub const STARTTLS_PROTO_HTTPS: u32 = 19;
/// LDAP over implicit TLS (ldaps), port 636.
pub const STARTTLS_PROTO_LDAPS: u32 = 20;
/// XMPP server-to-server with STARTTLS (`jabber:server`), port 5269.
pub const STARTTLS_PROTO_XMPP_SERVER: u32 = 21;
/// XMPP client over direct TLS (XEP-0368, ALPN `xmpp-client`), port 5223.
pub const STARTTLS_PROTO_XMPPS: u32 = 22;
/// FTP over implicit TLS, port 990: the greeting is read inside TLS.
pub const STARTTLS_PROTO_FTPS: u32 = 23;
/// MySQL and MariaDB: the SSL request after the server's greeting, port 3306.
pub const STARTTLS_PROTO_MYSQL: u32 = 24;

/// Fail when TLS cannot be had (the default).
pub const STARTTLS_POLICY_REQUIRE: u32 = 0;
/// Carry on in plaintext when TLS cannot be had; `starttls_conn_is_encrypted` says which.
pub const STARTTLS_POLICY_OPPORTUNISTIC: u32 = 1;

/// `starttls_upgrade_fd` / `starttls_handshake_fd`: the library takes the fd and closes it
/// (when the connection is freed, or at once on failure). Without it the fd is only borrowed.
pub const STARTTLS_FD_TAKE_OWNERSHIP: u32 = 1;

/// Timeout for establishing TCP (per address).
pub const STARTTLS_TIMEOUT_CONNECT: u32 = 1;
/// Timeout for each whole reply of the dialog (an overall deadline per reply).
pub const STARTTLS_TIMEOUT_REPLY: u32 = 2;
/// Timeout for the whole TLS handshake.
pub const STARTTLS_TIMEOUT_HANDSHAKE: u32 = 3;
/// Timeout for each read or write after the upgrade.
pub const STARTTLS_TIMEOUT_IO: u32 = 4;

/// The certificate chain verified for the server name.
pub const STARTTLS_VERIFY_VERIFIED: u32 = 0;
/// Verification was switched off (dangerous); see `starttls_conn_verification_problem`.
pub const STARTTLS_VERIFY_SKIPPED: u32 = 1;
/// The connection is not encrypted (opportunistic policy).
pub const STARTTLS_VERIFY_NOT_ENCRYPTED: u32 = 2;

/// Server side: the client presented no certificate (none was required).
pub const STARTTLS_VERIFY_NO_PEER_CERTIFICATE: u32 = 3;

/// `starttls_conn_dane`: the connection was made without TLSA records.
pub const STARTTLS_DANE_NONE: u32 = 0;
/// `starttls_conn_dane`: a TLSA record authenticated the server (`starttls_conn_dane_matched`).
pub const STARTTLS_DANE_MATCHED: u32 = 1;
/// `starttls_conn_dane`: none of the TLSA records could be used (see `starttls_connect_dane`).
pub const STARTTLS_DANE_NO_USABLE_RECORDS: u32 = 2;

/// Server: clients may present a certificate, verified when they do.
pub const STARTTLS_CLIENT_AUTH_OPTIONAL: u32 = 1;
/// Server: clients must present a certificate that verifies.
pub const STARTTLS_CLIENT_AUTH_REQUIRED: u32 = 2;

/// A dialog line sent by this side (log callback).
pub const STARTTLS_DIRECTION_SENT: u32 = 0;
/// A dialog line received from the peer (log callback).
pub const STARTTLS_DIRECTION_RECEIVED: u32 = 1;

/// TLS 1.2, 0x0303 (`starttls_config_builder_set_min_tls_version`, `starttls_conn_tls_version`).
pub const STARTTLS_TLS_1_2: u16 = 0x0303;
/// TLS 1.3, 0x0304.
pub const STARTTLS_TLS_1_3: u16 = 0x0304;

/// Major version of the header (compare with `starttls_version()` at run time).
pub const STARTTLS_VERSION_MAJOR: u32 = 0;
/// Minor version of the header.
pub const STARTTLS_VERSION_MINOR: u32 = 1;
/// Patch version of the header.
pub const STARTTLS_VERSION_PATCH: u32 = 0;
/// `MAJOR * 10000 + MINOR * 100 + PATCH`, for `#if STARTTLS_VERSION_NUMBER >= ...`.
pub const STARTTLS_VERSION_NUMBER: u32 = 100;
/// The same number under the shorter name (compare with `starttls_version_num()` at run time).
pub const STARTTLS_VERSION_NUM: u32 = STARTTLS_VERSION_NUMBER;

/// `starttls_mta_sts_mode`: the domain publishes no `_mta-sts` record (no MTA-STS).
pub const STARTTLS_MTA_STS_NO_POLICY: u32 = 0;
/// `starttls_mta_sts_mode`: deliver only over verified TLS to a listed MX.
pub const STARTTLS_MTA_STS_ENFORCE: u32 = 1;
/// `starttls_mta_sts_mode`: check as for enforce, report failures, deliver anyway.
pub const STARTTLS_MTA_STS_TESTING: u32 = 2;
/// `starttls_mta_sts_mode`: the domain withdrew its policy (`mode: none`).
pub const STARTTLS_MTA_STS_NONE: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Policy, Protocol};

    #[test]
    fn result_codes_mirror_error_kinds() {
        let pairs = [
            (STARTTLS_ERR_INVALID_ARGUMENT, ErrorKind::InvalidArgument),
            (STARTTLS_ERR_CONFIG, ErrorKind::Config),
            (STARTTLS_ERR_PANIC, ErrorKind::Panic),
            (STARTTLS_ERR_BUFFER_TOO_SMALL, ErrorKind::BufferTooSmall),
            (STARTTLS_ERR_IO, ErrorKind::Io),
            (STARTTLS_ERR_TIMEOUT, ErrorKind::Timeout),
            (STARTTLS_ERR_CLOSED, ErrorKind::Closed),
            (STARTTLS_ERR_RESOLVE, ErrorKind::Resolve),
            (STARTTLS_ERR_NOT_OFFERED, ErrorKind::NotOffered),
            (STARTTLS_ERR_REFUSED, ErrorKind::Refused),
            (STARTTLS_ERR_DOWNGRADE, ErrorKind::Downgrade),
            (STARTTLS_ERR_PROTOCOL, ErrorKind::ProtocolViolation),
            (STARTTLS_ERR_INJECTION, ErrorKind::Injection),
            (STARTTLS_ERR_NOT_ENCRYPTED, ErrorKind::NotEncrypted),
            (STARTTLS_ERR_AUTH_FAILED, ErrorKind::AuthFailed),
            (STARTTLS_ERR_TLS, ErrorKind::Tls),
            (STARTTLS_ERR_CERTIFICATE, ErrorKind::Certificate),
        ];
        assert_eq!(pairs.len(), ErrorKind::ALL.len());
        for (code, kind) in pairs {
            assert_eq!(code, kind.code(), "{kind:?}");
        }
    }

    #[test]
    fn protocol_numbers_mirror_protocols() {
        let pairs = [
            (STARTTLS_PROTO_SMTP, Protocol::Smtp),
            (STARTTLS_PROTO_LMTP, Protocol::Lmtp),
            (STARTTLS_PROTO_IMAP, Protocol::Imap),
            (STARTTLS_PROTO_POP3, Protocol::Pop3),
            (STARTTLS_PROTO_TLS, Protocol::Tls),
            (STARTTLS_PROTO_SUBMISSION, Protocol::Submission),
            (STARTTLS_PROTO_SMTPS, Protocol::Smtps),
            (STARTTLS_PROTO_IMAPS, Protocol::Imaps),
            (STARTTLS_PROTO_POP3S, Protocol::Pop3s),
            (STARTTLS_PROTO_NNTP, Protocol::Nntp),
            (STARTTLS_PROTO_SIEVE, Protocol::Sieve),
            (STARTTLS_PROTO_POSTGRES, Protocol::Postgres),
            (STARTTLS_PROTO_HTTP, Protocol::Http),
            (STARTTLS_PROTO_NNTPS, Protocol::Nntps),
            (STARTTLS_PROTO_POSTGRES_DIRECT, Protocol::PostgresDirect),
            (STARTTLS_PROTO_HTTPS, Protocol::Https),
            (STARTTLS_PROTO_LDAP, Protocol::Ldap),
            (STARTTLS_PROTO_LDAPS, Protocol::Ldaps),
            (STARTTLS_PROTO_XMPP, Protocol::Xmpp),
            (STARTTLS_PROTO_XMPP_SERVER, Protocol::XmppServer),
            (STARTTLS_PROTO_XMPPS, Protocol::Xmpps),
            (STARTTLS_PROTO_FTP, Protocol::Ftp),
            (STARTTLS_PROTO_FTPS, Protocol::Ftps),
            (STARTTLS_PROTO_MYSQL, Protocol::Mysql),
        ];
        assert_eq!(pairs.len(), Protocol::ALL.len());
        for (code, p) in pairs {
            assert_eq!(code, p.code(), "{p:?}");
        }
    }

    #[test]
    fn policy_numbers() {
        assert_eq!(
            super::super::config::policy_from_code(STARTTLS_POLICY_REQUIRE),
            Some(Policy::Require)
        );
        assert_eq!(
            super::super::config::policy_from_code(STARTTLS_POLICY_OPPORTUNISTIC),
            Some(Policy::Opportunistic)
        );
        assert_eq!(super::super::config::policy_from_code(2), None);
    }

    #[test]
    fn version_macros_match_the_package() {
        let v = |s: &str| s.parse::<u32>().unwrap();
        assert_eq!(STARTTLS_VERSION_MAJOR, v(env!("CARGO_PKG_VERSION_MAJOR")));
        assert_eq!(STARTTLS_VERSION_MINOR, v(env!("CARGO_PKG_VERSION_MINOR")));
        assert_eq!(STARTTLS_VERSION_PATCH, v(env!("CARGO_PKG_VERSION_PATCH")));
        assert_eq!(
            STARTTLS_VERSION_NUMBER,
            STARTTLS_VERSION_MAJOR * 10000 + STARTTLS_VERSION_MINOR * 100 + STARTTLS_VERSION_PATCH
        );
    }
}
