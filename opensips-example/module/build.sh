#!/usr/bin/env bash
# Build OpenSIPS 3.6.8 from its source tarball (cached under build/) and the
# native OpenSIPS module wic_tna.so against that tree, the way OpenSIPS
# builds its own modules (modules/wic_tna/ with the tree's Makefile.modules).
#
#   bash opensips-example/module/build.sh                 # OpenSIPS (once) + module
#   bash .../build.sh --opensips-only                     # only the cached OpenSIPS
#   bash .../build.sh --opensips-src FILE|DIR --out DIR
#
# --opensips-src (WIC_TNA_OPENSIPS_SRC): the OpenSIPS source: a release
#     tarball (opensips-X.Y.Z.tar.xz/.tar.gz), or a directory holding one
#     (default: ../shared/opensips/ beside the repository), or an unpacked
#     OpenSIPS tree (then it is built in place, not cached).
# --out (WIC_TNA_MODULE_OUT): where wic_tna.so goes (default
#     build/opensips-wic_tna/).
#   WIC_TNA_INCDIR / WIC_TNA_LIBDIR   another wic_tna.h / libwic_tna.so
#   WIC_TNA_RPATH                     run-time path of the library baked into
#                                     the module (default WIC_TNA_LIBDIR;
#                                     empty: none, the library is in the
#                                     system path)
#   WIC_TNA_OPENSIPS_MODULES_EXTRA    more OpenSIPS modules to build
#
# The cache: build/opensips-<version>/<first 16 hex of the tarball's
# sha256>/ with src/ (the unpacked, built tree) and prefix/ (make install:
# prefix/sbin/opensips, prefix/lib64/opensips/modules/). Reused when its
# .done stamp is there; another tarball gets another directory. The OpenSIPS
# build takes a few minutes on 2 cores (log: <cache>/build.log).
#
# Needs: gcc make bison flex pkg-config libncurses-dev python3-dev
# libssl-dev (scripts/install-deps.sh).
#
# Last line of the output: the module's path (or, with --opensips-only,
# the opensips binary's).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build="$repo/build"
out="${WIC_TNA_MODULE_OUT:-$build/opensips-wic_tna}"
src="${WIC_TNA_OPENSIPS_SRC:-}"
only=""

log() { printf 'opensips build.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --opensips-src|--out)
            [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"
            case "$1" in --opensips-src) src=$2 ;; --out) out=$2 ;; esac
            shift 2 ;;
        --opensips-src=*) src=${1#*=}; shift ;;
        --out=*) out=${1#*=}; shift ;;
        --opensips-only) only=1; shift ;;
        -h|--help) sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (bash $0 --help)" ;;
    esac
done

# The modules opensips-example/opensips.cfg (native) and opensips-python.cfg
# load, plus mi_fifo for opensips-cli (proto_udp and proto_tcp are in the
# core).
MODULES="proto_tls proto_ws proto_wss tls_mgm tls_openssl
 sl signaling tm rr path maxfwd sipmsgops textops python mi_fifo
 cachedb_local
 ${WIC_TNA_OPENSIPS_MODULES_EXTRA:-}"
MODULES=$(printf '%s' "$MODULES" | tr -s ' \n' '  ' | sed 's/^ //;s/ $//')

if [ -z "$src" ]; then
    src="$(cd "$repo/.." && pwd)/shared/opensips"
    [ -d "$src" ] || die "no OpenSIPS source: $src does not exist (give --opensips-src FILE|DIR or WIC_TNA_OPENSIPS_SRC)"
fi
[ -e "$src" ] || die "--opensips-src $src: no such file or directory"

tree=""
prefix=""
if [ -d "$src" ] && [ -f "$src/Makefile.modules" ] && [ -f "$src/sr_module.h" ]; then
    # an unpacked tree: built in place
    tree=$(cd "$src" && pwd)
    prefix="$tree/.wic_tna-prefix"
    cache=""
else
    tarball=""
    if [ -d "$src" ]; then
        for f in "$src"/opensips-*.tar.xz "$src"/opensips-*.tar.gz; do
            [ -f "$f" ] || continue
            [ -z "$tarball" ] || die "$src holds more than one OpenSIPS tarball: give one with --opensips-src FILE"
            tarball=$f
        done
        [ -n "$tarball" ] || die "$src holds no opensips-X.Y.Z.tar.xz (nor .tar.gz) and is not an OpenSIPS tree"
    else
        tarball=$src
    fi
    base=$(basename "$tarball")
    version=$(printf '%s' "$base" | sed -n 's/^opensips-\([0-9][0-9.]*[0-9]\)\.tar\.\(xz\|gz\)$/\1/p')
    [ -n "$version" ] || die "$tarball: not named opensips-X.Y.Z.tar.xz or .tar.gz"
    sha=$(sha256sum "$tarball" | cut -c1-16)
    cache="$build/opensips-$version/$sha"
    tree="$cache/src/opensips-$version"
    prefix="$cache/prefix"
