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
use rustc_hash::FxHashMap;
use serde::Deserialize;
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
    /// Where; `None`: the `jwks_uri` of the issuer's metadata
    /// ([`Discovery`]).
    pub url: Option<Url>,
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
    /// The endpoint; `None`: the `introspection_endpoint` of the issuer's
    /// metadata ([`Discovery`]).
    pub url: Option<Url>,
    /// Client id (HTTP Basic user).
    pub client_id: String,
    /// Client secret (HTTP Basic password), from `client_secret_file`.
    pub client_secret: String,
    /// Timeout of one call (default 500 ms, at most 2 s).
    pub timeout: Duration,
    /// Opaque tokens starting with this belong to this issuer.
    pub token_prefix: Option<String>,
    /// Positive answers kept per process.
    pub cache_size: usize,
    /// How long a positive answer is kept, seconds (never past the token's
    /// `exp`): the longest a token revoked at the authorization server can
    /// still be accepted by a process that asked before the revocation.
    pub positive_ttl: u64,
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
        f.debug_struct("Introspection")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Where an issuer's authorization server metadata is read (RFC 8414,
/// OpenID Connect Discovery 1.0), for the URLs its configuration leaves
/// out. Only the refresher fetches it, as it fetches key sets; workers read
/// the cache file it writes when the shared generation changes.
#[derive(Debug)]
pub struct Discovery {
    /// The locations tried, in order: the configured `metadata_url`, else
    /// the RFC 8414 one (`/.well-known/oauth-authorization-server` inserted
    /// before the issuer's path), then the OpenID Connect one
    /// (`/.well-known/openid-configuration` appended to the issuer).
    pub urls: Vec<Url>,
    /// The metadata must give `jwks_uri` (a key of the issuer has no
    /// source of its own).
    pub jwks: bool,
    /// The metadata must give `introspection_endpoint` (the issuer's
    /// `[issuer.introspection]` has no `endpoint`).
    pub introspection: bool,
    /// The cache file the refresher writes and the workers read.
    pub cache_file: PathBuf,
}

/// Timeout of one metadata fetch.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest metadata document accepted, bytes.
pub const METADATA_MAX_SIZE: usize = 64 * 1024;
/// Metadata refresh interval bounds, seconds (`Cache-Control: max-age` is
/// clamped into them; 3600 without it).
pub const METADATA_MIN_REFRESH: u64 = 300;
/// See [`METADATA_MIN_REFRESH`].
pub const METADATA_MAX_REFRESH: u64 = 86_400;
/// After a failed metadata fetch, the next try, seconds.
pub const METADATA_RETRY: u64 = 10;
/// A metadata cache file of a previous run is adopted at start when it is
/// younger than this, seconds (the URLs it names are then used until the
/// first fetch succeeds; key sets keep their own `max_stale`).
pub const METADATA_MAX_AGE: u64 = 7 * 86_400;

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
    /// Metadata discovery, for the URLs left out above.
    pub discovery: Option<Discovery>,
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
    /// The level of the one log line per decision (`decision_log`).
    pub decision_log: DecisionLog,
    /// Whether that line names the IMPI (`decision_log_impi`; personal
    /// data, off by default).
    pub decision_log_impi: bool,
}

/// `decision_log`: the level of the one log line written per decision
/// (`wic-tna decision: reason=... status=... issuer=... source=...`), or
/// none.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DecisionLog {
    /// No line (the default).
    #[default]
    Off,
    /// At error level.
    Error,
    /// At warning level.
    Warn,
    /// At info level.
    Info,
    /// At debug level.
    Debug,
}

