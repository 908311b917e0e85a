//! Verification keys: loaded and parsed once, when the configuration is
//! loaded, each pinned to the algorithms the configuration allows for it.
//!
//! The token never chooses the algorithm: a key verifies only with an
//! algorithm configured for it (and matching its type), and `none` does not
//! exist here.

use aws_lc_rs::{hmac, signature as sig};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{DecodingKey, DecodingKeyKind};
use rustc_hash::FxHashMap;
use std::fmt;
use std::sync::Arc;

/// A JWS algorithm this library verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The key type an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Hmac,
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Alg {
    /// Every algorithm.
    pub const ALL: [Alg; 12] = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// Parse a JOSE `alg` name, exactly (case-sensitive, as RFC 7515 says).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.iter().copied().find(|a| a.name() == name)
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// The key type this algorithm needs.
    pub fn family(self) -> Family {
        match self {
            Alg::HS256 | Alg::HS384 | Alg::HS512 => Family::Hmac,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                Family::Rsa
            }
            Alg::ES256 => Family::P256,
            Alg::ES384 => Family::P384,
            Alg::EdDSA => Family::Ed25519,
        }
    }

    /// The same algorithm for `jsonwebtoken` (used to mint tokens).
    pub fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Alg::HS256 => J::HS256,
            Alg::HS384 => J::HS384,
            Alg::HS512 => J::HS512,
            Alg::RS256 => J::RS256,
            Alg::RS384 => J::RS384,
            Alg::RS512 => J::RS512,
            Alg::PS256 => J::PS256,
            Alg::PS384 => J::PS384,
            Alg::PS512 => J::PS512,
            Alg::ES256 => J::ES256,
            Alg::ES384 => J::ES384,
            Alg::EdDSA => J::EdDSA,
        }
    }

    fn hmac_algorithm(self) -> Option<hmac::Algorithm> {
        match self {
            Alg::HS256 => Some(hmac::HMAC_SHA256),
            Alg::HS384 => Some(hmac::HMAC_SHA384),
            Alg::HS512 => Some(hmac::HMAC_SHA512),
            _ => None,
        }
    }

    fn verification_algorithm(self) -> Option<&'static dyn sig::VerificationAlgorithm> {
        Some(match self {
            Alg::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            Alg::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Alg::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Alg::EdDSA => &sig::ED25519,
            _ => return None,
        })
    }

    fn rsa_parameters(self) -> Option<&'static sig::RsaParameters> {
        Some(match self {
            Alg::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }

    /// Minimum HMAC secret length in bytes (the hash size, RFC 7518 3.2).
    pub fn min_secret_len(self) -> usize {
        match self {
            Alg::HS256 => 32,
            Alg::HS384 => 48,
            Alg::HS512 => 64,
            _ => 0,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// An HMAC key with its precomputed state is about 1.2 KB, the public-key
// variant a pointer: a deployment has a handful of keys, and inline the
// HMAC state sits with the key (no pointer to follow per verification).
#[allow(clippy::large_enum_variant)]
enum Verifier {
    Hmac(hmac::Key),
    Public(sig::ParsedPublicKey),
}

/// One key, parsed, bound to one algorithm. A file key allowed for several
/// algorithms becomes several `Key`s.
pub struct Key {
    /// Key id, if the configuration or the JWK gives one (shared with
    /// each `Verified` it verifies).
    pub kid: Option<Arc<str>>,
    /// The one algorithm this key verifies with.
    pub alg: Alg,
    /// Where the key came from (for messages).
    pub source: String,
    verifier: Verifier,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("source", &self.source)
            .finish()
    }
}

impl Key {
    /// Check `signature` over `message` (the JWS signing input). Constant
    /// time for HMAC.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.verifier {
            Verifier::Hmac(k) => hmac::verify(k, message, signature).is_ok(),
            Verifier::Public(k) => k.verify_sig(message, signature).is_ok(),
        }
    }
}

