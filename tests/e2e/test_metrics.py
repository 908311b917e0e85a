"""Issue 20 end to end: the example eP-CSCF (epcscf.cfg, native module)
with its metrics listener (EP_METRICS_PORT): the Kamailio statistics of
group wic_tna, GET /metrics in the Prometheus text format on the
operator's port only, and a real Prometheus (Debian's /usr/bin/prometheus
on loopback, scrape interval 1 s, the rules of monitoring/) that sees an
issuer minting out-of-pool tokens while another registers cleanly; then
that issuer barred over RPC.

No timing is asserted: the waits poll Prometheus until its answer says
what is expected, within a generous deadline."""

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness import (ISSUER_A, ISSUER_B, REPO, Deployment, free_port,
                     proxy_env)
from tokens import identity, mint

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
RULES = REPO / "monitoring" / "wic-tna-rules.yml"


class MetricsDeployment(Deployment):
    """The example deployment with the eP-CSCF's metrics listener on."""

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.ep_metrics = free_port()

    def make_ep(self):
        ep = super().make_ep()
        ep.defines["EP_METRICS_PORT"] = self.ep_metrics
        return ep

    def metrics_url(self, path="/metrics"):
        return "http://127.0.0.1:%d%s" % (self.ep_metrics, path)


@pytest.fixture
def mdep(request, workdir):
    from e2e_fixtures import running
    d = MetricsDeployment(workdir, mode="native")
    yield from running(request, d)


def http_get(url, headers=None, timeout=5):
    """(status, headers, body) of a GET; HTTP errors are answers too."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode(errors="replace")


def sample(text, series):
    """The value of one sample line ("series value") of an exposition."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line[len(series) + 1:])
    return None


def checks(text, iss, reason):
    return sample(text, 'wic_tna_checks_total{issuer="%s",reason="%s"}'
                  % (iss, reason))


def stats(dep):
    """kamcmd stats.get_statistics wic_tna: as {name: int}."""
    r = dep.ep.rpc("stats.get_statistics", "wic_tna:")
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = {}
    for m in re.finditer(r"wic_tna:(\w+) = (\d+)", r.stdout):
        out[m.group(1)] = int(m.group(2))
    assert out, r.stdout
    return out


def register_a(dep, user="alice", call_id=None):
    impi, impu = identity("a", user)
    with dep.udp() as c:
        return c.register(impu, ["Bearer " + mint("a", user=user)],
                          call_id=call_id)


def register_b_outside_pool(dep, n):
    """Tokens of issuer B for identities of A's domain: outside B's pool."""
    impi, impu = identity("a", "mallory")
    with dep.udp() as c:
        for _ in range(n):
            r = c.register(impu, ["Bearer " + mint(
                "b", impi=impi, impus=[impu])])
            assert r.status == 403 and "impi_outside_pool" in r.reason, r.raw


def test_statistics_list_every_reason_and_follow_the_checks(mdep):
    """Function-backed statistics, registered before the fork: listed by
    kamcmd stats.get_statistics wic_tna: and read from the shared state,
    so a check made by any worker shows in the RPC process at once."""
    s0 = stats(mdep)
    names = set(s0)
    for reason in ("ok", "expired", "bad_signature", "impi_outside_pool",
                   "issuer_barred", "keys_unavailable", "missing_token",
                   "bare_token_not_accepted"):
        assert reason in names, sorted(names)
    assert len(names) >= 37, sorted(names)
    assert register_a(mdep).status == 200
    register_b_outside_pool(mdep, 2)
    s1 = stats(mdep)
    assert s1["ok"] == s0["ok"] + 1, (s0, s1)
    assert s1["impi_outside_pool"] == s0["impi_outside_pool"] + 2, (s0, s1)
    assert s1["bad_signature"] == s0["bad_signature"]
    # the same numbers as the library's own stats
    out = mdep.stats()["outcomes"]
    assert s1["impi_outside_pool"] == sum(
        v.get("impi_outside_pool", 0) for v in out.values())


