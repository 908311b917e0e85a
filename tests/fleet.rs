//! Replay detection (src/core/replay.rs) and fleet state through Redis
//! (src/edge/fleet.rs). The Redis tests start their own `redis-server` on a free
//! loopback port and kill it afterwards; they are skipped, saying so, only
//! when `redis-server` is not installed (scripts/install-deps.sh installs it).

mod common;
use common::*;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wic_tna::keys::Alg;
use wic_tna::mint::{mint, MintRequest};
use wic_tna::replay::{self, Local, PROBES, REPLAY_SLOTS};
use wic_tna::shared::Shared;
use wic_tna::{Context, Reason};

const REPLAY_ON: &str = "\n[replay]\nenabled = true\n";

fn with_tail(tail: String) -> (tempdir::TempDir, PathBuf) {
    temp_config(move |t| format!("{t}\n{tail}"))
}

fn tok_jti(jti: Option<&str>, exp_in: i64) -> String {
    token_a(|r| {
        r.jti = jti.map(str::to_owned);
        r.exp = r.iat + exp_in;
    })
}

fn token_b(jti: &str) -> String {
    let t = now();
    let r = MintRequest {
        alg: Alg::HS256,
        kid: Some("b-hs256".into()),
        typ: "at+jwt".into(),
        iss: B.into(),
        aud: "ims.example.net".into(),
        scope: "openid webrtc-ims-client-access-to-ims".into(),
        impi: "bob@gamenet.ims.example.net".into(),
        impus: vec!["sip:bob@gamenet.ims.example.net".into()],
        sub: None,
        jti: Some(jti.into()),
        iat: t,
        nbf: None,
        exp: t + 600,
    };
    mint(&r, &key("issuer-b-hmac.secret")).unwrap()
}

fn vb(c: &Context, tok: &str, binding: Option<&str>, at: i64) -> wic_tna::Outcome {
    c.verify_bound(
        format!("Bearer {tok}").as_bytes(),
        None,
        None,
        binding.map(str::as_bytes),
        at,
    )
}

#[test]
fn same_binding_is_a_refresh_another_is_a_replay() {
    let (_d, p) = with_tail(REPLAY_ON.into());
    let c = Context::new(&p, None).unwrap();
    let t = now();
    let tok = tok_jti(Some("jti-1"), 600);
    assert_eq!(vb(&c, &tok, Some("conn-1"), t).reason, Reason::Ok);
    // Refresh from the same connection, later: still fine.
    assert_eq!(vb(&c, &tok, Some("conn-1"), t + 120).reason, Reason::Ok);
    let o = vb(&c, &tok, Some("conn-2"), t + 130);
    assert_eq!(o.reason, Reason::TokenReplayed);
    assert_eq!(o.sip_status, 401);
    let ch = o.www_authenticate.clone().unwrap();
    assert!(ch.contains("error=\"invalid_token\""), "{ch}");
    assert!(
        !ch.contains("jti-1") && !ch.contains("conn-"),
        "challenge echoes token or binding: {ch}"
    );
    // The replay did not take the token over: the first binding still refreshes.
    assert_eq!(vb(&c, &tok, Some("conn-1"), t + 140).reason, Reason::Ok);
    // Another token (other jti) on the second connection is its own.
    assert_eq!(
        vb(&c, &tok_jti(Some("jti-2"), 600), Some("conn-2"), t).reason,
        Reason::Ok
    );
    // After exp (+ leeway) the token is expired, whatever the binding.
    assert_eq!(
        vb(&c, &tok, Some("conn-2"), t + 600 + 31).reason,
        Reason::Expired
    );
    // The counters have the new reason name.
    assert!(
        c.stats_json().contains("\"token_replayed\":1"),
        "{}",
        c.stats_json()
    );
}

#[test]
fn replay_off_by_default_and_binding_ignored() {
    let (_d, p) = temp_config(|t| t);
    let c = Context::new(&p, None).unwrap();
    let tok = tok_jti(Some("jti-off"), 600);
    let t = now();
    assert_eq!(vb(&c, &tok, Some("a"), t).reason, Reason::Ok);
    assert_eq!(vb(&c, &tok, Some("b"), t).reason, Reason::Ok);
    assert_eq!(vb(&c, &tok, None, t).reason, Reason::Ok);
}

