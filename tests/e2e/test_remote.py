"""End to end, remote trust: an issuer whose keys come from a jwks_url and
an issuer with RFC 7662 introspection, both served by a Python server on
127.0.0.1, through a real eP-CSCF (native module: its "wic_tna refresher"
process; Python glue: an rtimer route calling the glue's tick)."""

import os
import re
import signal
import time

import pytest

from harness import Deployment
from remote_server import RemoteServer, config_transform, mint_remote
from tokens import identity


def bearer(token):
    return "Bearer " + token


def register(dep, token, user="alice"):
    with dep.udp() as c:
        return c.register(identity("a", user)[1], [bearer(token)],
                          expires=300)


def reason(resp):
    return resp.raw.split("\r\n", 1)[0]


def assert_single_threaded(dep):
    """No process of the eP-CSCF has started a thread (Kamailio forks;
    the library and the glue must never start one)."""
    pids = [int(p) for p in re.findall(r"PID: (\d+)", dep.ep.rpc("core.psx").stdout)]
    assert len(pids) > 5, pids
    for pid in pids:
        tasks = os.listdir("/proc/%d/task" % pid)
        assert len(tasks) == 1, (pid, tasks)


def wait_status(dep, token_fn, status, timeout):
    """REGISTER until the answer has `status` (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        r = register(dep, token_fn())
        if r.status == status or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


@pytest.fixture(params=["native", "python"])
def remote(request, workdir):
    srv = RemoteServer().start()
    d = Deployment(workdir, mode=request.param,
                   config_transform=config_transform(srv, workdir))
    d.start()
    yield d, srv
    d.stop()
    srv.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(d.logs())


def test_jwks_url_keys_fetched_by_the_refresher_then_rotated(remote):
    dep, srv = remote
    # accepted once the refresher (not a worker) has fetched the key set
    r = wait_status(dep, lambda: mint_remote("r1"), 200, 10)
    assert r.status == 200, (r.raw, dep.logs())
    assert srv.count("/jwks") >= 1
    # the AS rotates its key: only r2 is served; after max-age (2 s) the
    # refresher re-fetches and a worker accepts r2, with no RPC
    srv.jwks_kids = ["r2"]
    r = wait_status(dep, lambda: mint_remote("r2"), 200, 10)
    assert r.status == 200, (r.raw, dep.logs())
    r = register(dep, mint_remote("r1", user="bob"))
    assert r.status == 401 and "unknown_key" in reason(r), r.raw
    # steady: the fetches follow max-age, not the REGISTERs
    before = srv.count("/jwks")
    for _ in range(20):
        assert register(dep, mint_remote("r2")).status == 200
    assert srv.count("/jwks") - before <= 4, srv.hits
    assert_single_threaded(dep)


def test_introspection_reference_token_then_endpoint_down(remote):
    dep, srv = remote
    r = register(dep, "ref-alice-2YotnFZFEjr1zCsicMWpAA")
    assert r.status == 200, (r.raw, dep.logs())
    rx = dep.scscf_rx(r.header("Call-ID"))
    assert len(rx) == 1 and "auth-done" in rx[0], rx
    # cached until exp, per process: at most one call per SIP worker (2
    # UDP workers) however many REGISTERs
    for _ in range(20):
        assert register(dep, "ref-alice-2YotnFZFEjr1zCsicMWpAA").status == 200
    assert srv.count("/introspect") <= 2, srv.hits
    # inactive: 401
    r = register(dep, "ref-inactive-2YotnFZ")
    assert r.status == 401 and "inactive_token" in reason(r), r.raw
    # the authorization server fails: 500 at once, nothing forwarded, and
    # once the breaker is open (3 failures, shared by all workers) no call
    srv.intro_mode = "down"
    calls = srv.count("/introspect")
    took = []
    for i in range(12):
        t0 = time.monotonic()
        r = register(dep, "ref-alice-down%d" % i)
        took.append(time.monotonic() - t0)
        assert r.status == 500 and "introspection_unavailable" in reason(r), r.raw
        assert dep.scscf_rx(r.header("Call-ID")) == []
    assert srv.count("/introspect") - calls == 3, srv.hits
    assert max(took) < 1.0, took
    # slow (beyond timeout_ms 300) is the same failure, bounded
    srv.intro_mode = "slow"
    dep2_calls = srv.count("/introspect")
    t0 = time.monotonic()
    r = register(dep, "ref-alice-slow")
    assert r.status == 500, r.raw
    assert time.monotonic() - t0 < 1.0
    assert srv.count("/introspect") == dep2_calls, "breaker still open"
    assert_single_threaded(dep)


def _localhost_in_etc_hosts():
    try:
        lines = open("/etc/hosts").read().splitlines()
    except OSError:
        return False
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) > 1 and words[0] in ("127.0.0.1", "::1") and "localhost" in words[1:]:
            return True
    return False


def _tasks(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("mode", ["native", "python"])
def test_urls_by_host_name_resolve_on_lookup_threads_after_the_fork(workdir, mode):
    """The jwks_url and the introspection endpoint given by host name
    (localhost, from /etc/hosts: no DNS query leaves the machine). The
    processes that need the name (the refresher or the rtimer process, the
    SIP workers that introspect) start one lookup thread each, after the
    fork; the main process and every other child stay single-threaded;
    keys are fetched, introspection answers, and the proxy stops on
    SIGTERM as usual."""
    if not _localhost_in_etc_hosts():
        pytest.skip("localhost is not in /etc/hosts (no DNS query is sent)")
    srv = RemoteServer().start()
    base = config_transform(srv, workdir)
    dep = Deployment(workdir, mode=mode,
                     config_transform=lambda t: base(t).replace("http://127.0.0.1:", "http://localhost:"))
    dep.start()
    try:
        r = wait_status(dep, lambda: mint_remote("r1"), 200, 10)
        assert r.status == 200, (r.raw, dep.logs())
        for _ in range(6):
            r = register(dep, "ref-alice-2YotnFZFEjr1zCsicMWpAA")
            assert r.status == 200, (r.raw, dep.logs())
        assert srv.count("/jwks") >= 1 and srv.count("/introspect") >= 1, srv.hits
        log = dep.ep.log()
        assert "cannot resolve" not in log and "did not finish within" not in log, log[-2000:]
        pids = [int(p) for p in re.findall(r"PID: (\d+)", dep.ep.rpc("core.psx").stdout)]
        tasks = {pid: _tasks(pid) for pid in pids}
        main = dep.ep.proc.pid
        assert tasks.get(main) == 1, ("the main process started a thread", tasks)
        assert all(n in (1, 2) for n in tasks.values()), tasks
        # the refresher/rtimer (jwks_url) and at least one SIP worker
        # (introspection) resolved the name
        assert sum(1 for n in tasks.values() if n == 2) >= 2, tasks
        # more REGISTERs: no more threads
        for _ in range(10):
            assert register(dep, mint_remote("r1", user="bob"), user="bob").status == 200
        assert {pid: _tasks(pid) for pid in pids} == tasks
        # SIGTERM stops it as usual (the lookup threads block every signal)
        os.kill(main, signal.SIGTERM)
        dep.ep.proc.wait(10)
    finally:
        dep.stop()
        srv.stop()
