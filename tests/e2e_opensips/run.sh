#!/usr/bin/env bash
# End-to-end tests of the OpenSIPS eP-CSCF (opensips-example/): a real
# OpenSIPS 3.x in front of the Kamailio S-CSCF of kamailio-example/scscf.cfg
# (native module), on loopback, with real SIP clients, for both variants:
# the native OpenSIPS module (opensips.cfg) and the python module
# (opensips-python.cfg).
#
#   bash tests/e2e_opensips/run.sh              # OpenSIPS from ../shared/opensips
#   WIC_TNA_OPENSIPS=/path/to/sbin/opensips bash tests/e2e_opensips/run.sh
#   ... run.sh -k refresher     # extra arguments go to pytest
#
# Which OpenSIPS:
#   - WIC_TNA_OPENSIPS set: that binary (OpenSIPS 3.x with the modules of
#     opensips-example/module/build.sh's list); the native module is built
#     against WIC_TNA_OPENSIPS_SRC (its source tree or tarball), else
#     ../shared/opensips/;
#   - else ../shared/opensips/opensips-*.tar.xz (or WIC_TNA_OPENSIPS_SRC):
#     OpenSIPS is built from it into build/opensips-<version>/ (once: the
#     first run takes a few minutes, later ones reuse it) with the native
#     module (opensips-example/module/build.sh);
#   - neither: this script says plainly that OpenSIPS was skipped and
#     exits 0 (nothing tested).
#
# Environment:
#   WIC_TNA_OPENSIPS          an opensips binary (default: the one built here)
#   WIC_TNA_OPENSIPS_SRC      OpenSIPS source: tarball, directory holding
#                             one, or an unpacked tree (default ../shared/opensips)
#   WIC_TNA_OPENSIPS_MODULES  its module directory (default: <prefix>/lib64/
#                             opensips/modules, or lib/, beside <prefix>/sbin)
#   WIC_TNA_E2E_NO_BUILD=1    skip cargo build and the module builds
#   PYTHON                    the Python that runs pytest (default python3)
#
# Needs, as tests/e2e/run.sh: kamailio (the S-CSCF; scripts/install-deps.sh),
# gcc/make for its module, python3 with pytest, PyJWT[crypto], websockets;
# to build OpenSIPS: bison flex pkg-config libncurses-dev python3-dev
# libssl-dev.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

fail() { printf 'tests/e2e_opensips/run.sh: %s\n' "$*" >&2; exit 1; }

src=${WIC_TNA_OPENSIPS_SRC:-}
if [ -z "$src" ] && [ -d "$repo/../shared/opensips" ]; then
    src=$(cd "$repo/../shared/opensips" && pwd)
fi

if [ -z "${WIC_TNA_OPENSIPS:-}" ] && [ -z "$src" ]; then
    echo "tests/e2e_opensips/run.sh: SKIPPED: OpenSIPS end-to-end tests not run: no ../shared/opensips/ (OpenSIPS source) and no WIC_TNA_OPENSIPS=/path/to/sbin/opensips"
    exit 0
fi

if [ -z "${WIC_TNA_E2E_NO_BUILD:-}" ]; then
    cargo build --release --quiet
    bash kamailio-example/module/build.sh >/dev/null
fi

if [ -z "${WIC_TNA_OPENSIPS:-}" ]; then
    # OpenSIPS from source (cached under build/), then the module against it
    start=$(date +%s)
    WIC_TNA_OPENSIPS=$(nice -n 10 bash opensips-example/module/build.sh \
        --opensips-src "$src" --opensips-only | tail -n 1) \
        || fail "building OpenSIPS from $src failed (see above)"
    echo "tests/e2e_opensips/run.sh: OpenSIPS $WIC_TNA_OPENSIPS ($(( $(date +%s) - start )) s)"
fi
[ -x "$WIC_TNA_OPENSIPS" ] || fail "WIC_TNA_OPENSIPS=$WIC_TNA_OPENSIPS is not an executable"
"$WIC_TNA_OPENSIPS" -V 2>/dev/null | grep -q '^version: opensips 3\.' \
    || fail "WIC_TNA_OPENSIPS=$WIC_TNA_OPENSIPS is not OpenSIPS 3.x"
export WIC_TNA_OPENSIPS

if [ -z "${WIC_TNA_E2E_NO_BUILD:-}" ]; then
    [ -n "$src" ] || fail "WIC_TNA_OPENSIPS is set but no OpenSIPS source to build the native module against: set WIC_TNA_OPENSIPS_SRC (the source tree or tarball of that OpenSIPS)"
    mlog=$(mktemp)
    if ! bash opensips-example/module/build.sh --opensips-src "$src" >/dev/null 2>"$mlog"; then
        cat "$mlog" >&2; rm -f "$mlog"
        fail "building the OpenSIPS module failed (see above)"
    fi
    rm -f "$mlog"
fi

modules=${WIC_TNA_OPENSIPS_MODULES:-}
if [ -z "$modules" ]; then
    prefix=$(cd "$(dirname "$(readlink -f "$WIC_TNA_OPENSIPS")")/.." && pwd)
    for d in "$prefix/lib64/opensips/modules" "$prefix/lib/opensips/modules"; do
        if [ -d "$d" ]; then modules=$d; break; fi
    done
fi
[ -n "$modules" ] && [ -d "$modules" ] \
    || fail "no OpenSIPS module directory found: set WIC_TNA_OPENSIPS_MODULES"
for m in sl signaling tm rr path maxfwd sipmsgops textops python proto_ws \
         proto_wss tls_mgm tls_openssl mi_fifo cachedb_local; do
    [ -f "$modules/$m.so" ] || fail "missing OpenSIPS module $modules/$m.so"
done
export WIC_TNA_OPENSIPS_MODULES=$modules

for bin in /usr/sbin/kamailio /usr/sbin/kamcmd; do
    [ -x "$bin" ] || fail "missing $bin for the S-CSCF (install: bash scripts/install-deps.sh)"
done

[ -f target/release/libwic_tna.so ] || fail "missing target/release/libwic_tna.so"
[ -f build/wic_tna/wic_tna.so ] || fail "missing build/wic_tna/wic_tna.so"
[ -f build/opensips-wic_tna/wic_tna.so ] || fail "missing build/opensips-wic_tna/wic_tna.so (bash opensips-example/module/build.sh)"

python=${PYTHON:-python3}
"$python" -c 'import pytest, jwt, websockets, cryptography' 2>/dev/null \
    || fail "$python lacks pytest, PyJWT, cryptography or websockets"

# the harness kills each of its own process groups on teardown
exec "$python" -m pytest -q -p no:cacheprovider "$here" "$@"
