"""End to end with real browsers as WebRTC IMS Clients (issue 16): Debian's
headless chromium, driven by playwright-core (tests/browser/wic.mjs), runs
JsSIP and SIP.js pages served from the WWSF's origin
(https://webrtc.socialnet.example, by request interception: nothing leaves
the machine); they get their tokens from the page's own /token endpoint and
register over secure WebSocket with the eP-CSCF (native module), which
forwards to the S-CSCF. Each case asserts what the page saw and what
reached the S-CSCF.

Needs node, chromium and tests/browser/node_modules (npm ci --prefix
tests/browser); without them the module is skipped."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from harness import ORIGIN_A, ORIGIN_B, REPO, Deployment, tls_files
from tokens import identity

BROWSER_DIR = REPO / "tests" / "browser"
DRIVER = BROWSER_DIR / "wic.mjs"
CHROMIUM = os.environ.get("WIC_CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")
MINT = REPO / "tests" / "e2e" / "mint_token.py"


def _missing():
    out = []
    if not NODE:
        out.append("node")
    if not os.access(CHROMIUM, os.X_OK):
        out.append("%s (apt-get install chromium)" % CHROMIUM)
    for pkg in ("jssip", "sip.js", "playwright-core", "esbuild"):
        if not (BROWSER_DIR / "node_modules" / pkg / "package.json").exists():
            out.append("tests/browser/node_modules/%s (npm ci --prefix "
                       "tests/browser)" % pkg)
            break
    return out


pytestmark = pytest.mark.skipif(
    bool(_missing()),
    reason="browser WICs need " + ", ".join(_missing()))

ALICE_IMPI, ALICE = identity("a", "alice")
BOB_IMPI, BOB = identity("a", "bob")


@pytest.fixture
def deployment(request, workdir):
    """start(**kw) -> a running eP-CSCF + S-CSCF (Deployment(workdir, **kw),
    native module), stopped at the end of the test. The one place where
    the browser tests make their deployment."""
    started = []

    def start(**kw):
        kw.setdefault("core", "ims")
        dep = Deployment(workdir / ("dep%d" % len(started)), **kw)
        started.append(dep)
        dep.start()
        return dep
    yield start
    rep = getattr(request.node, "rep_call", None)
    for dep in started:
        dep.stop()
        if rep is not None and rep.failed:
            print(dep.logs())


def wic(name, user=None, lib="jssip", origin=ORIGIN_A, lifetimes=(300,),
        issuer="a", **extra):
    """One WIC of a scenario: its page's origin, library, IMPU and the
    tokens its page gets (one lifetime per fetch, the last repeated)."""
    user = user or name
    w = {"name": name, "lib": lib, "origin": origin,
         "uri": identity(issuer, user)[1],
         "token_queries": ["issuer=%s&user=%s&lifetime=%d" % (issuer, user, lt)
                           for lt in lifetimes]}
    w.update(extra)
    return w


def run_wics(dep, wics, steps, timeout=60, fail_on=({"event": "error"},)):
    """Run tests/browser/wic.mjs with this scenario against dep's WSS
    listener; the events it printed (asserts it finished all steps)."""
    scenario = {
        "wss": "wss://127.0.0.1:%d" % dep.ep_wss,
        "timeout": timeout,
        # the browser trusts the eP-CSCF's throw-away certificate
        "trust_cert": str(tls_files()[0]),
        "token_command": [sys.executable, str(MINT)],
        "fail_on": list(fail_on),
        "wics": wics,
        "steps": steps,
    }
    started = time.monotonic()
    r = subprocess.run([NODE, str(DRIVER), "-"], input=json.dumps(scenario),
                       capture_output=True, text=True, timeout=timeout + 30,
                       cwd=str(REPO))
    events = []
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    assert r.returncode == 0, "wic.mjs exited %s after %.1f s: %s\n%s\n%s" % (
        r.returncode, time.monotonic() - started, r.stderr.strip(),
        "\n".join(json.dumps(e) for e in events), dep.logs())
    return events


def of(events, event, wic=None, **fields):
    return [e for e in events if e["event"] == event
            and (wic is None or e.get("wic") == wic)
            and all(e.get(k) == v for k, v in fields.items())]


def header(msg, name):
    """Values of header `name` in a raw SIP message."""
    out = []
    for line in msg.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        n, _, v = line.partition(":")
        if n.strip().lower() == name.lower():
            out.append(v.strip())
    return out


def cseq(msg):
    return int(header(msg, "CSeq")[0].split()[0])


def registers_at_scscf(dep, call_id):
    return [m for m in dep.scscf_msgs(call_id) if m.startswith("REGISTER ")]


def assert_tna_only(msg, impi):
    """The REGISTER at the S-CSCF carries the TNA header for impi, and
    nothing of the client's token."""
    auth = header(msg, "Authorization")
    assert len(auth) == 1, msg
    assert auth[0].startswith("Digest "), auth
    assert 'username="%s"' % impi in auth[0], auth
    assert "integrity-protected=auth-done" in auth[0], auth
    assert "Bearer" not in msg and "eyJ" not in msg, msg


