"""Harness for the IMS core of the tests: the IMS S-CSCF
(kamailio-example/ims/scscf.cfg, Kamailio's IMS modules + wic_tna) and its
HSS (tests/ims/hss.py, a Cx test fixture), on loopback ports, each in
workdir, with their logs captured.

    core = ImsCore(workdir)          # trusted=("127.0.0.1",)
    core.start()
    ...REGISTER to 127.0.0.1:core.scscf_port...
    core.hss_requests("SAR")         # what the HSS was asked
    core.registered("sip:alice@socialnet.ims.example.net")
    core.stop()

ImsCore.check() (and start()) raise ImsUnavailable, with what is missing,
when Kamailio's IMS modules, python-diameter, the XSD or the wic_tna module
are not there; ims_core_or_skip() turns that into a pytest skip.
"""

import json
import os
import re
import string
import subprocess
import sys
import time
from pathlib import Path

from harness import (EXAMPLE, KAMAILIO, LIBRARY, MODULE, REPO,
                     KamailioProcess, free_port, scscf_lines, scscf_msgs,
                     write_config)

IMS_EXAMPLE = EXAMPLE / "ims"
# WIC_TNA_IMS_SCSCF_CFG: another S-CSCF configuration (e.g. a copy with a
# rule taken out, to see a test fail)
SCSCF_CFG = Path(os.environ.get("WIC_TNA_IMS_SCSCF_CFG",
                                IMS_EXAMPLE / "scscf.cfg"))
DIAMETER_TEMPLATE = IMS_EXAMPLE / "scscf-diameter.xml"
HSS = REPO / "tests" / "ims" / "hss.py"
SUBSCRIBERS = REPO / "tests" / "ims" / "subscribers.json"
MODULES_DIR = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
# 3GPP's Cx data schema, from Kamailio's source (unpacked by
# kamailio-example/module/build.sh)
XSD = Path(os.environ.get(
    "WIC_TNA_CX_XSD",
    REPO / "build" / "kamailio-src" / "kamailio-5.6.3" / "misc" / "examples"
    / "ims" / "scscf" / "CxDataType_Rel7.xsd"))

HOME_REALM = "ims.example.net"
SCSCF_DIAMETER_HOST = "scscf.ims.example.net"
HSS_HOST = "hss.ims.example.net"
IMS_MODULES = ("cdp.so", "cdp_avp.so", "ims_usrloc_scscf.so",
               "ims_registrar_scscf.so", "ims_auth.so", "ims_dialog.so",
               "presence.so")

# Server-Assignment-Type (TS 29.229 6.3.15) as Kamailio sends them
SAT_REGISTRATION = 1
SAT_RE_REGISTRATION = 2
SAT_USER_DEREGISTRATION = 5


class ImsUnavailable(RuntimeError):
    """Something the IMS core needs is not installed or built."""


def _missing():
    out = []
    for m in IMS_MODULES:
        if not (MODULES_DIR / m).exists():
            out.append("Kamailio module %s (apt-get install "
                       "kamailio-ims-modules kamailio-presence-modules)" % m)
    try:
        import diameter  # noqa: F401
    except ImportError:
        out.append("python-diameter (pip install python-diameter==0.9.0)")
    if not XSD.exists():
        out.append("%s (bash kamailio-example/module/build.sh unpacks "
                   "Kamailio's source)" % XSD)
    if not MODULE.exists():
        out.append("%s (bash kamailio-example/module/build.sh)" % MODULE)
    if not LIBRARY.exists():
        out.append("%s (cargo build --release)" % LIBRARY)
    if not Path(KAMAILIO).exists():
        out.append("kamailio")
    return out


def ims_core_or_skip():
    """pytest.skip with what is missing, unless the IMS core can run."""
    import pytest
    missing = _missing()
    if missing:
        pytest.skip("IMS core unavailable: missing " + "; ".join(missing))


class HssProcess:
    """tests/ims/hss.py on a loopback port, its requests in a JSON log."""

    def __init__(self, workdir, port, subscribers=None, realm=HOME_REALM,
                 origin_host=HSS_HOST):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.subscribers = Path(subscribers or SUBSCRIBERS)
        self.realm = realm
        self.origin_host = origin_host
        self.requests_log = self.workdir / "hss-requests.jsonl"
        self.logfile = self.workdir / "hss.log"
        self.proc = None

    def start(self, timeout=10):
        self._log = open(self.logfile, "ab")
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, str(HSS), "--listen", "127.0.0.1:%d" % self.port,
             "--realm", self.realm, "--origin-host", self.origin_host,
             "--subscribers", str(self.subscribers),
             "--log", str(self.requests_log)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("HSS exited with %s:\n%s" % (
                    self.proc.returncode, self.log()))
            if "HSS ready on" in self.log():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("HSS not ready in %ss:\n%s" % (timeout, self.log()))

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        self.proc = None

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def requests(self, cmd=None):
        try:
            lines = self.requests_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = [json.loads(line) for line in lines if line.strip()]
        if cmd:
            out = [r for r in out if r.get("cmd") == cmd]
        return out


