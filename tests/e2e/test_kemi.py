"""The native module's KEMI exports, called from a Python KEMI handler."""

import re

import pytest

from harness import (KamailioProcess, MODULE, LIBRARY, free_port,
                     write_config)
from sipclient import UdpClient
from tokens import identity, mint
from pathlib import Path

HERE = Path(__file__).resolve().parent


@pytest.fixture
def kemi(workdir):
    for path in (MODULE, LIBRARY):
        if not path.exists():
            pytest.fail("missing %s" % path)
    port = free_port()
    config = write_config(workdir / "wic-tna.toml")
    k = KamailioProcess("kemi", HERE / "kemi" / "kemi.cfg", workdir / "kemi", {
        "SIP_PORT": port,
        "WIC_TNA_CONFIG": '"%s"' % config,
        "WIC_TNA_MODULE": '"%s"' % MODULE,
        "KEMI_HANDLER": '"%s"' % (HERE / "kemi" / "kemi_handler.py"),
    })
    k.start()
    k.port = port
    yield k
    k.stop()


def test_kemi_verify_and_origin(kemi):
    impi, impu = identity()
    with UdpClient("127.0.0.1", kemi.port) as c:
        ok = c.register(impu, ["Bearer " + mint(lifetime=300)])
        expired = c.register(impu, ["Bearer " + mint(iat_offset=-900,
                                                     exp_offset=-600)])
    assert ok.status == 200, (ok.raw, kemi.log_tail())
    x = ok.header("X-Kemi")
    assert x.startswith("rc=1 origin=1 impi=%s expires=" % impi), x
    assert 250 <= int(x.rsplit("=", 1)[1]) <= 300, x

    assert expired.status == 401, expired.raw
    assert expired.reason == "KEMI expired", expired.reason
    assert expired.header("X-Kemi").startswith("rc=-1 "), expired.raw
    assert 'error="invalid_token"' in expired.header("WWW-Authenticate")


def test_kemi_names_are_the_cfg_names(kemi):
    """KSR.wic_tna.<name> is the cfg function's name, as in Kamailio's own
    modules (KSR.sl.sl_send_reply); the three-parameter form of
    wic_tna_verify_register (KEMI has no overloading) is
    wic_tna_verify_register_origin. The list is Kamailio's own
    (app_python.api_list)."""
    r = kemi.rpc("app_python.api_list")
    assert r.returncode == 0, (r.stdout, r.stderr)
    names = set(re.findall(r"module: wic_tna\s+name: (\S+)", r.stdout))
    assert names == {
        "wic_tna_verify", "wic_tna_verify_expires", "wic_tna_verify_register",
        "wic_tna_verify_register_origin", "wic_tna_cap_expires",
        "wic_tna_origin", "wic_tna_scscf_check", "wic_tna_metrics_reply"}, r.stdout


def test_kemi_origin_resets_the_result_as_the_cfg_function(kemi):
    """wic_tna_origin resets $wic_tna(...) at entry on both paths: after a
    token check, an origin check through KEMI leaves no trace of the token
    check's result (status, reason), exactly as the cfg function does."""
    with UdpClient("127.0.0.1", kemi.port) as c:
        ok = c.register(identity()[1], ["Bearer " + mint(lifetime=300)])
        expired = c.register(identity()[1], ["Bearer " + mint(
            iat_offset=-900, exp_offset=-600)])
    for r, before in ((ok, "200/ok"), (expired, "401/expired")):
        x = dict(kv.split("=", 1) for kv in r.header("X-Kemi-Reset").split())
        assert x["before"] == before, (x, kemi.log_tail())
        assert x["again"] == before, x
        # the reset result (an internal error until a check fills it in),
        # the same on both paths, never the token check's
        assert x["cfg"] == "500/internal_error", x
        assert x["kemi"] == x["cfg"], x
