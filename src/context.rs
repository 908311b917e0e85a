//! The verification context a proxy process holds: the current
//! configuration (reloadable atomically), the shared state (barring, reload
//! generation, counters) and the checks of doc/protocol.md put together.

use crate::core::config::{Config, ConfigError, Issuer};
use crate::core::header;
use crate::core::identity;
use crate::core::reason::{self, Reason};
use crate::core::replay;
use crate::core::tna;
use crate::core::token::{self, Failure, Verified};
use crate::edge::fleet::{self, Store};
use crate::edge::remote::RemoteState;
use crate::edge::shared::{Remote, Shared, NO_ISSUER};
use crate::log;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The decision on one request.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Why.
    pub reason: Reason,
    /// SIP status to answer with (200 when accepted).
    pub sip_status: u16,
    /// `WWW-Authenticate` value, when a challenge is sent.
    pub www_authenticate: Option<String>,
    /// What the token said, when accepted (shared with the verified-token
    /// cache).
    pub verified: Option<Arc<Verified>>,
    /// The issuer when `verified` is not there to give it (failures that
    /// knew it; the S-CSCF side): read [`Outcome::iss`].
    iss: Option<Arc<str>>,
    /// The IMPI when `verified` is not there to give it (the S-CSCF side:
    /// the TNA username): read [`Outcome::impi`].
    impi: Option<Arc<str>>,
    /// The TNA header value, when accepted.
    pub tna_header: Option<String>,
    /// Seconds the token has left (0 when rejected).
    pub seconds_left: i64,
    /// Registration expiry to grant (0 when rejected).
    pub granted_expires: i64,
}

impl Outcome {
    /// Accepted?
    pub fn accepted(&self) -> bool {
        self.reason == Reason::Ok
    }

    /// The issuer, when known (also on some failures).
    pub fn iss(&self) -> Option<&str> {
        match &self.verified {
            Some(v) => Some(&v.iss),
            None => self.iss.as_deref(),
        }
    }

    /// The IMPI (accepted tokens; S-CSCF side: the TNA username).
    pub fn impi(&self) -> Option<&str> {
        match &self.verified {
            Some(v) => Some(v.impi()),
            None => self.impi.as_deref(),
        }
    }
}

/// One request to decide: a REGISTER as the proxy saw it. Each field is
/// optional; the default is a request without any (no `Authorization`
/// header: 401 `missing_token`). New fields may be added: build it with
/// `..Default::default()`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    /// The `Authorization` header value; `None`: the request has none.
    pub authorization: Option<&'a [u8]>,
    /// The `To` URI or whole `To` value; `None` skips the REQ 4 check.
    pub to: Option<&'a [u8]>,
    /// The expiry the client asked for (`Expires` or the Contact's
    /// `expires`): `None` or negative when none, 0 for a de-registration.
    pub requested_expires: Option<i64>,
    /// The replay binding: what names the connection or source the request
    /// came from (see src/core/replay.rs); `None` or empty: none.
    pub binding: Option<&'a [u8]>,
    /// The `Origin` of the WebSocket handshake of the connection the
    /// request came over; `None` when there is none (UDP, TCP, TLS,
    /// non-browser clients): then it is not checked. When given, the token's
    /// issuer must list it in its `origins` (an empty or non-UTF-8 value is
    /// never allowed): else 403 `origin_not_allowed`.
    pub origin: Option<&'a [u8]>,
}

