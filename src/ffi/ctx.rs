//! C ABI: the verification context.

use super::*;
use crate::context::{now, Context, ContextError};
use std::os::unix::ffi::OsStrExt;

/// A verification context: one configuration (reloadable), its keys, and
/// a reference to the shared state. Opaque. Safe to use from several
/// threads at once. Creating or using it starts no thread, except the host
/// name lookup threads (at most 4 per process), started by the first
/// request that needs a name resolved (a host name in a remote trust URL
/// or in `redis_url`).
pub struct wic_tna_ctx {
    pub(crate) inner: Context,
}

unsafe fn ctx_ref<'a>(ctx: *const wic_tna_ctx) -> Result<&'a Context, wic_tna_status> {
    if ctx.is_null() {
        return Err(fail(WIC_TNA_STATUS_NULL_ARGUMENT, "ctx is NULL"));
    }
    // SAFETY: non-NULL, and the caller passes a live handle.
    Ok(unsafe { &(*ctx).inner })
}

/// Load the configuration file at `config_path` (`config_path_len` bytes)
/// with its keys, and make a context. `shared` may be NULL: then the
/// configuration's `state_file` is used when it names one, else a private
/// region (barring and reloads then stay within this context). In a forking
/// proxy, call this in each child (Kamailio: `child_init`) with a shared
/// region made before the fork. On success `*out` owns the context: free it
/// with `wic_tna_ctx_free`. Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`,
/// `CONFIG_ERROR` (the message from `wic_tna_last_error` names the file,
/// line and field), `IO_ERROR` (state file). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_ctx_new(
    config_path: *const c_char,
    config_path_len: usize,
    shared: *const wic_tna_shared,
    out: *mut *mut wic_tna_ctx,
) -> wic_tna_status {
    guard("wic_tna_ctx_new", || {
        // SAFETY: caller's contract.
        let p = try_ffi!(unsafe { bytes("config_path", config_path, config_path_len) });
        if out.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "out is NULL");
        }
        if p.is_empty() || p.contains(&0) {
            return fail(
                WIC_TNA_STATUS_INVALID_ARGUMENT,
                "config_path is empty or has a NUL byte",
            );
        }
        // SAFETY: NULL or a live handle.
        let sh = if shared.is_null() {
            None
        } else {
            Some(unsafe { (*shared).inner.clone() })
        };
        match Context::new(std::path::Path::new(std::ffi::OsStr::from_bytes(p)), sh) {
            Ok(c) => {
                // SAFETY: out checked non-NULL.
                unsafe { *out = Box::into_raw(Box::new(wic_tna_ctx { inner: c })) };
                WIC_TNA_STATUS_OK
            }
            Err(ContextError::Config(e)) => fail(WIC_TNA_STATUS_CONFIG_ERROR, e.to_string()),
            Err(ContextError::Io(e)) => fail(WIC_TNA_STATUS_IO_ERROR, e),
        }
    })
}

/// Free a context. NULL does nothing. Results taken from it stay valid.
/// Not to be called while another thread uses the context.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_ctx_free(ctx: *mut wic_tna_ctx) {
    guard_or((), || {
        if !ctx.is_null() {
            // SAFETY: from Box::into_raw in wic_tna_ctx_new.
            drop(unsafe { Box::from_raw(ctx) });
        }
    })
}

/// Re-read the configuration file and keys. On success the new
/// configuration is in force at once here, and every context sharing the
/// state re-reads it on its next call. On `CONFIG_ERROR` the old
/// configuration stays in force everywhere, and `wic_tna_last_error` says
/// what is wrong (file, line, field). `ctx` must not be NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_ctx_reload(ctx: *const wic_tna_ctx) -> wic_tna_status {
    guard("wic_tna_ctx_reload", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        match c.reload() {
            Ok(()) => WIC_TNA_STATUS_OK,
            Err(e) => fail(WIC_TNA_STATUS_CONFIG_ERROR, e.to_string()),
        }
    })
}

