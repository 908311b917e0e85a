//! Every case of tests/cases/make_cases.py (tokens made by PyJWT, an
//! independent implementation) through the Rust API.

mod common;
use common::*;
use wic_tna::Context;

#[test]
fn pyjwt_cases_through_the_library() {
    let cases = pyjwt_cases();
    assert!(cases.len() >= 50, "too few cases: {}", cases.len());
    let ctx = Context::new(&config_path(), None).unwrap();
    let mut failures = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    for c in &cases {
        let [name, status, reason, challenge, auth, to, impi, tna, setup] = &c[..] else {
            panic!("bad case line {c:?}")
        };
        if let Some(iss) = setup.strip_prefix("bar=") {
            ctx.set_barred(iss, true).unwrap();
        }
        let to = (to != "-").then_some(to.as_bytes());
        let o = ctx.verify(auth.as_bytes(), to, Some(600), now());
        if let Some(iss) = setup.strip_prefix("bar=") {
            ctx.set_barred(iss, false).unwrap();
        }
        let www = o.www_authenticate.clone().unwrap_or_default();
        let mut bad = Vec::new();
        if o.sip_status.to_string() != *status {
            bad.push(format!("status {} != {status}", o.sip_status));
        }
        if o.reason.name() != reason {
            bad.push(format!("reason {} != {reason}", o.reason));
        }
        if challenge == "-" {
            if !www.is_empty() {
                bad.push(format!("unexpected challenge {www}"));
            }
        } else if !www.starts_with(challenge.as_str()) {
            bad.push(format!(
                "challenge {www:?} does not start with {challenge:?}"
            ));
        }
        if impi != "-" && o.impi() != Some(impi.as_str()) {
            bad.push(format!("impi {:?}", o.impi()));
        }
        if tna != "-" && o.tna_header.as_deref() != Some(tna.as_str()) {
            bad.push(format!("tna {:?}", o.tna_header));
        }
        if o.accepted() {
            accepted += 1;
            assert!(
                o.granted_expires >= 0
                    && o.granted_expires <= 600
                    && o.granted_expires <= o.seconds_left,
                "{name}: granted {}",
                o.granted_expires
            );
        } else {
            rejected += 1;
            assert!(
                o.tna_header.is_none() && o.verified.is_none(),
                "{name}: rejected but identities leaked"
            );
            // error_description never echoes token content.
            if let Some(w) = &o.www_authenticate {
                for part in auth.split(['.', ' ']) {
                    if part.len() > 8 {
                        assert!(!w.contains(part), "{name}: challenge echoes token content");
                    }
                }
            }
        }
        if !bad.is_empty() {
            failures.push(format!("{name}: {}", bad.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
    assert!(
        accepted >= 15 && rejected >= 30,
        "accepted {accepted}, rejected {rejected}"
    );
}
