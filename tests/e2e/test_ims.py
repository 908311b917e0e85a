"""End to end with the IMS core (issue 16): the eP-CSCF, native module and
Python glue, in front of Debian's Kamailio IMS S-CSCF and the HSS
stand-in. A WIC registers, re-registers and de-registers over a stream
connection; each step is checked at the HSS (SAR type, no MAR) and in the
S-CSCF's user location. The policing and routing cases are in
test_pcscf.py and test_ims_core.py."""

import time

import pytest

from harness import ISSUER_A, ORIGIN_A, Deployment
from ims import (SAT_RE_REGISTRATION, SAT_REGISTRATION,
                 SAT_USER_DEREGISTRATION, ims_core_or_skip)
from tokens import identity, mint

CAROL_IMPI = "u-7731@socialnet.ims.example.net"


@pytest.fixture(params=["native", "python"])
def ims(request, workdir):
    ims_core_or_skip()
    d = Deployment(workdir, mode=request.param, core="ims")
    d.start()
    yield d
    d.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(d.logs())


def asked(dep, mark, impi):
    """(command, Server-Assignment-Type) the HSS got for impi since mark."""
    time.sleep(0.3)
    return [(q["cmd"], q.get("server_assignment_type"))
            for q in dep.ims.hss_requests()[mark:] if q.get("user_name") == impi]


@pytest.mark.parametrize("user,impi", [("alice", None), ("carol", CAROL_IMPI)])
def test_register_refresh_deregister(ims, user, impi):
    """carol's IMPI is not user@domain of her IMPU: the S-CSCF must take
    it from the TNA header."""
    impi = impi or identity("a", user)[0]
    impu = identity("a", user)[1]
    token = "Bearer " + mint(user=user, impi=impi)
    with ims.ws(ORIGIN_A) as c:
        mark = len(ims.ims.hss_requests())
        r = c.register(impu, [token], expires=600)
        assert r.status == 200, (r.raw, ims.logs())
        assert asked(ims, mark, impi) == [("SAR", SAT_REGISTRATION)]
        assert ims.ims.wait_registered(impu, True), ims.ims.showimpu(impu)

        mark = len(ims.ims.hss_requests())
        r = c.register(impu, [token], expires=600)
        assert r.status == 200, r.raw
        assert asked(ims, mark, impi) == [("SAR", SAT_RE_REGISTRATION)]

        mark = len(ims.ims.hss_requests())
        r = c.register(impu, [token], expires=0)
        assert r.status == 200, r.raw
        assert asked(ims, mark, impi) == [("SAR", SAT_USER_DEREGISTRATION)]
        assert ims.ims.wait_registered(impu, False) is False


def test_issuer_barred_at_the_scscf(ims):
    """The eP-CSCF accepts the token; the S-CSCF's own barring refuses it,
    and nothing is asked of the HSS."""
    impi, impu = identity("a", "dave")
    assert ims.ims.bar(ISSUER_A).returncode == 0
    try:
        mark = len(ims.ims.hss_requests())
        with ims.ws(ORIGIN_A) as c:
            r = c.register(impu, ["Bearer " + mint(user="dave")], expires=600)
        assert r.status == 403, r.raw
        assert "issuer_barred" in r.reason, r.raw
        assert asked(ims, mark, impi) == []
        assert ims.ims.registered(impu) is False
    finally:
        ims.ims.unbar(ISSUER_A)
    with ims.ws(ORIGIN_A) as c:
        r = c.register(impu, ["Bearer " + mint(user="dave")], expires=600)
        assert r.status == 200, r.raw
        c.register(impu, ["Bearer " + mint(user="dave")], expires=0)
