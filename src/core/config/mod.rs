//! The configuration file (TOML): global settings, claim names, the S-CSCF
//! side, and one `[[issuer]]` section per authorization entity with its keys
//! and identity pools.
//!
//! Loading is all-or-nothing: any problem is a [`ConfigError`] naming the
//! file, the line and the field, and nothing of the new file is used.
//!
//! Building a configuration does no I/O of its own: the files it names and
//! the TLS settings come through [`Sources`]. [`Config::load`] and
//! [`Config::parse`] (src/edge/files.rs) build it from the disk.

mod fleet;

use crate::core::identity::Pattern;
use crate::core::json;
use crate::core::keys::{self, Alg, Key, KeySource};
use crate::core::url::Url;
pub use fleet::{FleetConfig, RawFleet};
use serde::Deserialize;
use rustc_hash::FxHashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// Largest configuration file read, in bytes.
pub const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;
/// Largest key file read, in bytes.
pub const MAX_KEY_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// A configuration that could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field (e.g. `issuer[1].key[0].pem`), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// What building a configuration needs from outside its text: the files it
/// names (key files, the introspection secret, CA certificates), TLS
/// settings and the host name. src/edge/files.rs gives the real ones.
pub trait Sources {
    /// The bytes of the regular file `path`, at most `limit` of them; else
    /// a message naming the file.
    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, String>;
    /// TLS settings: the public roots plus the certificates of `ca_pem`.
    fn tls(&self, ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String>;
    /// This machine's host name (the default fleet `node_id`).
    fn hostname(&self) -> String;
}

/// Names of the claims read from the token (all configurable).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    pub iss: String,
    pub aud: String,
    pub exp: String,
    pub nbf: String,
    pub iat: String,
    pub scope: String,
    pub impi: String,
    pub impu: String,
    pub sub: String,
    pub jti: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            iss: "iss".into(),
            aud: "aud".into(),
            exp: "exp".into(),
            nbf: "nbf".into(),
            iat: "iat".into(),
            scope: "scope".into(),
            impi: "impi".into(),
            impu: "impu".into(),
            sub: "sub".into(),
            jti: "jti".into(),
        }
    }
}

/// The lookup keys (see `json::short_key`) of the configured claim names
/// ([`ClaimNames`]), made once with the configuration, so that a claim
/// lookup does not compute its name's key again on every request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimKeys {
    pub(crate) iss: u64,
    pub(crate) aud: u64,
    pub(crate) exp: u64,
    pub(crate) nbf: u64,
    pub(crate) iat: u64,
    pub(crate) scope: u64,
    pub(crate) impi: u64,
    pub(crate) impu: u64,
    pub(crate) sub: u64,
    pub(crate) jti: u64,
}

impl ClaimKeys {
    /// The keys of `names`.
    pub fn of(names: &ClaimNames) -> ClaimKeys {
        let k = |n: &String| json::short_key(n.as_bytes());
        ClaimKeys {
            iss: k(&names.iss),
            aud: k(&names.aud),
            exp: k(&names.exp),
            nbf: k(&names.nbf),
            iat: k(&names.iat),
            scope: k(&names.scope),
            impi: k(&names.impi),
            impu: k(&names.impu),
            sub: k(&names.sub),
            jti: k(&names.jti),
        }
    }
}

/// The S-CSCF side check's settings.
#[derive(Clone, Debug, Default)]
pub struct ScscfConfig {
    /// Addresses of the trusted nodes (eP-CSCFs).
    pub trusted_nodes: Vec<IpAddr>,
    /// Authorization entities allowed when the caller gives no list.
    pub allowed_entities: Vec<String>,
}

/// A key set fetched from a URL (`[[issuer.key]] jwks_url = ...`). Only the
/// refresher ([`crate::Context::tick`]) fetches it; workers read the cache
/// file it writes when the shared generation changes.
#[derive(Debug)]
pub struct RemoteJwks {
    /// Where.
    pub url: Url,
    /// Algorithms allowed for its keys (from the configuration, never from
    /// the JWKS alone).
    pub algs: Vec<Alg>,
    /// Bounds on the refresh interval (`Cache-Control: max-age` is clamped
    /// into them), seconds.
    pub min_refresh: u64,
    /// See `min_refresh`.
    pub max_refresh: u64,
    /// How long the last good key set is used while the endpoint fails,
    /// seconds after it was last fetched or confirmed; then fail closed.
    pub max_stale: u64,
    /// Timeout of one fetch.
    pub timeout: Duration,
    /// Largest key set accepted, bytes.
    pub max_size: usize,
    /// Least time between two re-fetches caused by an unknown `kid`, seconds.
    pub refetch_interval: u64,
    /// The cache file the refresher writes and the workers read.
    pub cache_file: PathBuf,
}

/// RFC 7662 introspection of reference (opaque) tokens for one issuer.
pub struct Introspection {
    /// The endpoint.
    pub url: Url,
    /// Client id (HTTP Basic user).
    pub client_id: String,
    /// Client secret (HTTP Basic password), from `client_secret_file`.
    pub client_secret: String,
    /// Timeout of one call (default 500 ms, at most 2 s).
    pub timeout: Duration,
    /// Opaque tokens starting with this belong to this issuer.
    pub token_prefix: Option<String>,
    /// Positive answers kept per process (until the token's `exp`).
    pub cache_size: usize,
    /// How long a negative answer (`active: false`, claim rule failed) is
    /// kept, seconds.
    pub negative_ttl: u64,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker answers 500 at once, seconds.
    pub breaker_cooldown: u64,
    /// Largest response accepted, bytes.
    pub max_size: usize,
}