def test_jssip_registers_over_wss(deployment):
    dep = deployment()
    events = run_wics(dep, [wic("alice")], [
        {"wait": {"event": "registered", "wic": "alice"}, "timeout": 20},
    ])
    (reg,) = of(events, "registered", "alice")
    assert reg["status"] == 200
    assert 0 < reg["contact_expires"] <= 300, reg
    (sent,) = of(events, "registerSent", "alice", cseq=1)
    assert sent["auth"] == "Bearer", sent
    (token,) = of(events, "tokenIssued", "alice")
    assert sent["jti"] == token["jti"]
    assert token["origin"] == ORIGIN_A

    regs = registers_at_scscf(dep, reg["call_id"])
    assert regs, dep.logs()
    assert_tna_only(regs[0], ALICE_IMPI)
    assert cseq(regs[0]) == 1
    tna = dep.scscf_lines("SCSCF-TNA", reg["call_id"])
    assert tna and "impi=%s " % ALICE_IMPI in tna[0], tna


def test_jssip_refreshes_its_registration(deployment):
    """JsSIP's own refresh timer (expires - 5 s for a short registration):
    the refresh, same Call-ID and the next CSeq, is accepted and reaches
    the S-CSCF with the TNA header."""
    dep = deployment()
    events = run_wics(dep, [wic("alice", register_expires=20)], [
        {"wait": {"event": "registerResponse", "wic": "alice", "status": 200},
         "count": 2, "timeout": 35},
    ])
    first, refresh = of(events, "registerResponse", "alice", status=200)[:2]
    assert first["call_id"] == refresh["call_id"]
    assert (first["cseq"], refresh["cseq"]) == (1, 2)
    assert first["contact_expires"] == 20 and refresh["contact_expires"] == 20
    assert refresh["t"] - first["t"] > 10, (first, refresh)
    assert not of(events, "registrationFailed")

    regs = registers_at_scscf(dep, first["call_id"])
    assert [cseq(m) for m in regs][:2] == [1, 2], regs
    for m in regs[:2]:
        assert_tna_only(m, ALICE_IMPI)


def _min_expires_10(text):
    m = re.search(r"(?m)^\[", text)
    return text[:m.start()] + "min_registration_expires = 10\n" + text[m.start():]


def test_expiring_token_is_renewed_by_the_page(deployment):
    """The page's first token lives 25 s (the eP-CSCF, with
    min_registration_expires = 10, grants 25 s); JsSIP refreshes 5 s before
    the end with that token: 401 with the invalid_token challenge; the
    page gets a new token from its WWSF and registers again on the same
    connection, now granted the 120 s it asks for (more than the first
    token had)."""
    dep = deployment(config_transform=_min_expires_10)
    events = run_wics(dep, [wic("alice", lifetimes=(25, 300),
                                register_expires=120)], [
        {"wait": {"event": "registrationFailed", "wic": "alice"},
         "timeout": 40},
        {"wait": {"event": "registered", "wic": "alice"}, "count": 2,
         "timeout": 20},
    ], timeout=80)
    (failed,) = of(events, "registrationFailed", "alice")
    assert failed["status"] == 401, failed
    challenge = failed["www_authenticate"] or ""
    assert challenge.startswith("Bearer "), failed
    assert 'error="invalid_token"' in challenge, failed

    first_token, second_token = of(events, "tokenFetched", "alice")[:2]
    assert first_token["jti"] != second_token["jti"]
    sent = of(events, "registerSent", "alice")
    # cseq 1: first token; 2: the refresh with it (refused); 3: new token
    assert [s["cseq"] for s in sent[:3]] == [1, 2, 3], sent
    assert sent[1]["jti"] == first_token["jti"]
    assert sent[2]["jti"] == second_token["jti"]
    first, again = of(events, "registered", "alice")[:2]
    assert first["contact_expires"] <= 25, first
    assert again["contact_expires"] == 120, again
    assert again["call_id"] == first["call_id"]

    # the S-CSCF saw the first registration and the one with the new
    # token, never the refused refresh
    regs = registers_at_scscf(dep, first["call_id"])
    assert [cseq(m) for m in regs][:2] == [1, 3], regs
    for m in regs[:2]:
        assert_tna_only(m, ALICE_IMPI)
    assert "expires=120" in ";".join(header(regs[1], "Contact")), regs[1]


