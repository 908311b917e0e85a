//! State shared between the processes of one proxy (Kamailio forks its
//! workers): the reload generation, run-time barring and the counters per
//! issuer and outcome.
//!
//! It lives in a `MAP_SHARED` mapping, either anonymous (created before the
//! fork and inherited) or backed by a file (so independent processes, such
//! as the Python glue's workers and the CLI, share it). Every field is an
//! atomic; there is no lock, so a process that dies mid-update cannot block
//! the others. Names are written once into a slot claimed by compare-and-swap
//! and never change afterwards.

use crate::core::reason::Reason;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const MAGIC: u64 = 0x5749_4354_4e41_0006; // "WICTNA" v6 (v2: remote trust fields per slot; v3: reload_digest; v4: replay table; v5: two more reasons counted; v6: metadata discovery fields)
/// Number of issuer slots (barring and counters).
pub const SLOTS: usize = 2048;
const NAME_MAX: usize = 256;
const NREASONS: usize = Reason::ALL.len();
/// Slot used for outcomes with no known issuer.
pub const NO_ISSUER: &str = "-";

#[repr(C)]
struct Slot {
    /// 0 free, 1 being claimed, 2 ready.
    state: AtomicU32,
    len: AtomicU32,
    /// 0 no run-time override, 1 barred, 2 unbarred.
    barring: AtomicU32,
    _pad: AtomicU32,
    name: [AtomicU64; NAME_MAX / 8],
    counters: [AtomicU64; NREASONS],
    /// Remote trust state and counters, indexed by [`Remote`].
    remote: [AtomicU64; NREMOTE],
}

/// Per-issuer remote trust fields of the shared state (v2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Remote {
    /// Generation of the fetched key set (bumped by the refresher after it
    /// wrote the cache file; 0: none yet).
    JwksGen,
    /// Unix time the key set was last fetched or confirmed (200 or 304).
    JwksFetchedAt,
    /// Unix time a worker last saw an unknown `kid` (asks for a re-fetch).
    RefetchRequested,
    /// Consecutive introspection failures.
    BreakerFailures,
    /// Unix time until which the introspection breaker is open (0: closed).
    BreakerOpenUntil,
    /// Counters (stats JSON).
    JwksFetchOk,
    JwksNotModified,
    JwksFetchFailed,
    JwksRejected,
    JwksRefetchUnknownKid,
    IntrospectionCalls,
    IntrospectionFailed,
    IntrospectionCacheHits,
    IntrospectionBreakerOpen,
    /// Generation of the discovered metadata (bumped by the refresher after
    /// it wrote the metadata cache file; 0: none yet).
    MetadataGen,
    /// Unix time the metadata was last fetched or confirmed.
    MetadataFetchedAt,
    /// Counters (stats JSON).
    MetadataFetchOk,
    MetadataFetchFailed,
}

const NREMOTE: usize = 18;

impl Remote {
    /// The counters, with their names in the stats JSON.
    pub const COUNTERS: [(Remote, &'static str); 11] = [
        (Remote::JwksFetchOk, "jwks_fetch_ok"),
        (Remote::JwksNotModified, "jwks_not_modified"),
        (Remote::JwksFetchFailed, "jwks_fetch_failed"),
        (Remote::JwksRejected, "jwks_rejected"),
        (Remote::JwksRefetchUnknownKid, "jwks_refetch_unknown_kid"),
        (Remote::IntrospectionCalls, "introspection_calls"),
        (Remote::IntrospectionFailed, "introspection_failed"),
        (Remote::IntrospectionCacheHits, "introspection_cache_hits"),
        (
            Remote::IntrospectionBreakerOpen,
            "introspection_breaker_open",
        ),
        (Remote::MetadataFetchOk, "metadata_fetch_ok"),
        (Remote::MetadataFetchFailed, "metadata_fetch_failed"),
    ];
}

#[repr(C)]
struct Region {
    magic: AtomicU64,
    size: AtomicU64,
    reload_gen: AtomicU64,
    bar_gen: AtomicU64,
    /// Config::digest of the configuration the last reload checked.
    reload_digest: AtomicU64,
    slots: [Slot; SLOTS],
    // --- appended for replay detection and the fleet store (src/core/replay.rs, src/edge/fleet.rs) ---
    /// Fleet store status, written by the refresher: 0 not configured or
    /// not yet tried, 1 reachable, 2 unreachable.
    fleet_state: AtomicU32,
    _pad2: AtomicU32,
    /// Unix time of the last fleet state change.
    fleet_since: AtomicU64,
    /// Barring version last applied from the fleet store.
    fleet_bar_version: AtomicU64,
    /// Replay table: (iss, jti) key -> binding, bounded, entries expire.
    replay: [crate::core::replay::ReplaySlot; crate::core::replay::REPLAY_SLOTS],
}

/// A mapping of the shared region.
pub struct Shared {
    ptr: *mut Region,
    path: Option<String>,
}

// SAFETY: the region holds only atomics; the mapping lives as long as Shared.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: ptr came from mmap with this size.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, std::mem::size_of::<Region>());
        }
    }
}

