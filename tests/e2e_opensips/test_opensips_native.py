"""End to end, what only the native OpenSIPS module (opensips-example/
opensips.cfg, opensips-example/module/) has: MI commands, the refresher
process, the expiry cap of every contact, WebSocket listeners, Path, the
library's log at OpenSIPS's levels, fail-closed start-up. Each test asserts
what reached the S-CSCF (the next hop), not only the reply."""

import re
import time
from urllib.parse import unquote

import pytest

from opensips_harness import MiError, OpenSipsDeployment
from tokens import identity, mint

from test_registration import (LIFETIME, _eventually, _register,  # noqa: E402
                               assert_nothing_forwarded, assert_registered,
                               bearer)
from harness import ISSUER_A, ISSUER_B  # noqa: E402


def _forwarded(dep, call_id):
    """The one request of this Call-ID that reached the S-CSCF."""
    msgs = dep.scscf_msgs(call_id)
    assert len(msgs) == 1, (msgs, dep.logs())
    return msgs[0]


def _headers(msg, name):
    out = []
    for line in msg.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        n, _, v = line.partition(":")
        if n.strip().lower() == name.lower():
            out.append(v.strip())
    return out


# -- the expiry cap: every contact, every header --------------------------

def test_every_contact_and_expires_capped(native):
    """Two Contact headers, one with two contacts, and an Expires: every
    expiry above the token's lifetime reaches the S-CSCF capped at it; one
    below it is kept."""
    with native.udp() as c:
        r = c.register(identity()[1], [bearer(mint(lifetime=LIFETIME))],
                       expires=7200,
                       contacts=["<{uri}>;expires=3600",
                                 "<sip:second@127.0.0.1:5999>;expires=90, "
                                 "<sip:third@127.0.0.1:5998>"])
    assert r.status == 200, (r.raw, native.logs())
    fwd = _forwarded(native, r.header("Call-ID"))
    expires = [int(v) for v in _headers(fwd, "Expires")]
    assert len(expires) == 1 and expires[0] <= LIFETIME, fwd
    params = [int(x) for x in re.findall(r";expires=(\d+)",
                                         " ".join(_headers(fwd, "Contact")))]
    assert len(params) == 2, fwd
    assert params[0] <= LIFETIME and params[1] == 90, fwd


def test_contact_without_expires_gets_expires_header(native):
    """A contact relying on the registrar's default (no parameter, no
    Expires): Expires: <granted> is added, so no default can exceed it."""
    with native.udp() as c:
        r = c.register(identity()[1], [bearer(mint(lifetime=LIFETIME))])
    assert r.status == 200, (r.raw, native.logs())
    fwd = _forwarded(native, r.header("Call-ID"))
    expires = [int(v) for v in _headers(fwd, "Expires")]
    assert len(expires) == 1 and 0 < expires[0] <= LIFETIME, fwd


@pytest.mark.parametrize("contact", [
    '<{uri}>;expires="3600"',
    "<{uri}>;expires=",
    "<{uri}>;expires=36x",
    "<{uri}>;expires=60;expires=3600",
])
def test_malformed_expiry_is_400_and_not_forwarded(native, contact):
    with native.udp() as c:
        r = c.register(identity()[1], [bearer(mint(lifetime=LIFETIME))],
                       contacts=[contact])
    assert r.status == 400, r.raw
    assert r.reason.endswith("(malformed_request)"), r.reason
    assert_nothing_forwarded(native, r.header("Call-ID"))


# -- Path, headers a UE may not set ---------------------------------------