impl fmt::Debug for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection").field("url", &self.url).field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// One authorization entity (token issuer).
#[derive(Debug)]
pub struct Issuer {
    /// The `iss` value (shared with each `Verified` and `Outcome` that
    /// names it).
    pub iss: Arc<str>,
    /// Its counter slot in the shared state of the context that loaded
    /// this configuration (a `Config` belongs to one context), found on
    /// first use.
    pub(crate) counter_slot: once_cell::sync::OnceCell<Option<usize>>,
    /// Barred in the file (the run-time barring may override it).
    pub barred: bool,
    /// Longest token lifetime accepted (`exp - iat`), seconds.
    pub max_token_lifetime: u64,
    /// IMPI pool.
    pub impi_pool: Vec<Pattern>,
    /// IMPU pool.
    pub impu_pool: Vec<Pattern>,
    /// WebSocket Origins allowed for this issuer's WICs (also checked per
    /// REGISTER that carries an Origin).
    pub origins: Vec<String>,
    /// `realm` of the TNA header (`tna_realm`, default `home_realm`); with
    /// `tna_realm_from_impu`, the fallback for a `tel:` IMPU.
    pub tna_realm: String,
    /// `uri` of the TNA header (`tna_uri`), when configured; otherwise
    /// `sip:<realm>` of the realm in use.
    pub tna_uri: Option<String>,
    /// Take the TNA realm from the host of the registering IMPU (the `To`
    /// IMPU, else the token's first SIP IMPU), as Kamailio's
    /// `ims_registrar_scscf` looks for the credentials of the IMPU's domain.
    pub tna_realm_from_impu: bool,
    /// Add `authorization-entity` to the TNA header for this issuer.
    pub add_authorization_entity: bool,
    /// Keys, each bound to one algorithm.
    pub keys: Vec<Key>,
    /// Index of `keys` by kid.
    pub keys_by_kid: FxHashMap<String, Vec<usize>>,
    /// Key set by URL (at most one per issuer).
    pub remote_jwks: Option<RemoteJwks>,
    /// Introspection of reference tokens.
    pub introspection: Option<Introspection>,
    /// TLS settings for this issuer's https requests (public roots plus
    /// `ca_file`), when it has a remote feature.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A loaded configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// A digest of everything this configuration was built from (the file
    /// and every key file, in reading order): a process that re-reads the
    /// file after another one's reload uses it only when it is what that
    /// reload checked.
    pub digest: u64,
    /// Home network domain: `realm` and `uri` of the TNA header, `realm` of
    /// the Bearer challenge.
    pub home_realm: String,
    /// Audience the token's `aud` must contain.
    pub audience: String,
    /// Scope the token's `scope` must contain.
    pub required_scope: String,
    /// Clock leeway, seconds.
    pub leeway: u64,
    /// Accept `Authorization: <jwt>` with no scheme.
    pub accept_bare_token: bool,
    /// Require the JOSE header `typ` to be `at+jwt`.
    pub require_at_jwt: bool,
    /// Longest registration granted, seconds.
    pub max_registration_expires: u64,
    /// Shortest remaining token lifetime with which a registration (or
    /// refresh) is accepted, seconds; below it: `expired`. A
    /// de-registration (`Expires: 0`) is not subject to it.
    pub min_registration_expires: u64,
    /// Largest token accepted, bytes.
    pub max_token_size: usize,
    /// Verified tokens kept per process for the refresh path (0: off).
    pub verified_cache_size: usize,
    /// `authz_server` of the Bearer challenge (RFC 8898).
    pub authz_server: Option<String>,
    /// File holding the state shared between processes (barring, reload).
    pub state_file: Option<PathBuf>,
    /// Directory of the fetched key sets (`cache_dir`, else
    /// `<state_file>.jwks`), when an issuer has a `jwks_url`.
    pub cache_dir: Option<PathBuf>,
    /// Claim names.
    pub claims: ClaimNames,
    /// Their lookup keys (made from `claims`).
    pub claim_keys: ClaimKeys,
    /// Authorization entities.
    pub issuers: Vec<Issuer>,
    /// Index of `issuers` by `iss`.
    /// (FxHash: built from the configuration and only looked up with token
    /// text, so no key an attacker sends can make the table collide.)
    pub issuer_index: FxHashMap<String, usize>,
    /// S-CSCF side.
    pub scscf: ScscfConfig,
    /// Some issuer has `[issuer.introspection]`.
    pub any_introspection: bool,
    /// Replay detection (`[replay]`, src/core/replay.rs).
    pub replay: crate::core::replay::ReplayConfig,
    /// The fleet's shared store (`[fleet]`, src/edge/fleet.rs), if any.
    pub fleet: Option<FleetConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    home_realm: Spanned<String>,
    audience: Option<Spanned<String>>,
    required_scope: Option<Spanned<String>>,
    #[serde(default = "default_leeway")]
    leeway: u64,
    #[serde(default)]
    accept_bare_token: bool,
    #[serde(default)]
    require_at_jwt: bool,
    #[serde(default)]
    add_authorization_entity: bool,
    #[serde(default = "default_max_expires")]
    max_registration_expires: u64,
    min_registration_expires: Option<Spanned<i64>>,
    #[serde(default)]
    tna_realm_from_impu: bool,
    #[serde(default = "default_max_token_size")]
    max_token_size: usize,
    #[serde(default = "default_cache_size")]
    verified_cache_size: usize,
    authz_server: Option<Spanned<String>>,
    state_file: Option<String>,
    cache_dir: Option<String>,
    #[serde(default)]
    claims: ClaimNames,
    scscf: Option<Spanned<RawScscf>>,
    #[serde(default)]
    issuer: Vec<Spanned<RawIssuer>>,
    #[serde(default)]
    replay: crate::core::replay::ReplayConfig,
    fleet: Option<Spanned<RawFleet>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScscf {
    #[serde(default)]
    trusted_nodes: Vec<String>,
    #[serde(default)]
    allowed_entities: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    iss: String,
    #[serde(default)]
    barred: bool,
    #[serde(default = "default_max_lifetime")]
    max_token_lifetime: u64,
    #[serde(default)]
    impi_patterns: Vec<String>,
    #[serde(default)]
    impu_patterns: Vec<String>,
    #[serde(default)]
    origins: Vec<String>,
    tna_realm: Option<String>,
    tna_uri: Option<String>,
    tna_realm_from_impu: Option<bool>,
    add_authorization_entity: Option<bool>,
    ca_file: Option<String>,
    introspection: Option<Spanned<RawIntrospection>>,
    #[serde(default)]
    key: Vec<Spanned<RawKey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntrospection {
    endpoint: String,
    client_id: String,
    client_secret_file: String,
    #[serde(default = "default_introspection_timeout")]
    timeout_ms: u64,
    token_prefix: Option<String>,
    #[serde(default = "default_cache_size")]
    cache_size: usize,
    #[serde(default = "default_negative_ttl")]
    negative_ttl: u64,
    #[serde(default = "default_breaker_failures")]
    breaker_failures: u32,
    #[serde(default = "default_breaker_cooldown")]
    breaker_cooldown: u64,
    #[serde(default = "default_introspection_max_size")]
    max_size: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: Option<String>,
    algorithms: Vec<String>,
    pem: Option<String>,
    certificate: Option<String>,
    secret_file: Option<String>,
    jwks: Option<String>,
    jwks_url: Option<String>,
    min_refresh: Option<u64>,
    max_refresh: Option<u64>,
    max_stale: Option<u64>,
    timeout_ms: Option<u64>,
    max_size: Option<usize>,
    refetch_interval: Option<u64>,
}

fn default_leeway() -> u64 {
    30
}
fn default_max_expires() -> u64 {
    3600
}
/// Default of `min_registration_expires`, seconds.
pub const DEFAULT_MIN_REGISTRATION_EXPIRES: u64 = 60;
fn default_max_token_size() -> usize {
    8192
}
fn default_cache_size() -> usize {
    10_000
}
fn default_max_lifetime() -> u64 {
    3600
}
fn default_introspection_timeout() -> u64 {
    500
}
fn default_negative_ttl() -> u64 {
    10
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> u64 {
    30
}
fn default_introspection_max_size() -> usize {
    64 * 1024
}

/// Hard upper bound of an introspection call's timeout, milliseconds.
pub const MAX_INTROSPECTION_TIMEOUT_MS: u64 = 2000;
/// Hard upper bound of a key set fetch's timeout, milliseconds.
pub const MAX_FETCH_TIMEOUT_MS: u64 = 10_000;

fn hex_digest(parts: &[&str]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(b"\n");
    }
    ctx.finish().as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Is `s` safe inside a quoted header parameter or as a header token?
pub fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\')
}

/// A domain name as a realm: letters, digits, '.' and '-' only.
fn is_realm(s: &str) -> bool {
    header_safe(s) && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
}

/// The key of a `key = value` line holding `offset`, if it is one.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let (k, _) = text.get(start..end)?.split_once('=')?;
    let k = k.trim();
    (!k.is_empty() && k.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))).then(|| k.to_owned())
}