/// Background work for exactly one process, never a SIP worker: fetch what
/// is due (remote key sets, the fleet's shared state) and publish it to
/// every context sharing the state. May block on the network up to the
/// configured timeouts; returns at once when nothing is due. Call it every
/// 250 ms or so (Kamailio: the module's refresher process; the Python
/// glue: one rtimer process). Failures are logged and leave the last good state in force.
/// `ctx` is borrowed for the call and must not be NULL. Errors:
/// `NULL_ARGUMENT`; a failed fetch is not an error of this call (it is
/// logged and counted in the stats). Thread-safe, but one caller is enough.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_ctx_tick(ctx: *const wic_tna_ctx) -> wic_tna_status {
    guard("wic_tna_ctx_tick", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        c.tick(crate::context::now());
        WIC_TNA_STATUS_OK
    })
}

/// Bar (`barred` true) or unbar one configured issuer at run time, for
/// every context sharing the state; other issuers are untouched. The
/// run-time setting outlives reloads. `ctx` and `iss` must not be NULL.
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (not UTF-8), `NOT_FOUND`
/// (issuer not configured), `IO_ERROR` (shared table full; or, with
/// `[fleet]`, the fleet store could not be written: the change is then in
/// force on this proxy only, and the message says so). With `[fleet]`, waits
/// on the store up to its `refresher_timeout_ms`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_ctx_set_barred(
    ctx: *const wic_tna_ctx,
    iss: *const c_char,
    iss_len: usize,
    barred: bool,
) -> wic_tna_status {
    guard("wic_tna_ctx_set_barred", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        // SAFETY: caller's contract.
        let i = try_ffi!(unsafe { text("iss", iss, iss_len) });
        if c.config().issuer(i).is_none() {
            return fail(
                WIC_TNA_STATUS_NOT_FOUND,
                format!("issuer {i:?} is not configured"),
            );
        }
        match c.set_barred(i, barred) {
            Ok(()) => WIC_TNA_STATUS_OK,
            Err(e) => fail(WIC_TNA_STATUS_IO_ERROR, e),
        }
    })
}

/// Copy the counters (per issuer and reason name, summed over every process
/// sharing the state), the barred issuers and the reload generation as a
/// JSON object into `buf` (NUL-terminated); the length without NUL is
/// stored in `*out_len`. `BUFFER_TOO_SMALL` when it does not fit: call
/// again with a buffer of `*out_len + 1` bytes. `ctx` and `out_len` must not
/// be NULL; `buf` may be NULL when `buf_len` is 0. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_ctx_stats_json(
    ctx: *const wic_tna_ctx,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> wic_tna_status {
    guard("wic_tna_ctx_stats_json", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        let json = c.stats_json();
        // SAFETY: caller's contract.
        unsafe { copy_out(json.as_bytes(), buf, buf_len, out_len) }
    })
}

/// Copy the counters in the Prometheus text exposition format (version
/// 0.0.4, for `Content-Type: text/plain; version=0.0.4`) into `buf`
/// (NUL-terminated); the length without NUL is stored in `*out_len`.
/// `BUFFER_TOO_SMALL` when it does not fit: call again with a buffer of
/// `*out_len + 1` bytes (it may have grown meanwhile: loop). What it holds,
/// summed over every process sharing the state: `wic_tna_checks_total`
/// with the labels `issuer` (each issuer of the configuration in force, and
/// `-` for outcomes without one) and `reason` (each of
/// `wic_tna_reason_name`, zeros included); `wic_tna_issuer_barred`; per
/// issuer with remote trust, its key set, metadata and introspection
/// counters and times (`wic_tna_jwks_fetch_failed_total`,
/// `wic_tna_jwks_fetched_at_seconds`, ...); `wic_tna_reload_generation`.
/// Label values are escaped as the format requires. Reads the shared
/// state only (no per-request cost; the work is done here, when scraped).
/// `ctx` and `out_len` must not be NULL; `buf` may be NULL when `buf_len`
/// is 0. Errors: `NULL_ARGUMENT`, `BUFFER_TOO_SMALL`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_ctx_metrics_text(
    ctx: *const wic_tna_ctx,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> wic_tna_status {
    guard("wic_tna_ctx_metrics_text", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        let text = c.metrics_text();
        // SAFETY: caller's contract.
        unsafe { copy_out(text.as_bytes(), buf, buf_len, out_len) }
    })
}

