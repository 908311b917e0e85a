"""The load test's verdicts on made-up calls: each kind of failure it exists
to catch is caught (no Kamailio, no sipp needed)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))

from loadtest import analyse, expected, rotate  # noqa: E402
import loadtokens as L  # noqa: E402

T = 1_000_000.0


def call(rid, status, sent, cid=None, phrase=""):
    return {"row": rid, "call_id": cid or rid + "@x", "status": status,
            "phrase": phrase, "sent": sent, "answered": sent + 0.002,
            "cls": L.row_class(rid)}


def run(calls, scscf=(), ep=(), events=None):
    rows = [(c["row"],) for c in calls]
    recs = {c["row"]: c for c in calls}
    return analyse(rows, recs, set(scscf), set(ep), events or {})


def test_clean_run_passes():
    r = run([call("p.u.v-ed.0", "200", T),
             call("p.u.h-expired.1", "401", T, phrase="Unauthorized (expired)")],
            scscf=["p.u.v-ed.0@x"], ep=["p.u.v-ed.0@x"])
    assert not r["false_accepts"] and not r["false_refusals"]
    assert r["valid_accepted"] == 1 and r["hostile_refused"] == 1
    assert not r["wrong_reason"]


def test_refusal_for_another_reason_is_flagged():
    # e.g. an expired token refused as malformed: not the check meant for it
    r = run([call("p.u.h-expired.0", "401", T,
                  phrase="Unauthorized (malformed_token)")])
    assert len(r["wrong_reason"]) == 1 and not r["false_accepts"]
    # a token over max_token_size: token_too_large, not an internal error
    r = run([call("p.u.h-too-large.0", "500", T,
                  phrase="Server Internal Error (ok)")])
    assert len(r["wrong_reason"]) == 1
    r = run([call("p.u.h-too-large.0", "401", T,
                  phrase="Unauthorized (token_too_large)")])
    assert not r["wrong_reason"]


def test_hostile_answered_200_is_a_false_accept():
    r = run([call("p.u.h-tampered.0", "200", T)])
    assert len(r["false_accepts"]) == 1


def test_hostile_reaching_the_scscf_is_a_false_accept():
    # even when the client saw a refusal (or nothing)
    r = run([call("p.u.h-alg-none.0", "403", T),
             call("p.u.h-garbage.1", "TIMEOUT", T)],
            scscf=["p.u.h-alg-none.0@x", "p.u.h-garbage.1@x"])
    assert len(r["false_accepts"]) == 2


def test_hostile_logged_accepted_by_the_epcscf_is_a_false_accept():
    r = run([call("p.u.h-aud.0", "401", T)], ep=["p.u.h-aud.0@x"])
    assert len(r["false_accepts"]) == 1


def test_valid_refused():
    r = run([call("p.u.v-rs256.0", "401", T)])
    assert len(r["false_refusals"]) == 1


def test_timeout_outside_the_gap_fails_inside_is_counted():
    r = run([call("p.u.v-ed.0", "TIMEOUT", T)])
    assert len(r["unanswered"]) == 1
    r = run([call("p.u.v-ed.0", "TIMEOUT", T + 5)],
            events={"gap": (T + 4, T + 6)})
    assert not r["unanswered"] and r["valid_timeouts_in_gap"] == 1
    # a call answered in the gap is still judged
    r = run([call("p.u.h-expired.0", "200", T + 5)],
            events={"gap": (T + 4, T + 6)})
    assert len(r["false_accepts"]) == 1


def test_missing_log_line_is_unexplained():
    rows = [("p.u.v-ed.0",)]
    r = analyse(rows, {}, set(), set(), {})
    assert len(r["unexplained"]) == 1


def test_rotation_expectations():
    ev = {"rotation": (T, T + 0.1)}
    # answered before the reload started: the old configuration
    assert expected("v-es256-old", T - 5, T - 4.9, ev) == "accept"
    assert expected("v-es256-new", T - 5, T - 4.9, ev) == "refuse"
    # sent after it returned: the new one
    assert expected("v-es256-old", T + 0.5, T + 0.51, ev) == "refuse"
    assert expected("v-refresh-old", T + 0.5, T + 0.51, ev) == "refuse"
    assert expected("v-es256-new", T + 0.5, T + 0.51, ev) == "accept"
    # in flight meanwhile (or queued from before): either
    assert expected("v-es256-new", T, T + 0.2, ev) == "either"
    assert expected("v-es256-old", T - 3, T + 0.2, ev) == "either"
    assert expected("v-es256-new", T - 3, None, ev) == "either"
    assert expected("v-es256-new", T, T + 1, {"rotated": True}) == "accept"
    assert expected("v-es256-old", T, T + 1, {}) == "accept"
    assert expected("h-tampered", T, T + 1, ev) == "refuse"
    # an old-key token accepted after the rotation (e.g. still cached)
    r = run([call("p.u.v-refresh-old.0", "200", T + 2)], events=ev)
    assert len(r["false_accepts"]) == 1
    # a new-key token refused after it
    r = run([call("p.u.v-es256-new.0", "401", T + 2)], events=ev)
    assert len(r["false_refusals"]) == 1


def test_every_class_has_an_expectation():
    for cls in L.VALID_A + L.VALID_B + L.HOSTILE:
        assert L.expectation(cls) in ("accept", "refuse", "old", "new")
    for cls in L.HOSTILE:
        assert L.expectation(cls) == "refuse"
        assert cls in L.REASONS


def test_rotation_replaces_exactly_the_old_kid():
    text = (HERE.parent.parent / "config" / "wic-tna.toml").read_text()
    out = rotate(text, "/x/new.pem")
    assert 'kid = "a-es256"' not in out
    assert 'kid = "%s"' % L.NEW_KID in out and '"/x/new.pem"' in out
    for kid in ("a-hs256", "a-rsa", "a-cert", "a-es384", "a-ed", "b-hs256"):
        assert 'kid = "%s"' % kid in out


def test_sipp_log_with_empty_microseconds(tmp_path):
    # sipp writes a gettimeofday microseconds value of 0 as an empty field
    from loadtest import Client
    c = Client.__new__(Client)
    c.calls_log = tmp_path / "calls.log"
    c.calls_log.write_text(
        "R|p.u.v-ed.0|1-2@x|200|OK|1000.000000|5.000000|1001.000000|\n"
        "R|p.u.v-ed.1|1-3@x|401|Unauthorized (expired)|1002.000000|"
        "|1002.000000|250.000000\n")
    recs = c.records()
    assert recs["p.u.v-ed.0"]["answered"] == 1001.0
    assert recs["p.u.v-ed.0"]["sent"] == 1000.000005
    assert recs["p.u.v-ed.1"]["sent"] == 1002.0
    assert recs["p.u.v-ed.1"]["phrase"] == "Unauthorized (expired)"
