//! Shared by the benchmarks (benches/*.rs): fixture keys, configuration
//! copies in temporary directories, tokens minted with `wic_tna::mint`, the
//! crypto floor (aws-lc-rs with a key parsed once), timing helpers and the
//! results file that scripts/bench.sh turns into the table.
#![allow(dead_code)]

use aws_lc_rs::{hmac, signature as sig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, DecodingKeyKind};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use wic_tna::keys::Alg;
use wic_tna::mint::{mint, MintRequest};

pub const ISS_A: &str = "https://wwsf.socialnet.example";
pub const IMPI_A: &str = "alice@socialnet.ims.example.net";
pub const IMPU_A: &str = "sip:alice@socialnet.ims.example.net";
pub const TO_A: &[u8] = b"sip:alice@socialnet.ims.example.net";
pub const AUD: &str = "ims.example.net";
pub const SCOPE: &str = "openid webrtc-ims-client-access-to-ims";

/// The algorithms of the full-verify table, in table order.
pub const ALGS: [Alg; 5] = [Alg::HS256, Alg::RS256, Alg::PS256, Alg::ES256, Alg::EdDSA];

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn keys_dir() -> PathBuf {
    root().join("tests/fixtures/keys")
}

pub fn key(name: &str) -> Vec<u8> {
    std::fs::read(keys_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// HMAC secret as the configuration loader takes it (trailing LWS removed).
pub fn secret(name: &str) -> Vec<u8> {
    let mut k = key(name);
    while matches!(k.last(), Some(b'\n' | b'\r' | b' ' | b'\t')) {
        k.pop();
    }
    k
}

pub fn now() -> i64 {
    wic_tna::context::now()
}

/// Where results go: `$WIC_TNA_BENCH_OUT`, else `<target>/bench`.
pub fn out_dir() -> PathBuf {
    let d = match std::env::var_os("WIC_TNA_BENCH_OUT") {
        Some(d) => PathBuf::from(d),
        None => target_dir().join("bench"),
    };
    std::fs::create_dir_all(&d).expect("results directory");
    d
}

pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                root().join(d)
            }
        }
        None => root().join("target"),
    }
}

/// Append `key value note` lines to `<out>/<file>` (read by scripts/bench.sh).
pub fn record(file: &str, lines: &[(String, f64)]) {
    let p = out_dir().join(file);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .expect("results file");
    for (k, v) in lines {
        writeln!(f, "{k} {v}").expect("write results");
    }
}

/// Start a results file afresh.
pub fn reset(file: &str) {
    let _ = std::fs::remove_file(out_dir().join(file));
}

#[path = "../../tests/common/tempdir.rs"]
mod tempdir;
pub use tempdir::TempDir;

/// The example configuration (config/wic-tna.toml) copied into `dir` with
/// absolute key paths; `cache` sets `verified_cache_size` (None: default,
/// 10000). Returns the file's path.
pub fn example_config(dir: &Path, cache: Option<usize>) -> PathBuf {
    let text =
        std::fs::read_to_string(root().join("config/wic-tna.toml")).expect("config/wic-tna.toml");
    let text = text.replace(
        "../tests/fixtures/keys",
        keys_dir().to_str().expect("UTF-8 path"),
    );
    let text = match cache {
        // Top-level keys must come before the first table.
        Some(n) => format!("verified_cache_size = {n}\n{text}"),
        None => text,
    };
    let p = dir.join(match cache {
        Some(n) => format!("wic-tna-cache{n}.toml"),
        None => "wic-tna.toml".to_owned(),
    });
    std::fs::write(&p, text).expect("write config");
    p
}

/// A context over the example configuration.
pub fn example_context(dir: &Path, cache: Option<usize>) -> wic_tna::Context {
    let p = example_config(dir, cache);
    wic_tna::Context::new(&p, None).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Key id and private key file of issuer A for `alg` (config/wic-tna.toml).
pub fn issuer_a_key(alg: Alg) -> (&'static str, &'static str) {
    match alg {
        Alg::HS256 | Alg::HS384 | Alg::HS512 => ("a-hs256", "issuer-a-hmac.secret"),
        Alg::ES256 => ("a-es256", "issuer-a-p256.key"),
        Alg::ES384 => ("a-es384", "issuer-a-p384.key"),
        Alg::EdDSA => ("a-ed", "issuer-a-ed25519.key"),
        _ => ("a-rsa", "issuer-a-rsa.key"),
    }
}

/// Public key (or secret) file of issuer A for `alg`.
pub fn issuer_a_public(alg: Alg) -> &'static str {
    match alg {
        Alg::HS256 | Alg::HS384 | Alg::HS512 => "issuer-a-hmac.secret",
        Alg::ES256 => "issuer-a-p256.pub.pem",
        Alg::ES384 => "issuer-a-p384.pub.pem",
        Alg::EdDSA => "issuer-a-ed25519.pub.pem",
        _ => "issuer-a-rsa.pub.pem",
    }
}

