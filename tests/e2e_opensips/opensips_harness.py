"""End-to-end harness for the OpenSIPS eP-CSCF: a real OpenSIPS 3.x
(opensips-example/opensips.cfg with the python module and
opensips-example/wic_tna_opensips.py) in front of the Kamailio S-CSCF of
kamailio-example/scscf.cfg (native module), on loopback ports.

It reuses tests/e2e (harness.py: ports, wic-tna configurations, the
Kamailio S-CSCF process, the Deployment's clients and S-CSCF views;
sipclient.py; tokens.py) by import.

    dep = OpenSipsDeployment(tmp_path)
    dep.start()
    with dep.udp() as c: c.register(...)
    dep.scscf_rx(call_id)       # what reached the S-CSCF
    dep.stop()

The OpenSIPS binary is $WIC_TNA_OPENSIPS (a build of OpenSIPS 3.x with the
modules sl signaling tm rr maxfwd sipmsgops textops python); its module
directory is $WIC_TNA_OPENSIPS_MODULES, else <prefix>/lib64/opensips/modules
(or lib/) beside <prefix>/sbin/opensips.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
E2E = HERE.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

import harness  # noqa: E402  (tests/e2e/harness.py)
from harness import (EXAMPLE, LIBRARY, MODULE, REPO,  # noqa: E402
                     Deployment, KamailioProcess)

OPENSIPS_EXAMPLE = REPO / "opensips-example"
OPENSIPS_CFG = OPENSIPS_EXAMPLE / "opensips.cfg"
HANDLER = OPENSIPS_EXAMPLE / "wic_tna_opensips.py"
GLUE_DIR = EXAMPLE / "python"

ENV_BINARY = "WIC_TNA_OPENSIPS"
ENV_MODULES = "WIC_TNA_OPENSIPS_MODULES"

# The "# SITE" lines of opensips.cfg as shipped, and what the harness puts
# in their place (OpenSIPS's -p preprocessor runs sed over the file).
SITE_DEFAULTS = {
    "udp_socket": "udp:127.0.0.1:5060",
    "tcp_socket": "tcp:127.0.0.1:5060",
    "mpath": '"/usr/lib/x86_64-linux-gnu/opensips/modules/"',
    "script": '"/usr/share/wic-tna/wic_tna_opensips.py"',
    "scscf": "sip:127.0.0.1:6060;transport=udp",
}


def opensips_binary():
    """$WIC_TNA_OPENSIPS, or None when it is not set."""
    value = os.environ.get(ENV_BINARY, "").strip()
    return Path(value) if value else None


def opensips_modules(binary):
    env = os.environ.get(ENV_MODULES, "").strip()
    if env:
        return Path(env)
    prefix = Path(binary).resolve().parent.parent
    for lib in ("lib64", "lib"):
        d = prefix / lib / "opensips" / "modules"
        if d.is_dir():
            return d
    return prefix / "lib64" / "opensips" / "modules"


def _bre_escape(text):
    """text as a literal sed basic regular expression."""
    return re.sub(r"([\\.*\[\]^$])", r"\\\1", text)


def site_sed(ep_port, scscf_port, modules_dir, script=HANDLER):
    """A sed script that rewrites the cfg's SITE lines for this run. Each
    default must be in the cfg exactly once (so the example keeps them)."""
    text = OPENSIPS_CFG.read_text()
    new = {
        "udp_socket": "udp:127.0.0.1:%d" % ep_port,
        "tcp_socket": "tcp:127.0.0.1:%d" % ep_port,
        "mpath": '"%s/"' % str(modules_dir).rstrip("/"),
        "script": '"%s"' % script,
        "scscf": "sip:127.0.0.1:%d;transport=udp" % scscf_port,
    }
    lines = []
    for key, old in SITE_DEFAULTS.items():
        n = text.count(old)
        if n != 1:
            raise RuntimeError("%s: %r found %d times, expected once"
                               % (OPENSIPS_CFG, old, n))
        for s in (old, new[key]):
            if "|" in s or "\n" in s:
                raise RuntimeError("cannot put %r in a sed script" % s)
        lines.append("s|%s|%s|" % (_bre_escape(old),
                                   new[key].replace("\\", "\\\\")
                                   .replace("&", "\\&")))
    return "\n".join(lines) + "\n"


class OpenSipsProcess:
    """One `opensips -F` process tree (its own session), its log (stderr)
    in workdir/NAME.log."""

    def __init__(self, name, binary, workdir, sed_script, env=None):
        self.name = name
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sed = self.workdir / "site.sed"
        self.sed.write_text(sed_script)
        self.pidfile = self.workdir / "opensips.pid"
        self.logfile = self.workdir / ("%s.log" % name)
        # the embedded Python is the system's (/usr/bin/python3's
        # libpython): keep pyenv's settings out, as for app_python3
        self.env = harness._kamailio_env(env)
        self.proc = None
        self._log = None

    def command(self):
        # -p: the command line is split at spaces, no quoting
        return [str(self.binary), "-F", "-f", str(OPENSIPS_CFG),
                "-p", "sed -f %s" % self.sed,
                "-P", str(self.pidfile), "-w", str(self.workdir),
                "-m", "64", "-M", "16"]

    def start(self, port, ready_timeout=20):
        """Start, then wait until a SIP request on `port` (UDP) is
        answered."""
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
            if self._answers(port):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("%s not ready in %ss:\n%s" % (
            self.name, ready_timeout, self.log_tail()))

    @staticmethod
    def _answers(port):
        from sipclient import UdpClient
        try:
            with UdpClient("127.0.0.1", port, timeout=0.5) as c:
                c.request("OPTIONS", "sip:127.0.0.1:%d" % port,
                          "sip:probe@wic.test", "sip:probe@wic.test")
            return True
        except (TimeoutError, OSError):
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        if self.proc is None:
            return
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


class OpenSipsDeployment(Deployment):
    """OpenSIPS eP-CSCF (python module + ctypes binding) + Kamailio S-CSCF
    (native module). Ports, configurations, clients, bar/unbar/reload/stats
    (CLI + state_file, as for the Kamailio Python glue) and the S-CSCF views
    are tests/e2e's Deployment's."""

    def __init__(self, workdir, binary=None, config_transform=None):
        # mode "python": the eP-CSCF's configuration has a state_file
        super().__init__(workdir, mode="python",
                         config_transform=config_transform)
        self.binary = Path(binary) if binary else opensips_binary()
        if self.binary is None:
            raise RuntimeError("set %s" % ENV_BINARY)

    def start(self):
        for path, what in (
                (MODULE, "Kamailio module for the S-CSCF "
                         "(bash kamailio-example/module/build.sh)"),
                (LIBRARY, "library (cargo build --release)"),
                (self.binary, "OpenSIPS (%s)" % ENV_BINARY)):
            if not Path(path).exists():
                raise RuntimeError("missing %s: %s" % (what, path))
        self.scscf = KamailioProcess(
            "scscf", EXAMPLE / "scscf.cfg", self.workdir / "scscf", {
                "SCSCF_PORT": self.scscf_port,
                "WIC_TNA_CONFIG": '"%s"' % self.scscf_config,
                "WIC_TNA_MODULE": '"%s"' % MODULE,
            })
        self.ep = OpenSipsProcess(
            "epcscf", self.binary, self.workdir / "epcscf",
            site_sed(self.ep_sip, self.scscf_port,
                     opensips_modules(self.binary)),
            env={"WIC_TNA_CONFIG": str(self.config),
                 "WIC_TNA_LIBRARY": str(LIBRARY),
                 "WIC_TNA_GLUE_DIR": str(GLUE_DIR)})
        try:
            self.scscf.start()
            self.ep.start(self.ep_sip)
        except Exception:
            self.stop()
            raise
        return self

    def ws(self, *a, **kw):
        raise NotImplementedError("the OpenSIPS example has no WebSocket")
