#!/usr/bin/env python3
"""Load and faults on real Kamailio: sipp sends REGISTERs at a fixed rate
through the eP-CSCF (native wic_tna module) to the S-CSCF, with a mix of
valid and hostile tokens (loadtokens.py), while the configuration is broken
and reloaded, a key is rotated, and the eP-CSCF is killed and restarted.

Phases (one Deployment of tests/e2e/harness.py, loopback only):
  warmup   a few seconds of the same load (first-use allocations)
  steady   RATE REGISTER/s for STEADY s; memory (shm, pkg, RSS) before/after
  faults   the same load for FAULTS s while the configuration file is
           replaced by garbage, half-written, deleted (each followed by
           kamcmd wic_tna.reload, which must be refused, then restored),
           and finally a key rotation (kid a-es256 removed, a new kid
           added, reload)
  restart  the same load for RESTART s; the eP-CSCF's process group gets
           SIGKILL, stays down DOWN s (longer than a client's 10 s timeout
           in full mode, so some calls do time out) and is started again
           with the same command, configuration and ports

Every call is attributed to its row (token class) from sipp's per-call log,
and cross-checked with what the S-CSCF received and what the eP-CSCF logged
as accepted. Checks (any failure: exit status 1):
  - no false accept: no hostile row answered 200, none reached the S-CSCF
    or was logged "REGISTER accepted" by the eP-CSCF;
  - no valid row refused, and every valid row answered 200 (outside the
    restart gap a timeout is a failure too; inside it, only a timeout);
  - refused reloads leave the old configuration in force; after the
    rotation, every new-key row is accepted and every old-key row refused;
  - no Kamailio process died (same PIDs from start to end of a phase, no
    SIGCHLD shutdown in the logs); after the restart, nothing else needed;
  - memory growth over the steady and faults phases within the stated
    bounds (MEMORY_BOUNDS).

    python3 tests/load/loadtest.py [--quick] [--rate N] [--steady S] ...
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
from harness import Deployment, free_port  # noqa: E402
import loadtokens as L  # noqa: E402

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIO = HERE / "register.xml"

# one sipp instance per client: its own UDP socket and IMPU (the eP-CSCF
# binds the IMPUs of a 200 to the source address and port, so one source
# registers one identity)
CLIENTS = [("a", "la1"), ("a", "la2"), ("a", "la3"), ("a", "la4"),
           ("a", "la5"), ("b", "lb1"), ("b", "lb2"), ("b", "lb3")]

MODES = {
    # rate REGISTER/s, seconds of warmup / steady / faults / restart
    # and how long the eP-CSCF stays down after the SIGKILL
    "full": dict(rate=200, warmup=5, steady=60, faults=40, restart=40,
                 down=12),
    "quick": dict(rate=100, warmup=3, steady=15, faults=20, restart=15,
                  down=4),
}

# growth allowed from the start to the end of a phase, after the load has
# drained (no transaction left):
# - Kamailio's shared memory (tm transactions, the eP-CSCF's htable of
#   bound identities, which gains one entry of ~340 bytes per new client
#   source kept 2 h, and the module's shared state);
# - the private (pkg) memory of each process;
# - the resident anonymous memory of each process: the library's heap,
#   where the verified-token cache keeps each accepted token (about
#   1.3 KiB each, at most verified_cache_size = 10000 per process, i.e.
#   some 13 MiB when full).
MEMORY_BOUNDS = {
    "shm_real_used": 1 << 20,
    "pkg_real_used_per_process": 256 << 10,
    "rss_anon_per_process": 16 << 20,
}

# a call sent this long before the kill, or up to this long after the
# eP-CSCF is back, may time out
GAP_MARGIN = 1.0
# around a reload: a call answered before the RPC started met the old
# configuration, a call sent after the RPC returned must meet the new one;
# a call in flight meanwhile may meet either (same clock: sipp's
# gettimeofday and ours)
SEND_CLOCK_SLACK = 0.005


def log(msg):
    print("[load %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# -- Kamailio: memory, processes, RPC ---------------------------------------

def _kv(text):
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"(?m)^\s*(\w+):\s*(.*)$", text)}


def group_pids(pgid):
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:
            pids.append(int(d.name))
    return sorted(pids)


def _status_kb(pid, name):
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory(proc):
    """shm (core.shmmem), pkg per process (pkg.stats) and RSS per process
    (/proc) of one Kamailio."""
    r = proc.rpc("core.shmmem")
    assert r.returncode == 0, r.stdout + r.stderr
    shm = {k: int(v) for k, v in _kv(r.stdout).items()}
    r = proc.rpc("pkg.stats")
    assert r.returncode == 0, r.stdout + r.stderr
    pkg = {}
    for block in re.findall(r"\{(.*?)\}", r.stdout, re.S):
        kv = _kv(block)
        pkg[int(kv["pid"])] = {"real_used": int(kv["real_used"]),
                               "desc": kv.get("desc", "")}
    rss = {}
    for pid in group_pids(proc.proc.pid):
        rss[pid] = {"rss": _status_kb(pid, "VmRSS"),
                    "anon": _status_kb(pid, "RssAnon")}
    r = proc.rpc("htable.stats")
    items = None
    if r.returncode == 0:
        items = int(_kv(r.stdout).get("all", "-1"))
    return {"time": time.time(), "shm": shm, "pkg": pkg, "rss": rss,
            "pids": sorted(rss), "htable_items": items}


def mem_summary(m):
    return {
        "shm_real_used": m["shm"]["real_used"],
        "shm_used": m["shm"]["used"],
        "shm_total": m["shm"]["total"],
        "pkg_real_used_sum": sum(p["real_used"] for p in m["pkg"].values()),
        "pkg_real_used_max": max(p["real_used"] for p in m["pkg"].values()),
        "rss_sum": sum(p["rss"] for p in m["rss"].values()),
        "rss_anon_sum": sum(p["anon"] for p in m["rss"].values()),
        "rss_anon_max": max(p["anon"] for p in m["rss"].values()),
        "processes": len(m["pids"]),
        "htable_wicconn_items": m.get("htable_items"),
    }


def mem_growth(a, b):
    """Growth from memory a to memory b (same process tree)."""
    g = {"shm_real_used": b["shm"]["real_used"] - a["shm"]["real_used"]}
    pk = [b["pkg"][p]["real_used"] - a["pkg"][p]["real_used"]
          for p in a["pkg"] if p in b["pkg"]]
    g["pkg_real_used_per_process"] = max(pk) if pk else 0
    g["pkg_real_used_sum"] = sum(pk)
    ra = [b["rss"][p]["anon"] - a["rss"][p]["anon"]
          for p in a["rss"] if p in b["rss"]]
    g["rss_anon_per_process"] = max(ra) if ra else 0
    g["rss_anon_sum"] = sum(ra)
    g["rss_sum"] = (sum(p["rss"] for p in b["rss"].values())
                    - sum(p["rss"] for p in a["rss"].values()))
    return g


def quiesce(proc, timeout=30):
    """Wait until the proxy holds no transaction (tm.stats current 0)."""
    deadline = time.monotonic() + timeout
    current = None
    while time.monotonic() < deadline:
        r = proc.rpc("tm.stats")
        if r.returncode == 0:
            current = int(_kv(r.stdout).get("current", "-1"))
            if current == 0:
                return 0
        time.sleep(0.5)
    return current


DEATH = re.compile(r"exited by a signal|terminating due to SIGCHLD|"
                   r"child process \d+ exited|core dumped|segfault|"
                   r"Segmentation fault|panicked", re.I)


def deaths(proc, offset=0):
    text = proc.log()[offset:]
    return [l for l in text.splitlines() if DEATH.search(l)]


# -- sipp -------------------------------------------------------------------

def _free_port_pair():
    """A port p with p and p+2 free for UDP on 127.0.0.1 (sipp's RTP echo
    sockets, which it opens even without media)."""
    import socket
    for _ in range(100):
        p = free_port()
        if p + 2 < 65536 and harness._bindable(socket.AF_INET,
                                               socket.SOCK_DGRAM,
                                               "127.0.0.1", p + 2):
            harness._used_ports.add(p + 2)
            return p
    raise RuntimeError("no free port pair")


class Client:
    """One sipp instance: one UDP socket on 127.0.0.1, one IMPU, its rows."""

    def __init__(self, workdir, phase, issuer, user, rows, rate, target):
        self.phase = phase
        self.issuer = issuer
        self.user = user
        self.rows = rows
        self.rate = rate
        self.dir = Path(workdir) / phase / user
        self.dir.mkdir(parents=True, exist_ok=True)
        self.inf = self.dir / "rows.csv"
        L.write_injection(self.inf, rows)
        self.calls_log = self.dir / "calls.log"
        self.err_log = self.dir / "errors.log"
        self.screen = self.dir / "screen.log"
        self.cmd = [
            SIPP, target, "-sf", str(SCENARIO), "-inf", str(self.inf),
            "-t", "u1", "-i", "127.0.0.1", "-p", str(free_port()),
            "-ci", "127.0.0.1", "-cp", str(free_port()),
            "-mi", "127.0.0.1", "-mp", str(_free_port_pair()),
            "-r", "%g" % rate, "-rp", "1000", "-m", str(len(rows)),
            "-l", "100000", "-nostdin",
            "-cid_str", "%%u-%%p@%s-%s" % (phase, user),
            "-trace_logs", "-log_file", str(self.calls_log),
            "-trace_err", "-error_file", str(self.err_log),
            "-trace_screen", "-screen_file", str(self.screen),
        ]
        self.proc = None

    def start(self):
        self.out = open(self.dir / "sipp.out", "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self.out,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     cwd=str(self.dir))

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            rc = "killed after %ss" % timeout
        self.out.close()
        return rc

    def records(self):
        """{row id: record} from sipp's per-call log."""
        recs = {}
        if not self.calls_log.exists():
            return recs
        for line in self.calls_log.read_text(errors="replace").splitlines():
            if not line.startswith("R|"):
                continue
            f = line.split("|")
            if len(f) < 9:
                continue
            head, tail = f[:4], f[-4:]
            phrase = "|".join(f[4:-4])
            # sipp prints a gettimeofday microseconds value of exactly 0
            # as an empty field (seen once in ~28,000 calls)
            num = lambda x: float(x) if x.strip() else 0.0  # noqa: E731
            sent = num(tail[0]) + num(tail[1]) / 1e6
            answered = num(tail[2]) + num(tail[3]) / 1e6
            recs[head[1]] = {"row": head[1], "call_id": head[2],
                             "status": head[3], "phrase": phrase,
                             "sent": sent, "answered": answered,
                             "cls": L.row_class(head[1])}
        return recs


