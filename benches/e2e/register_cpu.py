#!/usr/bin/env python3
"""End to end (issue #4, item 4): CPU time the Kamailio eP-CSCF spends per
REGISTER, with the S-CSCF (kamailio-example/scscf.cfg) behind it, on
loopback, for:

  plain   NO token check: kamailio-example/epcscf.cfg with route[WIC_VERIFY]
          replaced by constant results (the TNA header the native module
          would build for this token) and the wic_tna module not loaded.
          Everything else (sanity, htable binding, header rewrite, expiry
          cap, relay to the S-CSCF) is the same: plain forwarding.
  native  the native wic_tna module, verified_cache_size = 0: every REGISTER
          pays a full ES256 verification
  python  the Python glue (kamailio-example/epcscf-python.cfg, app_python3,
          kamailio-example/python/wic_tna_glue.py), cache off as well
  hit     the native module with the default configuration (cache on), the
          same token every time: the refresh path

It reuses the e2e tests' harness (tests/e2e/harness.py: the same cfgs, the
same module build/wic_tna/wic_tna.so, Kamailio started the same way). sipp
(`/usr/bin/sipp`) drives the REGISTERs: one UDP socket per pair, the same
WIC, the same ES256 token, To = its IMPU, at a fixed rate (--rate, default
200/s), N per pair (-n, default 3000) in rounds of --batch (default 250)
that alternate between the pairs (order rotating) so that a change of the
machine's speed affects all alike. The rate keeps the transactions that tm
holds for 5 s after the reply (~15 KB each) well inside the harness's 32 MB
of shared memory. After each round the profile driver measures the ES256
floor (about 0.2 s), so that the floor is taken at the machine's speed of
the moment (the verify bench's floor is the fallback), and the instances'
CPU is read, for per-round figures: each reported as the median over the
rounds (with its range), next to the figures over the whole run.

CPU time is read from /proc: the sum of `sum_exec_runtime` (first field of
/proc/<pid>/task/<tid>/schedstat, nanoseconds) over every thread of every
process of each Kamailio instance, over the whole measured interval, minus
the instance's idle rate measured just before. (utime+stime, in 10 ms
ticks, is the fallback when schedstat is missing.)

Each figure is reported as a ratio to plain forwarding, and the difference
to plain forwarding in µs per REGISTER against the floor of the algorithm
(ES256: the bare aws-lc signature check, floor.ES256.ns from the same run's
verify.txt). Target: native <= plain + 1.3 x floor.

Results go to --out as `key value` lines:

  measured 1
  <k>.ep_cpu_ns, <k>.scscf_cpu_ns, <k>.wall_ns   k in plain, native, python, hit
  <k>.over_plain                                 <k>.ep_cpu_ns / plain.ep_cpu_ns
  <k>.minus_plain_ns                             <k>.ep_cpu_ns - plain.ep_cpu_ns
  <k>.minus_plain_over_floor                     that / floor_ns
  floor_ns, bench_full_ns, bench_hit_ns          from verify.txt (same run)
  target_ep_cpu_ns                               plain + 1.3 x floor
  native_target_met                              1 or 0
  (and, as before: full_over_hit, verify_in_situ_ns, full.share_in_situ)
  insitu.n, insitu.<k>.perf_cpu_ns               k in native, hit
  insitu.<k>.<g>_share, insitu.<k>.<g>_ns        g in awslc, wictna, kamailio,
                                                 kernel; ns = share x <k>.ep_cpu_ns
  insitu.native.awslc_over_floor                 aws-lc in situ / floor_ns

The in-situ profile (after the rounds; --perf-n REGISTERs per pair,
default 2000, 0 or WIC_TNA_BENCH_NO_PERF=1: none): `perf record -F 1999`
on the eP-CSCF processes of the native and hit pairs while sipp sends
them REGISTERs, the samples grouped by where they fell (perf_group: aws-lc,
wic-tna's own code, Kamailio with its modules and libc, the kernel), each
group's share of the samples times the CPU per REGISTER measured in the
rounds without perf (perf's sampling slows the profiled run down; its CPU
is reported as insitu.<k>.perf_cpu_ns).
It shows what the bare signature check's own code costs inside the proxy,
with the proxy's work between two checks evicting its code and tables
from the caches, against its floor measured in a hot loop.

    python3 benches/e2e/register_cpu.py --out target/bench/e2e.txt [-n 3000] [--rate 200]
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
E2E = REPO / "tests" / "e2e"


def profile_driver():
    """The benches' profile driver (cargo bench --no-run builds it), or None."""
    deps = REPO / "target" / "release" / "deps"
    found = [p for p in deps.glob("profile-*") if p.suffix == "" and os.access(p, os.X_OK)] if deps.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def floor_now(driver, n=4000):
    """ns of one bare ES256 signature check, measured now (the driver's
    floor mode), so that the floor and the REGISTERs share the machine's
    speed of the moment; None when it cannot be measured."""
    if driver is None:
        return None
    r = subprocess.run([str(driver), "--bench", "ES256", str(n), "floor"], capture_output=True, text=True)
    m = re.search(r"\(([0-9.]+) ns each\)", r.stderr)
    return float(m.group(1)) if r.returncode == 0 and m else None


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