def test_path_added_and_ue_headers_stripped(native):
    with native.udp() as c:
        r = c.register(identity()[1], [bearer(mint(lifetime=LIFETIME))],
                       expires=600,
                       extra_headers=["Path: <sip:evil@198.51.100.1;lr>",
                                      "P-Asserted-Identity: <sip:bob@x>",
                                      "Service-Route: <sip:evil@x;lr>"])
    assert_registered(native, r)
    fwd = _forwarded(native, r.header("Call-ID"))
    paths = _headers(fwd, "Path")
    assert len(paths) == 1, fwd
    assert "evil" not in paths[0] and "received=" in paths[0], paths
    assert "path" in ",".join(_headers(fwd, "Supported")), fwd
    assert _headers(fwd, "P-Asserted-Identity") == [], fwd
    assert _headers(fwd, "Service-Route") == [], fwd


# -- WebSocket ------------------------------------------------------------

def test_register_over_websocket_and_secure_websocket(native):
    for client in (native.ws, native.wss):
        with client() as c:
            r = c.register(identity()[1], [bearer(mint(lifetime=LIFETIME))],
                           expires=600)
        assert_registered(native, r)
        fwd = _forwarded(native, r.header("Call-ID"))
        # one Path, of the core side, whose ;received= (escaped) names the
        # WIC's WebSocket connection
        paths = _headers(fwd, "Path")
        assert len(paths) == 1, fwd
        received = unquote(paths[0].split("received=", 1)[1]).lower()
        assert ";transport=ws" in received, fwd


def test_bad_token_over_websocket_not_forwarded(native):
    with native.ws() as c:
        r = c.register(identity()[1], [bearer(mint(lifetime=LIFETIME,
                                                   aud="other.example.org"))],
                       expires=600)
    assert r.status == 401, r.raw
    assert_nothing_forwarded(native, r.header("Call-ID"))


# -- MI: bar, unbar, reload ----------------------------------------------

def test_mi_bar_reply_and_errors(native):
    """wic_tna_bar / wic_tna_unbar answer a structure; an unknown issuer is
    MI error 404 and changes nothing; a missing parameter is an error."""
    assert native.mi("wic_tna_bar", issuer=ISSUER_B) == {
        "issuer": ISSUER_B, "barred": True}
    r = _eventually(lambda: _register(native, "b", "dave"),
                    lambda r: r.status == 403)
    assert r.status == 403 and r.reason.endswith("(issuer_barred)"), r.raw
    assert_nothing_forwarded(native, r.header("Call-ID"))
    assert _register(native, "a").status == 200
    assert native.mi("wic_tna_unbar", issuer=ISSUER_B) == {
        "issuer": ISSUER_B, "barred": False}
    r = _eventually(lambda: _register(native, "b", "dave"),
                    lambda r: r.status == 200)
    assert r.status == 200, r.raw

    with pytest.raises(MiError) as e:
        native.mi("wic_tna_bar", issuer="https://unknown.example")
    assert e.value.code == 404, e.value
    with pytest.raises(MiError):
        native.mi("wic_tna_bar")
    assert _register(native, "a").status == 200


def test_mi_reload(native):
    """A broken configuration is refused by wic_tna_reload (MI error 400
    naming the field) and the one in force stays; a new valid one is in
    force in every worker after it."""
    assert _register(native, "b", "dave").status == 200
    text = native.config.read_text()
    # first, while every worker runs the configuration it started with (a
    # worker behind a reload generation re-reads the file at its next
    # check, and fails closed, 500, when that file is broken)
    native.config.write_text(text.replace(
        'audience = "ims.example.net"', "audience = 42"))
    with pytest.raises(MiError) as e:
        native.mi("wic_tna_reload")
    assert e.value.code == 400 and "audience" in e.value.message, e.value
    for _ in range(4):
        assert _register(native, "b", "dave").status == 200

    # issuer b's tokens no longer accepted: its audience changed
    native.config.write_text(text.replace(
        'audience = "ims.example.net"', 'audience = "other.example.net"'))
    assert native.mi("wic_tna_reload") == "OK"
    for _ in range(4):  # every worker
        r = _register(native, "b", "dave")
        assert r.status == 401, r.raw
        assert r.reason.endswith("(wrong_audience)"), r.reason
        assert_nothing_forwarded(native, r.header("Call-ID"))
    native.config.write_text(text)
    assert native.mi("wic_tna_reload") == "OK"
    for _ in range(4):
        assert _register(native, "b", "dave").status == 200


