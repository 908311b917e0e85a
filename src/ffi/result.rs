//! C ABI: the result of a check.

use super::*;
use crate::context::Outcome;
use crate::core::token::Verified;
use crate::Reason;
use std::sync::Arc;

/// The decision on one request and what the token said. Opaque; owned by
/// the caller, freed with `wic_tna_result_free`. Read-only, so it may be
/// read from several threads at once.
pub struct wic_tna_result {
    accepted: bool,
    sip_status: u16,
    reason: &'static [u8],
    /// Owned NUL-terminated buffers; empty (no allocation) for "".
    www_authenticate: Vec<u8>,
    tna_header: Vec<u8>,
    impi: Vec<u8>,
    issuer: Vec<u8>,
    error_description: &'static [u8],
    /// What the token said, when accepted: `sub`, `scope` and the IMPUs are
    /// handed out from it, NUL-terminated as it keeps them (no copies).
    verified: Option<Arc<Verified>>,
    expires_at: i64,
    seconds_left: i64,
    granted_expires: i64,
}

/// `s` NUL-terminated; `None` (and "") as an empty buffer, which
/// [`wic_tna_str::of`] shows as "" without an allocation.
fn z(s: Option<&str>) -> Vec<u8> {
    z_owned(s.map(|s| {
        let mut o = String::with_capacity(s.len() + 1);
        o.push_str(s);
        o
    }))
}

/// [`z`] for an owned string, NUL-terminated in place (its buffer reused).
fn z_owned(s: Option<String>) -> Vec<u8> {
    match s {
        Some(s) if !s.is_empty() => {
            let mut v = s.into_bytes();
            v.push(0);
            v
        }
        _ => Vec::new(),
    }
}

/// A reason's name and description, NUL-terminated: a fixed set, built
/// once (no lock or lookup per request).
fn reason_z(r: Reason) -> (&'static [u8], &'static [u8]) {
    use once_cell::sync::Lazy;
    // (Names and descriptions are never empty: `z` gives them their NUL.)
    fn leak(s: &str) -> &'static [u8] {
        Box::leak(z(Some(s)).into_boxed_slice())
    }
    static TABLE: Lazy<Vec<(&'static [u8], &'static [u8])>> = Lazy::new(|| {
        Reason::ALL
            .iter()
            .map(|r| (leak(r.name()), leak(r.description())))
            .collect()
    });
    match TABLE.get(r.index()) {
        Some(&t) => t,
        // TABLE has an entry for every index: not reached.
        None => (b"internal_error\0", b"\0"),
    }
}

impl wic_tna_result {
    pub(crate) fn from_outcome(o: Outcome) -> wic_tna_result {
        let accepted = o.accepted();
        let names = reason_z(o.reason);
        // Explicit branches (not Option combinators): valgrind flagged the
        // combinator form, whose optimised code reads the inactive variant.
        let expires_at = match &o.verified {
            Some(v) => v.exp,
            None => 0,
        };
        // Accepted: the IMPI comes from `verified`, without a copy.
        let impi = if o.verified.is_some() {
            Vec::new()
        } else {
            z(o.impi())
        };
        let issuer = z(o.iss());
        wic_tna_result {
            accepted,
            sip_status: o.sip_status,
            reason: names.0,
            www_authenticate: z_owned(o.www_authenticate),
            tna_header: z_owned(o.tna_header),
            impi,
            issuer,
            error_description: if accepted { b"\0" } else { names.1 },
            verified: o.verified,
            expires_at,
            seconds_left: o.seconds_left,
            granted_expires: o.granted_expires,
        }
    }
}

unsafe fn get<'a>(r: *const wic_tna_result) -> Option<&'a wic_tna_result> {
    // SAFETY: NULL or a live result, per the caller's contract.
    unsafe { r.as_ref() }
}

/// Was the request accepted? NULL `r` gives false. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_accepted(r: *const wic_tna_result) -> bool {
    // SAFETY: caller's contract.
    guard_or(false, || {
        unsafe { get(r) }.map(|r| r.accepted).unwrap_or(false)
    })
}

