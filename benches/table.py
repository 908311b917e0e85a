#!/usr/bin/env python3
"""Print the benchmark table (Markdown) from the result files that
scripts/bench.sh's steps leave in one directory:

    meta.txt    key=value lines (date, machine, versions, command)
    verify.txt  benches/verify.rs  (full verify vs floor; cache hit)
    peer.txt    benches/peer/peer.c (libjwt vs wic_tna_verify)
    e2e.txt     benches/e2e/register_cpu.py (Kamailio, CPU per REGISTER)
    opensips.txt tests/e2e_opensips/bench_register_cpu.py (OpenSIPS, CPU per REGISTER)
    memory.txt  benches/memory.rs  (RSS after 10k / 1M verifications)
    scale.txt   benches/scale.rs   (issuers, JWKS keys)

    python3 benches/table.py target/bench
"""
import math
import sys
from pathlib import Path

d = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench")


def load(name):
    vals = {}
    p = d / name
    if not p.exists():
        return vals
    for line in p.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                vals[parts[0]] = float(parts[1])
            except ValueError:
                vals[parts[0]] = parts[1]
    return vals


def meta():
    m = {}
    p = d / "meta.txt"
    if p.exists():
        for line in p.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                m[k.strip()] = v.strip()
    return m


def us(ns):
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return "n/a"
    u = ns / 1e3
    return "%.2f µs" % u if u < 10 else "%.1f µs" % u if u < 100 else "%.0f µs" % u


def ok(b):
    return "met" if b else "**MISSED**"


verify, peer, e2e, mem, scale, ops = (load(n) for n in (
    "verify.txt", "peer.txt", "e2e.txt", "memory.txt", "scale.txt", "opensips.txt"))
m = meta()
rows = []
missing = []


def row(item, figure, measured, target, status):
    rows.append("| %s | %s | %s | %s | %s |" % (item, figure, measured, target, status))


# 1. Full verify against the floor.
for alg in ("HS256", "RS256", "PS256", "ES256", "EdDSA"):
    r = verify.get("ratio.%s" % alg)
    if r is None:
        missing.append("verify")
        row("1", "full verify / floor, %s" % alg, "not measured", "", "")
        continue
    lo, hi = verify.get("ratio.%s.min" % alg), verify.get("ratio.%s.max" % alg)
    spread = "; per round %.2f–%.2f×" % (lo, hi) if lo is not None and hi is not None else ""
    measured = "**%.2f×** (%s / %s%s)" % (
        r, us(verify.get("full.%s.ns" % alg)), us(verify.get("floor.%s.ns" % alg)), spread)
    if alg == "HS256":
        # The ≤ 3× target was retired by the design step (a microsecond
        # against some 300 µs of proxy work per REGISTER): reported only.
        row("1", "full verify / floor, HS256", measured, "(report; ≤ 3× retired)", "")
        continue
    limit = 1.15
    row("1", "full verify / floor, %s" % alg, measured, "≤ %.2f×" % limit, ok(r <= limit))

# 2. Peer: libjwt.
for alg in ("HS256", "RS256", "PS256", "ES256", "EdDSA"):
    sup = peer.get("peer.%s.libjwt.supported" % alg)
    target = "≥ 10×" if alg in ("RS256", "ES256") else "(none)"
    if sup is None:
        row("2", "libjwt / wic-tna, %s" % alg, "not measured", target, "")
        continue
    if not sup:
        row("2", "libjwt / wic-tna, %s" % alg,
            "n/a: libjwt %s has no %s (wic-tna: %s)" % (m.get("libjwt", "1.x"), alg, us(peer.get("peer.%s.wic.ns" % alg))),
            target, "n/a")
        continue
    r = peer["peer.%s.ratio" % alg]
    pem = peer.get("peer.%s.pem.ns" % alg) or 0
    extra = ", of which PEM parse %s" % us(pem) if pem else ""
    measured = "**%.1f×** (libjwt %s%s; wic-tna %s)" % (r, us(peer["peer.%s.libjwt.ns" % alg]), extra,
                                                        us(peer["peer.%s.wic.ns" % alg]))
    fr = verify.get("ratio.%s" % alg)
    if fr:
        # Two machine-independent ratios: libjwt / wic-tna × wic-tna / floor.
        measured += "; at most %.1f× with wic-tna at the floor" % (r * fr)
    row("2", "libjwt / wic-tna, %s" % alg, measured, target,
        ok(r >= 10.0) if alg in ("RS256", "ES256") else "")

