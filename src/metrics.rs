//! The counters of the shared state in the Prometheus text exposition
//! format (version 0.0.4): the one renderer behind `/metrics` of every
//! proxy module (`wic_tna_ctx_metrics_text`).
//!
//! What it reads is what the shared state already keeps (counters per
//! issuer and reason, the remote trust counters and times per issuer,
//! barring); rendering it is the only work, done when scraped, never per
//! request.

use crate::core::reason::Reason;
use std::fmt::Write;

/// What one issuer's series are made of.
#[derive(Clone, Debug, Default)]
pub struct IssuerSnapshot {
    /// The `issuer` label: the configured `iss`, or `-` for outcomes with
    /// no configured issuer (no token, unknown issuer, malformed).
    pub iss: String,
    /// Barred now (configuration or run time); `None` for `-`.
    pub barred: Option<bool>,
    /// Outcomes, indexed as [`Reason::ALL`].
    pub counts: Vec<u64>,
    /// The remote trust counters and values that apply to this issuer
    /// (name, value); empty when it has no `jwks_url`, introspection or
    /// discovery.
    pub remote: Vec<(&'static str, u64)>,
}

/// Everything rendered: every configured issuer, then `-`.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Per issuer.
    pub issuers: Vec<IssuerSnapshot>,
    /// The reload generation of the shared state.
    pub reload_generation: u64,
}

/// One remote trust series: its metric name, type and help, keyed by the
/// name the stats JSON gives it.
struct RemoteMetric {
    key: &'static str,
    metric: &'static str,
    kind: &'static str,
    help: &'static str,
}

/// The remote trust series, in the order rendered.
const REMOTE: [RemoteMetric; 16] = [
    RemoteMetric {
        key: "jwks_fetch_ok",
        metric: "wic_tna_jwks_fetch_ok_total",
        kind: "counter",
        help: "Key set (jwks_url) fetches answered 200 with a usable set, by the refresher.",
    },
    RemoteMetric {
        key: "jwks_not_modified",
        metric: "wic_tna_jwks_not_modified_total",
        kind: "counter",
        help: "Key set fetches answered 304 (the set confirmed).",
    },
    RemoteMetric {
        key: "jwks_fetch_failed",
        metric: "wic_tna_jwks_fetch_failed_total",
        kind: "counter",
        help: "Key set fetches that failed (connection, timeout, status, size): the last good set stays in use up to max_stale.",
    },
    RemoteMetric {
        key: "jwks_rejected",
        metric: "wic_tna_jwks_rejected_total",
        kind: "counter",
        help: "Key sets fetched but refused (do not parse as a key set for the configured algorithms): never published.",
    },
    RemoteMetric {
        key: "jwks_refetch_unknown_kid",
        metric: "wic_tna_jwks_refetch_unknown_kid_total",
        kind: "counter",
        help: "Key set re-fetches asked for by a token with an unknown kid.",
    },
    RemoteMetric {
        key: "jwks_generation",
        metric: "wic_tna_jwks_generation",
        kind: "gauge",
        help: "Generation of the key set in use (bumped when a changed set is published; 0: none yet).",
    },
    RemoteMetric {
        key: "jwks_fetched_at",
        metric: "wic_tna_jwks_fetched_at_seconds",
        kind: "gauge",
        help: "Unix time the key set was last fetched or confirmed (0: never).",
    },
    RemoteMetric {
        key: "metadata_fetch_ok",
        metric: "wic_tna_metadata_fetch_ok_total",
        kind: "counter",
        help: "Authorization server metadata (discovery) fetches that succeeded.",
    },
    RemoteMetric {
        key: "metadata_fetch_failed",
        metric: "wic_tna_metadata_fetch_failed_total",
        kind: "counter",
        help: "Authorization server metadata fetches that failed or were refused.",
    },
    RemoteMetric {
        key: "metadata_generation",
        metric: "wic_tna_metadata_generation",
        kind: "gauge",
        help: "Generation of the metadata in use (0: none yet).",
    },
    RemoteMetric {
        key: "metadata_fetched_at",
        metric: "wic_tna_metadata_fetched_at_seconds",
        kind: "gauge",
        help: "Unix time the metadata was last fetched or confirmed (0: never).",
    },
    RemoteMetric {
        key: "introspection_calls",
        metric: "wic_tna_introspection_calls_total",
        kind: "counter",
        help: "Introspection (RFC 7662) calls made by the SIP workers.",
    },
    RemoteMetric {
        key: "introspection_failed",
        metric: "wic_tna_introspection_failed_total",
        kind: "counter",
        help: "Introspection calls that failed (answered 500 introspection_unavailable).",
    },
    RemoteMetric {
        key: "introspection_cache_hits",
        metric: "wic_tna_introspection_cache_hits_total",
        kind: "counter",
        help: "Reference tokens answered from a process's introspection cache.",
    },
    RemoteMetric {
        key: "introspection_breaker_open",
        metric: "wic_tna_introspection_breaker_open_total",
        kind: "counter",
        help: "Introspection requests refused at once by the open circuit breaker.",
    },
    RemoteMetric {
        key: "breaker_open_until",
        metric: "wic_tna_introspection_breaker_open_until_seconds",
        kind: "gauge",
        help: "Unix time until which the introspection circuit breaker is open (0: closed).",
    },
];

/// A label value with `\`, `"` and line feed escaped, as the text format
/// requires.
pub fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn header(out: &mut String, metric: &str, kind: &str, help: &str) {
    // HELP text escapes only '\' and line feed; ours has neither.
    let _ = writeln!(out, "# HELP {metric} {help}");
    let _ = writeln!(out, "# TYPE {metric} {kind}");
}