def make_rows(minter, phase, n_per_client):
    return {user: L.client_rows(minter, issuer, user, n_per_client, phase)
            for issuer, user in CLIENTS}


class Load:
    """All clients of one phase, started together."""

    def __init__(self, dep, workdir, phase, rows, rate):
        self.phase = phase
        per = rate / len(CLIENTS)
        target = "127.0.0.1:%d" % dep.ep_sip
        self.clients = [Client(workdir, phase, issuer, user, rows[user], per,
                               target) for issuer, user in CLIENTS]
        self.duration = len(rows[CLIENTS[0][1]]) / per

    def start(self):
        self.t0 = time.time()
        for c in self.clients:
            c.start()
        return self

    def kill(self):
        """Stop whatever sipp is still running (after an error)."""
        for c in self.clients:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()

    def wait(self):
        self.rcs = {}
        for c in self.clients:
            # the calls, then the last ones' timeout, then some slack
            left = self.t0 + self.duration + 60 - time.time()
            self.rcs[c.user] = c.wait(max(left, 5))
        self.t1 = time.time()
        return self

    def records(self):
        recs = {}
        for c in self.clients:
            recs.update(c.records())
        return recs

    def rows(self):
        return [r for c in self.clients for r in c.rows]


# -- what the proxies saw ---------------------------------------------------

