"""End-to-end harness: real proxy processes (eP-CSCF and S-CSCF) on
loopback ports, each in its own temp dir, with its log captured.

ProxyProcess is one proxy process tree whatever the proxy (start, ready on
its ports, log, stop, RPC hook); KamailioProcess is Kamailio's.
Deployment is a Kamailio eP-CSCF and S-CSCF; tests/e2e_opensips puts an
OpenSIPS eP-CSCF in it (OpenSipsDeployment). The SIP clients are
sipclient.py's, for both.

    dep = Deployment(tmp_path, mode="native")   # or "python"
    # core="ims": the IMS S-CSCF + test HSS of tests/e2e/ims.py instead
    dep.start()
    with dep.udp() as c: c.register(...)
    dep.scscf_rx(call_id)       # what reached the S-CSCF
    dep.stop()
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "kamailio-example"
KEYS = REPO / "tests" / "fixtures" / "keys"
EXAMPLE_CONFIG = REPO / "config" / "wic-tna.toml"
LIBDIR = Path(os.environ.get("WIC_TNA_LIBDIR", REPO / "target" / "release"))
LIBRARY = LIBDIR / "libwic_tna.so"
CLI = Path(os.environ.get("WIC_TNA_CLI", REPO / "target" / "release" / "wic-tna"))
MODULE = Path(os.environ.get("WIC_TNA_MODULE",
                             REPO / "build" / "wic_tna" / "wic_tna.so"))
GLUE = EXAMPLE / "python" / "wic_tna_glue.py"
# Another Kamailio than the one on PATH (tests/kamailio_versions: 5.8, 6.0
# built from source): its kamailio, kamcmd and module directory (passed to
# the cfgs as MODULES_DIR)
KAMAILIO = (os.environ.get("WIC_TNA_KAMAILIO") or shutil.which("kamailio")
            or "/usr/sbin/kamailio")
KAMCMD = (os.environ.get("WIC_TNA_KAMCMD") or shutil.which("kamcmd")
          or "/usr/sbin/kamcmd")
KAMAILIO_MODULES_DIR = os.environ.get("WIC_TNA_KAMAILIO_MODULES_DIR", "")
VALGRIND = bool(os.environ.get("WIC_TNA_E2E_VALGRIND"))

ISSUER_A = "https://wwsf.socialnet.example"
ISSUER_B = "https://wwsf.gamenet.example"
ORIGIN_A = "https://webrtc.socialnet.example"
ORIGIN_B = "https://play.gamenet.example"

_used_ports = set()

_TLS = {}


def tls_files():
    """A throw-away self-signed certificate for the WSS listener
    (127.0.0.1 and localhost), made once per test run with openssl."""
    if not _TLS:
        import tempfile
        d = Path(tempfile.mkdtemp(prefix="wic-e2e-tls-"))
        cert, key = d / "epcscf.crt", d / "epcscf.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext",
             "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True)
        _TLS.update(cert=cert, key=key)
    return _TLS["cert"], _TLS["key"]


def _bindable(family, kind, host, port):
    s = socket.socket(family, kind)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port():
    """A port free for TCP and UDP on 127.0.0.1 and ::1, not handed out
    before in this test run."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port in _used_ports:
            continue
        if all(_bindable(f, k, h, port) for f, h in
               ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))
               for k in (socket.SOCK_STREAM, socket.SOCK_DGRAM)):
            _used_ports.add(port)
            return port
    raise RuntimeError("no free port")


