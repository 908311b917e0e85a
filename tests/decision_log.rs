//! One decision log line per check (`decision_log`, `decision_log_impi`):
//! its level, its stable key=value form, and the IMPI only when the
//! operator turns it on. One test: the log sink is process-wide.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use wic_tna::context::{Context, Request};

fn top(extra: &'static str) -> impl Fn(String) -> String {
    move |t: String| {
        let at = t.find("\n[").unwrap();
        format!("{}\n{extra}\n{}", &t[..at], &t[at..])
    }
}

#[test]
fn one_line_per_decision_at_the_configured_level_impi_only_when_on() {
    let lines: Arc<Mutex<Vec<(i32, String)>>> = Arc::default();
    let l = lines.clone();
    wic_tna::log::set_sink(Some(Box::new(move |lvl, m| {
        if m.starts_with("wic-tna decision:") {
            l.lock().unwrap().push((lvl, m.to_owned()));
        }
    })));
    let take = || std::mem::take(&mut *lines.lock().unwrap());
    let ok = format!("Bearer {}", token_a(|_| {}));
    let outside = format!(
        "Bearer {}",
        token_a(|r| r.impi = "mallory@elsewhere.example".into())
    );
    let req = |auth: &'static str, binding: &'static [u8]| Request {
        authorization: Some(auth.as_bytes()),
        to: Some(IMPU_A.as_bytes()),
        binding: Some(binding),
        ..Default::default()
    };
    let ok: &'static str = Box::leak(ok.into_boxed_str());
    let outside: &'static str = Box::leak(outside.into_boxed_str());

    // default: off
    let (_d, path) = temp_config(|t| t);
    let c = Context::new(&path, None).unwrap();
    assert!(c
        .verify_request(&req(ok, b"udp:192.0.2.1:5060"), now())
        .accepted());
    assert!(take().is_empty());

    // info, no IMPI
    let (_d, path) = temp_config(top("decision_log = \"info\""));
    let c = Context::new(&path, None).unwrap();
    assert!(c
        .verify_request(&req(ok, b"udp:192.0.2.1:5060"), now())
        .accepted());
    c.verify_request(&req(outside, b"ws:192.0.2.2:40000"), now());
    c.verify_request(&Request::default(), now());
    c.verify_request(&req("Bearer x.y", b"odd value=\"1\""), now());
    let got = take();
    assert_eq!(
        got,
        vec![
            (3, format!("wic-tna decision: reason=ok status=200 issuer={A} source=udp:192.0.2.1:5060")),
            (3, format!("wic-tna decision: reason=impi_outside_pool status=403 issuer={A} source=ws:192.0.2.2:40000")),
            (3, "wic-tna decision: reason=missing_token status=401 issuer=- source=-".to_string()),
            (3, "wic-tna decision: reason=malformed_token status=401 issuer=- source=\"odd value=\\\"1\\\"\"".to_string()),
        ]
    );
    assert!(got
        .iter()
        .all(|(_, l)| !l.contains("alice") && !l.contains("impi=")));

    // debug, with the IMPI
    let (_d, path) = temp_config(top("decision_log = \"debug\"\ndecision_log_impi = true"));
    let c = Context::new(&path, None).unwrap();
    assert!(c
        .verify_request(&req(ok, b"tcp:192.0.2.1:5060"), now())
        .accepted());
    c.verify_request(&req(outside, b"tcp:192.0.2.1:5060"), now());
    assert_eq!(
        take(),
        vec![
            (4, format!("wic-tna decision: reason=ok status=200 issuer={A} source=tcp:192.0.2.1:5060 impi={IMPI_A}")),
            (4, format!("wic-tna decision: reason=impi_outside_pool status=403 issuer={A} source=tcp:192.0.2.1:5060 impi=-")),
        ]
    );

    // a value that is not a level is refused at load, naming the key
    let (_d, path) = temp_config(top("decision_log = \"loud\""));
    let e = Context::new(&path, None).err().unwrap().to_string();
    assert!(e.contains("decision_log") || e.contains("loud"), "{e}");
    wic_tna::log::set_sink(None);
}
