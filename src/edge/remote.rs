//! Remote trust: key sets by URL (`jwks_url`) and RFC 7662 introspection of
//! reference tokens.
//!
//! **Key sets by URL.** Only the refresher ([`crate::Context::tick`], one
//! process) talks to a `jwks_url`. It checks that what it got parses with
//! the same rules as a JWKS file (keys bound to kids, algorithms from the
//! configuration), writes it atomically (temporary file + rename) to the
//! issuer's cache file, and then bumps the issuer's generation in the shared
//! state. A worker that needs the issuer's keys compares that generation
//! with the one it holds and, when it changed, reads and parses the file
//! once: key sets are parsed once per change per process, never per
//! request. A set that does not parse is never published, so it never
//! replaces a good one. The last good set is used while the endpoint fails,
//! up to `max_stale` seconds after it was last fetched or confirmed (200 or
//! 304); after that the issuer's tokens get `keys_unavailable` (500) unless
//! a configured key decides. A worker that meets an unknown `kid` only
//! records the time in the shared state and rejects at once; the refresher
//! re-fetches at most once per `refetch_interval`.
//!
//! At start-up nothing is fetched in the proxy's main process: the issuer's
//! keys are unavailable (fail closed, 500) until the refresher's first tick
//! (within `refresher_interval`, 250 ms by default) has fetched them, or has
//! adopted the cache file of a previous run that is younger than
//! `max_stale` (its modification time is the time it was last confirmed).
//!
//! **Introspection.** Done by the SIP worker itself (it must answer this
//! request), bounded by the configured timeout and a circuit breaker whose
//! state (consecutive failures, open-until) is in the shared state, so all
//! workers see it open at once. Positive answers are cached per process
//! for `positive_ttl` seconds and never past `exp`, negative ones for
//! `negative_ttl` seconds.

use crate::core::config::{
    Config, Discovery, Introspection, Issuer, RemoteJwks, METADATA_MAX_AGE, METADATA_MAX_REFRESH,
    METADATA_MAX_SIZE, METADATA_MIN_REFRESH, METADATA_RETRY, METADATA_TIMEOUT,
};
use crate::core::json::StrictObject;
use crate::core::keys::KeySet;
use crate::core::reason::Reason;
use crate::core::token::{self, Failure, RemoteKeys, Verified};
use crate::core::url::Url;
use crate::edge::http::{self, Request};
use crate::edge::shared::{Remote, Shared};
use crate::log;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// A key set as one process holds it.
struct Held {
    gen: u64,
    file: PathBuf,
    /// `None`: that generation's file could not be used (logged once).
    set: Option<Arc<KeySet>>,
}

/// The refresher's schedule for one issuer.
struct Sched {
    url: String,
    next_at: i64,
    etag: Option<String>,
    last_refetch: i64,
    seen_request: u64,
}

struct Negative {
    until: i64,
    reason: Reason,
}

/// A positive introspection answer: used until `until` (`positive_ttl`
/// after it was given), then asked again; kept (for its `exp`, so that an
/// expired token is named `expired`) until the server answers again or
/// the token expires.
struct Positive {
    until: i64,
    verified: Arc<Verified>,
}

/// The URLs an issuer's metadata gave (those its configuration asks for).
struct Discovered {
    jwks: Option<Url>,
    introspection: Option<Url>,
}

/// Discovered URLs as one process holds them.
struct HeldMeta {
    gen: u64,
    file: PathBuf,
    /// `None`: that generation's file could not be used (logged once).
    urls: Option<Arc<Discovered>>,
}

/// The refresher's metadata schedule for one issuer.
struct MetaSched {
    /// What it was made for (cache file and locations): a reload that
    /// changes them starts afresh.
    key: String,
    next_at: i64,
}

/// Per-process remote trust state of a [`crate::Context`].
#[derive(Default)]
pub struct RemoteState {
    held: Mutex<HashMap<String, Held>>,
    sched: Mutex<HashMap<String, Sched>>,
    meta: Mutex<HashMap<String, HeldMeta>>,
    meta_sched: Mutex<HashMap<String, MetaSched>>,
    positive: Mutex<HashMap<Box<str>, Positive>>,
    negative: Mutex<HashMap<Box<str>, Negative>>,
}