# 3. Refresh path.
s = verify.get("hit.share")
if s is not None:
    row("3", "cache hit / full ES256 verify",
        "**%.2f%%** (%s / %s)" % (100 * s, us(verify.get("hit.ns")), us(verify.get("hit.full_ES256.ns"))),
        "≤ 5%", ok(s <= 0.05))
else:
    row("3", "cache hit / full ES256 verify", "not measured", "≤ 5%", "")

# 4. End to end.
if e2e.get("measured") and "plain.ep_cpu_ns" in e2e:
    plain = e2e["plain.ep_cpu_ns"]
    floor = e2e.get("floor_ns")
    head = "eP-CSCF CPU per REGISTER (Kamailio, UDP, sipp at %d/s, %d REGISTERs each, /proc)" % (
        e2e.get("rate", 0), e2e.get("registers", 0))
    row("4", head + ": plain forwarding, no token check",
        "**%s** (S-CSCF: %s)" % (us(plain), us(e2e["plain.scscf_cpu_ns"])), "(baseline)", "")
    for k, what in (("native", "native module, full ES256 (cache off)"),
                    ("python", "Python glue, full ES256 (cache off)"),
                    ("hit", "native module, cache hit (refresh path)")):
        ep = e2e["%s.ep_cpu_ns" % k]
        d = ep - plain
        measured = "%s = **%.2f×** plain; %s%s" % (
            us(ep), ep / plain, ("+" if d >= 0 else "−") + us(abs(d)),
            (" = **%.2f×** the ES256 floor (%s)" % (d / floor, us(floor))) if floor else "")
        rm = e2e.get("%s.round_minus_plain_over_floor_median" % k)
        if rm is not None:
            measured += "; per-round median **%.2f×** the floor (rounds %s)" % (
                rm, e2e.get("%s.round_minus_plain_over_floor_range" % k, "?"))
        if k == "native" and floor:
            target = plain + 1.3 * floor
            row("4", what, measured, "≤ plain + 1.3× floor (%s)" % us(target),
                ok(ep <= target and (rm is None or rm <= 1.3)))
        else:
            row("4", what, measured, "(report)", "")
    if e2e.get("bare.ep_cpu_ns") is not None and e2e.get("native.over_bare") is not None:
        bare = e2e["bare.ep_cpu_ns"]
        row("4", "whole eP-CSCF (routing, policing, cap, full ES256 check, cache off) against bare forwarding (%s: Max-Forwards, header swap, relay)" % us(bare),
            "**%.2f×** bare: P-CSCF routing/policing +%s, token check +%s" % (
                e2e["native.over_bare"], us(e2e.get("pcscf_minus_bare_ns", 0.0)),
                us(e2e.get("check_minus_plain_ns", 0.0))),
            "≤ 1.6× bare", "met" if e2e.get("native_over_bare_target_met") else "MISSED")
    if e2e.get("insitu.native.awslc_ns") is not None:
        # Where the native target's margin goes: the bare signature check's
        # own code inside Kamailio against its hot-loop floor, and the rest.
        def part(k, g):
            return us(e2e.get("insitu.%s.%s_ns" % (k, g), 0.0))
        aws = e2e["insitu.native.awslc_ns"]
        row("4", "in situ: where the eP-CSCF's CPU goes (perf, flat profile, %d REGISTERs per pair; shares of the CPU above)" % e2e.get("insitu.n", 0),
            "full ES256: aws-lc (the signature check) **%s** (%.1f%%)%s, wic-tna's own code %s, Kamailio and libc %s, kernel %s; "
            "cache hit: wic-tna %s, Kamailio and libc %s, kernel %s" % (
                us(aws), 100 * e2e.get("insitu.native.awslc_share", 0.0),
                (" = **%.2f×** the hot-loop floor" % (aws / floor)) if floor else "",
                part("native", "wictna"), part("native", "kamailio"), part("native", "kernel"),
                part("hit", "wictna"), part("hit", "kamailio"), part("hit", "kernel")),
            "(why 4 is missed)", "")
