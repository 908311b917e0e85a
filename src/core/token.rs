//! Verification of a self-contained access token (JWT, RFC 7519 / RFC 9068)
//! against the configuration: JOSE header, issuer and key selection,
//! signature, lifetime, audience, scope and the identities.

use crate::core::config::{Config, Issuer};
use crate::core::identity::{self, Scheme, UriView};
use crate::core::json::{for_each_str, StrictObject, Val};
use crate::core::keys::{Alg, Key, KeySet};
use crate::core::reason::Reason;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::sync::Arc;

/// Most keys tried for a token without `kid`.
pub const MAX_KEYS_WITHOUT_KID: usize = 4;
/// Most IMPUs in one token.
pub const MAX_IMPUS: usize = 32;

/// What a valid token says, after every check.
#[derive(Clone, Debug)]
pub struct Verified {
    /// `iss`.
    pub iss: Arc<str>,
    /// `exp`.
    pub exp: i64,
    /// The earliest time at which the lifetime checks pass (`nbf` and `iat`
    /// with leeway, and without `iat` the maximum lifetime counted back from
    /// `exp`): a cached verification is used only from then on.
    pub valid_from: i64,
    /// Algorithm of the key that verified it (`None`: a reference token,
    /// vouched for by introspection).
    pub alg: Option<Alg>,
    /// Position of the issuer in the configuration that verified it (a
    /// hint: check `iss` before relying on it).
    pub issuer_index: usize,
    /// The IMPI, `scope`, each IMPU as written and in its canonical form,
    /// `sub` and `jti`, each followed by a NUL byte, in one allocation (none
    /// of them can hold a NUL: the IMPI passed the NAI check, scope, `sub`
    /// and `jti` are printable, IMPUs parsed as URIs). The C ABI hands the
    /// pieces out as they are.
    text: String,
    /// Where the IMPUs are in `text`: the first one here (no allocation for
    /// the usual single IMPU), the others in `more_impus`.
    first_impu: Option<ImpuAt>,
    more_impus: Vec<ImpuAt>,
    /// Where the IMPI is in `text` (without its NUL).
    impi_at: (usize, usize),
    /// Where `scope` is in `text` (without its NUL).
    scope_at: (usize, usize),
    sub_at: Option<(usize, usize)>,
    jti_at: Option<(usize, usize)>,
}

impl Verified {
    /// The IMPI.
    pub fn impi(&self) -> &str {
        &self.text[self.impi_at.0..self.impi_at.1]
    }

    /// `scope`.
    pub fn scope(&self) -> &str {
        &self.text[self.scope_at.0..self.scope_at.1]
    }

    /// `sub`, if any.
    pub fn sub(&self) -> Option<&str> {
        self.sub_at.map(|(a, b)| &self.text[a..b])
    }

    /// `jti`, if any.
    pub fn jti(&self) -> Option<&str> {
        self.jti_at.map(|(a, b)| &self.text[a..b])
    }

    fn impu_at(&self, i: usize) -> Option<&ImpuAt> {
        match i {
            0 => self.first_impu.as_ref(),
            _ => self.more_impus.get(i - 1),
        }
    }

