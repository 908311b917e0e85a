//! Verification of a self-contained access token (JWT, RFC 7519 / RFC 9068)
//! against the configuration: JOSE header, issuer and key selection,
//! signature, lifetime, audience, scope and the identities.

use crate::config::{Config, Issuer};
use crate::identity::{self, Uri};
use crate::keys::{Alg, Key, KeySet};
use crate::reason::Reason;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// Most keys tried for a token without `kid`.
pub const MAX_KEYS_WITHOUT_KID: usize = 4;
/// Most IMPUs in one token.
pub const MAX_IMPUS: usize = 32;

/// A JSON object whose member names are unique (a duplicate is an error,
/// unlike `serde_json::Map`, which keeps the last one). Values stay as
/// borrowed raw JSON text, validated but not decoded: only the members the
/// checks need are decoded, once.
pub struct StrictObject<'a>(Vec<(Name<'a>, &'a RawValue)>);

/// A member name: borrowed unless it had escapes.
enum Name<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Name<'_> {
    fn as_str(&self) -> &str {
        match self {
            Name::Borrowed(s) => s,
            Name::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name::Borrowed(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name::Owned(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name::Owned(v))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'a> StrictObject<'a> {
    /// Parse `json`, which must be one object with unique member names.
    pub fn parse(json: &'a [u8]) -> Result<StrictObject<'a>, ()> {
        serde_json::from_slice(json).map_err(|_| ())
    }

    /// The raw value of `name`.
    pub fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| *v)
    }

    /// The value of `name`, decoded.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.raw(name).map(|r| serde_json::from_str(r.get()).unwrap_or(Value::Null))
    }

    /// The value of `name` when it is a JSON string without escapes
    /// (borrowed); `Err` when present but not a plain string.
    fn plain_str(&self, name: &str) -> Option<Result<&'a str, ()>> {
        let r = self.raw(name)?.get();
        let b = r.as_bytes();
        if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' && !r[1..r.len() - 1].contains('\\') {
            Some(Ok(&r[1..r.len() - 1]))
        } else {
            Some(Err(()))
        }
    }
}

impl<'de> Deserialize<'de> for StrictObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<StrictObject<'de>, A::Error> {
                let mut out: Vec<(Name<'de>, &'de RawValue)> = Vec::with_capacity(12);
                while let Some(k) = m.next_key::<Name<'de>>()? {
                    if out.iter().any(|(x, _)| x.as_str() == k.as_str()) {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                    let v: &'de RawValue = m.next_value()?;
                    out.push((k, v));
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// What a valid token says, after every check.
#[derive(Clone, Debug)]
pub struct Verified {
    /// `iss`.
    pub iss: String,
    /// IMPI.
    pub impi: String,
    /// IMPUs as the token gives them.
    pub impus: Vec<String>,
    /// IMPUs parsed.
    pub impu_uris: Vec<Uri>,
    /// `sub`, if any.
    pub sub: Option<String>,
    /// `scope`.
    pub scope: String,
    /// `exp`.
    pub exp: i64,
    /// The earliest time at which the lifetime checks pass (`nbf` and `iat`
    /// with leeway, and without `iat` the maximum lifetime counted back from
    /// `exp`): a cached verification is used only from then on.
    pub valid_from: i64,
    /// `jti`, if any.
    pub jti: Option<String>,
    /// Algorithm of the key that verified it (`None`: a reference token,
    /// vouched for by introspection).
    pub alg: Option<Alg>,
    /// kid, if any.
    pub kid: Option<String>,
}

/// A failure, with the issuer when it was known (for the counters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Why.
    pub reason: Reason,
    /// The configured issuer the token named, if it named one.
    pub iss: Option<String>,
}

fn fail(reason: Reason) -> Failure {
    Failure { reason, iss: None }
}

fn b64(s: &str) -> Result<Vec<u8>, Failure> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| fail(Reason::MalformedToken))
}

