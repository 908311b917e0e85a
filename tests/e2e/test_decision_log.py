"""The decision log line (configuration decision_log, decision_log_impi)
in the eP-CSCF's Kamailio log, native module and Python glue: one line per
REGISTER checked, with the issuer, the reason and the source (the
module's replay_binding, $pr:$si:$sp in epcscf.cfg; the glue's
$var(wic_binding)); the IMPI only when the operator turns it on."""

import re

import pytest

from harness import ISSUER_A, ISSUER_B, Deployment
from tokens import identity, mint


def at_top(lines):
    def t(text):
        at = text.index("\n[")
        return text[:at] + "\n" + lines + "\n" + text[at:]
    return t


@pytest.fixture(params=["native", "python"])
def mode(request):
    return request.param


def run(workdir, mode, request, lines):
    from e2e_fixtures import running
    d = Deployment(workdir, mode=mode, config_transform=at_top(lines))
    return running(request, d)


def decisions(dep):
    return re.findall(r"wic-tna decision: [^\n]*", dep.ep.log())


def drive(dep):
    impi, impu = identity("a", "alice")
    with dep.udp() as c:
        ok = c.register(impu, ["Bearer " + mint("a")])
        port = c.sock.getsockname()[1]
        bad = c.register(impu, ["Bearer " + mint("b", impi=impi,
                                                      impus=[impu])])
    assert ok.status == 200, ok.raw
    assert bad.status == 403, bad.raw
    return port


def test_decision_lines_without_impi(request, workdir, mode):
    gen = run(workdir, mode, request, 'decision_log = "info"')
    dep = next(gen)
    try:
        port = drive(dep)
        src = "udp:127.0.0.1:%d" % port
        assert dep.ep.wait_log("wic-tna decision: reason=impi_outside_pool")
        lines = decisions(dep)
        assert lines[-2:] == [
            "wic-tna decision: reason=ok status=200 issuer=%s source=%s"
            % (ISSUER_A, src),
            "wic-tna decision: reason=impi_outside_pool status=403 "
            "issuer=%s source=%s" % (ISSUER_B, src),
        ], lines
        assert "alice@" not in "\n".join(lines)
    finally:
        next(gen, None)


def test_decision_lines_with_impi_when_turned_on(request, workdir, mode):
    gen = run(workdir, mode, request,
              'decision_log = "info"\ndecision_log_impi = true')
    dep = next(gen)
    try:
        drive(dep)
        assert dep.ep.wait_log("wic-tna decision: reason=impi_outside_pool")
        lines = decisions(dep)
        impi, _ = identity("a", "alice")
        assert re.search(r"reason=ok status=200 issuer=%s source=\S+ impi=%s$"
                         % (re.escape(ISSUER_A), re.escape(impi)),
                         lines[-2]), lines
        assert lines[-1].endswith(" impi=-"), lines
    finally:
        next(gen, None)


def test_no_decision_lines_by_default(dep):
    drive(dep)
    assert decisions(dep) == []
