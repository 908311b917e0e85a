#!/usr/bin/env bash
# Build (once, then cached) a Kamailio core and the modules the example
# eP-CSCF and S-CSCF load, from an unmodified release tarball, with the
# release's own build system; install it under the cache directory.
#
#   bash tests/kamailio_versions/build_core.sh TARBALL make|cmake
#
# Prints the cache directory on the last line, which holds:
#   src/kamailio-X.Y.Z/   the unpacked tree (the module is built in it)
#   inst/                 make install / cmake --install prefix:
#                         sbin/kamailio, sbin/kamcmd, lib*/kamailio/modules/
#   env                   KAM_VERSION, KAM_SYSTEM, KAM_TREE, KAM_BIN,
#                         KAM_KAMCMD, KAM_MODULES (shell assignments)
#
# Cache: build/kamailio-versions/<version>-<sha256 of the tarball, 16>/,
# reused when its stamp (tarball sha256, build system, module list, this
# recipe's version) is the same; otherwise removed and built again. Only
# ever under build/ (gitignored): no Kamailio source enters the repository.
#
# make (5.x): `make cfg group_include=<none> include_modules="..."` (only
# those modules), `make all`, `make install` (default flags: -O3).
# cmake (6.0): `cmake -DMODULE_GROUP_NAME= -DINCLUDE_MODULES="..."` with
# CMAKE_BUILD_TYPE=Debug (no -O: a cold build in about a quarter of the
# Release time; the build type changes neither the version string nor the
# compile flags a module is checked against), `cmake --build`,
# `cmake --install`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

log() { printf 'build_core.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ $# -eq 2 ] || die "usage: build_core.sh TARBALL make|cmake"
tarball=$1
system=$2
case "$system" in make|cmake) ;; *) die "build system '$system': make or cmake" ;; esac
[ -f "$tarball" ] || die "no tarball $tarball"

# what epcscf.cfg and scscf.cfg load (their loadmodule lines, less the
# Python glue's), checked against the cfgs below
MODULES="kex corex tm sl rr path pv maxfwd textops siputils xlog sanity htable
ctl jsonrpcs tls xhttp websocket nathelper tcpops uac usrloc registrar"
MODULES=$(echo $MODULES)
RECIPE=1

for cfg in epcscf.cfg scscf.cfg; do
    for m in $(sed -n 's/^loadmodule "\([a-z_0-9]*\)\.so"$/\1/p' "$repo/kamailio-example/$cfg"); do
        case " $MODULES " in
            *" $m "*) ;;
            *) case "$m" in app_python3|rtimer) ;;  # the Python glue only
                   *) die "kamailio-example/$cfg loads $m, which is not in MODULES of $0" ;;
               esac ;;
        esac
    done
done

name=$(basename "$tarball")
version=$(printf '%s\n' "$name" | sed -n 's/^kamailio-\([0-9][0-9.]*[0-9]\)\.tar\.\(xz\|gz\|bz2\)$/\1/p')
[ -n "$version" ] || die "$name: expected kamailio-X.Y.Z.tar.xz"
sha=$(sha256sum "$tarball" | cut -d' ' -f1)
cache="$repo/build/kamailio-versions/$version-${sha:0:16}"
stamp="sha256=$sha system=$system recipe=$RECIPE modules=$MODULES"

mkdir -p "$repo/build/kamailio-versions"
# one builder at a time per cache directory (concurrent test runs)
exec 9>"$cache.lock"
flock 9

if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$stamp" ] && [ -f "$cache/env" ]; then
    log "cached: $cache ($version, $system)"
    printf '%s\n' "$cache"
    exit 0
fi

log "building Kamailio $version with $system into $cache (cold: a few minutes)"
rm -rf "$cache"
mkdir -p "$cache/src"
tar -xf "$tarball" -C "$cache/src"
tree="$cache/src/kamailio-$version"
[ -d "$tree/src/core" ] || die "$name did not unpack to kamailio-$version/"
inst="$cache/inst"
blog="$cache/build.log"
jobs=$(nproc 2>/dev/null || echo 2)

start=$(date +%s)
if [ "$system" = make ]; then
    [ -f "$tree/src/Makefile" ] || die "$tree: no make build"
    # group_include names no group: exactly include_modules is built
    (cd "$tree" && nice make cfg group_include=wic_tna_none include_modules="$MODULES" \
        prefix="$inst/" && nice make -j"$jobs" all && nice make install) >"$blog" 2>&1 \
        || { tail -n 40 "$blog" >&2; die "make of Kamailio $version failed (log: $blog)"; }
else
    command -v cmake >/dev/null || die "cmake is not installed (bash scripts/install-deps.sh)"
    [ -f "$tree/CMakeLists.txt" ] || die "$tree: no CMake build"
    (cd "$tree" && nice cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug \
        -DMODULE_GROUP_NAME= -DINCLUDE_MODULES="$MODULES" \
        -DCMAKE_INSTALL_PREFIX="$inst" \
        && nice cmake --build build -j"$jobs" && cmake --install build) >"$blog" 2>&1 \
        || { tail -n 40 "$blog" >&2; die "CMake build of Kamailio $version failed (log: $blog)"; }
fi
log "built in $(( $(date +%s) - start )) s"

bin="$inst/sbin/kamailio"
kamcmd="$inst/sbin/kamcmd"
[ -x "$bin" ] || die "no $bin after the build (log: $blog)"
[ -x "$kamcmd" ] || die "no $kamcmd after the build (log: $blog)"
moddir=$(dirname "$(find "$inst" -name tm.so -path '*/modules/*' | head -n1)")
[ -n "$moddir" ] && [ -f "$moddir/tm.so" ] || die "no modules directory under $inst"
for m in $MODULES; do
    [ -f "$moddir/$m.so" ] || die "module $m was not built (log: $blog)"
done
"$bin" -v | grep -q "^version: kamailio $version " || die "$bin -v does not say $version"

{
    printf 'KAM_VERSION=%q\n' "$version"
    printf 'KAM_SYSTEM=%q\n' "$system"
    printf 'KAM_TREE=%q\n' "$tree"
    printf 'KAM_BIN=%q\n' "$bin"
    printf 'KAM_KAMCMD=%q\n' "$kamcmd"
    printf 'KAM_MODULES=%q\n' "$moddir"
} >"$cache/env"
printf '%s\n' "$stamp" >"$cache/stamp"
printf '%s\n' "$cache"
