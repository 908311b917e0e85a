"""The end-to-end core cases on the Kamailio under test (run.sh runs this
file once per version: Debian's 5.6.3, 5.8.8 built with make, 6.0.7 built
with CMake), with the shipped kamailio-example/epcscf.cfg and scscf.cfg and
the wic_tna module built for that version:

- a valid token registers, and the S-CSCF gets the TNA header in its place;
- an expired token gets 401 with the Bearer challenge, and nothing goes on;
- wic_tna.bar / wic_tna.unbar / wic_tna.stats over RPC (kamcmd and
  JSON-RPC) act on every worker.

WIC_TNA_EXPECT_KAMAILIO names the version string the processes must report
("kamailio 6.0.7 (x86_64/Linux)"): a run that quietly fell back to another
Kamailio fails."""

import os
import re
import time

import pytest

from harness import ISSUER_A, ISSUER_B, KAMAILIO, MODULE, ORIGIN_A
from tokens import identity, mint

EXPECT = os.environ.get("WIC_TNA_EXPECT_KAMAILIO", "")
LIFETIME = 300


def bearer(token):
    return "Bearer " + token


def eventually(fn, expect, timeout=3.0):
    """RPC changes reach every worker on its next check: retry until then."""
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if expect(r) or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def register_udp(dep, token, issuer="a", user="alice"):
    with dep.udp() as c:
        return c.register(identity(issuer, user)[1], [bearer(token)],
                          expires=600)


def assert_tna_at_scscf(dep, resp, issuer="a", user="alice"):
    """200 OK; the S-CSCF got one Authorization, the TNA header, and
    saved the contact."""
    impi, _ = identity(issuer, user)
    assert resp.status == 200, (resp.raw, dep.logs())
    call_id = resp.header("Call-ID")
    rx = dep.scscf_rx(call_id)
    assert len(rx) == 1, (rx, dep.logs())
    assert "auth_count=1 " in rx[0], rx[0]
    auth = re.search(r"auth=\[(.*)\]", rx[0]).group(1)
    assert auth.startswith('Digest username="%s"' % impi), auth
    assert re.search(r'integrity-protected="?auth-done"?', auth), auth
    assert "Bearer" not in auth, auth
    tna = dep.scscf_lines("SCSCF-TNA", call_id)
    assert len(tna) == 1 and "impi=%s " % impi in tna[0], tna
    granted = int(re.search(r"expires=(\d+)", resp.header("Contact")).group(1))
    assert 0 < granted <= LIFETIME, resp.raw
    assert "AoR: %s" % user in dep.ul_dump()


def assert_nothing_forwarded(dep, call_id):
    time.sleep(0.3)
    assert dep.scscf_rx(call_id) == [], dep.logs()


def test_the_kamailio_under_test(dep):
    """Both proxies are the Kamailio named by the run (its binary, its
    version string) and loaded the module built for it."""
    assert EXPECT, "WIC_TNA_EXPECT_KAMAILIO is not set (run.sh sets it)"
    for proc in (dep.ep, dep.scscf):
        assert proc.command()[0] == KAMAILIO
        r = proc.rpc("core.version")
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert r.stdout.strip() == EXPECT, (r.stdout, EXPECT)
        assert '-A WIC_TNA_MODULE="%s"' % MODULE in " ".join(
            proc.command()), proc.command()
        mods = proc.rpc("core.modules")
        assert mods.returncode == 0 and "wic_tna" in mods.stdout.split(), (
            mods.stdout)
    v = dep.ep.rpc("wic_tna.version")
    assert v.returncode == 0 and re.match(r"\d+\.\d+\.\d+", v.stdout), v


def test_valid_token_registers_with_the_tna_header(dep):
    r = register_udp(dep, mint(lifetime=LIFETIME))
    assert_tna_at_scscf(dep, r)