/// Store in `*out_total` how many checks ended with reason number
/// `reason_index` (see `wic_tna_reason_name`), summed over every issuer
/// and every process sharing the state: the value of a proxy statistic
/// read when asked for, with no work per request. `ctx` and `out_total`
/// must not be NULL. Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`
/// (`reason_index` is `wic_tna_reason_count()` or more). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_ctx_reason_total(
    ctx: *const wic_tna_ctx,
    reason_index: usize,
    out_total: *mut u64,
) -> wic_tna_status {
    guard("wic_tna_ctx_reason_total", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        if out_total.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "out_total is NULL");
        }
        let Some(r) = crate::Reason::ALL.get(reason_index) else {
            return fail(
                WIC_TNA_STATUS_INVALID_ARGUMENT,
                format!(
                    "reason_index {reason_index} is out of range (wic_tna_reason_count() is {})",
                    crate::Reason::ALL.len()
                ),
            );
        };
        let n = c.reason_total(*r);
        // SAFETY: checked non-NULL.
        unsafe { *out_total = n };
        WIC_TNA_STATUS_OK
    })
}

/// Store in `*out_count` how many issuers have per-issuer statistics:
/// each issuer of the configuration in force (a reload may change them),
/// then `-`, which counts the outcomes with no configured issuer (e.g.
/// `missing_token`). Read the names with `wic_tna_ctx_issuer_name`.
/// `ctx` and `out_count` must not be NULL. Errors: `NULL_ARGUMENT`.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_ctx_issuer_count(
    ctx: *const wic_tna_ctx,
    out_count: *mut usize,
) -> wic_tna_status {
    guard("wic_tna_ctx_issuer_count", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        if out_count.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "out_count is NULL");
        }
        let n = c.stat_issuers().len();
        // SAFETY: checked non-NULL.
        unsafe { *out_count = n };
        WIC_TNA_STATUS_OK
    })
}

/// Copy the name of issuer number `index` (0 to
/// `wic_tna_ctx_issuer_count() - 1`, the last being `-`) into `buf`
/// (NUL-terminated); its length without NUL is stored in `*out_len`.
/// A copy, not a view: a reload may change the issuers. `BUFFER_TOO_SMALL`
/// when it does not fit: call again with `*out_len + 1` bytes. `ctx` and
/// `out_len` must not be NULL; `buf` may be NULL when `buf_len` is 0.
/// Errors: `NULL_ARGUMENT`, `NOT_FOUND` (`index` out of range, e.g. after
/// a reload removed an issuer), `BUFFER_TOO_SMALL`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_ctx_issuer_name(
    ctx: *const wic_tna_ctx,
    index: usize,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> wic_tna_status {
    guard("wic_tna_ctx_issuer_name", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        if out_len.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "out_len is NULL");
        }
        let all = c.stat_issuers();
        let Some(name) = all.get(index) else {
            return fail(
                WIC_TNA_STATUS_NOT_FOUND,
                format!(
                    "issuer index {index} is out of range (wic_tna_ctx_issuer_count() is {})",
                    all.len()
                ),
            );
        };
        // SAFETY: caller's contract.
        unsafe { copy_out(name.as_bytes(), buf, buf_len, out_len) }
    })
}

