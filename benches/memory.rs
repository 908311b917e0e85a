//! Memory (issue #4, item 5): resident set size of a process after 1 million
//! verifications against after 10 thousand, with the verified-token cache
//! on (default configuration, `verified_cache_size` 10000):
//!
//! * `repeated`: the same ES256 token every time (the refresh path: cache
//!   hits after the first),
//! * `distinct`: a new token every time (HS256, each with its own `jti`, so
//!   that minting a million tokens takes seconds; what the library keeps per
//!   token does not depend on the algorithm). The cache fills to its bound
//!   and is emptied, over and over.
//!
//! Each scenario runs in a fresh child process (this binary with `--child
//! <scenario>`), which reports VmRSS / RssAnon / VmHWM from
//! /proc/self/status at both points. Results: `target/bench/memory.txt`.

mod common;

use common::*;
use std::hint::black_box;
use std::process::Command;
use wic_tna::keys::Alg;
use wic_tna::mint::mint;

const SMALL: u64 = 10_000;
const LARGE: u64 = 1_000_000;

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cache_entries(ctx: &wic_tna::Context) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&ctx.stats_json()).expect("stats JSON");
    v["process"]["verified_cache_entries"].as_u64().unwrap_or(0)
}

fn child(scenario: &str) {
    let tmp = TempDir::with_tag("bench-memory");
    let ctx = example_context(tmp.path(), None);
    let now = now();
    // Read /proc and the stats once before counting, so that the pages of
    // the code that reports (file-backed, mapped in on first use, possibly
    // as large folios) are resident at both points: the growth measured is
    // then what the verifications allocate.
    let _ = (status_kib("VmRSS:"), cache_entries(&ctx));
    let report = |at: u64, ctx: &wic_tna::Context| {
        println!(
            "{scenario} {at} {} {} {} {}",
            status_kib("VmRSS:"),
            status_kib("RssAnon:"),
            status_kib("VmHWM:"),
            cache_entries(ctx)
        );
    };
    match scenario {
        "repeated" => {
            let header = bearer(&token_a(Alg::ES256));
            for i in 1..=LARGE {
                assert!(ctx
                    .verify(black_box(&header), Some(TO_A), Some(600), now)
                    .accepted());
                if i == SMALL || i == LARGE {
                    report(i, &ctx);
                }
            }
        }
        "distinct" => {
            let mut req = request_a(Alg::HS256);
            let key = secret(issuer_a_key(Alg::HS256).1);
            let mut header = Vec::with_capacity(1024);
            for i in 1..=LARGE {
                req.jti = Some(format!("jti-{i}"));
                let tok = mint(&req, &key).expect("mint");
                header.clear();
                header.extend_from_slice(b"Bearer ");
                header.extend_from_slice(tok.as_bytes());
                assert!(ctx
                    .verify(black_box(&header), Some(TO_A), Some(600), now)
                    .accepted());
                if i == SMALL || i == LARGE {
                    report(i, &ctx);
                }
            }
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(args.get(i + 1).map(String::as_str).unwrap_or(""));
        return;
    }
    if !bench_mode() {
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    reset("memory.txt");
    let mut lines = Vec::new();
    println!("memory: RSS after {SMALL} and after {LARGE} verifications (cache on, verified_cache_size 10000)");
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "scenario", "RSS@10k KiB", "RSS@1M KiB", "growth KiB", "anon@10k", "anon@1M", "entries"
    );
    for scenario in ["repeated", "distinct"] {
        let t = std::time::Instant::now();
        let out = Command::new(&exe)
            .args(["--child", scenario])
            .output()
            .expect("spawn child");
        assert!(
            out.status.success(),
            "child {scenario} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<Vec<u64>> = text
            .lines()
            .filter(|l| l.starts_with(scenario))
            .map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .map(|x| x.parse().expect("number"))
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), 2, "child output: {text}");
        let (a, b) = (&rows[0], &rows[1]);
        let growth = b[1] as f64 - a[1] as f64;
        println!(
            "{:<10} {:>12} {:>12} {:>12} {:>12} {:>12} {:>5}/{:<5} ({:.1} s)",
            scenario,
            a[1],
            b[1],
            growth,
            a[2],
            b[2],
            a[4],
            b[4],
            t.elapsed().as_secs_f64()
        );
        lines.push((format!("{scenario}.rss10k.kib"), a[1] as f64));
        lines.push((format!("{scenario}.rss1m.kib"), b[1] as f64));
        lines.push((format!("{scenario}.growth.kib"), growth));
        lines.push((format!("{scenario}.anon10k.kib"), a[2] as f64));
        lines.push((format!("{scenario}.anon1m.kib"), b[2] as f64));
        lines.push((format!("{scenario}.hwm1m.kib"), b[3] as f64));
        lines.push((format!("{scenario}.entries10k"), a[4] as f64));
        lines.push((format!("{scenario}.entries1m"), b[4] as f64));
    }
    record("memory.txt", &lines);
}