def proc_cpu_ns(pids):
    """CPU time (ns) used so far by every thread of these processes:
    schedstat's sum_exec_runtime, else utime+stime (10 ms ticks)."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            tids = os.listdir("/proc/%d/task" % p)
        except FileNotFoundError:
            continue
        for t in tids:
            try:
                total += int(Path("/proc/%d/task/%s/schedstat" % (p, t)).read_text().split()[0])
                continue
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
            try:
                f = Path("/proc/%d/task/%s/stat" % (p, t)).read_text().rsplit(")", 1)[1].split()
                total += (int(f[11]) + int(f[12])) * 1e9 / hz
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    return total


class CpuMeter:
    """CPU time (ns) of a set of processes over an interval, from /proc."""

    def __init__(self, pids):
        self.pids = pids

    def start(self):
        self.t0 = time.monotonic()
        self.cpu0 = proc_cpu_ns(self.pids)

    def stop(self):
        return proc_cpu_ns(self.pids) - self.cpu0, time.monotonic() - self.t0


SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="WIC REGISTER with a bearer token">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:ims.example.net SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <AOR>;tag=[pid]-[call_number]
      To: <AOR>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:alice@[local_ip]:[local_port];transport=udp>
      Expires: 600
      Authorization: Bearer TOKEN
      User-Agent: wic-tna-bench
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
</scenario>
"""


def plain_cfg(native_cfg, tna, impi, impu, issuer):
    """epcscf.cfg without the token check: route[WIC_VERIFY] gives the
    results the native module gives for the bench's token, as constants."""
    text = native_cfg.read_text()
    verify = re.search(r"(?ms)^route\[WIC_VERIFY\] \{\n\twic_tna_verify_register\(.*?^\}\n", text)
    cap = re.search(r"(?ms)^route\[CAP_EXPIRES\] \{\n\tif \(wic_tna_cap_expires\(.*?^\}\n", text)
    origin = re.search(r"(?ms)^route\[WIC_ORIGIN\] \{\n\twic_tna_origin\(.*?^\}\n", text)
    load = '#!else\nloadmodule WIC_TNA_MODULE\n#!endif'
    params = re.findall(r'(?m)^modparam\("wic_tna", .*\n', text)
    if not verify or not cap or not origin or load not in text or not params:
        return None
    for s in (tna, impi, impu, issuer):
        assert "'" not in s
    const = ("route[WIC_VERIFY] {\n"
             "\t$var(wic_rc) = 1;\n\t$var(wic_status) = 200;\n\t$var(wic_reason) = \"ok\";\n"
             "\t$var(wic_challenge) = \"\";\n\t$var(wic_tna) = '%s';\n\t$var(wic_impi) = '%s';\n"
             "\t$var(wic_impus) = '%s';\n\t$var(wic_issuer) = '%s';\n\t$var(wic_expires) = 600;\n"
             "\t$var(wic_requested) = -1;\n}\n"
             % (tna, impi, impu, issuer))
    text = text.replace(verify.group(0), const)
    text = text.replace(cap.group(0), "route[CAP_EXPIRES] {\n\treturn;\n}\n")
    text = text.replace(origin.group(0), "route[WIC_ORIGIN] {\n\t$var(origin_rc) = 1;\n}\n")
    text = text.replace(load, "#!else\n#!endif")
    for p in params:
        text = text.replace(p, "")
    return text