#[test]
fn missing_jti_and_missing_binding() {
    let t = now();
    let (_d, p) = with_tail(REPLAY_ON.into());
    let c = Context::new(&p, None).unwrap();
    let o = vb(&c, &tok_jti(None, 600), Some("conn-1"), t);
    assert_eq!((o.reason, o.sip_status), (Reason::MissingClaim, 401));
    // Replay on and no binding from the proxy: fail closed.
    let o = vb(&c, &tok_jti(Some("jti-nb"), 600), None, t);
    assert_eq!((o.reason, o.sip_status), (Reason::InternalError, 500));
    let o = vb(&c, &tok_jti(Some("jti-nb"), 600), Some(""), t);
    assert_eq!(o.reason, Reason::InternalError);
    // The plain verify passes no binding either.
    let o = c.verify(
        format!("Bearer {}", tok_jti(Some("jti-nb"), 600)).as_bytes(),
        None,
        None,
        t,
    );
    assert_eq!(o.reason, Reason::InternalError);

    let (_d2, p2) = with_tail("\n[replay]\nenabled = true\nmissing_jti = \"allow\"\n".into());
    let c2 = Context::new(&p2, None).unwrap();
    let tok = tok_jti(None, 600);
    assert_eq!(vb(&c2, &tok, Some("conn-1"), t).reason, Reason::Ok);
    assert_eq!(vb(&c2, &tok, Some("conn-2"), t).reason, Reason::Ok);

    let (_d3, p3) = with_tail("\n[replay]\nenabled = true\nmissing_jti = \"maybe\"\n".into());
    let e = Context::new(&p3, None)
        .err()
        .expect("bad missing_jti must be refused")
        .to_string();
    assert!(e.contains("maybe") || e.contains("missing_jti"), "{e}");
}

#[test]
fn two_workers_sharing_one_region_see_each_others_bindings() {
    let (_d, p) = with_tail(REPLAY_ON.into());
    let shared = Arc::new(Shared::new_anonymous().unwrap());
    let w1 = Context::new(&p, Some(shared.clone())).unwrap();
    let w2 = Context::new(&p, Some(shared.clone())).unwrap();
    let t = now();
    let tok = tok_jti(Some("jti-w"), 600);
    assert_eq!(vb(&w1, &tok, Some("conn-7"), t).reason, Reason::Ok);
    assert_eq!(
        vb(&w2, &tok, Some("conn-8"), t).reason,
        Reason::TokenReplayed
    );
    // The same connection handled by another worker is a refresh.
    assert_eq!(vb(&w2, &tok, Some("conn-7"), t).reason, Reason::Ok);
    // And across a fork (Kamailio's workers).
    let tok2 = tok_jti(Some("jti-fork"), 600);
    // SAFETY: the child only verifies and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = vb(&w1, &tok2, Some("conn-child"), t).reason == Reason::Ok;
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut st = 0;
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert_eq!(st, 0);
    assert_eq!(
        vb(&w2, &tok2, Some("conn-parent"), t).reason,
        Reason::TokenReplayed
    );
    assert_eq!(vb(&w2, &tok2, Some("conn-child"), t).reason, Reason::Ok);
}

#[test]
fn table_is_bounded_fails_closed_when_full_and_reuses_expired_slots() {
    let s = Shared::new_anonymous().unwrap();
    let table = s.replay_table();
    assert_eq!(table.len(), REPLAY_SLOTS);
    // Keys that all start at the same slot fill its window.
    let key = |i: u64| [5 + (i * REPLAY_SLOTS as u64), i];
    let b = [1, 1];
    for i in 0..PROBES as u64 {
        assert_eq!(
            replay::check(table, &key(i), &b, 1000, 100),
            Local::First,
            "{i}"
        );
    }
    assert_eq!(replay::check(table, &key(0), &b, 1000, 100), Local::Same);
    assert_eq!(
        replay::check(table, &key(1), &[2, 2], 1000, 100),
        Local::Other
    );
    // Window full of live entries: fail closed.
    assert_eq!(
        replay::check(table, &key(PROBES as u64), &b, 1000, 100),
        Local::Full
    );
    assert_eq!(replay::live_entries(table, 100), PROBES);
    // Once they are past their time, their slots are reused.
    assert_eq!(
        replay::check(table, &key(PROBES as u64), &b, 2000, 1001),
        Local::First
    );
    assert_eq!(replay::live_entries(table, 1001), 1);
}