/// Store in `*out_total` how many checks of issuer `iss` (`iss_len`
/// bytes; an issuer of the configuration in force, or `-`) ended with
/// reason number `reason_index` (see `wic_tna_reason_name`), summed over
/// every process sharing the state: read when asked for, with no work per
/// request. An issuer that is not in force is an error, never a 0.
/// `ctx`, `iss` and `out_total` must not be NULL. Errors:
/// `NULL_ARGUMENT`, `INVALID_ARGUMENT` (`reason_index` out of range, `iss`
/// not UTF-8), `NOT_FOUND` (`iss` unknown). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_ctx_issuer_reason_total(
    ctx: *const wic_tna_ctx,
    iss: *const c_char,
    iss_len: usize,
    reason_index: usize,
    out_total: *mut u64,
) -> wic_tna_status {
    guard("wic_tna_ctx_issuer_reason_total", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        // SAFETY: caller's contract.
        let iss = try_ffi!(unsafe { text("iss", iss, iss_len) });
        if out_total.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "out_total is NULL");
        }
        let Some(r) = crate::Reason::ALL.get(reason_index) else {
            return fail(
                WIC_TNA_STATUS_INVALID_ARGUMENT,
                format!(
                    "reason_index {reason_index} is out of range (wic_tna_reason_count() is {})",
                    crate::Reason::ALL.len()
                ),
            );
        };
        let Some(n) = c.issuer_reason_total(iss, *r) else {
            return fail(
                WIC_TNA_STATUS_NOT_FOUND,
                format!("issuer {iss:?} is not in the configuration in force"),
            );
        };
        // SAFETY: checked non-NULL.
        unsafe { *out_total = n };
        WIC_TNA_STATUS_OK
    })
}

unsafe fn opt_bytes<'a>(
    what: &str,
    ptr: *const c_char,
    len: usize,
) -> Result<Option<&'a [u8]>, wic_tna_status> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded.
    unsafe { bytes(what, ptr, len) }.map(Some)
}

/// Verify the `Authorization` header value `authorization`
/// (`authorization_len` bytes; any bytes: a bad value is a rejection, not an
/// error) at the current time. `authorization` NULL with length 0 means the
/// request has no `Authorization` header: the result is 401 `missing_token`
/// with a challenge (an empty but present value is 400 `malformed_request`). `to_uri` is the REGISTER's `To` URI or whole
/// `To` value; NULL skips the REQ 4 check. `requested_expires` is the
/// expiry the client asked for, negative when none, 0 for a
/// de-registration (a registration with less than the configured
/// `min_registration_expires` left is 401 `expired`). No WebSocket `Origin`
/// is checked: see `wic_tna_verify_request`. On success `*out`
/// receives a result, accepted or rejected, to be freed with
/// `wic_tna_result_free`. `ctx` and `out` must not be NULL, nor
/// `authorization` with a non-zero length. Errors: `NULL_ARGUMENT`,
/// `INVALID_ARGUMENT`. Thread-safe. Never touches the network, except for a
/// reference token of an issuer with `[issuer.introspection]`: then it may
/// block up to that issuer's `timeout_ms` (default 500 ms, at most 2 s),
/// unless the answer is cached or the circuit breaker is open.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_verify(
    ctx: *const wic_tna_ctx,
    authorization: *const c_char,
    authorization_len: usize,
    to_uri: *const c_char,
    to_uri_len: usize,
    requested_expires: i64,
    out: *mut *mut wic_tna_result,
) -> wic_tna_status {
    // SAFETY: forwarded, same contract.
    unsafe {
        wic_tna_verify_at(
            ctx,
            authorization,
            authorization_len,
            to_uri,
            to_uri_len,
            requested_expires,
            0,
            out,
        )
    }
}

/// As `wic_tna_verify`, at the Unix time `now` (seconds; 0 means the
/// current time). For tests and replays of captured traffic.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_verify_at(
    ctx: *const wic_tna_ctx,
    authorization: *const c_char,
    authorization_len: usize,
    to_uri: *const c_char,
    to_uri_len: usize,
    requested_expires: i64,
    now_unix: i64,
    out: *mut *mut wic_tna_result,
) -> wic_tna_status {
    // SAFETY: the caller's contract is verify_common's.
    unsafe {
        verify_common(
            "wic_tna_verify",
            ctx,
            authorization,
            authorization_len,
            to_uri,
            to_uri_len,
            requested_expires,
            std::ptr::null(),
            0,
            now_unix,
            out,
        )
    }
}