fn hash(name: &str) -> usize {
    // FNV-1a: stable across processes (unlike RandomState).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as usize
}

impl Shared {
    fn map(fd: i32, flags: i32) -> std::io::Result<*mut Region> {
        let size = std::mem::size_of::<Region>();
        // SAFETY: plain mmap call; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(p as *mut Region)
    }

    fn init(ptr: *mut Region, what: &str) -> std::io::Result<()> {
        // SAFETY: ptr is a valid mapping of size_of::<Region>() bytes, all
        // of whose fields are atomics (zero is a valid value for each).
        let r = unsafe { &*ptr };
        let size = std::mem::size_of::<Region>() as u64;
        match r
            .magic
            .compare_exchange(0, MAGIC, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                r.size.store(size, Ordering::Release);
                Ok(())
            }
            Err(m) if m == MAGIC => {
                let s = r.size.load(Ordering::Acquire);
                if s != 0 && s != size {
                    return Err(std::io::Error::other(format!(
                        "{what} was made by another wic-tna version"
                    )));
                }
                Ok(())
            }
            Err(_) => Err(std::io::Error::other(format!(
                "{what} is not a wic-tna state file"
            ))),
        }
    }

    /// A new anonymous shared region. Create it before the proxy forks:
    /// the children inherit it.
    pub fn new_anonymous() -> std::io::Result<Shared> {
        let ptr = Shared::map(-1, libc::MAP_SHARED | libc::MAP_ANONYMOUS)?;
        let s = Shared { ptr, path: None };
        Shared::init(ptr, "anonymous mapping")?;
        Ok(s)
    }

    /// Open (creating it if needed, mode 0600) a file-backed region.
    pub fn open(path: &Path) -> std::io::Result<Shared> {
        let what = path.display().to_string();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode_0600()
            .open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{what}: {e}")))?;
        let size = std::mem::size_of::<Region>() as u64;
        let len = f.metadata()?.len();
        if len != size {
            if len != 0 {
                return Err(std::io::Error::other(format!(
                    "{what} has {len} bytes, not a wic-tna state file of {size}"
                )));
            }
            f.set_len(size)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{what}: {e}")))?;
        }
        let ptr = Shared::map(f.as_raw_fd(), libc::MAP_SHARED)?;
        let s = Shared {
            ptr,
            path: Some(what.clone()),
        };
        Shared::init(ptr, &what)?;
        Ok(s)
    }

    /// The backing file, if any.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    fn region(&self) -> &Region {
        // SAFETY: valid for the life of self; atomics only.
        unsafe { &*self.ptr }
    }

    /// Current reload generation.
    pub fn reload_gen(&self) -> u64 {
        self.region().reload_gen.load(Ordering::Acquire)
    }

    /// Ask every process to re-read its configuration, which must have the
    /// digest `digest` (what this reload checked).
    pub fn bump_reload(&self, digest: u64) -> u64 {
        let r = self.region();
        r.reload_digest.store(digest, Ordering::Release);
        r.reload_gen.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The digest the last reload published (0: none yet).
    pub fn reload_digest(&self) -> u64 {
        self.region().reload_digest.load(Ordering::Acquire)
    }

    /// Current barring generation.
    pub fn bar_gen(&self) -> u64 {
        self.region().bar_gen.load(Ordering::Acquire)
    }

    fn slot_name(slot: &Slot) -> String {
        let len = (slot.len.load(Ordering::Acquire) as usize).min(NAME_MAX);
        let mut bytes = Vec::with_capacity(NAME_MAX);
        for w in &slot.name {
            bytes.extend_from_slice(&w.load(Ordering::Acquire).to_le_bytes());
        }
        bytes.truncate(len);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Find or claim the slot of `name`. `None` when the table is full or
    /// the name is too long.
    fn slot(&self, name: &str, claim: bool) -> Option<usize> {
        if name.is_empty() || name.len() > NAME_MAX {
            return None;
        }
        let r = self.region();
        let start = hash(name) % SLOTS;
        for probe in 0..SLOTS {
            let i = (start + probe) % SLOTS;
            let s = &r.slots[i];
            let mut state = s.state.load(Ordering::Acquire);
            if state == 0 {
                if !claim {
                    return None;
                }
                if s.state
                    .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    let mut buf = [0u8; NAME_MAX];
                    buf[..name.len()].copy_from_slice(name.as_bytes());
                    for (k, w) in s.name.iter().enumerate() {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&buf[k * 8..k * 8 + 8]);
                        w.store(u64::from_le_bytes(b), Ordering::Release);
                    }
                    s.len.store(name.len() as u32, Ordering::Release);
                    s.state.store(2, Ordering::Release);
                    return Some(i);
                }
                state = s.state.load(Ordering::Acquire);
            }
            // Another process is writing this slot's name: wait a bounded time.
            let mut spins = 0;
            while state == 1 && spins < 10_000 {
                std::hint::spin_loop();
                spins += 1;
                state = s.state.load(Ordering::Acquire);
            }
            if state == 2 && Shared::slot_name(s) == name {
                return Some(i);
            }
        }
        None
    }

    /// Set a run-time barring override for `iss`: `Some(true)` barred,
    /// `Some(false)` unbarred, `None` back to the configuration's value.
    pub fn set_barring(&self, iss: &str, barred: Option<bool>) -> std::io::Result<()> {
        let i = self
            .slot(iss, true)
            .ok_or_else(|| std::io::Error::other("the shared issuer table is full"))?;
        let v = match barred {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        };
        self.region().slots[i].barring.store(v, Ordering::Release);
        self.region().bar_gen.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Every run-time barring override.
    pub fn barring_overrides(&self) -> HashMap<String, bool> {
        let mut m = HashMap::new();
        for s in &self.region().slots {
            if s.state.load(Ordering::Acquire) == 2 {
                match s.barring.load(Ordering::Acquire) {
                    1 => {
                        m.insert(Shared::slot_name(s), true);
                    }
                    2 => {
                        m.insert(Shared::slot_name(s), false);
                    }
                    _ => {}
                }
            }
        }
        m
    }

    /// Index of the counter slot of `iss`, claiming one if needed.
    pub fn counter_slot(&self, iss: &str) -> Option<usize> {
        self.slot(iss, true)
    }

    /// Count one outcome in slot `slot`.
    pub fn count(&self, slot: usize, reason: Reason) {
        if let Some(s) = self.region().slots.get(slot) {
            s.counters[reason.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The remote trust field `f` of slot `slot`.
    pub fn remote(&self, slot: usize, f: Remote) -> &AtomicU64 {
        static ZERO: AtomicU64 = AtomicU64::new(0);
        match self.region().slots.get(slot) {
            Some(s) => &s.remote[f as usize],
            // Never written through: callers only pass slots from counter_slot.
            None => &ZERO,
        }
    }

    /// The remote trust counters of `iss` that are not zero.
    pub fn remote_counters(&self, iss: &str) -> Vec<(&'static str, u64)> {
        let Some(i) = self.slot(iss, false) else {
            return Vec::new();
        };
        Remote::COUNTERS
            .iter()
            .map(|(f, n)| (*n, self.remote(i, *f).load(Ordering::Relaxed)))
            .filter(|(_, v)| *v > 0)
            .collect()
    }

    /// Every outcome counter of `iss`, indexed as [`Reason::ALL`] (zeros
    /// when it has no slot yet).
    pub fn issuer_counts(&self, iss: &str) -> Vec<u64> {
        match self.slot(iss, false) {
            Some(i) => self.region().slots[i]
                .counters
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            None => vec![0; NREASONS],
        }
    }

    /// The outcomes of `reason` of `iss` (0 when it has no slot yet).
    pub fn issuer_count(&self, iss: &str, reason: Reason) -> u64 {
        self.slot(iss, false).map_or(0, |i| {
            self.region().slots[i].counters[reason.index()].load(Ordering::Relaxed)
        })
    }

    /// The outcomes of `reason` summed over every issuer slot.
    pub fn reason_total(&self, reason: Reason) -> u64 {
        let k = reason.index();
        self.region()
            .slots
            .iter()
            .filter(|s| s.state.load(Ordering::Acquire) == 2)
            .fold(0u64, |a, s| {
                a.wrapping_add(s.counters[k].load(Ordering::Relaxed))
            })
    }

    /// The remote trust field `f` of `iss` (0 when it has no slot yet).
    pub fn remote_of(&self, iss: &str, f: Remote) -> u64 {
        self.slot(iss, false)
            .map_or(0, |i| self.remote(i, f).load(Ordering::Acquire))
    }

    /// All non-zero counters: issuer -> reason name -> count.
    pub fn counters(&self) -> Vec<(String, Vec<(&'static str, u64)>)> {
        let mut out = Vec::new();
        for s in &self.region().slots {
            if s.state.load(Ordering::Acquire) != 2 {
                continue;
            }
            let c: Vec<(&'static str, u64)> = Reason::ALL
                .iter()
                .map(|r| (r.name(), s.counters[r.index()].load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect();
            if !c.is_empty() {
                out.push((Shared::slot_name(s), c));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Shared {
    /// The replay table of this region (src/core/replay.rs).
    pub fn replay_table(&self) -> &[crate::core::replay::ReplaySlot] {
        &self.region().replay
    }

    /// Fleet store status: 0 unknown / not configured, 1 up, 2 down; and
    /// the Unix time it changed.
    pub fn fleet_state(&self) -> (u32, u64) {
        let r = self.region();
        (
            r.fleet_state.load(Ordering::Acquire),
            r.fleet_since.load(Ordering::Acquire),
        )
    }

    /// Record the fleet store status; returns the previous one.
    pub fn set_fleet_state(&self, state: u32, since: u64) -> u32 {
        let r = self.region();
        let prev = r.fleet_state.swap(state, Ordering::AcqRel);
        if prev != state {
            r.fleet_since.store(since, Ordering::Release);
        }
        prev
    }

    /// Barring version last applied from the fleet store.
    pub fn fleet_bar_version(&self) -> u64 {
        self.region().fleet_bar_version.load(Ordering::Acquire)
    }

    /// Record the barring version applied from the fleet store.
    pub fn set_fleet_bar_version(&self, v: u64) {
        self.region().fleet_bar_version.store(v, Ordering::Release);
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}
impl Mode0600 for OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_barring() {
        let s = Shared::new_anonymous().unwrap();
        assert!(s.barring_overrides().is_empty());
        s.set_barring("https://a", Some(true)).unwrap();
        s.set_barring("https://b", Some(false)).unwrap();
        let m = s.barring_overrides();
        assert_eq!(m.get("https://a"), Some(&true));
        assert_eq!(m.get("https://b"), Some(&false));
        s.set_barring("https://a", None).unwrap();
        assert!(!s.barring_overrides().contains_key("https://a"));
        let i = s.counter_slot("https://a").unwrap();
        assert_eq!(s.counter_slot("https://a"), Some(i));
        s.count(i, Reason::Expired);
        s.count(i, Reason::Expired);
        let c = s.counters();
        assert_eq!(c, vec![("https://a".to_string(), vec![("expired", 2)])]);
        let j = s.counter_slot("https://j").unwrap();
        s.count(j, Reason::Expired);
        s.count(j, Reason::Ok);
        assert_eq!(s.reason_total(Reason::Expired), 3);
        assert_eq!(s.reason_total(Reason::Ok), 1);
        assert_eq!(s.reason_total(Reason::BadSignature), 0);
        let a = s.issuer_counts("https://a");
        assert_eq!(a.len(), Reason::ALL.len());
        assert_eq!(a[Reason::Expired.index()], 2);
        assert_eq!(a.iter().sum::<u64>(), 2);
        assert_eq!(s.issuer_counts("https://none"), vec![0; Reason::ALL.len()]);
    }

    #[test]
    fn shared_across_fork() {
        let s = Shared::new_anonymous().unwrap();
        let g0 = s.reload_gen();
        // SAFETY: the child only touches atomics and exits at once.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            s.bump_reload(7);
            let _ = s.set_barring("https://child", Some(true));
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(s.reload_gen(), g0 + 1);
        assert_eq!(s.barring_overrides().get("https://child"), Some(&true));
    }

    #[test]
    fn remote_fields_shared_across_fork() {
        let s = Shared::new_anonymous().unwrap();
        let i = s.counter_slot("https://r").unwrap();
        assert_eq!(s.remote(i, Remote::JwksGen).load(Ordering::Acquire), 0);
        // SAFETY: the child only touches atomics and exits at once.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            s.remote(i, Remote::JwksFetchedAt)
                .store(1234, Ordering::Release);
            s.remote(i, Remote::JwksGen).fetch_add(1, Ordering::AcqRel);
            s.remote(i, Remote::IntrospectionCalls)
                .fetch_add(3, Ordering::Relaxed);
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(s.remote(i, Remote::JwksGen).load(Ordering::Acquire), 1);
        assert_eq!(
            s.remote(i, Remote::JwksFetchedAt).load(Ordering::Acquire),
            1234
        );
        assert_eq!(
            s.remote_counters("https://r"),
            vec![("introspection_calls", 3)]
        );
        assert!(s.remote_counters("https://unknown").is_empty());
    }

    /// The size the header, the README and kamailio-example/README.md give
    /// for the mapping (and for a `state_file`): change them with it.
    #[test]
    fn region_size_is_the_documented_one() {
        assert_eq!(std::mem::size_of::<Region>(), 4_603_968);
    }
}
