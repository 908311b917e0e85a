//! Replay detection (`[replay]`): the rule, its configuration and the
//! bounded table in the shared mapping that every worker of one proxy sees.
//!
//! The rule: the first accepted use of a token binds its `(iss, jti)` to the
//! *binding* the proxy passes with the request (Kamailio: the connection,
//! `$conid` for TCP/TLS/WS, `$si:$sp` for UDP; modparam `replay_binding`).
//! A later use with the same binding is a refresh and is accepted; a use with
//! another binding before the entry expires (the token's `exp` + leeway) is a
//! replay: `token_replayed`, 401 `invalid_token` (RFC 6750 section 3.1: the
//! token is "invalid for other reasons"; a new token does help). After the
//! entry expires the token itself is expired, so the question does not arise.
//!
//! The table holds no token content: keys and bindings are 128-bit hashes.
//! It is lock-free (atomics only). Each key has a window of [`PROBES`] slots;
//! an expired entry in the window is reused; a window with neither a free nor
//! an expired slot is "full" and the request fails closed (500
//! `internal_error`, logged).

use crate::core::reason::Reason;
use crate::log;
use serde::Deserialize;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Slots in the shared replay table.
pub const REPLAY_SLOTS: usize = 65_536;
/// Slots probed for one key.
pub const PROBES: usize = 64;

/// One entry of the shared replay table.
#[repr(C)]
pub struct ReplaySlot {
    /// 0 free, 1 being written, 2 ready.
    state: AtomicU32,
    /// Bumped by every writer before it writes the fields (a reader that
    /// sees it change discards what it read).
    seq: AtomicU32,
    key: [AtomicU64; 2],
    binding: [AtomicU64; 2],
    /// Unix time after which the entry is void.
    until: AtomicI64,
}

/// A 128-bit hash (two FNV-1a 64 with different bases), stable across
/// processes and nodes.
pub type Hash128 = [u64; 2];

/// Hash of the parts, each length-prefixed (no ambiguity between parts).
pub fn hash128(parts: &[&[u8]]) -> Hash128 {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    let mut feed = |x: u8| {
        a ^= x as u64;
        a = a.wrapping_mul(0x0100_0000_01b3);
        b ^= x as u64;
        b = b.wrapping_mul(0x0000_0100_0000_01b3 ^ 0x2_0000);
        b = b.rotate_left(5);
    };
    for p in parts {
        for x in (p.len() as u64).to_le_bytes() {
            feed(x);
        }
        for &x in *p {
            feed(x);
        }
    }
    // Final avalanche (splitmix64) so nearby inputs spread over the table.
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    [mix(a), mix(b ^ a.rotate_left(17))]
}

/// Hex form of a hash (Redis keys and values).
pub fn hex(h: &Hash128) -> String {
    format!("{:016x}{:016x}", h[0], h[1])
}

/// What the local table says about a use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    /// Not seen before: now bound to this binding.
    First,
    /// Seen with the same binding: a refresh.
    Same,
    /// Seen with another binding: a replay.
    Other,
    /// No free or expired slot in the key's window: fail closed.
    Full,
}

/// The binding of a live entry for `key` in `s`, read consistently.
fn live_binding(s: &ReplaySlot, key: &Hash128, now: i64) -> Option<Hash128> {
    let seq = s.seq.load(Ordering::SeqCst);
    if s.state.load(Ordering::SeqCst) != 2 {
        return None;
    }
    let k = [
        s.key[0].load(Ordering::SeqCst),
        s.key[1].load(Ordering::SeqCst),
    ];
    let b = [
        s.binding[0].load(Ordering::SeqCst),
        s.binding[1].load(Ordering::SeqCst),
    ];
    let until = s.until.load(Ordering::SeqCst);
    if s.state.load(Ordering::SeqCst) != 2 || s.seq.load(Ordering::SeqCst) != seq {
        return None;
    }
    (k == *key && until >= now).then_some(b)
}

fn ready_match(s: &ReplaySlot, key: &Hash128, now: i64) -> bool {
    live_binding(s, key, now).is_some()
}

/// Wait (bounded) while another process writes `s`.
fn settle(s: &ReplaySlot) {
    let mut spins = 0;
    while s.state.load(Ordering::SeqCst) == 1 && spins < 100_000 {
        std::hint::spin_loop();
        spins += 1;
    }
}

