#!/usr/bin/env bash
# Build the Debian package for bookworm: dist/wic-tna_<version>_<arch>.deb
# with the library (SONAME libwic_tna.so.<abi>), header, pkg-config file,
# CLI, man page, Kamailio module (built against Debian's Kamailio source,
# no rpath) and the example configuration. Uses only dpkg-deb.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
stage=$repo/build/deb/stage
rm -rf "$stage" && mkdir -p "$stage" dist

echo "==> library with SONAME (target/deb)"
WIC_TNA_SONAME=1 CARGO_TARGET_DIR=$repo/target/deb cargo build --release -q
lib=$repo/target/deb/release

echo "==> Kamailio module against $lib (no rpath)"
WIC_TNA_LIBDIR=$lib WIC_TNA_RPATH= WIC_TNA_MODULE_OUT=$repo/build/deb/module \
  bash kamailio-example/module/build.sh >/dev/null

echo "==> staging"
make -s install DESTDIR="$stage" PREFIX=/usr LIBDIR=/usr/lib/$multiarch SYSCONFDIR=/etc \
  CARGO_SKIP=1 MODULE=$repo/build/deb/module/wic_tna.so LIBSRC=$lib/libwic_tna.so BINSRC=$lib/wic-tna
gzip -9n "$stage/usr/share/man/man1/wic-tna.1"
# Only what a package should have: no build paths in the binaries.
if readelf -d "$stage/usr/lib/$multiarch/kamailio/modules/wic_tna.so" | grep -q RUNPATH\\\|RPATH; then
  echo "module has an rpath" >&2; exit 1
fi

kam=$(dpkg-query -W -f='${Version}' kamailio 2>/dev/null || echo 5.6.3)
kam_upstream=${kam%%-*}
mkdir -p "$stage/DEBIAN"
size=$(du -sk "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CTL
Package: wic-tna
Version: $version-1
Architecture: $arch
Maintainer: wic-tna developers <wic-tna@invalid>
Installed-Size: $size
Depends: libc6 (>= 2.36), libgcc-s1
Recommends: kamailio (>= $kam_upstream), kamailio (<< ${kam_upstream%.*}.99)
Section: net
Priority: optional
Description: OAuth token check for WebRTC IMS Client access (eP-CSCF)
 wic-tna validates the OAuth 2.0 access token a WebRTC IMS Client presents
 in a SIP REGISTER and produces the Trusted Node Authentication header for
 the S-CSCF (3GPP TS 33.203 Annex U). Library, C header, pkg-config file,
 command-line tool and a Kamailio module built for Kamailio $kam_upstream.
CTL
cat > "$stage/DEBIAN/triggers" <<'TRG'
activate-noawait ldconfig
TRG
out=dist/wic-tna_${version}-1_${arch}.deb
dpkg-deb --root-owner-group --build "$stage" "$out" >/dev/null
echo "$out"