def test_metrics_on_the_operators_port_only(mdep):
    st, hdrs, body = http_get(mdep.metrics_url())
    assert st == 200, body
    assert hdrs.get("Content-Type", "").startswith(
        "text/plain; version=0.0.4"), hdrs
    assert "# TYPE wic_tna_checks_total counter" in body
    assert "# HELP wic_tna_checks_total " in body
    for iss in (ISSUER_A, ISSUER_B, "-"):
        assert checks(body, iss, "ok") is not None, body[:2000]
        assert checks(body, iss, "impi_outside_pool") is not None
    assert sample(body, 'wic_tna_issuer_barred{issuer="%s"}' % ISSUER_B) == 0
    # larger than Kamailio's pv buffer (8 KiB): sent whole
    assert len(body) > 8192, len(body)
    assert body.endswith("\n") and body.count("\n") == len(body.splitlines())

    register_b_outside_pool(mdep, 3)
    _, _, after = http_get(mdep.metrics_url())
    assert checks(after, ISSUER_B, "impi_outside_pool") == \
        checks(body, ISSUER_B, "impi_outside_pool") + 3

    # other paths and methods on the metrics port: 404
    assert http_get(mdep.metrics_url("/"))[0] == 404
    assert http_get(mdep.metrics_url("/metricsx"))[0] == 404
    # /metrics is not served on the clients' WebSocket port
    st, _, body = http_get("http://127.0.0.1:%d/metrics" % mdep.ep_ws)
    assert st == 404 and "wic_tna_checks_total" not in body
    # no WebSocket on the metrics port
    st, _, _ = http_get(mdep.metrics_url("/"), headers={
        "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "sip",
        "Origin": "https://webrtc.socialnet.example"})
    assert st == 404
    # ... while the WebSocket port still upgrades and registers
    impi, impu = identity("a")
    with mdep.ws() as c:
        r = c.register(impu, ["Bearer " + mint("a")])
    assert r.status == 200, r.raw


def test_sip_on_the_metrics_port_is_refused_and_not_forwarded(mdep):
    impi, impu = identity("a")
    call_id = "metrics-port-sip@wic.test"
    s = socket.create_connection(("127.0.0.1", mdep.ep_metrics), timeout=5)
    try:
        branch = "z9hG4bK-metrics1"
        lport = s.getsockname()[1]
        msg = ("REGISTER sip:ims.example.net SIP/2.0\r\n"
               "Via: SIP/2.0/TCP 127.0.0.1:%d;branch=%s;rport\r\n"
               "Max-Forwards: 70\r\nFrom: <%s>;tag=t1\r\nTo: <%s>\r\n"
               "Call-ID: %s\r\nCSeq: 1 REGISTER\r\n"
               "Contact: <sip:alice@127.0.0.1:%d;transport=tcp>\r\n"
               "Authorization: Bearer %s\r\nContent-Length: 0\r\n\r\n"
               % (lport, branch, impu, impu, call_id, lport, mint("a")))
        s.sendall(msg.encode())
        data = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.startswith(b"SIP/2.0 403"), data
    assert mdep.scscf_rx(call_id) == [], mdep.logs()


def prom_config(path, target, rules):
    path.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "rule_files:\n"
        "  - %s\n"
        "scrape_configs:\n"
        "  - job_name: epcscf\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 900ms\n"
        "    static_configs:\n"
        "      - targets: ['%s']\n" % (rules, target))


