//! The DNS lookups an MTA needs before `starttls_connect_dane`: a destination's TLSA records
//! (only when DNSSEC vouches for its addresses and records, RFC 7672 §2.2) and a domain's
//! MTA-STS policy (RFC 8461). The functions exist in every build; without the `dns` feature they
//! fail with `STARTTLS_ERR_CONFIG`.

use std::ffi::c_char;
use std::time::Duration;

use super::codes::*;
use super::config::starttls_config;
use super::dane::starttls_tlsa_set;
use super::{boundary, boundary_value, free_handle, null, str_in, str_out};
use crate::Error;

/// A domain's MTA-STS record and policy, from `starttls_mta_sts_lookup`; read with the
/// `starttls_mta_sts_*` getters, released with `starttls_mta_sts_free`. Immutable.
pub struct starttls_mta_sts {
    id: String,
    #[cfg(feature = "dns")]
    policy: Option<crate::MtaStsPolicy>,
}

/// The resolver a call names: `ADDR[:PORT]`, trusted to validate (the caller chose it), or
/// NULL for resolv.conf's (trusted only on loopback or with `options trust-ad`).
///
/// # Safety
/// `resolver` is NULL or NUL-terminated.
#[cfg(feature = "dns")]
unsafe fn resolver_in(resolver: *const c_char) -> Result<crate::Resolver, Error> {
    if resolver.is_null() {
        return crate::Resolver::system();
    }
    // SAFETY: forwarded caller contract.
    let text = unsafe { str_in(resolver, "resolver") }?;
    Ok(crate::Resolver::at(crate::Resolver::parse_server(text)?).trust_ad(true))
}

#[cfg(not(feature = "dns"))]
fn no_dns() -> Error {
    Error::Config("this build has no DNS lookups (the `dns` feature is off)".into())
}

/// Looks up `host`'s addresses and, when they are DNSSEC-validated, its TLSA records for `port`
/// through `resolver` (see above), within `timeout_ms` per lookup. On success `*out_set` is a
/// new `starttls_tlsa_set` (free it) holding the records when DANE applies (validated
/// addresses and validated, non-empty records), empty otherwise, and `*out_applies` says which.
/// A failed lookup (SERVFAIL: bogus) is `STARTTLS_ERR_RESOLVE`: fail closed, send nothing.
///
/// # Safety
/// `resolver` is NULL or NUL-terminated; `host` is NUL-terminated; `out_set` and `out_applies`
/// are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_lookup_tlsa(
    resolver: *const c_char,
    host: *const c_char,
    port: u16,
    timeout_ms: u32,
    out_set: *mut *mut starttls_tlsa_set,
    out_applies: *mut bool,
) -> u32 {
    boundary(|| {
        if out_set.is_null() || out_applies.is_null() {
            return Err(null("out_set/out_applies").into());
        }
        // SAFETY: forwarded caller contract.
        let host = unsafe { str_in(host, "host") }?;
        let timeout = Duration::from_millis(u64::from(timeout_ms.max(1)));
        #[cfg(feature = "dns")]
        {
            // SAFETY: forwarded caller contract.
            let r = unsafe { resolver_in(resolver) }?;
            let found = crate::lookup_dane(&r, host, port, timeout)?;
            let applies = found.applies();
            let records = if applies { found.tlsa } else { Vec::new() };
            let set = Box::into_raw(Box::new(starttls_tlsa_set::from_records(records)));
            // SAFETY: both checked non-NULL, writable by contract; written only on success.
            unsafe {
                *out_set = set;
                *out_applies = applies;
            }
            Ok(())
        }
        #[cfg(not(feature = "dns"))]
        {
            let _ = (resolver, host, port, timeout);
            Err(no_dns().into())
        }
    })
}

