//! C ABI: the state shared between the processes of a proxy.

use super::*;
use crate::edge::shared::Shared;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// State shared between processes: the reload generation, run-time
/// barring and counters. Opaque.
pub struct wic_tna_shared {
    pub(crate) inner: Arc<Shared>,
}

/// Create an anonymous shared region (a `MAP_SHARED` mapping of 4,603,968 bytes).
/// Call it in the parent before the proxy forks (Kamailio: `mod_init`);
/// children inherit it. No thread is started. On success `*out` owns the
/// handle: free it with `wic_tna_shared_free` (contexts keep their own
/// reference, so it may be freed before them). `out` must not be NULL.
/// Errors: `NULL_ARGUMENT`, `IO_ERROR` (mmap failed; see `wic_tna_last_error`).
#[no_mangle]
pub unsafe extern "C" fn wic_tna_shared_new_anonymous(
    out: *mut *mut wic_tna_shared,
) -> wic_tna_status {
    guard("wic_tna_shared_new_anonymous", || {
        if out.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "out is NULL");
        }
        match Shared::new_anonymous() {
            Ok(s) => {
                // SAFETY: out checked non-NULL.
                unsafe { *out = Box::into_raw(Box::new(wic_tna_shared { inner: Arc::new(s) })) };
                WIC_TNA_STATUS_OK
            }
            Err(e) => fail(WIC_TNA_STATUS_IO_ERROR, format!("shared state: {e}")),
        }
    })
}

/// Open (creating it, mode 0600, if missing) a file-backed shared region
/// at `path` (`path_len` bytes, no NUL needed), so that unrelated processes
/// (the Python glue's workers, the CLI) share barring and reloads. `path`
/// and `out` must not be NULL. Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`
/// (interior NUL), `IO_ERROR` (cannot open or map, or not a wic-tna state
/// file). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_shared_open(
    path: *const c_char,
    path_len: usize,
    out: *mut *mut wic_tna_shared,
) -> wic_tna_status {
    guard("wic_tna_shared_open", || {
        // SAFETY: caller's contract.
        let p = try_ffi!(unsafe { bytes("path", path, path_len) });
        if out.is_null() {
            return fail(WIC_TNA_STATUS_NULL_ARGUMENT, "out is NULL");
        }
        if p.is_empty() || p.contains(&0) {
            return fail(
                WIC_TNA_STATUS_INVALID_ARGUMENT,
                "path is empty or has a NUL byte",
            );
        }
        match Shared::open(std::path::Path::new(std::ffi::OsStr::from_bytes(p))) {
            Ok(s) => {
                // SAFETY: out checked non-NULL.
                unsafe { *out = Box::into_raw(Box::new(wic_tna_shared { inner: Arc::new(s) })) };
                WIC_TNA_STATUS_OK
            }
            Err(e) => fail(WIC_TNA_STATUS_IO_ERROR, e.to_string()),
        }
    })
}

/// Release a handle from `wic_tna_shared_new_anonymous` or
/// `wic_tna_shared_open`. NULL does nothing. The mapping stays alive while
/// a context uses it. Not to be called twice on the same handle.
#[no_mangle]
pub unsafe extern "C" fn wic_tna_shared_free(shared: *mut wic_tna_shared) {
    guard_or((), || {
        if !shared.is_null() {
            // SAFETY: from Box::into_raw in this module.
            drop(unsafe { Box::from_raw(shared) });
        }
    })
}