    /// The IMPUs as the token gives them, in its order.
    pub fn impus(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.impu_count()).filter_map(|i| self.impu(i))
    }

    /// The IMPUs parsed, in the token's order (canonical: scheme and host
    /// lower-cased, SIP user parts normalized (RFC 3261 19.1.4), without
    /// parameters; pool patterns are matched against this form).
    pub fn impu_uris(&self) -> impl Iterator<Item = UriView<'_>> + '_ {
        (0..self.impu_count()).filter_map(|i| self.impu_uri(i))
    }

    /// IMPU number `i` (from 0), parsed.
    pub fn impu_uri(&self, i: usize) -> Option<UriView<'_>> {
        let at = self.impu_at(i)?;
        let text = self.text.get(at.canonical.0..at.canonical.1)?;
        Some(UriView::new(at.scheme, at.port, text, at.user, at.host))
    }

    /// How many IMPUs.
    pub fn impu_count(&self) -> usize {
        usize::from(self.first_impu.is_some()) + self.more_impus.len()
    }

    /// Is `text` exactly one of the IMPUs as the token gives them?
    pub fn has_impu_text(&self, text: &str) -> bool {
        self.impus().any(|i| i == text)
    }

    /// IMPU number `i` (from 0) as the token gives it.
    pub fn impu(&self, i: usize) -> Option<&str> {
        let at = self.impu_at(i)?;
        self.text.get(at.written.0..at.written.1)
    }

    /// The IMPI, `scope`, `sub` (empty when absent) and IMPU number `i`,
    /// each with its NUL byte (for the C ABI).
    pub(crate) fn impi_z(&self) -> &[u8] {
        &self.text.as_bytes()[self.impi_at.0..=self.impi_at.1]
    }

    pub(crate) fn scope_z(&self) -> &[u8] {
        &self.text.as_bytes()[self.scope_at.0..=self.scope_at.1]
    }

    pub(crate) fn sub_z(&self) -> &[u8] {
        self.sub_at
            .map_or(b"\0", |(a, b)| &self.text.as_bytes()[a..=b])
    }

    pub(crate) fn impu_z(&self, i: usize) -> Option<&[u8]> {
        let at = self.impu_at(i)?;
        // The IMPU and the NUL after it.
        self.text.as_bytes().get(at.written.0..=at.written.1)
    }
}

/// Where one IMPU of a [`Verified`] is in its text: as written, and
/// canonical with the positions of its user part and host (relative to the
/// canonical form, as [`UriView`] takes them).
#[derive(Clone, Copy, Debug)]
struct ImpuAt {
    written: (usize, usize),
    canonical: (usize, usize),
    user: (usize, usize),
    host: (usize, usize),
    scheme: Scheme,
    port: Option<u16>,
}

/// A failure, with the issuer when it was known (for the counters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Why.
    pub reason: Reason,
    /// The configured issuer the token named, if it named one.
    pub iss: Option<Arc<str>>,
}

fn fail(reason: Reason) -> Failure {
    Failure { reason, iss: None }
}

/// Base64url-decode `s` (no padding, canonical: unused bits zero) into
/// `stack` when it fits, else into `heap`. SIMD (base64-simd); the
/// `tests` module holds it to what the `base64` crate's `URL_SAFE_NO_PAD`
/// accepts.
fn b64<'b>(
    s: &str,
    stack: &'b mut [MaybeUninit<u8>],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], Failure> {
    b64_decode(s.as_bytes(), stack, heap).ok_or_else(|| fail(Reason::MalformedToken))
}

fn b64_decode<'b>(
    s: &[u8],
    stack: &'b mut [MaybeUninit<u8>],
    heap: &'b mut Vec<u8>,
) -> Option<&'b [u8]> {
    use base64_simd::URL_SAFE_NO_PAD as B64;
    // No padding, and (like the `base64` crate) no non-zero unused bits in
    // the last character: one encoding per byte string (tested below).
    let n = B64.decoded_length(s).ok()?;
    if n <= stack.len() {
        // The stack buffer is not cleared first: base64-simd writes it
        // through `Out` and hands back only what it wrote.
        B64.decode(s, base64_simd::Out::from_uninit_slice(&mut stack[..n]))
            .ok()
            .map(|d| &*d)
    } else {
        *heap = B64.decode_to_vec(s).ok()?;
        Some(heap)
    }
}

fn numeric_date(v: Option<Val<'_>>, required: bool) -> Result<Option<i64>, Reason> {
    match v {
        None | Some(Val::Other(Value::Null)) if !required => Ok(None),
        None | Some(Val::Other(Value::Null)) => Err(Reason::MissingClaim),
        Some(Val::Int(i)) => Ok(Some(i)),
        Some(Val::Other(Value::Number(n))) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64() {
                if f.is_finite() && f.abs() < 1e15 {
                    Ok(Some(f.floor() as i64))
                } else {
                    Err(Reason::InvalidClaim)
                }
            } else {
                Err(Reason::InvalidClaim)
            }
        }
        Some(_) => Err(Reason::InvalidClaim),
    }
}

