//! Full verification against the crypto floor (issue #4, items 1 and 3).
//!
//! * `full/<ALG>`: `Context::verify(b"Bearer <tok>", Some(to), Some(600), now)`
//!   with every check on and the verified-token cache off
//!   (`verified_cache_size = 0`), for HS256, RS256, PS256, ES256, EdDSA.
//! * `floor/<ALG>`: the raw signature / MAC check of the same signing input
//!   with aws-lc-rs and the key parsed once (`ParsedPublicKey::verify_sig`,
//!   `hmac::verify`).
//! * `refresh/cache_hit`: the same token again through a context with the
//!   default configuration (cache on), against `refresh/full_ES256` (cache
//!   off).
//!
//! Criterion measures each function on its own (times with confidence
//! intervals in target/criterion). The ratios are then measured again
//! interleaved (every variant in turn, round after round, the median of the
//! per-round ratios), so that they do not depend on the machine's speed or
//! on its drift during the run. Both are printed and written to
//! `target/bench/verify.txt` for scripts/bench.sh.

mod common;

use common::*;
use criterion::Criterion;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;
use wic_tna::keys::Alg;
use wic_tna::Context;

struct Case {
    alg: Alg,
    header: Vec<u8>,
    input: Vec<u8>,
    signature: Vec<u8>,
    floor: Floor,
}

fn cases() -> Vec<Case> {
    ALGS.iter()
        .map(|&alg| {
            let tok = token_a(alg);
            let (input, signature) = split_token(&tok);
            Case {
                alg,
                header: bearer(&tok),
                input,
                signature,
                floor: Floor::new(alg),
            }
        })
        .collect()
}

fn full(ctx: &Context, header: &[u8], now: i64) -> bool {
    ctx.verify(black_box(header), Some(black_box(TO_A)), Some(600), now)
        .accepted()
}

fn cache_hits(ctx: &Context) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&ctx.stats_json()).expect("stats JSON");
    v["process"]["verified_cache_hits"].as_u64().unwrap_or(0)
}

