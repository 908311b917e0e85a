//! The rules of issue 15 (items 2, 6, 7): the request entry point and the
//! WebSocket `Origin` checked per REGISTER, the least remaining lifetime of
//! a registration (no de-registration by the back door), the TNA header's
//! `realm` and `uri`, the CLI's notices, and the JWKS keys not meant for
//! verification.

mod common;
use common::*;
use wic_tna::keys::Alg;
use wic_tna::mint::{mint, MintRequest};
use wic_tna::{Config, Context, Outcome, Reason, Request};

const ORIGIN_A: &str = "https://webrtc.socialnet.example";
const ORIGIN_B: &str = "https://play.gamenet.example";
const IMPU_B: &str = "sip:bob@gamenet.ims.example.net";

fn ctx() -> Context {
    Context::new(&config_path(), None).unwrap()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A token of issuer B (its HMAC key), with `f` applied.
fn token_b(f: impl Fn(&mut MintRequest)) -> String {
    let t = now();
    let mut r = MintRequest {
        alg: Alg::HS256,
        kid: Some("b-hs256".into()),
        typ: "at+jwt".into(),
        iss: B.into(),
        aud: "ims.example.net".into(),
        scope: "webrtc-ims-client-access-to-ims".into(),
        impi: "bob@gamenet.ims.example.net".into(),
        impus: vec![IMPU_B.into()],
        sub: None,
        jti: None,
        iat: t,
        nbf: None,
        exp: t + 600,
    };
    f(&mut r);
    mint(&r, &key("issuer-b-hmac.secret")).unwrap()
}

/// A token of issuer A with `left` seconds to live at `t`.
fn token_left(t: i64, left: i64) -> String {
    bearer(&token_a(move |r| {
        r.iat = t - 100;
        r.exp = t + left;
    }))
}

fn stat(c: &Context, iss: &str, reason: &str) -> u64 {
    let s: serde_json::Value = serde_json::from_str(&c.stats_json()).unwrap();
    s["outcomes"][iss][reason].as_u64().unwrap_or(0)
}

/// The example configuration with top-level lines after
/// `max_registration_expires` and lines in issuer A's and B's sections.
fn config_with(
    top: &str,
    issuer_a: &str,
    issuer_b: &str,
) -> (common::tempdir::TempDir, std::path::PathBuf) {
    let (top, a, b) = (top.to_owned(), issuer_a.to_owned(), issuer_b.to_owned());
    temp_config(move |s| {
        let s = s.replacen(
            "max_registration_expires = 3600",
            &format!("max_registration_expires = 3600\n{top}"),
            1,
        );
        let s = s.replacen(
            &format!("origins = [\"{ORIGIN_A}\"]"),
            &format!("origins = [\"{ORIGIN_A}\"]\n{a}"),
            1,
        );
        s.replacen(
            &format!("origins = [\"{ORIGIN_B}\"]"),
            &format!("origins = [\"{ORIGIN_B}\"]\n{b}"),
            1,
        )
    })
}

fn assert_expired_with_challenge(o: &Outcome, what: &str) {
    assert_eq!((o.reason, o.sip_status), (Reason::Expired, 401), "{what}");
    let www = o.www_authenticate.as_deref().unwrap_or("");
    assert!(
        www.contains("error=\"invalid_token\"")
            && www.contains("error_description=\"the token has expired\""),
        "{what}: {www}"
    );
    assert!(
        o.tna_header.is_none() && o.verified.is_none() && o.granted_expires == 0,
        "{what}"
    );
    assert_eq!(o.iss(), Some(A), "{what}: counted on the issuer");
}

// --- min_registration_expires -------------------------------------------

#[test]
fn registration_needs_min_remaining_lifetime() {
    let c = ctx(); // min_registration_expires: default 60; leeway 30
    let t = now();
    let to = Some(IMPU_A.as_bytes());
    // 59 s left: any registration (no expiry given, a negative one, any
    // positive one) is refused, not granted 59 s.
    let tok = token_left(t, 59);
    for req in [None, Some(-1), Some(1), Some(59), Some(3600)] {
        assert_expired_with_challenge(
            &c.verify(tok.as_bytes(), to, req, t),
            &format!("59 s left, Expires {req:?}"),
        );
    }
    // 60 s left: the boundary is accepted; 61 s: granted at most 61.
    let o = c.verify(token_left(t, 60).as_bytes(), to, None, t);
    assert_eq!((o.reason, o.granted_expires), (Reason::Ok, 60));
    let tok = token_left(t, 61);
    let o = c.verify(tok.as_bytes(), to, Some(3600), t);
    assert_eq!(
        (o.reason, o.granted_expires, o.seconds_left),
        (Reason::Ok, 61, 61)
    );
    assert!(c.verify(tok.as_bytes(), to, Some(30), t).granted_expires == 30);
    // Expires: 0 with 10 s left: a de-registration, accepted, granted 0.
    let o = c.verify(token_left(t, 10).as_bytes(), to, Some(0), t);
    assert_eq!((o.reason, o.granted_expires), (Reason::Ok, 0));
    assert!(o.tna_header.is_some());
    // A refresh after exp but within the leeway: 401 expired with the
    // challenge (it used to be accepted with granted 0, which the proxy
    // forwarded as a de-registration); a de-registration still goes.
    let tok = token_left(t, -10);
    assert_expired_with_challenge(
        &c.verify(tok.as_bytes(), to, None, t),
        "refresh 10 s after exp",
    );
    assert_expired_with_challenge(
        &c.verify(tok.as_bytes(), to, Some(600), t),
        "refresh 10 s after exp, Expires 600",
    );
    let o = c.verify(tok.as_bytes(), to, Some(0), t);
    assert_eq!((o.reason, o.granted_expires), (Reason::Ok, 0));
    // Beyond the leeway even a de-registration is refused.
    assert_eq!(
        c.verify(token_left(t, -31).as_bytes(), to, Some(0), t)
            .reason,
        Reason::Expired
    );
    // A token verified (and cached) while it had time left is refused once
    // it has less left: the rule applies on a cache hit too.
    let tok = token_left(t, 100);
    assert!(c.verify(tok.as_bytes(), to, None, t).accepted());
    assert_expired_with_challenge(
        &c.verify(tok.as_bytes(), to, None, t + 41),
        "cached token with 59 s left",
    );
    assert!(c.verify(tok.as_bytes(), to, Some(0), t + 41).accepted());
    assert!(stat(&c, A, "expired") >= 9, "counted per issuer");
}

#[test]
fn min_registration_expires_is_configurable_and_checked() {
    let t = now();
    // 0: the rule is off (a token within the leeway registers for 0 s).
    let (_d, p) = config_with("min_registration_expires = 0", "", "");
    let c = Context::new(&p, None).unwrap();
    assert_eq!(c.config().min_registration_expires, 0);
    let o = c.verify(token_left(t, -10).as_bytes(), None, None, t);
    assert_eq!((o.reason, o.granted_expires), (Reason::Ok, 0));
    // 120: 100 s left is too little, 130 s is enough.
    let (_d, p) = config_with("min_registration_expires = 120", "", "");
    let c = Context::new(&p, None).unwrap();
    assert_eq!(
        c.verify(token_left(t, 100).as_bytes(), None, None, t)
            .reason,
        Reason::Expired
    );
    assert_eq!(
        c.verify(token_left(t, 130).as_bytes(), None, None, t)
            .reason,
        Reason::Ok
    );
    assert_eq!(ctx().config().min_registration_expires, 60, "the default");
    // The default never exceeds max_registration_expires.
    let (_d, p) = temp_config(|s| {
        s.replace(
            "max_registration_expires = 3600",
            "max_registration_expires = 30",
        )
    });
    assert_eq!(Config::load(&p).unwrap().min_registration_expires, 30);
    // Out of range: a load error naming the key and its line.
    for bad in ["-1", "3601"] {
        let (_d, p) = config_with(&format!("min_registration_expires = {bad}"), "", "");
        let text = std::fs::read_to_string(&p).unwrap();
        let e = Config::load(&p).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("min_registration_expires")
                && msg.contains(bad)
                && msg.contains("max_registration_expires (3600)"),
            "{msg}"
        );
        let want = text
            .lines()
            .position(|l| l.starts_with("min_registration_expires"))
            .unwrap()
            + 1;
        assert_eq!(e.line, Some(want), "{msg}");
    }
}