fn printable(s: &str) -> bool {
    // Printable ASCII (the usual case) without decoding characters; else
    // no control character (C0, DEL, C1) anywhere.
    s.len() <= 1024
        && (s.bytes().fold(true, |ok, c| ok & (0x20..0x7f).contains(&c))
            || !s.chars().any(|c| c.is_control()))
}

/// An optional printable string claim (`sub`, `jti`): absent or `null` is
/// `None`.
fn optional_printable(v: Option<Val<'_>>) -> Result<Option<Cow<'_, str>>, Reason> {
    match v {
        None | Some(Val::Other(Value::Null)) => Ok(None),
        Some(Val::Str(s)) if printable(&s) => Ok(Some(s)),
        Some(_) => Err(Reason::InvalidClaim),
    }
}

/// Split a compact JWS into its three parts (`None` unless exactly three).
fn split3(token: &str) -> Option<(&str, &str, &str)> {
    let b = token.as_bytes();
    let d1 = memchr::memchr(b'.', b)?;
    let d2 = d1 + 1 + memchr::memchr(b'.', &b[d1 + 1..])?;
    if memchr::memchr(b'.', &b[d2 + 1..]).is_some() {
        return None;
    }
    Some((&token[..d1], &token[d1 + 1..d2], &token[d2 + 1..]))
}

/// The JOSE header's `typ`, classified.
#[derive(Clone, Copy)]
enum Typ {
    Absent,
    /// `at+jwt` or `application/at+jwt` (RFC 9068), any case.
    At,
    /// `JWT`, any case.
    Jwt,
    /// Anything else, or not a string.
    Other,
}

/// What the checks take from a JOSE header: a function of its text alone
/// (the configuration is applied by the caller), so it can be remembered.
#[derive(Clone)]
struct JoseHeader {
    alg: Alg,
    typ: Typ,
    /// `Err`: a `kid` that is not a string of at most 256 bytes.
    kid: Result<Option<Rc<str>>, ()>,
}

/// Headers remembered per thread (a proxy process has one): tokens of one
/// issuer and key share their header, byte for byte.
const HEADER_CACHE: usize = 4;
/// Longest header part remembered, in characters.
const HEADER_CACHE_MAX: usize = 512;

/// The per-thread header cache: the next slot to replace, and up to
/// [`HEADER_CACHE`] headers by their exact base64url text.
type HeaderCache = (usize, [Option<(Box<str>, JoseHeader)>; HEADER_CACHE]);

thread_local! {
    static HEADERS: RefCell<HeaderCache> = const { RefCell::new((0, [const { None }; HEADER_CACHE])) };
}

/// The JOSE header of base64url text `h64`: decoded and checked, or taken
/// from the per-thread cache of headers that passed (failures are not
/// kept). Errors in the order of the checks: malformed, algorithm,
/// unsupported member.
fn jose_header(h64: &str) -> Result<JoseHeader, Reason> {
    let hit = HEADERS
        .try_with(|c| {
            let c = c.try_borrow().ok()?;
            c.1.iter()
                .flatten()
                .find(|(k, _)| **k == *h64)
                .map(|(_, h)| h.clone())
        })
        .ok()
        .flatten();
    if let Some(h) = hit {
        return Ok(h);
    }
    let h = parse_jose_header(h64)?;
    if h64.len() <= HEADER_CACHE_MAX {
        let _ = HEADERS.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                let at = c.0 % HEADER_CACHE;
                c.1[at] = Some((h64.into(), h.clone()));
                c.0 = at + 1;
            }
        });
    }
    Ok(h)
}

