#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;
use wic_tna::keys::Alg;
use wic_tna::mint::{mint, MintRequest};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn config_path() -> PathBuf {
    root().join("config/wic-tna.toml")
}

pub const A: &str = "https://wwsf.socialnet.example";
pub const B: &str = "https://wwsf.gamenet.example";
pub const IMPI_A: &str = "alice@socialnet.ims.example.net";
pub const IMPU_A: &str = "sip:alice@socialnet.ims.example.net";

pub fn now() -> i64 {
    wic_tna::context::now()
}

/// A copy of the example config in a fresh temp dir, key paths absolute.
pub fn temp_config(edit: impl Fn(String) -> String) -> (tempdir::TempDir, PathBuf) {
    let d = tempdir::TempDir::new();
    let text = std::fs::read_to_string(config_path()).unwrap();
    let keys = root().join("tests/fixtures/keys");
    let text = text.replace("../tests/fixtures/keys", keys.to_str().unwrap());
    let p = d.path().join("wic-tna.toml");
    std::fs::write(&p, edit(text)).unwrap();
    (d, p)
}

pub mod tempdir;

pub fn key(name: &str) -> Vec<u8> {
    let mut k = std::fs::read(root().join("tests/fixtures/keys").join(name)).unwrap();
    if name.ends_with(".secret") {
        while k.last() == Some(&b'\n') {
            k.pop();
        }
    }
    k
}

/// A token of issuer A made by our own minting code, with `f` applied.
pub fn token_a(f: impl Fn(&mut MintRequest)) -> String {
    let t = now();
    let mut r = MintRequest {
        alg: Alg::ES256,
        kid: Some("a-es256".into()),
        typ: "at+jwt".into(),
        iss: A.into(),
        aud: "ims.example.net".into(),
        scope: "openid webrtc-ims-client-access-to-ims".into(),
        impi: IMPI_A.into(),
        impus: vec![IMPU_A.into()],
        sub: Some("user-1".into()),
        jti: None,
        iat: t,
        nbf: None,
        exp: t + 600,
    };
    f(&mut r);
    let keyfile = match (r.alg, r.kid.as_deref()) {
        (Alg::HS256 | Alg::HS384 | Alg::HS512, _) => "issuer-a-hmac.secret",
        (Alg::ES256, _) => "issuer-a-p256.key",
        (Alg::ES384, _) => "issuer-a-p384.key",
        (Alg::EdDSA, _) => "issuer-a-ed25519.key",
        _ => "issuer-a-rsa.key",
    };
    mint(&r, &key(keyfile)).unwrap()
}

/// Run the PyJWT case generator; returns the rows.
pub fn pyjwt_cases() -> Vec<Vec<String>> {
    let out = Command::new("python3")
        .arg(root().join("tests/cases/make_cases.py"))
        .output()
        .expect("python3 with PyJWT is needed (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "make_cases.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Does /etc/hosts name localhost (then the system resolver answers it
/// without sending a DNS query)?
pub fn localhost_in_etc_hosts() -> bool {
    std::fs::read_to_string("/etc/hosts").is_ok_and(|t| {
        t.lines().any(|l| {
            let mut w = l.split('#').next().unwrap_or("").split_whitespace();
            w.next()
                .is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback()))
                && w.any(|n| n == "localhost")
        })
    })
}