// --- Origin ----------------------------------------------------------------

#[test]
fn origin_checked_per_request_against_the_token_issuer() {
    let c = ctx();
    let t = now();
    let a = bearer(&token_a(|_| {}));
    let b = bearer(&token_b(|_| {}));
    let req = |auth: &str, to: &str, origin: Option<&[u8]>| {
        c.verify_request(
            &Request {
                authorization: Some(auth.as_bytes()),
                to: Some(to.as_bytes()),
                origin,
                ..Default::default()
            },
            t,
        )
    };
    // The issuer's own origin, written as origin_allowed compares it.
    for o in [
        ORIGIN_A,
        "https://webrtc.socialnet.example/",
        "HTTPS://WebRTC.SocialNet.example",
        " https://webrtc.socialnet.example \r\n",
    ] {
        assert_eq!(
            req(&a, IMPU_A, Some(o.as_bytes())).reason,
            Reason::Ok,
            "{o:?}"
        );
    }
    assert_eq!(
        req(&b, IMPU_B, Some(ORIGIN_B.as_bytes())).reason,
        Reason::Ok
    );
    // No Origin (UDP, TCP, non-browser clients): not checked.
    assert_eq!(req(&a, IMPU_A, None).reason, Reason::Ok);
    // Another issuer's origin, an unknown one, an extension of the right
    // one, an empty or non-UTF-8 value: 403 origin_not_allowed, no challenge.
    let before = stat(&c, A, "origin_not_allowed");
    for o in [
        ORIGIN_B.as_bytes(),
        b"https://evil.example",
        b"https://webrtc.socialnet.example.evil.example",
        b"",
        b"  ",
        b"/",
        b"\xff\xfe",
    ] {
        let r = req(&a, IMPU_A, Some(o));
        assert_eq!(
            (r.reason, r.sip_status),
            (Reason::OriginNotAllowed, 403),
            "{o:?}"
        );
        assert!(
            r.www_authenticate.is_none() && r.tna_header.is_none() && r.verified.is_none(),
            "{o:?}"
        );
        assert_eq!(r.iss(), Some(A));
    }
    assert_eq!(
        stat(&c, A, "origin_not_allowed"),
        before + 7,
        "counted per issuer"
    );
    let r = req(&b, IMPU_B, Some(ORIGIN_A.as_bytes()));
    assert_eq!((r.reason, r.iss()), (Reason::OriginNotAllowed, Some(B)));
    // Order: the token and the To come first.
    assert_eq!(
        req(
            &a,
            "sip:eve@socialnet.ims.example.net",
            Some(b"https://evil.example")
        )
        .reason,
        Reason::ToImpuNotInToken
    );
    assert_eq!(
        req(&token_left(t, -100), IMPU_A, Some(b"https://evil.example")).reason,
        Reason::Expired
    );
    assert_eq!(
        req("Bearer x.y.z", IMPU_A, Some(b"https://evil.example")).reason,
        Reason::MalformedToken
    );
    // The entry point without an Authorization header, and as verify().
    assert_eq!(
        c.verify_request(&Request::default(), t).reason,
        Reason::MissingToken
    );
    let o = c.verify_request(
        &Request {
            authorization: Some(a.as_bytes()),
            requested_expires: Some(100),
            ..Default::default()
        },
        t,
    );
    assert_eq!(
        (o.reason, o.granted_expires, o.tna_header.as_deref()),
        (
            Reason::Ok,
            100,
            c.verify(a.as_bytes(), None, Some(100), t)
                .tna_header
                .as_deref()
        )
    );
}