// ---------------------------------------------------------------------------
// With a real redis-server.

struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempdir::TempDir,
}

fn redis_bin() -> Option<PathBuf> {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    fn start() -> Option<Redis> {
        let Some(_) = redis_bin() else {
            eprintln!(
                "SKIPPED: redis-server is not installed (scripts/install-deps.sh installs it)"
            );
            return None;
        };
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: tempdir::TempDir::new(),
        };
        r.up();
        Some(r)
    }

    fn up(&mut self) {
        let child = Command::new(redis_bin().unwrap())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = redis::Client::open(self.url().as_str()) {
                if let Ok(mut con) = c.get_connection_with_timeout(Duration::from_millis(200)) {
                    if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn node(r: &Redis, id: &str, extra: &str) -> (tempdir::TempDir, Context) {
    let (d, p) = with_tail(format!("\n[replay]\nenabled = true\n{extra}\n[fleet]\nredis_url = \"{}\"\nnode_id = \"{id}\"\nkey_prefix = \"t{}:\"\n", r.url(), r.port));
    let c = Context::new(
        Path::new(&p),
        Some(Arc::new(Shared::new_anonymous().unwrap())),
    )
    .unwrap();
    (d, c)
}

fn a_barred(c: &Context) -> bool {
    let s: serde_json::Value = serde_json::from_str(&c.stats_json()).unwrap();
    s["barred"].as_array().unwrap().iter().any(|v| v == A)
}

fn fleet_store(c: &Context) -> String {
    let s: serde_json::Value = serde_json::from_str(&c.stats_json()).unwrap();
    s["fleet"]["store"].as_str().unwrap_or("").to_owned()
}

/// Tick `c` every 250 ms until `f` holds; how long it took.
fn tick_until(c: &Context, limit: Duration, f: impl Fn(&Context) -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        c.tick(now());
        if f(c) {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

static LOG: std::sync::Mutex<Vec<(i32, String)>> = std::sync::Mutex::new(Vec::new());

fn logged(level: i32, text: &str) -> usize {
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|(l, m)| *l == level && m.contains(text))
        .count()
}

#[test]
fn fleet_barring_replay_outage_and_resync() {
    let Some(mut r) = Redis::start() else { return };
    wic_tna::log::set_sink(Some(Box::new(|l, m| {
        LOG.lock().unwrap().push((l, m.to_owned()))
    })));
    let (_d1, n1) = node(&r, "node-1", "");
    let (_d2, n2) = node(&r, "node-2", "");
    n1.tick(now());
    n2.tick(now());
    assert_eq!(fleet_store(&n2), "up");

    // Barring on node 1 reaches node 2 through its refresher within 1 s.
    n1.set_barred(A, true).unwrap();
    let took = tick_until(&n2, Duration::from_secs(1), a_barred)
        .expect("barring did not reach node 2 within 1 s");
    assert!(took <= Duration::from_secs(1), "{took:?}");
    let t = now();
    assert_eq!(
        vb(&n2, &tok_jti(Some("x1"), 600), Some("c"), t).reason,
        Reason::IssuerBarred
    );
    assert_eq!(
        vb(&n2, &token_b("b-1"), Some("c"), t).reason,
        Reason::Ok,
        "another issuer is untouched"
    );
    n1.set_barred(A, false).unwrap();
    tick_until(&n2, Duration::from_secs(1), |c| !a_barred(c))
        .expect("unbarring did not reach node 2 within 1 s");

    // Replay across nodes: node 2 sees node 1's binding, even for the same
    // binding text (bindings are per node: $conid 5 on node 1 is not $conid
    // 5 on node 2).
    let tok = tok_jti(Some("fleet-jti"), 600);
    assert_eq!(vb(&n1, &tok, Some("conn-5"), t).reason, Reason::Ok);
    assert_eq!(
        vb(&n2, &tok, Some("conn-5"), t).reason,
        Reason::TokenReplayed
    );
    assert_eq!(
        vb(&n2, &tok, Some("conn-9"), t).reason,
        Reason::TokenReplayed
    );
    assert_eq!(
        vb(&n1, &tok, Some("conn-5"), t + 60).reason,
        Reason::Ok,
        "refresh on the owning node"
    );
    // The store holds hashes, not tokens.
    let mut con = redis::Client::open(r.url().as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("t{}:replay:", r.port))),
        "{keys:?}"
    );
    assert!(keys.iter().all(|k| !k.contains("fleet-jti")), "{keys:?}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(keys.iter().find(|k| k.contains(":replay:")).unwrap())
        .query(&mut con)
        .unwrap();
    assert!(ttl > 0 && ttl <= 631_000, "{ttl}");
    drop(con);

    // Bar again, then lose the store: node 2 keeps the last barring, says so
    // in its stats, and first uses fail closed (default store_unavailable).
    let tok_b = token_b("b-2");
    assert_eq!(vb(&n1, &tok_b, Some("conn-6"), t).reason, Reason::Ok);
    n1.set_barred(A, true).unwrap();
    tick_until(&n2, Duration::from_secs(1), a_barred).expect("barring did not reach node 2");
    r.kill();
    tick_until(&n2, Duration::from_secs(3), |c| fleet_store(c) == "down")
        .expect("stats do not say the store is down");
    for _ in 0..6 {
        n2.tick(now());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(a_barred(&n2), "barring lost with the store");
    // One warning for the whole outage, not one per tick.
    assert_eq!(
        logged(wic_tna::log::WARN, "keeping the last known barring"),
        1
    );
    assert_eq!(
        vb(&n2, &tok_jti(Some("x2"), 600), Some("c"), now()).reason,
        Reason::IssuerBarred
    );
    let o = vb(&n1, &token_b("b-3"), Some("new-conn"), now());
    assert_eq!(
        (o.reason, o.sip_status),
        (Reason::InternalError, 500),
        "first use without the store fails closed"
    );
    assert_eq!(
        vb(&n1, &tok_b, Some("conn-6"), now()).reason,
        Reason::Ok,
        "a refresh known here needs no store"
    );
    // Setting barring without the store: in force here, and the caller is told.
    let e = n1.set_barred(B, true).unwrap_err();
    assert!(e.contains("fleet store"), "{e}");
    n1.set_barred(B, false).unwrap_err();

    // The store is back (empty: it kept nothing): nodes resync, and a new
    // change reaches everyone.
    r.up();
    tick_until(&n2, Duration::from_secs(3), |c| fleet_store(c) == "up")
        .expect("node 2 did not see the store back");
    for _ in 0..3 {
        n2.tick(now());
    }
    assert_eq!(
        logged(
            wic_tna::log::INFO,
            "reachable again; barring resynchronised"
        ),
        1
    );
    std::thread::sleep(Duration::from_millis(1100)); // node 1's own retry pause
    n1.set_barred(A, false).unwrap();
    tick_until(&n2, Duration::from_secs(1), |c| !a_barred(c)).expect("node 2 did not resync");
}

#[test]
fn store_unavailable_local_decides_on_this_node() {
    let Some(mut r) = Redis::start() else { return };
    let (_d1, n1) = node(&r, "node-1", "store_unavailable = \"local\"");
    r.kill();
    let t = now();
    let tok = tok_jti(Some("local-jti"), 600);
    assert_eq!(vb(&n1, &tok, Some("conn-1"), t).reason, Reason::Ok);
    assert_eq!(
        vb(&n1, &tok, Some("conn-2"), t).reason,
        Reason::TokenReplayed,
        "the local table still works"
    );
}

#[test]
fn fleet_config_errors_name_the_field() {
    let (_d, p) = with_tail("\n[fleet]\nredis_url = \"http://x\"\n".into());
    let e = Context::new(&p, None)
        .err()
        .expect("bad url refused")
        .to_string();
    assert!(e.contains("fleet.redis_url"), "{e}");
    let (_d, p) =
        with_tail("\n[fleet]\nredis_url = \"redis://127.0.0.1:1/0\"\ntimeout_ms = 0\n".into());
    let e = Context::new(&p, None)
        .err()
        .expect("zero timeout refused")
        .to_string();
    assert!(e.contains("fleet.timeout_ms"), "{e}");
}

#[test]
fn racing_first_uses_in_two_processes_bind_once() {
    // Two forked workers present the same new token from different
    // connections at the same moment, 200 times: exactly one wins each time.
    let s = Shared::new_anonymous().unwrap();
    for round in 0..200u64 {
        let key = [round.wrapping_mul(0x9e37_79b9_7f4a_7c15), round];
        let mut pids = Vec::new();
        let go = s.reload_gen();
        for who in 1..=2u64 {
            // SAFETY: the child only touches the shared atomics and exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                // Start together: wait for the parent's signal.
                let mut spins = 0u64;
                while s.reload_gen() == go && spins < 1_000_000_000 {
                    std::hint::spin_loop();
                    spins += 1;
                }
                let v = replay::check(s.replay_table(), &key, &[who, who], 1000, 100);
                unsafe {
                    libc::_exit(if v == Local::First {
                        10
                    } else if v == Local::Other {
                        11
                    } else {
                        12
                    })
                };
            }
            pids.push(pid);
        }
        s.bump_reload(0); // the start signal for the racers
        let mut codes = Vec::new();
        for pid in pids {
            let mut st = 0;
            unsafe { libc::waitpid(pid, &mut st, 0) };
            codes.push(libc::WEXITSTATUS(st));
        }
        codes.sort();
        assert_eq!(codes, vec![10, 11], "round {round}");
    }
}

// ------------------------------------------------------- store host names

static HUNG_LOOKUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A DNS outage for `hung-redis.invalid` (the lookup hangs 1.5 s, then
/// fails); other names go to the system resolver.
fn resolve_hook(host: &str) -> Option<std::io::Result<Vec<std::net::IpAddr>>> {
    if host != "hung-redis.invalid" {
        return None;
    }
    HUNG_LOOKUPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    Some(Err(std::io::Error::other("simulated DNS outage")))
}

/// The store's host name is resolved within `connect_timeout_ms` (the redis
/// crate would call getaddrinfo itself, unbounded, in the SIP worker), and
/// a name with several addresses (localhost: ::1 and 127.0.0.1, the store
/// listening on 127.0.0.1 only) gets each tried.
#[test]
fn store_host_name_resolution_is_bounded_by_connect_timeout() {
    wic_tna::dns::set_resolve_hook(resolve_hook);
    // By name, first (the process's store connection waits RETRY_AFTER
    // after a failure, which the second part causes).
    match Redis::start() {
        Some(r) if localhost_in_etc_hosts() => {
            let (_d, p) = with_tail(format!(
                "\n[replay]\nenabled = true\nstore_unavailable = \"reject\"\n[fleet]\nredis_url = \"redis://localhost:{}/0\"\nnode_id = \"n\"\nkey_prefix = \"dns{}:\"\n",
                r.port, r.port
            ));
            let c = Context::new(
                Path::new(&p),
                Some(Arc::new(Shared::new_anonymous().unwrap())),
            )
            .unwrap();
            let tok = tok_jti(Some("dns-jti-2"), 600);
            assert_eq!(vb(&c, &tok, Some("conn-1"), now()).reason, Reason::Ok);
            assert_eq!(
                vb(&c, &tok, Some("conn-2"), now()).reason,
                Reason::TokenReplayed,
                "the store by name is in use"
            );
        }
        Some(_) => eprintln!(
            "localhost is not in /etc/hosts; the by-name part is skipped (no DNS query is sent)"
        ),
        None => {}
    }
    // A DNS outage: the request fails closed within connect_timeout_ms.
    let (_d, p) = with_tail(
        "\n[replay]\nenabled = true\nstore_unavailable = \"reject\"\n[fleet]\nredis_url = \"redis://hung-redis.invalid:6379/0\"\nnode_id = \"n\"\nconnect_timeout_ms = 300\n".into(),
    );
    let c = Context::new(
        Path::new(&p),
        Some(Arc::new(Shared::new_anonymous().unwrap())),
    )
    .unwrap();
    let start = Instant::now();
    let o = vb(&c, &tok_jti(Some("dns-jti"), 600), Some("conn-1"), now());
    let took = start.elapsed();
    assert_eq!(
        (o.reason, o.sip_status),
        (Reason::InternalError, 500),
        "store unavailable, reject: fails closed"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1000),
        "took {took:?}"
    );
    assert_eq!(
        HUNG_LOOKUPS.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "resolved through wic_tna::dns"
    );
}