/// The SIP status to answer with: 200 when accepted, else 400, 401, 403
/// or 500 (doc/protocol.md, "Failure responses"; the S-CSCF check gives 403).
///
/// NULL `r` gives 0. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_sip_status(r: *const wic_tna_result) -> u16 {
    // SAFETY: caller's contract.
    guard_or(0, || unsafe { get(r) }.map(|r| r.sip_status).unwrap_or(0))
}
/// The token's `exp` (Unix seconds), 0 when rejected.
///
/// NULL `r` gives 0. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_expires_at(r: *const wic_tna_result) -> i64 {
    // SAFETY: caller's contract.
    guard_or(0, || unsafe { get(r) }.map(|r| r.expires_at).unwrap_or(0))
}
/// Seconds the token has left, 0 when rejected.
///
/// NULL `r` gives 0. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_seconds_left(r: *const wic_tna_result) -> i64 {
    // SAFETY: caller's contract.
    guard_or(0, || unsafe { get(r) }.map(|r| r.seconds_left).unwrap_or(0))
}
/// The registration expiry to grant: the least of the requested expiry,
/// the token's time left and the configured maximum; 0 when rejected.
///
/// NULL `r` gives 0. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_granted_expires(r: *const wic_tna_result) -> i64 {
    // SAFETY: caller's contract.
    guard_or(0, || {
        unsafe { get(r) }.map(|r| r.granted_expires).unwrap_or(0)
    })
}
/// The stable reason name: `ok`, or e.g. `expired`, `bad_signature`,
/// `issuer_barred`, `impi_outside_pool`.
///
/// The view is valid until the result is freed. NULL `r` gives an empty
/// string. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_reason(r: *const wic_tna_result) -> wic_tna_str {
    // SAFETY: caller's contract.
    guard_or(wic_tna_str::empty(), || {
        unsafe { get(r) }
            .map(|r| wic_tna_str::of(r.reason))
            .unwrap_or_else(wic_tna_str::empty)
    })
}
/// The `WWW-Authenticate` header value (starting `Bearer `) to send with
/// the failure response, or empty when none is sent.
///
/// The view is valid until the result is freed. NULL `r` gives an empty
/// string. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_www_authenticate(r: *const wic_tna_result) -> wic_tna_str {
    // SAFETY: caller's contract.
    guard_or(wic_tna_str::empty(), || {
        unsafe { get(r) }
            .map(|r| wic_tna_str::of(&r.www_authenticate))
            .unwrap_or_else(wic_tna_str::empty)
    })
}
/// The TNA `Authorization` header value (starting `Digest `) to forward
/// to the S-CSCF; empty when rejected.
///
/// The view is valid until the result is freed. NULL `r` gives an empty
/// string. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_tna_header(r: *const wic_tna_result) -> wic_tna_str {
    // SAFETY: caller's contract.
    guard_or(wic_tna_str::empty(), || {
        unsafe { get(r) }
            .map(|r| wic_tna_str::of(&r.tna_header))
            .unwrap_or_else(wic_tna_str::empty)
    })
}
/// The IMPI (the TNA username on the S-CSCF side); empty when rejected.
///
/// The view is valid until the result is freed. NULL `r` gives an empty
/// string. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_impi(r: *const wic_tna_result) -> wic_tna_str {
    // SAFETY: caller's contract.
    guard_or(wic_tna_str::empty(), || match unsafe { get(r) } {
        // Accepted: from what the token said; else the copy (S-CSCF side).
        Some(r) => wic_tna_str::of(r.verified.as_deref().map_or(&r.impi[..], Verified::impi_z)),
        None => wic_tna_str::empty(),
    })
}
/// The issuer (authorization entity); may be set on failures too.
///
/// The view is valid until the result is freed. NULL `r` gives an empty
/// string. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_issuer(r: *const wic_tna_result) -> wic_tna_str {
    // SAFETY: caller's contract.
    guard_or(wic_tna_str::empty(), || {
        unsafe { get(r) }
            .map(|r| wic_tna_str::of(&r.issuer))
            .unwrap_or_else(wic_tna_str::empty)
    })
}
/// The token's `sub` (web identity), empty when absent.
///
/// The view is valid until the result is freed. NULL `r` gives an empty
/// string. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_subject(r: *const wic_tna_result) -> wic_tna_str {
    // SAFETY: caller's contract.
    guard_or(wic_tna_str::empty(), || {
        unsafe { get(r) }
            .and_then(|r| r.verified.as_deref())
            .map(|v| wic_tna_str::of(v.sub_z()))
            .unwrap_or_else(wic_tna_str::empty)
    })
}
/// The token's `scope`, empty when rejected.
///
/// The view is valid until the result is freed. NULL `r` gives an empty
/// string. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_scope(r: *const wic_tna_result) -> wic_tna_str {
    // SAFETY: caller's contract.
    guard_or(wic_tna_str::empty(), || {
        unsafe { get(r) }
            .and_then(|r| r.verified.as_deref())
            .map(|v| wic_tna_str::of(v.scope_z()))
            .unwrap_or_else(wic_tna_str::empty)
    })
}
/// A fixed description of the failure (never token content); empty when
/// accepted.
///
/// The view is valid until the result is freed. NULL `r` gives an empty
/// string. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_error_description(r: *const wic_tna_result) -> wic_tna_str {
    // SAFETY: caller's contract.
    guard_or(wic_tna_str::empty(), || {
        unsafe { get(r) }
            .map(|r| wic_tna_str::of(r.error_description))
            .unwrap_or_else(wic_tna_str::empty)
    })
}