#[test]
fn issuer_without_origins_registers_no_wic_over_websocket() {
    let (_d, p) = temp_config(|s| s.replacen(&format!("origins = [\"{ORIGIN_A}\"]"), "", 1));
    let c = Context::new(&p, None).unwrap();
    let a = bearer(&token_a(|_| {}));
    let r = |origin: Option<&[u8]>| {
        c.verify_request(
            &Request {
                authorization: Some(a.as_bytes()),
                origin,
                ..Default::default()
            },
            now(),
        )
    };
    assert_eq!(
        r(Some(ORIGIN_A.as_bytes())).reason,
        Reason::OriginNotAllowed
    );
    assert_eq!(
        r(Some(ORIGIN_B.as_bytes())).reason,
        Reason::OriginNotAllowed
    );
    assert_eq!(r(None).reason, Reason::Ok);
}

#[test]
fn a_refused_origin_binds_nothing() {
    let (_d, p) = temp_config(|s| format!("{s}\n[replay]\nenabled = true\n"));
    let c = Context::new(&p, None).unwrap();
    let a = bearer(&token_a(|r| r.jti = Some("origin-replay".into())));
    let r = |binding: &[u8], origin: &str| {
        c.verify_request(
            &Request {
                authorization: Some(a.as_bytes()),
                binding: Some(binding),
                origin: Some(origin.as_bytes()),
                ..Default::default()
            },
            now(),
        )
        .reason
    };
    assert_eq!(
        r(b"ws:conn-1", "https://evil.example"),
        Reason::OriginNotAllowed
    );
    // Had the refusal bound the token to conn-1, this would be a replay.
    assert_eq!(r(b"ws:conn-2", ORIGIN_A), Reason::Ok);
    assert_eq!(r(b"ws:conn-1", ORIGIN_A), Reason::TokenReplayed);
    assert_eq!(r(b"ws:conn-2", ORIGIN_A), Reason::Ok);
}