BARE_CFG = """#!KAMAILIO
# Bare forwarding (benches only): what any proxy in front of the S-CSCF
# does with a REGISTER and nothing more: Max-Forwards, the constant TNA
# header in place of the client's Authorization, relay from the core
# socket. No token check, no policing, no Path, no bindings.
#!ifndef MODULES_DIR
#!define MODULES_DIR "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
#!endif
debug=2
children=2
auto_aliases=no
disable_tcp=yes
listen=udp:127.0.0.1:EP_SIP_PORT
listen=udp:127.0.0.1:EP_CORE_PORT
mpath=MODULES_DIR
loadmodule "kex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "ctl.so"
modparam("ctl", "binrpc", CTL_SOCKET)
modparam("tm", "fr_timer", 5000)
request_route {
\tif (!mf_process_maxfwd_header("10")) {
\t\tsl_send_reply("483", "Too Many Hops");
\t\texit;
\t}
\tremove_hf("Authorization");
\t$var(tna) = '@TNA@';\n\tappend_hf("Authorization: $var(tna)\\r\\n");
\t$du = "sip:127.0.0.1:" + SCSCF_PORT + ";transport=udp";
\tforce_send_socket(udp:127.0.0.1:EP_CORE_PORT);
\tt_relay();
}
"""


def perf_group(dso, sym):
    """Where a sample of the eP-CSCF was: aws-lc (the crypto library: its
    C and assembly code, and its Rust binding), wic-tna (the library's own
    Rust code, its C ABI and the Kamailio module), the kernel, or Kamailio
    (the binary, its other modules, libc)."""
    if dso == "libwic_tna.so":
        if sym.startswith("wic_tna_") or sym == "[unknown]":
            return "wictna"
        if "::" in sym:
            return "awslc" if sym.lstrip("<").startswith("aws_lc_rs") else "wictna"
        return "awslc"
    if dso == "wic_tna.so":
        return "wictna"
    if dso.startswith("[kernel"):
        return "kernel"
    return "kamailio"


