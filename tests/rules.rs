//! One test per rule that the PyJWT case table does not already cover.

mod common;
use common::*;
use wic_tna::keys::Alg;
use wic_tna::{Config, Context, Reason};

fn ctx() -> Context {
    Context::new(&config_path(), None).unwrap()
}

fn verify(c: &Context, tok: &str) -> wic_tna::Outcome {
    c.verify(
        format!("Bearer {tok}").as_bytes(),
        Some(IMPU_A.as_bytes()),
        None,
        now(),
    )
}

#[test]
fn own_minting_accepts_every_algorithm() {
    let c = ctx();
    for (alg, kid) in [
        (Alg::HS256, "a-hs256"),
        (Alg::HS384, "a-hs256"),
        (Alg::HS512, "a-hs256"),
        (Alg::RS256, "a-rsa"),
        (Alg::RS384, "a-rsa"),
        (Alg::RS512, "a-rsa"),
        (Alg::PS256, "a-rsa"),
        (Alg::PS384, "a-rsa"),
        (Alg::PS512, "a-rsa"),
        (Alg::ES256, "a-es256"),
        (Alg::ES384, "a-es384"),
        (Alg::EdDSA, "a-ed"),
    ] {
        let o = verify(
            &c,
            &token_a(|r| {
                r.alg = alg;
                r.kid = Some(kid.into());
            }),
        );
        assert_eq!(o.reason, Reason::Ok, "{alg}");
    }
}

#[test]
fn kid_selects_exactly_one_key_no_fallback() {
    let c = ctx();
    // ES256 signed with a-es256's key but kid naming the ES384 key: the kid's
    // key is not configured for ES256 and no other key is tried.
    let o = verify(&c, &token_a(|r| r.kid = Some("a-es384".into())));
    assert_eq!(o.reason, Reason::UnsupportedAlgorithm);
    let o = verify(&c, &token_a(|r| r.kid = Some("missing".into())));
    assert_eq!(o.reason, Reason::UnknownKey);
}

#[test]
fn without_kid_only_keys_for_that_alg_are_tried() {
    let c = ctx();
    assert_eq!(verify(&c, &token_a(|r| r.kid = None)).reason, Reason::Ok);
    // Issuer A has RS256 on two keys (a-rsa, a-cert): still within the bound.
    let o = verify(
        &c,
        &token_a(|r| {
            r.kid = None;
            r.alg = Alg::RS256
        }),
    );
    assert_eq!(o.reason, Reason::Ok);
}

#[test]
fn algorithm_comes_from_key_configuration() {
    // Same key file, but RS256 not configured for it: refused.
    let (_d, p) = temp_config(|t| {
        t.replace(
            r#"algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]"#,
            r#"algorithms = ["PS256"]"#,
        )
    });
    let c = Context::new(&p, None).unwrap();
    let rs = token_a(|r| {
        r.alg = Alg::RS256;
        r.kid = Some("a-rsa".into())
    });
    assert_eq!(verify(&c, &rs).reason, Reason::UnsupportedAlgorithm);
    let ps = token_a(|r| {
        r.alg = Alg::PS256;
        r.kid = Some("a-rsa".into())
    });
    assert_eq!(verify(&c, &ps).reason, Reason::Ok);
}

#[test]
fn bare_token_only_when_configured() {
    let t = token_a(|_| {});
    let (_d, p) =
        temp_config(|t| t.replace("accept_bare_token = true", "accept_bare_token = false"));
    let off = Context::new(&p, None).unwrap();
    let o = off.verify(t.as_bytes(), None, None, now());
    // Its own reason (not missing_token), answered like a request without
    // credentials: 401 and a challenge without an error code (RFC 6750 3.1).
    assert_eq!(
        (o.reason, o.sip_status),
        (Reason::BareTokenNotAccepted, 401)
    );
    let www = o.www_authenticate.clone().unwrap();
    assert_eq!(www, "Bearer realm=\"ims.example.net\", scope=\"webrtc-ims-client-access-to-ims\", authz_server=\"https://wwsf.socialnet.example/authorize\"");
    assert!(!www.contains("error="), "{www}");
    assert!(o.iss().is_none() && o.verified.is_none());
    let s: serde_json::Value = serde_json::from_str(&off.stats_json()).unwrap();
    assert_eq!(s["outcomes"]["-"]["bare_token_not_accepted"], 1, "{s}");
    // Another scheme is still missing_token.
    assert_eq!(
        off.verify(b"Basic YWxpY2U6c2VjcmV0", None, None, now())
            .reason,
        Reason::MissingToken
    );
    assert_eq!(
        ctx().verify(t.as_bytes(), None, None, now()).reason,
        Reason::Ok
    );
}

#[test]
fn at_jwt_required_when_configured() {
    let (_d, p) = temp_config(|t| t.replace("require_at_jwt = false", "require_at_jwt = true"));
    let c = Context::new(&p, None).unwrap();
    let jwt = token_a(|r| r.typ = "JWT".into());
    // The same header accepted first where typ JWT is allowed (the parsed
    // header is remembered per thread): the requirement still applies.
    assert_eq!(verify(&ctx(), &jwt).reason, Reason::Ok);
    assert_eq!(verify(&c, &jwt).reason, Reason::WrongTokenType);
    assert_eq!(verify(&c, &token_a(|_| {})).reason, Reason::Ok);
    assert_eq!(verify(&ctx(), &jwt).reason, Reason::Ok);
}