/// As `wic_tna_verify_at`, with the request's replay binding: `binding`
/// (`binding_len` bytes, any bytes, copied; not kept) names the connection
/// or source the request came from (Kamailio: `$conid` for TCP/TLS/WS,
/// `$si:$sp` for UDP). Where the configuration enables `[replay]`, the
/// first accepted use of a token's `(iss, jti)` binds it to this value; a
/// later use with the same binding is a refresh, with another binding
/// (on this proxy or, with `[fleet]`, on any node) a replay: 401
/// `token_replayed`. `binding` NULL (length 0) or empty means none: with
/// `[replay]` enabled the result is then 500 `internal_error` (fail closed);
/// without it the binding is ignored. `now_unix` 0 means the current time.
/// Ownership, NULL rules and the other arguments as `wic_tna_verify`; `ctx`
/// and `out` must not be NULL, nor `binding` with a non-zero length.
/// Errors: `NULL_ARGUMENT`. May wait on the fleet store up to its
/// configured timeout (first use of a token only). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_verify_bound(
    ctx: *const wic_tna_ctx,
    authorization: *const c_char,
    authorization_len: usize,
    to_uri: *const c_char,
    to_uri_len: usize,
    requested_expires: i64,
    binding: *const c_char,
    binding_len: usize,
    now_unix: i64,
    out: *mut *mut wic_tna_result,
) -> wic_tna_status {
    // SAFETY: the caller's contract is verify_common's.
    unsafe {
        verify_common(
            "wic_tna_verify_bound",
            ctx,
            authorization,
            authorization_len,
            to_uri,
            to_uri_len,
            requested_expires,
            binding,
            binding_len,
            now_unix,
            out,
        )
    }
}

/// The body of `wic_tna_verify_at` and `wic_tna_verify_bound` (binding
/// NULL with length 0: none).
///
/// # Safety
/// As `wic_tna_verify_bound`.
#[allow(clippy::too_many_arguments)]
unsafe fn verify_common(
    name: &'static str,
    ctx: *const wic_tna_ctx,
    authorization: *const c_char,
    authorization_len: usize,
    to_uri: *const c_char,
    to_uri_len: usize,
    requested_expires: i64,
    binding: *const c_char,
    binding_len: usize,
    now_unix: i64,
    out: *mut *mut wic_tna_result,
) -> wic_tna_status {
    guard(name, || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        // NULL with length 0: the request has no Authorization header.
        let auth = if authorization.is_null() && authorization_len == 0 {
            None
        } else {
            // SAFETY: caller's contract.
            Some(try_ffi!(unsafe {
                bytes("authorization", authorization, authorization_len)
            }))
        };
        // SAFETY: caller's contract.
        let to = try_ffi!(unsafe { opt_bytes("to_uri", to_uri, to_uri_len) });
        let b = if binding.is_null() && binding_len == 0 {
            None
        } else {
            // SAFETY: caller's contract.
            Some(try_ffi!(unsafe { bytes("binding", binding, binding_len) }))
        };
        if out.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "out is NULL");
        }
        let t = if now_unix == 0 { now() } else { now_unix };
        let req = if requested_expires < 0 {
            None
        } else {
            Some(requested_expires)
        };
        let outcome = match auth {
            Some(a) => c.verify_bound(a, to, req, b, t),
            None => c.verify_request(
                &crate::context::Request {
                    binding: b,
                    ..Default::default()
                },
                t,
            ),
        };
        // SAFETY: out checked non-NULL.
        unsafe { *out = Box::into_raw(Box::new(wic_tna_result::from_outcome(outcome))) };
        WIC_TNA_STATUS_OK
    })
}

