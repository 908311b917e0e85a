#!/usr/bin/env bash
# Build the native Kamailio module wic_tna.so against a Kamailio source tree,
# so that it loads into a given kamailio binary.
#
# Default (no arguments): the same Kamailio source Debian ships (bookworm:
# 5.6.3), so that it loads into Debian's /usr/sbin/kamailio:
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
# Any other Kamailio (5.6, 5.8, 6.0, ... e.g. installed from kamailio.org's
# packages, or built from source): give the source tree of the same release
# and the binary the module is for:
#
#   bash .../build.sh --kamailio-src DIR [--kamailio-bin BIN] [--out DIR]
#   (or WIC_TNA_KAMAILIO_SRC=DIR WIC_TNA_KAMAILIO_BIN=BIN bash .../build.sh)
#
#   DIR  an unpacked Kamailio source tree (a release tarball, a git checkout
#        at the release's tag, `apt-get source`); written to: the module goes
#        into DIR/src/modules/wic_tna/, a CMake build into DIR/build-wic_tna/
#   BIN  the kamailio binary that will load the module (default: kamailio on
#        PATH, else /usr/sbin/kamailio)
#
# BIN's `kamailio -v` says which build system made it and so must make the
# module (a module is refused unless its version string and compile flags
# are the core's, byte for byte):
#   "version: kamailio 5.8.8 (x86_64/linux)"  make (src/Makefile.modules)
#   "version: kamailio 6.0.7 (x86_64/Linux)"  CMake (OS from CMake: capital L)
# Refused, with the reason, before building: BIN's version is not DIR's,
# or BIN needs CMake and DIR has none (before 6.0). Refused after building
# (nothing is written to --out): the module's version string or compile
# flags are not BIN's (a core built with non-default options: pass the same
# to the module's build, WIC_TNA_MAKE_ARGS="..." for make,
# WIC_TNA_CMAKE_ARGS="-D..." for CMake).
#   WIC_TNA_BUILD_SYSTEM=make|cmake   force the build system (default: from BIN)
#   --readme    instead of building: regenerate this directory's README (or
#               --out DIR/README) from doc/wic_tna.xml with DIR's DocBook
#               Makefile (xsltproc, docbook-xsl, lynx), as Kamailio makes
#               its modules' READMEs
#
# Output: build/wic_tna/wic_tna.so (or --out/WIC_TNA_MODULE_OUT; the path is
# printed on the last line).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build="$repo/build"
srcroot="$build/kamailio-src"
out="${WIC_TNA_MODULE_OUT:-$build/wic_tna}"
sources_file=/etc/apt/sources.list.d/wic-tna-src.sources

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

kamailio_src="${WIC_TNA_KAMAILIO_SRC:-}"
kamailio_bin="${WIC_TNA_KAMAILIO_BIN:-}"
readme=""
out_given=""
while [ $# -gt 0 ]; do
    case "$1" in
        --kamailio-src|--kamailio-bin|--out)
            [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"
            case "$1" in
                --kamailio-src) kamailio_src=$2 ;;
                --kamailio-bin) kamailio_bin=$2 ;;
                --out) out=$2; out_given=1 ;;
            esac
            shift 2 ;;
        --kamailio-src=*) kamailio_src=${1#*=}; shift ;;
        --kamailio-bin=*) kamailio_bin=${1#*=}; shift ;;
        --out=*) out=${1#*=}; out_given=1; shift ;;
        --readme) readme=1; shift ;;
        -h|--help) sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (bash $0 --help)" ;;
    esac
done
if [ -z "$kamailio_src" ]; then
    [ -z "$kamailio_bin" ] || die "--kamailio-bin (WIC_TNA_KAMAILIO_BIN) needs --kamailio-src (WIC_TNA_KAMAILIO_SRC): the source tree of that Kamailio"
    [ -z "$readme" ] || die "--readme needs --kamailio-src DIR: a Kamailio tree with doc/docbook/"
fi

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

incdir="${WIC_TNA_INCDIR:-$repo/include}"
libdir="${WIC_TNA_LIBDIR:-$repo/target/release}"

need_library() {
    if [ ! -f "$libdir/libwic_tna.so" ]; then
        if [ -n "${WIC_TNA_LIBDIR:-}" ]; then
            log "no libwic_tna.so in $libdir"; exit 1
        fi
        log "building the library (cargo build --release)"
        (cd "$repo" && cargo build --release)
    fi
    [ -f "$incdir/wic_tna.h" ] || { log "missing $incdir/wic_tna.h"; exit 1; }
}

build_module() {
    need_library

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

    install_module "$mdir/wic_tna.so"
}

install_module() {
    mkdir -p "$out"
    # by rename, never in place: a Kamailio that has the old file mapped
    # keeps its inode (cp over it would change the code under it: SIGBUS)
    cp "$1" "$out/.wic_tna.so.new.$$"
    mv -f "$out/.wic_tna.so.new.$$" "$out/wic_tna.so"
    log "built $out/wic_tna.so"
    printf '%s\n' "$out/wic_tna.so"
}