// --- TNA realm and uri -------------------------------------------------------

fn realm_uri(o: &Outcome) -> (String, String) {
    assert_eq!(o.reason, Reason::Ok, "{o:?}");
    let h = o.tna_header.as_deref().unwrap();
    let param = |name: &str| {
        let start = h.find(&format!(", {name}=\"")).unwrap() + name.len() + 4;
        h[start..start + h[start..].find('"').unwrap()].to_owned()
    };
    (param("realm"), param("uri"))
}

fn pair(realm: &str, uri: &str) -> (String, String) {
    (realm.to_owned(), uri.to_owned())
}

#[test]
fn tna_realm_and_uri_per_issuer() {
    let t = now();
    let a = bearer(&token_a(|_| {}));
    let b = bearer(&token_b(|_| {}));
    // Default: home_realm.
    let c = ctx();
    assert_eq!(
        realm_uri(&c.verify(a.as_bytes(), None, None, t)),
        pair("ims.example.net", "sip:ims.example.net")
    );
    // tna_realm (uri follows it), tna_uri; the other issuer unchanged.
    let (_d, p) = config_with(
        "",
        "tna_realm = \"socialnet.ims.example.net\"",
        "tna_realm = \"gamenet.ims.example.net\"\ntna_uri = \"sips:scscf.gamenet.ims.example.net\"",
    );
    let c = Context::new(&p, None).unwrap();
    assert_eq!(
        realm_uri(&c.verify(a.as_bytes(), None, None, t)),
        pair("socialnet.ims.example.net", "sip:socialnet.ims.example.net")
    );
    assert_eq!(
        realm_uri(&c.verify(b.as_bytes(), None, None, t)),
        pair(
            "gamenet.ims.example.net",
            "sips:scscf.gamenet.ims.example.net"
        )
    );
    let (_d, p) = config_with("", "", "tna_uri = \"sip:scscf.example.net\"");
    let c = Context::new(&p, None).unwrap();
    assert_eq!(
        realm_uri(&c.verify(a.as_bytes(), None, None, t)),
        pair("ims.example.net", "sip:ims.example.net")
    );
    assert_eq!(
        realm_uri(&c.verify(b.as_bytes(), None, None, t)),
        pair("ims.example.net", "sip:scscf.example.net")
    );
}

