import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_fixtures import (pytest_runtest_makereport,  # noqa: E402,F401
                          running, temp_workdir)
from harness import Deployment  # noqa: E402

MODES = ["native", "python"]


@pytest.fixture
def workdir(request):
    yield from temp_workdir(request, "wic-e2e-")


@pytest.fixture(params=MODES)
def dep(request, workdir):
    """A running eP-CSCF (native module or Python glue) and S-CSCF."""
    d = Deployment(workdir, mode=request.param)
    yield from running(request, d)
    if d.ep.valgrind:
        errors = d.ep.valgrind_errors()
        assert not errors, "\n".join(
            Path(f).read_text(errors="replace")[-6000:] for f in errors)
