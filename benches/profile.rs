//! A profiling driver (not a measurement): runs one kind of verification in
//! a loop, for `valgrind --tool=callgrind` or `perf record`.
//!
//!     cargo bench --no-run
//!     valgrind --tool=callgrind target/release/deps/profile-<hash> --bench ES256 20000
//!     target/release/deps/profile-<hash> --bench HS256 2000000 hit   # cache hit path
//!
//! Arguments: the algorithm (HS256, RS256, PS256, ES256, EdDSA), the number
//! of verifications, and `hit` for the cache-hit path (default: cache off,
//! full verification), `floor` for the bare signature check, or `cold`:
//! full verification with the CPU caches flushed in between (an 8 MiB
//! buffer rewritten before each call; only the verifications are timed),
//! as in a proxy that does other work between two REGISTERs. With no
//! arguments it does nothing (so that `cargo bench` passes over it).

mod common;

use common::*;
use std::hint::black_box;
use wic_tna::keys::Alg;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(alg) = args.first().and_then(|a| Alg::from_name(a)) else {
        eprintln!(
            "profile: usage: profile --bench <HS256|RS256|PS256|ES256|EdDSA> <n> [hit|floor|cold]"
        );
        return;
    };
    let n: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let mode = args.get(2).map(String::as_str).unwrap_or("full");
    let tmp = TempDir::with_tag("bench-profile");
    let tok = token_a(alg);
    let header = bearer(&tok);
    let now = now();
    let t = std::time::Instant::now();
    match mode {
        "floor" => {
            let floor = Floor::new(alg);
            let (input, sig) = split_token(&tok);
            for _ in 0..n {
                assert!(floor.verify(black_box(&input), black_box(&sig)));
            }
        }
        "cold" => {
            let ctx = example_context(tmp.path(), Some(0));
            let mut junk = vec![0u8; 8 << 20];
            let mut timed = std::time::Duration::ZERO;
            for i in 0..n {
                for b in junk.iter_mut().step_by(64) {
                    *b = b.wrapping_add(i as u8);
                }
                black_box(&junk);
                let t = std::time::Instant::now();
                assert!(ctx
                    .verify(black_box(&header), Some(TO_A), Some(600), now)
                    .accepted());
                timed += t.elapsed();
            }
            eprintln!(
                "profile: {alg} cold: {:.0} ns per verification (caches flushed before each)",
                timed.as_nanos() as f64 / n as f64
            );
        }
        _ => {
            let ctx = example_context(tmp.path(), if mode == "hit" { None } else { Some(0) });
            for _ in 0..n {
                assert!(ctx
                    .verify(black_box(&header), Some(TO_A), Some(600), now)
                    .accepted());
            }
        }
    }
    eprintln!(
        "profile: {alg} {mode}: {n} in {:?} ({:.0} ns each)",
        t.elapsed(),
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