def scscf_register_call_ids(dep):
    rx = set()
    for line in dep.scscf.log().splitlines():
        m = re.search(r"SCSCF-RX REGISTER ci=(\S+) ", line)
        if m:
            rx.add(m.group(1))
    return rx


def ep_accepted_call_ids(dep):
    acc = set()
    for line in dep.ep.log().splitlines():
        if "REGISTER accepted" in line:
            m = re.search(r"\{1 \d+ REGISTER (\S+)\}", line)
            if m:
                acc.add(m.group(1))
    return acc


# -- verdicts ---------------------------------------------------------------

def expected(cls, sent, answered, events):
    """'accept', 'refuse' or 'either' for a row of class cls sent at sent and
    answered at answered (None: not answered). events: {'rotation': (rpc
    start, rpc end)} when a rotation happened in this phase, {'rotated':
    True} when it happened before."""
    e = L.expectation(cls)
    if e in ("accept", "refuse"):
        return e
    if events.get("rotated"):
        rotated = "yes"
    elif "rotation" in events:
        start, end = events["rotation"]
        if answered is not None and answered < start - SEND_CLOCK_SLACK:
            rotated = "no"
        elif sent > end + SEND_CLOCK_SLACK:
            rotated = "yes"
        else:
            rotated = "either"
    else:
        rotated = "no"
    if rotated == "either":
        return "either"
    if e == "old":
        return "accept" if rotated == "no" else "refuse"
    return "accept" if rotated == "yes" else "refuse"