# ---------------------------------------------------------------------------
# --kamailio-src DIR [--kamailio-bin BIN]: any Kamailio source tree

# the release of a source tree: src/Makefile.defs (5.x, 6.x), else the
# top CMakeLists.txt's project(... VERSION x.y.z)
tree_version() {
    local defs="$1/src/Makefile.defs" v p sl ev
    if [ -f "$defs" ]; then
        v=$(sed -n 's/^VERSION[[:space:]]*=[[:space:]]*\([^[:space:]]*\).*/\1/p' "$defs" | head -n1)
        p=$(sed -n 's/^PATCHLEVEL[[:space:]]*=[[:space:]]*\([^[:space:]]*\).*/\1/p' "$defs" | head -n1)
        sl=$(sed -n 's/^SUBLEVEL[[:space:]]*=[[:space:]]*\([^[:space:]]*\).*/\1/p' "$defs" | head -n1)
        ev=$(sed -n 's/^EXTRAVERSION[[:space:]]*=[[:space:]]*\([^[:space:]]*\).*/\1/p' "$defs" | head -n1)
        [ -n "$v" ] && [ -n "$p" ] && [ -n "$sl" ] && { printf '%s.%s.%s%s\n' "$v" "$p" "$sl" "$ev"; return 0; }
    fi
    if [ -f "$1/CMakeLists.txt" ]; then
        sed -n 's/^[[:space:]]*VERSION[[:space:]]\{1,\}\([0-9][0-9.]*\).*/\1/p' "$1/CMakeLists.txt" | head -n1
        return 0
    fi
    return 1
}

# BIN's `kamailio -v`: kam_full ("kamailio 6.0.7 (x86_64/Linux)", the string
# compiled into every module), kam_ver (6.0.7), kam_os (Linux), kam_flags
# (the "flags:" line, also compiled into every module)
read_binary() {
    local v
    v=$("$kamailio_bin" -v 2>&1) || die "$kamailio_bin -v failed: $v"
    kam_full=$(printf '%s\n' "$v" | sed -n 's/^version: \(.*[^[:space:]]\)[[:space:]]*$/\1/p' | head -n1)
    kam_flags=$(printf '%s\n' "$v" | sed -n 's/^flags: \(.*[^[:space:]]\)[[:space:]]*$/\1/p' | head -n1)
    kam_ver=$(printf '%s\n' "$kam_full" | sed -n 's/^[^ ]* \([^ ]*\) (.*)$/\1/p')
    kam_os=$(printf '%s\n' "$kam_full" | sed -n 's/^.*(\([^/]*\)\/\(.*\))$/\2/p')
    [ -n "$kam_full" ] && [ -n "$kam_ver" ] && [ -n "$kam_os" ] && [ -n "$kam_flags" ] \
        || die "$kamailio_bin -v does not say 'version: kamailio X.Y.Z (arch/os)' and 'flags: ...': is it kamailio? It said: $(printf '%s' "$v" | head -n2 | tr '\n' ' ')"
}

# whether the .so carries this string, whole (a NUL-terminated literal)
so_has_string() {
    # (grep reads to the end: no -q, whose early exit would fail the
    # pipeline with SIGPIPE under pipefail)
    tr '\0' '\n' < "$1" | grep -aFx -- "$2" >/dev/null
}

