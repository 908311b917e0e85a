//! State across a fleet of eP-CSCFs (`[fleet]`), through Redis.
//!
//! Keys (all under `key_prefix`, default `wic-tna:`):
//! - `<prefix>barring`: hash, issuer -> `1` barred / `0` unbarred;
//! - `<prefix>barring:version`: counter, incremented with every change
//!   (the hash and the counter are written in one MULTI/EXEC);
//! - `<prefix>replay:<hex128(iss, jti)>`: the owning binding (hex of a hash
//!   of node id and binding), `SET NX PX` with the token's remaining
//!   lifetime, so it expires with the token.
//!
//! Connections are synchronous with connect, read and write timeouts (a
//! host name is resolved within the connect timeout by [`crate::edge::dns`]); no
//! thread of their own, no async runtime. Each process makes its own connection lazily,
//! on first use (after the proxy's fork), and drops it on any error; after
//! an error it does not try again for [`RETRY_AFTER`], so an unreachable
//! store costs a worker at most one timeout per second.

use crate::core::config::FleetConfig;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Pause after a failure before the next connection attempt.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A connection to the store within `connect_timeout`, name resolution
/// included: a host name is looked up through [`crate::edge::dns`] (bounded by
/// the same timeout, cached), then its addresses (at most 4) are tried in
/// turn with what is left of it. The redis crate would call getaddrinfo
/// itself, which no timeout bounds, in a SIP worker.
fn connect(cfg: &FleetConfig) -> Result<redis::Connection, String> {
    use redis::IntoConnectionInfo;
    let deadline = Instant::now() + cfg.connect_timeout;
    let info = cfg
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| e.to_string())?;
    let (host, port) = match &info.addr {
        redis::ConnectionAddr::Tcp(host, port) => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            *port,
        ),
        // A Unix socket (TLS is not built in): nothing to resolve.
        _ => {
            let client = redis::Client::open(info).map_err(|e| e.to_string())?;
            return client
                .get_connection_with_timeout(cfg.connect_timeout)
                .map_err(|e| e.to_string());
        }
    };
    let addrs = crate::edge::dns::lookup(&host, deadline)?;
    let mut last = format!("no address for {host}");
    for ip in addrs.iter().take(4) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "connecting to {host}:{port} did not finish within {} ms",
                cfg.connect_timeout.as_millis()
            ));
        }
        let mut one = info.clone();
        one.addr = redis::ConnectionAddr::Tcp(ip.to_string(), port);
        match redis::Client::open(one).and_then(|c| c.get_connection_with_timeout(left)) {
            Ok(c) => return Ok(c),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// One process's connection to the store, made lazily.
pub struct Store {
    conn: Option<(String, redis::Connection)>,
    retry_at: Option<Instant>,
    /// The store was reachable at the last attempt (for logging changes).
    pub up: Option<bool>,
}

/// Result of a replay claim in the store.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours (first use, or already ours).
    Ours,
    /// Owned by this other binding (hex).
    Theirs(String),
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// No connection yet.
    pub fn new() -> Store {
        Store {
            conn: None,
            retry_at: None,
            up: None,
        }
    }

    fn connection(
        &mut self,
        cfg: &FleetConfig,
        io: Duration,
    ) -> Result<&mut redis::Connection, String> {
        if self
            .conn
            .as_ref()
            .map(|(u, _)| u != &cfg.url)
            .unwrap_or(false)
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            if let Some(t) = self.retry_at {
                if Instant::now() < t {
                    return Err("fleet store unreachable (waiting before the next attempt)".into());
                }
            }
            let c = connect(cfg)?;
            self.conn = Some((cfg.url.clone(), c));
        }
        let Some((_, c)) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        c.set_read_timeout(Some(io)).map_err(|e| e.to_string())?;
        c.set_write_timeout(Some(io)).map_err(|e| e.to_string())?;
        Ok(c)
    }

    fn run<T>(
        &mut self,
        cfg: &FleetConfig,
        io: Duration,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let r = match self.connection(cfg, io) {
            Ok(c) => f(c).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match &r {
            Ok(_) => {
                self.retry_at = None;
                self.up = Some(true);
            }
            Err(_) => {
                self.conn = None;
                if self.retry_at.map(|t| Instant::now() >= t).unwrap_or(true) {
                    self.retry_at = Some(Instant::now() + RETRY_AFTER);
                }
                self.up = Some(false);
            }
        }
        r
    }

    /// Write a barring change for the whole fleet.
    pub fn write_barring(
        &mut self,
        cfg: &FleetConfig,
        iss: &str,
        barred: bool,
    ) -> Result<u64, String> {
        let hash = format!("{}barring", cfg.key_prefix);
        let ver = format!("{}barring:version", cfg.key_prefix);
        let v = if barred { "1" } else { "0" };
        // A barring write is an operator's action: allow it the refresher's timeout.
        self.run(cfg, cfg.refresher_timeout, |c| {
            let (n,): (u64,) = redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&hash)
                .arg(iss)
                .arg(v)
                .ignore()
                .cmd("INCR")
                .arg(&ver)
                .query(c)?;
            Ok(n)
        })
    }

    /// The barring version (0 when never written).
    pub fn barring_version(&mut self, cfg: &FleetConfig) -> Result<u64, String> {
        let ver = format!("{}barring:version", cfg.key_prefix);
        self.run(cfg, cfg.refresher_timeout, |c| {
            let v: Option<u64> = redis::cmd("GET").arg(&ver).query(c)?;
            Ok(v.unwrap_or(0))
        })
    }

    /// The barring hash and its version, read together.
    pub fn barring(&mut self, cfg: &FleetConfig) -> Result<(u64, HashMap<String, bool>), String> {
        let hash = format!("{}barring", cfg.key_prefix);
        let ver = format!("{}barring:version", cfg.key_prefix);
        self.run(cfg, cfg.refresher_timeout, |c| {
            let (v, m): (Option<u64>, HashMap<String, String>) = redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(&ver)
                .cmd("HGETALL")
                .arg(&hash)
                .query(c)?;
            Ok((
                v.unwrap_or(0),
                m.into_iter().map(|(k, v)| (k, v == "1")).collect(),
            ))
        })
    }

    /// Claim `key` for `binding` (hex) for `ttl_ms`: `SET NX PX`, and `GET`
    /// when it exists.
    pub fn claim(
        &mut self,
        cfg: &FleetConfig,
        key: &str,
        binding: &str,
        ttl_ms: u64,
    ) -> Result<Claim, String> {
        let k = format!("{}replay:{}", cfg.key_prefix, key);
        self.run(cfg, cfg.timeout, |c| {
            let set: Option<String> = redis::cmd("SET")
                .arg(&k)
                .arg(binding)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms.max(1))
                .query(c)?;
            if set.is_some() {
                return Ok(Claim::Ours);
            }
            let owner: Option<String> = redis::cmd("GET").arg(&k).query(c)?;
            Ok(match owner {
                Some(o) if o == binding => Claim::Ours,
                Some(o) => Claim::Theirs(o),
                // Expired between SET and GET: the token is at its end anyway.
                None => Claim::Ours,
            })
        })
    }
}