/// A message on one line (parser messages may span several), for logs.
fn one_line(m: &str) -> String {
    m.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&c| c == b'\n').count() + 1
}

struct Ctx<'a> {
    file: String,
    text: &'a str,
    dir: PathBuf,
    digest: std::cell::RefCell<aws_lc_rs::digest::Context>,
}

impl Ctx<'_> {
    /// An error in `field` of the table at `span`: the line is that of the
    /// field's own `name = ...` line inside the table when there is one, else
    /// the table's first line.
    fn err(&self, span: Option<std::ops::Range<usize>>, field: impl Into<String>, msg: impl Into<String>) -> ConfigError {
        let field = field.into();
        let line = span.map(|s| line_of(self.text, self.field_offset(s, &field)));
        ConfigError { file: self.file.clone(), line, field: Some(field), message: msg.into() }
    }

    /// Where, inside the table spanning `span`, the line `name = ...` of the
    /// field `issuer[0].key[1].algorithms` (name `algorithms`) starts.
    fn field_offset(&self, span: std::ops::Range<usize>, field: &str) -> usize {
        let last = field.rsplit('.').next().unwrap_or(field);
        let name = last.split('[').next().unwrap_or(last);
        let end = span.end.min(self.text.len());
        let mut at = span.start.min(end);
        while at < end {
            if key_at(self.text, at).as_deref() == Some(name) {
                return at;
            }
            at = match self.text[at..end].find('\n') {
                Some(i) => at + i + 1,
                None => break,
            };
        }
        span.start
    }

    /// Take `bytes` (one file read for this configuration) into the digest.
    fn absorb(&self, bytes: &[u8]) {
        let mut d = self.digest.borrow_mut();
        d.update(&(bytes.len() as u64).to_le_bytes());
        d.update(bytes);
    }

    fn digest(&self) -> u64 {
        let d = self.digest.borrow().clone().finish();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d.as_ref()[..8]);
        u64::from_le_bytes(first)
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

