import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Deployment  # noqa: E402

MODES = ["native", "python"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.failed


@pytest.fixture
def workdir(request):
    # short paths: the binrpc unix socket path must stay under 108 bytes
    d = Path(tempfile.mkdtemp(prefix="wic-e2e-"))
    yield d
    if _failed(request):
        print("kept for inspection: %s" % d)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=MODES)
def dep(request, workdir):
    """A running eP-CSCF (native module or Python glue) and S-CSCF."""
    d = Deployment(workdir, mode=request.param)
    d.start()
    yield d
    d.stop()
    if _failed(request):
        print(d.logs())
    if d.ep.valgrind:
        errors = d.ep.valgrind_errors()
        assert not errors, "\n".join(
            Path(f).read_text(errors="replace")[-6000:] for f in errors)