/// What one refresher pass did.
#[derive(Default)]
pub struct Pass {
    /// A key set was published.
    pub published: bool,
    /// A fetch failed or was refused.
    pub failed: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_file(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > limit as u64 {
        return Err(format!("{} is larger than {limit} bytes", path.display()));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Write `data` to `path` atomically: a temporary file in the same
/// directory, flushed, then renamed over `path`.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(name);
    let res = (|| {
        let mut f = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?
        };
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

impl RemoteState {
    /// Forget the per-process caches (after a reload).
    pub fn clear_caches(&self) {
        lock(&self.positive).clear();
        lock(&self.negative).clear();
    }

    /// Is the issuer's fetched key set usable now (published and not older
    /// than `max_stale`)? `true` for an issuer without `jwks_url`.
    pub fn keys_fresh(
        &self,
        issuer: &Issuer,
        shared: &Shared,
        slot: Option<usize>,
        now: i64,
    ) -> bool {
        let Some(rj) = &issuer.remote_jwks else {
            return true;
        };
        let Some(slot) = slot else { return false };
        let gen = shared.remote(slot, Remote::JwksGen).load(Ordering::Acquire);
        let at = shared
            .remote(slot, Remote::JwksFetchedAt)
            .load(Ordering::Acquire) as i64;
        gen != 0 && now.saturating_sub(at) <= rj.max_stale as i64
    }

    /// The issuer's fetched key set for a verification in a worker. Reads
    /// and parses the cache file only when the shared generation changed.
    pub fn keys_for(
        &self,
        issuer: &Issuer,
        shared: &Shared,
        slot: Option<usize>,
        now: i64,
    ) -> RemoteKeys {
        let Some(rj) = &issuer.remote_jwks else {
            return RemoteKeys::None;
        };
        let Some(slot) = slot else {
            return RemoteKeys::Unavailable;
        };
        if !self.keys_fresh(issuer, shared, Some(slot), now) {
            return RemoteKeys::Unavailable;
        }
        let gen = shared.remote(slot, Remote::JwksGen).load(Ordering::Acquire);
        let mut held = lock(&self.held);
        if let Some(h) = held.get(&*issuer.iss) {
            if h.gen == gen && h.file == rj.cache_file {
                return h
                    .set
                    .clone()
                    .map_or(RemoteKeys::Unavailable, RemoteKeys::Set);
            }
        }
        let loaded = read_file(&rj.cache_file, rj.max_size).and_then(|data| {
            KeySet::parse(&data, &rj.algs, &rj.cache_file.display().to_string())
                .map(|(s, _)| Arc::new(s))
        });
        let set = match loaded {
            Ok(s) => Some(s),
            Err(e) => {
                log::error(&format!("wic-tna: issuer {}: key set generation {gen} not usable, previous one kept: {e}", issuer.iss));
                // Keep what this process had (a set that fails to parse
                // never replaces a good one); do not retry before the next
                // generation.
                held.get(&*issuer.iss).and_then(|h| h.set.clone())
            }
        };
        held.insert(
            issuer.iss.to_string(),
            Held {
                gen,
                file: rj.cache_file.clone(),
                set: set.clone(),
            },
        );
        set.map_or(RemoteKeys::Unavailable, RemoteKeys::Set)
    }

    /// A worker saw an unknown `kid` for an issuer with a `jwks_url`: ask
    /// the refresher for a re-fetch (it rate-limits).
    pub fn request_refetch(&self, shared: &Shared, slot: Option<usize>, now: i64) {
        if let Some(slot) = slot {
            shared
                .remote(slot, Remote::RefetchRequested)
                .fetch_max(now.max(1) as u64, Ordering::AcqRel);
        }
    }

    /// The refresher's pass over every issuer with metadata discovery or
    /// a key set by URL: the metadata first, then the key set (at the
    /// metadata's `jwks_uri` when the configuration gives no `jwks_url`).
    pub fn refresh(
        &self,
        cfg: &Config,
        shared: &Shared,
        slot_of: &dyn Fn(&str) -> Option<usize>,
        now: i64,
    ) -> Pass {
        let mut pass = Pass::default();
        for issuer in &cfg.issuers {
            if issuer.remote_jwks.is_none() && issuer.discovery.is_none() {
                continue;
            }
            let Some(slot) = slot_of(&issuer.iss) else {
                log::error(&format!(
                    "wic-tna: issuer {}: no slot in the shared state; key set and metadata not fetched",
                    issuer.iss
                ));
                pass.failed = true;
                continue;
            };
            if let Some(d) = &issuer.discovery {
                self.refresh_metadata(issuer, d, shared, slot, now, &mut pass);
            }
            let Some(rj) = &issuer.remote_jwks else {
                continue;
            };
            let discovered;
            let url = match &rj.url {
                Some(u) => u,
                None => {
                    discovered = self.discovered(issuer, shared, slot);
                    match discovered.as_ref().and_then(|d| d.jwks.as_ref()) {
                        Some(u) => u,
                        // No metadata yet: its fetch failed (counted and
                        // logged); the keys stay unavailable.
                        None => continue,
                    }
                }
            };
            self.refresh_one(issuer, rj, url, shared, slot, now, &mut pass);
        }
        pass
    }

    /// The URLs of the issuer's metadata as this process holds them:
    /// re-read from the cache file only when the shared generation
    /// changed. `None`: no usable metadata yet.
    fn discovered(&self, issuer: &Issuer, shared: &Shared, slot: usize) -> Option<Arc<Discovered>> {
        let d = issuer.discovery.as_ref()?;
        let gen = shared
            .remote(slot, Remote::MetadataGen)
            .load(Ordering::Acquire);
        if gen == 0 {
            return None;
        }
        let mut held = lock(&self.meta);
        if let Some(h) = held.get(&*issuer.iss) {
            if h.gen == gen && h.file == d.cache_file {
                return h.urls.clone();
            }
        }
        let loaded = read_file(&d.cache_file, METADATA_MAX_SIZE)
            .and_then(|b| parse_metadata(&b, issuer, d).map(|(u, _)| Arc::new(u)));
        let urls = match loaded {
            Ok(u) => Some(u),
            Err(e) => {
                log::error(&format!(
                    "wic-tna: issuer {}: metadata generation {gen} not usable, previous one kept: {e}",
                    issuer.iss
                ));
                held.get(&*issuer.iss).and_then(|h| h.urls.clone())
            }
        };
        held.insert(
            issuer.iss.to_string(),
            HeldMeta {
                gen,
                file: d.cache_file.clone(),
                urls: urls.clone(),
            },
        );
        urls
    }

    /// The refresher fetches the issuer's metadata when it is due: the
    /// first location that answers 200 with a document for this issuer
    /// wins; a document that changed is written to the cache file and
    /// published (a new generation), the same one only confirmed. On
    /// failure the last good one stays in use.
    fn refresh_metadata(
        &self,
        issuer: &Issuer,
        d: &Discovery,
        shared: &Shared,
        slot: usize,
        now: i64,
        pass: &mut Pass,
    ) {
        let key = std::iter::once(d.cache_file.display().to_string())
            .chain(d.urls.iter().map(|u| u.to_string()))
            .collect::<Vec<_>>()
            .join("|");
        let mut sched = lock(&self.meta_sched);
        if !matches!(sched.get(&*issuer.iss), Some(s) if s.key == key) {
            sched.insert(issuer.iss.to_string(), MetaSched { key, next_at: now });
            if shared
                .remote(slot, Remote::MetadataGen)
                .load(Ordering::Acquire)
                == 0
            {
                adopt_metadata(issuer, d, shared, slot, now, pass);
            }
        }
        let Some(s) = sched.get_mut(&*issuer.iss) else {
            return;
        };
        if now < s.next_at {
            return;
        }
        let Some(tls) = &issuer.tls else { return };
        let headers = ["Accept: application/json".to_owned()];
        let mut why = Vec::new();
        for url in &d.urls {
            let req = Request {
                method: "GET",
                url,
                headers: &headers,
                body: None,
                timeout: METADATA_TIMEOUT,
                max_body: METADATA_MAX_SIZE,
                tls,
            };
            let resp = match http::send(&req) {
                Ok(r) if r.status == 200 => r,
                Ok(r) => {
                    why.push(format!("{url}: HTTP status {}", r.status));
                    continue;
                }
                Err(e) => {
                    why.push(format!("{url}: {e}"));
                    continue;
                }
            };
            let normalized = match parse_metadata(&resp.body, issuer, d) {
                Ok((_, n)) => n,
                Err(e) => {
                    why.push(format!("{url}: {e}; not used"));
                    continue;
                }
            };
            let gen = shared
                .remote(slot, Remote::MetadataGen)
                .load(Ordering::Acquire);
            let same = gen != 0
                && read_file(&d.cache_file, METADATA_MAX_SIZE).is_ok_and(|b| b == normalized);
            if !same {
                if let Err(e) = write_atomic(&d.cache_file, &normalized) {
                    why.push(format!("cannot write {}: {e}", d.cache_file.display()));
                    break;
                }
                let gen = shared
                    .remote(slot, Remote::MetadataGen)
                    .fetch_add(1, Ordering::AcqRel)
                    + 1;
                log::info(&format!(
                    "wic-tna: issuer {}: metadata from {url}: generation {gen} published",
                    issuer.iss
                ));
                pass.published = true;
            }
            shared
                .remote(slot, Remote::MetadataFetchedAt)
                .store(now.max(1) as u64, Ordering::Release);
            count(shared, slot, Remote::MetadataFetchOk);
            let age = resp
                .max_age()
                .unwrap_or(3600)
                .clamp(METADATA_MIN_REFRESH, METADATA_MAX_REFRESH);
            s.next_at = now + age as i64;
            return;
        }
        count(shared, slot, Remote::MetadataFetchFailed);
        log::error(&format!(
            "wic-tna: issuer {}: metadata fetch failed, last good one kept: {}",
            issuer.iss,
            why.join("; ")
        ));
        s.next_at = now + METADATA_RETRY as i64;
        pass.failed = true;
    }

    fn publish(&self, issuer: &Issuer, shared: &Shared, slot: usize, fetched_at: i64) {
        shared
            .remote(slot, Remote::JwksFetchedAt)
            .store(fetched_at.max(1) as u64, Ordering::Release);
        let gen = shared
            .remote(slot, Remote::JwksGen)
            .fetch_add(1, Ordering::AcqRel)
            + 1;
        log::info(&format!(
            "wic-tna: issuer {}: key set generation {gen} published",
            issuer.iss
        ));
    }

    #[allow(clippy::too_many_arguments)]
    fn refresh_one(
        &self,
        issuer: &Issuer,
        rj: &RemoteJwks,
        url: &Url,
        shared: &Shared,
        slot: usize,
        now: i64,
        pass: &mut Pass,
    ) {
        let url_text = url.to_string();
        let mut sched = lock(&self.sched);
        let fresh_start = !matches!(sched.get(&*issuer.iss), Some(s) if s.url == url_text);
        if fresh_start {
            sched.insert(
                issuer.iss.to_string(),
                Sched {
                    url: url_text,
                    next_at: now,
                    etag: None,
                    last_refetch: i64::MIN / 2,
                    seen_request: 0,
                },
            );
            // A cache file left by a previous run, young enough: use it
            // until the first fetch succeeds.
            if shared.remote(slot, Remote::JwksGen).load(Ordering::Acquire) == 0 {
                self.adopt_cache_file(issuer, rj, shared, slot, now, pass);
            }
        }
        let Some(s) = sched.get_mut(&*issuer.iss) else {
            return;
        };
        let mut due = now >= s.next_at;
        let requested = shared
            .remote(slot, Remote::RefetchRequested)
            .load(Ordering::Acquire);
        if requested > s.seen_request
            && now.saturating_sub(s.last_refetch) >= rj.refetch_interval as i64
        {
            s.seen_request = requested;
            s.last_refetch = now;
            if !due {
                shared
                    .remote(slot, Remote::JwksRefetchUnknownKid)
                    .fetch_add(1, Ordering::Relaxed);
                log::info(&format!(
                    "wic-tna: issuer {}: unknown kid seen, re-fetching the key set",
                    issuer.iss
                ));
            }
            due = true;
        }
        if !due {
            return;
        }
        let have_set = shared.remote(slot, Remote::JwksGen).load(Ordering::Acquire) != 0
            && rj.cache_file.exists();
        let mut headers = vec!["Accept: application/jwk-set+json, application/json".to_owned()];
        if let (true, Some(etag)) = (have_set, &s.etag) {
            headers.push(format!("If-None-Match: {etag}"));
        }
        let Some(tls) = &issuer.tls else { return };
        let req = Request {
            method: "GET",
            url,
            headers: &headers,
            body: None,
            timeout: rj.timeout,
            max_body: rj.max_size,
            tls,
        };
        let retry_at = now + rj.min_refresh as i64;
        let fail = |s: &mut Sched, pass: &mut Pass, what: String| {
            shared
                .remote(slot, Remote::JwksFetchFailed)
                .fetch_add(1, Ordering::Relaxed);
            log::error(&format!(
                "wic-tna: issuer {}: key set fetch failed, last good set kept: {what}",
                issuer.iss
            ));
            s.next_at = retry_at;
            pass.failed = true;
        };
        let resp = match http::send(&req) {
            Ok(r) => r,
            Err(e) => return fail(s, pass, e.to_string()),
        };
        let next = |r: &http::Response| {
            let age = r
                .max_age()
                .unwrap_or(300)
                .clamp(rj.min_refresh, rj.max_refresh);
            now + age as i64
        };
        // A good set taken (only once it is on disk, if new): its ETag for
        // the next If-None-Match, the next fetch after max-age.
        let fetched = |s: &mut Sched| {
            s.etag = resp
                .header("etag")
                .filter(|e| http_token_safe(e))
                .map(str::to_owned);
            s.next_at = next(&resp);
            shared
                .remote(slot, Remote::JwksFetchOk)
                .fetch_add(1, Ordering::Relaxed);
        };
        match resp.status {
            304 if have_set => {
                shared
                    .remote(slot, Remote::JwksNotModified)
                    .fetch_add(1, Ordering::Relaxed);
                confirmed(rj, shared, slot, now);
                s.next_at = next(&resp);
            }
            200 => match KeySet::parse(&resp.body, &rj.algs, url.path.as_str()) {
                Ok((_, notes)) => {
                    // Logged here, by the refresher, once per fetch (the
                    // workers parse the published file without logging).
                    for n in notes {
                        log::log(
                            n.level(),
                            &format!("wic-tna: issuer {}: key set: {n}", issuer.iss),
                        );
                    }
                    // The same set as published (e.g. a one-off `wic-tna
                    // refresh`, which has no ETag yet): a confirmation, as a
                    // 304 is; a new generation would make every worker
                    // re-read the file and empty its verified-token cache.
                    if have_set
                        && read_file(&rj.cache_file, rj.max_size).is_ok_and(|d| d == resp.body)
                    {
                        fetched(s);
                        confirmed(rj, shared, slot, now);
                        return;
                    }
                    if let Err(e) = write_atomic(&rj.cache_file, &resp.body) {
                        return fail(
                            s,
                            pass,
                            format!("cannot write {}: {e}", rj.cache_file.display()),
                        );
                    }
                    fetched(s);
                    self.publish(issuer, shared, slot, now);
                    pass.published = true;
                }
                Err(e) => {
                    shared
                        .remote(slot, Remote::JwksRejected)
                        .fetch_add(1, Ordering::Relaxed);
                    fail(
                        s,
                        pass,
                        format!("the key set does not parse ({e}); not used"),
                    );
                }
            },
            code => fail(s, pass, format!("HTTP status {code}")),
        }
    }

    fn adopt_cache_file(
        &self,
        issuer: &Issuer,
        rj: &RemoteJwks,
        shared: &Shared,
        slot: usize,
        now: i64,
        pass: &mut Pass,
    ) {
        let Some(mtime) = cache_file_mtime(&rj.cache_file) else {
            return;
        };
        if now.saturating_sub(mtime) > rj.max_stale as i64 {
            return;
        }
        match read_file(&rj.cache_file, rj.max_size)
            .and_then(|d| KeySet::parse(&d, &rj.algs, "cache"))
        {
            Ok(_) => {
                self.publish(issuer, shared, slot, mtime.min(now));
                pass.published = true;
            }
            Err(e) => log::warn(&format!(
                "wic-tna: issuer {}: cache file not used: {e}",
                issuer.iss
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    /// Introspect a reference token attributed to `issuer` (RFC 7662), with
    /// the caches and the circuit breaker, and apply the claim rules to the
    /// answer.
    pub fn introspect(
        &self,
        cfg: &Config,
        issuer: &Issuer,
        token: &str,
        shared: &Shared,
        slot: Option<usize>,
        now: i64,
        barred: &dyn Fn(&Issuer) -> bool,
    ) -> Result<Arc<Verified>, Failure> {
        let with_iss = |reason: Reason| Failure {
            reason,
            iss: Some(issuer.iss.clone()),
        };
        // a hint only (Verified::issuer_index): checked against iss on use
        let issuer_index = cfg
            .issuer_index
            .get(&*issuer.iss)
            .copied()
            .unwrap_or(usize::MAX);
        let Some(x) = &issuer.introspection else {
            return Err(with_iss(Reason::InternalError));
        };
        let Some(slot) = slot else {
            return Err(with_iss(Reason::IntrospectionUnavailable));
        };
        if token.len() > cfg.max_token_size {
            return Err(with_iss(Reason::TokenTooLarge));
        }
        if let Some(reason) = self.cached_refusal(token, shared, slot, now) {
            return Err(with_iss(reason));
        }
        match self.cached_verified(cfg, token, shared, slot, now) {
            Some(Ok(v)) => {
                if barred(issuer) {
                    return Err(with_iss(Reason::IssuerBarred));
                }
                return Ok(v);
            }
            Some(Err(reason)) => return Err(with_iss(reason)),
            None => {}
        }
        let discovered;
        let url = match &x.url {
            Some(u) => u,
            None => {
                discovered = self.discovered(issuer, shared, slot);
                match discovered.as_ref().and_then(|d| d.introspection.as_ref()) {
                    Some(u) => u,
                    None => {
                        count(shared, slot, Remote::IntrospectionFailed);
                        return Err(with_iss(Reason::IntrospectionUnavailable));
                    }
                }
            }
        };
        let body =
            call_through_breaker(x, url, issuer, token, shared, slot, now).map_err(with_iss)?;
        let Some(result) = verdict(cfg, issuer_index, issuer, &body, now, barred) else {
            // Answered 200 but no verdict: garbage.
            count(shared, slot, Remote::IntrospectionFailed);
            return Err(with_iss(Reason::IntrospectionUnavailable));
        };
        self.remember(x, token, result, now).map_err(with_iss)
    }

    /// The refusal cached for `token`, while it holds.
    fn cached_refusal(
        &self,
        token: &str,
        shared: &Shared,
        slot: usize,
        now: i64,
    ) -> Option<Reason> {
        let mut neg = lock(&self.negative);
        let n = neg.get(token)?;
        if now < n.until {
            count(shared, slot, Remote::IntrospectionCacheHits);
            return Some(n.reason);
        }
        neg.remove(token);
        None
    }

    /// The verified token cached for `token` while its answer is fresh
    /// (`positive_ttl`) and the token valid (the caller checks the barring
    /// again: it can change at any time); `expired` once past the `exp`
    /// the server gave (asked again, a server says only `active: false`).
    /// `None`: ask the server.
    fn cached_verified(
        &self,
        cfg: &Config,
        token: &str,
        shared: &Shared,
        slot: usize,
        now: i64,
    ) -> Option<Result<Arc<Verified>, Reason>> {
        let mut pos = lock(&self.positive);
        let p = pos.get(token)?;
        let v = &p.verified;
        if now > v.exp.saturating_add(cfg.leeway as i64) {
            pos.remove(token);
            drop(pos);
            count(shared, slot, Remote::IntrospectionCacheHits);
            return Some(Err(Reason::Expired));
        }
        if now < p.until && now >= v.valid_from {
            let v = v.clone();
            drop(pos);
            count(shared, slot, Remote::IntrospectionCacheHits);
            return Some(Ok(v));
        }
        // Stale: kept (for its exp) until the server answers again.
        None
    }

    /// The answer about `token` into the caches: a verified token for
    /// `positive_ttl` (so that a revocation at the authorization server is
    /// seen within that time) and never past its `exp`, a refusal for
    /// `negative_ttl` (not a barring: it can be lifted at any time). Each cache is emptied of what expired when
    /// full, and cleared if that is not enough.
    fn remember(
        &self,
        x: &Introspection,
        token: &str,
        result: Result<Verified, Reason>,
        now: i64,
    ) -> Result<Arc<Verified>, Reason> {
        match result {
            Ok(v) => {
                let v = Arc::new(v);
                if x.cache_size > 0 {
                    let mut pos = lock(&self.positive);
                    if pos.len() >= x.cache_size {
                        pos.retain(|_, p| p.verified.exp > now);
                        if pos.len() >= x.cache_size {
                            pos.clear();
                        }
                    }
                    let until = now.saturating_add(x.positive_ttl as i64);
                    pos.insert(
                        token.into(),
                        Positive {
                            until,
                            verified: v.clone(),
                        },
                    );
                }
                Ok(v)
            }
            Err(reason) => {
                if reason != Reason::IssuerBarred {
                    // Revoked, or no longer passing a claim rule.
                    lock(&self.positive).remove(token);
                }
                if x.negative_ttl > 0 && reason != Reason::IssuerBarred {
                    let mut neg = lock(&self.negative);
                    if neg.len() >= x.cache_size.max(1000) {
                        neg.retain(|_, n| n.until > now);
                        if neg.len() >= x.cache_size.max(1000) {
                            neg.clear();
                        }
                    }
                    neg.insert(
                        token.into(),
                        Negative {
                            until: now.saturating_add(x.negative_ttl as i64),
                            reason,
                        },
                    );
                }
                Err(reason)
            }
        }
    }
}

/// The published key set was confirmed by the endpoint (304, or 200 with
/// the same bytes): its `max_stale` clock restarts, in the shared state
/// and in the cache file's modification time (read at start-up).
fn confirmed(rj: &RemoteJwks, shared: &Shared, slot: usize, now: i64) {
    shared
        .remote(slot, Remote::JwksFetchedAt)
        .store(now.max(1) as u64, Ordering::Release);
    if let Ok(f) = std::fs::File::options().write(true).open(&rj.cache_file) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Authorization server metadata (RFC 8414 section 3.2): a JSON object
/// whose `issuer` is exactly the configured one (section 3.3), with the
/// URLs the configuration asks for. Gives them, and the document the
/// cache file holds (those members only, so that a change elsewhere in
/// the metadata publishes nothing).
fn parse_metadata(
    body: &[u8],
    issuer: &Issuer,
    d: &Discovery,
) -> Result<(Discovered, Vec<u8>), String> {
    let doc = StrictObject::parse(body)
        .map_err(|_| "the metadata is not one JSON object with unique member names".to_owned())?;
    match doc.json("issuer") {
        Some(Value::String(s)) if *s == *issuer.iss => {}
        Some(Value::String(s)) => {
            return Err(format!(
                "the metadata is for issuer {s:?}, not {:?} (RFC 8414 section 3.3)",
                &*issuer.iss
            ))
        }
        _ => return Err("the metadata has no issuer string".into()),
    }
    let mut kept = serde_json::Map::new();
    kept.insert("issuer".into(), Value::String(issuer.iss.to_string()));
    let mut take = |name: &str, wanted: bool| -> Result<Option<Url>, String> {
        if !wanted {
            return Ok(None);
        }
        let Some(Value::String(u)) = doc.json(name) else {
            return Err(format!("the metadata has no {name} string"));
        };
        let url = Url::parse(&u).map_err(|m| format!("the metadata's {name}: {m}"))?;
        kept.insert(name.into(), Value::String(u));
        Ok(Some(url))
    };
    let found = Discovered {
        jwks: take("jwks_uri", d.jwks)?,
        introspection: take("introspection_endpoint", d.introspection)?,
    };
    let text = serde_json::to_vec(&Value::Object(kept)).map_err(|e| e.to_string())?;
    Ok((found, text))
}

/// A cache file's modification time in Unix seconds (the time of its last
/// fetch or confirmation), `None` when it cannot be read; 0 when the file
/// system gives no usable time, which makes the file too old to adopt.
fn cache_file_mtime(path: &std::path::Path) -> Option<i64> {
    let meta = std::fs::metadata(path).ok()?;
    Some(
        meta.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|t| t.as_secs() as i64)
            .unwrap_or(0),
    )
}

/// At the refresher's start: a metadata cache file left by a previous run,
/// younger than [`METADATA_MAX_AGE`], is used until the first fetch
/// succeeds (the key set it leads to keeps its own `max_stale`).
fn adopt_metadata(
    issuer: &Issuer,
    d: &Discovery,
    shared: &Shared,
    slot: usize,
    now: i64,
    pass: &mut Pass,
) {
    let Some(mtime) = cache_file_mtime(&d.cache_file) else {
        return;
    };
    if now.saturating_sub(mtime) > METADATA_MAX_AGE as i64 {
        return;
    }
    match read_file(&d.cache_file, METADATA_MAX_SIZE).and_then(|b| parse_metadata(&b, issuer, d)) {
        Ok(_) => {
            shared
                .remote(slot, Remote::MetadataFetchedAt)
                .store(mtime.clamp(1, now.max(1)) as u64, Ordering::Release);
            shared
                .remote(slot, Remote::MetadataGen)
                .fetch_add(1, Ordering::AcqRel);
            pass.published = true;
        }
        Err(e) => log::warn(&format!(
            "wic-tna: issuer {}: metadata cache file not used: {e}",
            issuer.iss
        )),
    }
}

/// One more of the counter `f` of the issuer in `slot`.
fn count(shared: &Shared, slot: usize, f: Remote) {
    shared.remote(slot, f).fetch_add(1, Ordering::Relaxed);
}

/// One introspection call through the issuer's circuit breaker (shared by
/// every process): the body of a 200 answer.
fn call_through_breaker(
    x: &Introspection,
    url: &Url,
    issuer: &Issuer,
    token: &str,
    shared: &Shared,
    slot: usize,
    now: i64,
) -> Result<Vec<u8>, Reason> {
    let until = breaker_admit(x, shared, slot, now)?;
    count(shared, slot, Remote::IntrospectionCalls);
    match call(x, url, issuer, token) {
        Ok(body) => {
            breaker_answered(issuer, shared, slot, until);
            Ok(body)
        }
        Err(e) => {
            breaker_failed(x, issuer, shared, slot, now, until, &e);
            Err(Reason::IntrospectionUnavailable)
        }
    }
}

/// Whether a call may be made: not while the breaker is open; once its
/// cooldown is over (half-open) one caller probes, the others keep
/// answering 500. Gives the breaker's `open until` as found (0: closed).
fn breaker_admit(x: &Introspection, shared: &Shared, slot: usize, now: i64) -> Result<u64, Reason> {
    let open = shared.remote(slot, Remote::BreakerOpenUntil);
    let until = open.load(Ordering::Acquire);
    if until != 0 {
        if (now as u64) < until {
            count(shared, slot, Remote::IntrospectionBreakerOpen);
            return Err(Reason::IntrospectionUnavailable);
        }
        let next = (now as u64).saturating_add(x.breaker_cooldown);
        if open
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            count(shared, slot, Remote::IntrospectionBreakerOpen);
            return Err(Reason::IntrospectionUnavailable);
        }
    }
    Ok(until)
}

/// A call answered: the failures start again from 0, an open breaker
/// (`until` != 0: this was the probe) closes.
fn breaker_answered(issuer: &Issuer, shared: &Shared, slot: usize, until: u64) {
    shared
        .remote(slot, Remote::BreakerFailures)
        .store(0, Ordering::Release);
    if until != 0 {
        shared
            .remote(slot, Remote::BreakerOpenUntil)
            .store(0, Ordering::Release);
        log::info(&format!(
            "wic-tna: issuer {}: introspection answers again; circuit breaker closed",
            issuer.iss
        ));
    }
}

/// A call failed (`e`): counted; the breaker opens after
/// `breaker_failures` failures in a row, or when the probe failed.
fn breaker_failed(
    x: &Introspection,
    issuer: &Issuer,
    shared: &Shared,
    slot: usize,
    now: i64,
    until: u64,
    e: &str,
) {
    count(shared, slot, Remote::IntrospectionFailed);
    let fails = shared
        .remote(slot, Remote::BreakerFailures)
        .fetch_add(1, Ordering::AcqRel)
        + 1;
    if fails >= x.breaker_failures as u64 || until != 0 {
        shared.remote(slot, Remote::BreakerOpenUntil).store(
            (now as u64).saturating_add(x.breaker_cooldown),
            Ordering::Release,
        );
        shared
            .remote(slot, Remote::BreakerFailures)
            .store(0, Ordering::Release);
        log::error(&format!(
            "wic-tna: issuer {}: introspection failed ({e}); circuit breaker open for {} s",
            issuer.iss, x.breaker_cooldown
        ));
    } else {
        log::error(&format!(
            "wic-tna: issuer {}: introspection failed: {e}",
            issuer.iss
        ));
    }
}

/// The verdict of an answer (RFC 7662): an active token of this issuer
/// under the claim rules, or why not; `None`: not a verdict (not one JSON
/// object, or no boolean `active`).
fn verdict(
    cfg: &Config,
    issuer_index: usize,
    issuer: &Issuer,
    body: &[u8],
    now: i64,
    barred: &dyn Fn(&Issuer) -> bool,
) -> Option<Result<Verified, Reason>> {
    let claims = StrictObject::parse(body).ok()?;
    match claims.json("active") {
        Some(Value::Bool(true)) => Some(match claims.json(&cfg.claims.iss) {
            Some(Value::String(s)) if *s == *issuer.iss => {
                token::check_claims(cfg, issuer_index, issuer, &claims, now, barred, None)
                    .map_err(|f| f.reason)
            }
            Some(Value::String(_)) | None => Err(Reason::UnknownIssuer),
            Some(_) => Err(Reason::InvalidClaim),
        }),
        Some(Value::Bool(false)) => Some(Err(Reason::InactiveToken)),
        _ => None,
    }
}

/// An ETag that can go back into a header as it is.
fn http_token_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|c| (0x20..0x7f).contains(&c))
}

/// One introspection request: the body of a 200 answer, or why not.
fn call(x: &Introspection, url: &Url, issuer: &Issuer, token: &str) -> Result<Vec<u8>, String> {
    let Some(tls) = &issuer.tls else {
        return Err("no TLS settings".into());
    };
    // RFC 6749 2.3.1: client id and secret form-encoded, then Basic.
    let cred = format!(
        "{}:{}",
        http::form_encode(&x.client_id),
        http::form_encode(&x.client_secret)
    );
    let headers = [
        format!("Authorization: Basic {}", STANDARD.encode(cred)),
        "Accept: application/json".to_owned(),
    ];
    let body = format!(
        "token={}&token_type_hint=access_token",
        http::form_encode(token)
    );
    let req = Request {
        method: "POST",
        url,
        headers: &headers,
        body: Some(("application/x-www-form-urlencoded", body.as_bytes())),
        timeout: x.timeout,
        max_body: x.max_size,
        tls,
    };
    let resp = http::send(&req).map_err(|e| e.to_string())?;
    if resp.status != 200 {
        return Err(format!("HTTP status {}", resp.status));
    }
    Ok(resp.body)
}