impl Config {
    /// Build a configuration from its text. `file` names it in errors,
    /// relative key paths are resolved against `dir`, `path` is where it is
    /// (re)loaded from; the files it names are read through `src`.
    pub fn build(text: &str, file: &str, dir: &Path, path: &Path, src: &dyn Sources) -> Result<Config, ConfigError> {
        let cx = Ctx {
            file: file.to_owned(),
            text,
            dir: dir.to_path_buf(),
            digest: std::cell::RefCell::new(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256)),
        };
        cx.absorb(text.as_bytes());
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            field: e.span().and_then(|s| key_at(text, s.start)),
            message: one_line(e.message()),
        })?;

        let home_realm = raw.home_realm.get_ref().clone();
        if !is_realm(&home_realm) {
            return Err(cx.err(Some(raw.home_realm.span()), "home_realm", "must be a domain name"));
        }
        let min_registration_expires = match &raw.min_registration_expires {
            None => DEFAULT_MIN_REGISTRATION_EXPIRES.min(raw.max_registration_expires),
            Some(m) => match u64::try_from(*m.get_ref()) {
                Ok(v) if v <= raw.max_registration_expires => v,
                _ => {
                    return Err(cx.err(
                        Some(m.span()),
                        "min_registration_expires",
                        format!(
                            "{} is out of range: must be between 0 and max_registration_expires ({}) seconds",
                            m.get_ref(),
                            raw.max_registration_expires
                        ),
                    ))
                }
            },
        };
        let audience = match &raw.audience {
            Some(a) if a.get_ref().is_empty() => return Err(cx.err(Some(a.span()), "audience", "must not be empty")),
            Some(a) => a.get_ref().clone(),
            None => home_realm.clone(),
        };
        let required_scope = match &raw.required_scope {
            Some(s) if !header_safe(s.get_ref()) => {
                return Err(cx.err(Some(s.span()), "required_scope", "must be one scope token (no space or quote)"))
            }
            Some(s) => s.get_ref().clone(),
            None => "webrtc-ims-client-access-to-ims".to_owned(),
        };
        let authz_server = match &raw.authz_server {
            Some(s) if !header_safe(s.get_ref()) => {
                return Err(cx.err(Some(s.span()), "authz_server", "must be a URL without spaces or quotes"))
            }
            Some(s) => Some(s.get_ref().clone()),
            None => None,
        };
        if raw.verified_cache_size > 10_000_000 {
            return Err(cx.err(None, "verified_cache_size", "at most 10000000"));
        }
        if raw.max_token_size < 64 || raw.max_token_size > 1024 * 1024 {
            return Err(cx.err(None, "max_token_size", "must be between 64 and 1048576"));
        }
        for (name, v) in [
            ("iss", &raw.claims.iss),
            ("aud", &raw.claims.aud),
            ("exp", &raw.claims.exp),
            ("nbf", &raw.claims.nbf),
            ("iat", &raw.claims.iat),
            ("scope", &raw.claims.scope),
            ("impi", &raw.claims.impi),
            ("impu", &raw.claims.impu),
            ("sub", &raw.claims.sub),
            ("jti", &raw.claims.jti),
        ] {
            if v.is_empty() {
                return Err(cx.err(None, format!("claims.{name}"), "claim name must not be empty"));
            }
        }

        let scscf = match &raw.scscf {
            None => ScscfConfig::default(),
            Some(s) => {
                let line = Some(s.span());
                let mut nodes = Vec::new();
                for (i, n) in s.get_ref().trusted_nodes.iter().enumerate() {
                    nodes.push(n.parse::<IpAddr>().map_err(|_| {
                        cx.err(line.clone(), format!("scscf.trusted_nodes[{i}]"), format!("{n:?} is not an IP address"))
                    })?);
                }
                for (i, e) in s.get_ref().allowed_entities.iter().enumerate() {
                    if !header_safe(e) {
                        return Err(cx.err(line.clone(), format!("scscf.allowed_entities[{i}]"), "empty or has spaces or quotes"));
                    }
                }
                ScscfConfig { trusted_nodes: nodes, allowed_entities: s.get_ref().allowed_entities.clone() }
            }
        };

        let state_file = raw.state_file.as_deref().map(|p| cx.resolve(p));
        let cache_dir = match (&raw.cache_dir, &state_file) {
            (Some(d), _) => Some(cx.resolve(d)),
            (None, Some(f)) => {
                let mut name = f.file_name().map(|n| n.to_os_string()).unwrap_or_default();
                name.push(".jwks");
                Some(f.with_file_name(name))
            }
            (None, None) => None,
        };
        let mut prefixes: Vec<(String, usize)> = Vec::new();
        let mut unprefixed_introspection = 0usize;
        let mut issuers = Vec::with_capacity(raw.issuer.len());
        let mut issuer_index = FxHashMap::with_capacity_and_hasher(raw.issuer.len(), Default::default());
        for (i, si) in raw.issuer.iter().enumerate() {
            let span = Some(si.span());
            let ri = si.get_ref();
            let fname = |f: &str| format!("issuer[{i}].{f}");
            if !header_safe(&ri.iss) {
                return Err(cx.err(span, fname("iss"), "must be non-empty, without spaces, quotes or backslashes"));
            }
            if issuer_index.insert(ri.iss.clone(), i).is_some() {
                return Err(cx.err(span, fname("iss"), format!("issuer {:?} is configured twice", ri.iss)));
            }
            if ri.max_token_lifetime == 0 {
                return Err(cx.err(span, fname("max_token_lifetime"), "must be positive"));
            }
            let compile = |list: &[String], what: &str| -> Result<Vec<Pattern>, ConfigError> {
                list.iter()
                    .enumerate()
                    .map(|(j, p)| Pattern::new(p).map_err(|m| cx.err(span.clone(), fname(&format!("{what}[{j}]")), m)))
                    .collect()
            };
            let impi_pool = compile(&ri.impi_patterns, "impi_patterns")?;
            let impu_pool = compile(&ri.impu_patterns, "impu_patterns")?;
            for (j, o) in ri.origins.iter().enumerate() {
                if !header_safe(o) || !(o.starts_with("https://") || o.starts_with("http://")) {
                    return Err(cx.err(span.clone(), fname(&format!("origins[{j}]")), "must be an http(s) origin such as https://app.example.com"));
                }
            }
            let tna_realm = match &ri.tna_realm {
                Some(r) if !is_realm(r) => return Err(cx.err(span.clone(), fname("tna_realm"), "must be a domain name")),
                Some(r) => r.clone(),
                None => home_realm.clone(),
            };
            if let Some(u) = &ri.tna_uri {
                let scheme = u.split_once(':').map(|(s, _)| s).unwrap_or("");
                if !header_safe(u) || !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) || u.len() <= scheme.len() + 1 {
                    return Err(cx.err(span.clone(), fname("tna_uri"), "must be a sip: or sips: URI without spaces, quotes or backslashes, such as sip:ims.example.net"));
                }
            }
            if ri.key.is_empty() && ri.introspection.is_none() {
                return Err(cx.err(span.clone(), fname("key"), "an issuer needs at least one [[issuer.key]] or an [issuer.introspection]"));
            }
            let ca_pem = match &ri.ca_file {
                Some(f) => Some(src.read(&cx.resolve(f), MAX_KEY_FILE_SIZE).map_err(|m| cx.err(span.clone(), fname("ca_file"), m))?),
                None => None,
            };
            let needs_tls = ri.introspection.is_some() || ri.key.iter().any(|k| k.get_ref().jwks_url.is_some());
            let tls = if needs_tls || ca_pem.is_some() {
                Some(src.tls(ca_pem.as_deref()).map_err(|m| cx.err(span.clone(), fname("ca_file"), m))?)
            } else {
                None
            };
            let introspection = match &ri.introspection {
                None => None,
                Some(sp) => {
                    let ispan = Some(sp.span());
                    let r = sp.get_ref();
                    let iname = |f: &str| fname(&format!("introspection.{f}"));
                    let url = Url::parse(&r.endpoint).map_err(|m| cx.err(ispan.clone(), iname("endpoint"), m))?;
                    if !header_safe(&r.client_id) || r.client_id.contains(':') {
                        return Err(cx.err(ispan, iname("client_id"), "must be non-empty, without spaces, quotes or ':'"));
                    }
                    let secret = src.read(&cx.resolve(&r.client_secret_file), 64 * 1024)
                        .map_err(|m| cx.err(ispan.clone(), iname("client_secret_file"), m))?;
                    let secret = String::from_utf8(trim_end(&secret).to_vec())
                        .ok()
                        .filter(|s| !s.is_empty() && !s.contains(['\r', '\n']))
                        .ok_or_else(|| cx.err(ispan.clone(), iname("client_secret_file"), "must hold one non-empty UTF-8 line"))?;
                    if r.timeout_ms == 0 || r.timeout_ms > MAX_INTROSPECTION_TIMEOUT_MS {
                        return Err(cx.err(ispan, iname("timeout_ms"), format!("must be between 1 and {MAX_INTROSPECTION_TIMEOUT_MS}")));
                    }
                    if r.cache_size > 1_000_000 {
                        return Err(cx.err(ispan, iname("cache_size"), "at most 1000000"));
                    }
                    if r.negative_ttl > 300 {
                        return Err(cx.err(ispan, iname("negative_ttl"), "at most 300 seconds"));
                    }
                    if r.breaker_failures == 0 || r.breaker_failures > 1000 {
                        return Err(cx.err(ispan, iname("breaker_failures"), "must be between 1 and 1000"));
                    }
                    if r.breaker_cooldown == 0 || r.breaker_cooldown > 3600 {
                        return Err(cx.err(ispan, iname("breaker_cooldown"), "must be between 1 and 3600 seconds"));
                    }
                    if r.max_size < 256 || r.max_size > 1024 * 1024 {
                        return Err(cx.err(ispan, iname("max_size"), "must be between 256 and 1048576"));
                    }
                    match &r.token_prefix {
                        Some(p) => {
                            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_graphic()) {
                                return Err(cx.err(ispan, iname("token_prefix"), "must be non-empty printable ASCII"));
                            }
                            if let Some((q, j)) = prefixes.iter().find(|(q, _)| q.starts_with(p.as_str()) || p.starts_with(q.as_str())) {
                                return Err(cx.err(ispan, iname("token_prefix"), format!("overlaps the prefix {q:?} of issuer[{j}]: a token must name one issuer")));
                            }
                            prefixes.push((p.clone(), i));
                        }
                        None => {
                            unprefixed_introspection += 1;
                            if unprefixed_introspection == 2 {
                                crate::log::warn(&format!(
                                    "{file}: {}: two issuers have introspection without token_prefix: an unprefixed opaque token is refused (it cannot be attributed)",
                                    iname("token_prefix")
                                ));
                            }
                        }
                    }
                    Some(Introspection {
                        url,
                        client_id: r.client_id.clone(),
                        client_secret: secret,
                        timeout: Duration::from_millis(r.timeout_ms),
                        token_prefix: r.token_prefix.clone(),
                        cache_size: r.cache_size,
                        negative_ttl: r.negative_ttl,
                        breaker_failures: r.breaker_failures,
                        breaker_cooldown: r.breaker_cooldown,
                        max_size: r.max_size,
                    })
                }
            };
            let mut remote_jwks: Option<RemoteJwks> = None;
            let mut keys: Vec<Key> = Vec::new();
            for (k, sk) in ri.key.iter().enumerate() {
                let kspan = Some(sk.span());
                let rk = sk.get_ref();
                let kname = |f: &str| fname(&format!("key[{k}].{f}"));
                if rk.algorithms.is_empty() {
                    return Err(cx.err(kspan, kname("algorithms"), "list at least one algorithm"));
                }
                let mut algs = Vec::new();
                for a in &rk.algorithms {
                    match Alg::from_name(a) {
                        Some(alg) => algs.push(alg),
                        None => {
                            return Err(cx.err(kspan, kname("algorithms"), format!(
                                "{a:?} is not supported (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
                            )))
                        }
                    }
                }
                if let Some(kid) = &rk.kid {
                    if !header_safe(kid) {
                        return Err(cx.err(kspan, kname("kid"), "must be non-empty, without spaces or quotes"));
                    }
                }
                let sources = [
                    ("pem", &rk.pem),
                    ("certificate", &rk.certificate),
                    ("secret_file", &rk.secret_file),
                    ("jwks", &rk.jwks),
                    ("jwks_url", &rk.jwks_url),
                ];
                let given: Vec<_> = sources.iter().filter(|(_, v)| v.is_some()).collect();
                if given.len() != 1 {
                    return Err(cx.err(kspan, fname(&format!("key[{k}]")), "give exactly one of pem, certificate, secret_file, jwks, jwks_url"));
                }
                let remote_only = [
                    ("min_refresh", rk.min_refresh.is_some()),
                    ("max_refresh", rk.max_refresh.is_some()),
                    ("max_stale", rk.max_stale.is_some()),
                    ("timeout_ms", rk.timeout_ms.is_some()),
                    ("max_size", rk.max_size.is_some()),
                    ("refetch_interval", rk.refetch_interval.is_some()),
                ];
                if let Some(url) = &rk.jwks_url {
                    if rk.kid.is_some() {
                        return Err(cx.err(kspan, kname("kid"), "a JWKS gives its own kids; remove kid"));
                    }
                    if remote_jwks.is_some() {
                        return Err(cx.err(kspan, kname("jwks_url"), "at most one jwks_url per issuer"));
                    }
                    let url = Url::parse(url).map_err(|m| cx.err(kspan.clone(), kname("jwks_url"), m))?;
                    let Some(dir) = &cache_dir else {
                        return Err(cx.err(kspan, kname("jwks_url"), "a jwks_url needs cache_dir (or state_file) at the top of the file: workers read the fetched key set from there"));
                    };
                    let min_refresh = rk.min_refresh.unwrap_or(60);
                    let max_refresh = rk.max_refresh.unwrap_or(86_400);
                    if min_refresh == 0 || min_refresh > max_refresh || max_refresh > 30 * 86_400 {
                        return Err(cx.err(kspan, kname(if min_refresh == 0 { "min_refresh" } else { "max_refresh" }), "need 1 <= min_refresh <= max_refresh <= 2592000 seconds"));
                    }
                    let max_stale = rk.max_stale.unwrap_or(86_400);
                    if max_stale > 30 * 86_400 {
                        return Err(cx.err(kspan, kname("max_stale"), "at most 2592000 seconds"));
                    }
                    let timeout_ms = rk.timeout_ms.unwrap_or(2000);
                    if timeout_ms == 0 || timeout_ms > MAX_FETCH_TIMEOUT_MS {
                        return Err(cx.err(kspan, kname("timeout_ms"), format!("must be between 1 and {MAX_FETCH_TIMEOUT_MS}")));
                    }
                    let max_size = rk.max_size.unwrap_or(256 * 1024);
                    if max_size < 64 || max_size as u64 > MAX_KEY_FILE_SIZE {
                        return Err(cx.err(kspan, kname("max_size"), format!("must be between 64 and {MAX_KEY_FILE_SIZE}")));
                    }
                    let refetch_interval = rk.refetch_interval.unwrap_or(60);
                    if refetch_interval == 0 {
                        return Err(cx.err(kspan, kname("refetch_interval"), "must be positive"));
                    }
                    let name = format!("jwks-{}.json", hex_digest(&[&ri.iss, &rk.jwks_url.clone().unwrap_or_default()]));
                    remote_jwks = Some(RemoteJwks {
                        url,
                        algs,
                        min_refresh,
                        max_refresh,
                        max_stale,
                        timeout: Duration::from_millis(timeout_ms),
                        max_size,
                        refetch_interval,
                        cache_file: dir.join(name),
                    });
                    continue;
                }
                if let Some((f, _)) = remote_only.iter().find(|(_, set)| *set) {
                    return Err(cx.err(kspan, kname(f), "only for a jwks_url key"));
                }
                let (field, Some(rel)) = (given[0].0, given[0].1) else {
                    return Err(cx.err(kspan, fname(&format!("key[{k}]")), "no key source"));
                };
                let path = cx.resolve(rel);
                let data = src.read(&path, MAX_KEY_FILE_SIZE).map_err(|m| cx.err(kspan.clone(), kname(field), m))?;
                cx.absorb(&data);
                let src_name = path.display().to_string();
                let loaded = match field {
                    "jwks" => {
                        if rk.kid.is_some() {
                            return Err(cx.err(kspan, kname("kid"), "a JWKS gives its own kids; remove kid"));
                        }
                        keys::load_jwks(&data, &algs, &src_name)
                            .map(|(keys, notes)| {
                                // Every process that loads the file logs
                                // these: a key not meant for verification
                                // is expected in a shared set (INFO), only
                                // one this configuration cannot use is a
                                // WARN.
                                for n in notes {
                                    crate::log::log(n.level(), &format!("{file}: {}: {src_name}: {n}", kname("jwks")));
                                }
                                keys
                            })
                    }
                    "secret_file" => {
                        let trimmed = trim_end(&data);
                        keys::load_file_key(rk.kid.as_deref(), &algs, KeySource::Secret(trimmed), &src_name)
                    }
                    _ => keys::load_file_key(rk.kid.as_deref(), &algs, KeySource::Pem(&data), &src_name),
                }
                .map_err(|m| cx.err(kspan.clone(), kname(field), m))?;
                keys.extend(loaded);
            }
            let mut keys_by_kid: FxHashMap<String, Vec<usize>> = FxHashMap::default();
            for (idx, key) in keys.iter().enumerate() {
                if let Some(kid) = &key.kid {
                    keys_by_kid.entry(kid.to_string()).or_default().push(idx);
                }
            }
            // A kid must name one key (possibly with several algorithms).
            for (kid, idxs) in &keys_by_kid {
                let first = &keys[idxs[0]].source;
                if idxs.iter().any(|&x| &keys[x].source != first) {
                    return Err(cx.err(span.clone(), fname("key"), format!("kid {kid:?} names more than one key")));
                }
            }
            issuers.push(Issuer {
                iss: Arc::from(ri.iss.as_str()),
                counter_slot: Default::default(),
                barred: ri.barred,
                max_token_lifetime: ri.max_token_lifetime,
                impi_pool,
                impu_pool,
                origins: ri.origins.clone(),
                tna_realm,
                tna_uri: ri.tna_uri.clone(),
                tna_realm_from_impu: ri.tna_realm_from_impu.unwrap_or(raw.tna_realm_from_impu),
                add_authorization_entity: ri.add_authorization_entity.unwrap_or(raw.add_authorization_entity),
                keys,
                keys_by_kid,
                remote_jwks,
                introspection,
                tls,
            });
        }

        let fleet = match raw.fleet {
            None => None,
            Some(f) => {
                let span = f.span();
                Some(f.into_inner().check(|| src.hostname()).map_err(|(field, m)| cx.err(Some(span), format!("fleet.{field}"), m))?)
            }
        };
        Ok(Config {
            digest: cx.digest(),
            replay: raw.replay,
            fleet,
            path: path.to_path_buf(),
            home_realm,
            audience,
            required_scope,
            leeway: raw.leeway,
            accept_bare_token: raw.accept_bare_token,
            require_at_jwt: raw.require_at_jwt,
            max_registration_expires: raw.max_registration_expires,
            min_registration_expires,
            max_token_size: raw.max_token_size,
            verified_cache_size: raw.verified_cache_size,
            authz_server,
            state_file,
            cache_dir,
            claim_keys: ClaimKeys::of(&raw.claims),
            claims: raw.claims,
            any_introspection: issuers.iter().any(|i| i.introspection.is_some()),
            issuers,
            issuer_index,
            scscf,
        })
    }

    /// The issuer a reference (non-JWT) token belongs to: the one whose
    /// `token_prefix` it starts with; else, when `jwt_shaped` is false, the
    /// only issuer with introspection and no prefix, if there is exactly one.
    /// `None`: no issuer can be told (the token is refused, fail closed).
    pub fn introspection_issuer(&self, token: &str, jwt_shaped: bool) -> Option<&Issuer> {
        let mut sole = None;
        let mut unprefixed = 0;
        for i in &self.issuers {
            let Some(x) = &i.introspection else { continue };
            match &x.token_prefix {
                Some(p) if token.starts_with(p.as_str()) => return Some(i),
                Some(_) => {}
                None => {
                    unprefixed += 1;
                    sole = Some(i);
                }
            }
        }
        if jwt_shaped || unprefixed != 1 {
            return None;
        }
        sole
    }

    /// The issuer named `iss`, if configured.
    pub fn issuer(&self, iss: &str) -> Option<&Issuer> {
        self.issuer_index.get(iss).map(|&i| &self.issuers[i])
    }
}

