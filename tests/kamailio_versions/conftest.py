"""The e2e core cases on one Kamailio build, through the harness of
tests/e2e (harness.py: the Kamailio binary, kamcmd and module directory
come from WIC_TNA_KAMAILIO, WIC_TNA_KAMCMD, WIC_TNA_KAMAILIO_MODULES_DIR;
the module from WIC_TNA_MODULE). tests/kamailio_versions/run.sh sets
them for each version."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_fixtures import (pytest_runtest_makereport,  # noqa: E402,F401
                          running, temp_workdir)
from harness import Deployment  # noqa: E402


@pytest.fixture
def workdir(request):
    yield from temp_workdir(request, "wic-kv-")


@pytest.fixture
def dep(request, workdir):
    """A running eP-CSCF (epcscf.cfg, native module) and S-CSCF
    (scscf.cfg), both on the Kamailio under test."""
    d = Deployment(workdir, mode="native")
    yield from running(request, d)