def test_message_between_two_browser_wics(deployment):
    """alice's page sets a P-Asserted-Identity of its own choosing; bob's
    page sees the one the eP-CSCF asserts (alice's IMPU); bob's 200 comes
    back to alice."""
    dep = deployment()
    mallory = "sip:mallory@socialnet.ims.example.net"
    events = run_wics(dep, [wic("alice"), wic("bob")], [
        {"wait": {"event": "registered", "wic": "alice"}, "timeout": 20},
        {"wait": {"event": "registered", "wic": "bob"}, "timeout": 20},
        {"do": "message", "wic": "alice", "to": BOB, "body": "hello bob",
         "extra_headers": ["P-Asserted-Identity: <%s>" % mallory]},
        {"wait": {"event": "messageReceived", "wic": "bob"}, "timeout": 10},
        {"wait": {"event": "messageSucceeded", "wic": "alice"},
         "timeout": 10},
    ])
    (got,) = of(events, "messageReceived", "bob")
    assert got["body"] == "hello bob"
    assert got["pai"] == ["<%s>" % ALICE], got
    assert "mallory" not in json.dumps(got)
    assert ALICE in got["from"], got
    (ok,) = of(events, "messageSucceeded", "alice")
    assert ok["status"] == 200
    assert ok["call_id"] == got["call_id"]

    msgs = [m for m in dep.scscf_msgs(got["call_id"])
            if m.startswith("MESSAGE ")]
    assert len(msgs) == 1, dep.logs()
    assert header(msgs[0], "P-Asserted-Identity") == ["<%s>" % ALICE], msgs[0]
    assert "mallory" not in msgs[0]
    route = dep.scscf_lines("SCSCF-ROUTE", got["call_id"])
    assert route, dep.logs()


def test_sipjs_registers_with_bearer_extra_header(deployment):
    # bob: a subscriber of the IMS core's test HSS too (carol's IMPI there
    # is not user@domain)
    dep = deployment()
    events = run_wics(dep, [wic("bob", lib="sipjs")], [
        {"wait": {"event": "registered", "wic": "bob"}, "timeout": 20},
    ])
    (reg,) = of(events, "registered", "bob")
    assert reg["status"] == 200
    (started,) = of(events, "started", "bob")
    assert started["lib"] == "sip.js"
    sent = of(events, "registerSent", "bob")
    assert sent[0]["auth"] == "Bearer", sent
    assert sent[0]["jti"] == of(events, "tokenIssued", "bob")[0]["jti"]

    regs = registers_at_scscf(dep, reg["call_id"])
    assert regs, dep.logs()
    assert_tna_only(regs[0], BOB_IMPI)
    # SIP.js's de-registration carries no token: forwarded on the
    # connection that registered, with that registration's TNA header
    if len(sent) > 1 and sent[-1]["contact_expires"] == 0:
        assert sent[-1]["auth"] == "none"
        assert_tna_only(regs[-1], BOB_IMPI)


@pytest.mark.parametrize("origin", [ORIGIN_B, "https://webrtc.unknown.example"],
                         ids=["other-issuers-origin", "unlisted-origin"])
def test_page_on_a_wrong_origin_is_refused(deployment, origin):
    """Issuer A's token on issuer B's page: the handshake is accepted (B
    lists that Origin), the REGISTER refused with 403 origin_not_allowed
    and the WebSocket closed by the eP-CSCF (1008); the page does not
    retry (JsSIP alone would reconnect and REGISTER again). An Origin no
    issuer lists: the handshake itself is refused (403). Either way
    nothing reaches the S-CSCF."""
    dep = deployment()
    if origin == ORIGIN_B:
        wait = {"event": "registrationFailed", "wic": "alice"}
    else:
        wait = {"event": "websocketError", "wic": "alice"}
    events = run_wics(dep, [wic("alice", origin=origin)], [
        {"wait": wait, "timeout": 20},
        # longer than JsSIP's reconnection delay (2 s in the page)
        {"sleep": 2.5},
    ])
    assert of(events, "started", "alice", origin=origin)
    assert not of(events, "registered")
    if origin == ORIGIN_B:
        failed = of(events, "registrationFailed", "alice")[0]
        assert failed["status"] == 403, failed
        assert "origin_not_allowed" in failed["reason"], failed
        assert failed["www_authenticate"] is None, failed
        assert len(of(events, "registerSent", "alice")) == 1, events
        assert of(events, "disconnected", "alice", code=1008), events
    else:
        err = of(events, "websocketError", "alice")[0]
        assert "403" in err["message"], err
        assert not of(events, "registerSent", "alice")
        assert not of(events, "connected", "alice")
        assert dep.ep.wait_log(r"handshake from Origin %s not allowed"
                               % re.escape(origin), timeout=2), dep.logs()
    assert "SCSCF-RX REGISTER" not in dep.scscf.log(), dep.logs()