// ---------------------------------------------------------------------------
// What the workers and the refresher do with the store.

use crate::core::replay::{hex, FirstUse, FleetAnswer, Hash128, StoreUnavailable};
use crate::edge::shared::Shared;
use crate::log;
use std::sync::{Mutex, MutexGuard};

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

fn unhex(s: &str) -> Option<Hash128> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    Some([
        u64::from_str_radix(&s[..16], 16).ok()?,
        u64::from_str_radix(&s[16..], 16).ok()?,
    ])
}

const STATE_UP: u32 = 1;
const STATE_DOWN: u32 = 2;

/// Claim a first use (src/core/replay.rs) in the store, for the token's
/// remaining lifetime. Changes of the store's reachability are logged;
/// `policy` is what the replay rule then does with first uses (for the log).
pub fn claim_first_use(
    store: &Mutex<Store>,
    f: &FleetConfig,
    first: &FirstUse,
    now: i64,
    policy: StoreUnavailable,
) -> FleetAnswer {
    let ttl_ms = ((first.until - now).max(1) as u64).saturating_mul(1000);
    let mut store = lock(store);
    let was_up = store.up;
    let r = store.claim(f, &hex(&first.key), &hex(&first.bind), ttl_ms);
    drop(store);
    match r {
        Ok(Claim::Ours) => {
            if was_up == Some(false) {
                log::info("wic-tna: fleet store reachable again (replay checks)");
            }
            FleetAnswer::Ours
        }
        Ok(Claim::Theirs(owner)) => FleetAnswer::Theirs(unhex(&owner).unwrap_or([0, 0])),
        Err(e) => {
            if was_up != Some(false) {
                log::warn(&format!(
                    "wic-tna: fleet store unreachable for replay checks ({e}); first uses are {}",
                    match policy {
                        StoreUnavailable::Reject => "rejected until it is back",
                        StoreUnavailable::Local => "checked on this node only until it is back",
                    }
                ));
            }
            FleetAnswer::Unreachable
        }
    }
}

