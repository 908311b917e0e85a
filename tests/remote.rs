//! Remote trust: key sets by URL and RFC 7662 introspection, against real
//! HTTP servers on 127.0.0.1 run by the test (threads in the test only; the
//! library starts none). Time is driven through the `now` arguments.

mod common;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::tempdir::TempDir;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wic_tna::keys::Alg;
use wic_tna::mint::{mint, MintRequest};
use wic_tna::shared::Shared;
use wic_tna::{Config, Context, Reason};

// ---------------------------------------------------------------- server

#[derive(Clone, Debug, Default)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
enum Resp {
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Sleep, then reply.
    Slow(Duration, Box<Resp>),
    /// These bytes as the whole response, then close.
    Raw(Vec<u8>),
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Resp {
    Resp::Reply {
        status,
        headers: headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        body: body.into(),
    }
}

type Handler = Box<dyn Fn(&Req) -> Resp + Send>;

struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
    handler: Arc<Mutex<Handler>>,
    requests: Arc<Mutex<Vec<Req>>>,
}

impl Server {
    fn start(h: impl Fn(&Req) -> Resp + Send + 'static) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Mutex<Handler>> = Arc::new(Mutex::new(Box::new(h)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (h2, hd2, r2) = (hits.clone(), handler.clone(), requests.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let (h3, hd3, r3) = (h2.clone(), hd2.clone(), r2.clone());
                std::thread::spawn(move || serve(s, &h3, &hd3, &r3));
            }
        });
        Server {
            port,
            hits,
            handler,
            requests,
        }
    }
    fn set(&self, h: impl Fn(&Req) -> Resp + Send + 'static) {
        *self.handler.lock().unwrap() = Box::new(h);
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    fn last(&self) -> Req {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn serve(
    mut s: TcpStream,
    hits: &AtomicUsize,
    handler: &Mutex<Handler>,
    requests: &Mutex<Vec<Req>>,
) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or("").split(' ');
    let method = start.next().unwrap_or("").to_string();
    let path = start.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let req = Req {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    };
    hits.fetch_add(1, Ordering::SeqCst);
    requests.lock().unwrap().push(req.clone());
    let mut resp = (handler.lock().unwrap())(&req);
    loop {
        match resp {
            Resp::Slow(d, r) => {
                std::thread::sleep(d);
                resp = *r;
            }
            Resp::Raw(bytes) => {
                let _ = s.write_all(&bytes);
                return;
            }
            Resp::Reply {
                status,
                headers,
                body,
            } => {
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let _ = s.write_all(out.as_bytes());
                let _ = s.write_all(&body);
                return;
            }
        }
    }
}

// ---------------------------------------------------------------- keys, tokens

const R: &str = "https://remote.example";
const AS: &str = "https://as.example";
const IMPI: &str = "alice@socialnet.ims.example.net";
const IMPU: &str = "sip:alice@socialnet.ims.example.net";

fn secret(kid: &str) -> Vec<u8> {
    format!("secret-of-{kid}-0123456789abcdef0123456789abcdef").into_bytes()
}

fn jwk(kid: &str) -> String {
    format!(
        r#"{{"kty":"oct","kid":"{kid}","k":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(secret(kid))
    )
}

fn jwks(kids: &[&str]) -> String {
    format!(
        r#"{{"keys":[{}]}}"#,
        kids.iter().map(|k| jwk(k)).collect::<Vec<_>>().join(",")
    )
}

fn token(kid: &str) -> String {
    token_of(R, kid)
}

fn token_of(iss: &str, kid: &str) -> String {
    let t = now();
    let r = MintRequest {
        alg: Alg::HS256,
        kid: Some(kid.into()),
        typ: "at+jwt".into(),
        iss: iss.into(),
        aud: "ims.example.net".into(),
        scope: "webrtc-ims-client-access-to-ims".into(),
        impi: IMPI.into(),
        impus: vec![IMPU.into()],
        sub: None,
        jti: None,
        iat: t,
        nbf: None,
        exp: t + 3000,
    };
    mint(&r, &secret(kid)).unwrap()
}

fn verify(c: &Context, tok: &str, at: i64) -> wic_tna::Outcome {
    c.verify(
        format!("Bearer {tok}").as_bytes(),
        Some(IMPU.as_bytes()),
        None,
        at,
    )
}

struct Setup {
    dir: TempDir,
    path: PathBuf,
}

/// A configuration with one issuer R whose keys come from `jwks_url`
/// (`key_extra` lines added to its key), and optionally the introspection
/// issuer AS (`intro` lines added to its [issuer.introspection]).
fn setup(jwks_url: Option<&str>, key_extra: &str, intro: Option<(&str, &str)>) -> Setup {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("client.secret"), "s3cr:et\n").unwrap();
    let mut t = format!(
        r#"home_realm = "ims.example.net"
cache_dir = "{cache}"
leeway = 5
"#,
        cache = dir.path().join("cache").display()
    );
    if let Some(u) = jwks_url {
        t.push_str(&format!(
            r#"
[[issuer]]
iss = "{R}"
max_token_lifetime = 3600
impi_patterns = ["*@socialnet.ims.example.net"]
impu_patterns = ["sip:*@socialnet.ims.example.net"]

  [[issuer.key]]
  jwks_url = "{u}"
  algorithms = ["HS256"]
{key_extra}
"#
        ));
    }
    if let Some((endpoint, extra)) = intro {
        t.push_str(&format!(
            r#"
[[issuer]]
iss = "{AS}"
max_token_lifetime = 3600
impi_patterns = ["*@socialnet.ims.example.net"]
impu_patterns = ["sip:*@socialnet.ims.example.net"]

  [issuer.introspection]
  endpoint = "{endpoint}"
  client_id = "ep-cscf"
  client_secret_file = "client.secret"
{extra}
"#
        ));
    }
    let path = dir.path().join("wic-tna.toml");
    std::fs::write(&path, t).unwrap();
    Setup { dir, path }
}

fn jwks_server(kids: &'static [&'static str], cache_control: &'static str) -> Server {
    Server::start(move |_| {
        reply(
            200,
            &[
                ("Cache-Control", cache_control),
                ("Content-Type", "application/json"),
            ],
            jwks(kids),
        )
    })
}