#[test]
fn tna_realm_from_the_registering_impu() {
    let t = now();
    let impus = [
        "tel:+15550001",
        "sip:alice@socialnet.ims.example.net",
        "sip:alice@other.socialnet.ims.example.net",
    ];
    let several = bearer(&token_a(|r| {
        r.impus = impus.iter().map(|s| s.to_string()).collect()
    }));
    let tel_only = bearer(&token_a(|r| r.impus = vec!["tel:+15550001".into()]));
    let (_d, p) = temp_config(|s| {
        s.replacen(
            &format!("origins = [\"{ORIGIN_A}\"]"),
            &format!("origins = [\"{ORIGIN_A}\"]\ntna_realm_from_impu = true"),
            1,
        )
        .replace(
            "\"sip:*@socialnet.ims.example.net\"",
            "\"sip:*@socialnet.ims.example.net\", \"sip:*@other.socialnet.ims.example.net\"",
        )
    });
    let c = Context::new(&p, None).unwrap();
    let v = |tok: &str, to: Option<&str>| {
        realm_uri(&c.verify(tok.as_bytes(), to.map(str::as_bytes), None, t))
    };
    // The To IMPU's host (lower-cased), whichever of the token's it names.
    assert_eq!(
        v(&several, Some("sip:alice@SocialNet.ims.example.net")),
        pair("socialnet.ims.example.net", "sip:socialnet.ims.example.net")
    );
    assert_eq!(
        v(&several, Some(impus[2])),
        pair(
            "other.socialnet.ims.example.net",
            "sip:other.socialnet.ims.example.net"
        )
    );
    // A tel: To: the configured realm.
    assert_eq!(
        v(&several, Some("tel:+1-555-0001")),
        pair("ims.example.net", "sip:ims.example.net")
    );
    // No To: the token's first SIP IMPU; none: the configured realm.
    assert_eq!(
        v(&several, None),
        pair("socialnet.ims.example.net", "sip:socialnet.ims.example.net")
    );
    assert_eq!(
        v(&tel_only, None),
        pair("ims.example.net", "sip:ims.example.net")
    );
    // Issuer B (not set, and false at the top): home_realm.
    assert_eq!(
        realm_uri(&c.verify(bearer(&token_b(|_| {})).as_bytes(), None, None, t)),
        pair("ims.example.net", "sip:ims.example.net")
    );

    // At the top level: the default of every issuer; an issuer's own
    // setting wins; tna_realm is the fallback, tna_uri stays as set.
    let (_d, p) = config_with(
        "tna_realm_from_impu = true",
        "tna_realm = \"fallback.example.net\"\ntna_uri = \"sip:scscf.example.net\"",
        "",
    );
    let c = Context::new(&p, None).unwrap();
    assert_eq!(
        realm_uri(&c.verify(bearer(&token_b(|_| {})).as_bytes(), None, None, t)),
        pair("gamenet.ims.example.net", "sip:gamenet.ims.example.net")
    );
    assert_eq!(
        realm_uri(&c.verify(tel_only.as_bytes(), None, None, t)),
        pair("fallback.example.net", "sip:scscf.example.net")
    );
    let a = bearer(&token_a(|_| {}));
    assert_eq!(
        realm_uri(&c.verify(a.as_bytes(), None, None, t)),
        pair("socialnet.ims.example.net", "sip:scscf.example.net")
    );
    let (_d, p) = config_with(
        "tna_realm_from_impu = true",
        "tna_realm_from_impu = false",
        "",
    );
    let c = Context::new(&p, None).unwrap();
    assert_eq!(
        realm_uri(&c.verify(a.as_bytes(), None, None, t)),
        pair("ims.example.net", "sip:ims.example.net")
    );
}