/// What one barring poll did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    /// Some issuer's barring changed in the shared state.
    pub changed: bool,
    /// The store could not be read, or a change not applied (logged).
    pub failed: bool,
}

/// The refresher's part: poll the fleet's barring (one `GET` of the
/// version when nothing changed) and apply changes to the shared state.
pub fn poll_barring(store: &Mutex<Store>, f: &FleetConfig, sh: &Shared, now: i64) -> Poll {
    let mut poll = Poll::default();
    let (prev, _) = sh.fleet_state();
    let known = sh.fleet_bar_version();
    let r = {
        let mut store = lock(store);
        if prev != STATE_UP {
            // Start, or back after an outage: read everything.
            store.barring(f).map(Some)
        } else {
            match store.barring_version(f) {
                Ok(v) if v == known => Ok(None),
                Ok(_) => store.barring(f).map(Some),
                Err(e) => Err(e),
            }
        }
    };
    match r {
        Ok(read) => {
            sh.set_fleet_state(STATE_UP, now.max(0) as u64);
            if prev == STATE_DOWN {
                log::info("wic-tna: fleet store reachable again; barring resynchronised");
            }
            if let Some((ver, map)) = read {
                let cur = sh.barring_overrides();
                let mut names: Vec<_> = map.into_iter().collect();
                names.sort();
                for (iss, barred) in names {
                    if cur.get(&iss) != Some(&barred) {
                        match sh.set_barring(&iss, Some(barred)) {
                            Ok(()) => {
                                poll.changed = true;
                                log::info(&format!(
                                    "wic-tna: issuer {iss} {} (from the fleet)",
                                    if barred { "barred" } else { "unbarred" }
                                ));
                            }
                            Err(e) => {
                                poll.failed = true;
                                log::error(&format!(
                                    "wic-tna: fleet barring of {iss} not applied: {e}"
                                ));
                            }
                        }
                    }
                }
                sh.set_fleet_bar_version(ver);
            }
        }
        Err(e) => {
            poll.failed = true;
            if prev != STATE_DOWN {
                sh.set_fleet_state(STATE_DOWN, now.max(0) as u64);
                log::warn(&format!(
                    "wic-tna: fleet store unreachable, keeping the last known barring: {e}"
                ));
            }
        }
    }
    poll
}

/// Publish a barring change to the fleet (after it is in force here).
pub fn publish_barring(
    store: &Mutex<Store>,
    f: &FleetConfig,
    iss: &str,
    barred: bool,
) -> Result<(), String> {
    let what = if barred { "barred" } else { "unbarred" };
    match lock(store).write_barring(f, iss, barred) {
        Ok(_) => Ok(()),
        Err(e) => {
            log::error(&format!("wic-tna: issuer {iss} {what} on this node only: the fleet store could not be written: {e}"));
            Err(format!(
                "issuer {iss} {what} on this node only: the fleet store could not be written: {e}"
            ))
        }
    }
}

/// The `fleet` part of the stats JSON.
pub fn stats(f: Option<&FleetConfig>, sh: &Shared) -> serde_json::Value {
    let Some(f) = f else {
        return serde_json::json!({ "configured": false });
    };
    let (state, since) = sh.fleet_state();
    serde_json::json!({
        "configured": true,
        "node_id": f.node_id,
        "store": match state { STATE_UP => "up", STATE_DOWN => "down", _ => "unknown" },
        "store_since": since,
        "barring_version": sh.fleet_bar_version(),
    })
}
