#!/usr/bin/env python3
"""Reproducers of problems the load test ran into (library, module,
example configuration). Each probe prints REPRODUCED or fixed, and the
script exits 1 while any is reproduced. Loopback only; a few seconds each.

Status: idle-worker and stale-result are fixed and run.sh runs them as
regression checks (an out-of-step worker now refuses everything with 500
and refuses WebSocket handshakes; a parameter the module cannot read
resets $wic_tna(...) to internal_error). bar-restart is the documented
behaviour of an anonymous shared state (a run-time bar lasts until the
restart; `barred = true` in the configuration, a state_file or the Redis
fleet store make it last): not run by run.sh.

    python3 tests/load/known_issues.py            # all probes
    python3 tests/load/known_issues.py idle-worker

idle-worker      After a successful `wic_tna.reload` (a key rotated out),
                 a worker that had no request since re-reads the file on
                 its next request, whatever the file holds then. If the
                 file was changed meanwhile without a reload (a broken
                 draft, or an older version), that worker keeps its
                 previous configuration (or takes the unreloaded one): the
                 rotated-out key is still accepted over WebSocket/TCP
                 (tcp workers idle while the traffic is UDP), refused on
                 UDP.
stale-result     When the module cannot read its argument (as first found:
                 an Authorization value over Kamailio's pv_buffer_size,
                 8192 bytes, which the module now reads directly), the
                 wic_tna_verify*() wrapper returns -2 before the last result
                 is reset: $wic_tna(status/reason/tna/impi) still hold the
                 previous request's, e.g. 200/ok and another user's TNA
                 header. epcscf.cfg checks the return code, so it answers
                 "500 Server Internal Error (ok)"; a script testing
                 $wic_tna(tna) or $wic_tna(status) would forward the
                 previous user's identity.
bar-restart      A run-time bar (kamcmd wic_tna.bar) is lost when the
                 eP-CSCF restarts (native module, no state_file): the barred
                 issuer's tokens register again.
"""

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))

from harness import Deployment, ISSUER_B, ORIGIN_A  # noqa: E402
import loadtokens as L  # noqa: E402
from loadtest import rotate  # noqa: E402


def probe_idle_worker(dep, wd):
    key, pub = L.new_rotation_key(wd)
    m = L.Minter(key)
    impu = "sip:alice@%s" % L.DOMAIN["a"]

    def old_key_token():
        return m.authorization("v-es256-old", "a", "alice", int(time.time()))

    def udp():
        with dep.udp() as c:
            return c.register(impu, [old_key_token()], expires=600).status

    def ws():
        try:
            with dep.ws(ORIGIN_A) as c:
                return c.register(impu, [old_key_token()], expires=600).status
        except Exception as e:  # handshake refused: the worker fails closed
            if "403" in str(e):
                return 403
            raise

    assert udp() == 200
    tmp = dep.config.with_name("rotated.tmp")
    tmp.write_text(rotate(dep.config.read_text(), pub))
    os.replace(tmp, dep.config)
    r = dep.reload()
    assert r.returncode == 0, r.stdout + r.stderr
    # UDP workers (busy) follow the rotation at once
    udp_after = [udp() for _ in range(4)]
    assert udp_after == [401] * 4, udp_after
    # a broken draft lands on disk, no reload
    dep.config.write_text("[[issuer]\nbroken draft\n")
    ws_after = [ws() for _ in range(4)]
    print("  rotated-out key after the reload: UDP %s, WebSocket %s"
          % (udp_after, ws_after))
    return 200 in ws_after


def probe_stale_result(dep, wd):
    from tokens import identity, mint
    impu = identity("a", "alice")[1]
    big = "Bearer " + "A" * 9000
    got = []
    for _ in range(4):
        with dep.udp() as c:
            ok = c.register(impu, ["Bearer " + mint()], expires=600)
            assert ok.status == 200, ok.raw
            r = c.register(impu, [big], expires=600)
        got.append("%d %s" % (r.status, r.reason))
    print("  9000-byte Authorization after a valid REGISTER: %s" % got)
    return any("(ok)" in g or g.startswith("200") for g in got)


def probe_bar_restart(dep, wd):
    from tokens import identity, mint

    def reg():
        with dep.udp() as c:
            return c.register(identity("b", "dave")[1],
                              ["Bearer " + mint(issuer="b", user="dave")],
                              expires=600).status

    assert reg() == 200
    r = dep.bar(ISSUER_B)
    assert r.returncode == 0, r.stdout
    time.sleep(0.5)
    assert reg() == 403
    os.killpg(dep.ep.proc.pid, signal.SIGKILL)
    dep.ep.proc.wait(10)
    dep.ep.stop()
    dep.ep.start()
    after = [reg() for _ in range(3)]
    print("  barred issuer after a restart: %s, barred list %s"
          % (after, dep.stats()["barred"]))
    return 200 in after


PROBES = {"idle-worker": probe_idle_worker,
          "stale-result": probe_stale_result,
          "bar-restart": probe_bar_restart}


def main(argv):
    names = argv or list(PROBES)
    reproduced = []
    for name in names:
        wd = Path(tempfile.mkdtemp(prefix="wic-known-"))
        dep = Deployment(wd / "dep")
        dep.start()
        try:
            print("%s:" % name, flush=True)
            hit = PROBES[name](dep, wd)
        finally:
            dep.stop()
            shutil.rmtree(wd, ignore_errors=True)
        print("  %s" % ("REPRODUCED" if hit else "fixed"), flush=True)
        if hit:
            reproduced.append(name)
    return 1 if reproduced else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