#[test]
fn tna_realm_and_uri_are_checked_at_load() {
    for (line, field) in [
        ("tna_realm = \"bad realm\"", "issuer[0].tna_realm"),
        ("tna_realm = \"a\\\"b\"", "issuer[0].tna_realm"),
        ("tna_uri = \"http://x.example\"", "issuer[0].tna_uri"),
        ("tna_uri = \"sip:\"", "issuer[0].tna_uri"),
        ("tna_uri = \"sip:a b\"", "issuer[0].tna_uri"),
        ("tna_uri = \"sip:a\\\"b\"", "issuer[0].tna_uri"),
        ("tna_realm_from_impu = \"yes\"", "tna_realm_from_impu"),
    ] {
        let (_d, p) = config_with("", line, "");
        let text = std::fs::read_to_string(&p).unwrap();
        let e = Config::load(&p).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(field), "{line}: {msg}");
        let want = text.lines().position(|l| l == line).unwrap() + 1;
        assert_eq!(e.line, Some(want), "{line}: {msg}");
    }
}

// --- the CLI ---------------------------------------------------------------

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wic-tna"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_verify_says_when_it_skipped_the_to_check_and_takes_an_origin() {
    let cfg = config_path();
    let cfg = cfg.to_str().unwrap();
    let a = bearer(&token_a(|_| {}));
    let out = cli(&["verify", "--config", cfg, "--authorization", &a]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no --to given") && err.contains("skipped"),
        "{err}"
    );
    let out = cli(&[
        "verify",
        "--config",
        cfg,
        "--authorization",
        &a,
        "--to",
        IMPU_A,
    ]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&[
        "verify",
        "--config",
        cfg,
        "--authorization",
        &a,
        "--to",
        IMPU_A,
        "--origin",
        ORIGIN_A,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = cli(&[
        "verify",
        "--config",
        cfg,
        "--authorization",
        &a,
        "--to",
        IMPU_A,
        "--origin",
        ORIGIN_B,
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        s.contains("status: 403")
            && s.contains("reason: origin_not_allowed")
            && !s.contains("WWW-Authenticate"),
        "{s}"
    );
    // --expires 0 near exp: a de-registration; without it: expired.
    let near = token_left(now(), 10);
    assert!(cli(&[
        "verify",
        "--config",
        cfg,
        "--authorization",
        &near,
        "--to",
        IMPU_A,
        "--expires",
        "0"
    ])
    .status
    .success());
    let out = cli(&[
        "verify",
        "--config",
        cfg,
        "--authorization",
        &near,
        "--to",
        IMPU_A,
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("reason: expired"));
}

#[test]
fn check_config_warns_about_issuers_with_an_empty_pool() {
    let out = cli(&["check-config", config_path().to_str().unwrap()]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_d, p) = temp_config(|s| {
        s.replacen(
            "impu_patterns = [\"sip:*@gamenet.ims.example.net\"]",
            "impu_patterns = []",
            1,
        )
        .replacen("impi_patterns = [\"*@socialnet.ims.example.net\"]", "", 1)
    });
    let out = cli(&["check-config", p.to_str().unwrap()]);
    assert!(out.status.success(), "warnings only: exit 0");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("warning")
            && lines[0].contains(&format!("issuer[0] ({A})"))
            && lines[0].contains("impi_patterns is empty"),
        "{err}"
    );
    assert!(
        lines[1].contains(&format!("issuer[1] ({B})"))
            && lines[1].contains("impu_patterns is empty"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
}

// --- JWKS keys not meant for verification -------------------------------------

/// Keys a JWKS holds for other purposes (`use: enc`, `key_ops` without
/// `verify`) are skipped and logged at INFO, not WARN, by each process that
/// loads the set (a worker would log it on each load); a key this
/// configuration cannot use is still a WARN. (The only log sink of this
/// test binary.)
#[test]
fn jwks_keys_not_for_verification_are_info() {
    use std::sync::{Arc, Mutex};
    let set: serde_json::Value = serde_json::from_slice(&key("issuer-b.jwks.json")).unwrap();
    let mut keys = set["keys"].as_array().unwrap().clone();
    let es = keys.iter().find(|k| k["kid"] == "b-es256").unwrap().clone();
    for k in keys.iter_mut().filter(|k| k["kid"] == "b-rsa") {
        k["key_ops"] = serde_json::json!(["verify"]);
    }
    for (kid, ops) in [
        ("b-sign-only", serde_json::json!(["sign"])),
        ("b-wrap", serde_json::json!(["encrypt", "wrapKey"])),
    ] {
        let mut k = es.clone();
        k["kid"] = kid.into();
        k["key_ops"] = ops;
        keys.push(k);
    }
    keys.push(serde_json::json!({"kty": "oct", "kid": "b-oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}));
    let json = serde_json::json!({ "keys": keys }).to_string();

    let notes = wic_tna::keys::load_jwks(json.as_bytes(), &[Alg::RS256, Alg::ES256], "test")
        .unwrap()
        .1;
    let level = |kid: &str| {
        notes
            .iter()
            .find(|n| n.message.contains(&format!("\"{kid}\"")))
            .map(|n| n.level())
    };
    for kid in ["b-enc", "b-sign-only", "b-wrap"] {
        assert_eq!(level(kid), Some(wic_tna::log::INFO), "{kid}: {notes:?}");
    }
    assert_eq!(level("b-oct"), Some(wic_tna::log::WARN), "{notes:?}");
    assert_eq!(level("b-rsa"), None, "key_ops with verify: used");

    let (d, p) = temp_config(|s| s);
    let jwks = d.path().join("b-mixed.jwks.json");
    std::fs::write(&jwks, &json).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let old = root().join("tests/fixtures/keys/issuer-b.jwks.json");
    std::fs::write(
        &p,
        text.replace(old.to_str().unwrap(), jwks.to_str().unwrap()),
    )
    .unwrap();
    let logged = Arc::new(Mutex::new(Vec::<(i32, String)>::new()));
    let l2 = logged.clone();
    let mark = d.path().display().to_string();
    wic_tna::log::set_sink(Some(Box::new(move |level, m: &str| {
        if m.contains(&mark) {
            l2.lock().unwrap().push((level, m.to_owned()));
        }
    })));
    let cfg = Config::load(&p);
    wic_tna::log::set_sink(None);
    let b = cfg.unwrap();
    let b = b.issuer(B).unwrap();
    assert!(b.keys_by_kid.contains_key("b-rsa") && b.keys_by_kid.contains_key("b-es256"));
    for kid in ["b-enc", "b-sign-only", "b-wrap", "b-oct"] {
        assert!(!b.keys_by_kid.contains_key(kid), "{kid} used");
    }
    let logged = logged.lock().unwrap().clone();
    let at = |kid: &str| {
        logged
            .iter()
            .filter(|(_, m)| m.contains(&format!("\"{kid}\"")))
            .map(|(l, _)| *l)
            .collect::<Vec<_>>()
    };
    for kid in ["b-enc", "b-sign-only", "b-wrap"] {
        assert_eq!(at(kid), vec![wic_tna::log::INFO], "{kid}: {logged:?}");
    }
    assert_eq!(at("b-oct"), vec![wic_tna::log::WARN], "{logged:?}");
}