def in_situ_profile(deps, drive, tmp, n):
    """A flat perf profile of the eP-CSCF processes of the native (cache
    off) and hit pairs while n REGISTERs go through each: CPU per REGISTER
    by where it was spent (perf_group), from the samples' shares of the
    CPU time measured over the same interval. {} when perf cannot record
    (not installed, or not allowed)."""
    perf = shutil.which("perf")
    if not perf:
        print("e2e: in-situ profile: no perf (apt-get install linux-perf): skipped")
        return {}
    out = {"insitu.n": n}
    for k in ("native", "hit"):
        pids = pids_of_session(deps[k].ep.proc.pid)
        data = tmp / ("perf.%s.data" % k)
        rec = subprocess.Popen([perf, "record", "-F", "1999", "-o", str(data), "-p", ",".join(map(str, pids))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        if rec.poll() is not None:
            print("e2e: in-situ profile: perf record failed: %s" % rec.stderr.read().strip()[-200:])
            return {}
        meter = CpuMeter(pids)
        meter.start()
        drive(k, n)
        cpu, _ = meter.stop()
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=60)
        rep = subprocess.run([perf, "report", "-i", str(data), "--no-children", "--sort", "dso,sym", "--stdio"],
                             capture_output=True, text=True)
        # The whole flat profile, for reading beside the table.
        (Path(os.environ.get("WIC_TNA_BENCH_OUT", REPO / "target" / "bench")) / ("insitu.%s.txt" % k)).write_text(rep.stdout)
        shares = {}
        for line in rep.stdout.splitlines():
            m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[.\]\s+(.*\S)", line)
            if m:
                g = perf_group(m.group(2), m.group(3))
                shares[g] = shares.get(g, 0.0) + float(m.group(1)) / 100
        if not shares:
            print("e2e: in-situ profile: perf report gave no samples: skipped")
            return {}
        out["insitu.%s.perf_cpu_ns" % k] = cpu / n
        for g, sh in shares.items():
            out["insitu.%s.%s_share" % (k, g)] = sh
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("-n", type=int, default=int(os.environ.get("WIC_TNA_BENCH_REGISTERS", "3000")))
    ap.add_argument("--rate", type=int, default=int(os.environ.get("WIC_TNA_BENCH_RATE", "200")))
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--perf-n", type=int, default=int(os.environ.get("WIC_TNA_BENCH_PERF_REGISTERS", "2000")),
                    help="REGISTERs per pair for the in-situ profile (0: none)")
    args = ap.parse_args()
    if os.environ.get("WIC_TNA_BENCH_NO_PERF"):
        args.perf_n = 0

    if not (REPO / "kamailio-example" / "module" / "build.sh").exists():
        not_measured(args.out, "no kamailio-example/module/build.sh")
    for cfg in ("epcscf.cfg", "epcscf-python.cfg", "scscf.cfg"):
        if not (REPO / "kamailio-example" / cfg).exists():
            not_measured(args.out, "no kamailio-example/%s" % cfg)
    if not (E2E / "harness.py").exists():
        not_measured(args.out, "no tests/e2e/harness.py")
    if not Path("/usr/sbin/kamailio").exists():
        not_measured(args.out, "no /usr/sbin/kamailio (scripts/install-deps.sh)")
    sipp = shutil.which("sipp")
    if not sipp:
        not_measured(args.out, "no sipp (apt-get install sip-tester)")
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
    impi, aor = "alice@socialnet.ims.example.net", "sip:alice@socialnet.ims.example.net"
    tok = subprocess.run(
        [cli, "mint", "--key", str(harness.KEYS / "issuer-a-p256.key"), "--alg", "ES256", "--kid", "a-es256",
         "--iss", harness.ISSUER_A, "--impi", impi, "--impu", aor, "--sub", "user-1",
         "--scope", "openid webrtc-ims-client-access-to-ims", "--lifetime", "3000"],
        capture_output=True, text=True, check=True).stdout.strip()
    # What the native module puts in the TNA header for this token (src/core/tna.rs).
    realm = "ims.example.net"
    tna = ('Digest username="%s", realm="%s", uri="sip:%s", nonce="", response="", '
           'integrity-protected=auth-done, authorization-entity="%s"' % (impi, realm, realm, harness.ISSUER_A))

    bench = {}
    vf = Path(os.environ.get("WIC_TNA_BENCH_OUT", REPO / "target" / "bench")) / "verify.txt"
    if vf.exists():
        for line in vf.read_text().splitlines():
            k, _, v = line.partition(" ")
            try:
                bench[k] = float(v)
            except ValueError:
                pass

    scenarios = ("bare", "plain", "native", "python", "hit")
    results = {}

    with tempfile.TemporaryDirectory(prefix="wic-tna-bench-e2e-") as tmp:
        tmp = Path(tmp)
        scen = tmp / "register.xml"
        scen.write_text(SCENARIO.replace("AOR", aor).replace("TOKEN", tok))
        text = plain_cfg(harness.EXAMPLE / "epcscf.cfg", tna, impi, aor, harness.ISSUER_A)
        if text is None:
            not_measured(args.out, "kamailio-example/epcscf.cfg changed: cannot derive the plain-forwarding cfg")
        plain = tmp / "epcscf-plain.cfg"
        plain.write_text(text)
        bare = tmp / "epcscf-bare.cfg"
        bare.write_text(BARE_CFG.replace("@TNA@", tna))

        deps = {}
        ports = {}

        def stop_all():
            for d in deps.values():
                d.stop()

        def fail_with_logs(k, why):
            dep = deps.get(k)
            if dep is not None and dep.ep is not None:
                sys.stderr.write("\n".join(l for l in dep.ep.log().splitlines()
                                           if "ERROR" in l or "WARN" in l or "CRIT" in l)[-4000:] + "\n")
            stop_all()
            not_measured(args.out, why)

        def drive(k, n):
            """n REGISTERs from sipp to pair k at the fixed rate; all must get 200."""
            cmd = [sipp, "127.0.0.1:%d" % deps[k].ep_sip, "-sf", str(scen), "-t", "u1",
                   "-i", "127.0.0.1", "-p", str(ports[k]), "-m", str(n), "-r", str(args.rate), "-rp", "1000",
                   "-l", "10000", "-nostdin", "-timeout", str(int(60 + 2 * n / args.rate)), "-timeout_error",
                   "-trace_err", "-error_file", str(tmp / ("%s.sipp-errors.log" % k))]
            t = time.monotonic()
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp))
            w = time.monotonic() - t
            if r.returncode != 0:
                err = (tmp / ("%s.sipp-errors.log" % k))
                sys.stderr.write(r.stdout[-1500:] + r.stderr[-1500:] + (err.read_text()[-2000:] if err.exists() else ""))
                fail_with_logs(k, "sipp to %s: exit %d (not every REGISTER got 200)" % (k, r.returncode))
            return w

        try:
            for k in scenarios:
                dep = harness.Deployment(tmp / k, mode="python" if k == "python" else "native")
                if k in ("native", "python"):
                    dep.config.write_text("verified_cache_size = 0\n" + dep.config.read_text())
                if k in ("plain", "bare"):
                    # The harness's native deployment with the plain (or
                    # bare) cfg.
                    orig = harness.EXAMPLE
                    try:
                        fake = tmp / ("example-" + k)
                        fake.mkdir()
                        for f in orig.iterdir():
                            (fake / f.name).symlink_to(f)
                        (fake / "epcscf.cfg").unlink()
                        (fake / "epcscf.cfg").symlink_to(plain if k == "plain" else bare)
                        harness.EXAMPLE = fake
                        deps[k] = dep
                        dep.start()
                    finally:
                        harness.EXAMPLE = orig
                else:
                    deps[k] = dep
                    dep.start()
                ports[k] = harness.free_port()
        except Exception as e:  # noqa: BLE001
            stop_all()
            sys.stderr.write("%s\n" % e)
            not_measured(args.out, "Kamailio did not start (%s)" % str(e).splitlines()[0][:80])

        try:
            for k in scenarios:
                drive(k, 200)  # warm-up (and, for "hit", the one full verification)
            time.sleep(6)
            meters = {(k, side): CpuMeter(pids_of_session(getattr(deps[k], side).proc.pid))
                      for k in scenarios for side in ("ep", "scscf")}
            # Idle rates (timer processes), subtracted below.
            for m in meters.values():
                m.start()
            time.sleep(2)
            idle = {key: m.stop() for key, m in meters.items()}
            for m in meters.values():
                m.start()
            wall = {k: 0.0 for k in scenarios}
            done = 0
            rnd = 0
            driver = profile_driver()
            floors = []
            # Per round: every instance's CPU, the wall time and the floor of
            # that moment, for medians of per-round figures (robust against
            # the machine's speed changing between rounds).
            rounds = []
            t_prev = time.monotonic()
            s_prev = {key: proc_cpu_ns(m.pids) for key, m in meters.items()}
            while done < args.n:
                b = min(args.batch, args.n - done)
                order = scenarios[rnd % len(scenarios):] + scenarios[:rnd % len(scenarios)]
                for k in order:
                    wall[k] += drive(k, b)
                done += b
                rnd += 1
                f = floor_now(driver)
                if f:
                    floors.append(f)
                t = time.monotonic()
                s_now = {key: proc_cpu_ns(m.pids) for key, m in meters.items()}
                rounds.append((b, t - t_prev, {key: s_now[key] - s_prev[key] for key in s_now}, f))
                t_prev, s_prev = t, s_now
            # the last transactions' timers (tm frees them 5 s after the reply)
            time.sleep(6)
            used = {key: m.stop() for key, m in meters.items()}
            insitu = in_situ_profile(deps, drive, tmp, args.perf_n) if args.perf_n > 0 else {}
        finally:
            stop_all()
        for k in scenarios:
            per = {}
            for side in ("ep", "scscf"):
                cpu, w = used[(k, side)]
                icpu, iw = idle[(k, side)]
                per[side] = (cpu - icpu / iw * w) / args.n
            results[k] = (per["ep"], per["scscf"], wall[k] / args.n)
            print("e2e %-6s: %d REGISTERs at %d/s; eP-CSCF CPU %.1f µs, S-CSCF CPU %.1f µs per REGISTER "
                  "(/proc schedstat; idle eP-CSCF %.2f%% CPU subtracted)" % (
                      k, args.n, args.rate, per["ep"] / 1e3, per["scscf"] / 1e3,
                      100 * idle[(k, "ep")][0] / idle[(k, "ep")][1] / 1e9))

    plain_ep = results["plain"][0]
    # The floor measured between the rounds (the machine's speed of the
    # moment; its median), else the verify bench's.
    floors.sort()
    floor = floors[len(floors) // 2] if floors else bench.get("floor.ES256.ns")
    lines = [("measured", 1), ("registers", args.n), ("rate", args.rate), ("meter", "proc_schedstat"),
             ("floor_source", "between_rounds" if floors else "verify_bench"),
             ("floor_rounds", len(floors))]
    for k in scenarios:
        ep, sc, w = results[k]
        lines += [("%s.ep_cpu_ns" % k, ep), ("%s.scscf_cpu_ns" % k, sc), ("%s.wall_ns" % k, w * 1e9),
                  ("%s.over_plain" % k, ep / plain_ep), ("%s.minus_plain_ns" % k, ep - plain_ep)]
        if floor:
            lines.append(("%s.minus_plain_over_floor" % k, (ep - plain_ep) / floor))
    # The whole eP-CSCF (routing, policing, cap, full ES256 check, cache
    # off) against bare forwarding: target at most 1.6x; split into the
    # P-CSCF's own work (plain over bare) and the check (native over plain).
    bare_ep = results["bare"][0]
    lines += [("native.over_bare", results["native"][0] / bare_ep),
              ("plain.over_bare", plain_ep / bare_ep),
              ("pcscf_minus_bare_ns", plain_ep - bare_ep),
              ("check_minus_plain_ns", results["native"][0] - plain_ep),
              ("native_over_bare_target_met", int(results["native"][0] <= 1.6 * bare_ep))]
    if floor:
        target = plain_ep + 1.3 * floor
        lines += [("floor_ns", floor), ("target_ep_cpu_ns", target),
                  ("native_target_met", int(results["native"][0] <= target))]
    # Medians of per-round figures: each round's eP-CSCF CPU per REGISTER
    # (idle rate subtracted) against plain forwarding in the same round,
    # over the floor measured right after it. (A round's tm timers free
    # its transactions 5 s later, in the next round: the same cost for
    # every round in the steady state.)
    def median(v):
        v = sorted(v)
        return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

    per_round = {k: [] for k in scenarios}
    for b, w, d, f in rounds:
        ep = {k: (d[(k, "ep")] - idle[(k, "ep")][0] / idle[(k, "ep")][1] * w) / b for k in scenarios}
        for k in scenarios:
            per_round[k].append((ep[k] - ep["plain"], (ep[k] - ep["plain"]) / f if f else None))
    lines.append(("rounds", len(rounds)))
    for k in scenarios:
        if k == "plain" or not per_round[k]:
            continue
        lines.append(("%s.round_minus_plain_ns_median" % k, median([x for x, _ in per_round[k]])))
        ratios = [r for _, r in per_round[k] if r is not None]
        if ratios:
            lines.append(("%s.round_minus_plain_over_floor_median" % k, median(ratios)))
            lines.append(("%s.round_minus_plain_over_floor_range" % k, "%.2f..%.2f" % (min(ratios), max(ratios))))
    # As before: cache off against cache hit.
    full_ep, hit_ep = results["native"][0], results["hit"][0]
    in_situ = full_ep - hit_ep + bench.get("hit.ns", 0.0)
    lines += [("full.ep_cpu_ns", full_ep), ("hit.ep_cpu_ns", hit_ep),
              ("full.scscf_cpu_ns", results["native"][1]), ("hit.scscf_cpu_ns", results["hit"][1]),
              ("full_over_hit", full_ep / hit_ep), ("verify_in_situ_ns", in_situ),
              ("full.share_in_situ", in_situ / full_ep)]
    if "full.ES256.ns" in bench:
        lines.append(("bench_full_ns", bench["full.ES256.ns"]))
        lines.append(("full.share_bench", bench["full.ES256.ns"] / full_ep))
    if "hit.ns" in bench:
        lines.append(("bench_hit_ns", bench["hit.ns"]))
        lines.append(("hit.share_bench", bench["hit.ns"] / hit_ep))
    # Each group's share of the samples, applied to the CPU per REGISTER
    # measured without perf in the rounds (perf's own sampling makes the
    # profiled run slower: its shares are used, not its CPU).
    for k in ("native", "hit"):
        for g in ("awslc", "wictna", "kamailio", "kernel"):
            sh = insitu.get("insitu.%s.%s_share" % (k, g))
            if sh is not None or "insitu.%s.perf_cpu_ns" % k in insitu:
                insitu["insitu.%s.%s_ns" % (k, g)] = (sh or 0.0) * results[k][0]
    lines += sorted(insitu.items())
    if floor and insitu.get("insitu.native.awslc_ns"):
        lines.append(("insitu.native.awslc_over_floor", insitu["insitu.native.awslc_ns"] / floor))
    write(args.out, lines)
    for k in ("native", "hit"):
        if "insitu.%s.perf_cpu_ns" % k in insitu:
            print("e2e: in situ (perf, %d REGISTERs; shares of the %.1f µs measured without perf) %-6s: aws-lc %.1f µs, wic-tna %.1f µs, Kamailio+libc %.1f µs, kernel %.1f µs per REGISTER" % (
                insitu["insitu.n"], results[k][0] / 1e3, k, *(insitu.get("insitu.%s.%s_ns" % (k, g), 0) / 1e3 for g in ("awslc", "wictna", "kamailio", "kernel"))))
    for k in ("native", "python", "hit"):
        ep = results[k][0]
        print("e2e: %-6s %.1f µs per REGISTER = %.2fx plain forwarding (%.1f µs); +%.1f µs%s" % (
            k, ep / 1e3, ep / plain_ep, plain_ep / 1e3, (ep - plain_ep) / 1e3,
            (" = %.2fx the ES256 floor (%.1f µs)" % ((ep - plain_ep) / floor, floor / 1e3)) if floor else ""))
    print("e2e: whole eP-CSCF (native, cache off) %.2fx bare forwarding (%.1f µs): P-CSCF routing/policing "
          "+%.1f µs, token check +%.1f µs; target <= 1.6x: %s" % (
              results["native"][0] / bare_ep, bare_ep / 1e3, (plain_ep - bare_ep) / 1e3,
              (results["native"][0] - plain_ep) / 1e3,
              "met" if results["native"][0] <= 1.6 * bare_ep else "MISSED"))
    for k in ("native", "python", "hit"):
        r = dict(lines).get("%s.round_minus_plain_over_floor_median" % k)
        if r is not None:
            print("e2e: %-6s per-round median: %+.1f µs over plain = %.2fx the floor (rounds: %s)" % (
                k, dict(lines)["%s.round_minus_plain_ns_median" % k] / 1e3, r,
                dict(lines)["%s.round_minus_plain_over_floor_range" % k]))
    if floor:
        print("e2e: target native <= plain + 1.3 x floor = %.1f µs: %s" % (
            (plain_ep + 1.3 * floor) / 1e3, "met" if results["native"][0] <= plain_ep + 1.3 * floor else "MISSED"))


if __name__ == "__main__":
    main()