def test_valid_token_over_websocket_registers(dep):
    """The WIC's own transport: WebSocket (module websocket, xhttp), the
    handshake's Origin checked by wic_tna_origin."""
    with dep.ws(ORIGIN_A) as c:
        r = c.register(identity("a", "carol")[1],
                       [bearer(mint(user="carol", lifetime=LIFETIME))],
                       expires=600)
        assert_tna_at_scscf(dep, r, user="carol")


def test_expired_token_gets_401_with_the_bearer_challenge(dep):
    r = register_udp(dep, mint(iat_offset=-900, exp_offset=-600))
    assert r.status == 401, (r.raw, dep.logs())
    assert r.reason.endswith("(expired)"), r.reason
    challenges = r.header_all("WWW-Authenticate")
    assert len(challenges) == 1, r.raw
    assert challenges[0].startswith("Bearer "), challenges
    assert 'realm="ims.example.net"' in challenges[0], challenges
    assert 'error="invalid_token"' in challenges[0], challenges
    assert_nothing_forwarded(dep, r.header("Call-ID"))


def _kamcmd_barred(dep):
    """The barred issuers from kamcmd's print of wic_tna.stats."""
    r = dep.ep.rpc("wic_tna.stats")
    assert r.returncode == 0, (r.stdout, r.stderr)
    m = re.search(r"(?m)^\tbarred: \{\n(.*?)^\t\}", r.stdout, re.S)
    assert m, r.stdout
    return [line.strip() for line in m.group(1).splitlines() if line.strip()]


def test_bar_unbar_and_stats_over_rpc(dep):
    before = dep.stats()  # JSON-RPC (jsonrpcs)
    assert before["barred"] == [], before
    assert before["issuers_configured"] == 2, before
    assert _kamcmd_barred(dep) == []

    res = dep.bar(ISSUER_A)  # kamcmd
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert res.stdout.strip() == "barred %s" % ISSUER_A, res.stdout
    r = eventually(lambda: register_udp(dep, mint()),
                   lambda r: r.status == 403)
    assert r.status == 403, r.raw
    assert r.reason.endswith("(issuer_barred)"), r.reason
    assert r.header_all("WWW-Authenticate") == [], r.raw
    assert_nothing_forwarded(dep, r.header("Call-ID"))
    # every worker: more than there are UDP workers
    for _ in range(4):
        assert register_udp(dep, mint()).status == 403
    # the other issuer is not affected
    assert_tna_at_scscf(dep, register_udp(dep, mint(issuer="b", user="dave"),
                                          issuer="b", user="dave"),
                        issuer="b", user="dave")

    mid = dep.stats()
    assert mid["barred"] == [ISSUER_A], mid
    assert _kamcmd_barred(dep) == [ISSUER_A]
    n0 = before["outcomes"].get(ISSUER_A, {}).get("issuer_barred", 0)
    assert mid["outcomes"][ISSUER_A]["issuer_barred"] >= n0 + 5, mid

    # an issuer that is not configured: an RPC fault, nothing barred
    bad = dep.bar("https://not-configured.example")
    assert bad.returncode != 0, bad.stdout
    assert "404" in bad.stdout, bad.stdout

    res = dep.unbar(ISSUER_A)
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert res.stdout.strip() == "unbarred %s" % ISSUER_A, res.stdout
    r = eventually(lambda: register_udp(dep, mint()),
                   lambda r: r.status == 200)
    assert_tna_at_scscf(dep, r)
    for _ in range(4):
        assert register_udp(dep, mint()).status == 200
    after = dep.stats()
    assert after["barred"] == [], after
    assert _kamcmd_barred(dep) == []
    assert after["outcomes"][ISSUER_A]["ok"] >= 5, after
    assert after["outcomes"][ISSUER_B]["ok"] >= 1, after


@pytest.mark.parametrize("proc", ["ep", "scscf"])
def test_no_errors_logged(dep, proc):
    """A run of the core cases leaves no ERROR in either log (a module of
    another version would fail to load, a cfg function missing in this
    version would fail the cfg)."""
    register_udp(dep, mint())
    p = getattr(dep, proc)
    errors = [line for line in p.log().splitlines() if " ERROR: " in line]
    assert not errors, errors
