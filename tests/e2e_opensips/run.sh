#!/usr/bin/env bash
# End-to-end tests of the OpenSIPS eP-CSCF (opensips-example/): a real
# OpenSIPS 3.x with the python module and wic_tna_opensips.py in front of the
# Kamailio S-CSCF of kamailio-example/scscf.cfg (native module), on loopback,
# with real SIP clients.
#
#   WIC_TNA_OPENSIPS=/path/to/sbin/opensips bash tests/e2e_opensips/run.sh
#   ... run.sh -k rejected      # extra arguments go to pytest
#
# OpenSIPS is not in Debian bookworm and this project ships no build of it:
# point WIC_TNA_OPENSIPS at an opensips binary that has the modules sl
# signaling tm rr maxfwd sipmsgops textops python. Without it this script
# says so and exits 0 (nothing tested).
#
# Environment:
#   WIC_TNA_OPENSIPS          the opensips binary (required to run anything)
#   WIC_TNA_OPENSIPS_MODULES  its module directory (default: <prefix>/lib64/
#                             opensips/modules, or lib/, beside <prefix>/sbin)
#   WIC_TNA_E2E_NO_BUILD=1    skip cargo build and the Kamailio module build
#   PYTHON                    the Python that runs pytest (default python3)
#
# Needs, as tests/e2e/run.sh: kamailio (the S-CSCF; scripts/install-deps.sh),
# gcc/make for its module, python3 with pytest, PyJWT[crypto], websockets.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

fail() { printf 'tests/e2e_opensips/run.sh: %s\n' "$*" >&2; exit 1; }

if [ -z "${WIC_TNA_OPENSIPS:-}" ]; then
    echo "tests/e2e_opensips/run.sh: skipped: set WIC_TNA_OPENSIPS=/path/to/sbin/opensips (OpenSIPS 3.x with the python module) to run the OpenSIPS end-to-end tests"
    exit 0
fi
[ -x "$WIC_TNA_OPENSIPS" ] || fail "WIC_TNA_OPENSIPS=$WIC_TNA_OPENSIPS is not an executable"
"$WIC_TNA_OPENSIPS" -V 2>/dev/null | grep -q '^version: opensips 3\.' \
    || fail "WIC_TNA_OPENSIPS=$WIC_TNA_OPENSIPS is not OpenSIPS 3.x"

modules=${WIC_TNA_OPENSIPS_MODULES:-}
if [ -z "$modules" ]; then
    prefix=$(cd "$(dirname "$(readlink -f "$WIC_TNA_OPENSIPS")")/.." && pwd)
    for d in "$prefix/lib64/opensips/modules" "$prefix/lib/opensips/modules"; do
        if [ -d "$d" ]; then modules=$d; break; fi
    done
fi
[ -n "$modules" ] && [ -d "$modules" ] \
    || fail "no OpenSIPS module directory found: set WIC_TNA_OPENSIPS_MODULES"
for m in sl signaling tm rr maxfwd sipmsgops textops python; do
    [ -f "$modules/$m.so" ] || fail "missing OpenSIPS module $modules/$m.so"
done
export WIC_TNA_OPENSIPS_MODULES=$modules

for bin in /usr/sbin/kamailio /usr/sbin/kamcmd; do
    [ -x "$bin" ] || fail "missing $bin for the S-CSCF (install: bash scripts/install-deps.sh)"
done

if [ -z "${WIC_TNA_E2E_NO_BUILD:-}" ]; then
    cargo build --release --quiet
    bash kamailio-example/module/build.sh >/dev/null
fi
[ -f target/release/libwic_tna.so ] || fail "missing target/release/libwic_tna.so"
[ -f build/wic_tna/wic_tna.so ] || fail "missing build/wic_tna/wic_tna.so"

python=${PYTHON:-python3}
"$python" -c 'import pytest, jwt, websockets, cryptography' 2>/dev/null \
    || fail "$python lacks pytest, PyJWT, cryptography or websockets"

# the harness kills each of its own process groups on teardown
exec "$python" -m pytest -q -p no:cacheprovider "$here" "$@"