fn sample(out: &mut String, metric: &str, iss: &str, extra: Option<(&str, &str)>, v: u64) {
    out.push_str(metric);
    out.push_str("{issuer=\"");
    escape_label_value(iss, out);
    out.push('"');
    if let Some((k, val)) = extra {
        out.push(',');
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(val, out);
        out.push('"');
    }
    let _ = writeln!(out, "}} {v}");
}

/// The text exposition of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(256 + s.issuers.len() * Reason::ALL.len() * 96);
    header(
        &mut out,
        "wic_tna_checks_total",
        "counter",
        "Token checks by issuer (authorization entity; - when none is known) and outcome reason (ok, or why refused), summed over every process sharing the state.",
    );
    for i in &s.issuers {
        for (k, r) in Reason::ALL.iter().enumerate() {
            let v = i.counts.get(k).copied().unwrap_or(0);
            sample(
                &mut out,
                "wic_tna_checks_total",
                &i.iss,
                Some(("reason", r.name())),
                v,
            );
        }
    }
    header(
        &mut out,
        "wic_tna_issuer_barred",
        "gauge",
        "1 when the issuer is barred now (configuration or run time: kamcmd wic_tna.bar), else 0.",
    );
    for i in &s.issuers {
        if let Some(b) = i.barred {
            sample(
                &mut out,
                "wic_tna_issuer_barred",
                &i.iss,
                None,
                u64::from(b),
            );
        }
    }
    for m in &REMOTE {
        let mut first = true;
        for i in &s.issuers {
            if let Some((_, v)) = i.remote.iter().find(|(k, _)| *k == m.key) {
                if first {
                    header(&mut out, m.metric, m.kind, m.help);
                    first = false;
                }
                sample(&mut out, m.metric, &i.iss, None, *v);
            }
        }
    }
    header(
        &mut out,
        "wic_tna_reload_generation",
        "gauge",
        "Configuration reloads made through the shared state.",
    );
    let _ = writeln!(out, "wic_tna_reload_generation {}", s.reload_generation);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(v: &str) -> String {
        let mut s = String::new();
        escape_label_value(v, &mut s);
        s
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(esc("https://a.example"), "https://a.example");
        assert_eq!(esc("a\\b"), "a\\\\b");
        assert_eq!(esc("a\"b"), "a\\\"b");
        assert_eq!(esc("a\nb"), "a\\nb");
        assert_eq!(esc("\\\"\n"), "\\\\\\\"\\n");
    }

    #[test]
    fn every_reason_of_every_issuer_with_help_and_type() {
        let mut counts = vec![0; Reason::ALL.len()];
        counts[Reason::ImpiOutsidePool.index()] = 7;
        let s = Snapshot {
            issuers: vec![
                IssuerSnapshot {
                    iss: "https://a".into(),
                    barred: Some(true),
                    counts,
                    remote: vec![("jwks_fetch_failed", 3), ("jwks_fetched_at", 1700)],
                },
                IssuerSnapshot {
                    iss: "-".into(),
                    barred: None,
                    counts: vec![0; Reason::ALL.len()],
                    remote: vec![],
                },
            ],
            reload_generation: 2,
        };
        let t = render(&s);
        assert!(t.starts_with("# HELP wic_tna_checks_total "), "{t}");
        assert!(t.contains("# TYPE wic_tna_checks_total counter\n"), "{t}");
        assert!(t.contains(
            "\nwic_tna_checks_total{issuer=\"https://a\",reason=\"impi_outside_pool\"} 7\n"
        ));
        assert!(t.contains("\nwic_tna_checks_total{issuer=\"-\",reason=\"ok\"} 0\n"));
        for r in Reason::ALL {
            assert!(t.contains(&format!(
                "wic_tna_checks_total{{issuer=\"https://a\",reason=\"{}\"}} ",
                r.name()
            )));
        }
        assert_eq!(
            t.matches("wic_tna_checks_total{").count(),
            2 * Reason::ALL.len()
        );
        assert!(t.contains("\nwic_tna_issuer_barred{issuer=\"https://a\"} 1\n"));
        assert!(!t.contains("wic_tna_issuer_barred{issuer=\"-\"}"));
        assert!(t.contains("# TYPE wic_tna_jwks_fetch_failed_total counter\n"));
        assert!(t.contains("\nwic_tna_jwks_fetch_failed_total{issuer=\"https://a\"} 3\n"));
        assert!(t.contains("# TYPE wic_tna_jwks_fetched_at_seconds gauge\n"));
        // no header without a series
        assert!(!t.contains("wic_tna_introspection_calls_total"));
        assert!(t.ends_with("wic_tna_reload_generation 2\n"));
        // every line is a comment or "name{labels} value" / "name value"
        for line in t.lines() {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line
                        .rsplit_once(' ')
                        .is_some_and(|(_, v)| v.parse::<u64>().is_ok()),
                "{line}"
            );
        }
    }

    #[test]
    fn a_hostile_issuer_name_cannot_break_out_of_its_label() {
        let s = Snapshot {
            issuers: vec![IssuerSnapshot {
                iss: "x\"} 999\nwic_tna_checks_total{issuer=\"y".into(),
                barred: Some(false),
                counts: vec![0; Reason::ALL.len()],
                remote: vec![],
            }],
            reload_generation: 0,
        };
        let t = render(&s);
        assert!(!t.contains("\nwic_tna_checks_total{issuer=\"y"), "{t}");
        assert!(t.contains("issuer=\"x\\\"} 999\\nwic_tna_checks_total{issuer=\\\"y\""));
        assert_eq!(
            t.lines().filter(|l| !l.starts_with('#')).count(),
            Reason::ALL.len() + 2
        );
    }
}