/// Check `key` used with `binding` at `now` against `table`, binding it
/// (until `until`) on first use. Two processes racing on the same new key
/// both write; the entry in the lower slot wins and the other process
/// withdraws its entry and answers [`Local::Other`] (or `Same` when the
/// bindings agree).
pub fn check(
    table: &[ReplaySlot],
    key: &Hash128,
    binding: &Hash128,
    until: i64,
    now: i64,
) -> Local {
    if table.is_empty() {
        return Local::Full;
    }
    let n = table.len();
    let start = (key[0] as usize) % n;
    let mut candidate = None;
    for (i, s) in window(table, key) {
        if let Some(b) = live_binding(s, key, now) {
            return if b == *binding {
                Local::Same
            } else {
                Local::Other
            };
        }
        if candidate.is_none() {
            if let Some(st) = claimable(s, now) {
                candidate = Some((i, st));
            }
        }
    }
    // Claim a free or expired slot (another process may take it first: try
    // the next candidates of the window).
    let mut mine = None;
    if let Some((first, _)) = candidate {
        for p in 0..PROBES.min(n) {
            let i = (first + p) % n;
            if (i + n - start) % n >= PROBES.min(n) {
                break;
            }
            let s = &table[i];
            let claimed = claimable(s, now).is_some_and(|st| {
                s.state
                    .compare_exchange(st, 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            });
            if claimed {
                s.seq.fetch_add(1, Ordering::SeqCst);
                s.key[0].store(key[0], Ordering::SeqCst);
                s.key[1].store(key[1], Ordering::SeqCst);
                s.binding[0].store(binding[0], Ordering::SeqCst);
                s.binding[1].store(binding[1], Ordering::SeqCst);
                s.until.store(until, Ordering::SeqCst);
                s.state.store(2, Ordering::SeqCst);
                mine = Some(i);
                break;
            }
        }
    }
    let Some(mine) = mine else { return Local::Full };
    // Race resolution: an entry for the same key earlier in the window wins
    // (a slot another process is still writing is waited for).
    for (i, s) in window(table, key) {
        if i == mine {
            break;
        }
        settle(s);
        if let Some(b) = live_binding(s, key, now) {
            table[mine].state.store(0, Ordering::SeqCst);
            return if b == *binding {
                Local::Same
            } else {
                Local::Other
            };
        }
    }
    Local::First
}

/// The probe window of `key`: up to [`PROBES`] slots from its home slot,
/// wrapping, with their indices (empty for an empty table).
fn window<'t>(
    table: &'t [ReplaySlot],
    key: &Hash128,
) -> impl Iterator<Item = (usize, &'t ReplaySlot)> {
    let n = table.len();
    let start = if n == 0 { 0 } else { (key[0] as usize) % n };
    (0..PROBES.min(n)).map(move |p| {
        let i = (start + p) % n;
        (i, &table[i])
    })
}

/// A slot another key may take at `now` (free, or expired): its state.
fn claimable(s: &ReplaySlot, now: i64) -> Option<u32> {
    let st = s.state.load(Ordering::SeqCst);
    (st == 0 || (st == 2 && s.until.load(Ordering::SeqCst) < now)).then_some(st)
}

/// Rebind `key` to `binding` (the fleet store named another owner), or
/// insert it. Best effort: a full window leaves the table as it is.
pub fn rebind(table: &[ReplaySlot], key: &Hash128, binding: &Hash128, until: i64, now: i64) {
    for (_, s) in window(table, key) {
        if ready_match(s, key, now)
            && s.state
                .compare_exchange(2, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            s.seq.fetch_add(1, Ordering::SeqCst);
            s.binding[0].store(binding[0], Ordering::SeqCst);
            s.binding[1].store(binding[1], Ordering::SeqCst);
            s.until.store(until, Ordering::SeqCst);
            s.state.store(2, Ordering::SeqCst);
            return;
        }
    }
    let _ = check(table, key, binding, until, now);
}

/// Forget `key` (a first use the fleet store could not confirm, when the
/// store's absence fails closed).
pub fn forget(table: &[ReplaySlot], key: &Hash128, now: i64) {
    for (_, s) in window(table, key) {
        if ready_match(s, key, now) {
            s.state.store(0, Ordering::SeqCst);
        }
    }
}

/// Entries of `table` still in force at `now`.
pub fn live_entries(table: &[ReplaySlot], now: i64) -> usize {
    table
        .iter()
        .filter(|s| s.state.load(Ordering::Relaxed) == 2 && s.until.load(Ordering::Relaxed) >= now)
        .count()
}