def proxy_env(extra=None):
    """The environment of a proxy process: ours, without pyenv's Python
    settings (Kamailio's app_python3 and OpenSIPS's python module embed
    Debian's /usr/bin/python3), plus extra."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(name, None)
    if extra:
        env.update(extra)
    return env


class ProxyProcess:
    """One SIP proxy process tree (Kamailio, OpenSIPS) in its own session,
    whatever the proxy: started from command() (its configuration, arguments
    and env) in workdir, its output in workdir/NAME.log; ready when ready()
    says so, then settle(); stopped with SIGTERM, and what is left of the
    tree killed after stop_timeout.

    A subclass gives command(), and may give ready() (default: each of
    `ports` answers a SIP OPTIONS over UDP), settle(deadline) (default:
    nothing to wait for) and rpc() (the management hook: Kamailio's RPC;
    default: none)."""

    ready_timeout = 20
    stop_timeout = 10

    def __init__(self, name, cfg, workdir, env=None, ports=()):
        self.name = name
        self.cfg = Path(cfg)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = proxy_env(env)
        self.logfile = self.workdir / ("%s.log" % name)
        self.ports = list(ports)
        self.proc = None
        self._log = None

    # -- what a proxy gives --
    def command(self):
        raise NotImplementedError

    def ready(self):
        from sipclient import answers
        return all(answers("127.0.0.1", port) for port in self.ports)

    def settle(self, deadline):
        """Called once ready(), before start() returns."""

    def rpc(self, *args, timeout=10):
        """The proxy's management interface: a CompletedProcess-like
        result (returncode, stdout, stderr)."""
        raise NotImplementedError("%s: no management interface in this "
                                  "harness" % self.name)

    def rpc_ok(self, *args):
        try:
            return self.rpc(*args, timeout=5).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    # -- life cycle --
    def start(self, ready_timeout=None):
        if ready_timeout is None:
            ready_timeout = self.ready_timeout
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._log,
                                     stderr=subprocess.STDOUT, env=self.env,
                                     cwd=str(self.workdir),
                                     start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s at start:\n%s" % (
                    self.name, self.proc.returncode, self.log_tail()))
            if self.ready():
                self.settle(deadline)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("%s not ready in %ss:\n%s" % (
            self.name, ready_timeout, self.log_tail()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=None):
        if self.proc is None:
            return
        if timeout is None:
            timeout = self.stop_timeout
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left of this process tree (its own session)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        self.proc = None

    # -- its log --
    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, pattern, timeout=5):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.05)


class KamailioProcess(ProxyProcess):
    """One kamailio -DD -E process tree with its log in workdir/NAME.log;
    ready when its RPC (kamcmd over the ctl socket) answers and every
    process has been forked."""

    def __init__(self, name, cfg, workdir, defines, env=None, valgrind=False,
                 shm_mb=32, pkg_mb=8):
        super().__init__(name, cfg, workdir, env)
        self.rundir = self.workdir / "run"
        self.rundir.mkdir(exist_ok=True)
        self.ctl = "unix:%s" % (self.rundir / "ctl.sock")
        self.defines = dict(defines)
        self.defines["CTL_SOCKET"] = '"%s"' % self.ctl
        if KAMAILIO_MODULES_DIR:
            self.defines.setdefault(
                "MODULES_DIR", '"%s/"' % KAMAILIO_MODULES_DIR.rstrip("/"))
        self.valgrind = valgrind
        self.ready_timeout = 120 if valgrind else 20
        self.stop_timeout = 60 if valgrind else 10
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.pidfile = self.rundir / "kamailio.pid"

    def command(self):
        cmd = []
        if self.valgrind:
            # every process of the tree (fork without exec is followed),
            # one log per pid
            cmd = ["valgrind", "--error-exitcode=1",
                   "--errors-for-leak-kinds=none", "--track-origins=yes",
                   "--log-file=%s" % (self.workdir / "valgrind.%p.log")]
        cmd += [KAMAILIO, "-DD", "-E", "-f", str(self.cfg),
               "-Y", str(self.rundir), "-P", str(self.pidfile),
               "-w", str(self.workdir), "-m", str(self.shm_mb),
               "-M", str(self.pkg_mb)]
        for k, v in self.defines.items():
            cmd += ["-A", "%s=%s" % (k, v)]
        return cmd

    def valgrind_errors(self):
        """{log file: 'ERROR SUMMARY' line} for each process with errors."""
        bad = {}
        for f in sorted(self.workdir.glob("valgrind.*.log")):
            text = f.read_text(errors="replace")
            m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
            if m and m.group(1) != "0":
                bad[str(f)] = m.group(0)
        return bad

    def ready(self):
        return self.rpc_ok("core.uptime")

    def settle(self, deadline):
        # the RPC process is forked after the SIP workers, but before the
        # TCP receivers (and the rtimer processes before them): wait until
        # the process table stops growing, so that a test that edits the
        # configuration right away does not race a late child_init
        # reading it
        self._wait_all_forked(deadline)

    def _process_count(self):
        try:
            r = self.rpc("core.psx", timeout=5)
        except subprocess.TimeoutExpired:
            return -1, ""
        return r.stdout.count("IDX:"), r.stdout

    def _wait_all_forked(self, deadline):
        settle = 1.5 if self.valgrind else 0.3
        tcp = "tcp: " in self.log()
        last, _ = self._process_count()
        while time.monotonic() < deadline:
            time.sleep(settle)
            n, text = self._process_count()
            if n == last and (not tcp or "tcp main process" in text):
                return
            last = n

    def rpc(self, *args, timeout=10):
        """kamcmd; an RPC fault ("error: <code> - <text>", exit status 0)
        becomes returncode 1."""
        r = subprocess.run([KAMCMD, "-s", self.ctl] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode == 0 and r.stdout.startswith("error:"):
            r.returncode = 1
        return r


def scscf_lines(scscf, marker, call_id):
    """The lines of an S-CSCF's log (a KamailioProcess running scscf.cfg or
    ims/scscf.cfg) with this marker for this Call-ID."""
    return [line for line in scscf.log().splitlines()
            if marker in line and "ci=%s " % call_id in line]


def scscf_msgs(scscf, call_id):
    """The whole requests of this Call-ID that reached that S-CSCF, as
    text (both cfgs log each one in hex: "SCSCF-MSG ci=... [hex]")."""
    out = []
    for line in scscf_lines(scscf, "SCSCF-MSG", call_id):
        m = re.search(r"\[([0-9a-fA-F]*)\]\s*$", line)
        if m:
            out.append(bytes.fromhex(m.group(1)).decode(errors="replace"))
    return out


def write_config(path, state_file=None, trusted_nodes=("127.0.0.1",),
                 extra_top="", transform=None):
    """A copy of config/wic-tna.toml with absolute key paths (the original's
    are relative to config/), only the given trusted nodes, and an optional
    state_file. transform(text) -> text edits it further."""
    text = EXAMPLE_CONFIG.read_text()
    # paths in the example are relative to config/
    text = re.sub(r'"(\.\./[^"]+)"',
                  lambda m: '"%s"' % (EXAMPLE_CONFIG.parent / m.group(1)).resolve(),
                  text)
    text = re.sub(r"(?m)^trusted_nodes\s*=.*$",
                  "trusted_nodes = [%s]" % ", ".join(
                      '"%s"' % n for n in trusted_nodes), text)
    top = ""
    if state_file:
        top += 'state_file = "%s"\n' % state_file
    top += extra_top
    if top:
        # top-level keys go before the first table
        m = re.search(r"(?m)^\[", text)
        text = text[:m.start()] + top + "\n" + text[m.start():]
    if transform:
        text = transform(text)
    Path(path).write_text(text)
    return Path(path)


def _compose(transform, extra_config):
    """One edit of the eP-CSCF's configuration text from a transform
    function and/or TOML to append (either may be None/empty)."""
    if not transform and not extra_config:
        return None

    def t(text):
        if transform:
            text = transform(text)
        if extra_config:
            text = text + "\n" + extra_config
        return text
    return t


class Deployment:
    """eP-CSCF (native module or Python glue) + S-CSCF (native module).

    A variant for another eP-CSCF (tests/e2e_opensips: OpenSipsDeployment)
    overrides required() and make_ep() (a ProxyProcess); ports,
    configurations, clients, management and the S-CSCF's views are
    these."""

    def __init__(self, workdir, mode="native", shm_mb=128, pkg_mb=8,
                 config_transform=None, extra_config="", scscf_of=None,
                 name="epcscf", core="plain"):
        """shm_mb, pkg_mb: Kamailio's -m and -M for both proxies;
        config_transform(text) -> text edits the eP-CSCF's configuration;
        extra_config: TOML appended to it; scscf_of: another Deployment
        whose S-CSCF this one forwards to (it is then neither started nor
        stopped here); name: of the eP-CSCF's process and log;
        core: "plain" (kamailio-example/scscf.cfg) or "ims" (the IMS
        S-CSCF and test HSS of ims.py, as self.ims; the eP-CSCF's TNA
        realm is then the IMPU's domain, tna_realm_from_impu, as that
        S-CSCF requires)."""
        assert mode in ("native", "python")
        assert core in ("plain", "ims")
        self.core = core
        self.ims = None
        self.name = name
        self.scscf_of = scscf_of
        self.mode = mode
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ep_sip = free_port()
        self.ep_ws = free_port()
        self.ep_wss = free_port()
        self.ep_core = free_port()
        self.scscf_port = scscf_of.scscf_port if scscf_of else free_port()
        self.state_file = self.workdir / "wic-tna.state"
        # the Python glue shares bar/reload state through the state_file
        # config_transform(text) -> text edits the eP-CSCF's configuration
        self.config = write_config(
            self.workdir / "wic-tna.toml",
            state_file=self.state_file if mode == "python" else None,
            extra_top="tna_realm_from_impu = true\n" if core == "ims" else "",
            transform=_compose(config_transform, extra_config))
        # the S-CSCF has its own copy (the eP-CSCF's may be broken by tests)
        self.scscf_config = write_config(self.workdir / "scscf-wic-tna.toml")
        self.scscf = scscf_of.scscf if scscf_of else None
        self.ep = None

    # -- what a variant of this deployment changes --
    def required(self):
        """(path, what) of each file start() needs."""
        return [(MODULE, "module (bash kamailio-example/module/build.sh)"),
                (LIBRARY, "library (cargo build --release)")]

    def make_scscf(self):
        """The plain S-CSCF (kamailio-example/scscf.cfg, native module)."""
        return KamailioProcess(
            "scscf", EXAMPLE / "scscf.cfg", self.workdir / "scscf", {
                "SCSCF_PORT": self.scscf_port,
                "WIC_TNA_CONFIG": '"%s"' % self.scscf_config,
                "WIC_TNA_MODULE": '"%s"' % MODULE,
            }, shm_mb=self.shm_mb, pkg_mb=self.pkg_mb)

    def make_ep(self):
        """The eP-CSCF: Kamailio with epcscf.cfg (native module) or
        epcscf-python.cfg (Python glue)."""
        cert, key = tls_files()
        defines = {
            "EP_SIP_PORT": self.ep_sip,
            "EP_WS_PORT": self.ep_ws,
            "EP_WSS_PORT": self.ep_wss,
            "EP_CORE_PORT": self.ep_core,
            "SCSCF_PORT": self.scscf_port,
            "WIC_TNA_CONFIG": '"%s"' % self.config,
            "TLS_CERT": '"%s"' % cert,
            "TLS_KEY": '"%s"' % key,
            # the module's shared state (barring survives a restart)
            "WIC_TNA_STATE_FILE": '"%s"' % (self.workdir / "epcscf.state"),
        }
        env = {}
        if self.mode == "native":
            cfg = EXAMPLE / "epcscf.cfg"
            defines["WIC_TNA_MODULE"] = '"%s"' % MODULE
        else:
            cfg = EXAMPLE / "epcscf-python.cfg"
            defines["WIC_TNA_GLUE"] = '"%s"' % GLUE
            env = {"WIC_TNA_CONFIG": str(self.config),
                   "WIC_TNA_LIBRARY": str(LIBRARY)}
        # WIC_TNA_E2E_VALGRIND=1: the native eP-CSCF runs under valgrind
        # (the Python glue's CPython would need suppressions)
        return KamailioProcess(
            self.name, cfg, self.workdir / self.name, defines, env,
            valgrind=VALGRIND and self.mode == "native",
            shm_mb=self.shm_mb, pkg_mb=self.pkg_mb)

    def start(self):
        for path, what in self.required():
            if not Path(path).exists():
                raise RuntimeError("missing %s: %s" % (what, path))
        if self.scscf_of is None and self.core == "ims":
            from ims import ImsCore
            self.ims = ImsCore(self.workdir / "ims", scscf_port=self.scscf_port)
            self.scscf = self.ims.scscf
        elif self.scscf_of is None:
            self.scscf = self.make_scscf()
        self.ep = self.make_ep()
        try:
            if self.ims is not None:
                self.ims.start()
            elif self.scscf_of is None:
                self.scscf.start()
            self.ep.start()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        for p in (self.ep, None if self.scscf_of else self.scscf):
            if p is not None:
                p.stop()
        if self.ims is not None:
            self.ims.hss.stop()

    # -- clients --
    def udp(self, **kw):
        from sipclient import UdpClient
        return UdpClient("127.0.0.1", self.ep_sip, **kw)

    def ws(self, origin=ORIGIN_A, **kw):
        from sipclient import WsClient
        return WsClient("ws://127.0.0.1:%d" % self.ep_ws, origin, **kw)

    def ws_url(self):
        return "ws://127.0.0.1:%d" % self.ep_ws

    def wss(self, origin=ORIGIN_A, **kw):
        from sipclient import WsClient
        return WsClient("wss://127.0.0.1:%d" % self.ep_wss, origin,
                        cafile=str(tls_files()[0]), **kw)

    def tcp(self, **kw):
        from sipclient import TcpClient
        return TcpClient("127.0.0.1", self.ep_sip, **kw)

    # -- management: RPC for the native module, CLI + state_file for Python --
    def cli(self, *args, check=False):
        return subprocess.run([str(CLI)] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=30,
                              check=check)

    def bar(self, iss):
        if self.mode == "native":
            return self.ep.rpc("wic_tna.bar", iss)
        return self.cli("bar", "--config", self.config, iss)

    def unbar(self, iss):
        if self.mode == "native":
            return self.ep.rpc("wic_tna.unbar", iss)
        return self.cli("unbar", "--config", self.config, iss)

    def reload(self):
        if self.mode == "native":
            return self.ep.rpc("wic_tna.reload")
        return self.cli("reload", "--config", self.config)

    def stats(self):
        """The eP-CSCF's counters (a dict, as the library's stats JSON):
        native, the RPC wic_tna.stats over JSON-RPC (module jsonrpcs of
        epcscf.cfg, its UNIX datagram socket in the run-time directory);
        Python glue, the CLI."""
        import json
        import tempfile
        if self.mode != "native":
            r = self.cli("stats", "--config", self.config)
            assert r.returncode == 0, (r.stdout, r.stderr)
            return json.loads(r.stdout)
        server = str(self.ep.rundir / "kamailio_rpc.sock")
        d = tempfile.mkdtemp(prefix="wic-rpc-")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.bind(os.path.join(d, "c.sock"))
            s.settimeout(10)
            s.sendto(json.dumps({"jsonrpc": "2.0", "method": "wic_tna.stats",
                                 "id": 1}).encode(), server)
            reply = json.loads(s.recv(1 << 16))
        finally:
            s.close()
            shutil.rmtree(d, ignore_errors=True)
        assert "result" in reply, reply
        assert isinstance(reply["result"], dict), reply
        return reply["result"]

    # -- what the S-CSCF saw --
    def scscf_rx(self, call_id):
        """The SCSCF-RX log lines of this Call-ID."""
        return self.scscf_lines("SCSCF-RX", call_id)

    def scscf_msgs(self, call_id):
        """The whole requests of this Call-ID that reached the S-CSCF, as
        text (logged in hex by scscf.cfg)."""
        return scscf_msgs(self.scscf, call_id)

    def scscf_lines(self, marker, call_id):
        return scscf_lines(self.scscf, marker, call_id)

    def ul_dump(self):
        """The S-CSCF's registrations (plain: ul.dump; ims:
        ulscscf.status)."""
        r = self.scscf.rpc("ulscscf.status" if self.ims else "ul.dump")
        assert r.returncode == 0, r.stderr
        return r.stdout

    def logs(self):
        out = []
        for p in (self.ep, self.scscf):
            if p is not None:
                out.append("==== %s (%s) ====\n%s" % (p.name, p.logfile,
                                                     p.log_tail(80)))
        if self.ims is not None:
            out.append("==== hss ====\n%s" % "\n".join(
                str(r) for r in self.ims.hss_requests()[-30:]))
        return "\n".join(out)