#[test]
fn leeway_boundaries() {
    let c = ctx(); // leeway 30
    let t = now();
    let at = |exp: i64| {
        token_a(move |r| {
            r.iat = t - 1000;
            r.exp = exp
        })
    };
    // exp + leeway == now: still valid (for a de-registration: a
    // registration needs min_registration_expires left); one second later:
    // expired.
    assert_eq!(
        c.verify(
            format!("Bearer {}", at(t - 30)).as_bytes(),
            None,
            Some(0),
            t
        )
        .reason,
        Reason::Ok
    );
    assert_eq!(
        c.verify(
            format!("Bearer {}", at(t - 31)).as_bytes(),
            None,
            Some(0),
            t
        )
        .reason,
        Reason::Expired
    );
}

#[test]
fn lifetime_max_per_issuer() {
    let c = ctx(); // A: 3600
    let t = now();
    let ok = token_a(|r| r.exp = t + 3600);
    let long = token_a(|r| r.exp = t + 3601);
    assert_eq!(verify(&c, &ok).reason, Reason::Ok);
    assert_eq!(verify(&c, &long).reason, Reason::LifetimeTooLong);
}

#[test]
fn granted_expiry_is_the_least() {
    let c = ctx(); // max_registration_expires 3600
    let t = now();
    let tok = format!("Bearer {}", token_a(|r| r.exp = t + 500));
    assert_eq!(
        c.verify(tok.as_bytes(), None, Some(7200), t)
            .granted_expires,
        500
    );
    assert_eq!(
        c.verify(tok.as_bytes(), None, Some(100), t).granted_expires,
        100
    );
    assert_eq!(c.verify(tok.as_bytes(), None, None, t).granted_expires, 500);
    let (_d, p) = temp_config(|s| {
        s.replace(
            "max_registration_expires = 3600",
            "max_registration_expires = 60",
        )
    });
    let c2 = Context::new(&p, None).unwrap();
    assert_eq!(
        c2.verify(tok.as_bytes(), None, Some(7200), t)
            .granted_expires,
        60
    );
}

#[test]
fn authorization_entity_is_configurable() {
    let (_d, p) = temp_config(|s| {
        s.replace(
            "add_authorization_entity = true",
            "add_authorization_entity = false",
        )
    });
    let c = Context::new(&p, None).unwrap();
    let o = verify(&c, &token_a(|_| {}));
    assert_eq!(
        o.tna_header.unwrap(),
        "Digest username=\"alice@socialnet.ims.example.net\", realm=\"ims.example.net\", uri=\"sip:ims.example.net\", nonce=\"\", response=\"\", integrity-protected=auth-done"
    );
}

#[test]
fn claim_names_are_configurable() {
    let (_d, p) = temp_config(|s| s.replace("impi = \"impi\"", "impi = \"ims_private_id\""));
    let c = Context::new(&p, None).unwrap();
    // Our minting writes "impi": under the renamed claim it is missing.
    assert_eq!(verify(&c, &token_a(|_| {})).reason, Reason::MissingClaim);
}

#[test]
fn identity_syntax_is_checked_before_any_header_is_built() {
    let c = ctx();
    for bad in [
        "a\"b@socialnet.ims.example.net",
        "a\\b@socialnet.ims.example.net",
        "a b@socialnet.ims.example.net",
        "a\u{0}@socialnet.ims.example.net",
        "\u{e9}@socialnet.ims.example.net",
    ] {
        let o = verify(&c, &token_a(|r| r.impi = bad.into()));
        assert_eq!(o.reason, Reason::InvalidImpi, "{bad:?}");
        assert!(o.tna_header.is_none());
    }
    let o = verify(
        &c,
        &token_a(|r| r.impus = vec!["sip:alice@socialnet.ims.example.net>\r\nX: y".into()]),
    );
    assert_eq!(o.reason, Reason::InvalidImpu);
}

#[test]
fn pool_with_no_pattern_accepts_nothing() {
    let (_d, p) = temp_config(|s| {
        s.replace(
            r#"impi_patterns = ["*@socialnet.ims.example.net"]"#,
            "impi_patterns = []",
        )
    });
    let c = Context::new(&p, None).unwrap();
    assert_eq!(verify(&c, &token_a(|_| {})).reason, Reason::ImpiOutsidePool);
}

#[test]
fn barring_one_issuer_leaves_the_other() {
    let c = ctx();
    c.set_barred(A, true).unwrap();
    assert_eq!(verify(&c, &token_a(|_| {})).reason, Reason::IssuerBarred);
    assert!(!c.origin_allowed(b"https://webrtc.socialnet.example"));
    assert!(c.origin_allowed(b"https://play.gamenet.example"));
    c.set_barred(A, false).unwrap();
    assert_eq!(verify(&c, &token_a(|_| {})).reason, Reason::Ok);
    assert!(c.set_barred("https://nobody.example", true).is_err());
}

#[test]
fn barred_in_config() {
    let (_d, p) = temp_config(|s| {
        s.replacen(
            "max_token_lifetime = 3600",
            "max_token_lifetime = 3600\nbarred = true",
            1,
        )
    });
    let c = Context::new(&p, None).unwrap();
    assert_eq!(verify(&c, &token_a(|_| {})).reason, Reason::IssuerBarred);
    c.set_barred(A, false).unwrap();
    assert_eq!(verify(&c, &token_a(|_| {})).reason, Reason::Ok);
}

#[test]
fn reload_is_atomic_and_broken_file_keeps_old() {
    let (_d, p) = temp_config(|s| s);
    let c = Context::new(&p, None).unwrap();
    let good = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        good.replace("home_realm = \"ims.example.net\"", "home_realm = "),
    )
    .unwrap();
    let e = c.reload().unwrap_err();
    assert!(
        e.to_string().contains("wic-tna.toml:") && e.line.is_some(),
        "{e}"
    );
    assert_eq!(verify(&c, &token_a(|_| {})).reason, Reason::Ok);
    // A change that loads takes effect.
    std::fs::write(
        &p,
        good.replace("*@socialnet.ims.example.net", "*@elsewhere.example"),
    )
    .unwrap();
    c.reload().unwrap();
    assert_eq!(verify(&c, &token_a(|_| {})).reason, Reason::ImpiOutsidePool);
}

