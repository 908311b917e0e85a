//! The hostile corpus (issue 5): each case with its expected status and
//! reason. Every token is signed for real where that matters, so that the
//! rule under test, not a bad signature, is what refuses it. Zero false
//! accepts.

mod common;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as E};
use base64::Engine;
use common::*;
use wic_tna::{Context, Reason};

fn hmac(key: &[u8], si: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    E.encode(aws_lc_rs::hmac::sign(&k, si.as_bytes()).as_ref())
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    let t = String::from_utf8_lossy(pem);
    let b: String = t.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b).unwrap()
}

enum Sig {
    /// Issuer A's HMAC secret.
    Hmac,
    /// These bytes as the HMAC secret.
    HmacWith(Vec<u8>),
    /// A fixed junk signature.
    Junk,
}

/// `leeway` of config/wic-tna.toml, the configuration these cases run on.
const LEEWAY: i64 = 30;

fn claims(over: &str) -> String {
    let t = now();
    let base = format!(
        r#""iss":"https://wwsf.socialnet.example","aud":"ims.example.net","scope":"webrtc-ims-client-access-to-ims","impi":"alice@socialnet.ims.example.net","impu":"sip:alice@socialnet.ims.example.net","iat":{t},"exp":{}"#,
        t + 600
    );
    if over.is_empty() {
        format!("{{{base}}}")
    } else {
        // Later members are meant to replace earlier ones: build the object
        // from a map so that the test itself never makes duplicates by accident.
        let mut m: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&format!("{{{base}}}")).unwrap();
        let o: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&format!("{{{over}}}")).unwrap();
        for (k, v) in o {
            if v.is_null() {
                m.remove(&k);
            } else {
                m.insert(k, v);
            }
        }
        serde_json::Value::Object(m).to_string()
    }
}

fn token(header: &str, payload: &str, sig: Sig) -> String {
    let si = format!("{}.{}", E.encode(header), E.encode(payload));
    let s = match sig {
        Sig::Hmac => hmac(&key("issuer-a-hmac.secret"), &si),
        Sig::HmacWith(k) => hmac(&k, &si),
        Sig::Junk => E.encode(b"junk-signature"),
    };
    format!("{si}.{s}")
}

const HS: &str = r#"{"alg":"HS256","kid":"a-hs256","typ":"at+jwt"}"#;