elif e2e.get("measured"):
    row("4", "eP-CSCF CPU per REGISTER", "cache off: %s; cache hit: %s" % (
        us(e2e.get("full.ep_cpu_ns")), us(e2e.get("hit.ep_cpu_ns"))), "(report)", "")
else:
    row("4", "end-to-end CPU per REGISTER through Kamailio", "**not measured**%s" % (
        (": " + str(e2e["reason"]).replace("_", " ")) if e2e.get("reason") else ""), "(report)", "")

# 4, OpenSIPS: the same measure, without the in-situ profile.
if ops.get("measured") and "plain.ep_cpu_ns" in ops:
    plain = ops["plain.ep_cpu_ns"]
    head = "eP-CSCF CPU per REGISTER (OpenSIPS, UDP, sipp at %d/s, %d REGISTERs each, /proc)" % (
        ops.get("rate", 0), ops.get("registers", 0))
    row("4", head + ": no token check", "**%s**" % us(plain), "(baseline)", "")
    for k, what in (("native", "OpenSIPS native module, full ES256 (cache off)"),
                    ("python", "OpenSIPS python module path, full ES256 (cache off)")):
        ep = ops["%s.ep_cpu_ns" % k]
        d = ep - plain
        row("4", what, "%s = **%.2f×** no check; %s" % (
            us(ep), ep / plain, ("+" if d >= 0 else "−") + us(abs(d))), "(report)", "")
else:
    row("4", "end-to-end CPU per REGISTER through OpenSIPS", "**not measured**%s" % (
        (": " + str(ops["reason"]).replace("_", " ")) if ops.get("reason") else ""), "(report)", "")

# 5. Memory.
for sc in ("repeated", "distinct"):
    g = mem.get("%s.growth.kib" % sc)
    if g is None:
        row("5", "RSS growth 10k → 1M verifications, %s token" % sc, "not measured", "< 1 MiB", "")
        continue
    row("5", "RSS growth 10k → 1M verifications, %s token%s" % (sc, "s" if sc == "distinct" else ""),
        "**%+.0f KiB** (%.1f → %.1f MiB)" % (g, mem["%s.rss10k.kib" % sc] / 1024, mem["%s.rss1m.kib" % sc] / 1024),
        "< 1024 KiB", ok(g < 1024))

# 6. Scale.
for name, base in (("issuers=100", "issuers=1"), ("issuers=10000", "issuers=1"), ("jwks_keys=100", "jwks_keys=1")):
    r = scale.get("%s.ratio" % name)
    if r is None:
        row("6", "verify cost %s / %s" % (name, base), "not measured", "≤ 1.05×", "")
        continue
    row("6", "verify cost, %s vs %s (HS256, cache off)" % (name.replace("=", " "), base.replace("=", " ")),
        "**%.3f×** (%s vs %s)" % (r, us(scale.get("%s.ns" % name)), us(scale.get("%s.ns" % base))),
        "no growth (≤ 1.05×)", ok(r <= 1.05))

print("## Results\n")
print("Date: %s  " % m.get("date", "?"))
print("Machine: %s CPU(s), %s; %s  " % (m.get("nproc", "?"), m.get("cpu", "?"), m.get("kernel", "?")))
print("Toolchain: %s; libjwt %s; OpenSSL %s; Kamailio %s  " % (m.get("rustc", "?"), m.get("libjwt", "?"),
                                                                m.get("openssl", "?"), m.get("kamailio", "?")))
print("Commit: %s  " % m.get("commit", "?"))
print("Command: `%s`\n" % m.get("command", "bash scripts/bench.sh"))
print("| # | figure | measured | target | status |")
print("|---|---|---|---|---|")
for r in rows:
    print(r)