/// One REGISTER to decide, for `wic_tna_verify_request`: every input the
/// proxy has, in one extensible struct (later versions append fields and
/// tell them apart by `struct_size`). Each string is a pointer + length
/// pair, borrowed for the call only (nothing is kept): NULL with length 0
/// means the input is absent; NULL with a non-zero length is an error
/// (`NULL_ARGUMENT`). Zero-initialize it, then set `struct_size` and what
/// the request has, e.g.
/// `wic_tna_request req = { .struct_size = sizeof req, .requested_expires = -1 };`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct wic_tna_request {
    /// `sizeof(struct wic_tna_request)` as the caller was compiled with
    /// it. Any other value is refused (`INVALID_ARGUMENT`): a struct from a
    /// newer header may hold a check this library would skip.
    pub struct_size: usize,
    /// The `Authorization` header value (any bytes: a bad value is a
    /// rejection, not an error). Absent: the request has no
    /// `Authorization` header, 401 `missing_token` with a challenge (an
    /// empty but present value is 400 `malformed_request`).
    pub authorization: *const c_char,
    /// Length of `authorization` in bytes.
    pub authorization_len: usize,
    /// The REGISTER's `To` URI or whole `To` value. Absent: the `To` check
    /// (REQ 4) is skipped.
    pub to_uri: *const c_char,
    /// Length of `to_uri` in bytes.
    pub to_uri_len: usize,
    /// The expiry the client asked for: negative when none, 0 for a
    /// de-registration. A registration (anything but 0) is refused with
    /// 401 `expired` when the token has less than the configured
    /// `min_registration_expires` left; a de-registration is accepted while
    /// the token is valid, granted 0.
    pub requested_expires: i64,
    /// The replay binding (the connection or source the request came
    /// from, as for `wic_tna_verify_bound`). Absent or empty: none (with
    /// `[replay]` enabled: 500 `internal_error`, fail closed).
    pub binding: *const c_char,
    /// Length of `binding` in bytes.
    pub binding_len: usize,
    /// The `Origin` of the WebSocket handshake of the connection the
    /// REGISTER came over. Absent (UDP, TCP, TLS, non-browser clients): not
    /// checked. Present: the token's issuer must list it in its `origins`
    /// (trimmed, a trailing '/' ignored, ASCII case-insensitive), else 403
    /// `origin_not_allowed` (no challenge); present but empty or not UTF-8
    /// is never allowed, nor is any Origin for an issuer without `origins`.
    pub origin: *const c_char,
    /// Length of `origin` in bytes.
    pub origin_len: usize,
    /// Unix time to decide at, seconds; 0 means the current time.
    pub now_unix: i64,
}

/// An optional input of a `wic_tna_request`: NULL with length 0 is absent.
///
/// # Safety
/// As [`bytes`].
unsafe fn field<'a>(
    what: &str,
    ptr: *const c_char,
    len: usize,
) -> Result<Option<&'a [u8]>, wic_tna_status> {
    if ptr.is_null() {
        if len != 0 {
            return Err(fail(
                WIC_TNA_STATUS_NULL_ARGUMENT,
                format!("req->{what} is NULL with req->{what}_len {len}"),
            ));
        }
        return Ok(None);
    }
    // SAFETY: forwarded.
    unsafe { bytes(&format!("req->{what}"), ptr, len) }.map(Some)
}

/// Decide on one REGISTER described by `*req` (see `wic_tna_request` for
/// each field, what absent means, and the ownership of its strings). The
/// checks, in order: the token (header form, signature or introspection,
/// claims, identity pools, barring), the remaining lifetime of a
/// registration, the `To` IMPU, the WebSocket `Origin`, then the replay
/// step (a refused request binds nothing). On success `*out` receives a
/// result, accepted or rejected, to be freed with `wic_tna_result_free`;
/// `*out` is written only on success. `ctx`, `req` and `out` must not be
/// NULL. Errors: `NULL_ARGUMENT` (also a NULL string with a non-zero
/// length), `INVALID_ARGUMENT` (`struct_size` is not this library's
/// `sizeof(struct wic_tna_request)`, or a length out of range).
/// Thread-safe. Never touches the network, except for a reference token of
/// an issuer with `[issuer.introspection]` (up to its `timeout_ms`, unless
/// cached or the circuit breaker is open) and, with `[fleet]`, the first
/// use of a token (up to the store's `timeout_ms`).
#[no_mangle]
pub unsafe extern "C" fn wic_tna_verify_request(
    ctx: *const wic_tna_ctx,
    req: *const wic_tna_request,
    out: *mut *mut wic_tna_result,
) -> wic_tna_status {
    guard("wic_tna_verify_request", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        if req.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "req is NULL");
        }
        // Only the first field until its value says the rest is there.
        // SAFETY: non-NULL; every version of the struct starts with it.
        let size = unsafe { std::ptr::addr_of!((*req).struct_size).read_unaligned() };
        let want = std::mem::size_of::<wic_tna_request>();
        if size != want {
            return fail(
                WIC_TNA_STATUS_INVALID_ARGUMENT,
                format!("req->struct_size is {size}, not this library's sizeof(struct wic_tna_request) {want} (set it to sizeof, and build against this library's header)"),
            );
        }
        // SAFETY: the caller's struct is this one (struct_size checked).
        let r = unsafe { req.read_unaligned() };
        // SAFETY: caller's contract, for each field.
        let auth =
            try_ffi!(unsafe { field("authorization", r.authorization, r.authorization_len) });
        // SAFETY: as above.
        let to = try_ffi!(unsafe { field("to_uri", r.to_uri, r.to_uri_len) });
        // SAFETY: as above.
        let binding = try_ffi!(unsafe { field("binding", r.binding, r.binding_len) });
        // SAFETY: as above.
        let origin = try_ffi!(unsafe { field("origin", r.origin, r.origin_len) });
        if out.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "out is NULL");
        }
        let t = if r.now_unix == 0 { now() } else { r.now_unix };
        let request = crate::context::Request {
            authorization: auth,
            to,
            requested_expires: (r.requested_expires >= 0).then_some(r.requested_expires),
            binding,
            origin,
        };
        let outcome = c.verify_request(&request, t);
        // SAFETY: out checked non-NULL.
        unsafe { *out = Box::into_raw(Box::new(wic_tna_result::from_outcome(outcome))) };
        WIC_TNA_STATUS_OK
    })
}