/// Is `origin` one of `origins`? Trimmed, a trailing '/' ignored, ASCII
/// case-insensitive; an empty or non-UTF-8 origin never is.
fn origin_listed(origins: &[String], origin: &[u8]) -> bool {
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let origin = origin.trim().trim_end_matches('/');
    !origin.is_empty()
        && origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// One value of the decision log line: as it is when it is plain (no
/// space, quote, backslash, `=` or control character, not empty), else in
/// double quotes with `"` and `\` escaped and control characters as
/// `\xNN`; bytes that are not UTF-8 are replaced (U+FFFD).
fn log_value(v: &[u8], out: &mut String) {
    let v = String::from_utf8_lossy(v);
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| !c.is_control() && !matches!(c, ' ' | '"' | '\\' | '='));
    if plain {
        out.push_str(&v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                use std::fmt::Write;
                let _ = write!(out, "\\x{:02x}", c as u32 & 0xff);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The decision log line of `o` (configuration `decision_log`), or
/// `None` when it is off: `wic-tna decision: reason=<name> status=<sip>
/// issuer=<iss or -> source=<the proxy's binding or -> [impi=<IMPI or ->]`,
/// `impi` only with `decision_log_impi`. The order and names are stable,
/// for log pipelines; values are quoted only when needed ([`log_value`]).
pub fn decision_line(cfg: &Config, o: &Outcome, binding: Option<&[u8]>) -> Option<(i32, String)> {
    let level = cfg.decision_log.level()?;
    let mut line = String::with_capacity(160);
    line.push_str("wic-tna decision: reason=");
    line.push_str(o.reason.name());
    line.push_str(&format!(" status={} issuer=", o.sip_status));
    log_value(o.iss().unwrap_or("-").as_bytes(), &mut line);
    line.push_str(" source=");
    match binding {
        Some(b) if !b.is_empty() => log_value(b, &mut line),
        _ => line.push('-'),
    }
    if cfg.decision_log_impi {
        line.push_str(" impi=");
        log_value(o.impi().unwrap_or("-").as_bytes(), &mut line);
    }
    Some((level, line))
}

fn log_decision(cfg: &Config, o: &Outcome, binding: Option<&[u8]>) {
    if let Some((level, line)) = decision_line(cfg, o, binding) {
        log::log(level, &line);
    }
}

/// The configured issuer of a verification: the one at its index when it
/// is still that issuer (the configuration it came from), else looked up
/// by name; `None` when the issuer is no longer configured.
fn issuer_of<'a>(cfg: &'a Config, v: &Verified) -> Option<&'a Issuer> {
    cfg.issuers
        .get(v.issuer_index)
        .filter(|i| *i.iss == *v.iss)
        .or_else(|| cfg.issuer(&v.iss))
}

/// The host of the registering IMPU, for `tna_realm_from_impu`: the `To`
/// IMPU (number `to_impu` of the token's) when the request has a `To`, else
/// the token's first SIP IMPU. `None` (the configured realm is used) for a
/// `tel:` IMPU or a token without a SIP IMPU.
fn registering_host(v: &Verified, has_to: bool, to_impu: Option<usize>) -> Option<&str> {
    let sip = |u: &identity::UriView<'_>| u.scheme != identity::Scheme::Tel && !u.host().is_empty();
    if has_to {
        return to_impu
            .and_then(|i| v.impu_uri(i))
            .filter(sip)
            .map(|u| u.host());
    }
    v.impu_uris().find(sip).map(|u| u.host())
}

/// Which of the token's IMPUs the `To` names (REQ 4): written exactly as
/// one of them, which parsed, is the same identity
/// (identity::tests::same_text_same_identity); otherwise parsed and
/// compared (RFC 3261 19.1.4).
fn to_impu(v: &Verified, to: &[u8]) -> Result<usize, Reason> {
    let text = match std::str::from_utf8(to).ok().map(identity::to_uri_text) {
        Some(Ok(t)) => t,
        _ => return Err(Reason::InvalidToUri),
    };
    let n = v.impu_count();
    if let Some(i) = (0..n).find(|&i| v.impu(i) == Some(text)) {
        return Ok(i);
    }
    let to_uri = identity::parse_impu_ref(text).map_err(|_| Reason::InvalidToUri)?;
    (0..n)
        .find(|&i| v.impu_uri(i).is_some_and(|u| to_uri.same_as_view(u)))
        .ok_or(Reason::ToImpuNotInToken)
}

/// The TNA header for an accepted token: realm and URI of its issuer
/// (the registering IMPU's host with `tna_realm_from_impu`), the home realm
/// when the issuer is no longer configured.
fn tna_header(
    cfg: &Config,
    issuer: Option<&Issuer>,
    v: &Verified,
    has_to: bool,
    to_impu: Option<usize>,
) -> String {
    let issuer_entity = issuer.map(|i| i.add_authorization_entity).unwrap_or(true);
    let (realm, uri) = match issuer {
        Some(i) => {
            let from_impu = if i.tna_realm_from_impu {
                registering_host(v, has_to, to_impu)
            } else {
                None
            };
            (from_impu.unwrap_or(&i.tna_realm), i.tna_uri.as_deref())
        }
        None => (cfg.home_realm.as_str(), None),
    };
    tna::build(v.impi(), realm, uri, issuer_entity.then_some(&*v.iss))
}

/// How often the refresher should call [`Context::tick`], milliseconds.
pub const TICK_INTERVAL_MS: u64 = 250;

/// What one [`Context::tick`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Something was fetched and published to the workers.
    pub published: bool,
    /// Something due could not be done (it was logged).
    pub failed: bool,
}

/// Verified tokens of this process, for the refresh path (a WIC
/// re-REGISTERs with the same token every few minutes). Keyed by the whole
/// token; only accepted tokens are kept; emptied on every reload. A hit
/// still applies `exp`, barring and the `To` check. Each entry remembers the
/// issuer's fetched key set generation (0: none): a new key set (rotation)
/// sends the token through a full check again.
struct TokenCache {
    gen: u64,
    map: HashMap<Box<str>, (Arc<Verified>, u64)>,
}

struct Barring {
    overrides: HashMap<String, bool>,
}

/// A verification context. Safe to share between threads. Starts no thread
/// itself (host name lookups for remote trust run on [`crate::edge::dns`]'s
/// helper threads, at most 4 per process, started by lookups that need
/// them).
pub struct Context {
    path: PathBuf,
    config: RwLock<Arc<Config>>,
    shared: Arc<Shared>,
    seen_reload_gen: AtomicU64,
    /// False while this process could not take up the configuration another
    /// process's reload checked (the file changed since): it then refuses
    /// everything (500) and retries at most once a second.
    in_step: AtomicBool,
    retry_at: AtomicI64,
    barring: RwLock<Barring>,
    /// `barring.gen`, readable without the lock: a request takes the lock
    /// only when the shared barring changed since.
    barring_seen: AtomicU64,
    /// Whether `barring.overrides` has any entry (without one, an issuer is
    /// barred as configured and the lock is not taken).
    has_overrides: AtomicBool,
    slots: Mutex<HashMap<String, usize>>,
    cache: Mutex<TokenCache>,
    config_gen: AtomicU64,
    cache_hits: AtomicU64,
    remote: RemoteState,
    /// This process's connection to the fleet store (src/edge/fleet.rs).
    store: Mutex<Store>,
}

/// Errors creating a context.
#[derive(Debug)]
pub enum ContextError {
    /// The configuration could not be loaded.
    Config(ConfigError),
    /// The shared state could not be set up.
    Io(String),
}

impl std::fmt::Display for ContextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContextError::Config(e) => e.fmt(f),
            ContextError::Io(m) => f.write_str(m),
        }
    }
}

