#!/usr/bin/env bash
# Load and faults on real Kamailio (the eP-CSCF with the native wic_tna
# module and the S-CSCF, on 127.0.0.1): sipp REGISTERs with valid and
# hostile tokens at a fixed rate, the configuration broken and reloaded, a
# key rotated, the eP-CSCF killed and restarted. See tests/load/loadtest.py
# and SECURITY.md ("Load held and faults survived").
#
#   bash tests/load/run.sh            # full: 200 REGISTER/s, 60 s steady + faults + restart
#   bash tests/load/run.sh --quick    # 100 REGISTER/s, short phases, every fault (~2 min)
#   bash tests/load/run.sh --rate 300 --steady 120 --results /tmp/r.json
#
# Environment:
#   WIC_TNA_E2E_NO_BUILD=1   skip cargo build and the module build
#   PYTHON                   the Python that runs the driver (default python3)
#
# Needs: sipp (Debian's sip-tester), kamailio, kamcmd, python3 with PyJWT,
# cryptography and pytest. Exits non-zero on any failed check.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

fail() { printf 'tests/load/run.sh: %s\n' "$*" >&2; exit 1; }

for bin in /usr/sbin/kamailio /usr/sbin/kamcmd; do
    [ -x "$bin" ] || fail "missing $bin (install: bash scripts/install-deps.sh)"
done
command -v sipp >/dev/null || fail "missing sipp (apt-get install sip-tester)"

if [ -z "${WIC_TNA_E2E_NO_BUILD:-}" ]; then
    cargo build --release --quiet
    bash kamailio-example/module/build.sh >/dev/null
fi
[ -f target/release/libwic_tna.so ] || fail "missing target/release/libwic_tna.so"
[ -f build/wic_tna/wic_tna.so ] || fail "missing build/wic_tna/wic_tna.so"

python=${PYTHON:-python3}
"$python" -c 'import pytest, jwt, cryptography' 2>/dev/null \
    || fail "$python lacks pytest, PyJWT or cryptography"

# the verdict logic first: it must catch a false accept, a refused valid
# token, a timeout outside the restart gap
"$python" -m pytest -q -p no:cacheprovider "$here/test_analysis.py"

# regressions of problems the load test found (fixed: they must stay fixed)
"$python" "$here/known_issues.py" idle-worker stale-result

exec "$python" "$here/loadtest.py" "$@"
