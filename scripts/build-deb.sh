#!/usr/bin/env bash
# Build wic-tna's Debian packages with debhelper: `dpkg-buildpackage -us -uc
# -b` on a copy of the working tree (debian/README.source). The packages
# (libwic-tna<abi>, libwic-tna-dev, wic-tna, kamailio-wic-tna-module,
# wic-tna-python and the -dbgsym packages) go to dist/, their file names
# are printed one a line.
#
#   bash scripts/build-deb.sh [--version V] [--out DIR]
#
#   --version V  build as Debian version V: an entry on top of the copy's
#                debian/changelog (the upgrade test builds a lower one)
#   --out DIR    where the packages, .buildinfo and .changes go (default dist/)
#
# Cached between runs: the vendored crates (build/deb/vendor, redone when
# Cargo.lock changes) and cargo's target directory (WIC_TNA_DEB_TARGET,
# default ~/.cache/wic-tna/deb-target: a rebuild of unchanged sources
# only repackages). The build log is build/deb/build.log.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
die() { echo "build-deb.sh: $*" >&2; exit 1; }
log() { echo "build-deb.sh: $*" >&2; }

debver=""; out=$repo/dist
while [ $# -gt 0 ]; do
  case $1 in
    --version) [ $# -ge 2 ] || die "--version needs a value"; debver=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    *) die "unknown argument '$1' (--version V, --out DIR)" ;;
  esac
done

for t in dpkg-buildpackage:dpkg-dev dh:debhelper dh_python3:dh-python cargo:rustup git:git; do
  command -v "${t%%:*}" >/dev/null || die "no ${t%%:*} on PATH (package ${t#*:}; bash scripts/install-deps.sh installs it)"
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
deb=$repo/build/deb
mkdir -p "$deb" "$out"

# The Kamailio source tree the module is built in (fetched once, as `make
# module` does); the package build itself never runs apt-get.
if ! ls -d build/kamailio-src/kamailio-*/src/Makefile.modules >/dev/null 2>&1; then
  log "no Kamailio source tree yet: kamailio-example/module/build.sh fetches it"
  bash kamailio-example/module/build.sh >&2
fi

# Vendored crates, redone only when Cargo.lock changes.
lock=$(sha256sum Cargo.lock | cut -d' ' -f1)
if [ ! -d "$deb/vendor" ] || [ "$(cat "$deb/vendor.stamp" 2>/dev/null)" != "$lock" ]; then
  log "cargo vendor (Cargo.lock $lock)"
  rm -rf "$deb/vendor.new"
  if ! cargo vendor --locked --versioned-dirs --offline "$deb/vendor.new" >/dev/null 2>"$deb/vendor.log"; then
    rm -rf "$deb/vendor.new"
    cargo vendor --locked --versioned-dirs "$deb/vendor.new" >/dev/null 2>"$deb/vendor.log" \
      || { cat "$deb/vendor.log" >&2; die "cargo vendor failed"; }
  fi
  rm -rf "$deb/vendor" && mv "$deb/vendor.new" "$deb/vendor"
  echo "$lock" > "$deb/vendor.stamp"
fi

# A copy of the working tree (tracked and untracked files, not ignored
# ones): the build writes debian/ and ../ there, not in the tree. Its path
# stays the same between runs, so cargo's cache stays valid.
src=$deb/src/wic-tna-$version
rm -rf "$deb/src" && mkdir -p "$src"
git ls-files -z -co --exclude-standard \
  | while IFS= read -r -d '' f; do if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi; done \
  | tar --null -T - -cf - | tar -xf - -C "$src"
[ -f "$src/debian/rules" ] || die "no debian/rules in the copy of the tree"
mkdir -p "$src/build"
ln -s "$repo/build/kamailio-src" "$src/build/kamailio-src"
ln -s "$deb/vendor" "$src/vendor"

if [ -n "$debver" ]; then
  # The date of the entry below: SOURCE_DATE_EPOCH (from the changelog)
  # stays the same, so cargo's cache stays valid (build scripts rerun on it).
  maint=$(sed -n 's/^Maintainer: //p' "$src/debian/control")
  { printf 'wic-tna (%s) bookworm; urgency=medium\n\n  * Built as %s by scripts/build-deb.sh --version.\n\n -- %s  %s\n\n' \
      "$debver" "$debver" "$maint" "$(cd "$src" && dpkg-parsechangelog -SDate)"; cat "$src/debian/changelog"; } > "$src/debian/changelog.new"
  mv "$src/debian/changelog.new" "$src/debian/changelog"
fi
debver=$(cd "$src" && dpkg-parsechangelog -SVersion)

export CARGO_TARGET_DIR=${WIC_TNA_DEB_TARGET:-${XDG_CACHE_HOME:-$HOME/.cache}/wic-tna/deb-target}
mkdir -p "$CARGO_TARGET_DIR"
log "dpkg-buildpackage -us -uc -b ($debver; log: $deb/build.log)"
if ! (cd "$src" && nice -n 10 dpkg-buildpackage -us -uc -b) > "$deb/build.log" 2>&1; then
  tail -n 40 "$deb/build.log" >&2
  die "dpkg-buildpackage failed (whole log: $deb/build.log)"
fi

# Replace this version's earlier outputs, then move the new ones.
shopt -s nullglob
built=("$deb/src"/*_"$debver"_*.deb "$deb/src"/*_"$debver"_*.buildinfo "$deb/src"/*_"$debver"_*.changes)
[ ${#built[@]} -gt 0 ] || die "dpkg-buildpackage made no packages for $debver"
for f in "${built[@]}"; do
  mv -f "$f" "$out/.$(basename "$f").new" && mv -f "$out/.$(basename "$f").new" "$out/$(basename "$f")"
done
for f in "${built[@]}"; do case $f in *.deb) echo "$out/$(basename "$f")" ;; esac; done
