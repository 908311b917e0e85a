#!/usr/bin/env bash
# End-to-end tests: real Kamailio 5.6 (Debian's) as eP-CSCF and S-CSCF on
# loopback, the wic_tna native module and the Python glue, real SIP clients.
#
#   bash tests/e2e/run.sh              # all
#   bash tests/e2e/run.sh -k native    # extra arguments go to pytest
#
# Environment:
#   WIC_TNA_E2E_NO_BUILD=1   skip cargo build and the module build
#   WIC_TNA_E2E_VALGRIND=1   run the native eP-CSCF under valgrind (slow;
#                            a test fails on any memcheck error); e.g.
#                            with -k native
#   PYTHON                   the Python that runs pytest (default python3)
#
# Needs: kamailio kamailio-python3-modules kamailio-websocket-modules
# (scripts/install-deps.sh), gcc/make for the module, python3 with pytest,
# PyJWT[crypto] and websockets. Builds the library and the module first.
# Exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

fail() { printf 'tests/e2e/run.sh: %s\n' "$*" >&2; exit 1; }

for bin in /usr/sbin/kamailio /usr/sbin/kamcmd; do
    [ -x "$bin" ] || fail "missing $bin (install: bash scripts/install-deps.sh)"
done
[ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/app_python3.so ] \
    || [ -n "$(find /usr/lib -name app_python3.so -path '*kamailio*' 2>/dev/null | head -n1)" ] \
    || fail "missing kamailio-python3-modules"
[ -n "$(find /usr/lib -name websocket.so -path '*kamailio*' 2>/dev/null | head -n1)" ] \
    || fail "missing kamailio-websocket-modules"

if [ -z "${WIC_TNA_E2E_NO_BUILD:-}" ]; then
    cargo build --release --quiet
    bash kamailio-example/module/build.sh >/dev/null
fi
[ -f target/release/libwic_tna.so ] || fail "missing target/release/libwic_tna.so"
[ -f build/wic_tna/wic_tna.so ] || fail "missing build/wic_tna/wic_tna.so"

python=${PYTHON:-python3}
"$python" -c 'import pytest, jwt, websockets, cryptography' 2>/dev/null \
    || fail "$python lacks pytest, PyJWT, cryptography or websockets"

# stray Kamailio processes of an interrupted run are not ours to kill: the
# harness kills each of its own process groups on teardown
exec "$python" -m pytest -q -rs -p no:cacheprovider "$here" "$@"