fn parse_jose_header(h64: &str) -> Result<JoseHeader, Reason> {
    let mut header_buf = [MaybeUninit::uninit(); 256];
    let mut header_heap = Vec::new();
    let header_json = b64(h64, &mut header_buf, &mut header_heap).map_err(|f| f.reason)?;
    let mut header = StrictObject::empty();
    if header.fill(header_json).is_err() {
        return Err(Reason::MalformedToken);
    }
    let alg_name = match header.plain_str("alg") {
        Some(Ok(s)) => s,
        Some(Err(())) | None => return Err(Reason::UnsupportedAlgorithm),
    };
    let alg = Alg::from_name(alg_name).ok_or(Reason::UnsupportedAlgorithm)?;
    // One pass over the (few) header members rather than a lookup per name.
    if header.has_any(&["crit", "jku", "x5u", "jwk", "x5c", "b64", "zip", "enc"]) {
        return Err(Reason::UnsupportedHeader);
    }
    let typ = match header.get("typ") {
        None => Typ::Absent,
        Some(Val::Str(t))
            if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") =>
        {
            Typ::At
        }
        Some(Val::Str(t)) if t.eq_ignore_ascii_case("jwt") => Typ::Jwt,
        Some(_) => Typ::Other,
    };
    let kid = match header.get("kid") {
        None => Ok(None),
        Some(Val::Str(k)) if k.len() <= 256 => Ok(Some(Rc::from(&*k))),
        Some(_) => Err(()),
    };
    Ok(JoseHeader { alg, typ, kid })
}

/// The key set fetched from an issuer's `jwks_url`, as this process has it.
pub enum RemoteKeys {
    /// The issuer has no `jwks_url`.
    None,
    /// The current key set.
    Set(Arc<KeySet>),
    /// Configured but not available (never fetched, or too stale).
    Unavailable,
}

/// Verify `token` (the token alone, out of the header) at time `now`.
/// `barred` tells whether an issuer is barred right now. Only the issuers'
/// configured keys are used (see [`verify_with`]).
pub fn verify(
    cfg: &Config,
    token: &str,
    now: i64,
    barred: &dyn Fn(&Issuer) -> bool,
) -> Result<Verified, Failure> {
    verify_with(cfg, token, now, barred, &|_| RemoteKeys::None)
}

/// [`verify`], with `remote` giving an issuer's fetched key set; it is asked
/// only for an issuer with a `jwks_url`, and only when the configured keys
/// do not already decide.
pub fn verify_with(
    cfg: &Config,
    token: &str,
    now: i64,
    barred: &dyn Fn(&Issuer) -> bool,
    remote: &dyn Fn(&Issuer) -> RemoteKeys,
) -> Result<Verified, Failure> {
    if token.len() > cfg.max_token_size {
        return Err(fail(Reason::TokenTooLarge));
    }
    let Some((h64, p64, s64)) = split3(token) else {
        return Err(fail(Reason::MalformedToken));
    };
    if h64.is_empty() || p64.is_empty() || s64.is_empty() {
        return Err(fail(Reason::MalformedToken));
    }
    // JOSE header: alg from the key's configuration, never trusted alone.
    let header = jose_header(h64).map_err(fail)?;
    let typ_ok = match header.typ {
        Typ::Absent | Typ::Jwt => !cfg.require_at_jwt,
        Typ::At => true,
        Typ::Other => false,
    };
    if !typ_ok {
        return Err(fail(Reason::WrongTokenType));
    }
    let kid = match &header.kid {
        Ok(k) => k.as_deref(),
        Err(()) => return Err(fail(Reason::UnknownKey)),
    };
    let alg = header.alg;

    // Claims are read before the signature is checked only to learn `iss`,
    // which selects the only keys tried.
    let mut claims_buf = [MaybeUninit::uninit(); 1024];
    let mut claims_heap = Vec::new();
    let claims_json = b64(p64, &mut claims_buf, &mut claims_heap)?;
    let mut claims = StrictObject::empty();
    if claims.fill(claims_json).is_err() {
        return Err(fail(Reason::MalformedToken));
    }
    let (names, keys) = (&cfg.claims, &cfg.claim_keys);
    let iss_value = match claims.get_keyed(&names.iss, keys.iss, false) {
        Some(Val::Str(s)) => s,
        Some(_) => return Err(fail(Reason::InvalidClaim)),
        None => return Err(fail(Reason::UnknownIssuer)),
    };
    let issuer_index = *cfg
        .issuer_index
        .get(&*iss_value)
        .ok_or_else(|| fail(Reason::UnknownIssuer))?;
    let issuer = cfg
        .issuers
        .get(issuer_index)
        .ok_or_else(|| fail(Reason::UnknownIssuer))?;
    let with_iss = |reason: Reason| Failure {
        reason,
        iss: Some(issuer.iss.clone()),
    };

    let mut sig_buf = [MaybeUninit::uninit(); 512];
    let mut sig_heap = Vec::new();
    let signature = b64(s64, &mut sig_buf, &mut sig_heap).map_err(|f| with_iss(f.reason))?;
    let signing_input = &token.as_bytes()[..h64.len() + 1 + p64.len()];
    let alg =
        select_and_verify(issuer, remote, kid, alg, signing_input, signature).map_err(with_iss)?;
    check_claims(cfg, issuer_index, issuer, &claims, now, barred, Some(alg))
}