fn numeric_date(v: Option<&Value>, required: bool) -> Result<Option<i64>, Reason> {
    match v {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(Reason::MissingClaim),
        Some(Value::Number(n)) => {
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
    s.len() <= 1024 && !s.chars().any(|c| c.is_control())
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
pub fn verify(cfg: &Config, token: &str, now: i64, barred: &dyn Fn(&Issuer) -> bool) -> Result<Verified, Failure> {
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
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(fail(Reason::MalformedToken));
    };
    if h64.is_empty() || p64.is_empty() || s64.is_empty() {
        return Err(fail(Reason::MalformedToken));
    }
    let header_json = b64(h64)?;
    let header = StrictObject::parse(&header_json).map_err(|_| fail(Reason::MalformedToken))?;

    // JOSE header: alg from the key's configuration, never trusted alone.
    let alg_name = match header.plain_str("alg") {
        Some(Ok(s)) => s,
        Some(Err(())) => return Err(fail(Reason::UnsupportedAlgorithm)),
        None => return Err(fail(Reason::UnsupportedAlgorithm)),
    };
    let alg = Alg::from_name(alg_name).ok_or_else(|| fail(Reason::UnsupportedAlgorithm))?;
    for never in ["crit", "jku", "x5u", "jwk", "x5c", "b64", "zip", "enc"] {
        if header.raw(never).is_some() {
            return Err(fail(Reason::UnsupportedHeader));
        }
    }
    match header.get("typ") {
        None if !cfg.require_at_jwt => {}
        Some(Value::String(t)) => {
            let t = t.to_ascii_lowercase();
            let at = t == "at+jwt" || t == "application/at+jwt";
            if !(at || (!cfg.require_at_jwt && t == "jwt")) {
                return Err(fail(Reason::WrongTokenType));
            }
        }
        _ => return Err(fail(Reason::WrongTokenType)),
    }
    let kid_value = header.get("kid");
    let kid = match &kid_value {
        None => None,
        Some(Value::String(k)) if k.len() <= 256 => Some(k.as_str()),
        Some(_) => return Err(fail(Reason::UnknownKey)),
    };

    // Claims are read before the signature is checked only to learn `iss`,
    // which selects the only keys tried.
    let claims_json = b64(p64)?;
    let claims = StrictObject::parse(&claims_json).map_err(|_| fail(Reason::MalformedToken))?;
    let names = &cfg.claims;
    let iss_value = claims.get(&names.iss);
    let iss = match &iss_value {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(fail(Reason::InvalidClaim)),
        None => return Err(fail(Reason::UnknownIssuer)),
    };
    let issuer = cfg.issuer(iss).ok_or_else(|| fail(Reason::UnknownIssuer))?;
    let with_iss = |reason: Reason| Failure { reason, iss: Some(issuer.iss.clone()) };

    let signature = b64(s64).map_err(|f| with_iss(f.reason))?;
    let signing_input = &token.as_bytes()[..h64.len() + 1 + p64.len()];
    let (alg, kid) = select_and_verify(issuer, remote, kid, alg, signing_input, &signature).map_err(with_iss)?;
    check_claims(cfg, issuer, &claims, now, barred, Some(alg), kid)
}

/// The claim rules of PROTOCOL.md (lifetime, audience, barring, scope,
/// identities and pools) on a claims object, from a verified JWT or an
/// introspection response. The caller has established that the claims come
/// from `issuer`.
pub fn check_claims(
    cfg: &Config,
    issuer: &Issuer,
    claims: &StrictObject<'_>,
    now: i64,
    barred: &dyn Fn(&Issuer) -> bool,
    alg: Option<Alg>,
    kid: Option<String>,
) -> Result<Verified, Failure> {
    let names = &cfg.claims;
    let with_iss = |reason: Reason| Failure { reason, iss: Some(issuer.iss.clone()) };

    // Lifetime.
    let leeway = cfg.leeway as i64;
    let exp = numeric_date(claims.get(&names.exp).as_ref(), true).map_err(with_iss)?.unwrap_or(0);
    let nbf = numeric_date(claims.get(&names.nbf).as_ref(), false).map_err(with_iss)?;
    let iat = numeric_date(claims.get(&names.iat).as_ref(), false).map_err(with_iss)?;
    if now > exp.saturating_add(leeway) {
        return Err(with_iss(Reason::Expired));
    }
    if let Some(nbf) = nbf {
        if nbf > now.saturating_add(leeway) {
            return Err(with_iss(Reason::NotYetValid));
        }
    }
    if let Some(iat) = iat {
        if iat > now.saturating_add(leeway) {
            return Err(with_iss(Reason::IssuedInFuture));
        }
    }
    let lifetime = exp.saturating_sub(iat.unwrap_or(now));
    if lifetime > issuer.max_token_lifetime as i64 {
        return Err(with_iss(Reason::LifetimeTooLong));
    }
    let valid_from = [
        nbf.map(|t| t.saturating_sub(leeway)),
        iat.map(|t| t.saturating_sub(leeway)),
        if iat.is_none() { Some(exp.saturating_sub(issuer.max_token_lifetime as i64)) } else { None },
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(i64::MIN);

    // Audience.
    let aud_ok = match claims.get(&names.aud).as_ref() {
        Some(Value::String(a)) => *a == cfg.audience,
        Some(Value::Array(list)) => {
            let mut found = false;
            for a in list {
                match a {
                    Value::String(s) => found |= *s == cfg.audience,
                    _ => return Err(with_iss(Reason::InvalidClaim)),
                }
            }
            found
        }
        Some(_) => return Err(with_iss(Reason::InvalidClaim)),
        None => false,
    };
    if !aud_ok {
        return Err(with_iss(Reason::WrongAudience));
    }

    if barred(issuer) {
        return Err(with_iss(Reason::IssuerBarred));
    }

    // Scope.
    let scope_value = claims.get(&names.scope);
    let scope = match &scope_value {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(with_iss(Reason::InvalidClaim)),
        None => return Err(with_iss(Reason::InsufficientScope)),
    };
    if !printable(scope) {
        return Err(with_iss(Reason::InvalidClaim));
    }
    if !scope.split(' ').any(|s| s == cfg.required_scope) {
        return Err(with_iss(Reason::InsufficientScope));
    }

    // Identities: syntax first, then the issuer's pools.
    let impi_value = claims.get(&names.impi);
    let impi = match &impi_value {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(with_iss(Reason::InvalidImpi)),
        None => return Err(with_iss(Reason::MissingClaim)),
    };
    identity::check_impi(impi).map_err(|_| with_iss(Reason::InvalidImpi))?;
    let impu_value = claims.get(&names.impu);
    let impus: Vec<&str> = match &impu_value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= MAX_IMPUS => {
            let mut v = Vec::with_capacity(list.len());
            for x in list {
                match x {
                    Value::String(s) => v.push(s.as_str()),
                    _ => return Err(with_iss(Reason::InvalidImpu)),
                }
            }
            v
        }
        Some(_) => return Err(with_iss(Reason::InvalidImpu)),
        None => return Err(with_iss(Reason::MissingClaim)),
    };
    let mut impu_uris = Vec::with_capacity(impus.len());
    for s in &impus {
        impu_uris.push(identity::parse_impu(s).map_err(|_| with_iss(Reason::InvalidImpu))?);
    }
    if !identity::in_pool(&issuer.impi_pool, impi) {
        return Err(with_iss(Reason::ImpiOutsidePool));
    }
    for u in &impu_uris {
        if !identity::in_pool(&issuer.impu_pool, &u.canonical()) {
            return Err(with_iss(Reason::ImpuOutsidePool));
        }
    }

    let sub = match claims.get(&names.sub).as_ref() {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if printable(s) => Some(s.clone()),
        Some(_) => return Err(with_iss(Reason::InvalidClaim)),
    };
    let jti = match claims.get(&names.jti).as_ref() {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if printable(s) => Some(s.clone()),
        Some(_) => return Err(with_iss(Reason::InvalidClaim)),
    };

    Ok(Verified {
        iss: issuer.iss.clone(),
        impi: impi.to_owned(),
        impus: impus.iter().map(|s| (*s).to_owned()).collect(),
        impu_uris,
        sub,
        scope: scope.to_owned(),
        exp,
        valid_from,
        jti,
        alg,
        kid,
    })
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
) -> Result<(Alg, Option<String>), Reason> {
    let by_kid = |keys: &[Key], idxs: &[usize]| -> Result<(Alg, Option<String>), Reason> {
        let key = idxs.iter().map(|&i| &keys[i]).find(|k| k.alg == alg).ok_or(Reason::UnsupportedAlgorithm)?;
        if key.verify(input, signature) {
            Ok((key.alg, key.kid.clone()))
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
                RemoteKeys::Set(set) => by_kid(&set.keys, set.by_kid.get(kid).ok_or(Reason::UnknownKey)?),
                RemoteKeys::Unavailable => Err(Reason::KeysUnavailable),
                RemoteKeys::None => Err(Reason::UnknownKey),
            }
        }
        None => {
            let fetched = if issuer.remote_jwks.is_some() { remote(issuer) } else { RemoteKeys::None };
            let set_keys: &[Key] = match &fetched {
                RemoteKeys::Set(set) => &set.keys,
                _ => &[],
            };
            let mut candidates = issuer.keys.iter().chain(set_keys.iter()).filter(|k| k.alg == alg).peekable();
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
                Some(k) => Ok((k.alg, k.kid.clone())),
                None if matches!(fetched, RemoteKeys::Unavailable) => Err(Reason::KeysUnavailable),
                None => Err(Reason::BadSignature),
            }
        }
    }
}