#[test]
fn an_idle_process_takes_up_only_what_the_reload_checked() {
    // Two workers sharing state; "one" reloads a key rotation (a-es256
    // removed), then the file changes again without a reload. The idle
    // worker must neither keep the removed key nor take the unchecked file.
    let (d, p) = temp_config(|s| s);
    let state = d.path().join("state");
    let text = std::fs::read_to_string(&p).unwrap();
    let text = format!("state_file = {:?}\n{text}", state.to_str().unwrap());
    std::fs::write(&p, &text).unwrap();
    let one = Context::new(&p, None).unwrap();
    let idle = Context::new(&p, None).unwrap();
    let es = token_a(|_| {});
    let hs = token_a(|r| {
        r.alg = Alg::HS256;
        r.kid = Some("a-hs256".into());
    });
    assert!(verify(&idle, &es).accepted());
    let rotated = text.replace("kid = \"a-es256\"", "kid = \"a-es256-new\"");
    assert_ne!(rotated, text);
    std::fs::write(&p, &rotated).unwrap();
    one.reload().unwrap();
    assert_eq!(verify(&one, &es).reason, Reason::UnknownKey);
    // Unreloaded edits: back to the old file (it holds the removed key),
    // then a broken one.
    for unchecked in [text.clone(), "home_realm = \"x\"\n[[issuer".into()] {
        std::fs::write(&p, &unchecked).unwrap();
        let o = verify(&idle, &es);
        assert_eq!(
            (o.reason, o.sip_status),
            (Reason::InternalError, 500),
            "{unchecked:.40}"
        );
        assert!(!idle.origin_allowed(b"https://webrtc.socialnet.example"));
        assert_eq!(verify(&idle, &hs).reason, Reason::InternalError);
    }
    // A key file changed after the reload is out of step as well.
    let hmac =
        std::fs::read_to_string(common::root().join("tests/fixtures/keys/issuer-a-hmac.secret"))
            .unwrap();
    let moved = d.path().join("a.secret");
    std::fs::write(&moved, &hmac).unwrap();
    let with_moved_key = rotated.replace(
        common::root()
            .join("tests/fixtures/keys/issuer-a-hmac.secret")
            .to_str()
            .unwrap(),
        moved.to_str().unwrap(),
    );
    assert_ne!(with_moved_key, rotated);
    std::fs::write(&p, &with_moved_key).unwrap();
    one.reload().unwrap();
    std::fs::write(&moved, format!("{hmac}changed")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(verify(&idle, &hs).reason, Reason::InternalError);
    // The file as reloaded again: the idle worker follows (within a second).
    std::fs::write(&moved, &hmac).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(verify(&idle, &hs).accepted());
    assert_eq!(verify(&idle, &es).reason, Reason::UnknownKey);
}

#[test]
fn reload_and_barring_reach_other_contexts_sharing_state() {
    let (d, p) = temp_config(|s| s);
    let state = d.path().join("state");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        format!("state_file = {:?}\n{text}", state.to_str().unwrap()),
    )
    .unwrap();
    let one = Context::new(&p, None).unwrap();
    let two = Context::new(&p, None).unwrap();
    one.set_barred(A, true).unwrap();
    assert_eq!(verify(&two, &token_a(|_| {})).reason, Reason::IssuerBarred);
    one.set_barred(A, false).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace("*@socialnet.ims.example.net", "*@elsewhere.example"),
    )
    .unwrap();
    one.reload().unwrap();
    assert_eq!(
        verify(&two, &token_a(|_| {})).reason,
        Reason::ImpiOutsidePool
    );
    // Counters are shared too.
    let stats: serde_json::Value = serde_json::from_str(&two.stats_json()).unwrap();
    assert!(
        stats["outcomes"][A]["issuer_barred"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

#[test]
fn config_errors_name_file_line_and_field() {
    // (replace, with, the message names, the line is that of the line holding)
    let cases: Vec<(&str, &str, &str, Option<&str>)> = vec![
        (
            "home_realm = \"ims.example.net\"",
            "home_realm = \"bad realm\"",
            "home_realm",
            Some("bad realm"),
        ),
        (
            r#"algorithms = ["ES256"]"#,
            r#"algorithms = ["ES256", "none"]"#,
            "algorithms",
            Some("\"none\""),
        ),
        (
            "issuer-a-p256.pub.pem",
            "no-such-file.pem",
            ".pem",
            Some("no-such-file.pem"),
        ),
        (
            r#"kid = "a-es384""#,
            "kid = \"a-es384\"\n  secret_file = \"x\"",
            "exactly one",
            None,
        ),
        (
            "leeway = 30",
            "leeway = \"thirty\"",
            "leeway",
            Some("thirty"),
        ),
        (
            "leeway = 30",
            "leeway = 30\nbogus_key = 1",
            "bogus_key",
            Some("bogus_key"),
        ),
        (
            r#"impi_patterns = ["*@socialnet.ims.example.net"]"#,
            r#"impi_patterns = ["a\"b"]"#,
            "impi_patterns[0]",
            Some("a\\\"b"),
        ),
        (
            r#"algorithms = ["ES384"]"#,
            r#"algorithms = ["ES256"]"#,
            "ES256",
            None,
        ),
        ("[claims]", "[claims\nimpi", "", Some("[claims")),
    ];
    for (from, to, expect, line_of) in cases {
        let (_d, p) = temp_config(|s| {
            assert!(s.contains(from), "{from}");
            s.replacen(from, to, 1)
        });
        let text = std::fs::read_to_string(&p).unwrap();
        let e = Config::load(&p).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(&p.display().to_string()), "{msg}");
        assert!(
            !msg.contains('\n') && !msg.contains('\r'),
            "one line for the log: {msg:?}"
        );
        assert!(e.line.is_some(), "no line: {msg}");
        assert!(msg.contains(expect), "{msg} lacks {expect}");
        if let Some(marker) = line_of {
            let want = text.lines().position(|l| l.contains(marker)).expect(marker) + 1;
            assert_eq!(
                e.line,
                Some(want),
                "{msg}: should name line {want}, the one with {marker}"
            );
        }
    }
}

#[test]
fn hmac_secret_too_short_is_refused() {
    let (d, p) = temp_config(|s| s);
    std::fs::write(d.path().join("short.secret"), "tooshort").unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let keys = root().join("tests/fixtures/keys/issuer-a-hmac.secret");
    std::fs::write(
        &p,
        text.replace(
            keys.to_str().unwrap(),
            d.path().join("short.secret").to_str().unwrap(),
        ),
    )
    .unwrap();
    let e = Config::load(&p).unwrap_err();
    assert!(
        e.to_string().contains("secret_file") && e.to_string().contains("at least 32"),
        "{e}"
    );
}

#[test]
fn jwks_skips_encryption_keys_and_binds_kids() {
    let cfg = Config::load(&config_path()).unwrap();
    let b = cfg.issuer(B).unwrap();
    assert!(b.keys_by_kid.contains_key("b-rsa") && b.keys_by_kid.contains_key("b-ed"));
    assert!(!b.keys_by_kid.contains_key("b-enc"));
}

#[test]
fn hostile_json_and_encoding() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as E;
    use base64::Engine;
    let c = ctx();
    let good = token_a(|_| {});
    let parts: Vec<&str> = good.split('.').collect();
    let header = String::from_utf8(E.decode(parts[0]).unwrap()).unwrap();
    // Duplicate claim: the signature is checked over these bytes, so sign it
    // for real with the HMAC key to be sure the JSON rule is what refuses it.
    let dup = r#"{"iss":"https://wwsf.socialnet.example","aud":"ims.example.net","scope":"webrtc-ims-client-access-to-ims","impi":"alice@socialnet.ims.example.net","impi":"x@socialnet.ims.example.net","impu":"sip:alice@socialnet.ims.example.net","exp":9999999999,"iat":1}"#;
    let h = E.encode(br#"{"alg":"HS256","kid":"a-hs256"}"#);
    let si = format!("{h}.{}", E.encode(dup));
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key("issuer-a-hmac.secret"));
    let tag = aws_lc_rs::hmac::sign(&k, si.as_bytes());
    let t = format!("{si}.{}", E.encode(tag.as_ref()));
    assert_eq!(verify(&c, &t).reason, Reason::MalformedToken);
    // Padding, extra dots, empty segments, non-canonical base64.
    for t in [
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}.", parts[0], parts[1], parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}.{}.", parts[0], parts[1]),
        format!("{}.{}", parts[0], parts[1]),
    ] {
        assert_ne!(verify(&c, &t).reason, Reason::Ok, "{t}");
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let t = format!("{}.{}.{}", E.encode(header), E.encode(deep), parts[2]);
    let o = c.verify(format!("Bearer {t}").as_bytes(), None, None, now());
    assert!(
        matches!(o.reason, Reason::TokenTooLarge | Reason::MalformedToken),
        "{:?}",
        o.reason
    );
    // Sizes.
    for n in [8 * 1024, 64 * 1024, 1024 * 1024] {
        let t = format!("{}.{}.{}", parts[0], "A".repeat(n), parts[2]);
        assert_eq!(verify(&c, &t).reason, Reason::TokenTooLarge, "{n}");
    }
    // jku / x5u / jwk / x5c / crit never honoured.
    for hdr in [
        r#""jku":"https://evil/jwks""#,
        r#""x5u":"https://evil/c""#,
        r#""jwk":{}"#,
        r#""x5c":[]"#,
        r#""crit":["exp"]"#,
    ] {
        let h = E.encode(format!(r#"{{"alg":"ES256","kid":"a-es256",{hdr}}}"#));
        let t = format!("{h}.{}.{}", parts[1], parts[2]);
        assert_eq!(verify(&c, &t).reason, Reason::UnsupportedHeader, "{hdr}");
    }
}

#[test]
fn scscf_side() {
    let c = ctx();
    let o = verify(&c, &token_a(|_| {}));
    // eP-CSCF side: issuer and IMPI given by what the token said.
    assert_eq!((o.iss(), o.impi()), (Some(A), Some(IMPI_A)));
    let tna = o.tna_header.unwrap();
    let s = c.scscf_check(tna.as_bytes(), "127.0.0.1", None);
    assert!(s.accepted());
    // S-CSCF side: no token, the IMPI is the TNA username.
    assert!(s.verified.is_none());
    assert_eq!((s.impi(), s.iss()), (Some(IMPI_A), Some(A)));
    // A rejection that knew the issuer still names it, without an IMPI.
    let expired = verify(
        &c,
        &token_a(|r| {
            r.iat -= 7200;
            r.exp -= 7200
        }),
    );
    assert_eq!(
        (expired.reason, expired.iss(), expired.impi()),
        (Reason::Expired, Some(A), None)
    );
    assert_eq!(
        c.scscf_check(tna.as_bytes(), "192.0.2.1", None).reason,
        Reason::UntrustedSource
    );
    assert_eq!(
        c.scscf_check(tna.as_bytes(), "127.0.0.1", Some("https://other"))
            .reason,
        Reason::EntityNotAllowed
    );
    c.set_barred(A, true).unwrap();
    assert_eq!(
        c.scscf_check(tna.as_bytes(), "127.0.0.1", None).reason,
        Reason::IssuerBarred
    );
    c.set_barred(A, false).unwrap();
    let quoted = tna.replace(
        "integrity-protected=auth-done",
        "integrity-protected=\"auth-done\"",
    );
    assert!(c
        .scscf_check(quoted.as_bytes(), "127.0.0.1", None)
        .accepted());
    let no = tna.replace("auth-done", "no");
    let o = c.scscf_check(no.as_bytes(), "127.0.0.1", None);
    assert_eq!((o.reason, o.sip_status), (Reason::NotAuthDone, 403));
}

#[test]
fn cli_verify_and_check_config() {
    let bin = env!("CARGO_BIN_EXE_wic-tna");
    let out = std::process::Command::new(bin)
        .args(["check-config", config_path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let t = token_a(|_| {});
    let out = std::process::Command::new(bin)
        .args([
            "verify",
            "--config",
            config_path().to_str().unwrap(),
            "--authorization",
            &format!("Bearer {t}"),
            "--to",
            IMPU_A,
        ])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && s.contains("integrity-protected=auth-done"),
        "{s}"
    );
    let out = std::process::Command::new(bin)
        .args([
            "verify",
            "--config",
            config_path().to_str().unwrap(),
            "--authorization",
            "Bearer x.y.z",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("WWW-Authenticate: Bearer realm="));
}

#[test]
fn cli_verify_passes_the_replay_binding() {
    let (_d, p) = temp_config(|s| format!("{s}\n[replay]\nenabled = true\n"));
    let bin = env!("CARGO_BIN_EXE_wic-tna");
    let t = format!("Bearer {}", token_a(|r| r.jti = Some("cli-binding".into())));
    let run = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--config",
            p.to_str().unwrap(),
            "--authorization",
            &t,
        ];
        args.extend_from_slice(extra);
        std::process::Command::new(bin)
            .args(&args)
            .output()
            .unwrap()
    };
    // replay on and no binding: fail closed
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("500"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&["--binding", "udp:192.0.2.1:5060"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn cache_hits(c: &Context) -> u64 {
    let s: serde_json::Value = serde_json::from_str(&c.stats_json()).unwrap();
    s["process"]["verified_cache_hits"].as_u64().unwrap()
}

#[test]
fn refresh_cache_hit_still_applies_exp_barring_reload_and_to() {
    let (_d, p) = temp_config(|s| s);
    let c = Context::new(&p, None).unwrap();
    let t = now();
    let tok = format!("Bearer {}", token_a(|r| r.exp = t + 100));
    assert!(c
        .verify(tok.as_bytes(), Some(IMPU_A.as_bytes()), None, t)
        .accepted());
    assert_eq!(cache_hits(&c), 0);
    assert!(c
        .verify(tok.as_bytes(), Some(IMPU_A.as_bytes()), None, t + 1)
        .accepted());
    assert_eq!(
        cache_hits(&c),
        1,
        "second verification of the same token is a cache hit"
    );
    // exp on a hit.
    assert_eq!(
        c.verify(tok.as_bytes(), None, None, t + 100 + 31).reason,
        Reason::Expired
    );
    // To on a hit.
    assert_eq!(
        c.verify(
            tok.as_bytes(),
            Some(b"sip:eve@socialnet.ims.example.net"),
            None,
            t
        )
        .reason,
        Reason::ToImpuNotInToken
    );
    // Barring on a hit.
    c.set_barred(A, true).unwrap();
    assert_eq!(
        c.verify(tok.as_bytes(), None, None, t).reason,
        Reason::IssuerBarred
    );
    c.set_barred(A, false).unwrap();
    assert!(c.verify(tok.as_bytes(), None, None, t).accepted());
    // Reload empties the cache: a pool change applies at once.
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace("*@socialnet.ims.example.net", "*@elsewhere.example"),
    )
    .unwrap();
    c.reload().unwrap();
    assert_eq!(
        c.verify(tok.as_bytes(), None, None, t).reason,
        Reason::ImpiOutsidePool
    );
}

#[test]
fn cache_hit_at_an_earlier_time_still_applies_nbf_iat_and_lifetime() {
    let (_d, p) = temp_config(|s| s);
    let c = Context::new(&p, None).unwrap();
    let t = now();
    // nbf: valid at t, and a hit asked about a time before nbf - leeway is refused.
    let tok = format!(
        "Bearer {}",
        token_a(|r| {
            r.nbf = Some(t);
            r.jti = Some("nbf".into());
        })
    );
    assert!(c.verify(tok.as_bytes(), None, None, t).accepted());
    assert_eq!(
        c.verify(tok.as_bytes(), None, None, t - 31).reason,
        Reason::NotYetValid
    );
    // iat likewise.
    let tok = format!(
        "Bearer {}",
        token_a(|r| {
            r.iat = t;
            r.jti = Some("iat".into());
        })
    );
    assert!(c.verify(tok.as_bytes(), None, None, t).accepted());
    assert_eq!(
        c.verify(tok.as_bytes(), None, None, t - 31).reason,
        Reason::IssuedInFuture
    );
    // Without iat the lifetime is counted from now: earlier means longer.
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("a-hs256".into());
    h.typ = Some("at+jwt".into());
    let claims = serde_json::json!({
        "iss": A, "aud": "ims.example.net", "exp": t + 3500, "jti": "noiat",
        "scope": "webrtc-ims-client-access-to-ims", "impi": IMPI_A, "impu": [IMPU_A],
    });
    let jwt = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&key("issuer-a-hmac.secret")),
    )
    .unwrap();
    let tok = format!("Bearer {jwt}");
    assert!(c.verify(tok.as_bytes(), None, None, t).accepted());
    assert_eq!(
        c.verify(tok.as_bytes(), None, None, t - 200).reason,
        Reason::LifetimeTooLong
    );
    let hits = cache_hits(&c);
    assert!(c.verify(tok.as_bytes(), None, None, t + 1).accepted());
    assert_eq!(cache_hits(&c), hits + 1, "a later time is still a hit");
}

#[test]
fn cache_is_bounded() {
    let (_d, p) = temp_config(|s| {
        s.replace(
            "max_token_size = 8192",
            "max_token_size = 8192\nverified_cache_size = 5",
        )
    });
    let c = Context::new(&p, None).unwrap();
    for i in 0..20 {
        let tok = format!("Bearer {}", token_a(|r| r.jti = Some(format!("j{i}"))));
        assert!(c.verify(tok.as_bytes(), None, None, now()).accepted());
    }
    let s: serde_json::Value = serde_json::from_str(&c.stats_json()).unwrap();
    assert!(
        s["process"]["verified_cache_entries"].as_u64().unwrap() <= 5,
        "{s}"
    );
}

#[test]
fn no_header_is_missing_token_with_challenge() {
    let o = ctx().no_credentials();
    assert_eq!((o.sip_status, o.reason), (401, Reason::MissingToken));
    let w = o.www_authenticate.unwrap();
    assert!(
        w.starts_with(
            "Bearer realm=\"ims.example.net\", scope=\"webrtc-ims-client-access-to-ims\""
        ) && !w.contains("error="),
        "{w}"
    );
    // An empty but present value is a malformed request.
    let o = ctx().verify(b"", None, None, now());
    assert_eq!((o.sip_status, o.reason), (400, Reason::MalformedRequest));
}

/// `[claims]` renames every claim: each rule reads its claim under the
/// configured name (short names and names longer than 7 bytes take
/// different lookup paths), and the standard names no longer count.
#[test]
fn renamed_claims_are_read_under_their_configured_names() {
    let names = [
        ("iss", "issuer_name"),
        ("aud", "au"),
        ("exp", "expires_at"),
        ("nbf", "nb"),
        ("iat", "issued"),
        ("scope", "scp"),
        ("impi", "ims_private_identity"),
        ("impu", "pu"),
        ("sub", "subject_id"),
        ("jti", "j"),
    ];
    let table: String = names
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\"\n"))
        .collect();
    let (_d, p) = temp_config(|t| {
        t.replace(
            "[claims]\nimpi = \"impi\"\nimpu = \"impu\"\n",
            &format!("[claims]\n{table}"),
        )
    });
    let c = Context::new(&p, None).unwrap();
    let t = now();
    let sign = |claims: serde_json::Value| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("a-hs256".into());
        jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&key("issuer-a-hmac.secret")),
        )
        .unwrap()
    };
    let renamed = |drop: &str| {
        let mut m = serde_json::Map::new();
        for (std, v) in [
            ("iss", serde_json::json!(A)),
            ("aud", serde_json::json!("ims.example.net")),
            ("exp", serde_json::json!(t + 600)),
            ("nbf", serde_json::json!(t - 5)),
            ("iat", serde_json::json!(t - 5)),
            (
                "scope",
                serde_json::json!("openid webrtc-ims-client-access-to-ims"),
            ),
            ("impi", serde_json::json!(IMPI_A)),
            ("impu", serde_json::json!([IMPU_A])),
            ("sub", serde_json::json!("user-7")),
            ("jti", serde_json::json!("jti-7")),
        ] {
            if std != drop {
                let name = names.iter().find(|(k, _)| *k == std).unwrap().1;
                m.insert(name.into(), v);
            }
        }
        serde_json::Value::Object(m)
    };
    let o = verify(&c, &sign(renamed("")));
    assert_eq!(o.reason, Reason::Ok);
    let v = o.verified.unwrap();
    assert_eq!(
        (&*v.iss, v.impi(), v.impus().collect::<Vec<_>>()),
        (A, IMPI_A, vec![IMPU_A])
    );
    assert_eq!(
        (v.sub(), v.jti(), v.scope(), v.exp),
        (
            Some("user-7"),
            Some("jti-7"),
            "openid webrtc-ims-client-access-to-ims",
            t + 600
        )
    );
    // Each claim missing under its configured name: the rule that needs it.
    for (std, reason) in [
        ("iss", Reason::UnknownIssuer),
        ("aud", Reason::WrongAudience),
        ("exp", Reason::MissingClaim),
        ("scope", Reason::InsufficientScope),
        ("impi", Reason::MissingClaim),
        ("impu", Reason::MissingClaim),
    ] {
        assert_eq!(verify(&c, &sign(renamed(std))).reason, reason, "{std}");
    }
    // The standard names are not read any more.
    assert_eq!(
        verify(
            &c,
            &token_a(|r| {
                r.alg = Alg::HS256;
                r.kid = Some("a-hs256".into())
            })
        )
        .reason,
        Reason::UnknownIssuer
    );
    // A future nbf and iat under their configured names are seen.
    let mut late = renamed("");
    late["nb"] = serde_json::json!(t + 3600);
    assert_eq!(verify(&c, &sign(late)).reason, Reason::NotYetValid);
    let mut late = renamed("");
    late["issued"] = serde_json::json!(t + 3600);
    assert_eq!(verify(&c, &sign(late)).reason, Reason::IssuedInFuture);
}