fi

opensips_bin="$prefix/sbin/opensips"
moddir=""

find_moddir() {
    local d
    for d in "$prefix/lib64/opensips/modules" "$prefix/lib/opensips/modules"; do
        [ -d "$d" ] && { moddir=$d; return 0; }
    done
    return 1
}

need_tools() {
    local missing=() t
    for t in gcc make bison flex pkg-config python3; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (bash scripts/install-deps.sh)"
    pkg-config --exists openssl 2>/dev/null || die "missing libssl-dev (tls_openssl; bash scripts/install-deps.sh)"
    python3-config --includes >/dev/null 2>&1 || die "missing python3-dev (the python module; bash scripts/install-deps.sh)"
    [ -f /usr/include/ncurses.h ] || die "missing libncurses-dev (bash scripts/install-deps.sh)"
}

build_opensips() {
    local stamp="${cache:-$tree}/.wic_tna-done"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$MODULES" ] && [ -x "$opensips_bin" ] && find_moddir; then
        log "using cached OpenSIPS $opensips_bin"
        return 0
    fi
    need_tools
    local blog="${cache:-$tree}/build.log"
    if [ -n "$cache" ]; then
        rm -rf "$cache"
        mkdir -p "$cache/src"
        log "unpacking $tarball into $cache/src"
        tar -xf "$tarball" -C "$cache/src"
        [ -f "$tree/Makefile.modules" ] || die "$tarball did not unpack to opensips-$version/"
    fi
    log "building OpenSIPS in $tree (modules: $MODULES); log: $blog"
    local jobs
    jobs=$(nproc 2>/dev/null || echo 2)
    if ! (
        cd "$tree"
        export PYTHON=${PYTHON_FOR_OPENSIPS:-$(command -v python3)}
        make -j"$jobs" PREFIX="$prefix" app &&
        make -j"$jobs" FASTER=1 PREFIX="$prefix" module="$MODULES" modules &&
        make PREFIX="$prefix" module="$MODULES" install
    ) >"$blog" 2>&1; then
        tail -n 30 "$blog" >&2
        die "the OpenSIPS build failed (log: $blog)"
    fi
    [ -x "$opensips_bin" ] || die "the OpenSIPS build made no $opensips_bin (log: $blog)"
    find_moddir || die "the OpenSIPS build made no module directory under $prefix (log: $blog)"
    local m
    for m in $MODULES; do
        [ -f "$moddir/$m.so" ] || die "the OpenSIPS build made no $moddir/$m.so (log: $blog)"
    done
    printf '%s\n' "$MODULES" > "$stamp"
    log "built $opensips_bin"
}

incdir="${WIC_TNA_INCDIR:-$repo/include}"
libdir="${WIC_TNA_LIBDIR:-$repo/target/release}"

build_module() {
    if [ ! -f "$libdir/libwic_tna.so" ]; then
        [ -z "${WIC_TNA_LIBDIR:-}" ] || die "no libwic_tna.so in $libdir"
        log "building the library (cargo build --release)"
        (cd "$repo" && cargo build --release)
    fi
    [ -f "$incdir/wic_tna.h" ] || die "missing $incdir/wic_tna.h"
    local mdir="$tree/modules/wic_tna"
    mkdir -p "$mdir"
    # a fresh copy of the sources on every build
    rm -f "$mdir"/*.c "$mdir"/*.h "$mdir"/*.o "$mdir"/*.d "$mdir/wic_tna.so"
    cp "$here"/*.c "$here"/*.h "$here/Makefile" "$mdir/"
    log "make modules module=wic_tna in $tree"
    # from the top of the tree, as OpenSIPS builds its own modules
    # (Makefile.defs gives the core's compile flags and version)
    make -C "$tree" FASTER=1 PREFIX="$prefix" module=wic_tna modules \
        WIC_TNA_REPO="$repo" WIC_TNA_INCDIR="$incdir" \
        WIC_TNA_LIBDIR="$libdir" WIC_TNA_RPATH="${WIC_TNA_RPATH-$libdir}" >&2
    [ -f "$mdir/wic_tna.so" ] || die "the build made no $mdir/wic_tna.so"
    mkdir -p "$out"
    # by rename, never in place: a running OpenSIPS keeps its mapped inode
    cp "$mdir/wic_tna.so" "$out/.wic_tna.so.new.$$"
    mv -f "$out/.wic_tna.so.new.$$" "$out/wic_tna.so"
    log "built $out/wic_tna.so (for $opensips_bin)"
    printf '%s\n' "$out/wic_tna.so"
}

build_opensips
if [ -n "$only" ]; then
    printf '%s\n' "$opensips_bin"
    exit 0
fi
build_module
