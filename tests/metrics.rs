//! The counters as a proxy's statistics and Prometheus `/metrics` see them,
//! through the C ABI: `wic_tna_reason_count`/`_name`,
//! `wic_tna_ctx_reason_total` and `wic_tna_ctx_metrics_text`.

mod common;

use common::*;
use std::ffi::CStr;
use wic_tna::ffi::*;
use wic_tna_status::*;

struct Ctx {
    sh: *mut wic_tna_shared,
    ctx: *mut wic_tna_ctx,
}

impl Ctx {
    fn new(path: &std::path::Path) -> Ctx {
        let p = path.to_str().unwrap();
        unsafe {
            let mut sh: *mut wic_tna_shared = std::ptr::null_mut();
            assert_eq!(wic_tna_shared_new_anonymous(&mut sh), WIC_TNA_STATUS_OK);
            let mut ctx: *mut wic_tna_ctx = std::ptr::null_mut();
            assert_eq!(
                wic_tna_ctx_new(p.as_ptr() as _, p.len(), sh, &mut ctx),
                WIC_TNA_STATUS_OK
            );
            Ctx { sh, ctx }
        }
    }

    fn verify(&self, auth: &str, to: &str) -> String {
        unsafe {
            let mut r: *mut wic_tna_result = std::ptr::null_mut();
            assert_eq!(
                wic_tna_verify(
                    self.ctx,
                    auth.as_ptr() as _,
                    auth.len(),
                    to.as_ptr() as _,
                    to.len(),
                    600,
                    &mut r
                ),
                WIC_TNA_STATUS_OK
            );
            let reason = view(wic_tna_result_reason(r));
            wic_tna_result_free(r);
            reason
        }
    }