/// The claim rules of doc/protocol.md ("The claims") (lifetime, audience, barring, scope,
/// identities and pools) on a claims object, from a verified JWT or an
/// introspection response. The caller has established that the claims come
/// from `issuer`, which is `cfg.issuers[issuer_index]`.
#[allow(clippy::too_many_arguments)]
pub fn check_claims(
    cfg: &Config,
    issuer_index: usize,
    issuer: &Issuer,
    claims: &StrictObject<'_>,
    now: i64,
    barred: &dyn Fn(&Issuer) -> bool,
    alg: Option<Alg>,
) -> Result<Verified, Failure> {
    let (names, keys) = (&cfg.claims, &cfg.claim_keys);
    let with_iss = |reason: Reason| Failure {
        reason,
        iss: Some(issuer.iss.clone()),
    };
    let (exp, valid_from) = lifetime(cfg, issuer, claims, now).map_err(with_iss)?;
    audience(cfg, claims).map_err(with_iss)?;
    if barred(issuer) {
        return Err(with_iss(Reason::IssuerBarred));
    }
    let scope = scope(cfg, claims).map_err(with_iss)?;
    let impi = impi(cfg, claims).map_err(with_iss)?;
    // The strings kept go into one buffer (see `Verified::text`), sized
    // for them with their NULs (a raw array is at least as long as its
    // strings with one byte each after them).
    let impu_v = claims.get_keyed(&names.impu, keys.impu, true);
    let sub_v = claims.get_keyed(&names.sub, keys.sub, false);
    let jti_v = claims.get_keyed(&names.jti, keys.jti, false);
    let room = |v: &Option<Val<'_>>| match v {
        Some(Val::Str(s)) => s.len() + 1,
        Some(Val::Arr(raw)) => raw.len(),
        _ => 0,
    };
    // (An IMPU's canonical form is never longer than the IMPU as written.)
    let mut text = String::with_capacity(
        impi.len() + 1 + scope.len() + 1 + 2 * room(&impu_v) + room(&sub_v) + room(&jti_v),
    );
    let impi_at = push_text(&mut text, &impi);
    let scope_at = push_text(&mut text, &scope);
    let (first_impu, more_impus) = impus(&mut text, &impi, impu_v).map_err(with_iss)?;
    in_pools(
        issuer,
        &impi,
        &text,
        first_impu.iter().chain(more_impus.iter()),
    )
    .map_err(with_iss)?;
    let sub_at = push_optional(&mut text, sub_v).map_err(with_iss)?;
    let jti_at = push_optional(&mut text, jti_v).map_err(with_iss)?;
    Ok(Verified {
        iss: issuer.iss.clone(),
        exp,
        valid_from,
        alg,
        issuer_index,
        text,
        impi_at,
        scope_at,
        first_impu,
        more_impus,
        sub_at,
        jti_at,
    })
}