impl DecisionLog {
    /// The level of [`crate::log`], `None` for off.
    pub fn level(self) -> Option<i32> {
        match self {
            DecisionLog::Off => None,
            DecisionLog::Error => Some(crate::log::ERROR),
            DecisionLog::Warn => Some(crate::log::WARN),
            DecisionLog::Info => Some(crate::log::INFO),
            DecisionLog::Debug => Some(crate::log::DEBUG),
        }
    }
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
    #[serde(default)]
    decision_log: DecisionLog,
    #[serde(default)]
    decision_log_impi: bool,
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
    discovery: Option<bool>,
    metadata_url: Option<String>,
    introspection: Option<Spanned<RawIntrospection>>,
    #[serde(default)]
    key: Vec<Spanned<RawKey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntrospection {
    endpoint: Option<String>,
    client_id: String,
    client_secret_file: String,
    #[serde(default = "default_introspection_timeout")]
    timeout_ms: u64,
    token_prefix: Option<String>,
    #[serde(default = "default_cache_size")]
    cache_size: usize,
    #[serde(default = "default_positive_ttl")]
    positive_ttl: u64,
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
/// A revoked token is refused within a minute by default: long enough
/// that a registering client's retries and re-registrations hit the cache,
/// short enough for revocation to matter (RFC 7662 section 4 leaves the
/// trade-off to the resource server).
fn default_positive_ttl() -> u64 {
    60
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
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where the metadata of issuer `iss` is published: RFC 8414 section 3.1
/// (`/.well-known/oauth-authorization-server` inserted between the host and
/// the issuer's path, its terminating `/` removed), then OpenID Connect
/// Discovery 1.0 section 4 (`/.well-known/openid-configuration` appended).
pub fn metadata_locations(iss: &str) -> Result<Vec<Url>, String> {
    let base = Url::parse(iss)
        .map_err(|m| format!("discovery needs the issuer to be an https URL: {m}"))?;
    if base.path.contains('?') {
        return Err("discovery needs an issuer URL without a query (RFC 8414)".into());
    }
    let path = base.path.trim_end_matches('/');
    let at = |p: String| Url {
        path: p,
        ..base.clone()
    };
    Ok(vec![
        at(format!("/.well-known/oauth-authorization-server{path}")),
        at(format!("{path}/.well-known/openid-configuration")),
    ])
}

/// Is `s` safe inside a quoted header parameter or as a header token?
pub fn header_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\')
}

/// A domain name as a realm: letters, digits, '.' and '-' only.
fn is_realm(s: &str) -> bool {
    header_safe(s)
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
}

/// The key of a `key = value` line holding `offset`, if it is one.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let (k, _) = text.get(start..end)?.split_once('=')?;
    let k = k.trim();
    (!k.is_empty()
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')))
    .then(|| k.to_owned())
}

/// A message on one line (parser messages may span several), for logs.
fn one_line(m: &str) -> String {
    m.split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1
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
    fn err(
        &self,
        span: Option<std::ops::Range<usize>>,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> ConfigError {
        let field = field.into();
        let line = span.map(|s| line_of(self.text, self.field_offset(s, &field)));
        ConfigError {
            file: self.file.clone(),
            line,
            field: Some(field),
            message: msg.into(),
        }
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

/// Where a table is in the file (for the line of an error), if known.
type Span = Option<std::ops::Range<usize>>;

/// The top-level settings that are checked or derived; the others are
/// taken from [`RawConfig`] as written.
struct TopLevel {
    home_realm: String,
    min_registration_expires: u64,
    audience: String,
    required_scope: String,
    authz_server: Option<String>,
    state_file: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
}

/// What an `[[issuer]]` table is checked against: the tables before it.
#[derive(Default)]
struct Seen {
    /// Index of the issuers so far, by `iss`.
    index: FxHashMap<String, usize>,
    /// The `token_prefix` of each introspection so far, with its issuer.
    prefixes: Vec<(String, usize)>,
    /// Introspections so far without a `token_prefix`.
    unprefixed: usize,
}

/// One `[[issuer.key]]`, checked: a key set fetched by URL, or keys read
/// from a file now.
enum KeyEntry {
    Remote(RemoteJwks),
    Local(Vec<Key>),
}

/// The rules of each section, in the order `Config::build` applies them
/// (the first broken rule is the error reported).
impl Ctx<'_> {
    /// The text as TOML, every field of the right type.
    fn parse(&self) -> Result<RawConfig, ConfigError> {
        toml::from_str(self.text).map_err(|e| ConfigError {
            file: self.file.clone(),
            line: e.span().map(|s| line_of(self.text, s.start)),
            field: e.span().and_then(|s| key_at(self.text, s.start)),
            message: one_line(e.message()),
        })
    }

    /// The settings at the top of the file.
    fn top_level(&self, raw: &RawConfig) -> Result<TopLevel, ConfigError> {
        let home_realm = raw.home_realm.get_ref().clone();
        if !is_realm(&home_realm) {
            return Err(self.err(
                Some(raw.home_realm.span()),
                "home_realm",
                "must be a domain name",
            ));
        }
        let min_registration_expires = match &raw.min_registration_expires {
            None => DEFAULT_MIN_REGISTRATION_EXPIRES.min(raw.max_registration_expires),
            Some(m) => match u64::try_from(*m.get_ref()) {
                Ok(v) if v <= raw.max_registration_expires => v,
                _ => {
                    return Err(self.err(
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
            Some(a) if a.get_ref().is_empty() => {
                return Err(self.err(Some(a.span()), "audience", "must not be empty"))
            }
            Some(a) => a.get_ref().clone(),
            None => home_realm.clone(),
        };
        let required_scope = match &raw.required_scope {
            Some(s) if !header_safe(s.get_ref()) => {
                return Err(self.err(
                    Some(s.span()),
                    "required_scope",
                    "must be one scope token (no space or quote)",
                ))
            }
            Some(s) => s.get_ref().clone(),
            None => "webrtc-ims-client-access-to-ims".to_owned(),
        };
        let authz_server = match &raw.authz_server {
            Some(s) if !header_safe(s.get_ref()) => {
                return Err(self.err(
                    Some(s.span()),
                    "authz_server",
                    "must be a URL without spaces or quotes",
                ))
            }
            Some(s) => Some(s.get_ref().clone()),
            None => None,
        };
        if raw.verified_cache_size > 10_000_000 {
            return Err(self.err(None, "verified_cache_size", "at most 10000000"));
        }
        if raw.max_token_size < 64 || raw.max_token_size > 1024 * 1024 {
            return Err(self.err(None, "max_token_size", "must be between 64 and 1048576"));
        }
        let state_file = raw.state_file.as_deref().map(|p| self.resolve(p));
        let cache_dir = match (&raw.cache_dir, &state_file) {
            (Some(d), _) => Some(self.resolve(d)),
            (None, Some(f)) => {
                let mut name = f.file_name().map(|n| n.to_os_string()).unwrap_or_default();
                name.push(".jwks");
                Some(f.with_file_name(name))
            }
            (None, None) => None,
        };
        Ok(TopLevel {
            home_realm,
            min_registration_expires,
            audience,
            required_scope,
            authz_server,
            state_file,
            cache_dir,
        })
    }

    /// `[claims]`: every claim name is non-empty.
    fn claims(&self, c: &ClaimNames) -> Result<(), ConfigError> {
        for (name, v) in [
            ("iss", &c.iss),
            ("aud", &c.aud),
            ("exp", &c.exp),
            ("nbf", &c.nbf),
            ("iat", &c.iat),
            ("scope", &c.scope),
            ("impi", &c.impi),
            ("impu", &c.impu),
            ("sub", &c.sub),
            ("jti", &c.jti),
        ] {
            if v.is_empty() {
                return Err(self.err(
                    None,
                    format!("claims.{name}"),
                    "claim name must not be empty",
                ));
            }
        }
        Ok(())
    }

    /// `[scscf]`: trusted nodes are IP addresses, entities header-safe.
    fn scscf(&self, s: Option<&Spanned<RawScscf>>) -> Result<ScscfConfig, ConfigError> {
        let Some(s) = s else {
            return Ok(ScscfConfig::default());
        };
        let line = Some(s.span());
        let mut nodes = Vec::new();
        for (i, n) in s.get_ref().trusted_nodes.iter().enumerate() {
            nodes.push(n.parse::<IpAddr>().map_err(|_| {
                self.err(
                    line.clone(),
                    format!("scscf.trusted_nodes[{i}]"),
                    format!("{n:?} is not an IP address"),
                )
            })?);
        }
        for (i, e) in s.get_ref().allowed_entities.iter().enumerate() {
            if !header_safe(e) {
                return Err(self.err(
                    line.clone(),
                    format!("scscf.allowed_entities[{i}]"),
                    "empty or has spaces or quotes",
                ));
            }
        }
        Ok(ScscfConfig {
            trusted_nodes: nodes,
            allowed_entities: s.get_ref().allowed_entities.clone(),
        })
    }

    /// `[[issuer]]` number `i`, checked against the ones before it (`seen`,
    /// which it joins).
    fn issuer(
        &self,
        i: usize,
        si: &Spanned<RawIssuer>,
        raw: &RawConfig,
        top: &TopLevel,
        seen: &mut Seen,
        src: &dyn Sources,
    ) -> Result<Issuer, ConfigError> {
        let span = Some(si.span());
        let ri = si.get_ref();
        let fname = |f: &str| format!("issuer[{i}].{f}");
        if !header_safe(&ri.iss) {
            return Err(self.err(
                span,
                fname("iss"),
                "must be non-empty, without spaces, quotes or backslashes",
            ));
        }
        if seen.index.insert(ri.iss.clone(), i).is_some() {
            return Err(self.err(
                span,
                fname("iss"),
                format!("issuer {:?} is configured twice", ri.iss),
            ));
        }
        if ri.max_token_lifetime == 0 {
            return Err(self.err(span, fname("max_token_lifetime"), "must be positive"));
        }
        let impi_pool = self.patterns(&span, &fname("impi_patterns"), &ri.impi_patterns)?;
        let impu_pool = self.patterns(&span, &fname("impu_patterns"), &ri.impu_patterns)?;
        self.origins(&span, i, &ri.origins)?;
        let tna_realm = self.issuer_tna(&span, i, ri, &top.home_realm)?;
        if ri.key.is_empty() && ri.introspection.is_none() {
            return Err(self.err(
                span,
                fname("key"),
                "an issuer needs at least one [[issuer.key]] or an [issuer.introspection]",
            ));
        }
        let tls = self.issuer_tls(&span, i, ri, src)?;
        let discovering = self.discovering(&span, i, ri)?;
        let introspection = match &ri.introspection {
            None => None,
            Some(sp) => Some(self.introspection(i, sp, discovering, seen, src)?),
        };
        let (keys, remote_jwks) =
            self.issuer_keys(i, ri, discovering, top.cache_dir.as_deref(), src)?;
        let discovery = self.discovery(
            &span,
            i,
            ri,
            remote_jwks.as_ref().is_some_and(|r| r.url.is_none()),
            introspection.as_ref().is_some_and(|x| x.url.is_none()),
            top.cache_dir.as_deref(),
        )?;
        let keys_by_kid = self.keys_by_kid(&span, i, &keys)?;
        Ok(Issuer {
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
            add_authorization_entity: ri
                .add_authorization_entity
                .unwrap_or(raw.add_authorization_entity),
            keys,
            keys_by_kid,
            remote_jwks,
            introspection,
            discovery,
            tls,
        })
    }

    /// Is discovery on for issuer `i` (`discovery = true` or a
    /// `metadata_url`)?
    fn discovering(&self, span: &Span, i: usize, ri: &RawIssuer) -> Result<bool, ConfigError> {
        match (ri.discovery, &ri.metadata_url) {
            (Some(false), Some(_)) => Err(self.err(
                span.clone(),
                format!("issuer[{i}].metadata_url"),
                "discovery = false but a metadata_url is given: remove one",
            )),
            (d, url) => Ok(d == Some(true) || url.is_some()),
        }
    }

    /// The metadata discovery of issuer `i`, when it is on and a key set
    /// (`jwks`) or the introspection endpoint (`introspection`) is to come
    /// from it.
    fn discovery(
        &self,
        span: &Span,
        i: usize,
        ri: &RawIssuer,
        jwks: bool,
        introspection: bool,
        cache_dir: Option<&Path>,
    ) -> Result<Option<Discovery>, ConfigError> {
        if !self.discovering(span, i, ri)? {
            return Ok(None);
        }
        let field = if ri.metadata_url.is_some() {
            format!("issuer[{i}].metadata_url")
        } else {
            format!("issuer[{i}].discovery")
        };
        let err = |m: String| self.err(span.clone(), field.clone(), m);
        if !jwks && !introspection {
            return Err(err("nothing to discover: give an [[issuer.key]] with only algorithms (its key set at the metadata's jwks_uri) or an [issuer.introspection] without endpoint, or remove discovery".into()));
        }
        let urls = match &ri.metadata_url {
            Some(u) => vec![Url::parse(u).map_err(err)?],
            None => metadata_locations(&ri.iss)
                .map_err(|m| self.err(span.clone(), format!("issuer[{i}].iss"), m))?,
        };
        let Some(dir) = cache_dir else {
            return Err(err("discovery needs cache_dir (or state_file) at the top of the file: workers read the metadata from there".into()));
        };
        let name = format!("metadata-{}.json", hex_digest(&[&ri.iss, "metadata"]));
        Ok(Some(Discovery {
            urls,
            jwks,
            introspection,
            cache_file: dir.join(name),
        }))
    }

    /// An identity pool (`impi_patterns`, `impu_patterns`), compiled.
    fn patterns(
        &self,
        span: &Span,
        field: &str,
        list: &[String],
    ) -> Result<Vec<Pattern>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(j, p)| {
                Pattern::new(p).map_err(|m| self.err(span.clone(), format!("{field}[{j}]"), m))
            })
            .collect()
    }

    /// `origins` of issuer `i`: each an http(s) origin.
    fn origins(&self, span: &Span, i: usize, origins: &[String]) -> Result<(), ConfigError> {
        for (j, o) in origins.iter().enumerate() {
            if !header_safe(o) || !(o.starts_with("https://") || o.starts_with("http://")) {
                return Err(self.err(
                    span.clone(),
                    format!("issuer[{i}].origins[{j}]"),
                    "must be an http(s) origin such as https://app.example.com",
                ));
            }
        }
        Ok(())
    }

    /// `tna_realm` (default: `home_realm`, returned) and `tna_uri` of issuer `i`.
    fn issuer_tna(
        &self,
        span: &Span,
        i: usize,
        ri: &RawIssuer,
        home_realm: &str,
    ) -> Result<String, ConfigError> {
        let tna_realm = match &ri.tna_realm {
            Some(r) if !is_realm(r) => {
                return Err(self.err(
                    span.clone(),
                    format!("issuer[{i}].tna_realm"),
                    "must be a domain name",
                ))
            }
            Some(r) => r.clone(),
            None => home_realm.to_owned(),
        };
        if let Some(u) = &ri.tna_uri {
            let scheme = u.split_once(':').map(|(s, _)| s).unwrap_or("");
            if !header_safe(u)
                || !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips"))
                || u.len() <= scheme.len() + 1
            {
                return Err(self.err(span.clone(), format!("issuer[{i}].tna_uri"), "must be a sip: or sips: URI without spaces, quotes or backslashes, such as sip:ims.example.net"));
            }
        }
        Ok(tna_realm)
    }

    /// `ca_file` of issuer `i` and the TLS settings of its endpoints: made
    /// when it has an endpoint (introspection, `jwks_url`) or a `ca_file`.
    fn issuer_tls(
        &self,
        span: &Span,
        i: usize,
        ri: &RawIssuer,
        src: &dyn Sources,
    ) -> Result<Option<Arc<rustls::ClientConfig>>, ConfigError> {
        let field = || format!("issuer[{i}].ca_file");
        let ca_pem = match &ri.ca_file {
            Some(f) => Some(
                src.read(&self.resolve(f), MAX_KEY_FILE_SIZE)
                    .map_err(|m| self.err(span.clone(), field(), m))?,
            ),
            None => None,
        };
        let needs_tls = ri.introspection.is_some()
            || ri.discovery == Some(true)
            || ri.metadata_url.is_some()
            || ri.key.iter().any(|k| k.get_ref().jwks_url.is_some());
        if needs_tls || ca_pem.is_some() {
            Ok(Some(
                src.tls(ca_pem.as_deref())
                    .map_err(|m| self.err(span.clone(), field(), m))?,
            ))
        } else {
            Ok(None)
        }
    }

    /// `[issuer.introspection]` of issuer `i`; its `token_prefix` must not
    /// overlap one of an issuer before it (`seen`, which it joins).
    fn introspection(
        &self,
        i: usize,
        sp: &Spanned<RawIntrospection>,
        discovering: bool,
        seen: &mut Seen,
        src: &dyn Sources,
    ) -> Result<Introspection, ConfigError> {
        let ispan = Some(sp.span());
        let r = sp.get_ref();
        let iname = |f: &str| format!("issuer[{i}].introspection.{f}");
        let url = match &r.endpoint {
            Some(e) => Some(Url::parse(e).map_err(|m| self.err(ispan.clone(), iname("endpoint"), m))?),
            None if discovering => None,
            None => return Err(self.err(
                ispan,
                iname("endpoint"),
                "missing: give the endpoint, or discovery = true on the issuer to take the introspection_endpoint of its metadata",
            )),
        };
        if !header_safe(&r.client_id) || r.client_id.contains(':') {
            return Err(self.err(
                ispan,
                iname("client_id"),
                "must be non-empty, without spaces, quotes or ':'",
            ));
        }
        let secret = src
            .read(&self.resolve(&r.client_secret_file), 64 * 1024)
            .map_err(|m| self.err(ispan.clone(), iname("client_secret_file"), m))?;
        let secret = String::from_utf8(trim_end(&secret).to_vec())
            .ok()
            .filter(|s| !s.is_empty() && !s.contains(['\r', '\n']))
            .ok_or_else(|| {
                self.err(
                    ispan.clone(),
                    iname("client_secret_file"),
                    "must hold one non-empty UTF-8 line",
                )
            })?;
        if r.timeout_ms == 0 || r.timeout_ms > MAX_INTROSPECTION_TIMEOUT_MS {
            return Err(self.err(
                ispan,
                iname("timeout_ms"),
                format!("must be between 1 and {MAX_INTROSPECTION_TIMEOUT_MS}"),
            ));
        }
        if r.cache_size > 1_000_000 {
            return Err(self.err(ispan, iname("cache_size"), "at most 1000000"));
        }
        if r.positive_ttl == 0 || r.positive_ttl > 3600 {
            return Err(self.err(
                ispan,
                iname("positive_ttl"),
                "must be between 1 and 3600 seconds (cache_size = 0 turns the cache off)",
            ));
        }
        if r.negative_ttl > 300 {
            return Err(self.err(ispan, iname("negative_ttl"), "at most 300 seconds"));
        }
        if r.breaker_failures == 0 || r.breaker_failures > 1000 {
            return Err(self.err(
                ispan,
                iname("breaker_failures"),
                "must be between 1 and 1000",
            ));
        }
        if r.breaker_cooldown == 0 || r.breaker_cooldown > 3600 {
            return Err(self.err(
                ispan,
                iname("breaker_cooldown"),
                "must be between 1 and 3600 seconds",
            ));
        }
        if r.max_size < 256 || r.max_size > 1024 * 1024 {
            return Err(self.err(ispan, iname("max_size"), "must be between 256 and 1048576"));
        }
        match &r.token_prefix {
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|c| c.is_ascii_graphic()) {
                    return Err(self.err(
                        ispan,
                        iname("token_prefix"),
                        "must be non-empty printable ASCII",
                    ));
                }
                if let Some((q, j)) = seen
                    .prefixes
                    .iter()
                    .find(|(q, _)| q.starts_with(p.as_str()) || p.starts_with(q.as_str()))
                {
                    return Err(self.err(ispan, iname("token_prefix"), format!("overlaps the prefix {q:?} of issuer[{j}]: a token must name one issuer")));
                }
                seen.prefixes.push((p.clone(), i));
            }
            None => {
                seen.unprefixed += 1;
                if seen.unprefixed == 2 {
                    crate::log::warn(&format!(
                        "{}: {}: two issuers have introspection without token_prefix: an unprefixed opaque token is refused (it cannot be attributed)",
                        self.file,
                        iname("token_prefix")
                    ));
                }
            }
        }
        Ok(Introspection {
            url,
            client_id: r.client_id.clone(),
            client_secret: secret,
            timeout: Duration::from_millis(r.timeout_ms),
            token_prefix: r.token_prefix.clone(),
            cache_size: r.cache_size,
            positive_ttl: r.positive_ttl,
            negative_ttl: r.negative_ttl,
            breaker_failures: r.breaker_failures,
            breaker_cooldown: r.breaker_cooldown,
            max_size: r.max_size,
        })
    }

    /// The `[[issuer.key]]` tables of issuer `i`: the keys read from files,
    /// and its key set by URL (at most one).
    fn issuer_keys(
        &self,
        i: usize,
        ri: &RawIssuer,
        discovering: bool,
        cache_dir: Option<&Path>,
        src: &dyn Sources,
    ) -> Result<(Vec<Key>, Option<RemoteJwks>), ConfigError> {
        let mut remote_jwks: Option<RemoteJwks> = None;
        let mut keys: Vec<Key> = Vec::new();
        for (k, sk) in ri.key.iter().enumerate() {
            let remote = remote_jwks.is_some();
            match self.key(i, k, &ri.iss, sk, remote, discovering, cache_dir, src)? {
                KeyEntry::Remote(r) => remote_jwks = Some(r),
                KeyEntry::Local(l) => keys.extend(l),
            }
        }
        Ok((keys, remote_jwks))
    }

    /// `[[issuer.key]]` number `k` of issuer `i` (`iss`): exactly one
    /// source, or none when the issuer is `discovering` (the key set at its
    /// metadata's `jwks_uri`); `have_remote`: a key set by URL came before
    /// it.
    #[allow(clippy::too_many_arguments)]
    fn key(
        &self,
        i: usize,
        k: usize,
        iss: &str,
        sk: &Spanned<RawKey>,
        have_remote: bool,
        discovering: bool,
        cache_dir: Option<&Path>,
        src: &dyn Sources,
    ) -> Result<KeyEntry, ConfigError> {
        let kspan = Some(sk.span());
        let rk = sk.get_ref();
        let at = format!("issuer[{i}].key[{k}]");
        let kname = |f: &str| format!("{at}.{f}");
        let algs = self.algorithms(&kspan, &kname("algorithms"), &rk.algorithms)?;
        if let Some(kid) = &rk.kid {
            if !header_safe(kid) {
                return Err(self.err(
                    kspan,
                    kname("kid"),
                    "must be non-empty, without spaces or quotes",
                ));
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
        if given.is_empty() && discovering {
            return self
                .remote_key(&kspan, &at, iss, rk, None, algs, have_remote, cache_dir)
                .map(KeyEntry::Remote);
        }
        if given.len() != 1 {
            return Err(self.err(
                kspan,
                at,
                "give exactly one of pem, certificate, secret_file, jwks, jwks_url (or none, with discovery = true on the issuer: the key set at its metadata's jwks_uri)",
            ));
        }
        if let Some(url) = &rk.jwks_url {
            return self
                .remote_key(
                    &kspan,
                    &at,
                    iss,
                    rk,
                    Some(url),
                    algs,
                    have_remote,
                    cache_dir,
                )
                .map(KeyEntry::Remote);
        }
        let remote_only = [
            ("min_refresh", rk.min_refresh.is_some()),
            ("max_refresh", rk.max_refresh.is_some()),
            ("max_stale", rk.max_stale.is_some()),
            ("timeout_ms", rk.timeout_ms.is_some()),
            ("max_size", rk.max_size.is_some()),
            ("refetch_interval", rk.refetch_interval.is_some()),
        ];
        if let Some((f, _)) = remote_only.iter().find(|(_, set)| *set) {
            return Err(self.err(kspan, kname(f), "only for a jwks_url key"));
        }
        let (field, Some(rel)) = (given[0].0, given[0].1) else {
            return Err(self.err(kspan, at, "no key source"));
        };
        self.local_key(&kspan, &at, rk, field, rel, &algs, src)
            .map(KeyEntry::Local)
    }

    /// `algorithms` of a key: at least one, each supported.
    fn algorithms(
        &self,
        kspan: &Span,
        field: &str,
        names: &[String],
    ) -> Result<Vec<Alg>, ConfigError> {
        if names.is_empty() {
            return Err(self.err(kspan.clone(), field, "list at least one algorithm"));
        }
        names
            .iter()
            .map(|a| {
                Alg::from_name(a).ok_or_else(|| {
                    self.err(kspan.clone(), field, format!(
                        "{a:?} is not supported (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
                    ))
                })
            })
            .collect()
    }

    /// A `jwks_url` key (`at`: its field name; `url` `None`: the
    /// metadata's `jwks_uri`): the key set fetched by URL into `cache_dir`,
    /// and its refresh settings.
    #[allow(clippy::too_many_arguments)]
    fn remote_key(
        &self,
        kspan: &Span,
        at: &str,
        iss: &str,
        rk: &RawKey,
        url: Option<&str>,
        algs: Vec<Alg>,
        have_remote: bool,
        cache_dir: Option<&Path>,
    ) -> Result<RemoteJwks, ConfigError> {
        let kname = |f: &str| format!("{at}.{f}");
        let err = |f: &str, m: String| self.err(kspan.clone(), kname(f), m);
        if rk.kid.is_some() {
            return Err(err("kid", "a JWKS gives its own kids; remove kid".into()));
        }
        if have_remote {
            return Err(err(
                "jwks_url",
                "at most one key set by URL (jwks_url, or the metadata's jwks_uri) per issuer"
                    .into(),
            ));
        }
        let parsed = match url {
            Some(u) => Some(Url::parse(u).map_err(|m| err("jwks_url", m))?),
            None => None,
        };
        let Some(dir) = cache_dir else {
            return Err(err("jwks_url", "a jwks_url needs cache_dir (or state_file) at the top of the file: workers read the fetched key set from there".into()));
        };
        let min_refresh = rk.min_refresh.unwrap_or(60);
        let max_refresh = rk.max_refresh.unwrap_or(86_400);
        if min_refresh == 0 || min_refresh > max_refresh || max_refresh > 30 * 86_400 {
            return Err(err(
                if min_refresh == 0 {
                    "min_refresh"
                } else {
                    "max_refresh"
                },
                "need 1 <= min_refresh <= max_refresh <= 2592000 seconds".into(),
            ));
        }
        let max_stale = rk.max_stale.unwrap_or(86_400);
        if max_stale > 30 * 86_400 {
            return Err(err("max_stale", "at most 2592000 seconds".into()));
        }
        let timeout_ms = rk.timeout_ms.unwrap_or(2000);
        if timeout_ms == 0 || timeout_ms > MAX_FETCH_TIMEOUT_MS {
            return Err(err(
                "timeout_ms",
                format!("must be between 1 and {MAX_FETCH_TIMEOUT_MS}"),
            ));
        }
        let max_size = rk.max_size.unwrap_or(256 * 1024);
        if max_size < 64 || max_size as u64 > MAX_KEY_FILE_SIZE {
            return Err(err(
                "max_size",
                format!("must be between 64 and {MAX_KEY_FILE_SIZE}"),
            ));
        }
        let refetch_interval = rk.refetch_interval.unwrap_or(60);
        if refetch_interval == 0 {
            return Err(err("refetch_interval", "must be positive".into()));
        }
        let name = format!(
            "jwks-{}.json",
            hex_digest(&[iss, url.unwrap_or("(metadata jwks_uri)")])
        );
        Ok(RemoteJwks {
            url: parsed,
            algs,
            min_refresh,
            max_refresh,
            max_stale,
            timeout: Duration::from_millis(timeout_ms),
            max_size,
            refetch_interval,
            cache_file: dir.join(name),
        })
    }

    /// A key read from a file now (`field`: its source, `rel`: the path
    /// as written), taken into the digest.
    #[allow(clippy::too_many_arguments)]
    fn local_key(
        &self,
        kspan: &Span,
        at: &str,
        rk: &RawKey,
        field: &str,
        rel: &str,
        algs: &[Alg],
        src: &dyn Sources,
    ) -> Result<Vec<Key>, ConfigError> {
        let kname = |f: &str| format!("{at}.{f}");
        let path = self.resolve(rel);
        let data = src
            .read(&path, MAX_KEY_FILE_SIZE)
            .map_err(|m| self.err(kspan.clone(), kname(field), m))?;
        self.absorb(&data);
        let src_name = path.display().to_string();
        match field {
            "jwks" => {
                if rk.kid.is_some() {
                    return Err(self.err(
                        kspan.clone(),
                        kname("kid"),
                        "a JWKS gives its own kids; remove kid",
                    ));
                }
                keys::load_jwks(&data, algs, &src_name).map(|(keys, notes)| {
                    // Every process that loads the file logs these: a key
                    // not meant for verification is expected in a shared
                    // set (INFO), only one this configuration cannot use
                    // is a WARN.
                    for n in notes {
                        crate::log::log(
                            n.level(),
                            &format!("{}: {}: {src_name}: {n}", self.file, kname("jwks")),
                        );
                    }
                    keys
                })
            }
            "secret_file" => {
                let trimmed = trim_end(&data);
                keys::load_file_key(
                    rk.kid.as_deref(),
                    algs,
                    KeySource::Secret(trimmed),
                    &src_name,
                )
            }
            _ => keys::load_file_key(rk.kid.as_deref(), algs, KeySource::Pem(&data), &src_name),
        }
        .map_err(|m| self.err(kspan.clone(), kname(field), m))
    }

    /// The keys of issuer `i` by kid: a kid must name one key (possibly
    /// with several algorithms).
    fn keys_by_kid(
        &self,
        span: &Span,
        i: usize,
        keys: &[Key],
    ) -> Result<FxHashMap<String, Vec<usize>>, ConfigError> {
        let mut keys_by_kid: FxHashMap<String, Vec<usize>> = FxHashMap::default();
        for (idx, key) in keys.iter().enumerate() {
            if let Some(kid) = &key.kid {
                keys_by_kid.entry(kid.to_string()).or_default().push(idx);
            }
        }
        for (kid, idxs) in &keys_by_kid {
            let first = &keys[idxs[0]].source;
            if idxs.iter().any(|&x| &keys[x].source != first) {
                return Err(self.err(
                    span.clone(),
                    format!("issuer[{i}].key"),
                    format!("kid {kid:?} names more than one key"),
                ));
            }
        }
        Ok(keys_by_kid)
    }

    /// `[fleet]` (its rules: [`RawFleet::check`]); `node_id` defaults to
    /// the host name.
    fn fleet(
        &self,
        f: Option<Spanned<RawFleet>>,
        src: &dyn Sources,
    ) -> Result<Option<FleetConfig>, ConfigError> {
        let Some(f) = f else { return Ok(None) };
        let span = f.span();
        f.into_inner()
            .check(|| src.hostname())
            .map(Some)
            .map_err(|(field, m)| self.err(Some(span), format!("fleet.{field}"), m))
    }
}

impl Config {
    /// Build a configuration from its text. `file` names it in errors,
    /// relative key paths are resolved against `dir`, `path` is where it is
    /// (re)loaded from; the files it names are read through `src`.
    pub fn build(
        text: &str,
        file: &str,
        dir: &Path,
        path: &Path,
        src: &dyn Sources,
    ) -> Result<Config, ConfigError> {
        let cx = Ctx {
            file: file.to_owned(),
            text,
            dir: dir.to_path_buf(),
            digest: std::cell::RefCell::new(aws_lc_rs::digest::Context::new(
                &aws_lc_rs::digest::SHA256,
            )),
        };
        cx.absorb(text.as_bytes());
        let raw = cx.parse()?;
        let top = cx.top_level(&raw)?;
        cx.claims(&raw.claims)?;
        let scscf = cx.scscf(raw.scscf.as_ref())?;
        let mut seen = Seen::default();
        let issuers = raw
            .issuer
            .iter()
            .enumerate()
            .map(|(i, si)| cx.issuer(i, si, &raw, &top, &mut seen, src))
            .collect::<Result<Vec<_>, _>>()?;
        let fleet = cx.fleet(raw.fleet, src)?;
        Ok(Config {
            digest: cx.digest(),
            replay: raw.replay,
            fleet,
            path: path.to_path_buf(),
            home_realm: top.home_realm,
            audience: top.audience,
            required_scope: top.required_scope,
            leeway: raw.leeway,
            accept_bare_token: raw.accept_bare_token,
            require_at_jwt: raw.require_at_jwt,
            max_registration_expires: raw.max_registration_expires,
            min_registration_expires: top.min_registration_expires,
            max_token_size: raw.max_token_size,
            verified_cache_size: raw.verified_cache_size,
            authz_server: top.authz_server,
            state_file: top.state_file,
            cache_dir: top.cache_dir,
            claim_keys: ClaimKeys::of(&raw.claims),
            claims: raw.claims,
            any_introspection: issuers.iter().any(|i| i.introspection.is_some()),
            issuers,
            issuer_index: seen.index,
            scscf,
            decision_log: raw.decision_log,
            decision_log_impi: raw.decision_log_impi,
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
        /// TLS settings without roots; a `ca_file` is refused.
        fn tls(&self, ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
            if ca_pem.is_some() {
                return Err("no CA in these tests".into());
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let c = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            Ok(Arc::new(c))
        }
        fn hostname(&self) -> String {
            "node-a".into()
        }
    }

    fn build(text: &str) -> Result<Config, ConfigError> {
        let files = Files(HashMap::from([
            (
                PathBuf::from("/cfg/a.secret"),
                b"secret-of-issuer-a-thirty-two-bytes".to_vec(),
            ),
            (
                PathBuf::from("/cfg/b.secret"),
                b"secret-of-issuer-b-thirty-two-bytes".to_vec(),
            ),
        ]));
        Config::build(
            text,
            "t.toml",
            Path::new("/cfg"),
            Path::new("/cfg/t.toml"),
            &files,
        )
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
        let (a, b) = (
            cfg.issuer("https://a.example").unwrap(),
            cfg.issuer("https://b.example").unwrap(),
        );
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
            let e = build(&text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {to}"));
            assert_eq!(
                (e.field.as_deref(), e.line),
                (Some(*field), Some(*line)),
                "{e}"
            );
            assert_eq!(e.file, "t.toml");
        }
    }

    /// Each `(replace, by)` in `TWO` is refused, naming `field`; and `TWO`
    /// with `ok` instead is accepted (the rule is not just refusing all).
    fn refused(cases: &[(&str, &str, &str)], ok: &[(&str, &str)]) {
        for (from, to, field) in cases {
            let text = TWO.replacen(from, to, 1);
            assert_ne!(text, TWO, "{from}");
            let e = build(&text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {to}"));
            assert_eq!(e.field.as_deref(), Some(*field), "{e}");
        }
        for (from, to) in ok {
            let text = TWO.replacen(from, to, 1);
            assert_ne!(text, TWO, "{from}");
            build(&text).unwrap_or_else(|e| panic!("refused: {to}: {e}"));
        }
    }

    const TOP: &str = "home_realm = \"ims.example.net\"\n";

    #[test]
    fn top_level_rules() {
        refused(
            &[
                (TOP, "home_realm = \"ims.example.net\"\nmin_registration_expires = 3601\n", "min_registration_expires"),
                (TOP, "home_realm = \"ims.example.net\"\nmin_registration_expires = -1\n", "min_registration_expires"),
                (TOP, "home_realm = \"ims.example.net\"\naudience = \"\"\n", "audience"),
                (TOP, "home_realm = \"ims.example.net\"\nrequired_scope = \"a b\"\n", "required_scope"),
                (TOP, "home_realm = \"ims.example.net\"\nauthz_server = \"https://a b\"\n", "authz_server"),
                (TOP, "home_realm = \"ims.example.net\"\nverified_cache_size = 10000001\n", "verified_cache_size"),
                (TOP, "home_realm = \"ims.example.net\"\nmax_token_size = 63\n", "max_token_size"),
            ],
            &[(TOP, "home_realm = \"ims.example.net\"\nmin_registration_expires = 3600\nmax_token_size = 64\n")],
        );
    }

    #[test]
    fn claim_names_are_not_empty() {
        refused(
            &[(
                TOP,
                "home_realm = \"ims.example.net\"\n[claims]\nimpu = \"\"\n",
                "claims.impu",
            )],
            &[(
                TOP,
                "home_realm = \"ims.example.net\"\n[claims]\nimpu = \"x\"\n",
            )],
        );
    }

    #[test]
    fn scscf_entities_are_header_safe() {
        let scscf = |v: &str| {
            format!("{TOP}[scscf]\ntrusted_nodes = [\"192.0.2.1\"]\nallowed_entities = [{v}]\n")
        };
        let (bad, good) = (scscf("\"a b\""), scscf("\"wwsf\""));
        refused(&[(TOP, &bad, "scscf.allowed_entities[0]")], &[(TOP, &good)]);
    }

    #[test]
    fn issuer_rules() {
        const KEY_B: &str = "iss = \"https://b.example\"\n";
        let with = |s: &str| format!("{KEY_B}{s}\n");
        refused(
            &[
                (KEY_B, "iss = \"https://b .example\"\n", "issuer[1].iss"),
                (KEY_B, &with("max_token_lifetime = 0"), "issuer[1].max_token_lifetime"),
                (KEY_B, &with("impu_patterns = [\"\"]"), "issuer[1].impu_patterns[0]"),
                (KEY_B, &with("origins = [\"ftp://app.example\"]"), "issuer[1].origins[0]"),
                (KEY_B, &with("tna_realm = \"a b\""), "issuer[1].tna_realm"),
                (KEY_B, &with("tna_uri = \"http://ims.example.net\""), "issuer[1].tna_uri"),
                (KEY_B, &with("tna_uri = \"sip:\""), "issuer[1].tna_uri"),
            ],
            &[(KEY_B, &with("origins = [\"https://app.example\"]\ntna_uri = \"sips:ims.example.net\"\nmax_token_lifetime = 1"))],
        );
    }

    #[test]
    fn issuer_ca_file_is_read_and_used() {
        const B: &str = "iss = \"https://b.example\"\n";
        refused(
            &[
                (
                    B,
                    "iss = \"https://b.example\"\nca_file = \"missing\"\n",
                    "issuer[1].ca_file",
                ),
                // Read, then refused by the TLS settings.
                (
                    B,
                    "iss = \"https://b.example\"\nca_file = \"a.secret\"\n",
                    "issuer[1].ca_file",
                ),
            ],
            &[],
        );
    }

    /// `TWO` with introspection for issuer b (`b`: its extra lines) and,
    /// when `a` is given, for issuer a.
    fn introspecting(a: Option<&str>, b: &str) -> String {
        let section = |extra: &str| {
            format!("  [issuer.introspection]\n  endpoint = \"https://as.example/introspect\"\n  client_id = \"wic\"\n  client_secret_file = \"a.secret\"\n{extra}\n")
        };
        let mut text = TWO.replacen(
            "iss = \"https://b.example\"\n",
            &format!("iss = \"https://b.example\"\n{}", section(b)),
            1,
        );
        if let Some(a) = a {
            text = text.replacen(
                "iss = \"https://a.example\"\n",
                &format!("iss = \"https://a.example\"\n{}", section(a)),
                1,
            );
        }
        text
    }

    #[test]
    fn introspection_rules() {
        let cases: &[(Option<&str>, &str, &str)] = &[
            (None, "  timeout_ms = 0", "timeout_ms"),
            (None, "  timeout_ms = 2001", "timeout_ms"),
            (None, "  cache_size = 1000001", "cache_size"),
            (None, "  negative_ttl = 301", "negative_ttl"),
            (None, "  positive_ttl = 0", "positive_ttl"),
            (None, "  positive_ttl = 3601", "positive_ttl"),
            (None, "  breaker_failures = 0", "breaker_failures"),
            (None, "  breaker_cooldown = 3601", "breaker_cooldown"),
            (None, "  max_size = 255", "max_size"),
            (None, "  token_prefix = \"a b\"", "token_prefix"),
            (
                Some("  token_prefix = \"at-\""),
                "  token_prefix = \"at-x\"",
                "token_prefix",
            ),
            (
                Some("  token_prefix = \"at-x\""),
                "  token_prefix = \"at-\"",
                "token_prefix",
            ),
        ];
        for (a, b, field) in cases {
            let e = build(&introspecting(*a, b))
                .err()
                .unwrap_or_else(|| panic!("accepted: {b}"));
            assert_eq!(
                e.field,
                Some(format!("issuer[1].introspection.{field}")),
                "{e}"
            );
        }
        let bad_client =
            introspecting(None, "").replacen("client_id = \"wic\"", "client_id = \"w:c\"", 1);
        assert_eq!(
            build(&bad_client).unwrap_err().field.as_deref(),
            Some("issuer[1].introspection.client_id")
        );
        let cfg = build(&introspecting(
            Some("  token_prefix = \"at-\""),
            "  token_prefix = \"bt-\"\n  timeout_ms = 2000",
        ))
        .unwrap();
        assert_eq!(
            cfg.introspection_issuer("bt-1", false)
                .unwrap()
                .iss
                .as_ref(),
            "https://b.example"
        );
        assert_eq!(
            cfg.issuers[0].introspection.as_ref().unwrap().client_secret,
            "secret-of-issuer-a-thirty-two-bytes"
        );
        assert!(cfg.any_introspection && cfg.issuers[1].tls.is_some());
    }

    #[test]
    fn key_rules() {
        const B: &str = "  secret_file = \"b.secret\"";
        refused(
            &[
                (
                    B,
                    "  secret_file = \"b.secret\"\n  pem = \"b.pem\"",
                    "issuer[1].key[0]",
                ),
                (
                    B,
                    "  secret_file = \"b.secret\"\n  timeout_ms = 10",
                    "issuer[1].key[0].timeout_ms",
                ),
                (
                    "  kid = \"k\"\n  algorithms = [\"HS256\"]\n  secret_file = \"b",
                    "  kid = \"k\"\n  algorithms = []\n  secret_file = \"b",
                    "issuer[1].key[0].algorithms",
                ),
                (
                    "  kid = \"k\"\n  algorithms = [\"HS256\"]\n  secret_file = \"b",
                    "  kid = \"k k\"\n  algorithms = [\"HS256\"]\n  secret_file = \"b",
                    "issuer[1].key[0].kid",
                ),
            ],
            &[(B, "  secret_file = \"a.secret\"")],
        );
    }

    #[test]
    fn jwks_url_key_rules() {
        const B: &str = "  kid = \"k\"\n  algorithms = [\"HS256\"]\n  secret_file = \"b.secret\"";
        let url = |extra: &str| {
            format!("  algorithms = [\"RS256\"]\n  jwks_url = \"https://b.example/jwks\"\n{extra}")
        };
        let cached = |t: &str| format!("cache_dir = \"/var/cache/wic-tna\"\n{t}");
        let cases: &[(&str, &str, &str)] = &[
            ("  kid = \"k\"", "kid", "a JWKS gives its own kids"),
            ("  min_refresh = 0", "min_refresh", "need 1"),
            (
                "  min_refresh = 100\n  max_refresh = 99",
                "max_refresh",
                "need 1",
            ),
            ("  max_stale = 2592001", "max_stale", "at most"),
            ("  timeout_ms = 0", "timeout_ms", "must be between"),
            ("  max_size = 63", "max_size", "must be between"),
            (
                "  refetch_interval = 0",
                "refetch_interval",
                "must be positive",
            ),
        ];
        for (extra, field, msg) in cases {
            let e = build(&cached(&TWO.replacen(B, &url(extra), 1)))
                .err()
                .unwrap_or_else(|| panic!("accepted: {extra}"));
            assert_eq!(e.field, Some(format!("issuer[1].key[0].{field}")), "{e}");
            assert!(e.message.contains(msg), "{e}");
        }
        // No cache_dir (nor state_file): nowhere to keep the fetched set.
        let e = build(&TWO.replacen(B, &url(""), 1)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("issuer[1].key[0].jwks_url"), "{e}");
        // Two per issuer.
        let two = TWO.replacen(B, &format!("{}\n  [[issuer.key]]\n{}", url(""), url("")), 1);
        let e = build(&cached(&two)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("issuer[1].key[1].jwks_url"), "{e}");
        let cfg = build(&cached(&TWO.replacen(B, &url(""), 1))).unwrap();
        let r = cfg.issuers[1].remote_jwks.as_ref().unwrap();
        assert_eq!(
            (r.min_refresh, r.max_refresh, r.timeout),
            (60, 86_400, Duration::from_millis(2000))
        );
        assert!(r.cache_file.starts_with("/var/cache/wic-tna") && cfg.issuers[1].keys.is_empty());
    }

    #[test]
    fn discovery_rules() {
        const B: &str = "iss = \"https://b.example\"\n  [[issuer.key]]\n  kid = \"k\"\n  algorithms = [\"HS256\"]\n  secret_file = \"b.secret\"\n";
        let b = |text: &str| TWO.replacen(B, text, 1);
        let cached = |text: &str| format!("cache_dir = \"/var/cache/wic-tna\"\n{}", b(text));
        // Only the issuer, the algorithms of its key set and the
        // introspection client: both URLs from the metadata.
        let only = "iss = \"https://b.example/tenant/\"\ndiscovery = true\n  [[issuer.key]]\n  algorithms = [\"RS256\"]\n  [issuer.introspection]\n  client_id = \"wic\"\n  client_secret_file = \"b.secret\"\n";
        let cfg = build(&cached(only)).unwrap();
        let i = &cfg.issuers[1];
        let d = i.discovery.as_ref().unwrap();
        let urls: Vec<String> = d.urls.iter().map(|u| u.to_string()).collect();
        assert_eq!(
            urls,
            [
                "https://b.example/.well-known/oauth-authorization-server/tenant",
                "https://b.example/tenant/.well-known/openid-configuration"
            ]
        );
        assert!(d.jwks && d.introspection && d.cache_file.starts_with("/var/cache/wic-tna"));
        assert!(i.remote_jwks.as_ref().unwrap().url.is_none());
        assert!(i.introspection.as_ref().unwrap().url.is_none() && i.tls.is_some());
        // An explicit URL wins: only the other one is discovered.
        let pinned = only.replace(
            "  algorithms = [\"RS256\"]\n",
            "  algorithms = [\"RS256\"]\n  jwks_url = \"https://keys.example/jwks\"\n",
        );
        let cfg = build(&cached(&pinned)).unwrap();
        let d = cfg.issuers[1].discovery.as_ref().unwrap();
        assert!(!d.jwks && d.introspection);
        assert!(cfg.issuers[1].remote_jwks.as_ref().unwrap().url.is_some());
        // An explicit metadata location.
        let located = only.replace(
            "discovery = true",
            "metadata_url = \"https://b.example/meta\"",
        );
        let cfg = build(&cached(&located)).unwrap();
        let d = cfg.issuers[1].discovery.as_ref().unwrap();
        assert_eq!(d.urls[0].to_string(), "https://b.example/meta");
        assert_eq!(d.urls.len(), 1);
        let no_endpoint = "  [issuer.introspection]\n  client_id = \"wic\"\n  client_secret_file = \"b.secret\"\n";
        let cases: &[(String, &str, &str)] = &[
            // Without discovery a key needs its source, an introspection
            // its endpoint.
            (
                cached(
                    &only
                        .replace("discovery = true\n", "")
                        .replace(no_endpoint, ""),
                ),
                "issuer[1].key[0]",
                "or none, with discovery = true",
            ),
            (
                cached(&format!("iss = \"https://b.example\"\n{no_endpoint}")),
                "issuer[1].introspection.endpoint",
                "discovery = true",
            ),
            (
                cached(&located.replace("metadata_url", "discovery = false\nmetadata_url")),
                "issuer[1].metadata_url",
                "remove one",
            ),
            (
                cached(&pinned.replace(
                    "  client_id",
                    "  endpoint = \"https://b.example/introspect\"\n  client_id",
                )),
                "issuer[1].discovery",
                "nothing to discover",
            ),
            (
                cached(&only.replace("https://b.example/tenant/", "b-issuer")),
                "issuer[1].iss",
                "https URL",
            ),
            (
                cached(&only.replace("https://b.example/tenant/", "http://b.example")),
                "issuer[1].iss",
                "https URL",
            ),
            (
                cached(&only.replace("https://b.example/tenant/", "https://b.example/?t=1")),
                "issuer[1].iss",
                "without a query",
            ),
            (
                cached(&located.replace("https://b.example/meta", "ftp://b.example/meta")),
                "issuer[1].metadata_url",
                "https://",
            ),
            (
                b(&format!(
                    "iss = \"https://b.example\"\ndiscovery = true\n{no_endpoint}"
                )),
                "issuer[1].discovery",
                "cache_dir",
            ),
        ];
        for (text, field, msg) in cases {
            let e = build(text)
                .err()
                .unwrap_or_else(|| panic!("accepted:\n{text}"));
            assert_eq!(e.field.as_deref(), Some(*field), "{e}");
            assert!(e.message.contains(msg), "{e}");
        }
    }

    #[test]
    fn metadata_locations_follow_rfc8414_then_oidc() {
        let at = |iss: &str| -> Vec<String> {
            metadata_locations(iss)
                .unwrap()
                .iter()
                .map(|u| u.to_string())
                .collect()
        };
        assert_eq!(
            at("https://as.example"),
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            at("http://127.0.0.1:8080/"),
            [
                "http://127.0.0.1:8080/.well-known/oauth-authorization-server",
                "http://127.0.0.1:8080/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            at("https://as.example/a/b"),
            [
                "https://as.example/.well-known/oauth-authorization-server/a/b",
                "https://as.example/a/b/.well-known/openid-configuration"
            ]
        );
    }

    #[test]
    fn a_kid_names_one_key() {
        let same = TWO.replacen(
            "  secret_file = \"a.secret\"",
            "  secret_file = \"a.secret\"\n  [[issuer.key]]\n  kid = \"k\"\n  algorithms = [\"HS256\"]\n  secret_file = \"a.secret\"",
            1,
        );
        let cfg = build(&same).unwrap();
        assert_eq!(cfg.issuers[0].keys_by_kid["k"].len(), 2);
        let other = same.replacen(
            "algorithms = [\"HS256\"]\n  secret_file = \"a.secret\"",
            "algorithms = [\"HS256\"]\n  secret_file = \"b.secret\"",
            1,
        );
        let e = build(&other).unwrap_err();
        assert_eq!(
            (e.field.as_deref(), e.line),
            (Some("issuer[0].key"), Some(3)),
            "{e}"
        );
    }

    #[test]
    fn fleet_node_id_defaults_to_the_host_name() {
        let text = TWO.replacen(
            "home_realm = \"ims.example.net\"\n",
            "home_realm = \"ims.example.net\"\n[fleet]\nredis_url = \"redis://127.0.0.1/\"\n",
            1,
        );
        assert_eq!(build(&text).unwrap().fleet.unwrap().node_id, "node-a");
    }
}