/// What an accepted token said, as `Verified` gives it back (one buffer
/// holds scope, IMPUs, sub and jti): every IMPU in order, and the `To`
/// check matches an IMPU's exact text only, never a prefix, an extension
/// or two IMPUs joined by a NUL.
#[test]
fn verified_gives_back_every_impu_and_string_claim() {
    let c = ctx();
    let impus = [
        "sip:alice@socialnet.ims.example.net",
        "tel:+15550001",
        "sip:alice.work@socialnet.ims.example.net",
    ];
    let tok = token_a(|r| {
        r.impus = impus.iter().map(|s| s.to_string()).collect();
        r.sub = Some("web-user-42".into());
        r.jti = Some("jti-42".into());
    });
    let o = verify(&c, &tok);
    assert_eq!(o.reason, Reason::Ok);
    let v = o.verified.unwrap();
    assert_eq!(v.impus().collect::<Vec<_>>(), impus);
    assert_eq!(v.impu_count(), 3);
    assert_eq!(
        (v.impu(0), v.impu(2), v.impu(3)),
        (Some(impus[0]), Some(impus[2]), None)
    );
    assert_eq!(
        v.impu_uris().map(|u| u.canonical()).collect::<Vec<_>>(),
        impus
    );
    assert_eq!(
        (v.sub(), v.jti(), v.scope()),
        (
            Some("web-user-42"),
            Some("jti-42"),
            "openid webrtc-ims-client-access-to-ims"
        )
    );
    for i in impus {
        assert!(v.has_impu_text(i), "{i}");
    }
    for not in [
        "sip:alice@socialnet.ims.example.ne",
        "sip:alice@socialnet.ims.example.nett",
        "tel:+1555000",
        "",
        "sip:alice@socialnet.ims.example.net\0tel:+15550001",
        "tel:+15550001\0",
    ] {
        assert!(!v.has_impu_text(not), "{not:?}");
    }
    // Through the To check: two IMPUs joined by a NUL are not one of them.
    let to = "sip:alice@socialnet.ims.example.net\0tel:+15550001";
    let o = c.verify(
        format!("Bearer {tok}").as_bytes(),
        Some(to.as_bytes()),
        None,
        now(),
    );
    assert_ne!(o.reason, Reason::Ok);
    // Each IMPU as To is accepted; without sub and jti they are absent.
    for i in impus {
        let o = c.verify(
            format!("Bearer {tok}").as_bytes(),
            Some(i.as_bytes()),
            None,
            now(),
        );
        assert_eq!(o.reason, Reason::Ok, "{i}");
    }
    let o = verify(
        &c,
        &token_a(|r| {
            r.sub = None;
            r.jti = None
        }),
    );
    let v = o.verified.unwrap();
    assert_eq!(
        (v.sub(), v.jti(), v.impus().collect::<Vec<_>>()),
        (None, None, vec![IMPU_A])
    );
}

