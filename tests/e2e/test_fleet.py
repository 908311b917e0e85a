"""Fleet end to end: two eP-CSCFs (separate Kamailio processes, each with its
own anonymous shared state), one S-CSCF and one redis-server, all on
loopback. Barring set on node 1 reaches node 2 through its refresher; a token
first used on one connection is refused from another connection on either
node, and refreshes from its own connection.

Barring: native module (the Python glue has no refresher process; it shares
barring through its state_file). Replay: native module and Python glue."""

import shutil
import socket
import subprocess
import time
import uuid

import pytest

from harness import ISSUER_A, ISSUER_B, Deployment, free_port
from tokens import identity, mint

REDIS = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if shutil.which("/usr/bin/redis-server") else None)


def bearer(token):
    return "Bearer " + token


def fresh(issuer="a", user="alice"):
    """A token with a jti of its own."""
    return mint(issuer=issuer, user=user, lifetime=300,
                extra={"jti": "e2e-" + uuid.uuid4().hex})


def _redis_ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def redis_port(workdir):
    if not REDIS:
        pytest.skip("redis-server is not installed (scripts/install-deps.sh)")
    port = free_port()
    p = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no"],
                         cwd=str(workdir), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _redis_ping(port):
            assert p.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server not ready"
            time.sleep(0.05)
        yield port
    finally:
        p.kill()
        p.wait()


@pytest.fixture
def fleet(request, workdir, redis_port):
    mode = getattr(request, "param", "native")
    def extra(node):
        return ('[replay]\nenabled = true\n\n[fleet]\n'
                'redis_url = "redis://127.0.0.1:%d/0"\nnode_id = "%s"\n'
                % (redis_port, node))
    n1 = Deployment(workdir / "n1", mode, extra_config=extra("node-1"),
                    name="epcscf1")
    n1.start()
    n2 = Deployment(workdir / "n2", mode, extra_config=extra("node-2"),
                    scscf_of=n1, name="epcscf2")
    try:
        n2.start()
    except Exception:
        n1.stop()
        raise
    yield n1, n2
    n2.stop()
    n1.stop()
    print(n1.logs())
    print(n2.logs())


def register(dep, token, issuer="a", user="alice"):
    with dep.udp() as c:
        return c.register(identity(issuer, user)[1], [bearer(token)],
                          expires=300)


@pytest.mark.parametrize("fleet", ["native", "python"], indirect=True)
def test_fleet_barring_reaches_the_other_node(fleet):
    """native: kamcmd on node 1, node 2's refresher process polls; python:
    the CLI on node 1's state_file, node 2's rtimer tick polls."""
    n1, n2 = fleet
    # both nodes accept both issuers
    for n in (n1, n2):
        assert register(n, fresh("a")).status == 200, n.logs()
        assert register(n, fresh("b", "bob"), "b", "bob").status == 200

    r = n1.bar(ISSUER_A)
    assert r.returncode == 0, (r.stdout, r.stderr)
    t0 = time.monotonic()
    # at once on node 1
    assert register(n1, fresh("a")).status == 403
    # within one second on node 2 (its refresher polls the store)
    while True:
        resp = register(n2, fresh("a"))
        if resp.status == 403:
            break
        assert resp.status == 200, resp.raw
        assert time.monotonic() - t0 < 1.0, "node 2 still accepts the barred issuer"
        time.sleep(0.05)
    assert time.monotonic() - t0 < 1.0
    assert resp.header("WWW-Authenticate") is None, resp.raw
    assert ISSUER_A in n2.stats()["barred"]
    # the other issuer still registers on both
    for n in (n1, n2):
        assert register(n, fresh("b", "bob"), "b", "bob").status == 200
    assert n2.stats()["fleet"]["store"] == "up"

    r = n1.unbar(ISSUER_A)
    assert r.returncode == 0, (r.stdout, r.stderr)
    t0 = time.monotonic()
    assert register(n1, fresh("a")).status == 200
    while register(n2, fresh("a")).status != 200:
        assert time.monotonic() - t0 < 1.0, "node 2 did not follow the unbar"
        time.sleep(0.05)
    assert ISSUER_A not in n2.stats()["barred"]


@pytest.mark.parametrize("fleet", ["native", "python"], indirect=True)
def test_fleet_replay_from_another_connection(fleet):
    n1, n2 = fleet
    token = fresh("a", "dave")
    impu = identity("a", "dave")[1]
    with n1.udp() as c1:
        r = c1.register(impu, [bearer(token)], expires=300)
        assert r.status == 200, (r.raw, n1.logs())
        # the same connection refreshing: not a replay
        r = c1.register(impu, [bearer(token)], expires=300)
        assert r.status == 200, (r.raw, n1.logs())

        # the same token from another connection, on node 2 and on node 1
        for n in (n2, n1):
            with n.udp() as c2:
                r = c2.register(impu, [bearer(token)], expires=300)
            assert r.status == 401, (r.raw, n.logs())
            ch = r.header("WWW-Authenticate") or ""
            assert 'error="invalid_token"' in ch, ch
            assert token.split(".")[1][:20] not in r.raw
            time.sleep(0.3)
            assert n.scscf_rx(r.header("Call-ID")) == [], "replay reached the S-CSCF"

        # still a refresh for the first connection afterwards
        r = c1.register(impu, [bearer(token)], expires=300)
        assert r.status == 200, (r.raw, n1.logs())

    assert n2.stats()["outcomes"][ISSUER_A]["token_replayed"] >= 1
    assert n1.stats()["outcomes"][ISSUER_A]["token_replayed"] >= 1

    # over WebSocket: refresh on the connection, replay from another
    token = fresh("a", "erin")
    impu = identity("a", "erin")[1]
    with n2.ws() as w:
        assert w.register(impu, [bearer(token)], expires=300).status == 200
        assert w.register(impu, [bearer(token)], expires=300).status == 200
        with n1.ws() as w2:
            assert w2.register(impu, [bearer(token)], expires=300).status == 401
