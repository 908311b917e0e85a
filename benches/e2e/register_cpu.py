#!/usr/bin/env python3
"""End to end (issue #4, item 4): CPU time the Kamailio eP-CSCF (native
wic_tna module, kamailio-example/epcscf.cfg) spends per REGISTER, with the
S-CSCF (kamailio-example/scscf.cfg) behind it, on loopback.

It reuses the e2e tests' harness (tests/e2e/harness.py: the same cfgs, the
same module build/wic_tna/wic_tna.so) and SIP client. Two eP-CSCF/S-CSCF
pairs run side by side:

  full  verified_cache_size = 0: every REGISTER pays a full ES256 verification
  hit   the default configuration (cache on), the same token every time: the
        refresh path

After a warm-up, N REGISTERs (same WIC, same token, To = its IMPU) go to
each pair over UDP, one after the other, in alternating batches of 400
followed by a 5.5 s pause (the harness gives Kamailio 32 MB of shared
memory; a transaction holds ~15 KB of it until tm frees it 5 s after the
reply, so ~2000 REGISTERs within 5 s exhaust it and get 500). The CPU time
of every process of each eP-CSCF (and S-CSCF) is counted over the whole
interval with `perf stat -e task-clock -p` (fallback: utime+stime from
/proc, 10 ms ticks), minus the idle rate measured just before. Results go to --out as `key value` lines:

  measured 1
  full.ep_cpu_ns / hit.ep_cpu_ns        eP-CSCF CPU per REGISTER
  full.scscf_cpu_ns / hit.scscf_cpu_ns  S-CSCF CPU per REGISTER
  full_over_hit                         full.ep_cpu_ns / hit.ep_cpu_ns
  verify_in_situ_ns                     full - hit (+ the benched cache hit): the
                                        full verification's cost inside Kamailio
  full.share_in_situ                    verify_in_situ_ns / full.ep_cpu_ns
  bench_full_ns, bench_hit_ns           from target/bench/verify.txt (same run)
  full.share_bench, hit.share_bench     those / the eP-CSCF's CPU per REGISTER

    python3 benches/e2e/register_cpu.py --out target/bench/e2e.txt [-n 2400]
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BATCH = 400
PAUSE = 5.5
E2E = REPO / "tests" / "e2e"


def write(out, lines):
    Path(out).write_text("".join("%s %s\n" % kv for kv in lines))


def not_measured(out, reason):
    print("e2e: not measured: %s" % reason)
    write(out, [("measured", 0), ("reason", reason.replace(" ", "_"))])
    sys.exit(0)


def pids_of_session(sid):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path("/proc/%s/stat" % d).read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        # fields[0] is state (field 3); session is field 6
        if int(fields[3]) == sid:
            pids.append(int(d))
    return sorted(pids)


def proc_ticks(pids):
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            f = Path("/proc/%d/stat" % p).read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(f[11]) + int(f[12])  # utime, stime
    return total * 1e9 / hz


class CpuMeter:
    """CPU time (ns) of a set of processes over an interval."""

    def __init__(self, pids):
        self.pids = pids
        self.perf = None

    def start(self):
        self.t0 = time.monotonic()
        self.ticks0 = proc_ticks(self.pids)
        try:
            self.perf = subprocess.Popen(
                ["perf", "stat", "-x", ",", "-e", "task-clock", "-p", ",".join(map(str, self.pids))],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(0.3)  # let perf attach
            if self.perf.poll() is not None:
                self.perf = None
        except FileNotFoundError:
            self.perf = None
        self.t0 = time.monotonic()
        self.ticks0 = proc_ticks(self.pids)

    def stop(self):
        wall = time.monotonic() - self.t0
        ticks = proc_ticks(self.pids) - self.ticks0
        if self.perf is not None:
            self.perf.send_signal(signal.SIGINT)
            _, err = self.perf.communicate(timeout=10)
            m = re.search(r"^([0-9.]+),msec,task-clock", err, re.M)
            if m:
                return float(m.group(1)) * 1e6, wall, "perf"
        return ticks, wall, "proc"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("-n", type=int, default=int(os.environ.get("WIC_TNA_BENCH_REGISTERS", "2400")))
    args = ap.parse_args()

    if not (REPO / "kamailio-example" / "module" / "build.sh").exists():
        not_measured(args.out, "no kamailio-example/module/build.sh")
    for cfg in ("epcscf.cfg", "scscf.cfg"):
        if not (REPO / "kamailio-example" / cfg).exists():
            not_measured(args.out, "no kamailio-example/%s" % cfg)
    if not (E2E / "harness.py").exists():
        not_measured(args.out, "no tests/e2e/harness.py")
    if not Path("/usr/sbin/kamailio").exists():
        not_measured(args.out, "no /usr/sbin/kamailio (scripts/install-deps.sh)")
    # The module, against the library just built.
    r = subprocess.run(["bash", str(REPO / "kamailio-example" / "module" / "build.sh")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-3000:])
        not_measured(args.out, "kamailio-example/module/build.sh failed")

    sys.dont_write_bytecode = True  # nothing written into tests/e2e/
    sys.path.insert(0, str(E2E))
    import harness  # noqa: E402  (tests/e2e)

    cli = str(harness.CLI)
    tok = subprocess.run(
        [cli, "mint", "--key", str(harness.KEYS / "issuer-a-p256.key"), "--alg", "ES256", "--kid", "a-es256",
         "--iss", harness.ISSUER_A, "--impi", "alice@socialnet.ims.example.net",
         "--impu", "sip:alice@socialnet.ims.example.net", "--sub", "user-1",
         "--scope", "openid webrtc-ims-client-access-to-ims", "--lifetime", "3000"],
        capture_output=True, text=True, check=True).stdout.strip()
    aor = "sip:alice@socialnet.ims.example.net"

    bench = {}
    vf = Path(os.environ.get("WIC_TNA_BENCH_OUT", REPO / "target" / "bench")) / "verify.txt"
    if vf.exists():
        for line in vf.read_text().splitlines():
            k, _, v = line.partition(" ")
            try:
                bench[k] = float(v)
            except ValueError:
                pass

    results = {}
    scenarios = ("full", "hit")

    def fail_with_logs(dep, why):
        sys.stderr.write("\n".join(l for l in dep.ep.log().splitlines()
                                   if "ERROR" in l or "WARN" in l or "CRIT" in l)[-4000:] + "\n")
        for d in deps.values():
            d.stop()
        not_measured(args.out, why)

    def register(k):
        resp = clients[k].register(aor, authorization=["Bearer " + tok], expires=600)
        if resp.status != 200:
            fail_with_logs(deps[k], "REGISTER answered %d %s" % (resp.status, resp.reason))

    with tempfile.TemporaryDirectory(prefix="wic-tna-bench-e2e-") as tmp:
        deps, clients = {}, {}
        try:
            for k in scenarios:
                dep = harness.Deployment(Path(tmp) / k, mode="native")
                if k == "full":
                    dep.config.write_text("verified_cache_size = 0\n" + dep.config.read_text())
                deps[k] = dep
                try:
                    dep.start()
                except Exception as e:  # noqa: BLE001
                    for d in deps.values():
                        d.stop()
                    not_measured(args.out, "Kamailio did not start (%s)" % str(e).splitlines()[0][:80])
                clients[k] = dep.udp()
            for k in scenarios:
                for _ in range(200):  # warm-up (and, for "hit", the one full verification)
                    register(k)
            time.sleep(PAUSE)
            meters = {(k, side): CpuMeter(pids_of_session(getattr(deps[k], side).proc.pid))
                      for k in scenarios for side in ("ep", "scscf")}
            # Idle rates (timer processes), subtracted below.
            for m in meters.values():
                m.start()
            time.sleep(1.5)
            idle = {key: m.stop() for key, m in meters.items()}
            for m in meters.values():
                m.start()
            wall = {k: 0.0 for k in scenarios}
            done = 0
            rnd = 0
            while done < args.n:
                # Both pairs measured over the same interval, in alternating
                # batches (the order alternating too), so that a change of
                # the machine's speed affects both alike. Batches and pauses:
                # each transaction holds ~15 KB of the harness's 32 MB shm
                # until tm frees it 5 s after the reply; that work is counted.
                b = min(BATCH, args.n - done)
                order = scenarios if rnd % 2 == 0 else scenarios[::-1]
                for k in order:
                    t = time.monotonic()
                    for _ in range(b):
                        register(k)
                    wall[k] += time.monotonic() - t
                done += b
                rnd += 1
                time.sleep(PAUSE)
            used = {key: m.stop() for key, m in meters.items()}
        finally:
            for c in clients.values():
                c.close()
            for d in deps.values():
                d.stop()
        how = used[("full", "ep")][2]
        for k in scenarios:
            per = {}
            for side in ("ep", "scscf"):
                cpu, w, _ = used[(k, side)]
                icpu, iw, _ = idle[(k, side)]
                per[side] = (cpu - icpu / iw * w) / args.n
            results[k] = (per["ep"], per["scscf"], wall[k] / args.n, how)
            print("e2e %-4s: %d REGISTERs, %.0f µs wall each; eP-CSCF CPU %.1f µs, S-CSCF CPU %.1f µs per REGISTER "
                  "(%s; idle eP-CSCF %.2f%% CPU subtracted)" % (
                      k, args.n, 1e6 * wall[k] / args.n, per["ep"] / 1e3, per["scscf"] / 1e3, how,
                      100 * idle[(k, "ep")][0] / idle[(k, "ep")][1] / 1e9))

    full_ep, full_sc = results["full"][0], results["full"][1]
    hit_ep, hit_sc = results["hit"][0], results["hit"][1]
    lines = [("measured", 1), ("registers", args.n), ("meter", results["full"][3]),
             ("full.ep_cpu_ns", full_ep), ("full.scscf_cpu_ns", full_sc), ("full.wall_ns", results["full"][2] * 1e9),
             ("hit.ep_cpu_ns", hit_ep), ("hit.scscf_cpu_ns", hit_sc), ("hit.wall_ns", results["hit"][2] * 1e9)]
    in_situ = full_ep - hit_ep + bench.get("hit.ns", 0.0)
    lines.append(("full_over_hit", full_ep / hit_ep))
    lines.append(("verify_in_situ_ns", in_situ))
    lines.append(("full.share_in_situ", in_situ / full_ep))
    if "full.ES256.ns" in bench:
        lines.append(("bench_full_ns", bench["full.ES256.ns"]))
        lines.append(("full.share_bench", bench["full.ES256.ns"] / full_ep))
    if "hit.ns" in bench:
        lines.append(("bench_hit_ns", bench["hit.ns"]))
        lines.append(("hit.share_bench", bench["hit.ns"] / hit_ep))
    write(args.out, lines)
    print("e2e: a REGISTER with a full ES256 verification costs the eP-CSCF %.2fx a refresh REGISTER (cache hit)"
          % (full_ep / hit_ep))
    print("e2e: full ES256 verification inside Kamailio (full - hit + benched hit) %.1f µs = %.0f%% of the eP-CSCF's "
          "CPU per REGISTER; in the bench's hot loop %.1f µs" % (
              in_situ / 1e3, 100 * in_situ / full_ep, bench.get("full.ES256.ns", float("nan")) / 1e3))


if __name__ == "__main__":
    main()