#[test]
fn hostile_corpus() {
    let ctx = Context::new(&config_path(), None).unwrap();
    assert_eq!(
        ctx.config().leeway,
        LEEWAY as u64,
        "LEEWAY must be the configuration's"
    );
    let rsa_pem = key("issuer-a-rsa.pub.pem");
    let ec_pem = key("issuer-a-p256.pub.pem");
    // (name, Authorization value, To URI, SIP status, reason)
    type Case = (String, Vec<u8>, Option<&'static str>, u16, Reason);
    let mut cases: Vec<Case> = Vec::new();
    let mut add =
        |name: &str, auth: Vec<u8>, to: Option<&'static str>, status: u16, reason: Reason| {
            cases.push((name.to_owned(), auth, to, status, reason));
        };
    let bearer = |t: String| format!("Bearer {t}").into_bytes();

    // The control: the corpus's signing works.
    add(
        "control",
        bearer(token(HS, &claims(""), Sig::Hmac)),
        Some(IMPU_A),
        200,
        Reason::Ok,
    );

    for a in ["none", "None", "NONE", "nOnE"] {
        let h = format!(r#"{{"alg":"{a}","kid":"a-hs256"}}"#);
        add(
            &format!("alg_{a}"),
            bearer(token(&h, &claims(""), Sig::Junk)),
            None,
            401,
            Reason::UnsupportedAlgorithm,
        );
        let t = token(&h, &claims(""), Sig::Junk);
        let unsigned = t[..t.rfind('.').unwrap() + 1].to_owned();
        add(
            &format!("alg_{a}_empty_sig"),
            bearer(unsigned),
            None,
            401,
            Reason::MalformedToken,
        );
    }
    for (n, k) in [
        ("rsa_pem", rsa_pem.clone()),
        ("rsa_der", pem_to_der(&rsa_pem)),
        ("ec_pem", ec_pem.clone()),
        ("ec_der", pem_to_der(&ec_pem)),
    ] {
        for kid in ["a-rsa", "a-es256"] {
            let h = format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#);
            add(
                &format!("hs256_with_{n}_kid_{kid}"),
                bearer(token(&h, &claims(""), Sig::HmacWith(k.clone()))),
                None,
                401,
                Reason::UnsupportedAlgorithm,
            );
        }
        // Without kid: HS256 keys of issuer A are tried, the public key never.
        add(
            &format!("hs256_with_{n}_no_kid"),
            bearer(token(
                r#"{"alg":"HS256"}"#,
                &claims(""),
                Sig::HmacWith(k.clone()),
            )),
            None,
            401,
            Reason::BadSignature,
        );
    }
    add(
        "kid_of_other_issuer",
        bearer(token(
            r#"{"alg":"HS256","kid":"b-hs256"}"#,
            &claims(""),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::UnknownKey,
    );
    add(
        "unknown_kid",
        bearer(token(
            r#"{"alg":"HS256","kid":"zzz"}"#,
            &claims(""),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::UnknownKey,
    );
    for k in [
        "../../etc/passwd",
        "a-hs256' OR '1'='1",
        "a-hs256\u{0}",
        "/dev/zero",
    ] {
        let h = serde_json::json!({"alg":"HS256","kid":k}).to_string();
        add(
            &format!("kid_{k:?}"),
            bearer(token(&h, &claims(""), Sig::Hmac)),
            None,
            401,
            Reason::UnknownKey,
        );
    }
    add(
        "kid_not_string",
        bearer(token(r#"{"alg":"HS256","kid":7}"#, &claims(""), Sig::Hmac)),
        None,
        401,
        Reason::UnknownKey,
    );
    for extra in [
        r#""jku":"https://evil.example/jwks""#,
        r#""x5u":"https://evil.example/c""#,
        r#""jwk":{"kty":"oct","k":"AAAA"}"#,
        r#""x5c":["MIIB"]"#,
        r#""crit":["exp"]"#,
    ] {
        let h = format!(r#"{{"alg":"HS256","kid":"a-hs256",{extra}}}"#);
        add(
            &format!("header_{extra}"),
            bearer(token(&h, &claims(""), Sig::Hmac)),
            None,
            401,
            Reason::UnsupportedHeader,
        );
    }
    // iss of B, key of A.
    add(
        "iss_b_key_a",
        bearer(token(
            HS,
            &claims(
                r#""iss":"https://wwsf.gamenet.example","impi":"bob@gamenet.ims.example.net","impu":"sip:bob@gamenet.ims.example.net""#,
            ),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::UnknownKey,
    );
    let t = now();
    add(
        "expired_leeway_plus_1",
        bearer(token(
            HS,
            &claims(&format!(r#""iat":{},"exp":{}"#, t - 100, t - 31)),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::Expired,
    );
    // nbf/iat in the future beyond the leeway by a margin that a clock
    // second ticking between minting and checking cannot close (at t+31 a
    // tick made it t+30 against `now`: within the leeway, accepted).
    let future = t + LEEWAY + 30;
    add(
        "nbf_future",
        bearer(token(
            HS,
            &claims(&format!(r#""nbf":{}"#, future)),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::NotYetValid,
    );
    add(
        "iat_future",
        bearer(token(
            HS,
            &claims(&format!(r#""iat":{}"#, future)),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::IssuedInFuture,
    );
    add(
        "lifetime_too_long",
        bearer(token(
            HS,
            &claims(&format!(r#""exp":{}"#, t + 3601)),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::LifetimeTooLong,
    );
    add(
        "exp_missing",
        bearer(token(HS, &claims(r#""exp":null"#), Sig::Hmac)),
        None,
        401,
        Reason::MissingClaim,
    );
    add(
        "exp_string",
        bearer(token(HS, &claims(r#""exp":"9999999999""#), Sig::Hmac)),
        None,
        401,
        Reason::InvalidClaim,
    );
    add(
        "exp_huge_float",
        bearer(token(HS, &claims(r#""exp":1e300"#), Sig::Hmac)),
        None,
        401,
        Reason::InvalidClaim,
    );
    add(
        "aud_missing",
        bearer(token(HS, &claims(r#""aud":null"#), Sig::Hmac)),
        None,
        401,
        Reason::WrongAudience,
    );
    add(
        "aud_wrong",
        bearer(token(HS, &claims(r#""aud":"ims.example.org""#), Sig::Hmac)),
        None,
        401,
        Reason::WrongAudience,
    );
    add(
        "aud_array_without_ours",
        bearer(token(HS, &claims(r#""aud":["a","b"]"#), Sig::Hmac)),
        None,
        401,
        Reason::WrongAudience,
    );
    add(
        "aud_prefix",
        bearer(token(
            HS,
            &claims(r#""aud":"ims.example.net.evil""#),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::WrongAudience,
    );
    add(
        "scope_missing",
        bearer(token(HS, &claims(r#""scope":null"#), Sig::Hmac)),
        None,
        403,
        Reason::InsufficientScope,
    );
    add(
        "scope_array",
        bearer(token(
            HS,
            &claims(r#""scope":["webrtc-ims-client-access-to-ims"]"#),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::InvalidClaim,
    );
    add(
        "scope_near_miss",
        bearer(token(
            HS,
            &claims(r#""scope":"webrtc-ims-client-access-to-ims-x""#),
            Sig::Hmac,
        )),
        None,
        403,
        Reason::InsufficientScope,
    );
    add(
        "scope_case",
        bearer(token(
            HS,
            &claims(r#""scope":"WEBRTC-IMS-CLIENT-ACCESS-TO-IMS""#),
            Sig::Hmac,
        )),
        None,
        403,
        Reason::InsufficientScope,
    );
    for (n, impi) in [
        ("cr", "a\rb@socialnet.ims.example.net"),
        ("lf", "a\nb@socialnet.ims.example.net"),
        ("quote", "a\"b@socialnet.ims.example.net"),
        ("backslash", "a\\b@socialnet.ims.example.net"),
        ("nul", "a\u{0}b@socialnet.ims.example.net"),
        ("space", "a b@socialnet.ims.example.net"),
        ("non_ascii", "\u{e4}lice@socialnet.ims.example.net"),
        ("no_at", "alice"),
    ] {
        let c = claims(&format!(
            r#""impi":{}"#,
            serde_json::to_string(impi).unwrap()
        ));
        add(
            &format!("impi_{n}"),
            bearer(token(HS, &c, Sig::Hmac)),
            None,
            401,
            Reason::InvalidImpi,
        );
    }
    add(
        "impi_not_string",
        bearer(token(
            HS,
            &claims(r#""impi":["a@socialnet.ims.example.net"]"#),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::InvalidImpi,
    );
    add(
        "impi_missing",
        bearer(token(HS, &claims(r#""impi":null"#), Sig::Hmac)),
        None,
        401,
        Reason::MissingClaim,
    );
    add(
        "impi_outside_pool",
        bearer(token(
            HS,
            &claims(r#""impi":"alice@evil.example""#),
            Sig::Hmac,
        )),
        None,
        403,
        Reason::ImpiOutsidePool,
    );
    add(
        "impi_pool_suffix_trick",
        bearer(token(
            HS,
            &claims(r#""impi":"alice@x.socialnet.ims.example.net""#),
            Sig::Hmac,
        )),
        None,
        403,
        Reason::ImpiOutsidePool,
    );
    for (n, impu) in [
        ("not_uri", "alice"),
        ("http", "http://x"),
        ("angle", "sip:a@socialnet.ims.example.net>"),
        ("crlf", "sip:a@socialnet.ims.example.net\r\nX: y"),
    ] {
        let c = claims(&format!(
            r#""impu":{}"#,
            serde_json::to_string(impu).unwrap()
        ));
        add(
            &format!("impu_{n}"),
            bearer(token(HS, &c, Sig::Hmac)),
            None,
            401,
            Reason::InvalidImpu,
        );
    }
    add(
        "impu_outside_pool",
        bearer(token(
            HS,
            &claims(r#""impu":"sip:alice@evil.example""#),
            Sig::Hmac,
        )),
        None,
        403,
        Reason::ImpuOutsidePool,
    );
    add(
        "impu_param_trick",
        bearer(token(
            HS,
            &claims(r#""impu":"sip:a@evil.example;x=@socialnet.ims.example.net""#),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::InvalidImpu,
    );
    add(
        "impu_param_pool_trick",
        bearer(token(
            HS,
            &claims(r#""impu":"sip:a@evil.example;x=socialnet.ims.example.net""#),
            Sig::Hmac,
        )),
        None,
        403,
        Reason::ImpuOutsidePool,
    );
    add(
        "impu_empty_array",
        bearer(token(HS, &claims(r#""impu":[]"#), Sig::Hmac)),
        None,
        401,
        Reason::InvalidImpu,
    );
    add(
        "to_not_in_token",
        bearer(token(HS, &claims(""), Sig::Hmac)),
        Some("sip:bob@socialnet.ims.example.net"),
        403,
        Reason::ToImpuNotInToken,
    );
    add(
        "to_garbage",
        bearer(token(HS, &claims(""), Sig::Hmac)),
        Some("<<<"),
        400,
        Reason::InvalidToUri,
    );
    // Duplicate JSON keys, in the claims and in the header.
    let dup = claims("").replacen('{', r#"{"impi":"mallory@socialnet.ims.example.net","#, 1);
    add(
        "duplicate_claim",
        bearer(token(HS, &dup, Sig::Hmac)),
        None,
        401,
        Reason::MalformedToken,
    );
    add(
        "duplicate_header_alg",
        bearer(token(
            r#"{"alg":"HS256","alg":"none","kid":"a-hs256"}"#,
            &claims(""),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::MalformedToken,
    );
    add(
        "nested_json",
        bearer(token(
            HS,
            &format!("{}{}", "[".repeat(2000), "]".repeat(2000)),
            Sig::Hmac,
        )),
        None,
        401,
        Reason::MalformedToken,
    );
    add(
        "claims_not_object",
        bearer(token(HS, "\"x\"", Sig::Hmac)),
        None,
        401,
        Reason::MalformedToken,
    );
    let good = token(HS, &claims(""), Sig::Hmac);
    let p: Vec<&str> = good.split('.').collect();
    for n in [8 * 1024, 64 * 1024, 1024 * 1024] {
        add(
            &format!("size_{n}"),
            bearer(format!("{}.{}.{}", p[0], "A".repeat(n), p[2])),
            None,
            401,
            Reason::TokenTooLarge,
        );
    }
    add(
        "size_2mib_header",
        bearer("A".repeat(2 * 1024 * 1024)),
        None,
        401,
        Reason::TokenTooLarge,
    );
    add(
        "padding",
        bearer(format!("{}.{}.{}=", p[0], p[1], p[2])),
        None,
        401,
        Reason::MalformedToken,
    );
    add(
        "standard_b64_char",
        bearer(format!("{}.+{}.{}", p[0], &p[1][1..], p[2])),
        None,
        401,
        Reason::MalformedToken,
    );
    add(
        "extra_dot",
        bearer(format!("{}.{}.{}.", p[0], p[1], p[2])),
        None,
        401,
        Reason::MalformedToken,
    );
    add(
        "four_parts",
        bearer(format!("{}.{}.{}.{}", p[0], p[1], p[2], p[2])),
        None,
        401,
        Reason::MalformedToken,
    );
    add(
        "empty_payload",
        bearer(format!("{}..{}", p[0], p[2])),
        None,
        401,
        Reason::MalformedToken,
    );
    add(
        "two_parts",
        bearer(format!("{}.{}", p[0], p[1])),
        None,
        401,
        Reason::MalformedToken,
    );
    // Non-canonical base64: change the unused low bits of the last char.
    let sig = p[2];
    let last = sig.chars().last().unwrap();
    let alt = match last {
        'A' => 'B',
        'Q' => 'R',
        'g' => 'h',
        'w' => 'x',
        c => c,
    };
    if alt != last {
        add(
            "noncanonical_b64",
            bearer(format!(
                "{}.{}.{}{}",
                p[0],
                p[1],
                &sig[..sig.len() - 1],
                alt
            )),
            None,
            401,
            Reason::MalformedToken,
        );
    }
    add("empty", Vec::new(), None, 400, Reason::MalformedRequest);
    add(
        "whitespace_only",
        b" \t \r\n ".to_vec(),
        None,
        400,
        Reason::MalformedRequest,
    );
    add(
        "bearer_only",
        b"Bearer".to_vec(),
        None,
        400,
        Reason::MalformedRequest,
    );
    add(
        "two_tokens_comma",
        format!("Bearer {good}, Bearer {good}").into_bytes(),
        None,
        400,
        Reason::MalformedRequest,
    );
    add(
        "non_utf8",
        b"Bearer \xff\xfe".to_vec(),
        None,
        400,
        Reason::MalformedRequest,
    );
    add(
        "interior_nul",
        format!("Bearer {}\0{}", &good[..10], &good[10..]).into_bytes(),
        None,
        400,
        Reason::MalformedRequest,
    );
    add(
        "bare_crlf_injection",
        format!("Bearer {good}\r\nVia: x").into_bytes(),
        None,
        400,
        Reason::MalformedRequest,
    );
    add(
        "basic_scheme",
        b"Basic YWxpY2U6c2VjcmV0".to_vec(),
        None,
        401,
        Reason::MissingToken,
    );

    let mut failures = Vec::new();
    let mut false_accepts = 0;
    for (name, auth, to, status, reason) in &cases {
        let o = ctx.verify(auth, to.map(str::as_bytes), None, now());
        if o.accepted() && *reason != Reason::Ok {
            false_accepts += 1;
        }
        if (o.sip_status, o.reason) != (*status, *reason) {
            failures.push(format!(
                "{name}: got {} {}, want {status} {reason}",
                o.sip_status, o.reason
            ));
        }
    }
    assert_eq!(false_accepts, 0, "FALSE ACCEPTS:\n{}", failures.join("\n"));
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(cases.len() > 80, "{}", cases.len());
}