/// The C ABI hands `sub`, `scope` and each IMPU out of the verified
/// token's one buffer: each view has its exact text and a NUL right after
/// it, for every IMPU of a token with several; out of range is empty.
#[test]
fn c_views_of_a_verified_token_are_exact_and_nul_terminated() {
    use std::ffi::CStr;
    use wic_tna::ffi::*;
    let impus = [
        "sip:alice@socialnet.ims.example.net",
        "tel:+15550001",
        "sip:alice.work@socialnet.ims.example.net",
    ];
    let tok = token_a(|r| {
        r.impus = impus.iter().map(|s| s.to_string()).collect();
        r.sub = Some("web-user-42".into());
    });
    let view = |s: wic_tna_str| -> String {
        // SAFETY: views are NUL-terminated, valid while the result lives.
        let c = unsafe { CStr::from_ptr(s.ptr) };
        assert_eq!(c.to_bytes().len(), s.len, "NUL right after the text");
        c.to_str().unwrap().to_string()
    };
    let path = config_path();
    let path = path.to_str().unwrap();
    let auth = format!("Bearer {tok}");
    unsafe {
        let mut sh: *mut wic_tna_shared = std::ptr::null_mut();
        assert_eq!(
            wic_tna_shared_new_anonymous(&mut sh),
            wic_tna_status::WIC_TNA_STATUS_OK
        );
        let mut ctx: *mut wic_tna_ctx = std::ptr::null_mut();
        assert_eq!(
            wic_tna_ctx_new(path.as_ptr() as _, path.len(), sh, &mut ctx),
            wic_tna_status::WIC_TNA_STATUS_OK
        );
        let mut r: *mut wic_tna_result = std::ptr::null_mut();
        let to = impus[1];
        assert_eq!(
            wic_tna_verify(
                ctx,
                auth.as_ptr() as _,
                auth.len(),
                to.as_ptr() as _,
                to.len(),
                600,
                &mut r
            ),
            wic_tna_status::WIC_TNA_STATUS_OK
        );
        assert!(wic_tna_result_accepted(r));
        assert_eq!(wic_tna_result_impu_count(r), 3);
        let got: Vec<String> = (0..3).map(|i| view(wic_tna_result_impu(r, i))).collect();
        assert_eq!(got, impus);
        assert_eq!(view(wic_tna_result_impu(r, 3)), "");
        assert_eq!(view(wic_tna_result_subject(r)), "web-user-42");
        assert_eq!(
            view(wic_tna_result_scope(r)),
            "openid webrtc-ims-client-access-to-ims"
        );
        assert_eq!(view(wic_tna_result_www_authenticate(r)), "");
        assert!(view(wic_tna_result_tna_header(r))
            .starts_with("Digest username=\"alice@socialnet.ims.example.net\""));
        wic_tna_result_free(r);
        // A rejection: no IMPUs, empty subject and scope, a challenge.
        let bad = "Bearer x.y.z";
        assert_eq!(
            wic_tna_verify(
                ctx,
                bad.as_ptr() as _,
                bad.len(),
                to.as_ptr() as _,
                to.len(),
                600,
                &mut r
            ),
            wic_tna_status::WIC_TNA_STATUS_OK
        );
        assert!(!wic_tna_result_accepted(r));
        assert_eq!(
            (
                wic_tna_result_impu_count(r),
                view(wic_tna_result_impu(r, 0))
            ),
            (0, String::new())
        );
        assert_eq!(
            (
                view(wic_tna_result_subject(r)),
                view(wic_tna_result_scope(r))
            ),
            (String::new(), String::new())
        );
        assert!(view(wic_tna_result_www_authenticate(r)).starts_with("Bearer "));
        wic_tna_result_free(r);
        wic_tna_ctx_free(ctx);
        wic_tna_shared_free(sh);
    }
}