/// The lifetime rules: `exp` (required), `nbf` and `iat` against `now`
/// within the leeway, and the issuer's longest lifetime. Gives `exp` and
/// the time the token is valid from.
fn lifetime(
    cfg: &Config,
    issuer: &Issuer,
    claims: &StrictObject<'_>,
    now: i64,
) -> Result<(i64, i64), Reason> {
    let (names, keys) = (&cfg.claims, &cfg.claim_keys);
    let leeway = cfg.leeway as i64;
    let exp = numeric_date(claims.get_keyed(&names.exp, keys.exp, false), true)?.unwrap_or(0);
    let nbf = numeric_date(claims.get_keyed(&names.nbf, keys.nbf, false), false)?;
    let iat = numeric_date(claims.get_keyed(&names.iat, keys.iat, false), false)?;
    if now > exp.saturating_add(leeway) {
        return Err(Reason::Expired);
    }
    if let Some(nbf) = nbf {
        if nbf > now.saturating_add(leeway) {
            return Err(Reason::NotYetValid);
        }
    }
    if let Some(iat) = iat {
        if iat > now.saturating_add(leeway) {
            return Err(Reason::IssuedInFuture);
        }
    }
    let lifetime = exp.saturating_sub(iat.unwrap_or(now));
    if lifetime > issuer.max_token_lifetime as i64 {
        return Err(Reason::LifetimeTooLong);
    }
    let valid_from = match iat {
        Some(t) => t.saturating_sub(leeway),
        None => exp.saturating_sub(issuer.max_token_lifetime as i64),
    };
    let valid_from = match nbf {
        Some(t) => valid_from.max(t.saturating_sub(leeway)),
        None => valid_from,
    };
    Ok((exp, valid_from))
}

/// `aud`, a string or an array of strings, names the configured audience.
fn audience(cfg: &Config, claims: &StrictObject<'_>) -> Result<(), Reason> {
    let aud_ok = match claims.get_keyed(&cfg.claims.aud, cfg.claim_keys.aud, true) {
        Some(Val::Str(a)) => *a == cfg.audience,
        Some(v @ (Val::Arr(_) | Val::Other(Value::Array(_)))) => {
            let mut found = false;
            for_each_str(&v, |s| found |= *s == cfg.audience).map_err(|_| Reason::InvalidClaim)?;
            found
        }
        Some(_) => return Err(Reason::InvalidClaim),
        None => false,
    };
    if aud_ok {
        Ok(())
    } else {
        Err(Reason::WrongAudience)
    }
}

/// `scope`: printable, and one of its space-separated scopes is the
/// required one.
fn scope<'a>(cfg: &Config, claims: &StrictObject<'a>) -> Result<Cow<'a, str>, Reason> {
    let scope = match claims.get_keyed(&cfg.claims.scope, cfg.claim_keys.scope, false) {
        Some(Val::Str(s)) => s,
        Some(_) => return Err(Reason::InvalidClaim),
        None => return Err(Reason::InsufficientScope),
    };
    if !printable(&scope) {
        return Err(Reason::InvalidClaim);
    }
    if !scope
        .as_bytes()
        .split(|&c| c == b' ')
        .any(|s| s == cfg.required_scope.as_bytes())
    {
        return Err(Reason::InsufficientScope);
    }
    Ok(scope)
}

/// `impi`: a string of IMPI syntax.
fn impi<'a>(cfg: &Config, claims: &StrictObject<'a>) -> Result<Cow<'a, str>, Reason> {
    let impi = match claims.get_keyed(&cfg.claims.impi, cfg.claim_keys.impi, false) {
        Some(Val::Str(s)) => s,
        Some(_) => return Err(Reason::InvalidImpi),
        None => return Err(Reason::MissingClaim),
    };
    identity::check_impi(&impi).map_err(|_| Reason::InvalidImpi)?;
    Ok(impi)
}

/// `s` and a NUL after it into `text`; where `s` is.
fn push_text(text: &mut String, s: &str) -> (usize, usize) {
    let at = text.len();
    text.push_str(s);
    let end = text.len();
    text.push('\0');
    (at, end)
}

