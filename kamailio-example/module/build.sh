#!/usr/bin/env bash
# Build the native Kamailio module wic_tna.so against the same Kamailio
# source Debian ships (bookworm: 5.6.3), so that it loads into Debian's
# /usr/sbin/kamailio.
#
#   bash kamailio-example/module/build.sh            # build (fetches the source once)
#   WIC_TNA_SKIP_APT=1 bash .../build.sh             # never touch apt (source must be there)
#   WIC_TNA_INCDIR=... WIC_TNA_LIBDIR=...            # another wic_tna.h / libwic_tna.so
#   WIC_TNA_RPATH=                                   # no rpath (packages: the library is in the system path)
#   WIC_TNA_MODULE_OUT=dir                           # where wic_tna.so goes (default build/wic_tna)
#
# Steps:
#   1. a deb-src entry for bookworm in its own file
#      (/etc/apt/sources.list.d/wic-tna-src.sources; written once, idempotent)
#   2. apt-get update + `apt-get source kamailio` into build/kamailio-src/
#      (skipped when the tree is already there)
#   3. copy this directory into <src>/src/modules/wic_tna/ and build it with
#      the tree's Makefile.modules, linking target/release/libwic_tna.so
#
# Output: build/wic_tna/wic_tna.so (and the path is printed on the last line).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build="$repo/build"
srcroot="$build/kamailio-src"
out="${WIC_TNA_MODULE_OUT:-$build/wic_tna}"
sources_file=/etc/apt/sources.list.d/wic-tna-src.sources

log() { printf 'build.sh: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

kam_version() {
    # "version: kamailio 5.6.3 (x86_64/linux)" -> 5.6.3
    /usr/sbin/kamailio -v 2>/dev/null | sed -n 's/^version: kamailio \([0-9.]*\).*/\1/p' | head -n1
}

find_tree() {
    # the directory apt-get source unpacked (kamailio-5.6.3/)
    local d
    for d in "$srcroot"/kamailio-*/; do
        [ -f "$d/src/Makefile.modules" ] && { printf '%s\n' "${d%/}"; return 0; }
    done
    return 1
}

need_tools() {
    local missing=()
    for t in gcc make; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    if [ ${#missing[@]} -gt 0 ]; then
        [ -n "${WIC_TNA_SKIP_APT:-}" ] && { log "missing tools: ${missing[*]}"; exit 1; }
        log "installing ${missing[*]}"
        as_root apt-get install -y --no-install-recommends gcc make libc6-dev
    fi
    if ! command -v dpkg-source >/dev/null 2>&1; then
        [ -n "${WIC_TNA_SKIP_APT:-}" ] && { log "missing dpkg-dev (dpkg-source)"; exit 1; }
        as_root apt-get install -y --no-install-recommends dpkg-dev
    fi
}

add_deb_src() {
    if [ -f "$sources_file" ]; then
        return 0
    fi
    log "adding $sources_file"
    as_root tee "$sources_file" >/dev/null <<'EOF'
# Added by wic-tna kamailio-example/module/build.sh: the Kamailio source that
# matches Debian's binary packages, to build the wic_tna module against it.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    as_root apt-get update
}

fetch_source() {
    if tree=$(find_tree); then
        log "using existing source tree $tree"
        return 0
    fi
    [ -n "${WIC_TNA_SKIP_APT:-}" ] && { log "no source tree under $srcroot and WIC_TNA_SKIP_APT is set"; exit 1; }
    need_tools
    add_deb_src
    mkdir -p "$srcroot"
    local ver
    ver=$(kam_version)
    log "apt-get source kamailio${ver:+ (installed: $ver)}"
    (
        cd "$srcroot"
        # the source version that matches the installed binary, else the newest
        pkgver=$(dpkg-query -W -f='${Version}' kamailio 2>/dev/null || true)
        if [ -n "$pkgver" ] && apt-get source --only-source "kamailio=$pkgver"; then
            :
        else
            apt-get source --only-source kamailio
        fi
    )
    tree=$(find_tree) || { log "apt-get source did not unpack a kamailio tree"; exit 1; }
}

build_module() {
    local incdir="${WIC_TNA_INCDIR:-$repo/include}"
    local libdir="${WIC_TNA_LIBDIR:-$repo/target/release}"
    if [ ! -f "$libdir/libwic_tna.so" ]; then
        if [ -n "${WIC_TNA_LIBDIR:-}" ]; then
            log "no libwic_tna.so in $libdir"; exit 1
        fi
        log "building the library (cargo build --release)"
        (cd "$repo" && cargo build --release)
    fi
    [ -f "$incdir/wic_tna.h" ] || { log "missing $incdir/wic_tna.h"; exit 1; }

    local mdir="$tree/src/modules/wic_tna"
    mkdir -p "$mdir"
    # a fresh copy of the sources on every build
    rm -f "$mdir"/*.c "$mdir"/*.h "$mdir"/*.o "$mdir"/*.d "$mdir/wic_tna.so"
    cp "$here"/*.c "$here"/*.h "$here/Makefile" "$mdir/"

    log "make in $mdir"
    # Makefile.defs detects the compiler, the OS and the core's flags itself
    make -C "$mdir" WIC_TNA_REPO="$repo" WIC_TNA_INCDIR="$incdir" \
        WIC_TNA_LIBDIR="$libdir" WIC_TNA_RPATH="${WIC_TNA_RPATH-$libdir}" \
        ${WIC_TNA_MAKE_ARGS:-} >&2

    mkdir -p "$out"
    # by rename, never in place: a Kamailio that has the old file mapped
    # keeps its inode (cp over it would change the code under it: SIGBUS)
    cp "$mdir/wic_tna.so" "$out/.wic_tna.so.new.$$"
    mv -f "$out/.wic_tna.so.new.$$" "$out/wic_tna.so"
    log "built $out/wic_tna.so"
    printf '%s\n' "$out/wic_tna.so"
}

fetch_source
build_module
