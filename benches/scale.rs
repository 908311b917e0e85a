//! Scale (issue #4, item 6): cost of one full verification (cache off) with
//! 1, 100 and 10,000 configured issuers, and with a JWKS of 1 and of 100
//! keys. Lookups must not grow.
//!
//! Configurations and keys are generated into a temporary directory. HS256
//! is used throughout: it is the cheapest check, so any cost that grows
//! with the configuration shows most. Issuer names and kids have the same
//! length in every variant (zero-padded), so the tokens have the same size;
//! the token names the last issuer / the last key.
//!
//! The variants are measured interleaved (round after round, each in turn),
//! and each ratio is the median of the per-round ratios against the
//! smallest configuration. Results: `target/bench/scale.txt`.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use wic_tna::keys::Alg;
use wic_tna::mint::mint;
use wic_tna::Context;

fn iss(i: usize) -> String {
    format!("https://wwsf-{i:05}.example")
}

fn kid(i: usize) -> String {
    format!("k{i:05}")
}

fn key_secret(i: usize) -> Vec<u8> {
    format!("bench-secret-{i:05}-0123456789abcdef0123456789abcdef").into_bytes()
}

const HEAD: &str =
    "home_realm = \"ims.example.net\"\nverified_cache_size = 0\nadd_authorization_entity = true\n";

fn issuer_block(out: &mut String, iss: &str) {
    write!(
        out,
        "\n[[issuer]]\niss = \"{iss}\"\nimpi_patterns = [\"*@socialnet.ims.example.net\"]\nimpu_patterns = [\"sip:*@socialnet.ims.example.net\"]\n"
    )
    .unwrap();
}

/// `n` issuers, each with one HS256 secret; returns (config, iss of the token).
fn issuers_config(dir: &Path, n: usize) -> (PathBuf, String) {
    let secret = dir.join("issuer.secret");
    std::fs::write(&secret, key_secret(0)).unwrap();
    let mut t = String::from(HEAD);
    for i in 0..n {
        issuer_block(&mut t, &iss(i));
        write!(t, "  [[issuer.key]]\n  kid = \"{}\"\n  algorithms = [\"HS256\"]\n  secret_file = \"{}\"\n", kid(0), secret.display()).unwrap();
    }
    let p = dir.join(format!("issuers-{n}.toml"));
    std::fs::write(&p, t).unwrap();
    (p, iss(n - 1))
}

/// One issuer whose keys are a JWKS of `n` HS256 keys.
fn jwks_config(dir: &Path, n: usize) -> PathBuf {
    let keys: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "kty": "oct", "kid": kid(i), "alg": "HS256", "use": "sig",
                "k": URL_SAFE_NO_PAD.encode(key_secret(i)),
            })
        })
        .collect();
    let jwks = dir.join(format!("set-{n}.jwks.json"));
    std::fs::write(
        &jwks,
        serde_json::to_vec_pretty(&serde_json::json!({ "keys": keys })).unwrap(),
    )
    .unwrap();
    let mut t = String::from(HEAD);
    issuer_block(&mut t, &iss(0));
    write!(
        t,
        "  [[issuer.key]]\n  algorithms = [\"HS256\"]\n  jwks = \"{}\"\n",
        jwks.display()
    )
    .unwrap();
    let p = dir.join(format!("jwks-{n}.toml"));
    std::fs::write(&p, t).unwrap();
    p
}

fn token(iss: &str, key_index: usize) -> Vec<u8> {
    let mut r = request_a(Alg::HS256);
    r.iss = iss.to_owned();
    r.kid = Some(kid(key_index));
    bearer(&mint(&r, &key_secret(key_index)).expect("mint"))
}

struct Variant {
    name: String,
    ctx: Context,
    header: Vec<u8>,
    load_ms: f64,
}

fn load(name: String, path: &Path, header: Vec<u8>) -> Variant {
    let t = std::time::Instant::now();
    let ctx = Context::new(path, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let now = now();
    assert!(
        ctx.verify(&header, Some(TO_A), Some(600), now).accepted(),
        "{name}: token rejected"
    );
    Variant {
        name,
        ctx,
        header,
        load_ms,
    }
}

fn main() {
    if !bench_mode() {
        return;
    }
    let tmp = TempDir::with_tag("bench-scale");
    let mut vs = Vec::new();
    for n in [1usize, 100, 10_000] {
        let (p, last) = issuers_config(tmp.path(), n);
        vs.push(load(format!("issuers={n}"), &p, token(&last, 0)));
    }
    for n in [1usize, 100] {
        let p = jwks_config(tmp.path(), n);
        vs.push(load(format!("jwks_keys={n}"), &p, token(&iss(0), n - 1)));
    }
    let rounds: usize = std::env::var("WIC_TNA_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let now = now();
    let mut closures: Vec<Box<dyn FnMut()>> = vs
        .iter()
        .map(|v| {
            let (ctx, h) = (&v.ctx, &v.header);
            Box::new(move || {
                black_box(
                    ctx.verify(black_box(h), Some(TO_A), Some(600), now)
                        .accepted(),
                );
            }) as Box<dyn FnMut()>
        })
        .collect();
    let mut refs: Vec<&mut dyn FnMut()> = closures
        .iter_mut()
        .map(|b| &mut **b as &mut dyn FnMut())
        .collect();
    let r = interleaved(rounds, 20.0, &mut refs);
    reset("scale.txt");
    let mut lines = Vec::new();
    println!("scale: full HS256 verify (cache off), interleaved, median of {rounds} rounds");
    println!(
        "{:<16} {:>10} {:>16} {:>12}",
        "configuration", "ns/verify", "ratio vs base", "load ms"
    );
    for (i, v) in vs.iter().enumerate() {
        let base = if v.name.starts_with("issuers") { 0 } else { 3 };
        let (ratio, a, _) = paired_ratio(&r[i], &r[base]);
        println!(
            "{:<16} {:>10.0} {:>16.3} {:>12.1}",
            v.name, a, ratio, v.load_ms
        );
        lines.push((format!("{}.ns", v.name), a));
        lines.push((format!("{}.ratio", v.name), ratio));
        lines.push((format!("{}.load_ms", v.name), v.load_ms));
    }
    record("scale.txt", &lines);
}
