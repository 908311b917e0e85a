"""The pytest glue of both end-to-end suites, tests/e2e (Kamailio) and
tests/e2e_opensips (OpenSIPS), imported by their conftest.py: each phase's
report on the test item, a short temp workdir kept when the test failed, a
Deployment started for a test and stopped after it, its logs printed when
the test failed."""

import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def failed(request):
    """Whether this test's call phase failed."""
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.failed


def temp_workdir(request, prefix):
    """A fixture's body: a new temp directory, removed after the test
    unless the test failed. Short paths: a Kamailio binrpc unix socket path
    must stay under 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    yield d
    if failed(request):
        print("kept for inspection: %s" % d)
    else:
        shutil.rmtree(d, ignore_errors=True)


def running(request, dep):
    """A fixture's body: dep (a Deployment) started, then stopped after
    the test; its logs printed when the test failed."""
    dep.start()
    yield dep
    dep.stop()
    if failed(request):
        print(dep.logs())