/// Current Unix time, seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Context {
    /// Load `path`. With `shared` `None`, the configuration's `state_file`
    /// is used if it names one, else a private region.
    pub fn new(path: &Path, shared: Option<Arc<Shared>>) -> Result<Context, ContextError> {
        let cfg = Config::load(path).map_err(ContextError::Config)?;
        let shared = match shared {
            Some(s) => s,
            None => match &cfg.state_file {
                Some(f) => Arc::new(
                    Shared::open(f).map_err(|e| ContextError::Io(format!("state_file: {e}")))?,
                ),
                None => Arc::new(
                    Shared::new_anonymous()
                        .map_err(|e| ContextError::Io(format!("shared state: {e}")))?,
                ),
            },
        };
        let gen = shared.reload_gen();
        let bar_gen = shared.bar_gen();
        let overrides = shared.barring_overrides();
        Ok(Context {
            path: path.to_path_buf(),
            config: RwLock::new(Arc::new(cfg)),
            shared,
            seen_reload_gen: AtomicU64::new(gen),
            in_step: AtomicBool::new(true),
            retry_at: AtomicI64::new(0),
            barring_seen: AtomicU64::new(bar_gen),
            has_overrides: AtomicBool::new(!overrides.is_empty()),
            barring: RwLock::new(Barring { overrides }),
            slots: Mutex::new(HashMap::new()),
            cache: Mutex::new(TokenCache {
                gen: 0,
                map: HashMap::new(),
            }),
            config_gen: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            remote: RemoteState::default(),
            store: Mutex::new(Store::new()),
        })
    }

    /// Background work, for exactly one process (the proxy's refresher
    /// process or timer), never a SIP worker: it may wait on the network up
    /// to the configured timeouts. It fetches what is due (remote key sets,
    /// the fleet's shared state) and publishes it through the shared state,
    /// where every worker picks it up on its next call without blocking.
    /// Call it every [`TICK_INTERVAL_MS`] or so; a call with nothing due
    /// returns at once. What it did or could not do goes to the log.
    pub fn tick(&self, now: i64) -> TickReport {
        self.sync();
        let cfg = self.config();
        let pass = self
            .remote
            .refresh(&cfg, &self.shared, &|iss| self.slot(iss), now);
        let mut report = TickReport {
            published: pass.published,
            failed: pass.failed,
        };
        self.fleet_tick(now, &mut report);
        report
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Re-read the configuration file and its keys. On success the new
    /// configuration replaces the old one at once and every process sharing
    /// the state follows on its next request; on error nothing changes.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let cfg = Config::load(&self.path)?;
        let digest = cfg.digest;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
        self.config_gen.fetch_add(1, Ordering::AcqRel);
        self.remote.clear_caches();
        let gen = self.shared.bump_reload(digest);
        self.seen_reload_gen.store(gen, Ordering::Release);
        self.in_step.store(true, Ordering::Release);
        log::info(&format!(
            "wic-tna: configuration {} reloaded (generation {gen})",
            self.path.display()
        ));
        Ok(())
    }

    /// Follow a reload or barring change made by another process. The
    /// configuration is re-read from the file and taken up only when it is
    /// exactly what that reload checked (same digest of the file and its key
    /// files). Otherwise (the file was changed, broken or removed since,
    /// without a reload) this process is out of step: it keeps neither the
    /// old configuration (it may hold a key the reload removed) nor the
    /// unchecked file, refuses everything with 500 `internal_error`, logs
    /// it, and retries at most once a second until the file matches again
    /// or a new reload is made. Returns whether this process is in step.
    pub fn sync(&self) -> bool {
        let gen = self.shared.reload_gen();
        let pending = gen != self.seen_reload_gen.load(Ordering::Acquire);
        if pending {
            let now = now();
            let in_step = self.in_step.load(Ordering::Acquire);
            if in_step || now >= self.retry_at.load(Ordering::Acquire) {
                let want = self.shared.reload_digest();
                match Config::load(&self.path) {
                    Ok(cfg) if want == 0 || cfg.digest == want => {
                        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
                        self.config_gen.fetch_add(1, Ordering::AcqRel);
                        self.remote.clear_caches();
                        self.seen_reload_gen.store(gen, Ordering::Release);
                        self.in_step.store(true, Ordering::Release);
                        log::info(&format!(
                            "wic-tna: configuration reloaded (generation {gen})"
                        ));
                    }
                    other => {
                        self.retry_at.store(now + 1, Ordering::Release);
                        if in_step {
                            self.in_step.store(false, Ordering::Release);
                            let why = match other {
                                Err(e) => e.to_string(),
                                Ok(_) => {
                                    "the file or a key file changed after the reload checked it"
                                        .into()
                                }
                            };
                            log::error(&format!(
                                "wic-tna: cannot take up reload generation {gen}: {why}; refusing every request (500) until {} is as reloaded or reloaded again",
                                self.path.display()
                            ));
                        }
                    }
                }
            }
        }
        let bar_gen = self.shared.bar_gen();
        if bar_gen != self.barring_seen.load(Ordering::Acquire) {
            let overrides = self.shared.barring_overrides();
            let mut b = self.barring.write().unwrap_or_else(|e| e.into_inner());
            self.has_overrides
                .store(!overrides.is_empty(), Ordering::Release);
            *b = Barring { overrides };
            self.barring_seen.store(bar_gen, Ordering::Release);
        }
        self.in_step.load(Ordering::Acquire)
    }

    fn is_barred_name(&self, iss: &str, configured: bool) -> bool {
        if !self.has_overrides.load(Ordering::Acquire) {
            return configured;
        }
        let b = self.barring.read().unwrap_or_else(|e| e.into_inner());
        b.overrides.get(iss).copied().unwrap_or(configured)
    }

    /// Is `iss` barred now (configuration and run-time barring)?
    pub fn is_barred(&self, issuer: &Issuer) -> bool {
        self.is_barred_name(&issuer.iss, issuer.barred)
    }

    /// Bar or unbar a configured issuer, for every process sharing the
    /// state. Other issuers are untouched.
    pub fn set_barred(&self, iss: &str, barred: bool) -> Result<(), String> {
        let cfg = self.config();
        if cfg.issuer(iss).is_none() {
            return Err(format!("issuer {iss:?} is not configured"));
        }
        self.shared
            .set_barring(iss, Some(barred))
            .map_err(|e| e.to_string())?;
        log::info(&format!(
            "wic-tna: issuer {iss} {}",
            if barred { "barred" } else { "unbarred" }
        ));
        self.sync();
        match &cfg.fleet {
            Some(f) => fleet::publish_barring(&self.store, f, iss, barred),
            None => Ok(()),
        }
    }

    fn count(&self, iss: Option<&str>, reason: Reason) {
        if let Some(s) = self.slot(iss.unwrap_or(NO_ISSUER)) {
            self.shared.count(s, reason);
        }
    }

    /// [`count`](Self::count) for a configured issuer, whose slot its
    /// configuration remembers (no lookup by name).
    fn count_issuer(&self, issuer: &Issuer, reason: Reason) {
        if let Some(s) = *issuer.counter_slot.get_or_init(|| self.slot(&issuer.iss)) {
            self.shared.count(s, reason);
        }
    }

    /// The shared-state slot of `name` (claimed on first use), remembered
    /// per process.
    fn slot(&self, name: &str) -> Option<usize> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = match slots.get(name) {
            Some(&s) => Some(s),
            None => {
                let s = self.shared.counter_slot(name);
                if let Some(s) = s {
                    if slots.len() < 100_000 {
                        slots.insert(name.to_owned(), s);
                    }
                }
                s
            }
        };
        drop(slots);
        slot
    }

    fn reject(&self, cfg: &Config, reason: Reason, iss: Option<Arc<str>>) -> Outcome {
        self.count(iss.as_deref(), reason);
        let params = reason::ChallengeParams {
            realm: &cfg.home_realm,
            scope: &cfg.required_scope,
            authz_server: cfg.authz_server.as_deref(),
        };
        Outcome {
            reason,
            sip_status: reason.sip_status(),
            www_authenticate: reason::www_authenticate(reason, &params),
            verified: None,
            iss,
            impi: None,
            tna_header: None,
            seconds_left: 0,
            granted_expires: 0,
        }
    }

    /// Verify an `Authorization` header value. `to` is the REGISTER's `To`
    /// URI (or whole value) when REQ 4 is to be checked; `requested_expires`
    /// the expiry the client asked for, if any (0: a de-registration); `now`
    /// Unix seconds. [`Context::verify_request`] with the other fields
    /// absent.
    pub fn verify(
        &self,
        authorization: &[u8],
        to: Option<&[u8]>,
        requested_expires: Option<i64>,
        now: i64,
    ) -> Outcome {
        self.verify_bound(authorization, to, requested_expires, None, now)
    }

    /// As [`Context::verify`], with the request's replay binding (the
    /// connection or source the proxy names; see src/core/replay.rs). Where
    /// `[replay]` is enabled, a request with no binding fails closed.
    pub fn verify_bound(
        &self,
        authorization: &[u8],
        to: Option<&[u8]>,
        requested_expires: Option<i64>,
        binding: Option<&[u8]>,
        now: i64,
    ) -> Outcome {
        self.decide(
            authorization,
            &Request {
                authorization: Some(authorization),
                to,
                requested_expires,
                binding,
                origin: None,
            },
            now,
        )
    }

    /// Decide on a request (every input the proxy has, see [`Request`]) at
    /// Unix time `now`. The checks, in order: the token (header form,
    /// signature or introspection, claims, pools, barring), the remaining
    /// lifetime of a registration (`min_registration_expires`), the `To`
    /// IMPU, the WebSocket `Origin`, then the replay step (a refused request
    /// binds nothing).
    pub fn verify_request(&self, req: &Request<'_>, now: i64) -> Outcome {
        match req.authorization {
            Some(a) => self.decide(a, req, now),
            None => self.missing(req.binding),
        }
    }

    fn decide(&self, authorization: &[u8], req: &Request<'_>, now: i64) -> Outcome {
        let in_step = self.sync();
        let cfg = self.config();
        let o = self.decide_with(&cfg, in_step, authorization, req, now);
        log_decision(&cfg, &o, req.binding);
        o
    }

    fn decide_with(
        &self,
        cfg: &Config,
        in_step: bool,
        authorization: &[u8],
        req: &Request<'_>,
        now: i64,
    ) -> Outcome {
        if !in_step {
            return self.reject(cfg, Reason::InternalError, None);
        }
        let token = match header::extract_token(authorization, cfg.accept_bare_token) {
            Ok(t) => t,
            Err(r) => return self.reject(cfg, r, None),
        };
        match self.verify_token(cfg, token, now) {
            Ok(v) => self.authorise(cfg, v, req, now),
            Err(f) => self.reject(cfg, f.reason, f.iss),
        }
    }

    /// Verify the token itself: a cached verification of it, else RFC 7662
    /// introspection (a reference token), else its signature and claims. A
    /// key set by URL that lacks the token's `kid` is asked to be fetched
    /// again.
    fn verify_token(&self, cfg: &Config, token: &str, now: i64) -> Result<Arc<Verified>, Failure> {
        if let Some(v) = self.cache_get(cfg, token, now) {
            return Ok(v);
        }
        if let Some(issuer) = self.reference_issuer(cfg, token) {
            // A reference token: RFC 7662 introspection (own caches).
            let slot = self.slot(&issuer.iss);
            return self
                .remote
                .introspect(cfg, issuer, token, &self.shared, slot, now, &|i| {
                    self.is_barred(i)
                });
        }
        match token::verify_with(cfg, token, now, &|i| self.is_barred(i), &|i| {
            self.remote
                .keys_for(i, &self.shared, self.slot(&i.iss), now)
        }) {
            Ok(v) => {
                let v = Arc::new(v);
                self.cache_put(cfg, token, &v, now);
                Ok(v)
            }
            Err(f) => {
                if f.reason == Reason::UnknownKey {
                    if let Some(i) = f.iss.as_deref().and_then(|i| cfg.issuer(i)) {
                        if i.remote_jwks.is_some() {
                            self.remote
                                .request_refetch(&self.shared, self.slot(&i.iss), now);
                        }
                    }
                }
                Err(f)
            }
        }
    }

    /// Authorise this request with a verified token: the remaining lifetime
    /// of a registration, the `To` IMPU, the WebSocket `Origin`, then the
    /// replay step; the TNA header and the expiry granted.
    fn authorise(&self, cfg: &Config, v: Arc<Verified>, req: &Request<'_>, now: i64) -> Outcome {
        // A registration or refresh (anything but Expires: 0) needs the
        // token to outlive min_registration_expires: otherwise it would be
        // granted a few seconds, or 0 (a token past exp within the leeway),
        // which the proxy would forward as a de-registration. The WIC gets
        // the invalid_token challenge and fetches a new token. A
        // de-registration is accepted while the token is valid.
        let seconds_left = (v.exp - now).max(0);
        let deregistration = req.requested_expires == Some(0);
        if !deregistration
            && seconds_left < i64::try_from(cfg.min_registration_expires).unwrap_or(i64::MAX)
        {
            return self.reject(cfg, Reason::Expired, Some(v.iss.clone()));
        }
        // The registering IMPU: the one the To names.
        let to_impu = match req.to.map(|to| to_impu(&v, to)) {
            None => None,
            Some(Ok(i)) => Some(i),
            Some(Err(r)) => return self.reject(cfg, r, Some(v.iss.clone())),
        };
        let issuer = issuer_of(cfg, &v);
        // Over a WebSocket: the handshake's Origin must be one of the
        // token's issuer's (fail closed: an issuer without origins has none).
        if let Some(origin) = req.origin {
            if !issuer.is_some_and(|i| origin_listed(&i.origins, origin)) {
                return self.reject(cfg, Reason::OriginNotAllowed, Some(v.iss.clone()));
            }
        }
        let tna = tna_header(cfg, issuer, &v, req.to.is_some(), to_impu);
        let max = cfg.max_registration_expires as i64;
        let granted = match req.requested_expires {
            Some(r) if r >= 0 => r.min(seconds_left).min(max),
            _ => seconds_left.min(max),
        };
        if let Err(r) = self.replay_step(cfg, &v, req.binding, now) {
            return self.reject(cfg, r, Some(v.iss.clone()));
        }
        match issuer {
            Some(i) => self.count_issuer(i, Reason::Ok),
            None => self.count(Some(&v.iss), Reason::Ok),
        }
        Outcome {
            reason: Reason::Ok,
            sip_status: 200,
            www_authenticate: None,
            // (Both given by `verified`: no copies of the shared strings.)
            iss: None,
            impi: None,
            tna_header: Some(tna),
            seconds_left,
            granted_expires: granted,
            verified: Some(v),
        }
    }

    /// The replay rule (src/core/replay.rs) for an otherwise accepted token,
    /// with the fleet store's word on a first use.
    fn replay_step(
        &self,
        cfg: &Config,
        v: &Verified,
        binding: Option<&[u8]>,
        now: i64,
    ) -> Result<(), Reason> {
        let table = self.shared.replay_table();
        let node = cfg.fleet.as_ref().map(|f| f.node_id.as_str()).unwrap_or("");
        let until = v.exp.saturating_add(cfg.leeway as i64);
        let Some(first) = replay::decide(
            &cfg.replay,
            table,
            node,
            &v.iss,
            v.jti(),
            until,
            binding,
            now,
        )?
        else {
            return Ok(());
        };
        let Some(f) = &cfg.fleet else { return Ok(()) };
        let answer =
            fleet::claim_first_use(&self.store, f, &first, now, cfg.replay.store_unavailable);
        replay::after_fleet(&cfg.replay, table, &first, answer, now)
    }

    /// The refresher's fleet part: the fleet's barring taken up here.
    fn fleet_tick(&self, now: i64, report: &mut TickReport) {
        let cfg = self.config();
        let Some(f) = &cfg.fleet else { return };
        let poll = fleet::poll_barring(&self.store, f, &self.shared, now);
        report.failed |= poll.failed;
        if poll.changed {
            report.published = true;
            self.sync();
        }
    }

    /// The issuer whose introspection endpoint a token goes to, if it is a
    /// reference token (see [`Config::introspection_issuer`]).
    fn reference_issuer<'a>(&self, cfg: &'a Config, token: &str) -> Option<&'a Issuer> {
        if !cfg.any_introspection {
            return None;
        }
        let jwt_shaped = token.bytes().filter(|&c| c == b'.').count() == 2;
        cfg.introspection_issuer(token, jwt_shaped)
    }

    /// A cached verification of exactly this token, still within its
    /// lifetime and for an issuer that is still configured and not barred.
    fn cache_get(&self, cfg: &Config, token: &str, now: i64) -> Option<Arc<Verified>> {
        if cfg.verified_cache_size == 0 {
            return None;
        }
        let gen = self.config_gen.load(Ordering::Acquire);
        let v = {
            let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if c.gen != gen {
                c.map.clear();
                c.gen = gen;
                return None;
            }
            c.map.get(token)?.clone()
        };
        let (v, keys_gen) = v;
        let issuer = issuer_of(cfg, &v)?;
        if now > v.exp.saturating_add(cfg.leeway as i64)
            || now < v.valid_from
            || self.is_barred(issuer)
        {
            return None;
        }
        if issuer.remote_jwks.is_some()
            && (self.jwks_gen(&issuer.iss) != keys_gen
                || !self
                    .remote
                    .keys_fresh(issuer, &self.shared, self.slot(&issuer.iss), now))
        {
            // Fall through to a full check, which gives the reason.
            return None;
        }
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
        Some(v)
    }

    fn cache_put(&self, cfg: &Config, token: &str, v: &Arc<Verified>, now: i64) {
        let cap = cfg.verified_cache_size;
        if cap == 0 {
            return;
        }
        let gen = self.config_gen.load(Ordering::Acquire);
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.gen != gen {
            c.map.clear();
            c.gen = gen;
        }
        if c.map.len() >= cap {
            // Bounded: drop what has expired, and everything if that is not enough.
            c.map.retain(|_, (v, _)| v.exp > now);
            if c.map.len() >= cap {
                c.map.clear();
            }
        }
        let keys_gen = match cfg.issuer(&v.iss) {
            Some(i) if i.remote_jwks.is_some() => self.jwks_gen(&i.iss),
            _ => 0,
        };
        c.map.insert(token.into(), (v.clone(), keys_gen));
    }

    /// The shared generation of the issuer's fetched key set.
    fn jwks_gen(&self, iss: &str) -> u64 {
        self.slot(iss).map_or(0, |s| {
            self.shared
                .remote(s, Remote::JwksGen)
                .load(Ordering::Acquire)
        })
    }

    /// The decision for a request with no `Authorization` header at all.
    pub fn no_credentials(&self) -> Outcome {
        self.missing(None)
    }

    fn missing(&self, binding: Option<&[u8]>) -> Outcome {
        self.sync();
        let cfg = self.config();
        let o = self.reject(&cfg, Reason::MissingToken, None);
        log_decision(&cfg, &o, binding);
        o
    }

    /// Is `origin` allowed for the WebSocket handshake (allowed by any
    /// non-barred issuer)? Each REGISTER over the connection is then held to
    /// its token's issuer's origins ([`Request::origin`]).
    pub fn origin_allowed(&self, origin: &[u8]) -> bool {
        if !self.sync() {
            return false;
        }
        let cfg = self.config();
        cfg.issuers
            .iter()
            .any(|i| !self.is_barred(i) && origin_listed(&i.origins, origin))
    }

    /// The S-CSCF side check. `allowed` is the subscription's list of
    /// authorization entities (comma-separated); `None` takes the
    /// configuration's `[scscf] allowed_entities`.
    pub fn scscf_check(
        &self,
        authorization: &[u8],
        source: &str,
        allowed: Option<&str>,
    ) -> Outcome {
        let in_step = self.sync();
        let cfg = self.config();
        if !in_step {
            return self.reject(&cfg, Reason::InternalError, None);
        }
        let list: Vec<&str> = match allowed {
            Some(a) => a
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect(),
            None => cfg
                .scscf
                .allowed_entities
                .iter()
                .map(String::as_str)
                .collect(),
        };
        let barred = |e: &str| match cfg.issuer(e) {
            Some(i) => self.is_barred(i),
            None => self.is_barred_name(e, false),
        };
        match tna::scscf_check(
            authorization,
            source,
            &cfg.scscf.trusted_nodes,
            &list,
            &barred,
        ) {
            Ok(p) => {
                self.count(p.authorization_entity.as_deref(), Reason::Ok);
                Outcome {
                    reason: Reason::Ok,
                    sip_status: 200,
                    www_authenticate: None,
                    verified: None,
                    iss: p.authorization_entity.map(Arc::from),
                    impi: Some(Arc::from(p.username)),
                    tna_header: None,
                    seconds_left: 0,
                    granted_expires: 0,
                }
            }
            Err((reason, p)) => {
                let iss: Option<Arc<str>> = p
                    .as_ref()
                    .and_then(|p| p.authorization_entity.as_deref())
                    .map(Arc::from);
                self.count(iss.as_deref(), reason);
                Outcome {
                    reason,
                    sip_status: 403,
                    www_authenticate: None,
                    verified: None,
                    iss,
                    impi: None,
                    tna_header: None,
                    seconds_left: 0,
                    granted_expires: 0,
                }
            }
        }
    }

    /// The counters in the Prometheus text exposition format
    /// ([`crate::metrics`]): every configured issuer (the configuration in
    /// force, so also after a reload) with every reason, then `-` (outcomes
    /// with no configured issuer). Reads the shared state only.
    pub fn metrics_text(&self) -> String {
        self.sync();
        let cfg = self.config();
        let mut issuers = Vec::with_capacity(cfg.issuers.len() + 1);
        for i in cfg.issuers.iter() {
            if issuers
                .iter()
                .any(|s: &crate::metrics::IssuerSnapshot| s.iss == *i.iss)
            {
                continue;
            }
            let mut remote = Vec::new();
            let get = |f: Remote| self.shared.remote_of(&i.iss, f);
            if i.remote_jwks.is_some() {
                remote.extend([
                    ("jwks_fetch_ok", get(Remote::JwksFetchOk)),
                    ("jwks_not_modified", get(Remote::JwksNotModified)),
                    ("jwks_fetch_failed", get(Remote::JwksFetchFailed)),
                    ("jwks_rejected", get(Remote::JwksRejected)),
                    (
                        "jwks_refetch_unknown_kid",
                        get(Remote::JwksRefetchUnknownKid),
                    ),
                    ("jwks_generation", get(Remote::JwksGen)),
                    ("jwks_fetched_at", get(Remote::JwksFetchedAt)),
                ]);
            }
            if i.discovery.is_some() {
                remote.extend([
                    ("metadata_fetch_ok", get(Remote::MetadataFetchOk)),
                    ("metadata_fetch_failed", get(Remote::MetadataFetchFailed)),
                    ("metadata_generation", get(Remote::MetadataGen)),
                    ("metadata_fetched_at", get(Remote::MetadataFetchedAt)),
                ]);
            }
            if i.introspection.is_some() {
                remote.extend([
                    ("introspection_calls", get(Remote::IntrospectionCalls)),
                    ("introspection_failed", get(Remote::IntrospectionFailed)),
                    (
                        "introspection_cache_hits",
                        get(Remote::IntrospectionCacheHits),
                    ),
                    (
                        "introspection_breaker_open",
                        get(Remote::IntrospectionBreakerOpen),
                    ),
                    ("breaker_open_until", get(Remote::BreakerOpenUntil)),
                ]);
            }
            issuers.push(crate::metrics::IssuerSnapshot {
                iss: i.iss.to_string(),
                barred: Some(self.is_barred(i)),
                counts: self.shared.issuer_counts(&i.iss),
                remote,
            });
        }
        if !issuers.iter().any(|s| s.iss == NO_ISSUER) {
            issuers.push(crate::metrics::IssuerSnapshot {
                iss: NO_ISSUER.to_string(),
                barred: None,
                counts: self.shared.issuer_counts(NO_ISSUER),
                remote: Vec::new(),
            });
        }
        crate::metrics::render(&crate::metrics::Snapshot {
            issuers,
            reload_generation: self.shared.reload_gen(),
        })
    }

    /// The outcomes of `reason` summed over every issuer (and none), over
    /// every process sharing the state.
    pub fn reason_total(&self, reason: Reason) -> u64 {
        self.shared.reason_total(reason)
    }

    /// The issuers with per-issuer statistics: each issuer of the
    /// configuration in force (so also after a reload), once, in the
    /// configuration's order, then `-` (outcomes with no configured
    /// issuer), as in [`Self::metrics_text`].
    pub fn stat_issuers(&self) -> Vec<String> {
        self.sync();
        let cfg = self.config();
        let mut out: Vec<String> = Vec::with_capacity(cfg.issuers.len() + 1);
        for i in cfg.issuers.iter() {
            if !out.iter().any(|s| *s == *i.iss) {
                out.push(i.iss.to_string());
            }
        }
        if !out.iter().any(|s| s == NO_ISSUER) {
            out.push(NO_ISSUER.to_string());
        }
        out
    }

    /// The outcomes of `reason` for `iss`, over every process sharing the
    /// state; None when `iss` is not one of [`Self::stat_issuers`] (an
    /// unknown name is an error, not a zero).
    pub fn issuer_reason_total(&self, iss: &str, reason: Reason) -> Option<u64> {
        self.sync();
        let known = iss == NO_ISSUER || self.config().issuers.iter().any(|i| *i.iss == *iss);
        known.then(|| self.shared.issuer_count(iss, reason))
    }

    /// Counters and state as JSON.
    pub fn stats_json(&self) -> String {
        self.sync();
        let cfg = self.config();
        let mut issuers = serde_json::Map::new();
        for (iss, counts) in self.shared.counters() {
            let mut m = serde_json::Map::new();
            for (name, n) in counts {
                m.insert(name.to_owned(), serde_json::Value::from(n));
            }
            issuers.insert(iss, serde_json::Value::Object(m));
        }
        let barred: Vec<&str> = cfg
            .issuers
            .iter()
            .filter(|i| self.is_barred(i))
            .map(|i| &*i.iss)
            .collect();
        let mut remote = serde_json::Map::new();
        for i in cfg.issuers.iter().filter(|i| {
            i.remote_jwks.is_some() || i.introspection.is_some() || i.discovery.is_some()
        }) {
            let mut m = serde_json::Map::new();
            for (name, n) in self.shared.remote_counters(&i.iss) {
                m.insert(name.to_owned(), serde_json::Value::from(n));
            }
            if let Some(slot) = self.slot(&i.iss) {
                let get = |f: Remote| self.shared.remote(slot, f).load(Ordering::Acquire);
                if i.remote_jwks.is_some() {
                    m.insert("jwks_generation".into(), get(Remote::JwksGen).into());
                    m.insert("jwks_fetched_at".into(), get(Remote::JwksFetchedAt).into());
                }
                if i.discovery.is_some() {
                    m.insert(
                        "metadata_generation".into(),
                        get(Remote::MetadataGen).into(),
                    );
                    m.insert(
                        "metadata_fetched_at".into(),
                        get(Remote::MetadataFetchedAt).into(),
                    );
                }
                if i.introspection.is_some() {
                    m.insert(
                        "breaker_open_until".into(),
                        get(Remote::BreakerOpenUntil).into(),
                    );
                }
            }
            remote.insert(i.iss.to_string(), serde_json::Value::Object(m));
        }
        serde_json::json!({
            "config": self.path.display().to_string(),
            "reload_generation": self.shared.reload_gen(),
            "issuers_configured": cfg.issuers.len(),
            "barred": barred,
            "outcomes": issuers,
            "remote": remote,
            "process": {
                "verified_cache_entries": self.cache.lock().map(|c| c.map.len()).unwrap_or(0),
                "verified_cache_hits": self.cache_hits.load(Ordering::Relaxed),
            },
            "replay": replay::stats(&cfg.replay, self.shared.replay_table(), now()),
            "fleet": fleet::stats(cfg.fleet.as_ref(), &self.shared),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    //! Building a context from a file, and the two halves of a request's
    //! decision: the token verified, then the request authorised.
    use super::*;
    use crate::core::keys::Alg;
    use crate::core::mint::{mint, MintRequest};

    const SECRET: &[u8] = b"context-test-secret-of-thirty-two-bytes!";

    /// A private directory with `wic-tna.toml` (`cfg`) and the HMAC secret.
    fn setup(tag: &str, cfg: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wic-tna-context-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hmac.secret"), SECRET).unwrap();
        let path = dir.join("wic-tna.toml");
        std::fs::write(&path, cfg).unwrap();
        path
    }

    fn config() -> String {
        r#"home_realm = "ims.example.net"

[[issuer]]
iss = "https://a.example"
impi_patterns = ["*@a.example"]
impu_patterns = ["sip:*@a.example"]
origins = ["https://app.a.example"]
tna_realm = "tna.a.example"
  [[issuer.key]]
  kid = "k1"
  algorithms = ["HS256"]
  secret_file = "hmac.secret"
"#
        .to_owned()
    }

    fn token(now: i64, impus: &[&str], key: &[u8]) -> String {
        let req = MintRequest {
            alg: Alg::HS256,
            kid: Some("k1".into()),
            typ: "at+jwt".into(),
            iss: "https://a.example".into(),
            aud: "ims.example.net".into(),
            scope: "webrtc-ims-client-access-to-ims".into(),
            impi: "alice@a.example".into(),
            impus: impus.iter().map(|s| s.to_string()).collect(),
            sub: None,
            jti: None,
            iat: now,
            nbf: None,
            exp: now + 600,
        };
        mint(&req, key).unwrap()
    }

    #[test]
    fn builds_from_a_file_and_names_the_line_of_a_broken_one() {
        let path = setup("build", &config());
        let ctx = Context::new(&path, None).unwrap();
        let cfg = ctx.config();
        assert_eq!(cfg.issuers.len(), 1);
        assert_eq!(&*cfg.issuers[0].iss, "https://a.example");
        assert_eq!(cfg.issuers[0].keys.len(), 1, "the secret file was read");

        std::fs::write(
            &path,
            config().replace(
                "tna_realm = \"tna.a.example\"",
                "tna_realm = \"not a realm\"",
            ),
        )
        .unwrap();
        match Context::new(&path, None) {
            Err(ContextError::Config(e)) => {
                assert_eq!(e.field.as_deref(), Some("issuer[0].tna_realm"));
                assert_eq!(e.line, Some(8), "{e}");
            }
            Err(e) => panic!("not a configuration error: {e}"),
            Ok(_) => panic!("a bad tna_realm was accepted"),
        }
        // A failed reload keeps the configuration in force.
        assert!(ctx.reload().is_err());
        assert_eq!(ctx.config().issuers[0].tna_realm, "tna.a.example");
    }

    #[test]
    fn verify_the_token_then_authorise_the_request() {
        let now = now();
        let path = setup("decide", &config());
        let ctx = Context::new(&path, None).unwrap();
        let auth = format!("Bearer {}", token(now, &["sip:alice@a.example"], SECRET));
        let req = |to: Option<&'static str>, origin: Option<&'static str>| Request {
            authorization: Some(auth.as_bytes()),
            to: to.map(str::as_bytes),
            origin: origin.map(str::as_bytes),
            ..Default::default()
        };
        // Both halves pass: the TNA header names the issuer's realm.
        let ok = ctx.verify_request(
            &req(
                Some("<sip:alice@a.example>"),
                Some("https://APP.a.example/"),
            ),
            now,
        );
        assert_eq!(ok.reason, Reason::Ok);
        assert!(
            ok.tna_header
                .as_deref()
                .is_some_and(|t| t.contains("tna.a.example")),
            "{:?}",
            ok.tna_header
        );
        // The token passes, the request does not: To and Origin.
        assert_eq!(
            ctx.verify_request(&req(Some("sip:bob@a.example"), None), now)
                .reason,
            Reason::ToImpuNotInToken
        );
        assert_eq!(
            ctx.verify_request(&req(Some("not a uri"), None), now)
                .reason,
            Reason::InvalidToUri
        );
        assert_eq!(
            ctx.verify_request(&req(None, Some("https://evil.example")), now)
                .reason,
            Reason::OriginNotAllowed
        );
        // The token does not pass: signature.
        let forged = format!(
            "Bearer {}",
            token(
                now,
                &["sip:alice@a.example"],
                b"another-secret-of-thirty-two-bytes!!"
            )
        );
        let bad = ctx.verify_request(
            &Request {
                authorization: Some(forged.as_bytes()),
                ..Default::default()
            },
            now,
        );
        assert_eq!(bad.reason, Reason::BadSignature);
        assert_eq!(bad.iss(), Some("https://a.example"));
    }

    #[test]
    fn the_to_names_one_of_the_token_impus() {
        let now = now();
        let path = setup("to", &config());
        let ctx = Context::new(&path, None).unwrap();
        let t = token(
            now,
            &["sip:alice@a.example", "sip:+15551234@a.example;user=phone"],
            SECRET,
        );
        let v = token::verify(&ctx.config(), &t, now, &|_| false).unwrap();
        assert_eq!(to_impu(&v, b"sip:alice@a.example"), Ok(0));
        assert_eq!(
            to_impu(&v, b"<sip:ALICE@A.EXAMPLE>;tag=x"),
            Err(Reason::ToImpuNotInToken)
        );
        assert_eq!(
            to_impu(&v, b"sip:alice@A.example"),
            Ok(0),
            "host compared case-insensitively"
        );
        assert_eq!(to_impu(&v, b"sip:+15551234@a.example;user=phone"), Ok(1));
        assert_eq!(to_impu(&v, b"\xff"), Err(Reason::InvalidToUri));
    }

    #[test]
    fn origins_compare_without_case_or_trailing_slash() {
        let list = vec!["https://app.example/".to_owned()];
        assert!(origin_listed(&list, b"https://APP.example"));
        assert!(origin_listed(&list, b" https://app.example/ "));
        assert!(!origin_listed(&list, b"https://app.example.evil"));
        assert!(!origin_listed(&list, b""));
        assert!(!origin_listed(&list, b"/"));
        assert!(!origin_listed(&list, b"\xff"));
    }
}
