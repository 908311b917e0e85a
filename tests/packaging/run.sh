#!/usr/bin/env bash
# Packaging test (issue 7): build the Debian package, install it, and check
# what a packager and an operator rely on: SONAME, exported symbols, version
# macros, pkg-config, the CLI, a Kamailio config loading the module by name,
# and the registration flow through the installed module. Removes the
# package at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
major=${version%%.*}; rest=${version#*.}; minor=${rest%%.*}
abi=$([ "$major" = 0 ] && echo "0.$minor" || echo "$major")
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
libdir=/usr/lib/$multiarch
pass=0; fail=0
ok()  { echo "ok: $*"; pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
check() { local what=$1; shift; if "$@" >/tmp/wic-tna-pkg.out 2>&1; then ok "$what"; else bad "$what"; cat /tmp/wic-tna-pkg.out; fi; }

command -v dpkg-architecture >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev pkg-config >/dev/null
deb=$(bash scripts/build-deb.sh | tail -n1)
trap 'dpkg -r wic-tna >/dev/null 2>&1 || true' EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" >/dev/null
ok "installed $deb"

so=$libdir/libwic_tna.so.$version
check "SONAME is libwic_tna.so.$abi" sh -c "readelf -d $so | grep -q 'Library soname: \[libwic_tna.so.$abi\]'"
check "libwic_tna.so.$abi and libwic_tna.so links" test -e "$libdir/libwic_tna.so.$abi" -a -e "$libdir/libwic_tna.so"
others=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^wic_tna_' || true)
if [ -z "$others" ]; then ok "only wic_tna_* symbols exported ($(nm -D --defined-only "$so" | wc -l))"; else bad "foreign exported symbols: $others"; fi
check "header version macros match Cargo.toml" sh -c "grep -q '#define WIC_TNA_VERSION \"$version\"' /usr/include/wic_tna.h && grep -q '#define WIC_TNA_VERSION_MAJOR $major' /usr/include/wic_tna.h && grep -q '#define WIC_TNA_VERSION_MINOR $minor' /usr/include/wic_tna.h"
check "pkg-config --modversion wic-tna" sh -c "[ \"\$(pkg-config --modversion wic-tna)\" = $version ]"

tmp=$(mktemp -d)
cat > "$tmp/v.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <wic_tna.h>
int main(void) {
    if (strcmp(wic_tna_version(), WIC_TNA_VERSION) != 0) return 1;
    puts(wic_tna_version());
    return 0;
}
C
check "a C program builds with pkg-config wic-tna and runs" sh -c "cc -Wall -Werror $tmp/v.c \$(pkg-config --cflags --libs wic-tna) -o $tmp/v && $tmp/v"
check "NEEDED of the C program is the SONAME" sh -c "readelf -d $tmp/v | grep -q 'libwic_tna.so.$abi'"

# A configuration with absolute key paths.
sed "s|\.\./tests/fixtures/keys|$repo/tests/fixtures/keys|" config/wic-tna.toml > "$tmp/wic-tna.toml"
check "wic-tna --help" /usr/bin/wic-tna --help
check "man page installed" test -f /usr/share/man/man1/wic-tna.1.gz
check "Python glue installed and importable by Debian's python3" sh -c "cd /tmp && /usr/bin/python3 -c 'import sys; sys.path.insert(0, \"/usr/share/wic-tna\"); import wic_tna_glue'"
check "OpenSIPS handler installed" test -f /usr/share/wic-tna/wic_tna_opensips.py
check "wic-tna check-config" /usr/bin/wic-tna check-config "$tmp/wic-tna.toml"
tok=$(/usr/bin/wic-tna mint --key tests/fixtures/keys/issuer-a-p256.key --alg ES256 --kid a-es256 \
      --iss https://wwsf.socialnet.example --impi alice@socialnet.ims.example.net --impu sip:alice@socialnet.ims.example.net)
check "wic-tna verify" sh -c "/usr/bin/wic-tna verify --config $tmp/wic-tna.toml --authorization 'Bearer $tok' | grep -q integrity-protected=auth-done"

cat > "$tmp/k.cfg" <<CFG
#!KAMAILIO
mpath="$libdir/kamailio/modules/"
loadmodule "sl.so"
loadmodule "wic_tna.so"
modparam("wic_tna", "config", "$tmp/wic-tna.toml")
request_route {
    if (wic_tna_verify("\$hdr(Authorization)", "\$tu") > 0) { sl_send_reply("200", "OK"); }
    sl_send_reply("\$wic_tna(status)", "No");
}
CFG
check "kamailio -c loads wic_tna.so by name" /usr/sbin/kamailio -c -f "$tmp/k.cfg"

# The registration flow through the installed module.
if WIC_TNA_MODULE=$libdir/kamailio/modules/wic_tna.so WIC_TNA_E2E_NO_BUILD=1 \
   bash tests/e2e/run.sh -q -k "native and (valid_token or test_rejected or bar_and_unbar)" > "$tmp/e2e.log" 2>&1; then
  ok "e2e flow with the installed module: $(tail -n1 "$tmp/e2e.log")"
else
  bad "e2e flow with the installed module"; tail -n 30 "$tmp/e2e.log"
fi
# Installing over a running proxy: the .so files are replaced by rename (a
# new inode), never written in place (which crashes a process that maps
# them), and a process holding the old library keeps using it.
stage=$tmp/stage
make -s install CARGO_SKIP=1 PREFIX=/usr DESTDIR="$stage" >/dev/null
stlib=$(find "$stage" -name "libwic_tna.so.$version" -type f | head -n1)
stmod=$(find "$stage" -path '*/kamailio/modules/wic_tna.so' -type f | head -n1)
[ -n "$stlib" ] || bad "make install put no libwic_tna.so.$version under $stage"
/usr/bin/python3 -c 'import ctypes, sys, time
lib = ctypes.CDLL(sys.argv[1]); lib.wic_tna_version.restype = ctypes.c_char_p
sys.stdout.write("up\n"); sys.stdout.flush(); time.sleep(3)
print(lib.wic_tna_version().decode())' "$stlib" > "$tmp/holder.out" &
holder=$!
sleep 0.5
lib_ino=$(stat -c %i "$stlib"); mod_ino=none
[ -z "$stmod" ] || mod_ino=$(stat -c %i "$stmod")
make -s install CARGO_SKIP=1 PREFIX=/usr DESTDIR="$stage" >/dev/null
check "make install replaces the library by rename (new inode)" test "$(stat -c %i "$stlib")" != "$lib_ino"
if [ "$mod_ino" != none ]; then
  check "make install replaces the Kamailio module by rename (new inode)" test "$(stat -c %i "$stmod")" != "$mod_ino"
fi
wait "$holder" && check "a process holding the old library keeps working" grep -qx "$version" "$tmp/holder.out" \
  || bad "a process holding the old library keeps working: $(cat "$tmp/holder.out")"
mod_ino=$(stat -c %i build/wic_tna/wic_tna.so)
WIC_TNA_SKIP_APT=1 bash kamailio-example/module/build.sh >/dev/null 2>&1
check "module/build.sh replaces wic_tna.so by rename (new inode)" test "$(stat -c %i build/wic_tna/wic_tna.so)" != "$mod_ino"

rm -rf "$tmp"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