fn trim_end(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &b[..end]
}

#[cfg(test)]
mod tests {
    //! Configuration rules through a [`Sources`] of fixed files: errors
    //! name the field and its line; keys are trusted per issuer.
    use super::*;
    use std::collections::HashMap;

    struct Files(HashMap<PathBuf, Vec<u8>>);

    impl Sources for Files {
        fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, String> {
            match self.0.get(path) {
                Some(b) if b.len() as u64 <= limit => Ok(b.clone()),
                Some(_) => Err(format!("{} is larger than {limit} bytes", path.display())),
                None => Err(format!("cannot read {}", path.display())),
            }
        }
        fn tls(&self, _: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
            Err("no TLS in these tests".into())
        }
        fn hostname(&self) -> String {
            "node-a".into()
        }
    }

    fn build(text: &str) -> Result<Config, ConfigError> {
        let files = Files(HashMap::from([
            (PathBuf::from("/cfg/a.secret"), b"secret-of-issuer-a-thirty-two-bytes".to_vec()),
            (PathBuf::from("/cfg/b.secret"), b"secret-of-issuer-b-thirty-two-bytes".to_vec()),
        ]));
        Config::build(text, "t.toml", Path::new("/cfg"), Path::new("/cfg/t.toml"), &files)
    }

    const TWO: &str = r#"home_realm = "ims.example.net"

[[issuer]]
iss = "https://a.example"
  [[issuer.key]]
  kid = "k"
  algorithms = ["HS256"]
  secret_file = "a.secret"

[[issuer]]
iss = "https://b.example"
  [[issuer.key]]
  kid = "k"
  algorithms = ["HS256"]
  secret_file = "b.secret"
"#;

