"""End-to-end harness for the OpenSIPS eP-CSCF: a real OpenSIPS 3.x
(opensips-example/opensips.cfg with the python module and
opensips-example/wic_tna_opensips.py) in front of the Kamailio S-CSCF of
kamailio-example/scscf.cfg (native module), on loopback ports.

It is tests/e2e's harness (harness.py: ProxyProcess, the process wrapper
OpenSipsProcess is; Deployment, of which OpenSipsDeployment is a variant
with another eP-CSCF: ports, wic-tna configurations, the Kamailio S-CSCF,
clients, S-CSCF views; sipclient.py; tokens.py), imported; only what is
OpenSIPS's own is here.

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
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
E2E = HERE.parent / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from harness import (EXAMPLE, LIBRARY, MODULE, REPO,  # noqa: E402
                     Deployment, ProxyProcess)

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


class OpenSipsProcess(ProxyProcess):
    """One `opensips -F` process tree (tests/e2e's ProxyProcess: its own
    session, its log (stderr) in workdir/NAME.log), ready when each of
    `ports` answers SIP over UDP. No management interface: the example
    loads no MI transport."""

    def __init__(self, name, binary, workdir, sed_script, env=None,
                 ports=()):
        # the embedded Python is the system's (/usr/bin/python3's
        # libpython): proxy_env keeps pyenv's settings out
        super().__init__(name, OPENSIPS_CFG, workdir, env, ports)
        self.binary = Path(binary)
        self.sed = self.workdir / "site.sed"
        self.sed.write_text(sed_script)
        self.pidfile = self.workdir / "opensips.pid"

    def command(self):
        # -p: the command line is split at spaces, no quoting
        return [str(self.binary), "-F", "-f", str(self.cfg),
                "-p", "sed -f %s" % self.sed,
                "-P", str(self.pidfile), "-w", str(self.workdir),
                "-m", "64", "-M", "16"]


class OpenSipsDeployment(Deployment):
    """OpenSIPS eP-CSCF (python module + ctypes binding) + Kamailio S-CSCF
    (native module): tests/e2e's Deployment with another eP-CSCF. Ports,
    configurations, the S-CSCF, clients, bar/unbar/reload/stats (CLI +
    state_file, as for the Kamailio Python glue) and the S-CSCF views are
    the Deployment's."""

    def __init__(self, workdir, binary=None, config_transform=None):
        # mode "python": the eP-CSCF's configuration has a state_file;
        # the S-CSCF gets KamailioProcess's default memory (-m 32 -M 8)
        super().__init__(workdir, mode="python", shm_mb=32, pkg_mb=8,
                         config_transform=config_transform)
        self.binary = Path(binary) if binary else opensips_binary()
        if self.binary is None:
            raise RuntimeError("set %s" % ENV_BINARY)

    def required(self):
        return [(MODULE, "Kamailio module for the S-CSCF "
                         "(bash kamailio-example/module/build.sh)"),
                (LIBRARY, "library (cargo build --release)"),
                (self.binary, "OpenSIPS (%s)" % ENV_BINARY)]

    def make_ep(self):
        return OpenSipsProcess(
            self.name, self.binary, self.workdir / self.name,
            site_sed(self.ep_sip, self.scscf_port,
                     opensips_modules(self.binary)),
            env={"WIC_TNA_CONFIG": str(self.config),
                 "WIC_TNA_LIBRARY": str(LIBRARY),
                 "WIC_TNA_GLUE_DIR": str(GLUE_DIR)},
            ports=[self.ep_sip])

    def ws(self, *a, **kw):
        raise NotImplementedError("the OpenSIPS example has no WebSocket")

    def wss(self, *a, **kw):
        raise NotImplementedError("the OpenSIPS example has no WebSocket")