# -- the refresher process -------------------------------------------------

def _remote(workdir, **kw):
    from remote_server import RemoteServer, config_transform
    srv = RemoteServer().start()
    d = OpenSipsDeployment(workdir, variant="native",
                           config_transform=config_transform(srv, workdir),
                           **kw)
    return srv, d


def test_refresher_process_fetches_jwks_url(workdir):
    """An issuer whose keys come from a jwks_url: the module's own "wic_tna
    refresher" process fetches them (no external service), the workers
    accept its tokens, and a rotation at the server is followed."""
    from remote_server import mint_remote
    srv, d = _remote(workdir)
    try:
        d.start()
        impu = identity("a", "alice")[1]

        def reg(kid):
            with d.udp() as c:
                return c.register(impu, [bearer(mint_remote(kid))],
                                  expires=600)

        r = _eventually(lambda: reg("r1"), lambda r: r.status == 200,
                        timeout=10)
        assert r.status == 200, (r.raw, d.logs())
        assert len(d.scscf_rx(r.header("Call-ID"))) == 1
        assert srv.count("/jwks") >= 1
        assert "wic_tna refresher: every 250 ms" in d.ep.log()
        srv.jwks_kids = ["r2"]
        r = _eventually(lambda: reg("r2"), lambda r: r.status == 200,
                        timeout=10)
        assert r.status == 200, (r.raw, d.logs())
        r = reg("r1")
        assert r.status == 401, r.raw
        assert_nothing_forwarded(d, r.header("Call-ID"))
    finally:
        d.stop()
        srv.stop()


def test_no_refresher_no_remote_keys(workdir):
    """refresher_interval 0 starts no refresher process: nothing fetches
    the key set, its tokens fail closed (500) and nothing is forwarded
    (what proves that the process is what fetches)."""
    from remote_server import mint_remote
    srv, d = _remote(workdir, extra_sed=(
        's|"refresher_interval", 250)|"refresher_interval", 0)|\n'))
    try:
        d.start()
        time.sleep(1.5)
        with d.udp() as c:
            r = c.register(identity("a", "alice")[1],
                           [bearer(mint_remote("r1"))], expires=600)
        assert r.status == 500, (r.raw, d.logs())
        assert srv.count("/jwks") == 0
        assert_nothing_forwarded(d, r.header("Call-ID"))
        assert "wic_tna refresher" not in d.ep.log()
    finally:
        d.stop()
        srv.stop()


# -- start-up and log --------------------------------------------------------

def test_healthy_start_logs_no_error(native):
    """The library's messages reach OpenSIPS's log at their own level: a
    healthy start logs them as INFO, and no ERROR line at all."""
    log = native.ep.log()
    assert "INFO:wic_tna:" in log, log[-2000:]
    assert "skipped, meant for encryption" in log
    errors = [l for l in log.splitlines() if "ERROR:" in l or "CRITICAL:" in l]
    assert errors == [], errors


def test_missing_config_modparam_stops_startup(workdir):
    d = OpenSipsDeployment(workdir, variant="native", extra_sed=(
        '/modparam("wic_tna", "config"/d\n'))
    with pytest.raises(RuntimeError) as e:
        d.start()
    d.stop()
    assert "exited" in str(e.value), e.value
    assert 'modparam "config"' in d.ep.log(), d.ep.log()[-3000:]


def test_bad_refresher_interval_stops_startup(workdir):
    d = OpenSipsDeployment(workdir, variant="native", extra_sed=(
        's|"refresher_interval", 250)|"refresher_interval", -1)|\n'))
    with pytest.raises(RuntimeError):
        d.start()
    d.stop()
    assert "refresher_interval" in d.ep.log(), d.ep.log()[-3000:]