tree_build() {
    local tree mdir so system tver
    [ -d "$kamailio_src" ] || die "--kamailio-src $kamailio_src: no such directory"
    tree=$(cd "$kamailio_src" && pwd)
    [ -f "$tree/src/core/sr_module.h" ] || die "$tree is not a Kamailio source tree (no src/core/sr_module.h)"
    tver=$(tree_version "$tree") && [ -n "$tver" ] || die "cannot tell the release of $tree (src/Makefile.defs, CMakeLists.txt)"
    mdir="$tree/src/modules/wic_tna"

    if [ -n "$readme" ]; then
        tree_readme "$tree" "$mdir"
        return 0
    fi

    if [ -z "$kamailio_bin" ]; then
        kamailio_bin=$(command -v kamailio 2>/dev/null || echo /usr/sbin/kamailio)
    fi
    [ -x "$kamailio_bin" ] || die "--kamailio-bin $kamailio_bin: not an executable (the kamailio that will load the module)"
    read_binary
    log "target: $kamailio_bin ($kam_full)"
    log "source: $tree ($tver)"
    [ "$kam_ver" = "$tver" ] \
        || die "version mismatch: $kamailio_bin is Kamailio $kam_ver but $tree is $tver; a module loads only into the release it was built against: give the source tree of $kam_ver"

    # make writes the OS lowercase (uname -s | tr A-Z a-z), CMake as
    # CMAKE_SYSTEM_NAME ("Linux"): a core's build system is in its version
    system=${WIC_TNA_BUILD_SYSTEM:-}
    if [ -z "$system" ]; then
        case "$kam_os" in
            *[A-Z]*) system=cmake ;;
            *) system=make ;;
        esac
        log "build system: $system ($kamailio_bin says '$kam_os')"
    fi
    case "$system" in
        make)
            [ -f "$tree/src/Makefile.modules" ] || die "$kamailio_bin was built with make but $tree has no src/Makefile.modules"
            ;;
        cmake)
            [ -f "$tree/CMakeLists.txt" ] && [ -f "$tree/src/modules/CMakeLists.txt" ] \
                || die "$kamailio_bin was built with CMake ('$kam_os' in '$kam_full') but $tree has no CMake build (Kamailio 6.0 and later)"
            command -v cmake >/dev/null 2>&1 || die "$kamailio_bin was built with CMake: install cmake (apt-get install cmake)"
            ;;
        *) die "WIC_TNA_BUILD_SYSTEM=$system: make or cmake" ;;
    esac

    need_library
    mkdir -p "$mdir"
    # a fresh copy of the sources on every build
    rm -rf "$mdir"/*.c "$mdir"/*.h "$mdir"/*.o "$mdir"/*.d "$mdir/wic_tna.so" "$mdir/doc"
    cp "$here"/*.c "$here"/*.h "$here/Makefile" "$here/CMakeLists.txt" "$mdir/"
    cp -r "$here/doc" "$mdir/doc"

    if [ "$system" = make ]; then
        log "make in $mdir"
        make -C "$mdir" WIC_TNA_REPO="$repo" WIC_TNA_INCDIR="$incdir" \
            WIC_TNA_LIBDIR="$libdir" WIC_TNA_RPATH="${WIC_TNA_RPATH-$libdir}" \
            ${WIC_TNA_MAKE_ARGS:-} >&2
        so="$mdir/wic_tna.so"
    else
        # a build directory of its own with this one module: the core's
        # (if any) is left alone; the tree's CMake gives the module the
        # core's compile flags and definitions
        local bdir="${WIC_TNA_CMAKE_BUILD_DIR:-$tree/build-wic_tna}"
        log "cmake in $bdir"
        # shellcheck disable=SC2086
        cmake -S "$tree" -B "$bdir" -DMODULE_GROUP_NAME= -DINCLUDE_MODULES=wic_tna \
            -DWIC_TNA_INCDIR="$incdir" -DWIC_TNA_LIBDIR="$libdir" \
            -DWIC_TNA_RPATH="${WIC_TNA_RPATH-$libdir}" ${WIC_TNA_CMAKE_ARGS:-} >&2
        cmake --build "$bdir" --target wic_tna >&2
        so="$bdir/src/modules/wic_tna/wic_tna.so"
    fi
    [ -f "$so" ] || die "the build made no $so"

    # what the core will check when it loads the module, checked now
    so_has_string "$so" "$kam_full" \
        || die "$so is not for '$kam_full' ($kamailio_bin); its version: '$(tr '\0' '\n' < "$so" | grep -a '^kamailio [0-9]' | head -n1 || true)'; not installed (make writes the OS lowercase, e.g. x86_64/linux; CMake as CMake names it, x86_64/Linux: another build system than the core's?)"
    so_has_string "$so" "$kam_flags" \
        || die "$so was built with other compile flags than $kamailio_bin (built with non-default options? pass the same ones: WIC_TNA_MAKE_ARGS / WIC_TNA_CMAKE_ARGS); core: '$kam_flags'; not installed"
    log "version and compile flags match $kamailio_bin"
    install_module "$so"
}

# --readme: doc/wic_tna.xml -> README, with the tree's DocBook Makefile
# (xsltproc + docbook-xsl, then lynx), as Kamailio makes its modules' READMEs
tree_readme() {
    local tree=$1 mdir=$2 t
    [ -f "$tree/doc/docbook/Makefile.module" ] || die "$tree has no doc/docbook/Makefile.module"
    for t in xsltproc lynx make; do
        command -v "$t" >/dev/null 2>&1 || die "--readme needs $t (apt-get install xsltproc docbook-xsl docbook-xml lynx)"
    done
    [ -d /usr/share/xml/docbook/stylesheet/docbook-xsl ] || die "--readme needs docbook-xsl (apt-get install docbook-xsl docbook-xml)"
    mkdir -p "$mdir"
    rm -rf "$mdir/doc" "$mdir/README"
    cp -r "$here/doc" "$mdir/doc"
    # UTF-8 whatever the caller's locale (lynx writes in it), as
    # Kamailio's own READMEs are
    LC_ALL=C.UTF-8 make -C "$mdir/doc" README >&2
    [ -s "$mdir/README" ] || die "make README made no $mdir/README"
    # into this directory, or --out DIR (e.g. to compare with the one here)
    local dest="$here"
    [ -z "$out_given" ] || dest=$out
    mkdir -p "$dest"
    cp "$mdir/README" "$dest/.README.new.$$"
    mv -f "$dest/.README.new.$$" "$dest/README"
    log "wrote $dest/README"
    printf '%s\n' "$dest/README"
}

if [ -n "$kamailio_src" ]; then
    tree_build
    exit 0
fi

fetch_source
build_module