fn stat(c: &Context, iss: &str, name: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&c.stats_json()).unwrap();
    v["remote"][iss][name].as_u64().unwrap_or(0)
}

// ---------------------------------------------------------------- JWKS by URL

/// `wic-tna refresh` with `cache_dir` and no `state_file` (which the README
/// says is enough for a `jwks_url`): once, it fetches into the cache that
/// the next start adopts; `--every` is refused with the reason, since no
/// running process would see what it fetches.
#[test]
fn cli_refresh_without_state_file_fills_the_cache_once() {
    let bin = env!("CARGO_BIN_EXE_wic-tna");
    let srv = jwks_server(&["r1"], "max-age=600");
    let s = setup(Some(&srv.url("/jwks")), "", None);
    let out = std::process::Command::new(bin)
        .args(["refresh", "--config", s.path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no state_file"), "{err}");
    assert_eq!(srv.hits(), 1);
    // A new process (the proxy's next start) adopts the cache: its first
    // check passes with the endpoint failing.
    srv.set(|_| reply(503, &[], "down"));
    let c = Context::new(&s.path, None).unwrap();
    let t = now();
    let rep = c.tick(t);
    assert!(
        rep.published && rep.failed,
        "adopted, then the fetch failed"
    );
    assert_eq!(verify(&c, &token("r1"), t).reason, Reason::Ok);
    assert_eq!(srv.hits(), 2);

    let out = std::process::Command::new(bin)
        .args([
            "refresh",
            "--config",
            s.path.to_str().unwrap(),
            "--every",
            "1000",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--every needs the configuration's state_file"),
        "{err}"
    );
    assert_eq!(srv.hits(), 2, "nothing fetched when refused");
}

#[test]
fn fetched_keys_are_used_and_unavailable_before() {
    let srv = jwks_server(&["r1"], "max-age=600");
    let s = setup(Some(&srv.url("/jwks")), "", None);
    let c = Context::new(&s.path, None).unwrap();
    let t = now();
    // Start-up: nothing fetched yet, no fetch in the request path: 500.
    let o = verify(&c, &token("r1"), t);
    assert_eq!((o.reason, o.sip_status), (Reason::KeysUnavailable, 500));
    assert_eq!(srv.hits(), 0, "a worker never fetches");
    let rep = c.tick(t);
    assert!(rep.published && !rep.failed);
    assert_eq!(srv.hits(), 1);
    let o = verify(&c, &token("r1"), t);
    assert_eq!(o.reason, Reason::Ok);
    assert!(o.tna_header.unwrap().contains("auth-done"));
    // Not due again before max-age.
    c.tick(t + 10);
    assert_eq!(srv.hits(), 1);
    assert_eq!(stat(&c, R, "jwks_fetch_ok"), 1);
    assert_eq!(stat(&c, R, "jwks_generation"), 1);
    // Another key of the set is not made up: unknown kid.
    assert_eq!(verify(&c, &token("zz"), t).reason, Reason::UnknownKey);
    // The cache file exists, written atomically (no temp file left).
    let files: Vec<_> = std::fs::read_dir(s.dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn max_age_is_clamped_to_min_and_max_refresh() {
    let srv = jwks_server(&["r1"], "public, max-age=2");
    let s = setup(
        Some(&srv.url("/jwks")),
        "  min_refresh = 10\n  max_refresh = 50\n",
        None,
    );
    let c = Context::new(&s.path, None).unwrap();
    let t = now();
    c.tick(t);
    assert_eq!(srv.hits(), 1);
    c.tick(t + 5); // max-age 2 < min_refresh 10: not yet
    assert_eq!(srv.hits(), 1);
    c.tick(t + 10);
    assert_eq!(srv.hits(), 2);
    srv.set(|_| reply(200, &[("Cache-Control", "max-age=100000")], jwks(&["r1"])));
    c.tick(t + 20);
    assert_eq!(srv.hits(), 3);
    c.tick(t + 69); // clamped to max_refresh 50
    assert_eq!(srv.hits(), 3);
    c.tick(t + 70);
    assert_eq!(srv.hits(), 4);
}

#[test]
fn etag_gives_304_and_keeps_the_generation() {
    let srv = Server::start(|r| {
        if r.header("If-None-Match") == Some("\"v1\"") {
            reply(
                304,
                &[("ETag", "\"v1\""), ("Cache-Control", "max-age=60")],
                "",
            )
        } else {
            reply(
                200,
                &[("ETag", "\"v1\""), ("Cache-Control", "max-age=60")],
                jwks(&["r1"]),
            )
        }
    });
    let s = setup(Some(&srv.url("/jwks")), "", None);
    let c = Context::new(&s.path, None).unwrap();
    let t = now();
    c.tick(t);
    assert_eq!(srv.last().header("If-None-Match"), None);
    c.tick(t + 60);
    assert_eq!(srv.hits(), 2);
    assert_eq!(srv.last().header("If-None-Match"), Some("\"v1\""));
    assert_eq!(stat(&c, R, "jwks_not_modified"), 1);
    assert_eq!(
        stat(&c, R, "jwks_generation"),
        1,
        "304 publishes nothing new"
    );
    assert_eq!(
        stat(&c, R, "jwks_fetched_at"),
        (t + 60) as u64,
        "304 confirms the set"
    );
    assert_eq!(verify(&c, &token("r1"), t + 60).reason, Reason::Ok);
}

#[test]
fn endpoint_down_keeps_stale_keys_up_to_max_stale_then_fails_closed() {
    let srv = jwks_server(&["r1"], "max-age=10");
    let s = setup(
        Some(&srv.url("/jwks")),
        "  min_refresh = 10\n  max_stale = 100\n",
        None,
    );
    let c = Context::new(&s.path, None).unwrap();
    let t = now();
    c.tick(t);
    srv.set(|_| reply(503, &[], "down"));
    for dt in [10, 20, 50, 90] {
        let rep = c.tick(t + dt);
        assert!(rep.failed && !rep.published);
    }
    assert_eq!(srv.hits(), 5);
    assert_eq!(
        verify(&c, &token("r1"), t + 100).reason,
        Reason::Ok,
        "stale but within max_stale"
    );
    let o = verify(&c, &token("r1"), t + 101);
    assert_eq!(
        (o.reason, o.sip_status),
        (Reason::KeysUnavailable, 500),
        "fail closed after max_stale"
    );
    assert!(stat(&c, R, "jwks_fetch_failed") >= 4);
    // Back: fetched again, accepted again.
    srv.set(|_| reply(200, &[], jwks(&["r1"])));
    c.tick(t + 110);
    assert_eq!(verify(&c, &token("r1"), t + 110).reason, Reason::Ok);
}

#[test]
fn garbage_oversized_slow_or_keyless_answers_never_replace_good_keys() {
    let srv = jwks_server(&["r1"], "max-age=1");
    let s = setup(
        Some(&srv.url("/jwks")),
        "  min_refresh = 1\n  timeout_ms = 300\n  max_size = 4096\n",
        None,
    );
    let c = Context::new(&s.path, None).unwrap();
    let t = now();
    c.tick(t);
    assert_eq!(verify(&c, &token("r1"), t).reason, Reason::Ok);
    let big = jwks(&["r2"]).replace(
        "{\"keys\"",
        &format!("{{\"pad\":\"{}\",\"keys\"", "x".repeat(5000)),
    );
    let answers: Vec<(&str, Resp)> = vec![
        ("garbage", reply(200, &[], "<html>not json")),
        (
            "no usable key",
            reply(
                200,
                &[],
                r#"{"keys":[{"kty":"oct","kid":"r2","k":"c2hvcnQ"}]}"#,
            ),
        ),
        ("empty set", reply(200, &[], r#"{"keys":[]}"#)),
        ("oversized", reply(200, &[], big)),
        (
            "slow",
            Resp::Slow(
                Duration::from_millis(1500),
                Box::new(reply(200, &[], jwks(&["r2"]))),
            ),
        ),
        ("server error", reply(500, &[], jwks(&["r2"]))),
    ];
    for (i, (what, a)) in answers.into_iter().enumerate() {
        srv.set(move |_| a.clone());
        let at = t + 2 * (i as i64 + 1);
        let start = Instant::now();
        let rep = c.tick(at);
        assert!(
            start.elapsed() < Duration::from_millis(1000),
            "{what}: the fetch is bounded by timeout_ms"
        );
        assert!(rep.failed && !rep.published, "{what}");
        assert_eq!(stat(&c, R, "jwks_generation"), 1, "{what}");
        assert_eq!(
            verify(&c, &token("r1"), at).reason,
            Reason::Ok,
            "{what}: the good set stays"
        );
        assert_eq!(
            verify(&c, &token("r2"), at).reason,
            Reason::UnknownKey,
            "{what}"
        );
    }
    assert!(stat(&c, R, "jwks_rejected") >= 3);
}

#[test]
fn unknown_kid_triggers_at_most_one_rate_limited_refetch() {
    let srv = jwks_server(&["r1"], "max-age=3600");
    let s = setup(Some(&srv.url("/jwks")), "  refetch_interval = 30\n", None);
    let c = Context::new(&s.path, None).unwrap();
    let t = now();
    c.tick(t);
    assert_eq!(srv.hits(), 1);
    // The issuer rotates: r2 is served, the refresher does not know yet.
    srv.set(|_| {
        reply(
            200,
            &[("Cache-Control", "max-age=3600")],
            jwks(&["r1", "r2"]),
        )
    });
    for _ in 0..5 {
        let start = Instant::now();
        assert_eq!(
            verify(&c, &token("r2"), t + 1).reason,
            Reason::UnknownKey,
            "rejected now"
        );
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "the worker never blocks"
        );
    }
    assert_eq!(srv.hits(), 1, "workers never fetch");
    c.tick(t + 1);
    assert_eq!(srv.hits(), 2, "exactly one re-fetch for many unknown kids");
    assert_eq!(verify(&c, &token("r2"), t + 1).reason, Reason::Ok);
    // More unknown kids within refetch_interval: no fetch.
    for dt in 2..20 {
        assert_eq!(verify(&c, &token("r9"), t + dt).reason, Reason::UnknownKey);
        c.tick(t + dt);
    }
    assert_eq!(srv.hits(), 2, "rate-limited");
    c.tick(t + 31);
    assert_eq!(srv.hits(), 3, "one re-fetch once the interval passed");
    c.tick(t + 32);
    assert_eq!(srv.hits(), 3);
    assert_eq!(stat(&c, R, "jwks_refetch_unknown_kid"), 2);
}

#[test]
fn key_rotation_through_the_url() {
    let srv = jwks_server(&["r1"], "max-age=60");
    let s = setup(Some(&srv.url("/jwks")), "", None);
    let c = Context::new(&s.path, None).unwrap();
    let t = now();
    c.tick(t);
    srv.set(|_| reply(200, &[("Cache-Control", "max-age=60")], jwks(&["r2"])));
    c.tick(t + 30);
    assert_eq!(
        verify(&c, &token("r2"), t + 30).reason,
        Reason::UnknownKey,
        "not before max-age"
    );
    c.tick(t + 60);
    assert_eq!(verify(&c, &token("r2"), t + 60).reason, Reason::Ok);
    assert_eq!(
        verify(&c, &token("r1"), t + 60).reason,
        Reason::UnknownKey,
        "the old key is gone"
    );
    assert_eq!(stat(&c, R, "jwks_generation"), 2);
}

/// A one-off refresh (a fresh context on the same shared state, as
/// `wic-tna refresh` is) that fetches the set already published confirms
/// it: no new generation, so the workers keep their parsed keys and their
/// verified-token caches.
#[test]
fn the_same_set_fetched_again_publishes_nothing_new() {
    let srv = jwks_server(&["r1"], "max-age=60");
    let s = setup(Some(&srv.url("/jwks")), "", None);
    let shared = Arc::new(Shared::new_anonymous().unwrap());
    let refresher = Context::new(&s.path, Some(shared.clone())).unwrap();
    let t = now();
    assert!(refresher.tick(t).published);
    let one_off = Context::new(&s.path, Some(shared.clone())).unwrap();
    let rep = one_off.tick(t + 5);
    assert_eq!(srv.hits(), 2, "fetched again (no ETag known)");
    assert!(!rep.published && !rep.failed, "{rep:?}");
    assert_eq!(stat(&one_off, R, "jwks_generation"), 1);
    assert_eq!(
        stat(&one_off, R, "jwks_fetched_at"),
        (t + 5) as u64,
        "confirmed"
    );
    // A changed set is published.
    srv.set(|_| reply(200, &[("Cache-Control", "max-age=60")], jwks(&["r2"])));
    let again = Context::new(&s.path, Some(shared.clone())).unwrap();
    assert!(again.tick(t + 6).published);
    assert_eq!(stat(&again, R, "jwks_generation"), 2);
}

// ---------------------------------------------------------------- discovery

/// An authorization server on loopback serving its metadata (`meta`, a
/// JSON text with `{iss}` for the issuer) at the OpenID Connect location
/// only (the RFC 8414 one answers 404), and key sets at /k1 and /k2.
fn metadata_server(meta: Arc<Mutex<String>>) -> Server {
    let srv = Server::start(|_| reply(500, &[], ""));
    let iss = srv.url("");
    srv.set(move |r| match r.path.as_str() {
        "/.well-known/openid-configuration" => reply(
            200,
            &[("Content-Type", "application/json")],
            meta.lock().unwrap().replace("{iss}", &iss),
        ),
        "/k1" => reply(200, &[("Cache-Control", "max-age=600")], jwks(&["r1"])),
        "/k2" => reply(200, &[("Cache-Control", "max-age=600")], jwks(&["r2"])),
        _ => reply(404, &[], "not here"),
    });
    srv
}

#[test]
fn discovery_falls_back_to_oidc_and_follows_a_moved_jwks_uri() {
    let meta = Arc::new(Mutex::new(
        r#"{"issuer":"{iss}","jwks_uri":"{iss}/k1","token_endpoint":"{iss}/token"}"#.to_owned(),
    ));
    let srv = metadata_server(meta.clone());
    let iss = srv.url("");
    let dir = TempDir::new();
    let path = dir.path().join("wic-tna.toml");
    std::fs::write(
        &path,
        format!(
            r#"home_realm = "ims.example.net"
cache_dir = "{cache}"

[[issuer]]
iss = "{iss}"
discovery = true
impi_patterns = ["*@socialnet.ims.example.net"]
impu_patterns = ["sip:*@socialnet.ims.example.net"]
  [[issuer.key]]
  algorithms = ["HS256"]
"#,
            cache = dir.path().join("cache").display()
        ),
    )
    .unwrap();
    let shared = Arc::new(Shared::new_anonymous().unwrap());
    let refresher = Context::new(&path, Some(shared.clone())).unwrap();
    let worker = Context::new(&path, Some(shared.clone())).unwrap();
    let t = now();
    assert_eq!(
        verify(&worker, &token_of(&iss, "r1"), t).reason,
        Reason::KeysUnavailable
    );
    let rep = refresher.tick(t);
    assert!(rep.published && !rep.failed, "{rep:?}");
    let paths = |srv: &Server| -> Vec<String> {
        srv.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.path.clone())
            .collect()
    };
    // RFC 8414's location first, then OpenID Connect's, then the key set.
    assert_eq!(
        paths(&srv),
        [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
            "/k1"
        ]
    );
    assert_eq!(verify(&worker, &token_of(&iss, "r1"), t).reason, Reason::Ok);
    assert_eq!(stat(&worker, &iss, "metadata_generation"), 1);
    // Not due again before an hour (no max-age): nothing fetched.
    refresher.tick(t + 1);
    assert_eq!(srv.hits(), 3);
    // Due, unchanged (a member the configuration does not use changed):
    // confirmed, nothing new published.
    *meta.lock().unwrap() =
        r#"{"issuer":"{iss}","jwks_uri":"{iss}/k1","token_endpoint":"{iss}/t2"}"#.to_owned();
    let rep = refresher.tick(t + 3600);
    assert!(!rep.published && !rep.failed, "{rep:?}");
    assert_eq!(stat(&worker, &iss, "metadata_generation"), 1);
    assert_eq!(
        stat(&worker, &iss, "metadata_fetched_at"),
        (t + 3600) as u64
    );
    // (Tokens are verified at `t`: they live 3000 s.)
    // The key set moved: the metadata and the new set are published, the
    // worker follows.
    *meta.lock().unwrap() = r#"{"issuer":"{iss}","jwks_uri":"{iss}/k2"}"#.to_owned();
    let rep = refresher.tick(t + 7200);
    assert!(rep.published && !rep.failed, "{rep:?}");
    assert_eq!(paths(&srv).last().map(String::as_str), Some("/k2"));
    assert_eq!(stat(&worker, &iss, "metadata_generation"), 2);
    assert_eq!(verify(&worker, &token_of(&iss, "r2"), t).reason, Reason::Ok);
    assert_eq!(
        verify(&worker, &token_of(&iss, "r1"), t).reason,
        Reason::UnknownKey
    );
    // Metadata without the jwks_uri the configuration needs, or for another
    // issuer: refused, the last good one kept.
    for bad in [
        r#"{"issuer":"{iss}"}"#,
        r#"{"issuer":"{iss}/","jwks_uri":"{iss}/k1"}"#,
        r#"{"issuer":"{iss}","jwks_uri":"ftp://x/k1"}"#,
        r#"{"issuer":"{iss}","issuer":"{iss}","jwks_uri":"{iss}/k1"}"#,
    ] {
        *meta.lock().unwrap() = bad.to_owned();
        let at = t + 7200 + 3600 * 2;
        let fresh = Context::new(&path, Some(shared.clone())).unwrap();
        let rep = fresh.tick(at);
        assert!(rep.failed && !rep.published, "{bad}: {rep:?}");
        assert_eq!(stat(&worker, &iss, "metadata_generation"), 2, "{bad}");
        assert_eq!(verify(&worker, &token_of(&iss, "r2"), t).reason, Reason::Ok);
    }
    assert_eq!(stat(&worker, &iss, "metadata_fetch_failed"), 4);
}

#[test]
fn workers_sharing_the_state_follow_the_refresher() {
    let srv = jwks_server(&["r1"], "max-age=60");
    let s = setup(Some(&srv.url("/jwks")), "", None);
    let shared = Arc::new(Shared::new_anonymous().unwrap());
    let refresher = Context::new(&s.path, Some(shared.clone())).unwrap();
    let w1 = Context::new(&s.path, Some(shared.clone())).unwrap();
    let w2 = Context::new(&s.path, Some(shared.clone())).unwrap();
    let t = now();
    assert_eq!(verify(&w1, &token("r1"), t).reason, Reason::KeysUnavailable);
    refresher.tick(t);
    assert_eq!(verify(&w1, &token("r1"), t).reason, Reason::Ok);
    assert_eq!(verify(&w2, &token("r1"), t).reason, Reason::Ok);
    srv.set(|_| reply(200, &[("Cache-Control", "max-age=60")], jwks(&["r2"])));
    // A worker's unknown kid reaches the refresher through the shared state.
    assert_eq!(verify(&w2, &token("r2"), t + 1).reason, Reason::UnknownKey);
    refresher.tick(t + 1);
    assert_eq!(srv.hits(), 2);
    assert_eq!(verify(&w1, &token("r2"), t + 1).reason, Reason::Ok);
    assert_eq!(verify(&w2, &token("r2"), t + 1).reason, Reason::Ok);
    assert_eq!(verify(&w1, &token("r1"), t + 1).reason, Reason::UnknownKey);
    assert_eq!(srv.hits(), 2, "only the refresher fetched");
}

#[test]
fn cache_file_of_a_previous_run_is_adopted_until_max_stale() {
    let srv = jwks_server(&["r1"], "max-age=60");
    let s = setup(Some(&srv.url("/jwks")), "  max_stale = 600\n", None);
    let t = now();
    {
        let c = Context::new(&s.path, None).unwrap();
        c.tick(t);
    }
    // Restart (new shared state) while the endpoint is down.
    srv.set(|_| reply(503, &[], ""));
    let c = Context::new(&s.path, None).unwrap();
    let rep = c.tick(t + 1);
    assert!(rep.published && rep.failed);
    assert_eq!(verify(&c, &token("r1"), t + 1).reason, Reason::Ok);
    // A restart after max_stale does not adopt it.
    let c = Context::new(&s.path, None).unwrap();
    c.tick(t + 700);
    assert_eq!(
        verify(&c, &token("r1"), t + 700).reason,
        Reason::KeysUnavailable
    );
}

#[test]
fn https_with_a_test_ca_works_and_an_unknown_ca_does_not() {
    // rustls test server on loopback with a certificate from a test CA made
    // here (aws-lc-rs has no certificate builder: use openssl if present).
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("openssl not found; skipped");
        return;
    }
    let d = TempDir::new();
    let p = |n: &str| d.path().join(n);
    let run = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .current_dir(d.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=wic-tna test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        p("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    let port = tls_server(&p("srv.pem"), &p("srv.key"), jwks(&["r1"]));
    let url = format!("https://127.0.0.1:{port}/jwks");
    let with_ca = |ca: Option<&Path>| {
        let s = setup(Some(&url), "", None);
        if let Some(ca) = ca {
            let t = std::fs::read_to_string(&s.path).unwrap();
            let t = t.replace(
                "max_token_lifetime = 3600\n",
                &format!(
                    "max_token_lifetime = 3600\nca_file = \"{}\"\n",
                    ca.display()
                ),
            );
            std::fs::write(&s.path, t).unwrap();
        }
        let c = Context::new(&s.path, None).unwrap();
        c.tick(now());
        (verify(&c, &token("r1"), now()).reason, s)
    };
    assert_eq!(with_ca(Some(&p("ca.pem"))).0, Reason::Ok);
    assert_eq!(
        with_ca(None).0,
        Reason::KeysUnavailable,
        "an unknown CA is refused"
    );
}

fn tls_server(cert: &Path, key: &Path, body: String) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let cfg = cfg.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

#[test]
fn configuration_rules_for_remote_keys() {
    let err = |jwks_url: &str, extra: &str| {
        let s = setup(Some(jwks_url), extra, None);
        Config::load(&s.path).err()
    };
    let e =
        err("http://wwsf.example/jwks", "").expect("plain http to a non-loopback host is refused");
    assert_eq!(e.field.as_deref(), Some("issuer[0].key[0].jwks_url"));
    assert_eq!(e.line, Some(12), "{e}");
    assert!(e.to_string().contains("wic-tna.toml:12"), "{e}");
    assert!(err("http://10.1.2.3/jwks", "").is_some());
    assert!(err("https://wwsf.example/jwks", "").is_none());
    let e = err(
        "https://wwsf.example/jwks",
        "  min_refresh = 100\n  max_refresh = 10\n",
    )
    .unwrap();
    assert_eq!(e.field.as_deref(), Some("issuer[0].key[0].max_refresh"));
    let e = err("https://wwsf.example/jwks", "  timeout_ms = 60000\n").unwrap();
    assert_eq!(e.field.as_deref(), Some("issuer[0].key[0].timeout_ms"));
    // Without cache_dir nor state_file, workers could not share the set.
    let s = setup(Some("https://wwsf.example/jwks"), "", None);
    let t = std::fs::read_to_string(&s.path).unwrap();
    let t: String = t
        .lines()
        .filter(|l| !l.starts_with("cache_dir"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&s.path, t).unwrap();
    let e = Config::load(&s.path).unwrap_err();
    assert!(e.message.contains("cache_dir"), "{e}");
    // Remote-only settings on a file key are refused.
    let (_d, p) = temp_config(|t| {
        t.replace(
            "kid = \"a-hs256\"\n",
            "kid = \"a-hs256\"\n  max_stale = 5\n",
        )
    });
    let e = Config::load(&p).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("issuer[0].key[0].max_stale"));
}

// ---------------------------------------------------------------- introspection

fn intro_answer(over: &str) -> String {
    let t = now();
    let mut m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&format!(
        r#"{{"active":true,"iss":"{AS}","aud":"ims.example.net","scope":"openid webrtc-ims-client-access-to-ims",
            "impi":"{IMPI}","impu":["{IMPU}"],"iat":{},"exp":{},"client_id":"wwsf"}}"#,
        t - 10,
        t + 600
    ))
    .unwrap();
    let o: serde_json::Map<String, serde_json::Value> = serde_json::from_str(over).unwrap();
    for (k, v) in o {
        if v.is_null() {
            m.remove(&k);
        } else {
            m.insert(k, v);
        }
    }
    serde_json::Value::Object(m).to_string()
}

fn intro_server(over: &'static str) -> Server {
    Server::start(move |_| {
        reply(
            200,
            &[("Content-Type", "application/json")],
            intro_answer(over),
        )
    })
}

fn intro_setup(srv: &Server, extra: &str) -> (Setup, Context) {
    let s = setup(None, "", Some((&srv.url("/introspect"), extra)));
    let c = Context::new(&s.path, None).unwrap();
    (s, c)
}

const REF: &str = "2YotnFZFEjr1zCsicMWpAA";

#[test]
fn introspection_active_token_is_accepted_with_credentials_sent() {
    let srv = intro_server("{}");
    let (_s, c) = intro_setup(&srv, "");
    let t = now();
    let o = verify(&c, REF, t);
    assert_eq!(o.reason, Reason::Ok, "{o:?}");
    assert_eq!(o.iss(), Some(AS));
    assert!(o
        .tna_header
        .unwrap()
        .contains("username=\"alice@socialnet.ims.example.net\""));
    assert!(o.granted_expires > 0 && o.granted_expires <= 600);
    let r = srv.last();
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(r.body.starts_with(&format!("token={REF}&")), "{}", r.body);
    // Client credentials, HTTP Basic, form-encoded first (RFC 6749 2.3.1).
    assert_eq!(
        r.header("Authorization"),
        Some(format!("Basic {}", STANDARD.encode("ep-cscf:s3cr%3Aet")).as_str())
    );
    assert_eq!(stat(&c, AS, "introspection_calls"), 1);
}

#[test]
fn introspection_claim_rules_apply_to_the_answer() {
    for (over, want) in [
        (r#"{"active":false}"#, Reason::InactiveToken),
        (r#"{"iss":"https://other.example"}"#, Reason::UnknownIssuer),
        (r#"{"iss":null}"#, Reason::UnknownIssuer),
        (r#"{"aud":"other.example.net"}"#, Reason::WrongAudience),
        (r#"{"scope":"openid"}"#, Reason::InsufficientScope),
        (
            r#"{"impi":"mallory@evil.example"}"#,
            Reason::ImpiOutsidePool,
        ),
        (
            r#"{"impu":["sip:alice@evil.example"]}"#,
            Reason::ImpuOutsidePool,
        ),
        (r#"{"exp":1000}"#, Reason::Expired),
        (r#"{"exp":null}"#, Reason::MissingClaim),
        (
            r#"{"impu":["sip:bob@socialnet.ims.example.net"]}"#,
            Reason::ToImpuNotInToken,
        ),
    ] {
        let srv = intro_server(over);
        let (_s, c) = intro_setup(&srv, "");
        let o = verify(&c, REF, now());
        assert_eq!(o.reason, want, "{over}");
        assert_ne!(o.sip_status, 200);
    }
    let srv = intro_server(r#"{"active":false}"#);
    let (_s, c) = intro_setup(&srv, "");
    assert_eq!(verify(&c, REF, now()).sip_status, 401);
    // Barring applies too.
    let srv = intro_server("{}");
    let (_s, c) = intro_setup(&srv, "");
    c.set_barred(AS, true).unwrap();
    assert_eq!(verify(&c, REF, now()).reason, Reason::IssuerBarred);
}

#[test]
fn introspection_unavailable_is_a_500_never_an_accept() {
    for (what, a) in [
        (
            "timeout",
            Resp::Slow(
                Duration::from_millis(1500),
                Box::new(reply(200, &[], intro_answer("{}"))),
            ),
        ),
        ("5xx", reply(503, &[], intro_answer("{}"))),
        ("401 to the client credentials", reply(401, &[], "")),
        ("garbage", reply(200, &[], "<html>")),
        ("no active member", reply(200, &[], r#"{"iss":"x"}"#)),
        (
            "active not a boolean",
            reply(200, &[], intro_answer(r#"{"active":"true"}"#)),
        ),
        (
            "duplicate member",
            reply(200, &[], r#"{"active":true,"active":true}"#),
        ),
        (
            "oversized",
            reply(
                200,
                &[],
                intro_answer(&format!(r#"{{"pad":"{}"}}"#, "x".repeat(100_000))),
            ),
        ),
    ] {
        let srv = Server::start(move |_| a.clone());
        let (_s, c) = intro_setup(&srv, "  timeout_ms = 300\n");
        let start = Instant::now();
        let o = verify(&c, REF, now());
        let took = start.elapsed();
        assert_eq!(
            (o.reason, o.sip_status),
            (Reason::IntrospectionUnavailable, 500),
            "{what}"
        );
        assert!(o.www_authenticate.is_none());
        assert!(took < Duration::from_millis(800), "{what}: took {took:?}");
    }
    // Nobody listening at all.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let s = setup(None, "", Some((&format!("http://127.0.0.1:{port}/x"), "")));
    let c = Context::new(&s.path, None).unwrap();
    assert_eq!(
        verify(&c, REF, now()).reason,
        Reason::IntrospectionUnavailable
    );
}

#[test]
fn introspection_positive_cache_never_past_exp_and_negative_cache_briefly() {
    let t = now();
    let srv =
        Server::start(move |_| reply(200, &[], intro_answer(&format!(r#"{{"exp":{}}}"#, t + 100))));
    // (About the caches, up to exp + leeway: without the rule on the
    // remaining lifetime of a registration; positive_ttl longer than the
    // token's life, so that exp is the bound.)
    let s = setup(
        None,
        "",
        Some((
            &srv.url("/introspect"),
            "  negative_ttl = 10\n  positive_ttl = 3600\n",
        )),
    );
    let text = std::fs::read_to_string(&s.path).unwrap();
    std::fs::write(&s.path, format!("min_registration_expires = 0\n{text}")).unwrap();
    let c = Context::new(&s.path, None).unwrap();
    for dt in [0, 1, 50, 99, 105] {
        assert_eq!(verify(&c, REF, t + dt).reason, Reason::Ok);
    }
    assert_eq!(srv.hits(), 1, "cached until exp (+ leeway)");
    assert_eq!(stat(&c, AS, "introspection_cache_hits"), 4);
    // Past exp + leeway: expired, known from the server's own answer (a
    // server asked again says only `active: false`, which would be named
    // inactive_token), so not asked again.
    srv.set(|_| reply(200, &[], r#"{"active":false}"#.to_string()));
    assert_eq!(verify(&c, REF, t + 106).reason, Reason::Expired);
    assert_eq!(srv.hits(), 1, "not asked again after exp");
    assert_eq!(stat(&c, AS, "introspection_cache_hits"), 5);
    // Forgotten then: asked again, the server's word.
    assert_eq!(verify(&c, REF, t + 107).reason, Reason::InactiveToken);
    assert_eq!(srv.hits(), 2);

    let srv = intro_server(r#"{"active":false}"#);
    let (_s, c) = intro_setup(&srv, "  negative_ttl = 10\n");
    for dt in [0, 3, 9] {
        assert_eq!(
            verify(&c, "other-token", t + dt).reason,
            Reason::InactiveToken
        );
    }
    assert_eq!(srv.hits(), 1, "negative answer cached");
    assert_eq!(
        verify(&c, "other-token", t + 10).reason,
        Reason::InactiveToken
    );
    assert_eq!(srv.hits(), 2, "only briefly");
}

/// Revocation at the authorization server is seen by a long-running
/// context within `positive_ttl` (default 60 s), however long the token
/// still has to live.
#[test]
fn introspection_revocation_is_seen_within_positive_ttl() {
    let t = now();
    let answer = intro_answer(&format!(r#"{{"exp":{}}}"#, t + 3000));
    let srv = Server::start(move |_| reply(200, &[], answer.clone()));
    for (extra, ttl) in [("", 60), ("  positive_ttl = 5\n", 5)] {
        let (_s, c) = intro_setup(&srv, extra);
        assert_eq!(verify(&c, REF, t).reason, Reason::Ok);
        let before = srv.hits();
        // Revoked now: the AS answers inactive from here on.
        srv.set(|_| reply(200, &[], r#"{"active":false}"#.to_string()));
        assert_eq!(
            verify(&c, REF, t + ttl - 1).reason,
            Reason::Ok,
            "cached answer, ttl {ttl}"
        );
        assert_eq!(srv.hits(), before, "no call within the ttl");
        assert_eq!(
            verify(&c, REF, t + ttl).reason,
            Reason::InactiveToken,
            "ttl {ttl}: asked again and refused"
        );
        assert_eq!(srv.hits(), before + 1);
        let answer = intro_answer(&format!(r#"{{"exp":{}}}"#, t + 3000));
        srv.set(move |_| reply(200, &[], answer.clone()));
    }
}

#[test]
fn introspection_circuit_breaker_bounds_calls_while_down() {
    let srv = Server::start(|_| reply(503, &[], ""));
    let (_s, c) = intro_setup(&srv, "  breaker_failures = 3\n  breaker_cooldown = 30\n");
    let t = now();
    for i in 0..50 {
        let start = Instant::now();
        let o = verify(&c, &format!("tok-{i}"), t);
        assert_eq!(o.reason, Reason::IntrospectionUnavailable);
        if i >= 3 {
            assert!(
                start.elapsed() < Duration::from_millis(20),
                "answered at once when open"
            );
        }
    }
    assert_eq!(srv.hits(), 3, "no calls while the breaker is open");
    assert_eq!(stat(&c, AS, "introspection_breaker_open"), 47);
    for dt in [10, 29] {
        verify(&c, "x", t + dt);
    }
    assert_eq!(srv.hits(), 3);
    // Cool-down over: one probe, still failing: open again.
    verify(&c, "x", t + 30);
    verify(&c, "y", t + 31);
    assert_eq!(srv.hits(), 4);
    // Endpoint back: the next probe closes it.
    srv.set(|_| reply(200, &[], intro_answer("{}")));
    assert_eq!(verify(&c, REF, t + 60).reason, Reason::Ok);
    assert_eq!(verify(&c, "fresh", t + 60).reason, Reason::Ok);
    assert_eq!(srv.hits(), 6);
    // Shared across processes: a second context on the same state sees it.
    srv.set(|_| reply(503, &[], ""));
    let shared = Arc::new(Shared::new_anonymous().unwrap());
    let s2 = setup(
        None,
        "",
        Some((
            &srv.url("/i"),
            "  breaker_failures = 2\n  breaker_cooldown = 30\n",
        )),
    );
    let w1 = Context::new(&s2.path, Some(shared.clone())).unwrap();
    let w2 = Context::new(&s2.path, Some(shared.clone())).unwrap();
    let before = srv.hits();
    verify(&w1, "a", t);
    verify(&w1, "b", t);
    verify(&w2, "c", t);
    assert_eq!(srv.hits() - before, 2, "w2 sees w1's open breaker");
}

#[test]
fn opaque_tokens_are_attributed_by_prefix_or_sole_endpoint_else_refused() {
    let srv = intro_server("{}");
    // Sole issuer with introspection, no prefix: opaque tokens go there; a
    // JWT-shaped token still takes the JWT path.
    let (_s, c) = intro_setup(&srv, "");
    assert_eq!(
        verify(&c, "abc.def.ghi", now()).reason,
        Reason::MalformedToken
    );
    assert_eq!(srv.hits(), 0);
    // With a prefix: only tokens with it.
    let (_s, c) = intro_setup(&srv, "  token_prefix = \"as-\"\n");
    assert_eq!(verify(&c, REF, now()).reason, Reason::MalformedToken);
    assert_eq!(srv.hits(), 0);
    assert_eq!(verify(&c, &format!("as-{REF}"), now()).reason, Reason::Ok);
    assert_eq!(srv.hits(), 1);
    // Two issuers without prefix: no opaque token can be attributed.
    let s = setup(None, "", Some((&srv.url("/i"), "")));
    let t = std::fs::read_to_string(&s.path).unwrap();
    let second = t[t.find("[[issuer]]").unwrap()..].replace(AS, "https://as2.example");
    std::fs::write(&s.path, format!("{t}\n{second}")).unwrap();
    let c = Context::new(&s.path, None).unwrap();
    assert_eq!(verify(&c, REF, now()).reason, Reason::MalformedToken);
    assert_eq!(srv.hits(), 1);
    // Overlapping prefixes are a configuration error.
    let s = setup(
        None,
        "",
        Some((&srv.url("/i"), "  token_prefix = \"as-\"\n")),
    );
    let t = std::fs::read_to_string(&s.path).unwrap();
    let second = t[t.find("[[issuer]]").unwrap()..]
        .replace(AS, "https://as2.example")
        .replace("\"as-\"", "\"as-2\"");
    std::fs::write(&s.path, format!("{t}\n{second}")).unwrap();
    let e = Config::load(&s.path).unwrap_err();
    assert_eq!(
        e.field.as_deref(),
        Some("issuer[1].introspection.token_prefix"),
        "{e}"
    );
    // Endpoint over plain http to a non-loopback host: refused at load.
    let s = setup(None, "", Some(("http://192.0.2.1/introspect", "")));
    let e = Config::load(&s.path).unwrap_err();
    assert_eq!(
        e.field.as_deref(),
        Some("issuer[0].introspection.endpoint"),
        "{e}"
    );
}

#[test]
fn http_framing_chunked_and_close_delimited_work_redirects_and_compression_do_not() {
    let srv = jwks_server(&["r1"], "max-age=1");
    let s = setup(Some(&srv.url("/jwks")), "  min_refresh = 1\n", None);
    let c = Context::new(&s.path, None).unwrap();
    let t = now();
    let body = jwks(&["r2"]);
    let (a, b) = body.split_at(10);
    let chunked = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: max-age=1\r\n\r\n{:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    srv.set(move |_| Resp::Raw(chunked.clone().into_bytes()));
    assert!(c.tick(t).published, "chunked body");
    assert_eq!(verify(&c, &token("r2"), t).reason, Reason::Ok);
    let close = format!("HTTP/1.0 200 OK\r\n\r\n{}", jwks(&["r3"]));
    srv.set(move |_| Resp::Raw(close.clone().into_bytes()));
    assert!(c.tick(t + 2).published, "body delimited by close");
    assert_eq!(verify(&c, &token("r3"), t + 2).reason, Reason::Ok);
    let target = srv.url("/jwks");
    for (what, raw) in [
        (
            "redirect",
            format!("HTTP/1.1 301 Moved\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n"),
        ),
        (
            "gzip",
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nxxxx"
                .to_string(),
        ),
        (
            "truncated",
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{}",
                jwks(&["r4"])
            ),
        ),
        ("not http", "SSH-2.0-OpenSSH\r\n\r\n".to_string()),
    ] {
        let before = srv.hits();
        srv.set(move |_| Resp::Raw(raw.clone().into_bytes()));
        // (the last good answer had no max-age: due again after 300 s)
        let rep = c.tick(t + 400 * before as i64);
        assert!(rep.failed && !rep.published, "{what}");
        assert_eq!(
            srv.hits(),
            before + 1,
            "{what}: one request, no redirect followed"
        );
        assert_eq!(
            verify(&c, &token("r3"), t + 10).reason,
            Reason::Ok,
            "{what}: good set kept"
        );
    }
}

// ---------------------------------------------------------------- host names

static HUNG_LOOKUPS: AtomicUsize = AtomicUsize::new(0);

/// A DNS outage for `hung-dns.invalid` (the lookup hangs 1.5 s, then
/// fails); other names go to the system resolver.
fn resolve_hook(host: &str) -> Option<std::io::Result<Vec<std::net::IpAddr>>> {
    if host != "hung-dns.invalid" {
        return None;
    }
    HUNG_LOOKUPS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    Some(Err(std::io::Error::other("simulated DNS outage")))
}

// The only test of this file that uses host names (the others use
// 127.0.0.1): the count of resolver threads is this test's.
#[test]
fn introspection_by_host_name_is_bounded_by_timeout_ms_cached_and_starts_one_thread_lazily() {
    wic_tna::dns::set_resolve_hook(resolve_hook);
    let logged = Arc::new(Mutex::new(Vec::<String>::new()));
    let l2 = logged.clone();
    wic_tna::log::set_sink(Some(Box::new(move |_, m: &str| {
        if m.contains("hung-dns.invalid") {
            l2.lock().unwrap().push(m.to_owned());
        }
    })));
    let srv = intro_server("{}");
    // Loading a configuration and making a context start no thread.
    let s = setup(
        None,
        "",
        Some((
            "https://hung-dns.invalid/introspect",
            "  timeout_ms = 300\n",
        )),
    );
    let c = Context::new(&s.path, None).unwrap();
    assert_eq!(
        wic_tna::dns::threads_started(),
        0,
        "no thread before the first lookup"
    );
    // The DNS server hangs: the request still fails within timeout_ms.
    for (i, tok) in ["ref-1", "ref-2"].iter().enumerate() {
        let start = Instant::now();
        let o = verify(&c, tok, now());
        let took = start.elapsed();
        assert_eq!(
            (o.reason, o.sip_status),
            (Reason::IntrospectionUnavailable, 500),
            "{i}"
        );
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(1000),
            "{i}: took {took:?}"
        );
    }
    assert_eq!(
        HUNG_LOOKUPS.load(Ordering::SeqCst),
        1,
        "one lookup in flight, not one per request"
    );
    let msgs = logged.lock().unwrap().clone();
    assert!(
        msgs.iter()
            .any(|m| m.contains("resolving hung-dns.invalid did not finish within 300 ms")),
        "{msgs:?}"
    );
    assert_eq!(wic_tna::dns::threads_started(), 1);
    // Once it failed, the failure is remembered briefly: answered at once.
    std::thread::sleep(Duration::from_millis(1400));
    let start = Instant::now();
    assert_eq!(
        verify(&c, "ref-3", now()).reason,
        Reason::IntrospectionUnavailable
    );
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(HUNG_LOOKUPS.load(Ordering::SeqCst), 1);
    assert!(logged
        .lock()
        .unwrap()
        .last()
        .is_some_and(|m| m.contains("simulated DNS outage")));
    wic_tna::log::set_sink(None);

    // A name that resolves: end to end through the same path.
    if !localhost_in_etc_hosts() {
        eprintln!("localhost is not in /etc/hosts; end-to-end part skipped (no DNS query is sent)");
        return;
    }
    let s = setup(
        None,
        "",
        Some((&format!("http://localhost:{}/introspect", srv.port), "")),
    );
    let c = Context::new(&s.path, None).unwrap();
    assert_eq!(verify(&c, REF, now()).reason, Reason::Ok);
    assert_eq!(verify(&c, "another-token", now()).reason, Reason::Ok);
    assert_eq!(srv.hits(), 2);
    assert_eq!(
        srv.last().header("Host"),
        Some(format!("localhost:{}", srv.port).as_str())
    );
    assert_eq!(
        wic_tna::dns::threads_started(),
        1,
        "still one thread per process"
    );
}