# -- statistics: MI wic_tna_stats, OpenSIPS statistics ----------------------

def _stat(dep, name):
    """The OpenSIPS statistic wic_tna:<name> through MI get_statistics."""
    res = dep.mi("get_statistics", statistics=["wic_tna:"])
    return res.get("wic_tna:" + name)


def test_stats_through_mi(native):
    """wic_tna_stats (structured) and the wic_tna: statistics count every
    outcome over all workers: accepted checks under ok, refusals under
    their reason."""
    before = native.mi("wic_tna_stats")
    assert isinstance(before["checks"], dict), before
    assert {"ok", "expired", "bad_signature", "missing_token"} <= set(
        before["checks"]), before
    assert before["total"] == sum(before["checks"].values()), before
    assert _stat(native, "ok") == before["checks"]["ok"]

    for _ in range(3):
        assert _register(native, "a").status == 200
    with native.udp() as c:
        r = c.register(identity()[1], [bearer(mint(iat_offset=-900,
                                                   exp_offset=-600))],
                       expires=600)
    assert r.status == 401, r.raw
    with native.udp() as c:
        r = c.register(identity()[1], [], expires=600)
    assert r.status == 401, r.raw

    after = native.mi("wic_tna_stats")
    assert after["checks"]["ok"] - before["checks"]["ok"] == 3, after
    assert after["checks"]["expired"] - before["checks"]["expired"] == 1
    assert (after["checks"]["missing_token"]
            - before["checks"]["missing_token"]) == 1, after
    assert after["total"] - before["total"] == 5, (before, after)
    # the OpenSIPS statistics are the same numbers (read from the library)
    assert _stat(native, "ok") == after["checks"]["ok"]
    assert _stat(native, "expired") == after["checks"]["expired"]


def _istat(reason, iss):
    """The MI name of the statistic of issuer iss and reason."""
    return "wic_tna_issuer:%s/%s" % (reason, iss)


def test_per_issuer_statistics_through_mi(native):
    """The wic_tna_issuer:<reason>/<issuer> statistics count the outcomes
    of each issuer apart (and "-": outcomes with no issuer), every reason
    of every configured issuer is listed, one statistic is found by its
    bare name, and MI wic_tna_stats shows the same numbers per issuer."""
    before = native.mi("get_statistics", statistics=["wic_tna_issuer:"])
    for iss in (ISSUER_A, ISSUER_B, "-"):
        for reason in ("ok", "expired", "issuer_barred", "missing_token"):
            assert _istat(reason, iss) in before, before

    for _ in range(3):
        assert _register(native, "a").status == 200
    assert _register(native, "b", "dave").status == 200
    native.mi("wic_tna_bar", issuer=ISSUER_B)
    try:
        r = _register(native, "b", "dave")
        assert r.status == 403 and r.reason.endswith("(issuer_barred)"), r.raw
    finally:
        native.mi("wic_tna_unbar", issuer=ISSUER_B)
    with native.udp() as c:
        r = c.register(identity()[1], [], expires=600)
    assert r.status == 401, r.raw

    after = native.mi("get_statistics", statistics=["wic_tna_issuer:"])
    assert set(after) == set(before), set(after) ^ set(before)
    changed = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert changed == {
        _istat("ok", ISSUER_A): 3,
        _istat("ok", ISSUER_B): 1,
        _istat("issuer_barred", ISSUER_B): 1,
        _istat("missing_token", "-"): 1,
    }, changed

    # one statistic, by its bare name (OpenSIPS looks names up without
    # the group)
    one = native.mi("get_statistics", statistics=["ok/" + ISSUER_B])
    assert one == {_istat("ok", ISSUER_B): after[_istat("ok", ISSUER_B)]}, one

    # wic_tna_stats: the same numbers, per issuer, zeros left out
    stats = native.mi("wic_tna_stats")
    assert set(stats["issuers"]) == {ISSUER_A, ISSUER_B, "-"}, stats
    for iss, counts in stats["issuers"].items():
        for reason, n in counts.items():
            assert n > 0 and after[_istat(reason, iss)] == n, (iss, reason)
    assert stats["issuers"][ISSUER_A]["ok"] == after[_istat("ok", ISSUER_A)]
    assert stats["issuers"][ISSUER_B]["issuer_barred"] >= 1, stats


