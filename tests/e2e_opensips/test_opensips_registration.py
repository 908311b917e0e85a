"""End to end: a WIC registers through a real OpenSIPS eP-CSCF to the real
Kamailio S-CSCF of kamailio-example/scscf.cfg, each test with both
variants: the native module (opensips-example/opensips.cfg) and the python
module with the ctypes binding (opensips-example/opensips-python.cfg).
What only the native module has is in test_opensips_native.py.

The checks, the table of failures and the test of the failures are the
Kamailio e2e tests' own (tests/e2e/test_registration.py), imported, so
that both proxies are held to the same behaviour."""

import re

import pytest

from opensips_harness import OpenSipsDeployment
from tokens import identity, mint, mint_cli, tamper

# tests/e2e/test_registration.py: the shared checks and failure table
from test_registration import (FAILURES, LIFETIME,  # noqa: E402
                               _eventually, _register,
                               assert_nothing_forwarded, assert_registered,
                               bearer)
from harness import ISSUER_A  # noqa: E402

# the cases this eP-CSCF must cover (issue #7); the table has more
REQUIRED = {"no_token", "bad_signature", "expired", "insufficient_scope",
            "to_impu_not_in_token"}
assert REQUIRED <= {f[0] for f in FAILURES}, "the shared failure table lost a case"


# -- success ---------------------------------------------------------------

def test_valid_token_pyjwt(dep):
    """200; the S-CSCF got exactly one Authorization, the TNA header; the
    expiry asked for (3600) is capped at the token's lifetime."""
    with dep.udp() as c:
        r = c.register(identity()[1], [bearer(mint(lifetime=LIFETIME))],
                       expires=3600, contact_expires=3600)
    assert_registered(dep, r)
    # the client's Bearer token did not go on; only the TNA header did
    rx = dep.scscf_rx(r.header("Call-ID"))
    assert "Bearer" not in rx[0] and "eyJ" not in rx[0], rx[0]


def test_valid_token_cli_expires_header_only(dep):
    token = mint_cli(issuer="a", user="carol", lifetime=LIFETIME)
    with dep.udp() as c:
        r = c.register(identity("a", "carol")[1], [bearer(token)],
                       expires=3600)
    assert_registered(dep, r, user="carol")


def test_valid_token_tcp(dep):
    with dep.tcp() as c:
        r = c.register(identity()[1], [bearer(mint(lifetime=LIFETIME))],
                       expires=3600)
        assert_registered(dep, r)
        # a bad token on the same connection (its own Call-ID)
        r = c.register(identity()[1], [bearer(tamper(mint()))], expires=600,
                       call_id="bad-" + c.call_id)
    assert r.status == 401, r.raw
    assert 'error="invalid_token"' in r.header("WWW-Authenticate"), r.raw
    assert_nothing_forwarded(dep, r.header("Call-ID"))


def test_access_token_parameter_form(dep):
    token = mint(lifetime=LIFETIME)
    with dep.udp() as c:
        r = c.register(identity()[1], ['Bearer access_token="%s"' % token],
                       expires=600)
    assert_registered(dep, r)


def test_expiry_below_token_lifetime_kept(dep):
    with dep.udp() as c:
        r = c.register(identity()[1], [bearer(mint(lifetime=LIFETIME))],
                       expires=120)
    assert r.status == 200, (r.raw, dep.logs())
    granted = int(re.search(r"expires=(\d+)", r.header("Contact")).group(1))
    assert 100 <= granted <= 120, r.raw


def test_large_token_read_whole(dep):
    """A token larger than OpenSIPS's 4 KiB pseudo-variable print buffer is
    read whole (msg.getHeader), and still accepted."""
    token = mint(lifetime=LIFETIME, extra={"pad": "x" * 5000})
    assert 5000 < len(token) < 8192
    with dep.udp() as c:
        r = c.register(identity()[1], [bearer(token)], expires=600)
    assert_registered(dep, r)


# -- failures: status, reason, challenge, nothing forwarded -----------------