class ImsCore:
    """The IMS S-CSCF and its HSS.

    trusted: the eP-CSCF addresses whose auth-done the S-CSCF takes (its
    TRUSTED_EPCSCF define and the wic-tna configuration's [scscf]
    trusted_nodes); subscribers: the HSS's JSON file (default
    tests/ims/subscribers.json); allowed_entities: SCSCF_ALLOWED_ENTITIES
    ("": the configuration's list); config_transform(text) -> text edits
    the S-CSCF's wic-tna configuration; shm_mb, pkg_mb: Kamailio's -m, -M."""

    def __init__(self, workdir, trusted=("127.0.0.1",), subscribers=None,
                 allowed_entities="", config_transform=None, shm_mb=64,
                 pkg_mb=8, scscf_port=None, name="scscf"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.trusted = tuple(trusted)
        self.scscf_port = scscf_port or free_port()
        self.hss_port = free_port()
        self.hss = HssProcess(self.workdir / "hss", self.hss_port, subscribers)
        self.config = write_config(self.workdir / "scscf-wic-tna.toml",
                                   trusted_nodes=self.trusted,
                                   transform=config_transform)
        self.diameter_config = self.workdir / "scscf-diameter.xml"
        self.diameter_config.write_text(
            string.Template(DIAMETER_TEMPLATE.read_text()).substitute(
                SCSCF_DIAMETER_HOST=SCSCF_DIAMETER_HOST,
                DIAMETER_REALM=HOME_REALM,
                HSS_ADDR="127.0.0.1",
                HSS_PORT=self.hss_port,
                HSS_REALM=HOME_REALM))
        self.scscf = KamailioProcess(
            name, SCSCF_CFG, self.workdir / name, {
                "SCSCF_PORT": self.scscf_port,
                "SCSCF_NAME": '"sip:127.0.0.1:%d"' % self.scscf_port,
                "HSS_PEER": '"127.0.0.1"',
                "CDP_CONFIG": '"%s"' % self.diameter_config,
                "USER_DATA_XSD": '"%s"' % XSD,
                "TRUSTED_EPCSCF": '"%s"' % ",".join(self.trusted),
                "SCSCF_ALLOWED_ENTITIES": '"%s"' % allowed_entities,
                "WIC_TNA_CONFIG": '"%s"' % self.config,
                "WIC_TNA_MODULE": '"%s"' % MODULE,
            }, shm_mb=shm_mb, pkg_mb=pkg_mb)

    @staticmethod
    def check():
        missing = _missing()
        if missing:
            raise ImsUnavailable("IMS core unavailable: missing "
                                 + "; ".join(missing))

    def start(self, peer_timeout=15):
        self.check()
        try:
            self.hss.start()
            self.scscf.start()
            self.wait_peer_open(peer_timeout)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        self.scscf.stop()
        self.hss.stop()

    def wait_peer_open(self, timeout=15):
        """Until cdp's connection to the HSS is open (CER/CEA done)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            r = self.scscf.rpc("cdp.list_peers", timeout=5)
            text = r.stdout
            if re.search(r"State:\s*[IR]_Open", text):
                return
            time.sleep(0.1)
        raise RuntimeError("cdp peer to the HSS not open in %ss:\n%s\n%s"
                           % (timeout, text, self.logs()))

    # -- the HSS --
    def hss_requests(self, cmd=None):
        """The requests the HSS received (parsed JSON lines), of cmd."""
        return self.hss.requests(cmd)

    # -- registrations (ims_usrloc_scscf over RPC) --
    def showimpu(self, impu):
        r = self.scscf.rpc("ulscscf.showimpu", impu)
        assert r.returncode == 0, (r.stdout, r.stderr)
        return r.stdout

    def registered(self, impu):
        """True when the IMPU is registered with at least one contact."""
        text = self.showimpu(impu)
        if not re.search(r"state:\s*registered\b", text):
            return False
        m = re.search(r"contacts:\s*\{(.*)\}", text, re.S)
        return bool(m and "expires:" in m.group(1))

    def wait_registered(self, impu, expected=True, timeout=10):
        """Poll until registered(impu) == expected (a de-registration
        takes a few seconds to show); the last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.registered(impu)
            if value == expected or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    # -- what the S-CSCF saw (as Deployment's) --
    def scscf_rx(self, call_id):
        return self.scscf_lines("SCSCF-RX", call_id)

    def scscf_msgs(self, call_id):
        return scscf_msgs(self.scscf, call_id)

    def scscf_lines(self, marker, call_id):
        return scscf_lines(self.scscf, marker, call_id)

    def wait_line(self, marker, call_id, timeout=5):
        """The first marker line of call_id, waiting for it (the async
        SAR/MAR reply routes log after the SIP reply is sent)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.scscf_lines(marker, call_id)
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def bar(self, iss):
        return self.scscf.rpc("wic_tna.bar", iss)

    def unbar(self, iss):
        return self.scscf.rpc("wic_tna.unbar", iss)

    def logs(self):
        return "==== %s (%s) ====\n%s\n==== hss (%s) ====\n%s\n%s" % (
            self.scscf.name, self.scscf.logfile, self.scscf.log_tail(80),
            self.hss.logfile, self.hss.log()[-4000:],
            "\n".join(json.dumps(r) for r in self.hss_requests()[-30:]))
