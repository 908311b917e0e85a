"""The native module's KEMI exports, called from a Python KEMI handler."""

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
