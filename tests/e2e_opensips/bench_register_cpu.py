#!/usr/bin/env python3
"""OpenSIPS eP-CSCF CPU per REGISTER (issue 19, item 4), beside the Kamailio
rows of benches/e2e/register_cpu.py and with its method (imported: the sipp
scenario, /proc schedstat meters): the Kamailio S-CSCF behind, on loopback,
sipp sending the same ES256 token at a fixed rate, rounds alternating
between the instances, each instance's idle rate subtracted. Instances:

  plain   NO token check: opensips-example/opensips.cfg with the check
          replaced by the TNA header this token gets (everything else, the
          header stripping, Path, relay, the same)
  native  the native module wic_tna (opensips.cfg), verified_cache_size = 0:
          a full ES256 verification per REGISTER
  python  the python module path (opensips-python.cfg), cache off too

    WIC_TNA_OPENSIPS=.../sbin/opensips python3 tests/e2e_opensips/bench_register_cpu.py [-n 3000] [--rate 200]

Prints one line per instance; with --out, `key value` lines as
register_cpu.py writes (<k>.ep_cpu_ns, <k>.minus_plain_ns, ...).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.dont_write_bytecode = True
for d in (HERE, REPO / "tests" / "e2e", REPO / "benches" / "e2e"):
    sys.path.insert(0, str(d))

import register_cpu as rc  # noqa: E402  (benches/e2e)
import harness  # noqa: E402
from opensips_harness import OpenSipsDeployment  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--out")
    args = ap.parse_args()
    sipp = shutil.which("sipp")
    if not sipp:
        sys.exit("no sipp (apt-get install sip-tester)")

    impi, aor = "alice@socialnet.ims.example.net", "sip:alice@socialnet.ims.example.net"
    tok = subprocess.run(
        [str(harness.CLI), "mint", "--key", str(harness.KEYS / "issuer-a-p256.key"), "--alg", "ES256",
         "--kid", "a-es256", "--iss", harness.ISSUER_A, "--impi", impi, "--impu", aor, "--sub", "user-1",
         "--scope", "openid webrtc-ims-client-access-to-ims", "--lifetime", "3000"],
        capture_output=True, text=True, check=True).stdout.strip()
    realm = "ims.example.net"
    tna = ('Digest username=\\\\"%s\\\\", realm=\\\\"%s\\\\", uri=\\\\"sip:%s\\\\", nonce=\\\\"\\\\", '
           'response=\\\\"\\\\", integrity-protected=auth-done, authorization-entity=\\\\"%s\\\\"'
           % (impi, realm, realm, harness.ISSUER_A))
    # the check replaced by its result for this token (sed over opensips.cfg)
    plain_sed = (
        "s|^\\twic_tna_verify_register(\\$hdr(Authorization), \\$tu);$|\\t$var(wic_plain) = 1;|\n"
        "s|^\\troute(WIC_RESULT);$|\\t$var(wic_rc) = 1;|\n"
        "s|Authorization: \\$wic_tna(tna)|Authorization: %s|\n"
        "s|if (!wic_tna_cap_expires()) {|if ($var(wic_rc) == 0) {|\n" % tna)
    kinds = ("plain", "native", "python")
    results = {}
    with tempfile.TemporaryDirectory(prefix="wic-tna-bench-os-") as tmp:
        tmp = Path(tmp)
        scen = tmp / "register.xml"
        scen.write_text(rc.SCENARIO.replace("AOR", aor).replace("TOKEN", tok))
        deps, ports = {}, {}

        def cache_off(text):
            return "verified_cache_size = 0\n" + text

        try:
            for k in kinds:
                deps[k] = OpenSipsDeployment(
                    tmp / k, variant="python" if k == "python" else "native",
                    config_transform=cache_off,
                    extra_sed=plain_sed if k == "plain" else "")
                deps[k].start()
                ports[k] = harness.free_port()

            def drive(k, n):
                cmd = [sipp, "127.0.0.1:%d" % deps[k].ep_sip, "-sf", str(scen), "-t", "u1",
                       "-i", "127.0.0.1", "-p", str(ports[k]), "-m", str(n), "-r", str(args.rate),
                       "-rp", "1000", "-l", "10000", "-nostdin",
                       "-timeout", str(int(60 + 2 * n / args.rate)), "-timeout_error"]
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp))
                if r.returncode != 0:
                    sys.stderr.write(r.stdout[-1500:] + r.stderr[-1500:] + deps[k].logs())
                    raise SystemExit("sipp to %s: exit %d (not every REGISTER got 200)"
                                     % (k, r.returncode))

            for k in kinds:
                drive(k, 200)
            time.sleep(6)
            meters = {k: rc.CpuMeter(rc.pids_of_session(deps[k].ep.proc.pid)) for k in kinds}
            for m in meters.values():
                m.start()
            time.sleep(2)
            idle = {k: m.stop() for k, m in meters.items()}
            for m in meters.values():
                m.start()
            done, rnd = 0, 0
            while done < args.n:
                b = min(args.batch, args.n - done)
                order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
                for k in order:
                    drive(k, b)
                done += b
                rnd += 1
            time.sleep(6)
            used = {k: m.stop() for k, m in meters.items()}
        finally:
            for d in deps.values():
                d.stop()
    for k in kinds:
        cpu, w = used[k]
        icpu, iw = idle[k]
        results[k] = (cpu - icpu / iw * w) / args.n
    plain = results["plain"]
    lines = [("measured", 1), ("registers", args.n), ("rate", args.rate)]
    for k in kinds:
        lines += [("%s.ep_cpu_ns" % k, results[k]), ("%s.minus_plain_ns" % k, results[k] - plain),
                  ("%s.over_plain" % k, results[k] / plain)]
        print("opensips %-6s: %.1f us eP-CSCF CPU per REGISTER (%d at %d/s), %+.1f us over plain, %.2fx"
              % (k, results[k] / 1e3, args.n, args.rate, (results[k] - plain) / 1e3, results[k] / plain))
    if args.out:
        Path(args.out).write_text("".join("%s %s\n" % kv for kv in lines))


if __name__ == "__main__":
    main()
