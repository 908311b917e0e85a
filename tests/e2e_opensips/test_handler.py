"""opensips-example/wic_tna_opensips.py outside OpenSIPS: the handler driven
with a stand-in for the python module's message object, against the real
library. Needs no OpenSIPS (only target/release/libwic_tna.so), so these
run even without WIC_TNA_OPENSIPS."""

import importlib.util

import pytest

from harness import LIBRARY, write_config
from opensips_harness import HANDLER
from tokens import identity, mint

pytestmark = pytest.mark.no_opensips


def _load_handler_module():
    spec = importlib.util.spec_from_file_location("wic_tna_opensips",
                                                  str(HANDLER))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class FakeMsg:
    """What the handler uses of OpenSIPS's msg object: getHeader (first
    header of that name as written, case-insensitive), get_pseudoVar for
    $hdrcnt/$hdr/$tu/$var, set_pseudoVar (strings)."""

    def __init__(self, headers, pvs=None):
        self.headers = list(headers)  # [(name, value)]
        self.pvs = dict(pvs or {})
        self.set = {}

    def getHeader(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def _auth(self):
        return [v for n, v in self.headers if n.lower() == "authorization"]

    def get_pseudoVar(self, spec):
        if spec == "$hdrcnt(Authorization)":
            return str(len(self._auth()))
        if spec.startswith("$(hdr(Authorization)["):
            i = int(spec[len("$(hdr(Authorization)["):-2])
            return self._auth()[i]
        return self.pvs.get(spec, "<null>")

    def set_pseudoVar(self, spec, value):
        assert isinstance(value, str)
        self.set[spec] = value


@pytest.fixture(scope="module")
def mod():
    return _load_handler_module()


@pytest.fixture
def handler(mod, workdir):
    cfg = write_config(workdir / "wic-tna.toml", state_file=workdir / "state")
    return mod.WicTnaHandler(str(cfg), str(LIBRARY))


def _register(auth_values, to=None, req_exp="-1", compact_to=False):
    impu = identity()[1]
    to_value = "<%s>" % (to or impu)
    headers = [("t" if compact_to else "To", to_value)]
    headers += [("Authorization", v) for v in auth_values]
    return FakeMsg(headers, {"$var(req_exp)": req_exp,
                             "$tu": to or impu})


def test_accepted_sets_every_variable(handler):
    msg = _register(["Bearer " + mint(lifetime=300)], req_exp="3600")
    assert handler.wic_tna_verify(msg) == 1
    s = msg.set
    assert s["$var(wic_status)"] == "200" and s["$var(wic_reason)"] == "ok"
    assert s["$var(wic_tna)"].startswith('Digest username="%s"' % identity()[0])
    assert s["$var(wic_challenge)"] == ""
    assert s["$var(wic_impus)"] == identity()[1]
    assert 250 <= int(s["$var(wic_expires)"]) <= 300


def test_compact_to_header(handler):
    msg = _register(["Bearer " + mint()], compact_to=True)
    assert handler.wic_tna_verify(msg) == 1


def test_no_token(handler):
    msg = _register([])
    assert handler.wic_tna_verify(msg) == -1
    assert msg.set["$var(wic_status)"] == "401"
    assert msg.set["$var(wic_reason)"] == "missing_token"
    assert msg.set["$var(wic_challenge)"].startswith("Bearer realm=")


def test_two_authorization_headers(handler):
    msg = _register(["Bearer " + mint(), "Bearer " + mint()])
    assert handler.wic_tna_verify(msg) == -1
    assert msg.set["$var(wic_status)"] == "400"
    assert 'error="invalid_request"' in msg.set["$var(wic_challenge)"]
    assert msg.set["$var(wic_tna)"] == ""


def test_to_not_in_token(handler):
    msg = _register(["Bearer " + mint()],
                    to="sip:bob@socialnet.ims.example.net")
    assert handler.wic_tna_verify(msg) == -1
    assert msg.set["$var(wic_status)"] == "403"
    assert msg.set["$var(wic_reason)"] == "to_impu_not_in_token"


def test_missing_to_is_not_skipped(handler):
    """No To at all must not skip the To-in-token check."""
    msg = FakeMsg([("Authorization", "Bearer " + mint())])
    assert handler.wic_tna_verify(msg) == -1
    assert msg.set["$var(wic_status)"] == "400"
    assert msg.set["$var(wic_reason)"] == "invalid_to_uri"


def test_internal_error_is_500(handler):
    class Broken:
        def verify(self, *a):
            raise RuntimeError("boom")

    handler.ctx = Broken()
    msg = _register(["Bearer " + mint()])
    assert handler.wic_tna_verify(msg) == -2
    assert msg.set["$var(wic_status)"] == "500"
    assert msg.set["$var(wic_reason)"] == "internal_error"
    assert msg.set["$var(wic_tna)"] == ""


def test_broken_configuration_refused_at_mod_init(mod, workdir):
    cfg = write_config(workdir / "bad.toml")
    cfg.write_text(cfg.read_text().replace('audience = "ims.example.net"',
                                           "audience = 42"))
    with pytest.raises(mod.WicTnaError):
        mod.WicTnaHandler(str(cfg), str(LIBRARY))


def test_replay_binding_from_the_source(mod, workdir):
    """With [replay] enabled, the handler passes transport:source:port as
    the binding: the same source refreshes, another source is a replay,
    and a request whose source is unknown fails closed."""
    cfg = write_config(workdir / "replay.toml",
                       transform=lambda t: t + "\n[replay]\nenabled = true\n")
    h = mod.WicTnaHandler(str(cfg), str(LIBRARY))
    impi, impu = identity("a", "alice")
    token = "Bearer " + mint(extra={"jti": "opensips-replay-1"})

    def run(src):
        pvs = {"$tu": impu, "$var(req_exp)": "-1"}
        if src:
            pvs.update({"$socket_in(proto)": "UDP", "$si": src[0], "$sp": src[1]})
        m = FakeMsg([("Authorization", token), ("To", "<%s>" % impu)], pvs)
        rc = h.wic_tna_verify(m)
        return rc, m.set.get("$var(wic_reason)")

    assert run(("192.0.2.1", "5060")) == (1, "ok")
    assert run(("192.0.2.1", "5060")) == (1, "ok")
    assert run(("192.0.2.9", "5060")) == (-1, "token_replayed")
    rc, reason = run(None)
    assert reason == "internal_error" and rc != 1


# -- clear errors for a broken installation ----------------------------------

def _run_handler(script_dir, env):
    import os
    import subprocess
    import sys
    code = ("import importlib.util, sys\n"
            "spec = importlib.util.spec_from_file_location('h', %r)\n"
            "m = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(m)\n"
            "m.mod_init()\n" % str(script_dir / "wic_tna_opensips.py"))
    full = dict(os.environ)
    full.pop("WIC_TNA_GLUE_DIR", None)
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full,
                          capture_output=True, text=True, timeout=30)


def test_handler_without_its_glue_says_so(workdir):
    """The handler copied alone: the error names wic_tna_glue.py, the
    directories looked in and WIC_TNA_GLUE_DIR."""
    import shutil
    shutil.copy(str(HANDLER), str(workdir / "wic_tna_opensips.py"))
    r = _run_handler(workdir, {"WIC_TNA_GLUE_DIR": str(workdir / "none")})
    assert r.returncode != 0
    assert "wic_tna_glue.py" in r.stderr and "WIC_TNA_GLUE_DIR" in r.stderr, \
        r.stderr
    assert str(workdir / "none") in r.stderr, r.stderr


def test_wrong_library_path_says_so(workdir):
    cfg = write_config(workdir / "wic-tna.toml")
    r = _run_handler(HANDLER.parent, {
        "WIC_TNA_CONFIG": str(cfg),
        "WIC_TNA_LIBRARY": str(workdir / "nope" / "libwic_tna.so")})
    assert r.returncode != 0
    assert "cannot load libwic_tna" in r.stderr, r.stderr
    assert "WIC_TNA_LIBRARY=%s" % (workdir / "nope" / "libwic_tna.so") \
        in r.stderr, r.stderr