class Prometheus:
    """Debian's prometheus on loopback with its own configuration and
    data directory."""

    def __init__(self, workdir, target):
        self.dir = Path(workdir) / "prometheus"
        self.dir.mkdir()
        self.port = free_port()
        # the repository's rules, each alert's hold (for:) cut to 1 s so
        # that the alert logic runs on this short test's data (promtool
        # test rules checks the 5-minute holds with synthetic series)
        rules = self.dir / "rules.yml"
        text = RULES.read_text()
        assert re.search(r"(?m)^\s+for: \d+m$", text)
        rules.write_text(re.sub(r"(?m)^(\s+for:) \d+m$", r"\1 1s", text))
        prom_config(self.dir / "prometheus.yml", target, rules)
        self.log = open(self.dir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=%s" % (self.dir / "prometheus.yml"),
             "--storage.tsdb.path=%s" % (self.dir / "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port,
             "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, env=proxy_env(),
            start_new_session=True)

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s?%s" % (
            self.port, path, urllib.parse.urlencode(params))
        with urllib.request.urlopen(url, timeout=5) as r:
            d = json.loads(r.read())
        assert d["status"] == "success", d
        return d["data"]

    def query(self, expr):
        """{issuer: value} of an instant query."""
        res = self.api("query", query=expr)["result"]
        return {r["metric"].get("issuer", ""): float(r["value"][1])
                for r in res}

    def wait(self, what, cond, timeout=60):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited:\n" + self.log_text())
            try:
                last = what()
                if cond(last):
                    return last
            except (OSError, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError("not reached: %r\n%s" % (last, self.log_text()))

    def log_text(self):
        return (self.dir / "prometheus.log").read_text(errors="replace")[-3000:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


@pytest.fixture
def prometheus(mdep, workdir):
    if not Path(PROMETHEUS).exists():
        pytest.fail("no %s (bash scripts/install-deps.sh installs Debian's "
                    "prometheus)" % PROMETHEUS)
    p = Prometheus(workdir, "127.0.0.1:%d" % mdep.ep_metrics)
    yield p
    p.stop()


FAULTS = ("bad_signature|unknown_key|impi_outside_pool|impu_outside_pool|"
          "invalid_impi|invalid_impu|lifetime_too_long|wrong_audience")


def test_prometheus_sees_the_issuer_gone_wrong_then_it_is_barred(
        mdep, prometheus):
    p = prometheus
    # the target is up and its series are there (zeros) before any check
    p.wait(lambda: p.query('up{job="epcscf"}'), lambda r: r.get("") == 1.0)
    p.wait(lambda: p.query(
        'wic_tna_checks_total{reason="impi_outside_pool"}'),
        lambda r: {ISSUER_A, ISSUER_B} <= set(r))

    # issuer A: valid tokens, registered; issuer B: a burst of tokens for
    # identities outside its pool, refused
    for i in range(5):
        assert register_a(mdep, user="alice%d" % i).status == 200
    register_b_outside_pool(mdep, 30)

    # the issuer-fault refusal rate (the recording rule of monitoring/):
    # B's up, A's at zero
    rates = p.wait(
        lambda: p.query("wic_tna:issuer_fault_rejections:rate5m"),
        lambda r: r.get(ISSUER_B, 0) > 0 and ISSUER_A in r)
    assert rates[ISSUER_A] == 0, rates
    assert rates[ISSUER_B] > 0, rates
    # and straight from the counters
    raw = p.query('sum by (issuer) (rate(wic_tna_checks_total{reason=~"%s"}[1m]))'
                  % FAULTS)
    assert raw[ISSUER_B] > 0 and raw[ISSUER_A] == 0, raw
    ok = p.query('sum by (issuer) (increase(wic_tna_checks_total{reason="ok"}[1m]))')
    assert ok[ISSUER_A] > 0 and ok[ISSUER_B] == 0, ok
    share = p.query("wic_tna:issuer_fault_share:ratio_rate5m")
    assert share[ISSUER_B] == 1.0 and share[ISSUER_A] == 0, share

    # the anomaly alert (its hold cut to 1 s here): firing for B only
    alerts = p.wait(
        lambda: p.query('ALERTS{alertname="WicTnaIssuerAnomaly",'
                        'alertstate="firing"}'),
        lambda r: ISSUER_B in r)
    assert set(alerts) == {ISSUER_B}, alerts

    # the operator bars B over RPC: its next REGISTER is 403 issuer_barred
    # and reaches nothing; A keeps registering through to the S-CSCF
    r = mdep.bar(ISSUER_B)
    assert r.returncode == 0, (r.stdout, r.stderr)
    impi_b, impu_b = identity("b", "bob")
    call_b = "barred-b@wic.test"
    with mdep.udp() as c:
        rb = c.register(impu_b, ["Bearer " + mint("b", user="bob")],
                        call_id=call_b)
    assert rb.status == 403 and "issuer_barred" in rb.reason, rb.raw
    assert mdep.scscf_rx(call_b) == [], mdep.logs()
    call_a = "after-bar-a@wic.test"
    ra = register_a(mdep, user="alice", call_id=call_a)
    assert ra.status == 200, ra.raw
    assert len(mdep.scscf_rx(call_a)) == 1, mdep.logs()

    # and Prometheus sees the barring
    barred = p.wait(lambda: p.query("wic_tna_issuer_barred"),
                    lambda r: r.get(ISSUER_B) == 1.0)
    assert barred[ISSUER_A] == 0, barred


def test_python_glue_metrics_port_says_it_needs_the_native_module(
        request, workdir):
    """epcscf-python.cfg (the same cfg with WITH_PYTHON_GLUE): the metrics
    listener answers 501, and still carries no SIP."""
    from e2e_fixtures import running
    d = MetricsDeployment(workdir, mode="python")
    gen = running(request, d)
    dep = next(gen)
    try:
        st, _, body = http_get(dep.metrics_url())
        assert st == 501 and "native module" in body, (st, body)
        assert http_get(dep.metrics_url("/x"))[0] == 404
    finally:
        next(gen, None)


def test_an_issuer_added_by_a_reload_is_scraped(mdep):
    """Issuers come from the configuration in force: after kamcmd
    wic_tna.reload the scrape (made by another process than the RPC's)
    lists the new issuer with every reason, at zero."""
    added = "https://wwsf.added.example"
    _, _, before = http_get(mdep.metrics_url())
    assert added not in before
    text = mdep.config.read_text()
    secret = REPO / "tests" / "fixtures" / "keys" / "issuer-a-hmac.secret"
    mdep.config.write_text(
        text + '\n[[issuer]]\niss = "%s"\nimpi_patterns = ["*@added.example"]\n'
        '  [[issuer.key]]\n  secret_file = "%s"\n  algorithms = ["HS256"]\n'
        % (added, secret))
    r = mdep.reload()
    assert r.returncode == 0, (r.stdout, r.stderr)
    _, _, after = http_get(mdep.metrics_url())
    assert checks(after, added, "ok") == 0, after[-3000:]
    assert checks(after, added, "impi_outside_pool") == 0
    assert sample(after, 'wic_tna_issuer_barred{issuer="%s"}' % added) == 0