    #[test]
    fn keys_are_trusted_per_issuer() {
        let cfg = build(TWO).unwrap();
        let (a, b) = (cfg.issuer("https://a.example").unwrap(), cfg.issuer("https://b.example").unwrap());
        // The same kid names each issuer's own key, not the other's.
        assert_eq!(a.keys_by_kid["k"], vec![0]);
        assert_eq!(b.keys_by_kid["k"], vec![0]);
        assert_ne!(a.keys[0].source, b.keys[0].source);
        assert!(cfg.issuer("https://c.example").is_none());
        assert_eq!(cfg.issuer_index["https://b.example"], 1);
    }

    #[test]
    fn section_errors_name_the_key_and_its_line() {
        let cases: &[(&str, &str, &str, usize)] = &[
            // (replace, by, field, line)
            ("home_realm = \"ims.example.net\"", "home_realm = \"a b\"", "home_realm", 1),
            ("iss = \"https://b.example\"", "iss = \"https://a.example\"", "issuer[1].iss", 11),
            ("  algorithms = [\"HS256\"]\n  secret_file = \"b.secret\"", "  algorithms = [\"XX1\"]\n  secret_file = \"b.secret\"", "issuer[1].key[0].algorithms", 14),
            ("secret_file = \"b.secret\"", "secret_file = \"missing\"", "issuer[1].key[0].secret_file", 15),
            ("home_realm = \"ims.example.net\"\n", "home_realm = \"ims.example.net\"\n[scscf]\ntrusted_nodes = [\"x\"]\n", "scscf.trusted_nodes[0]", 3),
            ("home_realm = \"ims.example.net\"\n", "home_realm = \"ims.example.net\"\n[fleet]\nredis_url = \"redis://127.0.0.1/\"\nkey_prefix = \"\"\n", "fleet.key_prefix", 4),
        ];
        for (from, to, field, line) in cases {
            let text = TWO.replacen(from, to, 1);
            assert_ne!(text, TWO, "{from}");
            let e = build(&text).err().unwrap_or_else(|| panic!("accepted: {to}"));
            assert_eq!((e.field.as_deref(), e.line), (Some(*field), Some(*line)), "{e}");
            assert_eq!(e.file, "t.toml");
        }
    }

    #[test]
    fn fleet_node_id_defaults_to_the_host_name() {
        let text = TWO.replacen("home_realm = \"ims.example.net\"\n", "home_realm = \"ims.example.net\"\n[fleet]\nredis_url = \"redis://127.0.0.1/\"\n", 1);
        assert_eq!(build(&text).unwrap().fleet.unwrap().node_id, "node-a");
    }
}
