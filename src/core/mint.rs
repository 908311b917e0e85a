//! Minting tokens from a private key, for demos and tests (the CLI's
//! `mint`). A real deployment's tokens come from the WWSF.

use crate::core::keys::{Alg, Family};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Map, Value};

/// What to put in the token.
#[derive(Clone, Debug)]
pub struct MintRequest {
    pub alg: Alg,
    pub kid: Option<String>,
    pub typ: String,
    pub iss: String,
    pub aud: String,
    pub scope: String,
    pub impi: String,
    pub impus: Vec<String>,
    pub sub: Option<String>,
    pub jti: Option<String>,
    pub iat: i64,
    pub nbf: Option<i64>,
    pub exp: i64,
}

/// Sign `req` with `key` (PKCS#8 / PEM private key, or the HMAC secret).
pub fn mint(req: &MintRequest, key: &[u8]) -> Result<String, String> {
    let ek =
        match req.alg.family() {
            Family::Hmac => EncodingKey::from_secret(key),
            Family::Rsa => EncodingKey::from_rsa_pem(key)
                .map_err(|e| format!("not an RSA private key: {e}"))?,
            Family::P256 | Family::P384 => {
                EncodingKey::from_ec_pem(key).map_err(|e| format!("not an EC private key: {e}"))?
            }
            Family::Ed25519 => EncodingKey::from_ed_pem(key)
                .map_err(|e| format!("not an Ed25519 private key: {e}"))?,
        };
    let mut header = Header::new(req.alg.to_jsonwebtoken());
    header.kid = req.kid.clone();
    header.typ = Some(req.typ.clone());
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(req.iss));
    claims.insert("aud".into(), json!(req.aud));
    claims.insert("scope".into(), json!(req.scope));
    claims.insert("impi".into(), json!(req.impi));
    claims.insert(
        "impu".into(),
        if req.impus.len() == 1 {
            json!(req.impus[0])
        } else {
            json!(req.impus)
        },
    );
    if let Some(s) = &req.sub {
        claims.insert("sub".into(), json!(s));
    }
    if let Some(j) = &req.jti {
        claims.insert("jti".into(), json!(j));
    }
    claims.insert("iat".into(), json!(req.iat));
    if let Some(n) = req.nbf {
        claims.insert("nbf".into(), json!(n));
    }
    claims.insert("exp".into(), json!(req.exp));
    jsonwebtoken::encode(&header, &Value::Object(claims), &ek)
        .map_err(|e| format!("cannot sign: {e}"))
}