    fn metrics(&self) -> String {
        unsafe {
            let mut need = 0usize;
            assert_eq!(
                wic_tna_ctx_metrics_text(self.ctx, std::ptr::null_mut(), 0, &mut need),
                WIC_TNA_STATUS_BUFFER_TOO_SMALL
            );
            let mut buf = vec![b'X'; need + 1];
            let mut n = 0usize;
            assert_eq!(
                wic_tna_ctx_metrics_text(self.ctx, buf.as_mut_ptr() as _, need, &mut n),
                WIC_TNA_STATUS_BUFFER_TOO_SMALL
            );
            assert_eq!((n, buf[0]), (need, b'X'), "nothing copied when short");
            assert_eq!(
                wic_tna_ctx_metrics_text(self.ctx, buf.as_mut_ptr() as _, need + 1, &mut n),
                WIC_TNA_STATUS_OK
            );
            assert_eq!(n, need);
            assert_eq!(buf[n], 0, "NUL-terminated");
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    fn total(&self, reason: &str) -> u64 {
        let i = (0..wic_tna_reason_count())
            .find(|&i| view(wic_tna_reason_name(i)) == reason)
            .unwrap();
        let mut t = u64::MAX;
        assert_eq!(
            unsafe { wic_tna_ctx_reason_total(self.ctx, i, &mut t) },
            WIC_TNA_STATUS_OK
        );
        t
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        unsafe {
            wic_tna_ctx_free(self.ctx);
            wic_tna_shared_free(self.sh);
        }
    }
}

fn view(s: wic_tna_str) -> String {
    // SAFETY: library views are NUL-terminated and live long enough here.
    let c = unsafe { CStr::from_ptr(s.ptr) };
    assert_eq!(c.to_bytes().len(), s.len);
    c.to_str().unwrap().to_string()
}

/// The value of one sample line of `text`, None when absent.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn checks(text: &str, iss: &str, reason: &str) -> Option<u64> {
    sample(
        text,
        &format!("wic_tna_checks_total{{issuer=\"{iss}\",reason=\"{reason}\"}}"),
    )
}

#[test]
fn reason_names_are_the_fixed_list_in_order() {
    assert_eq!(wic_tna_reason_count(), wic_tna::Reason::ALL.len());
    for (i, r) in wic_tna::Reason::ALL.iter().enumerate() {
        assert_eq!(view(wic_tna_reason_name(i)), r.name());
    }
    assert_eq!(view(wic_tna_reason_name(0)), "ok");
    assert_eq!(view(wic_tna_reason_name(wic_tna_reason_count())), "");
    assert_eq!(view(wic_tna_reason_name(usize::MAX)), "");
}

#[test]
fn totals_and_metrics_follow_the_checks_per_issuer_and_reason() {
    let (_d, path) = temp_config(|t| t);
    let c = Ctx::new(&path);
    let m0 = c.metrics();
    // every configured issuer and "-", every reason, zeros included
    for iss in [A, B, "-"] {
        for r in wic_tna::Reason::ALL {
            assert_eq!(checks(&m0, iss, r.name()), Some(0), "{iss} {}", r.name());
        }
    }
    assert!(m0.contains("# TYPE wic_tna_checks_total counter\n"), "{m0}");
    assert_eq!(
        sample(&m0, &format!("wic_tna_issuer_barred{{issuer=\"{A}\"}}")),
        Some(0)
    );

    let ok = format!("Bearer {}", token_a(|_| {}));
    assert_eq!(c.verify(&ok, IMPU_A), "ok");
    assert_eq!(c.verify(&ok, IMPU_A), "ok");
    let outside = format!(
        "Bearer {}",
        token_a(|r| r.impi = "mallory@elsewhere.example".into())
    );
    assert_eq!(c.verify(&outside, IMPU_A), "impi_outside_pool");
    assert_eq!(c.verify("Bearer a.b", IMPU_A), "malformed_token");

    let m = c.metrics();
    assert_eq!(checks(&m, A, "ok"), Some(2), "{m}");
    assert_eq!(checks(&m, A, "impi_outside_pool"), Some(1));
    assert_eq!(checks(&m, B, "ok"), Some(0));
    assert_eq!(checks(&m, "-", "malformed_token"), Some(1));
    assert_eq!(c.total("ok"), 2);
    assert_eq!(c.total("impi_outside_pool"), 1);
    assert_eq!(c.total("malformed_token"), 1);
    assert_eq!(c.total("bad_signature"), 0);

    // barring shows at once
    let b = B.as_bytes();
    assert_eq!(
        unsafe { wic_tna_ctx_set_barred(c.ctx, b.as_ptr() as _, b.len(), true) },
        WIC_TNA_STATUS_OK
    );
    let m = c.metrics();
    assert_eq!(
        sample(&m, &format!("wic_tna_issuer_barred{{issuer=\"{B}\"}}")),
        Some(1)
    );
}

#[test]
fn an_issuer_added_by_a_reload_is_listed() {
    let (_d, path) = temp_config(|t| t);
    let c = Ctx::new(&path);
    // (quotes, backslashes and spaces are refused in an iss by the
    // configuration; the escaping of label values is unit-tested in
    // src/metrics.rs)
    let added = "https://x.example";
    assert!(!c.metrics().contains("x.example"));
    let text = std::fs::read_to_string(&path).unwrap();
    let add = format!(
        "{text}\n[[issuer]]\niss = {added:?}\nimpi_patterns = [\"*@x.example\"]\n  [[issuer.key]]\n  secret_file = \"{}\"\n  algorithms = [\"HS256\"]\n",
        root().join("tests/fixtures/keys/issuer-a-hmac.secret").display()
    );
    std::fs::write(&path, add).unwrap();
    assert_eq!(unsafe { wic_tna_ctx_reload(c.ctx) }, WIC_TNA_STATUS_OK);
    let m = c.metrics();
    assert_eq!(checks(&m, added, "ok"), Some(0), "{m}");
    // no line starts anywhere but at a metric name or a comment
    for l in m.lines() {
        assert!(l.starts_with("wic_tna_") || l.starts_with("# "), "{l}");
    }
}

#[test]
fn null_and_out_of_range_arguments_are_errors_that_write_nothing() {
    let (_d, path) = temp_config(|t| t);
    let c = Ctx::new(&path);
    unsafe {
        let mut n = 77usize;
        let mut buf = [0u8; 16];
        assert_eq!(
            wic_tna_ctx_metrics_text(std::ptr::null(), buf.as_mut_ptr() as _, 16, &mut n),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!(n, 77);
        assert_eq!(
            wic_tna_ctx_metrics_text(c.ctx, buf.as_mut_ptr() as _, 16, std::ptr::null_mut()),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            wic_tna_ctx_metrics_text(c.ctx, std::ptr::null_mut(), 16, &mut n),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        let mut t = 5u64;
        assert_eq!(
            wic_tna_ctx_reason_total(std::ptr::null(), 0, &mut t),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            wic_tna_ctx_reason_total(c.ctx, 0, std::ptr::null_mut()),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            wic_tna_ctx_reason_total(c.ctx, wic_tna_reason_count(), &mut t),
            WIC_TNA_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(t, 5, "not written on error");
    }
}

impl Ctx {
    fn issuers(&self) -> Vec<String> {
        unsafe {
            let mut n = usize::MAX;
            assert_eq!(
                wic_tna_ctx_issuer_count(self.ctx, &mut n),
                WIC_TNA_STATUS_OK
            );
            (0..n)
                .map(|i| {
                    let mut need = 0usize;
                    assert_eq!(
                        wic_tna_ctx_issuer_name(self.ctx, i, std::ptr::null_mut(), 0, &mut need),
                        WIC_TNA_STATUS_BUFFER_TOO_SMALL
                    );
                    let mut buf = vec![b'X'; need + 1];
                    let mut len = 0usize;
                    assert_eq!(
                        wic_tna_ctx_issuer_name(
                            self.ctx,
                            i,
                            buf.as_mut_ptr() as _,
                            need + 1,
                            &mut len
                        ),
                        WIC_TNA_STATUS_OK
                    );
                    assert_eq!((len, buf[len]), (need, 0), "NUL-terminated");
                    String::from_utf8(buf[..len].to_vec()).unwrap()
                })
                .collect()
        }
    }

    fn issuer_total(&self, iss: &str, reason: &str) -> Result<u64, wic_tna_status> {
        let i = (0..wic_tna_reason_count())
            .find(|&i| view(wic_tna_reason_name(i)) == reason)
            .unwrap();
        let mut t = u64::MAX;
        let st = unsafe {
            wic_tna_ctx_issuer_reason_total(self.ctx, iss.as_ptr() as _, iss.len(), i, &mut t)
        };
        if st == WIC_TNA_STATUS_OK {
            Ok(t)
        } else {
            assert_eq!(t, u64::MAX, "not written on error");
            Err(st)
        }
    }
}

#[test]
fn per_issuer_totals_follow_each_issuers_checks() {
    let (_d, path) = temp_config(|t| t);
    let c = Ctx::new(&path);
    assert_eq!(
        c.issuers(),
        vec![A.to_string(), B.to_string(), "-".to_string()]
    );
    for iss in [A, B, "-"] {
        for r in wic_tna::Reason::ALL {
            assert_eq!(c.issuer_total(iss, r.name()), Ok(0), "{iss} {}", r.name());
        }
    }
    let ok = format!("Bearer {}", token_a(|_| {}));
    assert_eq!(c.verify(&ok, IMPU_A), "ok");
    assert_eq!(c.verify(&ok, IMPU_A), "ok");
    let outside = format!(
        "Bearer {}",
        token_a(|r| r.impi = "mallory@elsewhere.example".into())
    );
    assert_eq!(c.verify(&outside, IMPU_A), "impi_outside_pool");
    assert_eq!(c.verify("Bearer a.b", IMPU_A), "malformed_token");

    assert_eq!(c.issuer_total(A, "ok"), Ok(2));
    assert_eq!(c.issuer_total(A, "impi_outside_pool"), Ok(1));
    assert_eq!(c.issuer_total(B, "ok"), Ok(0));
    assert_eq!(c.issuer_total(B, "impi_outside_pool"), Ok(0));
    assert_eq!(c.issuer_total("-", "malformed_token"), Ok(1));
    assert_eq!(c.issuer_total(A, "malformed_token"), Ok(0));
    // the same numbers as /metrics, and the totals are their sums
    let m = c.metrics();
    for iss in [A, B, "-"] {
        for r in wic_tna::Reason::ALL {
            assert_eq!(
                c.issuer_total(iss, r.name()).ok(),
                checks(&m, iss, r.name())
            );
        }
    }
    for r in wic_tna::Reason::ALL {
        let sum: u64 = [A, B, "-"]
            .iter()
            .map(|i| c.issuer_total(i, r.name()).unwrap())
            .sum();
        assert_eq!(sum, c.total(r.name()), "{}", r.name());
    }
}

#[test]
fn per_issuer_unknown_issuer_and_bad_arguments_fail_closed() {
    let (_d, path) = temp_config(|t| t);
    let c = Ctx::new(&path);
    let ok = format!("Bearer {}", token_a(|_| {}));
    assert_eq!(c.verify(&ok, IMPU_A), "ok");
    assert_eq!(
        c.issuer_total("https://unknown.example", "ok"),
        Err(WIC_TNA_STATUS_NOT_FOUND)
    );
    let mut buf = [0u8; 512];
    let mut n = 0usize;
    assert_eq!(
        unsafe { wic_tna_last_error(buf.as_mut_ptr() as _, buf.len(), &mut n) },
        WIC_TNA_STATUS_OK
    );
    let e = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(e.contains("unknown.example"), "{e}");
    // a prefix or a case variant of a configured issuer is not that issuer
    assert_eq!(
        c.issuer_total(&A[..A.len() - 1], "ok"),
        Err(WIC_TNA_STATUS_NOT_FOUND)
    );
    assert_eq!(
        c.issuer_total(&A.to_uppercase(), "ok"),
        Err(WIC_TNA_STATUS_NOT_FOUND)
    );
    unsafe {
        let mut t = 5u64;
        let a = A.as_bytes();
        assert_eq!(
            wic_tna_ctx_issuer_reason_total(std::ptr::null(), a.as_ptr() as _, a.len(), 0, &mut t),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            wic_tna_ctx_issuer_reason_total(c.ctx, std::ptr::null(), 0, 0, &mut t),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            wic_tna_ctx_issuer_reason_total(
                c.ctx,
                a.as_ptr() as _,
                a.len(),
                0,
                std::ptr::null_mut()
            ),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            wic_tna_ctx_issuer_reason_total(
                c.ctx,
                a.as_ptr() as _,
                a.len(),
                wic_tna_reason_count(),
                &mut t
            ),
            WIC_TNA_STATUS_INVALID_ARGUMENT
        );
        let bad = [0xffu8, 0xfe];
        assert_eq!(
            wic_tna_ctx_issuer_reason_total(c.ctx, bad.as_ptr() as _, 2, 0, &mut t),
            WIC_TNA_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(t, 5, "not written on error");
        let mut n = 9usize;
        assert_eq!(
            wic_tna_ctx_issuer_count(std::ptr::null(), &mut n),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            wic_tna_ctx_issuer_count(c.ctx, std::ptr::null_mut()),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!(n, 9);
        let mut buf = [b'X'; 64];
        assert_eq!(
            wic_tna_ctx_issuer_name(c.ctx, 3, buf.as_mut_ptr() as _, 64, &mut n),
            WIC_TNA_STATUS_NOT_FOUND
        );
        assert_eq!(
            wic_tna_ctx_issuer_name(c.ctx, 0, buf.as_mut_ptr() as _, 64, std::ptr::null_mut()),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            wic_tna_ctx_issuer_name(c.ctx, 0, std::ptr::null_mut(), 64, &mut n),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            wic_tna_ctx_issuer_name(std::ptr::null(), 0, buf.as_mut_ptr() as _, 64, &mut n),
            WIC_TNA_STATUS_NULL_ARGUMENT
        );
        assert_eq!((n, buf[0]), (9, b'X'), "nothing written on error");
    }
}

#[test]
fn per_issuer_issuers_follow_a_reload() {
    let (_d, path) = temp_config(|t| t);
    let c = Ctx::new(&path);
    let added = "https://x.example";
    assert_eq!(c.issuer_total(added, "ok"), Err(WIC_TNA_STATUS_NOT_FOUND));
    let text = std::fs::read_to_string(&path).unwrap();
    let add = format!(
        "{text}\n[[issuer]]\niss = {added:?}\nimpi_patterns = [\"*@x.example\"]\n  [[issuer.key]]\n  secret_file = \"{}\"\n  algorithms = [\"HS256\"]\n",
        root().join("tests/fixtures/keys/issuer-a-hmac.secret").display()
    );
    std::fs::write(&path, add).unwrap();
    assert_eq!(unsafe { wic_tna_ctx_reload(c.ctx) }, WIC_TNA_STATUS_OK);
    assert_eq!(
        c.issuers(),
        vec![
            A.to_string(),
            B.to_string(),
            added.to_string(),
            "-".to_string()
        ]
    );
    assert_eq!(c.issuer_total(added, "ok"), Ok(0));
}