/// Looks up `_mta-sts.DOMAIN` and, when present, fetches the policy from
/// `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` with `config` (its trust decides the
/// policy host's certificate; webpki roots by default), no redirects, at most 64 KB, parsed
/// strictly, everything within `timeout_ms`. On success `*out` is a new handle (free it);
/// `starttls_mta_sts_mode` is `STARTTLS_MTA_STS_NO_POLICY` for a domain without a record. A
/// record whose policy cannot be fetched or parsed is an error (the domain then has no usable
/// policy): `STARTTLS_ERR_PROTOCOL` for a malformed policy, `STARTTLS_ERR_REFUSED` for a
/// redirect or a status other than 200, `STARTTLS_ERR_CERTIFICATE`, `_RESOLVE`, ...
///
/// # Safety
/// `config` is a live config; `resolver` is NULL or NUL-terminated; `domain` is
/// NUL-terminated; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_mta_sts_lookup(
    config: *const starttls_config,
    resolver: *const c_char,
    domain: *const c_char,
    timeout_ms: u32,
    out: *mut *mut starttls_mta_sts,
) -> u32 {
    boundary(|| {
        if out.is_null() {
            return Err(null("out").into());
        }
        // SAFETY: NULL or live, immutable and shareable (documented).
        let config = unsafe { config.as_ref() }.ok_or_else(|| null("config"))?;
        // SAFETY: forwarded caller contract.
        let domain = unsafe { str_in(domain, "domain") }?;
        let timeout = Duration::from_millis(u64::from(timeout_ms.max(1)));
        #[cfg(feature = "dns")]
        {
            // SAFETY: forwarded caller contract.
            let r = unsafe { resolver_in(resolver) }?;
            let found = crate::mta_sts_policy(&r, &config.inner, domain, timeout)?;
            let handle = starttls_mta_sts {
                id: found.record.map(|r| r.id).unwrap_or_default(),
                policy: found.policy,
            };
            // SAFETY: checked non-NULL, writable by contract; written only on success.
            unsafe { *out = Box::into_raw(Box::new(handle)) };
            Ok(())
        }
        #[cfg(not(feature = "dns"))]
        {
            let _ = (config, resolver, domain, timeout);
            Err(no_dns().into())
        }
    })
}

/// The policy's mode: `STARTTLS_MTA_STS_NO_POLICY` (no record; also for NULL),
/// `_ENFORCE`, `_TESTING` or `_NONE`.
///
/// # Safety
/// `p` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_mta_sts_mode(p: *const starttls_mta_sts) -> u32 {
    boundary_value(STARTTLS_MTA_STS_NO_POLICY, || {
        // SAFETY: forwarded caller contract.
        let Some(_p) = (unsafe { p.as_ref() }) else {
            return STARTTLS_MTA_STS_NO_POLICY;
        };
        #[cfg(feature = "dns")]
        {
            match _p.policy.as_ref().map(|p| p.mode) {
                Some(crate::MtaStsMode::Enforce) => STARTTLS_MTA_STS_ENFORCE,
                Some(crate::MtaStsMode::Testing) => STARTTLS_MTA_STS_TESTING,
                Some(crate::MtaStsMode::None) => STARTTLS_MTA_STS_NONE,
                None => STARTTLS_MTA_STS_NO_POLICY,
            }
        }
        #[cfg(not(feature = "dns"))]
        STARTTLS_MTA_STS_NO_POLICY
    })
}

/// How long a sender may cache the policy, in seconds (0 without one).
///
/// # Safety
/// `p` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_mta_sts_max_age(p: *const starttls_mta_sts) -> u32 {
    boundary_value(0, || {
        // SAFETY: forwarded caller contract.
        let Some(_p) = (unsafe { p.as_ref() }) else {
            return 0;
        };
        #[cfg(feature = "dns")]
        {
            _p.policy.as_ref().map_or(0, |p| p.max_age)
        }
        #[cfg(not(feature = "dns"))]
        0
    })
}

/// The record's policy id, snprintf-style (empty without a record): a new id means a new
/// policy to fetch.
///
/// # Safety
/// `p` is NULL or a live handle; `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_mta_sts_id(
    p: *const starttls_mta_sts,
    buf: *mut c_char,
    len: usize,
) -> usize {
    boundary_value(0, || {
        // SAFETY: forwarded caller contract.
        let id = unsafe { p.as_ref() }.map_or("", |p| p.id.as_str());
        // SAFETY: forwarded caller contract.
        unsafe { str_out(id, buf, len) }
    })
}

/// Whether the MX host name `host` matches one of the policy's `mx` patterns (RFC 8461 §4.1:
/// equal ignoring case and a final dot, or `*.` standing for one label). False without a policy.
///
/// # Safety
/// `p` is NULL or a live handle; `host` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_mta_sts_allows(
    p: *const starttls_mta_sts,
    host: *const c_char,
) -> bool {
    boundary_value(false, || {
        // SAFETY: forwarded caller contract.
        let (Some(_p), Ok(_host)) = (unsafe { p.as_ref() }, unsafe { str_in(host, "host") }) else {
            return false;
        };
        #[cfg(feature = "dns")]
        {
            _p.policy.as_ref().is_some_and(|p| p.allows(_host))
        }
        #[cfg(not(feature = "dns"))]
        false
    })
}

/// Frees a handle. NULL is fine.
///
/// # Safety
/// `p` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn starttls_mta_sts_free(p: *mut starttls_mta_sts) {
    // SAFETY: NULL or a pointer from starttls_mta_sts_lookup, freed once.
    unsafe { free_handle(p) }
}