fn criterion_median_ns(dir: &Path, group: &str, id: &str) -> Option<f64> {
    let p = dir.join(group).join(id).join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn main() {
    let tmp = TempDir::with_tag("bench-verify");
    let nocache = example_context(tmp.path(), Some(0));
    let cached = example_context(tmp.path(), None);
    let now = now();
    let cases = cases();
    for c in &cases {
        assert!(
            full(&nocache, &c.header, now),
            "{}: full verify rejects the token",
            c.alg
        );
        assert!(
            c.floor.verify(&c.input, &c.signature),
            "{}: floor rejects the signature",
            c.alg
        );
    }
    let es = cases
        .iter()
        .find(|c| c.alg == Alg::ES256)
        .expect("ES256 case");
    assert!(full(&cached, &es.header, now));
    let hits0 = cache_hits(&cached);
    assert!(full(&cached, &es.header, now));
    assert_eq!(
        cache_hits(&cached),
        hits0 + 1,
        "the second verify of a token must hit the cache"
    );

    let crit_dir = target_dir().join("criterion");
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .output_directory(&crit_dir)
        .configure_from_args();
    {
        let mut g = c.benchmark_group("full");
        for case in &cases {
            g.bench_function(case.alg.name(), |b| {
                b.iter(|| full(&nocache, &case.header, now))
            });
        }
        g.finish();
        let mut g = c.benchmark_group("floor");
        for case in &cases {
            g.bench_function(case.alg.name(), |b| {
                b.iter(|| {
                    case.floor
                        .verify(black_box(&case.input), black_box(&case.signature))
                })
            });
        }
        g.finish();
        let mut g = c.benchmark_group("refresh");
        g.bench_function("cache_hit", |b| b.iter(|| full(&cached, &es.header, now)));
        g.bench_function("full_ES256", |b| b.iter(|| full(&nocache, &es.header, now)));
        g.finish();
    }
    c.final_summary();
    assert_eq!(
        cache_hits(&nocache),
        0,
        "the cache-off context must never hit"
    );

    if !bench_mode() || std::env::args().any(|a| a.starts_with("--profile-time")) {
        // `cargo test --benches` (criterion ran each function once) or a
        // profiling run (`--profile-time <s> <filter>`).
        return;
    }

    // Interleaved ratios.
    let rounds: usize = std::env::var("WIC_TNA_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    reset("verify.txt");
    let mut lines: Vec<(String, f64)> = Vec::new();
    println!();
    println!("full verify / floor, interleaved, median of {rounds} per-round ratios (criterion medians alongside)");
    println!(
        "{:<6} {:>10} {:>10} {:>7} {:>13}   {:>10} {:>10} {:>7}",
        "alg", "full ns", "floor ns", "ratio", "rounds", "crit full", "crit floor", "ratio"
    );
    for case in &cases {
        let mut f_full = || {
            black_box(full(&nocache, &case.header, now));
        };
        let mut f_floor = || {
            black_box(
                case.floor
                    .verify(black_box(&case.input), black_box(&case.signature)),
            );
        };
        let r = interleaved(rounds, 20.0, &mut [&mut f_full, &mut f_floor]);
        let (ratio, a, b) = paired_ratio(&r[0], &r[1]);
        let (lo, hi) = ratio_range(&r[0], &r[1]);
        let cf = criterion_median_ns(&crit_dir, "full", case.alg.name());
        let cl = criterion_median_ns(&crit_dir, "floor", case.alg.name());
        let cr = match (cf, cl) {
            (Some(x), Some(y)) => x / y,
            _ => f64::NAN,
        };
        println!(
            "{:<6} {:>10.0} {:>10.0} {:>7.3} {:>13}   {:>10.0} {:>10.0} {:>7.3}",
            case.alg.name(),
            a,
            b,
            ratio,
            format!("{lo:.2}..{hi:.2}"),
            cf.unwrap_or(f64::NAN),
            cl.unwrap_or(f64::NAN),
            cr
        );
        let n = case.alg.name();
        lines.push((format!("full.{n}.ns"), a));
        lines.push((format!("floor.{n}.ns"), b));
        lines.push((format!("ratio.{n}"), ratio));
        lines.push((format!("ratio.{n}.min"), lo));
        lines.push((format!("ratio.{n}.max"), hi));
        lines.push((format!("crit.full.{n}.ns"), cf.unwrap_or(f64::NAN)));
        lines.push((format!("crit.floor.{n}.ns"), cl.unwrap_or(f64::NAN)));
        lines.push((format!("crit.ratio.{n}"), cr));
    }
    let mut f_hit = || {
        black_box(full(&cached, &es.header, now));
    };
    let mut f_es = || {
        black_box(full(&nocache, &es.header, now));
    };
    let r = interleaved(rounds, 20.0, &mut [&mut f_hit, &mut f_es]);
    let (ratio, a, b) = paired_ratio(&r[0], &r[1]);
    let ch = criterion_median_ns(&crit_dir, "refresh", "cache_hit");
    let ce = criterion_median_ns(&crit_dir, "refresh", "full_ES256");
    let cr = match (ch, ce) {
        (Some(x), Some(y)) => x / y,
        _ => f64::NAN,
    };
    println!();
    println!("refresh path: cache hit / full ES256 verify (cache off)");
    println!(
        "{:<10} {:>10} {:>10} {:>8}   {:>10} {:>10} {:>8}",
        "", "hit ns", "full ns", "share", "crit hit", "crit full", "share"
    );
    println!(
        "{:<10} {:>10.0} {:>10.0} {:>7.2}%   {:>10.0} {:>10.0} {:>7.2}%",
        "ES256",
        a,
        b,
        ratio * 100.0,
        ch.unwrap_or(f64::NAN),
        ce.unwrap_or(f64::NAN),
        cr * 100.0
    );
    lines.push(("hit.ns".into(), a));
    lines.push(("hit.full_ES256.ns".into(), b));
    lines.push(("hit.share".into(), ratio));
    lines.push(("crit.hit.ns".into(), ch.unwrap_or(f64::NAN)));
    lines.push(("crit.hit.full_ES256.ns".into(), ce.unwrap_or(f64::NAN)));
    lines.push(("crit.hit.share".into(), cr));
    record("verify.txt", &lines);
    assert_eq!(
        cache_hits(&nocache),
        0,
        "the cache-off context must never hit"
    );
}
