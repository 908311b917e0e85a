"""pytest set-up for the OpenSIPS end-to-end tests. Every test that needs
OpenSIPS is skipped, with a plain message, when WIC_TNA_OPENSIPS (the
opensips binary) is not set; those marked no_opensips (the handler driven
without OpenSIPS) still run."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for d in (HERE, HERE.parent / "e2e"):
    if str(d) not in sys.path:
        sys.path.insert(0, str(d))

# tests/e2e's pytest glue, as its conftest.py has it
from e2e_fixtures import (pytest_runtest_makereport,  # noqa: E402,F401
                          running, temp_workdir)
from opensips_harness import (ENV_BINARY, OpenSipsDeployment,  # noqa: E402
                              opensips_binary)

SKIP_MESSAGE = ("skipped: set %s=/path/to/sbin/opensips (OpenSIPS 3.x; "
                "tests/e2e_opensips/run.sh builds one from ../shared/opensips) "
                "to run the OpenSIPS end-to-end tests" % ENV_BINARY)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "no_opensips: runs without OpenSIPS (never skipped)")


def pytest_collection_modifyitems(config, items):
    if opensips_binary() is None:
        skip = pytest.mark.skip(reason=SKIP_MESSAGE)
        for item in items:
            if item.get_closest_marker("no_opensips") is None:
                item.add_marker(skip)


@pytest.fixture
def workdir(request):
    yield from temp_workdir(request, "wic-os-")


@pytest.fixture(params=["native", "python"])
def variant(request):
    """Each OpenSIPS test that takes dep (or variant) runs twice: with the
    native module (opensips.cfg) and with the python module
    (opensips-python.cfg)."""
    return request.param


@pytest.fixture
def dep(request, workdir, variant):
    """A running OpenSIPS eP-CSCF (of this variant) and Kamailio S-CSCF."""
    yield from running(request, OpenSipsDeployment(workdir, variant=variant))


@pytest.fixture
def native(request, workdir):
    """A running OpenSIPS eP-CSCF with the native module only."""
    yield from running(request, OpenSipsDeployment(workdir, variant="native"))