/// Number of IMPUs (0 when rejected or NULL). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_impu_count(r: *const wic_tna_result) -> usize {
    // SAFETY: caller's contract.
    guard_or(0, || {
        unsafe { get(r) }
            .and_then(|r| r.verified.as_deref())
            .map_or(0, Verified::impu_count)
    })
}

/// IMPU number `index` (from 0), as the token gives it; empty when `index`
/// is out of range or `r` is NULL. Valid until the result is freed.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_impu(
    r: *const wic_tna_result,
    index: usize,
) -> wic_tna_str {
    guard_or(wic_tna_str::empty(), || {
        // SAFETY: caller's contract.
        match unsafe { get(r) }
            .and_then(|r| r.verified.as_deref())
            .and_then(|v| v.impu_z(index))
        {
            Some(s) => wic_tna_str::of(s),
            None => wic_tna_str::empty(),
        }
    })
}

/// Free a result. NULL does nothing. Not to be called twice.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_result_free(r: *mut wic_tna_result) {
    guard_or((), || {
        if !r.is_null() {
            // SAFETY: from Box::into_raw in this crate.
            drop(unsafe { Box::from_raw(r) });
        }
    })
}

/// The number of reasons (outcomes) the library counts: `ok` and every
/// reason of a refusal, at index 0 to `wic_tna_reason_count() - 1`, in a
/// fixed order that later versions only append to (for a proxy's own
/// statistics, with `wic_tna_reason_name` and `wic_tna_ctx_reason_total`).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn wic_tna_reason_count() -> usize {
    Reason::ALL.len()
}

/// The stable name of reason number `index` (`ok`, `expired`,
/// `bad_signature`, ...: the names of `wic_tna_result_reason`), a static
/// NUL-terminated view valid for the life of the process. An `index` of
/// `wic_tna_reason_count()` or more gives an empty string. Thread-safe.
#[no_mangle]
pub extern "C" fn wic_tna_reason_name(index: usize) -> wic_tna_str {
    guard_or(wic_tna_str::empty(), || match Reason::ALL.get(index) {
        Some(r) => wic_tna_str::of(reason_z(*r).0),
        None => wic_tna_str::empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_strings_are_each_reasons_own() {
        for r in Reason::ALL {
            let (name, desc) = reason_z(r);
            assert_eq!(name, [r.name().as_bytes(), b"\0"].concat(), "{r:?}");
            assert_eq!(desc, [r.description().as_bytes(), b"\0"].concat(), "{r:?}");
        }
    }
}