/// Where a key's material comes from.
pub enum KeySource<'a> {
    /// PEM public key or certificate (file contents).
    Pem(&'a [u8]),
    /// HMAC secret (file contents, trailing CR/LF/space removed).
    Secret(&'a [u8]),
}

fn public_key(alg: Alg, bytes: &[u8]) -> Result<Verifier, String> {
    let va = alg
        .verification_algorithm()
        .ok_or_else(|| format!("{alg} is not a public-key algorithm"))?;
    sig::ParsedPublicKey::new(va, bytes)
        .map(Verifier::Public)
        .map_err(|e| format!("not a valid key for {alg}: {e}"))
}

fn pem_bytes(alg: Alg, pem: &[u8]) -> Result<Vec<u8>, String> {
    let dk = match alg.family() {
        Family::Rsa => DecodingKey::from_rsa_pem(pem),
        Family::P256 | Family::P384 => DecodingKey::from_ec_pem(pem),
        Family::Ed25519 => DecodingKey::from_ed_pem(pem),
        Family::Hmac => return Err(format!("{alg} needs a secret_file, not a PEM key")),
    }
    .map_err(|e| {
        format!(
            "not a PEM {} public key or certificate: {e}",
            family_name(alg.family())
        )
    })?;
    match dk.kind() {
        DecodingKeyKind::SecretOrDer(b) => Ok(b.clone()),
        DecodingKeyKind::RsaModulusExponent { .. } => Err("unexpected RSA component form".into()),
    }
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Hmac => "HMAC",
        Family::Rsa => "RSA",
        Family::P256 => "P-256",
        Family::P384 => "P-384",
        Family::Ed25519 => "Ed25519",
    }
}

/// Build the keys of one configured file key, one per allowed algorithm.
pub fn load_file_key(
    kid: Option<&str>,
    algs: &[Alg],
    src: KeySource<'_>,
    source: &str,
) -> Result<Vec<Key>, String> {
    let mut out = Vec::with_capacity(algs.len());
    for &alg in algs {
        let verifier = match (&src, alg.family()) {
            (KeySource::Secret(s), Family::Hmac) => {
                if s.len() < alg.min_secret_len() {
                    return Err(format!(
                        "the secret has {} bytes; {alg} needs at least {}",
                        s.len(),
                        alg.min_secret_len()
                    ));
                }
                // unwrap-free: hmac_algorithm is Some for every Hmac-family alg.
                let ha = alg.hmac_algorithm().ok_or("internal: no HMAC algorithm")?;
                Verifier::Hmac(hmac::Key::new(ha, s))
            }
            (KeySource::Secret(_), _) => {
                return Err(format!("{alg} cannot be used with a secret_file"))
            }
            (KeySource::Pem(_), Family::Hmac) => {
                return Err(format!("{alg} needs a secret_file, not a PEM key"))
            }
            (KeySource::Pem(p), _) => public_key(alg, &pem_bytes(alg, p)?)?,
        };
        out.push(Key {
            kid: kid.map(Arc::from),
            alg,
            source: source.to_owned(),
            verifier,
        });
    }
    Ok(out)
}

fn jwk_family(jwk: &Jwk) -> Option<Family> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Family::Rsa),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Family::P256),
            EllipticCurve::P384 => Some(Family::P384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => Some(Family::Ed25519),
            _ => None,
        },
        AlgorithmParameters::OctetKey(_) => Some(Family::Hmac),
        _ => None,
    }
}

/// A key of a JWKS that was skipped, and why: what the loading process
/// logs, once per load or fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksNote {
    /// The key is not meant for verifying signatures (`use: enc`, or
    /// `key_ops` without `verify`): expected in a set that serves other
    /// purposes too, so [`crate::log::INFO`]; anything else (a type, curve
    /// or algorithm this configuration cannot use) is a
    /// [`crate::log::WARN`].
    pub not_for_verification: bool,
    /// What was skipped and why.
    pub message: String,
}

impl JwksNote {
    /// The log level of this note.
    pub fn level(&self) -> i32 {
        if self.not_for_verification {
            crate::log::INFO
        } else {
            crate::log::WARN
        }
    }
}