/// The request of a typical WIC token of issuer A: `typ` "JWT" (what
/// libjwt 1.x accepts, and the configuration does not require at+jwt),
/// one IMPU, 50 minutes left.
pub fn request_a(alg: Alg) -> MintRequest {
    let t = now();
    MintRequest {
        alg,
        kid: Some(issuer_a_key(alg).0.into()),
        typ: "JWT".into(),
        iss: ISS_A.into(),
        aud: AUD.into(),
        scope: SCOPE.into(),
        impi: IMPI_A.into(),
        impus: vec![IMPU_A.into()],
        sub: Some("user-1".into()),
        jti: None,
        iat: t,
        nbf: None,
        exp: t + 3000,
    }
}

/// A token of issuer A signed with `alg`.
pub fn token_a(alg: Alg) -> String {
    let r = request_a(alg);
    let k = issuer_a_key(alg).1;
    let kb = if k.ends_with(".secret") {
        secret(k)
    } else {
        key(k)
    };
    mint(&r, &kb).expect("mint")
}

/// `Bearer <token>`.
pub fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

/// The crypto floor: the raw signature or MAC check of a token's signing
/// input with the same library (aws-lc-rs) and the same key bytes the
/// library derives from the PEM, parsed once.
pub enum Floor {
    Hmac(Box<hmac::Key>),
    Public(sig::ParsedPublicKey),
}

impl Floor {
    pub fn new(alg: Alg) -> Floor {
        let file = issuer_a_public(alg);
        match alg {
            Alg::HS256 => Floor::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, &secret(file)))),
            _ => {
                let pem = key(file);
                let (dk, va): (DecodingKey, &'static dyn sig::VerificationAlgorithm) = match alg {
                    Alg::RS256 => (
                        DecodingKey::from_rsa_pem(&pem).expect("rsa pem"),
                        &sig::RSA_PKCS1_2048_8192_SHA256,
                    ),
                    Alg::PS256 => (
                        DecodingKey::from_rsa_pem(&pem).expect("rsa pem"),
                        &sig::RSA_PSS_2048_8192_SHA256,
                    ),
                    Alg::ES256 => (
                        DecodingKey::from_ec_pem(&pem).expect("ec pem"),
                        &sig::ECDSA_P256_SHA256_FIXED,
                    ),
                    Alg::EdDSA => (
                        DecodingKey::from_ed_pem(&pem).expect("ed pem"),
                        &sig::ED25519,
                    ),
                    a => panic!("no floor for {a}"),
                };
                let DecodingKeyKind::SecretOrDer(der) = dk.kind() else {
                    panic!("unexpected key form")
                };
                Floor::Public(sig::ParsedPublicKey::new(va, der).expect("parse public key"))
            }
        }
    }

    pub fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        match self {
            Floor::Hmac(k) => hmac::verify(k, input, signature).is_ok(),
            Floor::Public(k) => k.verify_sig(input, signature).is_ok(),
        }
    }
}

/// Signing input and decoded signature of a compact JWS.
pub fn split_token(token: &str) -> (Vec<u8>, Vec<u8>) {
    let dot = token.rfind('.').expect("compact JWS");
    let input = token.as_bytes()[..dot].to_vec();
    let signature = URL_SAFE_NO_PAD
        .decode(&token[dot + 1..])
        .expect("base64url signature");
    (input, signature)
}

/// Median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nanoseconds per call of `f`, over `n` calls.
pub fn ns_per_call(n: u64, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Calls of `f` that take about `ms` milliseconds.
pub fn calibrate(ms: f64, mut f: impl FnMut()) -> u64 {
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        let el = t.elapsed().as_secs_f64() * 1e3;
        if el >= ms / 4.0 || n >= 1 << 30 {
            return ((n as f64 * ms / el.max(1e-6)).ceil() as u64).max(1);
        }
        n *= 2;
    }
}

/// Interleaved measurement of several variants: `rounds` rounds, each
/// running every variant for about `ms` milliseconds in turn (so that a
/// change of machine speed affects all of them alike). Returns, per
/// variant, the per-round ns/call values.
pub fn interleaved(rounds: usize, ms: f64, fs: &mut [&mut dyn FnMut()]) -> Vec<Vec<f64>> {
    let ns: Vec<u64> = fs.iter_mut().map(|f| calibrate(ms, &mut **f)).collect();
    let mut out = vec![Vec::with_capacity(rounds); fs.len()];
    for _ in 0..rounds {
        for (i, f) in fs.iter_mut().enumerate() {
            out[i].push(ns_per_call(ns[i], &mut **f));
        }
    }
    out
}

/// Median of the per-round ratios a/b, and the medians of a and b.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    (
        median(&mut per_round(a, b)),
        median(&mut a.to_vec()),
        median(&mut b.to_vec()),
    )
}

fn per_round(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

/// The smallest and the largest of the per-round ratios a/b (how far the
/// machine's speed moved the ratio during the run).
pub fn ratio_range(a: &[f64], b: &[f64]) -> (f64, f64) {
    per_round(a, b)
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(r), hi.max(r))
        })
}

/// Is this run a real measurement (`cargo bench`), not `cargo test --benches`?
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}