/// IMPUs written with capitals, parameters, escapes or telephone
/// separators are kept as written (for the C ABI and the `To` text match)
/// and in their canonical form (for the pools and a parsed `To`): scheme and
/// host lower-cased, the user part case kept with its unreserved escapes
/// decoded (RFC 3261 19.1.4).
#[test]
fn impus_kept_as_written_and_canonical() {
    let c = ctx();
    let written = [
        "sip:Alice.Work@SocialNet.ims.example.net;transport=ws",
        "tel:+1-555-0001",
        "sip:alice@socialnet.ims.example.net",
        "SIP:%62ob@socialnet.ims.example.net",
    ];
    let canonical = [
        "sip:Alice.Work@socialnet.ims.example.net",
        "tel:+15550001",
        "sip:alice@socialnet.ims.example.net",
        "sip:bob@socialnet.ims.example.net",
    ];
    let tok = token_a(|r| r.impus = written.iter().map(|s| s.to_string()).collect());
    let o = verify(&c, &tok);
    assert_eq!(o.reason, Reason::Ok);
    let v = o.verified.unwrap();
    assert_eq!(v.impus().collect::<Vec<_>>(), written);
    assert_eq!(
        v.impu_uris().map(|u| u.canonical()).collect::<Vec<_>>(),
        canonical
    );
    let u = v.impu_uri(0).unwrap();
    assert_eq!(
        (u.user(), u.host(), u.port),
        ("Alice.Work", "socialnet.ims.example.net", None)
    );
    let t = v.impu_uri(1).unwrap();
    assert_eq!((t.user(), t.host()), ("+15550001", ""));
    assert!(v.impu_uri(4).is_none());
    // To as written, in canonical form, or in another spelling of the same
    // identity (scheme and host in any case, escapes of unreserved
    // characters, telephone separators): all accepted.
    for to in [
        written[0],
        canonical[0],
        "<SIP:Alice.Work@SOCIALNET.ims.example.net>;tag=1",
        "sip:%41lice.Work@socialnet.ims.example.net",
        "sip:Alice%2eWork@socialnet.ims.example.net",
        "tel:+15550001",
        "tel:+1.555.0001",
        "sip:bob@socialnet.ims.example.net",
        "sip:%62ob@SocialNet.ims.example.net",
    ] {
        let o = c.verify(
            format!("Bearer {tok}").as_bytes(),
            Some(to.as_bytes()),
            None,
            now(),
        );
        assert_eq!(o.reason, Reason::Ok, "{to}");
    }
    // Another identity is not; nor is the user part in another case
    // (case-sensitive), nor the escape of a reserved character.
    for to in [
        "sip:bob2@socialnet.ims.example.net",
        "tel:+15550002",
        "sips:Alice.Work@socialnet.ims.example.net",
        "sip:alice.work@socialnet.ims.example.net",
        "sip:ALICE.WORK@socialnet.ims.example.net",
        "<SIP:ALICE.WORK@socialnet.ims.example.net>;tag=1",
        "sip:Alice@socialnet.ims.example.net",
        "sip:BOB@socialnet.ims.example.net",
        "sip:%42ob@socialnet.ims.example.net",
    ] {
        let o = c.verify(
            format!("Bearer {tok}").as_bytes(),
            Some(to.as_bytes()),
            None,
            now(),
        );
        assert_eq!(o.reason, Reason::ToImpuNotInToken, "{to}");
    }
    // A '%' without two hex digits is not a URI.
    let o = c.verify(
        format!("Bearer {tok}").as_bytes(),
        Some(b"sip:%4lice@socialnet.ims.example.net"),
        None,
        now(),
    );
    assert_eq!((o.reason, o.sip_status), (Reason::InvalidToUri, 400));
    // The pools stay case-insensitive, on the canonical form: with a port it
    // is outside "sip:*@socialnet.ims.example.net".
    let tok = token_a(|r| r.impus = vec!["sip:ALICE@SOCIALNET.IMS.EXAMPLE.NET".into()]);
    assert_eq!(
        verify(&c, &tok).reason,
        Reason::ToImpuNotInToken,
        "the To is sip:alice@..."
    );
    let o = c.verify(
        format!("Bearer {tok}").as_bytes(),
        Some(b"sip:ALICE@socialnet.ims.example.net"),
        None,
        now(),
    );
    assert_eq!(o.reason, Reason::Ok);
    let tok = token_a(|r| r.impus = vec!["sip:alice@socialnet.ims.example.net:5070".into()]);
    assert_eq!(verify(&c, &tok).reason, Reason::ImpuOutsidePool);
}