def in_gap(sent, events):
    gap = events.get("gap")
    return bool(gap) and gap[0] - GAP_MARGIN <= sent <= gap[1] + GAP_MARGIN


def analyse(rows, recs, scscf_rx, ep_acc, events):
    """Per-row verdicts of one phase. rows: [(row id, ...)] in sending
    order; recs: {row id: record}; scscf_rx / ep_acc: Call-IDs the S-CSCF
    received / the eP-CSCF accepted. Returns a dict of counts and the
    offending rows."""
    out = {
        "rows": len(rows), "answered": 0, "valid": 0, "hostile": 0,
        "either": 0, "accepted": 0, "refused": 0,
        "valid_accepted": 0, "hostile_refused": 0,
        "false_accepts": [], "false_refusals": [], "timeouts_in_gap": 0,
        "valid_timeouts_in_gap": 0, "unanswered": [], "unexplained": [],
        "wrong_reason": [], "too_large_answered_with_ok_reason": 0,
        "by_class": defaultdict(Counter), "reasons": defaultdict(Counter),
        "latency": [],
    }
    for row in rows:
        rid = row[0]
        cls = L.row_class(rid)
        rec = recs.get(rid)
        if rec is None:
            # no log line: sipp got a final answer it did not expect (not a
            # 200, which it expects) or died; never a silent pass
            out["unexplained"].append({"row": rid})
            continue
        exp = expected(cls, rec["sent"], None if rec["status"] == "TIMEOUT"
                       else rec["answered"], events)
        out[{"accept": "valid", "refuse": "hostile",
             "either": "either"}[exp]] += 1
        st = rec["status"]
        out["by_class"][cls][st] += 1
        reached = rec["call_id"] in scscf_rx
        logged_ok = rec["call_id"] in ep_acc
        if st == "TIMEOUT":
            if in_gap(rec["sent"], events):
                out["timeouts_in_gap"] += 1
                if exp == "accept":
                    out["valid_timeouts_in_gap"] += 1
            else:
                out["unanswered"].append(rec)
            if exp != "accept" and (reached or logged_ok):
                out["false_accepts"].append(dict(rec, why="timed out but "
                                                 "reached the S-CSCF"))
            continue
        out["answered"] += 1
        out["latency"].append(rec["answered"] - rec["sent"])
        ok = st == "200"
        out["accepted" if ok else "refused"] += 1
        if not ok:
            out["reasons"][cls][rec["phrase"]] += 1
        if exp == "refuse":
            if ok or reached or logged_ok:
                out["false_accepts"].append(dict(
                    rec, reached_scscf=reached, ep_logged_accept=logged_ok))
            else:
                out["hostile_refused"] += 1
                want = L.REASONS.get(cls)
                m = re.search(r"\((\w+)\)$", rec["phrase"])
                if want is not None and (not m or m.group(1) not in want):
                    out["wrong_reason"].append(rec)
                if cls == "h-too-large" and rec["phrase"].endswith("(ok)"):
                    # the previous request's result (known_issues.py)
                    out["too_large_answered_with_ok_reason"] += 1
        elif exp == "accept":
            if ok:
                out["valid_accepted"] += 1
            else:
                out["false_refusals"].append(rec)
        else:
            # around the rotation: either answer of the right kind
            if not ok and not st.startswith("4"):
                out["false_refusals"].append(dict(rec, why="not 200/4xx "
                                                  "around the rotation"))
    lat = sorted(out["latency"])
    out["latency_ms"] = {
        "p50": round(1000 * lat[len(lat) // 2], 2) if lat else None,
        "p99": round(1000 * lat[int(len(lat) * 0.99)], 2) if lat else None,
        "max": round(1000 * lat[-1], 2) if lat else None,
    }
    del out["latency"]
    sent = sorted(r["sent"] for r in recs.values())
    if len(sent) > 1 and sent[-1] > sent[0]:
        out["rate_held"] = round((len(sent) - 1) / (sent[-1] - sent[0]), 1)
        out["send_span_s"] = round(sent[-1] - sent[0], 1)
    out["by_class"] = {k: dict(v) for k, v in sorted(out["by_class"].items())}
    out["reasons"] = {k: dict(v) for k, v in sorted(out["reasons"].items())}
    return out


def window_counts(rows, recs, start, end):
    """Calls sent in [start, end): counts of valid/hostile answers."""
    c = Counter()
    for row in rows:
        rec = recs.get(row[0])
        if rec is None or not (start <= rec["sent"] < end):
            continue
        e = L.expectation(rec["cls"])
        kind = "hostile" if e == "refuse" else "valid:" + e
        c["%s %s" % (kind, "200" if rec["status"] == "200"
                     else ("timeout" if rec["status"] == "TIMEOUT" else "refused"))] += 1
        c["calls"] += 1
    return dict(sorted(c.items()))


# -- the run ----------------------------------------------------------------

class Run:
    def __init__(self, args):
        self.args = args
        self.failures = []
        self.results = {"mode": args.mode, "rate_target": args.rate,
                        "params": {k: getattr(args, k) for k in
                                   ("warmup", "steady", "faults", "restart",
                                    "down", "shm_mb", "seed",
                                    "cache_size")},
                        "clients": len(CLIENTS), "phases": {},
                        "memory_bounds": MEMORY_BOUNDS,
                        "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="wic-load-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.loads = []

    def check(self, cond, what):
        if not cond:
            self.failures.append(what)
            log("FAIL: %s" % what)
        return cond

    def rows_for(self, phase, seconds):
        per = self.args.rate / len(CLIENTS)
        n = max(1, int(round(per * seconds)))
        return make_rows(self.minter, phase, n)

    def phase_result(self, name, load, events, extra=None):
        recs = load.records()
        rows = load.rows()
        scscf_rx = scscf_register_call_ids(self.dep)
        ep_acc = ep_accepted_call_ids(self.dep)
        res = analyse(rows, recs, scscf_rx, ep_acc, events)
        res["sipp_exit"] = {u: rc for u, rc in load.rcs.items()}
        res["duration_planned_s"] = round(load.duration, 1)
        if extra:
            res.update(extra)
        self.results["phases"][name] = res
        fa, fr = res["false_accepts"], res["false_refusals"]
        log("%s: %d calls, %d answered, rate held %s/s (target %g), "
            "valid accepted %d, hostile refused %d, false accepts %d, "
            "valid refused %d, unanswered %d, unexplained %d, "
            "latency p50 %s ms p99 %s ms" % (
                name, res["rows"], res["answered"], res.get("rate_held"),
                self.args.rate, res["valid_accepted"], res["hostile_refused"],
                len(fa), len(fr), len(res["unanswered"]),
                len(res["unexplained"]), res["latency_ms"]["p50"],
                res["latency_ms"]["p99"]))
        self.check(not fa, "%s: false accepts: %s" % (name, fa[:5]))
        self.check(not fr, "%s: valid tokens refused: %s" % (name, fr[:5]))
        self.check(not res["unanswered"], "%s: calls unanswered outside the "
                   "restart gap: %s" % (name, res["unanswered"][:5]))
        self.check(not res["unexplained"], "%s: calls without a logged final "
                   "answer: %s" % (name, res["unexplained"][:5]))
        self.check(not res["wrong_reason"], "%s: refused for another reason "
                   "than the class's: %s" % (name, res["wrong_reason"][:5]))
        bad_rc = {u: rc for u, rc in load.rcs.items() if rc not in (0, 1)}
        self.check(not bad_rc, "%s: sipp failed: %s" % (name, bad_rc))
        self.check(res["valid_accepted"] > 0 and res["hostile_refused"] > 0,
                   "%s: no traffic of both kinds" % name)
        return res, recs, rows

    def memory_check(self, name, before, after):
        g = mem_growth(before, after)
        res = self.results["phases"][name]
        res["memory_start"] = mem_summary(before)
        res["memory_end"] = mem_summary(after)
        res["memory_growth"] = g
        if res.get("valid_accepted"):
            res["rss_anon_sum_growth_per_accept"] = round(
                g["rss_anon_sum"] / res["valid_accepted"])
        log("%s memory: htable items %s -> %s, shm real_used %d -> %d (%+d), "
            "pkg sum %d -> %d (max per process %+d), RSS sum %d -> %d, "
            "RssAnon max per process %+d" % (
                name, before["htable_items"], after["htable_items"],
                before["shm"]["real_used"], after["shm"]["real_used"],
                g["shm_real_used"], res["memory_start"]["pkg_real_used_sum"],
                res["memory_end"]["pkg_real_used_sum"],
                g["pkg_real_used_per_process"], res["memory_start"]["rss_sum"],
                res["memory_end"]["rss_sum"], g["rss_anon_per_process"]))
        for k, bound in MEMORY_BOUNDS.items():
            self.check(g[k] <= bound, "%s: memory %s grew by %d bytes (bound "
                       "%d)" % (name, k, g[k], bound))

    def alive_check(self, name, pids_before, log_offset):
        ep = self.dep.ep
        self.check(ep.alive() and self.dep.scscf.alive(),
                   "%s: a proxy exited:\n%s" % (name, self.dep.logs()))
        now = group_pids(ep.proc.pid) if ep.alive() else []
        self.check(now == pids_before, "%s: eP-CSCF processes changed: %s -> "
                   "%s" % (name, pids_before, now))
        d = deaths(ep, log_offset) + deaths(self.dep.scscf)
        self.check(not d, "%s: process death in the logs: %s" % (name, d[:5]))

    # -- phases --
    def run(self):
        a = self.args
        self.t_start = time.time()
        log("workdir %s; mode %s: %g REGISTER/s, %d clients, steady %ss, "
            "faults %ss, restart %ss (down %ss)" % (
                self.workdir, a.mode, a.rate, len(CLIENTS), a.steady,
                a.faults, a.restart, a.down))
        rot_key, self.rot_pub = L.new_rotation_key(self.workdir)
        self.minter = L.Minter(rot_key, seed=a.seed)
        t = time.time()
        rows = {
            "warmup": self.rows_for("warmup", a.warmup),
            "steady": self.rows_for("steady", a.steady),
            "faults": self.rows_for("faults", a.faults),
            "restart": self.rows_for("restart", a.restart),
        }
        n = sum(len(r) for p in rows.values() for r in p.values())
        log("minted %d Authorization values in %.1fs" % (n, time.time() - t))

        self.dep = Deployment(self.workdir / "dep", mode="native",
                              shm_mb=a.shm_mb)
        if a.cache_size is not None:
            harness.write_config(self.dep.config, extra_top=(
                "verified_cache_size = %d\n" % a.cache_size))
        self.dep.start()
        try:
            self.phase_warmup(rows["warmup"])
            self.phase_steady(rows["steady"])
            self.phase_faults(rows["faults"])
            self.phase_restart(rows["restart"])
        finally:
            for load in self.loads:
                load.kill()
            self.dep.stop()
        self.results["failures"] = self.failures
        self.results["run_time_s"] = round(time.time() - self.t_start, 1)
        out = self.workdir / "results.json"
        out.write_text(json.dumps(self.results, indent=1, default=str))
        if a.results:
            Path(a.results).write_text(out.read_text())
        log("results: %s" % out)
        return not self.failures

    def new_load(self, phase, rows):
        load = Load(self.dep, self.workdir, phase, rows, self.args.rate)
        self.loads.append(load)
        return load

    def phase_warmup(self, rows):
        load = self.new_load("warmup", rows)
        load.start().wait()
        self.phase_result("warmup", load, {})

    def _mem_at_rest(self, name):
        left = quiesce(self.dep.ep)
        self.check(left == 0, "%s: %s transactions still open" % (name, left))
        return memory(self.dep.ep)

    def phase_steady(self, rows):
        ep = self.dep.ep
        before = self._mem_at_rest("steady")
        offset = len(ep.log())
        load = self.new_load("steady", rows)
        load.start().wait()
        self.phase_result("steady", load, {})
        after = self._mem_at_rest("steady")
        self.memory_check("steady", before, after)
        self.alive_check("steady", before["pids"], offset)

    def _gen(self):
        return self.dep.stats()["reload_generation"]

    def phase_faults(self, rows):
        ep, dep = self.dep.ep, self.dep
        cfg = dep.config
        good = cfg.read_text()
        before = self._mem_at_rest("faults")
        offset = len(ep.log())
        load = self.new_load("faults", rows)
        D = load.duration
        faults = []
        load.start()
        t0 = load.t0

        def at(frac):
            delay = t0 + frac * D - time.time()
            if delay > 0:
                time.sleep(delay)

        def restore():
            tmp = cfg.with_name(cfg.name + ".tmp")
            tmp.write_text(good)
            os.replace(tmp, cfg)

        def refused_reload(name, damage, start, end):
            at(start)
            g0 = self._gen()
            t = time.time()
            damage()
            r = dep.reload()
            msg = (r.stdout + r.stderr).strip()
            self.check(r.returncode != 0, "faults/%s: reload accepted: %s"
                       % (name, msg))
            self.check(str(cfg) in msg, "faults/%s: the refusal does not name "
                       "the file: %s" % (name, msg))
            self.check(self._gen() == g0, "faults/%s: reload generation "
                       "moved" % name)
            at(end)
            restore()
            faults.append({"fault": name, "start": t, "end": time.time(),
                           "reload_answer": msg[:300]})
            log("fault %s: reload refused (%s)" % (name, msg[:160]))

        def garbage():
            rng = random.Random(7)
            junk = bytes(rng.randrange(256) for _ in range(3000))
            cfg.write_bytes(b"[[issuer]\nkey = = \"\n" + junk)

        def half():
            # a writer stopped half way: the file ends inside a quoted value
            # (of an assignment, not of a comment, which would leave valid
            # TOML: the first `key = "` past the middle)
            m = re.compile(r'(?m)^\s*[A-Za-z_]+\s*=\s*"[^"\n]{4}').search(
                good, len(good) // 2)
            assert m, "no quoted value in the second half of the config"
            with open(cfg, "w") as f:
                f.write(good[:m.end() - 2])

        def delete():
            cfg.unlink()

        refused_reload("garbage", garbage, 0.10, 0.25)
        refused_reload("half-written", half, 0.30, 0.45)
        refused_reload("deleted", delete, 0.50, 0.65)

        # rotation: kid a-es256 removed, a new kid added; written atomically
        at(0.70)
        rotated = rotate(good, self.rot_pub)
        tmp = cfg.with_name(cfg.name + ".tmp")
        tmp.write_text(rotated)
        os.replace(tmp, cfg)
        g0 = self._gen()
        rs = time.time()
        r = dep.reload()
        re_ = time.time()
        self.check(r.returncode == 0, "faults/rotation: reload refused: %s"
                   % (r.stdout + r.stderr))
        self.check(self._gen() == g0 + 1, "faults/rotation: generation %s -> "
                   "%s" % (g0, self._gen()))
        faults.append({"fault": "key rotation", "start": rs, "end": re_,
                       "reload_answer": (r.stdout + r.stderr).strip()[:300]})
        log("fault key rotation: reload answered %r in %.3fs"
            % ((r.stdout + r.stderr).strip()[:80], re_ - rs))
        load.wait()
        events = {"rotation": (rs, re_)}
        res, recs, rows_ = self.phase_result("faults", load, events)
        # per fault: the calls sent while the file was broken, and after the
        # rotation
        for f in faults:
            end = f["end"] if f["fault"] != "key rotation" else load.t1
            f["calls"] = window_counts(rows_, recs, f["start"], end)
            f["start_s"] = round(f["start"] - t0, 2)
            f["end_s"] = round(end - t0, 2)
        res["faults"] = faults
        rot = faults[-1]["calls"]
        self.check(rot.get("valid:new 200", 0) > 0, "faults/rotation: no "
                   "new-key registration after the reload")
        for f in faults[:3]:
            c = f["calls"]
            self.check(c.get("valid:accept 200", 0) > 0 and
                       c.get("valid:old 200", 0) > 0,
                       "faults/%s: no valid registration while the file was "
                       "broken: %s" % (f["fault"], c))
        after = self._mem_at_rest("faults")
        self.memory_check("faults", before, after)
        self.alive_check("faults", before["pids"], offset)

    def phase_restart(self, rows):
        ep, dep = self.dep.ep, self.dep
        before = self._mem_at_rest("restart")
        load = self.new_load("restart", rows)
        D = load.duration
        load.start()
        delay = load.t0 + 0.35 * D - time.time()
        if delay > 0:
            time.sleep(delay)
        old_pids = group_pids(ep.proc.pid)
        t_kill = time.time()
        os.killpg(ep.proc.pid, signal.SIGKILL)
        ep.proc.wait(10)
        t_dead = time.time()
        ep.stop()
        time.sleep(max(0.0, t_kill + self.args.down - time.time()))
        t_start = time.time()
        ep.start()
        t_ready = time.time()
        offset = len(ep.log())
        new_pids = group_pids(ep.proc.pid)
        log("restart: SIGKILL to %d processes; started again after %.1fs, "
            "answering RPC %.2fs after the start" % (
                len(old_pids), t_start - t_kill, t_ready - t_start))
        after_start = memory(ep)
        load.wait()
        events = {"rotated": True, "gap": (t_kill, t_ready)}
        res, recs, rows_ = self.phase_result("restart", load, events)
        res["restart"] = {
            "kill_at_s": round(t_kill - load.t0, 2),
            "dead_after_s": round(t_dead - t_kill, 3),
            "started_after_s": round(t_start - t_kill, 2),
            "ready_after_s": round(t_ready - t_kill, 2),
            "start_to_ready_s": round(t_ready - t_start, 2),
            "processes_killed": len(old_pids),
            "calls_before": window_counts(rows_, recs, load.t0, t_kill),
            "calls_in_gap": window_counts(rows_, recs, t_kill, t_ready),
            "calls_after": window_counts(rows_, recs, t_ready, load.t1),
        }
        self.check(not set(old_pids) & set(new_pids),
                   "restart: old processes survived the kill")
        after = res["restart"]["calls_after"]
        self.check(after.get("valid:accept 200", 0) > 0 and
                   after.get("valid:new 200", 0) > 0,
                   "restart: no valid registration after the restart: %s"
                   % after)
        self.check(not any(k.startswith("valid") and not k.endswith("200")
                           and "old" not in k for k in after),
                   "restart: valid registrations failed after the restart: %s"
                   % after)
        self.check(dep.ep.rpc("core.psx").stdout.count("wic_tna refresher")
                   == 1, "restart: no wic_tna refresher after the restart")
        end = self._mem_at_rest("restart")
        res["memory_before_kill"] = mem_summary(before)
        res["memory_after_restart"] = mem_summary(after_start)
        res["memory_end"] = mem_summary(end)
        res["memory_growth_after_restart"] = mem_growth(after_start, end)
        log("restart memory: shm real_used %d before the kill, %d after the "
            "restart, %d at the end; RSS sum %d / %d / %d" % (
                before["shm"]["real_used"], after_start["shm"]["real_used"],
                end["shm"]["real_used"], mem_summary(before)["rss_sum"],
                mem_summary(after_start)["rss_sum"], mem_summary(end)["rss_sum"]))
        self.alive_check("restart", new_pids, offset)


def rotate(text, new_pub):
    """The configuration with issuer A's key a-es256 replaced by a new kid
    and key."""
    old = re.search(r'(?ms)^  \[\[issuer\.key\]\]\n  kid = "%s"\n.*?(?=^\s*\n)'
                    % re.escape(L.OLD_KID), text)
    assert old, "no %s key block" % L.OLD_KID
    new = ('  [[issuer.key]]\n  kid = "%s"\n  algorithms = ["ES256"]\n'
           '  pem = "%s"\n' % (L.NEW_KID, new_pub))
    out = text[:old.start()] + new + text[old.end():]
    assert 'kid = "%s"' % L.OLD_KID not in out
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="100/s, short phases, every fault (about 2 min)")
    ap.add_argument("--rate", type=float)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--steady", type=float)
    ap.add_argument("--faults", type=float)
    ap.add_argument("--restart", type=float)
    ap.add_argument("--down", type=float,
                    help="seconds the eP-CSCF stays down after the kill")
    ap.add_argument("--shm-mb", type=int, default=128,
                    help="Kamailio -m for both proxies (default 128)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-size", type=int,
                    help="verified_cache_size of the eP-CSCF's configuration "
                    "(default: the library's, 10000)")
    ap.add_argument("--workdir", help="keep everything here")
    ap.add_argument("--results", help="copy results.json here")
    ap.add_argument("--keep", action="store_true",
                    help="keep the workdir even when everything passed")
    args = ap.parse_args(argv)
    args.mode = "quick" if args.quick else "full"
    for k, v in MODES[args.mode].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    started = time.time()
    run = Run(args)
    ok = False
    try:
        ok = run.run()
    finally:
        took = time.time() - started
        log("%s in %.0fs" % ("PASSED" if ok else "FAILED", took))
        if ok and not args.keep and not args.workdir:
            shutil.rmtree(run.workdir, ignore_errors=True)
        else:
            log("kept %s" % run.workdir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