/// `impu` (one string, or an array of 1 to MAX_IMPUS): each IMPU parsed
/// as written (before it goes into `text`, where a NUL would separate it),
/// then written into `text` as written and in canonical form.
fn impus(
    text: &mut String,
    impi: &str,
    v: Option<Val<'_>>,
) -> Result<(Option<ImpuAt>, Vec<ImpuAt>), Reason> {
    // A host equal to the IMPI's realm, which check_impi accepted, is not
    // checked again.
    let realm = impi.split_once('@').map(|(_, r)| r);
    let mut first_impu: Option<ImpuAt> = None;
    let mut more_impus: Vec<ImpuAt> = Vec::new();
    let mut count = 0;
    let mut bad = false;
    let mut add = |s: &str| {
        if count < MAX_IMPUS {
            match push_impu(text, s, realm) {
                Some(at) => {
                    if count == 0 {
                        first_impu = Some(at);
                    } else {
                        more_impus.push(at);
                    }
                    count += 1;
                }
                None => bad = true,
            }
        }
    };
    match v {
        Some(Val::Str(s)) => add(&s),
        Some(v @ (Val::Arr(_) | Val::Other(Value::Array(_)))) => {
            let n = for_each_str(&v, |s| add(&s)).map_err(|_| Reason::InvalidImpu)?;
            if n == 0 || n > MAX_IMPUS {
                return Err(Reason::InvalidImpu);
            }
        }
        Some(_) => return Err(Reason::InvalidImpu),
        None => return Err(Reason::MissingClaim),
    }
    if bad {
        return Err(Reason::InvalidImpu);
    }
    Ok((first_impu, more_impus))
}

/// One IMPU into `text`, as written and in canonical form; `None`: not an
/// IMPU.
fn push_impu(text: &mut String, s: &str, realm: Option<&str>) -> Option<ImpuAt> {
    let u = identity::parse_impu_ref_known(s, realm).ok()?;
    let written = push_text(text, s);
    let c0 = text.len();
    let (user, host) = u.write_canonical(text);
    let canonical = (c0, text.len());
    text.push('\0');
    Some(ImpuAt {
        written,
        canonical,
        user,
        host,
        scheme: u.scheme,
        port: u.canonical_port(),
    })
}

/// The issuer's pools: the IMPI in its IMPI pool, every IMPU (canonical,
/// in `text`) in its IMPU pool.
fn in_pools<'i>(
    issuer: &Issuer,
    impi: &str,
    text: &str,
    impus: impl Iterator<Item = &'i ImpuAt>,
) -> Result<(), Reason> {
    if !identity::in_pool(&issuer.impi_pool, impi) {
        return Err(Reason::ImpiOutsidePool);
    }
    for at in impus {
        if !identity::in_pool(&issuer.impu_pool, &text[at.canonical.0..at.canonical.1]) {
            return Err(Reason::ImpuOutsidePool);
        }
    }
    Ok(())
}

/// An optional printable string claim (`sub`, `jti`) into `text`.
fn push_optional(text: &mut String, v: Option<Val<'_>>) -> Result<Option<(usize, usize)>, Reason> {
    Ok(optional_printable(v)?.map(|s| push_text(text, &s)))
}

