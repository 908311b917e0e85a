#!/usr/bin/env python3
"""Remote trust figures through a real Kamailio eP-CSCF (native module) and
S-CSCF on loopback (not run in CI: about 90 s).

    cargo build --release && bash kamailio-example/module/build.sh
    python3 tests/e2e/measure_remote.py [--seconds 60] [--max-age 10] [--n 200] [--rate 20]

Prints:
  - JWKS requests the server saw during a steady REGISTER loop (jwks_url
    issuer, Cache-Control max-age as given), per minute;
  - REGISTER round-trip latency (client -> eP-CSCF -> S-CSCF -> client),
    median and p99 over N REGISTERs: a self-contained JWT (baseline), a
    reference token answered from the introspection cache, a reference token
    introspected every time (distinct tokens), and with the authorization
    server down (503; the circuit breaker opens after 3 failures).
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Deployment  # noqa: E402
from remote_server import RemoteServer, config_transform, mint_remote  # noqa: E402
from tokens import identity, mint  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def timed(c, aor, auth, want):
    t0 = time.perf_counter()
    r = c.register(aor, [auth], expires=300)
    dt = (time.perf_counter() - t0) * 1000.0
    assert r.status == want, r.raw
    return dt


def summary(name, xs):
    print("  %-44s median %7.2f ms   p99 %7.2f ms   (n=%d)"
          % (name, statistics.median(xs), pct(xs, 99), len(xs)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--max-age", type=int, default=10)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0,
                    help="REGISTERs per second in the steady loop")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wic-measure-"))
    srv = RemoteServer().start()
    srv.max_age = a.max_age
    dep = Deployment(work, mode="native",
                     config_transform=config_transform(srv, work, min_refresh=1))
    dep.start()
    try:
        aor = identity("a", "alice")[1]
        with dep.udp() as c:
            # wait for the refresher's first fetch
            deadline = time.monotonic() + 10
            while c.register(aor, ["Bearer " + mint_remote("r1")], expires=300).status != 200:
                assert time.monotonic() < deadline, dep.logs()
                time.sleep(0.1)

            print("wic-tna remote trust figures (native module, loopback)")
            # 1. steady load with a jwks_url issuer
            start_hits = srv.count("/jwks")
            n = 0
            t_end = time.monotonic() + a.seconds
            tok = mint_remote("r1", lifetime=600)
            while time.monotonic() < t_end:
                if n % 50 == 0:
                    tok = mint_remote("r1", lifetime=600)
                r = c.register(aor, ["Bearer " + tok], expires=300)
                assert r.status == 200, (r.raw, "\n".join(
                    l for l in dep.logs().splitlines() if "ERROR" in l)[-3000:])
                n += 1
                time.sleep(1.0 / a.rate)
            hits = srv.count("/jwks") - start_hits
            print("  steady load: %d REGISTERs in %d s (%.0f/s); JWKS requests "
                  "seen by the server: %d (%.1f per minute; max-age %d s)"
                  % (n, a.seconds, n / a.seconds, hits, hits * 60.0 / a.seconds,
                     a.max_age))

            # 2. latencies (pauses: Kamailio's tm keeps each transaction
            # ~5 s after the reply, and the harness gives it 32 MB of shm)
            time.sleep(6)
            jwt = "Bearer " + mint(lifetime=600)
            summary("JWT (issuer A, verified-token cache)",
                    [timed(c, aor, jwt, 200) for _ in range(a.n)])
            time.sleep(6)
            ref = "Bearer ref-alice-measure"
            # warm-up: the cache is per process (each SIP worker asks once)
            for _ in range(32):
                timed(c, aor, ref, 200)
            warm = srv.count("/introspect")
            summary("reference token, introspection cache hit",
                    [timed(c, aor, ref, 200) for _ in range(a.n)])
            print("  introspection calls: %d during warm-up (one per worker), "
                  "%d during the %d cached REGISTERs"
                  % (warm, srv.count("/introspect") - warm, a.n))
            time.sleep(6)
            summary("reference token, introspected each time",
                    [timed(c, aor, "Bearer ref-alice-u%d" % i, 200)
                     for i in range(a.n)])
            time.sleep(6)
            srv.intro_mode = "down"
            calls = srv.count("/introspect")
            down = [timed(c, aor, "Bearer ref-alice-d%d" % i, 500)
                    for i in range(a.n)]
            summary("authorization server down (503 -> 500)", down)
            print("  introspection calls while down: %d for %d REGISTERs "
                  "(breaker_failures 3, cool-down 30 s)"
                  % (srv.count("/introspect") - calls, a.n))
    finally:
        dep.stop()
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