impl fmt::Display for JwksNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Build the keys of a JWKS document. Each JWK is used with the configured
/// algorithms that fit its type and, if it names one, its own `alg`. Keys
/// not meant for verification (`use: enc`, `key_ops` without `verify`), or
/// of types not supported, are skipped and reported in the returned notes.
/// A set that yields no key is an error.
pub fn load_jwks(
    json: &[u8],
    algs: &[Alg],
    source: &str,
) -> Result<(Vec<Key>, Vec<JwksNote>), String> {
    let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut keys = Vec::new();
    let mut notes = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let kid = jwk.common.key_id.clone();
        let label = match &kid {
            Some(k) => format!("key {i} (kid {k:?})"),
            None => format!("key {i}"),
        };
        let warn = |message: String| JwksNote {
            not_for_verification: false,
            message,
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            notes.push(JwksNote {
                not_for_verification: true,
                message: format!("{label}: skipped, meant for encryption (use: enc)"),
            });
            continue;
        }
        // RFC 7517 4.3: a key whose key_ops do not include "verify" is not
        // for verifying signatures or MACs.
        if jwk
            .common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
        {
            notes.push(JwksNote {
                not_for_verification: true,
                message: format!(
                    "{label}: skipped, not meant for verification (key_ops without verify)"
                ),
            });
            continue;
        }
        let Some(family) = jwk_family(jwk) else {
            notes.push(warn(format!(
                "{label}: skipped, unsupported key type or curve"
            )));
            continue;
        };
        let own_alg = jwk.common.key_algorithm.map(|a| a.to_string());
        let usable: Vec<Alg> = algs
            .iter()
            .copied()
            .filter(|a| a.family() == family && own_alg.as_deref().is_none_or(|o| o == a.name()))
            .collect();
        if usable.is_empty() {
            notes.push(warn(format!(
                "{label}: skipped, none of the configured algorithms fits it"
            )));
            continue;
        }
        let dk = DecodingKey::from_jwk(jwk).map_err(|e| format!("{label}: {e}"))?;
        for alg in usable {
            let verifier = match (dk.kind(), family) {
                (DecodingKeyKind::SecretOrDer(s), Family::Hmac) => {
                    if s.len() < alg.min_secret_len() {
                        return Err(format!("{label}: secret too short for {alg}"));
                    }
                    let ha = alg.hmac_algorithm().ok_or("internal: no HMAC algorithm")?;
                    Verifier::Hmac(hmac::Key::new(ha, s))
                }
                (DecodingKeyKind::RsaModulusExponent { n, e }, Family::Rsa) => {
                    let params = alg.rsa_parameters().ok_or("internal: no RSA parameters")?;
                    let comps = sig::RsaPublicKeyComponents {
                        n: n.as_slice(),
                        e: e.as_slice(),
                    };
                    Verifier::Public(
                        comps
                            .to_parsed_public_key(params)
                            .map_err(|e| format!("{label}: bad RSA key: {e}"))?,
                    )
                }
                (DecodingKeyKind::SecretOrDer(b), _) => {
                    public_key(alg, b).map_err(|e| format!("{label}: {e}"))?
                }
                _ => return Err(format!("{label}: key form does not fit {alg}")),
            };
            keys.push(Key {
                kid: kid.as_deref().map(Arc::from),
                alg,
                source: format!("{source} {label}"),
                verifier,
            });
        }
    }
    if keys.is_empty() {
        let why: Vec<&str> = notes.iter().map(|n| n.message.as_str()).collect();
        return Err(format!("no usable key in the set ({})", why.join("; ")));
    }
    Ok((keys, notes))
}

/// A key set fetched from a URL, parsed once per change per process.
#[derive(Debug, Default)]
pub struct KeySet {
    /// The keys, each bound to one algorithm.
    pub keys: Vec<Key>,
    /// Index of `keys` by kid.
    pub by_kid: FxHashMap<String, Vec<usize>>,
}

impl KeySet {
    /// Parse a JWKS document with the same rules as a JWKS file (keys bound
    /// to kids, algorithms from `algs` only). A kid naming two different
    /// keys is an error.
    pub fn parse(
        json: &[u8],
        algs: &[Alg],
        source: &str,
    ) -> Result<(KeySet, Vec<JwksNote>), String> {
        let (keys, notes) = load_jwks(json, algs, source)?;
        let mut by_kid: FxHashMap<String, Vec<usize>> = FxHashMap::default();
        for (i, k) in keys.iter().enumerate() {
            if let Some(kid) = &k.kid {
                by_kid.entry(kid.to_string()).or_default().push(i);
            }
        }
        for (kid, idxs) in &by_kid {
            let first = &keys[idxs[0]].source;
            if idxs.iter().any(|&x| &keys[x].source != first) {
                return Err(format!("kid {kid:?} names more than one key"));
            }
        }
        Ok((KeySet { keys, by_kid }, notes))
    }
}
