#!/usr/bin/env bash
# The wic_tna module on each Kamailio release operators run, each built
# with its own build system, and the e2e core cases on each
# (test_kamailio_version.py, through the tests/e2e harness, with the shipped
# kamailio-example/epcscf.cfg and scscf.cfg):
#
#   5.6.3  Debian bookworm's packages (/usr/sbin/kamailio), module by
#          build.sh's default (apt-get source, make)
#   5.8.8  built here from ../shared/kamailio/kamailio-5.8.8.tar.xz with make
#   6.0.7  built here from ../shared/kamailio/kamailio-6.0.7.tar.xz with CMake
#
# then build.sh's refusals and the module README (test_build_sh.py).
#
#   bash tests/kamailio_versions/run.sh            # all
#   bash tests/kamailio_versions/run.sh -k bar     # extra arguments go to pytest
#
# Without ../shared/kamailio/ (WIC_TNA_KAMAILIO_TARBALLS=DIR: another
# directory with the same tarballs) 5.8.8 and 6.0.7 are skipped, and say
# so; 5.6.3 still runs. With it, both tarballs must be there.
#
# The cores (and the modules the example cfgs load) are built once per
# tarball and cached under build/kamailio-versions/<version>-<sha256>/
# (build_core.sh); the wic_tna module is built again on every run.
#
# Environment:
#   WIC_TNA_E2E_NO_BUILD=1   skip cargo build and the 5.6.3 module build
#   PYTHON                   the Python that runs pytest (default python3)
# Needs what tests/e2e/run.sh needs, and gcc make bison flex pkg-config
# libssl-dev libunistring-dev libreadline-dev cmake, and xsltproc
# docbook-xsl docbook-xml lynx for the README (scripts/install-deps.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

fail() { printf 'tests/kamailio_versions/run.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*"; }

python=${PYTHON:-python3}
"$python" -c 'import pytest, jwt, websockets, cryptography' 2>/dev/null \
    || fail "$python lacks pytest, PyJWT, cryptography or websockets"
arch=$(uname -m)
t0=$(date +%s)

run_version() {
    # $1 label, $2 kamailio, $3 kamcmd, $4 modules dir ("" = the cfg's
    # default), $5 wic_tna.so, $6 expected version string; rest: pytest args
    local label=$1 bin=$2 kamcmd=$3 moddir=$4 module=$5 expect=$6
    shift 6
    say "Kamailio $label: e2e core cases ($expect)"
    WIC_TNA_KAMAILIO="$bin" WIC_TNA_KAMCMD="$kamcmd" \
        WIC_TNA_KAMAILIO_MODULES_DIR="$moddir" WIC_TNA_MODULE="$module" \
        WIC_TNA_EXPECT_KAMAILIO="$expect" \
        nice "$python" -m pytest -q -rs -p no:cacheprovider \
        "$here/test_kamailio_version.py" "$@"
}

# -- 5.6.3: Debian's -----------------------------------------------------------
[ -x /usr/sbin/kamailio ] && [ -x /usr/sbin/kamcmd ] \
    || fail "missing /usr/sbin/kamailio or kamcmd (bash scripts/install-deps.sh)"
if [ -z "${WIC_TNA_E2E_NO_BUILD:-}" ]; then
    cargo build --release --quiet
    bash kamailio-example/module/build.sh >/dev/null
fi
[ -f build/wic_tna/wic_tna.so ] || fail "missing build/wic_tna/wic_tna.so"
deb_ver=$(dpkg-query -W -f='${Version}' kamailio | sed 's/^[0-9]*://; s/-[^-]*$//')
run_version "$deb_ver (Debian, make)" /usr/sbin/kamailio /usr/sbin/kamcmd "" \
    "$repo/build/wic_tna/wic_tna.so" "kamailio $deb_ver ($arch/linux)" "$@"

# -- 5.8.8 (make) and 6.0.7 (CMake) from ../shared/kamailio/ ---------------------
tarballs=${WIC_TNA_KAMAILIO_TARBALLS:-$repo/../shared/kamailio}
if [ ! -d "$tarballs" ]; then
    say "SKIPPED: Kamailio 5.8.8 (make) and 6.0.7 (CMake): no $tarballs (their source tarballs); only 5.6.3 (Debian) was tested"
    exit 0
fi

envs=()
for spec in 5.8.8:make 6.0.7:cmake; do
    ver=${spec%%:*}
    system=${spec#*:}
    tarball="$tarballs/kamailio-$ver.tar.xz"
    [ -f "$tarball" ] || fail "$tarballs is there but has no kamailio-$ver.tar.xz"
    say "Kamailio $ver ($system): core and the example cfgs' modules (built once, cached under build/kamailio-versions/)"
    b0=$(date +%s)
    cache=$(bash "$here/build_core.sh" "$tarball" "$system" | tail -n1)
    [ -f "$cache/env" ] || fail "build_core.sh gave no $cache/env"
    echo "    core ready in $(( $(date +%s) - b0 )) s: $cache"
    # shellcheck disable=SC1091
    ( . "$cache/env"
      say "Kamailio $ver ($system): the wic_tna module (build.sh --kamailio-src)"
      m0=$(date +%s)
      nice bash kamailio-example/module/build.sh --kamailio-src "$KAM_TREE" \
          --kamailio-bin "$KAM_BIN" --out "$cache/wic_tna" >"$cache/module.log" 2>&1 \
          || { tail -n 30 "$cache/module.log" >&2; fail "build.sh for $ver failed (log: $cache/module.log)"; }
      echo "    module built in $(( $(date +%s) - m0 )) s"
      os=linux
      [ "$system" = cmake ] && os=Linux
      run_version "$ver ($system)" "$KAM_BIN" "$KAM_KAMCMD" "$KAM_MODULES" \
          "$cache/wic_tna/wic_tna.so" "kamailio $ver ($arch/$os)" "$@"
    )
    envs+=("$cache/env")
done

say "build.sh: refusals (version, build system) and the module README"
WIC_TNA_KV_ENV_MAKE="${envs[0]}" WIC_TNA_KV_ENV_CMAKE="${envs[1]}" \
    nice "$python" -m pytest -q -rs -p no:cacheprovider "$here/test_build_sh.py"
say "Kamailio versions: done in $(( $(date +%s) - t0 )) s"