/// Is `origin` (the WebSocket handshake's `Origin`) allowed for any
/// non-barred issuer (a first check at the handshake; each REGISTER over
/// the connection is then held to its token's issuer's `origins` by
/// `wic_tna_verify_request`)? The answer goes to `*out_allowed`. `ctx`, `origin` and
/// `out_allowed` must not be NULL. Errors: `NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_origin_allowed(
    ctx: *const wic_tna_ctx,
    origin: *const c_char,
    origin_len: usize,
    out_allowed: *mut bool,
) -> wic_tna_status {
    guard("wic_tna_origin_allowed", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        // SAFETY: caller's contract.
        let o = try_ffi!(unsafe { bytes("origin", origin, origin_len) });
        if out_allowed.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "out_allowed is NULL");
        }
        let a = c.origin_allowed(o);
        // SAFETY: checked non-NULL.
        unsafe { *out_allowed = a };
        WIC_TNA_STATUS_OK
    })
}

/// S-CSCF side: check a received TNA `Authorization` value from
/// `source_ip` (text, IPv4 or IPv6). `allowed_entities` is the
/// subscription's comma-separated list of authorization entities; NULL
/// takes the configuration's `[scscf] allowed_entities`. On success `*out`
/// receives a result (accepted, or rejected with status 403 and a reason);
/// `wic_tna_result_impi` is the username and `wic_tna_result_issuer` the
/// authorization entity. `ctx`, `authorization`, `source_ip` and `out` must
/// not be NULL. Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (source or list
/// not UTF-8). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_scscf_check(
    ctx: *const wic_tna_ctx,
    authorization: *const c_char,
    authorization_len: usize,
    source_ip: *const c_char,
    source_ip_len: usize,
    allowed_entities: *const c_char,
    allowed_entities_len: usize,
    out: *mut *mut wic_tna_result,
) -> wic_tna_status {
    guard("wic_tna_scscf_check", || {
        // SAFETY: caller's contract.
        let c = try_ffi!(unsafe { ctx_ref(ctx) });
        // SAFETY: caller's contract.
        let auth = try_ffi!(unsafe { bytes("authorization", authorization, authorization_len) });
        // SAFETY: caller's contract.
        let src = try_ffi!(unsafe { text("source_ip", source_ip, source_ip_len) });
        let allowed = if allowed_entities.is_null() {
            None
        } else {
            // SAFETY: caller's contract.
            Some(try_ffi!(unsafe {
                text("allowed_entities", allowed_entities, allowed_entities_len)
            }))
        };
        if out.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "out is NULL");
        }
        let outcome = c.scscf_check(auth, src, allowed);
        // SAFETY: out checked non-NULL.
        unsafe { *out = Box::into_raw(Box::new(wic_tna_result::from_outcome(outcome))) };
        WIC_TNA_STATUS_OK
    })
}