/// Pick the key(s) of this issuer only: with `kid`, exactly that key (no
/// fallback), from the configured keys or else the fetched key set; without,
/// the keys configured for `alg` (configured, then fetched), at most
/// [`MAX_KEYS_WITHOUT_KID`]. The algorithm must be one configured for the
/// key. A `jwks_url` whose key set is unavailable gives `keys_unavailable`
/// when the configured keys cannot decide.
fn select_and_verify(
    issuer: &Issuer,
    remote: &dyn Fn(&Issuer) -> RemoteKeys,
    kid: Option<&str>,
    alg: Alg,
    input: &[u8],
    signature: &[u8],
) -> Result<Alg, Reason> {
    let by_kid = |keys: &[Key], idxs: &[usize]| -> Result<Alg, Reason> {
        let key = idxs
            .iter()
            .map(|&i| &keys[i])
            .find(|k| k.alg == alg)
            .ok_or(Reason::UnsupportedAlgorithm)?;
        if key.verify(input, signature) {
            Ok(key.alg)
        } else {
            Err(Reason::BadSignature)
        }
    };
    match kid {
        Some(kid) => {
            if let Some(idxs) = issuer.keys_by_kid.get(kid) {
                return by_kid(&issuer.keys, idxs);
            }
            if issuer.remote_jwks.is_none() {
                return Err(Reason::UnknownKey);
            }
            match remote(issuer) {
                RemoteKeys::Set(set) => {
                    by_kid(&set.keys, set.by_kid.get(kid).ok_or(Reason::UnknownKey)?)
                }
                RemoteKeys::Unavailable => Err(Reason::KeysUnavailable),
                RemoteKeys::None => Err(Reason::UnknownKey),
            }
        }
        None => {
            let fetched = if issuer.remote_jwks.is_some() {
                remote(issuer)
            } else {
                RemoteKeys::None
            };
            let set_keys: &[Key] = match &fetched {
                RemoteKeys::Set(set) => &set.keys,
                _ => &[],
            };
            let mut candidates = issuer
                .keys
                .iter()
                .chain(set_keys.iter())
                .filter(|k| k.alg == alg)
                .peekable();
            if candidates.peek().is_none() {
                return Err(match fetched {
                    RemoteKeys::Unavailable => Reason::KeysUnavailable,
                    _ => Reason::UnsupportedAlgorithm,
                });
            }
            let candidates: Vec<&Key> = candidates.take(MAX_KEYS_WITHOUT_KID + 1).collect();
            if candidates.len() > MAX_KEYS_WITHOUT_KID {
                return Err(Reason::UnknownKey);
            }
            match candidates.into_iter().find(|k| k.verify(input, signature)) {
                Some(k) => Ok(k.alg),
                None if matches!(fetched, RemoteKeys::Unavailable) => Err(Reason::KeysUnavailable),
                None => Err(Reason::BadSignature),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The base64url decoder against the `base64` crate.
    use super::*;

    /// The SIMD base64url decoder accepts exactly what the `base64`
    /// crate's `URL_SAFE_NO_PAD` accepts (no padding, no other alphabet,
    /// no non-zero unused bits), with the same bytes, for every string of
    /// up to 4 characters of a mixed alphabet, and for longer ones.
    #[test]
    fn b64_matches_base64_crate() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let alphabet = b"AQgw_-/+=. \n9zBPf";
        let check = |t: &[u8]| {
            let mut stack = [MaybeUninit::uninit(); 64];
            let mut heap = Vec::new();
            let ours = b64_decode(t, &mut stack, &mut heap).map(|d| d.to_vec());
            let theirs = URL_SAFE_NO_PAD.decode(t).ok();
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(t));
        };
        let a = alphabet.len();
        for len in 0..=4u32 {
            for n in 0..a.pow(len) {
                let mut k = n;
                let t: Vec<u8> = (0..len)
                    .map(|_| {
                        let c = alphabet[k % a];
                        k /= a;
                        c
                    })
                    .collect();
                check(&t);
            }
        }
        // Longer: every length to 300 (stack and heap), each with every
        // possible last character, and one bad byte at each position.
        let full = URL_SAFE_NO_PAD.encode((0..255u8).collect::<Vec<u8>>());
        for len in 0..300usize {
            let base: Vec<u8> = full.bytes().cycle().take(len).collect();
            check(&base);
            if len > 0 {
                for last in (b'0'..=b'z').chain([b'-', b'_', b'=', b'+', b'/']) {
                    let mut t = base.clone();
                    t[len - 1] = last;
                    check(&t);
                }
                for bad in [b'=', b'+', b'/', b' ', 0x80, 0] {
                    let mut t = base.clone();
                    t[len / 2] = bad;
                    check(&t);
                }
            }
        }
    }
}