# tests/e2e/test_registration.py's test_rejected, the same assertions,
# collected here too (pytest collects the test functions a module holds,
# here in this place): test_rejected[case] for each row of FAILURES, with
# this directory's dep, the OpenSIPS deployment
from test_registration import test_rejected  # noqa: E402,F401


def test_non_register_refused(dep):
    """This example handles REGISTER only: anything else gets 403 and is not
    forwarded."""
    with dep.udp() as c:
        r = c.message(identity()[1], identity("a", "bob")[1])
    assert r.status == 403, r.raw
    assert_nothing_forwarded(dep, r.header("Call-ID"))


# -- barring through the state_file and the CLI -----------------------------

def test_bar_and_unbar_issuer(dep):
    assert _register(dep, "a").status == 200

    res = dep.bar(ISSUER_A)
    assert res.returncode == 0, (res.stdout, res.stderr)
    r = _eventually(lambda: _register(dep, "a"), lambda r: r.status == 403)
    assert r.status == 403, r.raw
    assert r.reason.endswith("(issuer_barred)"), r.reason
    assert r.header_all("WWW-Authenticate") == [], r.raw
    assert_nothing_forwarded(dep, r.header("Call-ID"))
    for _ in range(4):  # every worker
        assert _register(dep, "a").status == 403
    assert _register(dep, "b", "dave").status == 200

    res = dep.unbar(ISSUER_A)
    assert res.returncode == 0, (res.stdout, res.stderr)
    r = _eventually(lambda: _register(dep, "a"), lambda r: r.status == 200)
    assert r.status == 200, r.raw
    for _ in range(4):
        assert _register(dep, "a").status == 200


# -- start-up --------------------------------------------------------------

def test_broken_config_stops_startup(workdir, variant):
    """mod_init test-loads the configuration: a broken one stops OpenSIPS
    at start with the file and the field in the log."""
    d = OpenSipsDeployment(workdir, variant=variant)
    d.config.write_text(d.config.read_text().replace(
        'audience = "ims.example.net"', "audience = 42"))
    with pytest.raises(RuntimeError) as e:
        d.start()
    d.stop()
    assert "exited" in str(e.value), e.value
    log = d.ep.log()
    assert str(d.config) in log, log[-3000:]
    assert "audience" in log, log[-3000:]


# -- background work: `wic-tna refresh --every` beside OpenSIPS ------------

def test_jwks_url_fetched_by_the_refresh_service(workdir):
    """An issuer whose keys come from a jwks_url: OpenSIPS's python module
    cannot run code in a timer process, so the CLI's refresh loop (one
    process per state_file, as a service would run it) fetches the keys for
    every OpenSIPS worker; then its tokens register, and a rotation at the
    server is followed with no RPC. Without the service they do not."""
    import subprocess
    import time
    from remote_server import RemoteServer, config_transform, mint_remote
    from harness import REPO
    srv = RemoteServer().start()
    d = OpenSipsDeployment(workdir, variant="python",
                           config_transform=config_transform(srv, workdir))
    d.start()
    refresher = None
    try:
        impu = identity("a", "alice")[1]

        def status(kid):
            with d.udp() as c:
                return c.register(impu, [bearer(mint_remote(kid))], expires=600).status

        def wait(kid, want, timeout=10):
            deadline = time.monotonic() + timeout
            got = status(kid)
            while got != want and time.monotonic() < deadline:
                time.sleep(0.3)
                got = status(kid)
            return got

        # no refresher yet: the key set is not available (fail closed)
        time.sleep(1)
        assert status("r1") == 500 and srv.count("/jwks") == 0
        refresher = subprocess.Popen(
            [str(REPO / "target/release/wic-tna"), "refresh", "--config",
             str(d.config), "--every", "250"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert wait("r1", 200) == 200, d.logs()
        assert srv.count("/jwks") >= 1
        srv.jwks_kids = ["r2"]
        assert wait("r2", 200) == 200, d.logs()
        assert status("r1") == 401
    finally:
        if refresher is not None:
            refresher.kill()
            refresher.wait()
        d.stop()
        srv.stop()