/// A token without `jti` while replay detection is on.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MissingJti {
    /// Reject as `missing_claim` (401 `invalid_token`). The default.
    #[default]
    Reject,
    /// Accept without replay detection.
    Allow,
}

/// A first use that the fleet store cannot confirm (store unreachable).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreUnavailable {
    /// Reject with 500 `internal_error` (fail closed). Refreshes this node's
    /// table already knows stay accepted. The default.
    #[default]
    Reject,
    /// Decide on this node's table alone (replays across nodes go unseen
    /// while the store is down; they are logged).
    Local,
}

/// `[replay]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Replay detection on.
    pub enabled: bool,
    /// Tokens without `jti`.
    pub missing_jti: MissingJti,
    /// First uses while the fleet store is unreachable.
    pub store_unavailable: StoreUnavailable,
}

/// A first use on this node, to be claimed in the fleet store (when there
/// is one) before it is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstUse {
    /// Hash of `(iss, jti)`.
    pub key: Hash128,
    /// Hash of `(node id, binding)`.
    pub bind: Hash128,
    /// Unix time after which the entry is void (`exp` + leeway).
    pub until: i64,
}

/// The fleet store's answer to a [`FirstUse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetAnswer {
    /// Ours (first use in the fleet, or already ours).
    Ours,
    /// Bound to this other binding (hash) on some node.
    Theirs(Hash128),
    /// The store could not be asked.
    Unreachable,
}

/// The replay rule for an otherwise accepted token (its `iss`, `jti` and
/// the time `until` which it is accepted: `exp` + leeway), on this node's
/// `table`: `Ok(None)` accepted; `Ok(Some(first))` accepted here as a first
/// use, which the fleet store (if any) confirms through [`after_fleet`];
/// `Err` refused. `node` is this node's id in the fleet (empty without one).
#[allow(clippy::too_many_arguments)]
pub fn decide(
    cfg: &ReplayConfig,
    table: &[ReplaySlot],
    node: &str,
    iss: &str,
    jti: Option<&str>,
    until: i64,
    binding: Option<&[u8]>,
    now: i64,
) -> Result<Option<FirstUse>, Reason> {
    if !cfg.enabled {
        return Ok(None);
    }
    let Some(jti) = jti else {
        return match cfg.missing_jti {
            MissingJti::Allow => Ok(None),
            MissingJti::Reject => Err(Reason::MissingClaim),
        };
    };
    let binding = match binding {
        Some(b) if !b.is_empty() => b,
        _ => {
            log::error("wic-tna: replay detection is on but the proxy passed no binding (Kamailio: modparam replay_binding): rejected");
            return Err(Reason::InternalError);
        }
    };
    let key = hash128(&[iss.as_bytes(), jti.as_bytes()]);
    let bind = hash128(&[node.as_bytes(), binding]);
    match check(table, &key, &bind, until, now) {
        Local::Same => Ok(None),
        Local::Other => Err(Reason::TokenReplayed),
        Local::Full => {
            log::error(
                "wic-tna: the replay table has no free slot for this token: rejected (fail closed)",
            );
            Err(Reason::InternalError)
        }
        Local::First => Ok(Some(FirstUse { key, bind, until })),
    }
}

/// The rule's last step for a [`FirstUse`], given the fleet store's
/// answer: another binding's is a replay (this node's table learns the
/// owner); an unreachable store is handled as `store_unavailable` says.
pub fn after_fleet(
    cfg: &ReplayConfig,
    table: &[ReplaySlot],
    first: &FirstUse,
    answer: FleetAnswer,
    now: i64,
) -> Result<(), Reason> {
    match answer {
        FleetAnswer::Ours => Ok(()),
        FleetAnswer::Theirs(owner) => {
            rebind(table, &first.key, &owner, first.until, now);
            Err(Reason::TokenReplayed)
        }
        FleetAnswer::Unreachable => match cfg.store_unavailable {
            StoreUnavailable::Local => Ok(()),
            StoreUnavailable::Reject => {
                forget(table, &first.key, now);
                Err(Reason::InternalError)
            }
        },
    }
}

/// The `replay` part of the stats JSON.
pub fn stats(cfg: &ReplayConfig, table: &[ReplaySlot], now: i64) -> serde_json::Value {
    serde_json::json!({
        "enabled": cfg.enabled,
        "entries": live_entries(table, now),
        "capacity": REPLAY_SLOTS,
    })
}