# -- opensips-cli (PyPI opensipscli), as an operator runs it ------------------

def _opensips_cli():
    import os
    import shutil
    from harness import REPO
    for c in (os.environ.get("WIC_TNA_OPENSIPS_CLI"),
              str(REPO / "build" / "opensips-cli-venv" / "bin" / "opensips-cli"),
              shutil.which("opensips-cli")):
        if c and os.access(c, os.X_OK):
            return c
    return None


@pytest.mark.skipif(_opensips_cli() is None, reason=(
    "opensips-cli not installed (bash scripts/install-deps.sh puts PyPI "
    "opensipscli in build/opensips-cli-venv; or WIC_TNA_OPENSIPS_CLI); MI "
    "itself is tested over the FIFO by the other tests"))
def test_opensips_cli_bar_stats(native):
    """opensips-cli -x mi wic_tna_bar / wic_tna_stats over the example's
    mi_fifo: the commands an operator types work as documented."""
    import json
    import subprocess

    def cli(*args):
        r = subprocess.run([_opensips_cli(), "-o", "communication_type=fifo",
                            "-o", "fifo_file=%s" % native.fifo, "-x", "mi"]
                           + list(args), capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, (r.stdout, r.stderr)
        return json.loads(r.stdout)

    assert _register(native, "b", "dave").status == 200
    assert cli("wic_tna_bar", "issuer=%s" % ISSUER_B) == {
        "issuer": ISSUER_B, "barred": True}
    r = _eventually(lambda: _register(native, "b", "dave"),
                    lambda r: r.status == 403)
    assert r.status == 403, r.raw
    assert_nothing_forwarded(native, r.header("Call-ID"))
    stats = cli("wic_tna_stats")
    assert stats["checks"]["ok"] >= 1 and stats["checks"]["issuer_barred"] >= 1
    assert cli("get_statistics", "wic_tna:")["wic_tna:issuer_barred"] \
        == stats["checks"]["issuer_barred"]
    cli("wic_tna_unbar", "issuer=%s" % ISSUER_B)
    r = _eventually(lambda: _register(native, "b", "dave"),
                    lambda r: r.status == 200)
    assert r.status == 200, r.raw


# -- $wic_tna(...) is the current message's result, never an earlier one ------

def test_no_stale_result_on_another_message(workdir):
    """$wic_tna(...) read for a message with no check of its own gives the
    internal error (500, nothing else), never the result of an earlier
    accepted REGISTER of the same worker. (A cfg line is added for the
    test, where a request of an unregistered connection is refused.)"""
    d = OpenSipsDeployment(workdir, variant="native", extra_sed=(
        '/from unregistered connection/i\\\n'
        '\txlog("L_NOTICE", "STALE-CHECK status=$wic_tna(status) '
        'accepted=$wic_tna(accepted) impi=[$wic_tna(impi)] '
        'tna=[$wic_tna(tna)]\\\\n");\n'))
    d.start()
    try:
        for _ in range(6):
            assert _register(d, "a").status == 200
            with d.udp() as c:
                r = c.message(identity()[1], identity("a", "bob")[1])
            assert r.status == 403, r.raw
        lines = [l for l in d.ep.log().splitlines() if "STALE-CHECK" in l]
        # (the readiness probe, an OPTIONS, is one more)
        assert len(lines) >= 6, d.ep.log()[-3000:]
        for l in lines:
            assert "status=500 accepted=0 impi=[] tna=[]" in l, l
    finally:
        d.stop()
