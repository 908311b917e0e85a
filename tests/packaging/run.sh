#!/usr/bin/env bash
# Packaging test (issues 7, 21). Builds the Debian packages with debhelper
# twice (the changelog's version and a lower one), then on this machine:
#   - lintian: no error or warning on any package;
#   - what each package holds: the library alone in libwic-tna<abi>, the
#     development files in -dev, stripped binaries with their debug info in
#     the -dbgsym packages, nothing in /etc, the Kamailio version the module
#     depends on;
#   - the upgrade from today's single wic-tna package (0.1.0-1, dpkg-deb),
#     then what a packager and an operator rely on: SONAME, exported
#     symbols, a C program built with `pkg-config --cflags --libs wic-tna`,
#     the CLI, the Python glue, Kamailio loading the module by name and the
#     registration flow through the installed module;
#   - `apt-get purge` leaves no file of the packages behind;
#   - the upgrade from the lower version, then purge again;
#   - `make install`: the library with its SONAME, stripped, debug info
#     separate; a program linked against the staged install records the
#     versioned name; files replaced by rename.
# Purges the packages at the end (and at the start: leftovers of an
# interrupted run). Prints the time each part took.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export DEBIAN_FRONTEND=noninteractive
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
major=${version%%.*}; rest=${version#*.}; minor=${rest%%.*}
abi=$([ "$major" = 0 ] && echo "0.$minor" || echo "$major")
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
arch=$(dpkg --print-architecture)
libdir=/usr/lib/$multiarch
libpkg=libwic-tna$abi
pkgs=("$libpkg" libwic-tna-dev wic-tna kamailio-wic-tna-module wic-tna-python)
pass=0; fail=0
ok()  { echo "ok: $*"; pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
check() { local what=$1; shift; if "$@" >"$tmp/check.out" 2>&1; then ok "$what"; else bad "$what"; cat "$tmp/check.out"; fi; }
t0=$SECONDS; tpart=$SECONDS
part() { echo "==> $* (previous part: $((SECONDS-tpart)) s)"; tpart=$SECONDS; }

for t in dpkg-buildpackage lintian readelf pkg-config cc; do
  command -v "$t" >/dev/null || { echo "tests/packaging/run.sh: no $t (bash scripts/install-deps.sh)" >&2; exit 1; }
done

# Our packages installed now (any version, also config-files state).
ours_installed() {
  { dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' 'libwic-tna*' 'wic-tna*' 'kamailio-wic-tna-module*' 2>/dev/null || true; } \
    | awk '$2 !~ /^un/ { print $1 }'
}
purge_ours() {
  local p; p=$(ours_installed)
  [ -z "$p" ] || apt-get purge -y -qq $p >/dev/null
}
tmp=$(mktemp -d)
trap 'purge_ours >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
purge_ours

# Every path under the system trees, except the package manager's own
# records and caches, logs and temporary files (policy lets those stay).
snapshot() {
  find /etc /usr /opt /srv /var -xdev \( -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/cache \
       -o -path /var/log -o -path /var/tmp -o -path /var/backups -o -path /var/lib/systemd \
       -o -path /var/lib/redis -o -path /var/lib/python -o -path /usr/local \) -prune -o -print 2>/dev/null | LC_ALL=C sort
}
# The paths that `dpkg -L` lists for our installed packages.
owned() { local p; for p in $(ours_installed); do dpkg -L "$p" 2>/dev/null; done | LC_ALL=C sort -u; }
# After a purge: paths that were not there before the install and are
# either a package's file, or below a directory the packages created, or
# named after wic-tna.
check_purged() {
  local before=$1 ownedlist=$2 what=$3
  snapshot > "$tmp/after"
  LC_ALL=C comm -13 "$before" "$tmp/after" > "$tmp/new"
  LC_ALL=C comm -13 "$before" "$ownedlist" > "$tmp/created"
  : > "$tmp/left"
  while IFS= read -r f; do
    if grep -qxF -- "$f" "$tmp/created" || printf '%s\n' "$f" | grep -qi 'wic.tna'; then echo "$f"; continue; fi
    while IFS= read -r d; do case $f in "$d"/*) echo "$f"; break ;; esac; done < "$tmp/created"
  done < "$tmp/new" > "$tmp/left"
  if [ -n "$(ours_installed)" ]; then bad "$what: still installed: $(ours_installed | tr '\n' ' ')"
  elif [ -s "$tmp/left" ]; then bad "$what: files left behind:"; cat "$tmp/left"
  else ok "$what: no package and no file left ($(wc -l < "$ownedlist") paths were installed)"; fi
}

part "build the packages (debhelper) at two versions"
cur=$(dpkg-parsechangelog -l debian/changelog -SVersion)
low="$cur~test1"
if ! bash scripts/build-deb.sh --version "$low" --out "$tmp/low" > "$tmp/low.list"; then
  echo "FAIL: build-deb.sh --version $low"; exit 1
fi
ok "built $low ($((SECONDS-tpart)) s)"
t1=$SECONDS
if ! bash scripts/build-deb.sh --out "$tmp/cur" > "$tmp/cur.list"; then
  echo "FAIL: build-deb.sh"; exit 1
fi
ok "built $cur ($((SECONDS-t1)) s)"
deb_of() { local dir=$1 p=$2; ls "$dir"/"${p}"_*.deb 2>/dev/null | head -n1; }
for p in "${pkgs[@]}" "$libpkg-dbgsym" wic-tna-dbgsym kamailio-wic-tna-module-dbgsym; do
  check "package $p built" test -f "$(deb_of "$tmp/cur" "$p")"
done
debs_main() { local d=$1 p; for p in "${pkgs[@]}"; do deb_of "$d" "$p"; done; }
debs_all() { ls "$1"/*.deb; }

part "lintian (errors and warnings fail)"
if lintian --fail-on error,warning --tag-display-limit 0 $(debs_all "$tmp/cur") > "$tmp/lintian.out" 2>&1; then
  ok "lintian: no error or warning on $(debs_all "$tmp/cur" | wc -l) packages"
else
  bad "lintian"
fi
cat "$tmp/lintian.out"

part "what each package holds"
contents() { dpkg-deb -c "$(deb_of "$tmp/cur" "$1")" | awk '{ print $6 }' | sed 's|^\./|/|'; }
field() { dpkg-deb -f "$(deb_of "$tmp/cur" "$1")" "$2"; }
check "$libpkg: the library and its SONAME link, nothing else" sh -c "
  [ \"\$(dpkg-deb -c '$(deb_of "$tmp/cur" "$libpkg")' | awk '{print \$6}' | grep -v '/\$' | grep -v '^\./usr/share/doc/$libpkg/' | sort | tr '\n' ' ')\" = \
    './usr/lib/$multiarch/libwic_tna.so.$abi ./usr/lib/$multiarch/libwic_tna.so.$version ' ]"
check "$libpkg: a symbols file for libwic_tna.so.$abi" sh -c "dpkg-deb --ctrl-tarfile '$(deb_of "$tmp/cur" "$libpkg")' | tar -xOf - ./symbols | grep -q '^libwic_tna.so.$abi $libpkg #MINVER#'"
check "libwic-tna-dev: header, .pc, .so link" sh -c "c=\$(dpkg-deb -c '$(deb_of "$tmp/cur" libwic-tna-dev)'); for f in ./usr/include/wic_tna.h ./usr/lib/$multiarch/pkgconfig/wic-tna.pc ./usr/lib/$multiarch/libwic_tna.so; do echo \"\$c\" | grep -q \" \$f\" || { echo missing \$f; exit 1; }; done"
check "libwic-tna-dev depends on $libpkg (= $cur)" sh -c "dpkg-deb -f '$(deb_of "$tmp/cur" libwic-tna-dev)' Depends | grep -qF '$libpkg (= $cur)'"
check "wic-tna: the CLI, its man page, the example configuration under /usr/share/doc" sh -c "c=\$(dpkg-deb -c '$(deb_of "$tmp/cur" wic-tna)'); for f in ./usr/bin/wic-tna ./usr/share/man/man1/wic-tna.1.gz ./usr/share/doc/wic-tna/examples/wic-tna.toml; do echo \"\$c\" | grep -q \" \$f\\\$\" || { echo missing \$f; exit 1; }; done"
check "kamailio-wic-tna-module: the module, its reference and the example configurations" sh -c "c=\$(dpkg-deb -c '$(deb_of "$tmp/cur" kamailio-wic-tna-module)'); for f in ./usr/lib/$multiarch/kamailio/modules/wic_tna.so ./usr/share/doc/kamailio-wic-tna-module/examples/epcscf.cfg ./usr/share/doc/kamailio-wic-tna-module/examples/scscf.cfg ./usr/share/doc/kamailio-wic-tna-module/README.gz; do echo \"\$c\" | grep -q \" \$f\\\$\" || { echo missing \$f; exit 1; }; done"
kam=$(/usr/sbin/kamailio -v | sed -n 's/^version: kamailio \([0-9.]*\).*/\1/p' | head -n1)
check "kamailio-wic-tna-module depends on Kamailio $kam (the version it was built for) and $libpkg" sh -c "
  d=\$(dpkg-deb -f '$(deb_of "$tmp/cur" kamailio-wic-tna-module)' Depends); echo \"\$d\";
  echo \"\$d\" | grep -qF 'kamailio (>= $kam)' && echo \"\$d\" | grep -q 'kamailio (<< ' && echo \"\$d\" | grep -qF '$libpkg (>= $version)'"
check "wic-tna-python: the glue in /usr/share/wic-tna, the python-module example configurations" sh -c "c=\$(dpkg-deb -c '$(deb_of "$tmp/cur" wic-tna-python)'); for f in ./usr/share/wic-tna/wic_tna_glue.py ./usr/share/wic-tna/wic_tna_opensips.py ./usr/share/doc/wic-tna-python/examples/epcscf-python.cfg ./usr/share/doc/wic-tna-python/examples/opensips-python.cfg; do echo \"\$c\" | grep -q \" \$f\\\$\" || { echo missing \$f; exit 1; }; done"
etc=$(for d in $(debs_all "$tmp/cur"); do dpkg-deb -c "$d" | awk '{print $6}' | grep '^\./etc/' || true; done)
if [ -z "$etc" ]; then ok "no package has a file in /etc"; else bad "files in /etc: $etc"; fi
for p in "${pkgs[@]}"; do
  printf '%-28s Installed-Size %6s KiB  (.deb %s KiB)\n' "$p" "$(field "$p" Installed-Size)" \
    "$(( $(stat -c %s "$(deb_of "$tmp/cur" "$p")") / 1024 ))"
done

part "upgrade from the single wic-tna package of 0.1.0-1 (dpkg-deb, before issue 21)"
# That package as scripts/build-deb.sh made it: every file in one package,
# the example configuration as a plain file in /etc.
legacy=$tmp/legacy
mkdir -p "$legacy/DEBIAN"
for d in $(debs_main "$tmp/cur"); do dpkg-deb -x "$d" "$legacy"; done
rm -rf "$legacy/usr/share/doc"/* "$legacy/usr/share/python3" && mkdir -p "$legacy/usr/share/doc/wic-tna" "$legacy/etc/wic-tna"
cp README.md SECURITY.md "$legacy/usr/share/doc/wic-tna/"
cp config/wic-tna.toml "$legacy/etc/wic-tna/wic-tna.toml.example"
cat > "$legacy/DEBIAN/control" <<CTL
Package: wic-tna
Version: 0.1.0-1
Architecture: $arch
Maintainer: wic-tna developers <wic-tna@invalid>
Depends: libc6 (>= 2.36), libgcc-s1
Description: OAuth token check for WebRTC IMS Client access (eP-CSCF)
 The single package of 0.1.0-1.
CTL
printf 'activate-noawait ldconfig\n' > "$legacy/DEBIAN/triggers"
dpkg-deb --root-owner-group --build "$legacy" "$tmp/wic-tna_0.1.0-1_$arch.deb" >/dev/null
snapshot > "$tmp/before"
check "the 0.1.0-1 single package installs" apt-get install -y -qq "$tmp/wic-tna_0.1.0-1_$arch.deb"
check "the split packages ($cur) install over it" apt-get install -y -qq $(debs_all "$tmp/cur")
for p in "${pkgs[@]}"; do
  check "$p $cur installed" sh -c "[ \"\$(dpkg-query -W -f='\${Version} \${db:Status-Abbrev}' $p)\" = '$cur ii ' ]"
done
check "the old plain file in /etc is gone" test ! -e /etc/wic-tna
check "dpkg --verify: installed files match the packages" dpkg --verify $(ours_installed)
check "the library belongs to $libpkg" sh -c "dpkg -S $libdir/libwic_tna.so.$version | grep -q '^$libpkg:'"

part "the installed packages, used"
so=$libdir/libwic_tna.so.$version
check "SONAME is libwic_tna.so.$abi" sh -c "readelf -d $so | grep -q 'Library soname: \[libwic_tna.so.$abi\]'"
check "libwic_tna.so.$abi and libwic_tna.so links" test -e "$libdir/libwic_tna.so.$abi" -a -e "$libdir/libwic_tna.so"
others=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^wic_tna_' || true)
if [ -z "$others" ]; then ok "only wic_tna_* symbols exported ($(nm -D --defined-only "$so" | wc -l))"; else bad "foreign exported symbols: $others"; fi
for f in "$so" /usr/bin/wic-tna "$libdir/kamailio/modules/wic_tna.so"; do
  check "$f is stripped, its debug info in the -dbgsym package" sh -c "
    ! readelf -S '$f' | grep -q ' \.debug_info\| \.symtab' &&
    id=\$(readelf -n '$f' | sed -n 's/^ *Build ID: *//p') && [ -n \"\$id\" ] &&
    dbg=/usr/lib/debug/.build-id/\$(echo \$id | cut -c1-2)/\$(echo \$id | cut -c3-).debug && readelf -S \"\$dbg\" | grep -q ' \.debug_info'"
done
check "header version macros match Cargo.toml" sh -c "grep -q '#define WIC_TNA_VERSION \"$version\"' /usr/include/wic_tna.h && grep -q '#define WIC_TNA_VERSION_MAJOR $major' /usr/include/wic_tna.h && grep -q '#define WIC_TNA_VERSION_MINOR $minor' /usr/include/wic_tna.h"
check "pkg-config --modversion wic-tna" sh -c "[ \"\$(pkg-config --modversion wic-tna)\" = $version ]"
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
check "a C program builds with pkg-config wic-tna (the -dev package) and runs" sh -c "cc -Wall -Werror $tmp/v.c \$(pkg-config --cflags --libs wic-tna) -o $tmp/v && [ \"\$($tmp/v)\" = $version ]"
check "NEEDED of the C program is the SONAME" sh -c "readelf -d $tmp/v | grep -q 'Shared library: \[libwic_tna.so.$abi\]'"

sed "s|\.\./tests/fixtures/keys|$repo/tests/fixtures/keys|" config/wic-tna.toml > "$tmp/wic-tna.toml"
check "wic-tna --help" /usr/bin/wic-tna --help
check "man page installed" test -f /usr/share/man/man1/wic-tna.1.gz
check "Python glue importable by Debian's python3 (default library name)" sh -c "cd /tmp && /usr/bin/python3 -c 'import sys; sys.path.insert(0, \"/usr/share/wic-tna\"); import wic_tna_glue as g; l = g.Library(); print(l.path)'"
check "OpenSIPS handler installed" test -f /usr/share/wic-tna/wic_tna_opensips.py
check "wic-tna check-config" /usr/bin/wic-tna check-config "$tmp/wic-tna.toml"
tok=$(/usr/bin/wic-tna mint --key tests/fixtures/keys/issuer-a-p256.key --alg ES256 --kid a-es256 \
      --iss https://wwsf.socialnet.example --impi alice@socialnet.ims.example.net --impu sip:alice@socialnet.ims.example.net)
check "wic-tna verify" sh -c "/usr/bin/wic-tna verify --config $tmp/wic-tna.toml --authorization 'Bearer $tok' | grep -q integrity-protected=auth-done"

kamcfg() {
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
}
kamcfg
check "kamailio -c loads wic_tna.so by name" /usr/sbin/kamailio -c -f "$tmp/k.cfg"
if WIC_TNA_MODULE=$libdir/kamailio/modules/wic_tna.so WIC_TNA_E2E_NO_BUILD=1 \
   bash tests/e2e/run.sh -q -k "native and (valid_token or test_rejected or bar_and_unbar)" > "$tmp/e2e.log" 2>&1; then
  ok "e2e flow with the installed module: $(tail -n1 "$tmp/e2e.log")"
else
  bad "e2e flow with the installed module"; tail -n 30 "$tmp/e2e.log"
fi

part "apt-get purge"
owned > "$tmp/owned"
apt-get purge -y -qq $(ours_installed) >/dev/null
check_purged "$tmp/before" "$tmp/owned" "purge after the upgrade from 0.1.0-1"

part "upgrade from $low to $cur"
snapshot > "$tmp/before"
check "$low installs" apt-get install -y -qq $(debs_main "$tmp/low")
check "$low is what is installed" sh -c "[ \"\$(dpkg-query -W -f='\${Version}' wic-tna)\" = '$low' ]"
/usr/bin/python3 -c 'import sys; sys.path.insert(0, "/usr/share/wic-tna"); import wic_tna_glue' >/dev/null 2>&1 || true
check "upgrade to $cur" apt-get install -y -qq $(debs_main "$tmp/cur")
for p in "${pkgs[@]}"; do
  check "$p upgraded to $cur" sh -c "[ \"\$(dpkg-query -W -f='\${Version} \${db:Status-Abbrev}' $p)\" = '$cur ii ' ]"
done
check "dpkg --verify after the upgrade" dpkg --verify $(ours_installed)
check "kamailio -c loads the upgraded module" /usr/sbin/kamailio -c -f "$tmp/k.cfg"
owned > "$tmp/owned"
apt-get purge -y -qq $(ours_installed) >/dev/null
check_purged "$tmp/before" "$tmp/owned" "purge after the upgrade from $low"

part "make install: the library of the packages"
target=${WIC_TNA_DEB_TARGET:-${XDG_CACHE_HOME:-$HOME/.cache}/wic-tna/deb-target}
stage=$tmp/stage
mk() { make -s "$@" CARGO_SKIP=1 SONAME_TARGET_DIR="$target" MODULE_SYS_DIR="$tmp/modsys" PREFIX=/usr DESTDIR="$stage"; }
check "make module-sys (module linked to the SONAME'd library, no rpath)" mk module-sys
check "make install" mk install
stlib=$stage$libdir/libwic_tna.so.$version
stmod=$stage$libdir/kamailio/modules/wic_tna.so
check "installed library has the SONAME libwic_tna.so.$abi (readelf -d)" sh -c "readelf -d $stlib | grep -q 'Library soname: \[libwic_tna.so.$abi\]'"
for f in "$stlib" "$stage/usr/bin/wic-tna" "$stmod"; do
  check "make install: $(basename "$f") stripped, debug info in /usr/lib/debug/.build-id" sh -c "
    ! readelf -S '$f' | grep -q ' \.debug_info\| \.symtab' &&
    id=\$(readelf -n '$f' | sed -n 's/^ *Build ID: *//p') && [ -n \"\$id\" ] &&
    readelf -S $stage/usr/lib/debug/.build-id/\$(echo \$id | cut -c1-2)/\$(echo \$id | cut -c3-).debug | grep -q ' \.debug_info'"
done
check "installed module: no rpath, links libwic_tna.so.$abi" sh -c "! readelf -d $stmod | grep -q 'RPATH\|RUNPATH' && readelf -d $stmod | grep -q 'Shared library: \[libwic_tna.so.$abi\]'"
check "a program linked against the staged install records libwic_tna.so.$abi and runs" sh -c "
  cc -Wall -Werror -I$stage/usr/include $tmp/v.c -L$stage$libdir -lwic_tna -o $tmp/vs &&
  readelf -d $tmp/vs | grep -q 'Shared library: \[libwic_tna.so.$abi\]' &&
  ! readelf -d $tmp/vs | grep -q 'Shared library: \[libwic_tna.so\]' &&
  [ \"\$(LD_LIBRARY_PATH=$stage$libdir $tmp/vs)\" = $version ]"
if [ -f target/release/libwic_tna.so ]; then
  if mk install LIBSRC=target/release/libwic_tna.so DESTDIR="$tmp/stage-nosoname" > "$tmp/nosoname.out" 2>&1; then
    bad "make install accepts a library without SONAME"
  elif grep -q 'has no SONAME' "$tmp/nosoname.out"; then ok "make install refuses a library without SONAME, saying so"
  else bad "make install refused a library without SONAME for another reason:"; cat "$tmp/nosoname.out"; fi
fi

# Installing over a running proxy: the .so files are replaced by rename (a
# new inode), never written in place (which crashes a process that maps
# them), and a process holding the old library keeps using it.
/usr/bin/python3 -c 'import ctypes, sys, time
lib = ctypes.CDLL(sys.argv[1]); lib.wic_tna_version.restype = ctypes.c_char_p
sys.stdout.write("up\n"); sys.stdout.flush(); time.sleep(3)
print(lib.wic_tna_version().decode())' "$stlib" > "$tmp/holder.out" &
holder=$!
sleep 0.5
lib_ino=$(stat -c %i "$stlib"); mod_ino=$(stat -c %i "$stmod")
mk install >/dev/null 2>&1
check "make install replaces the library by rename (new inode)" test "$(stat -c %i "$stlib")" != "$lib_ino"
check "make install replaces the Kamailio module by rename (new inode)" test "$(stat -c %i "$stmod")" != "$mod_ino"
if wait "$holder"; then check "a process holding the old library keeps working" grep -qx "$version" "$tmp/holder.out"
else bad "a process holding the old library keeps working: $(cat "$tmp/holder.out")"; fi
if [ -f build/wic_tna/wic_tna.so ]; then
  mod_ino=$(stat -c %i build/wic_tna/wic_tna.so)
  WIC_TNA_SKIP_APT=1 bash kamailio-example/module/build.sh >/dev/null 2>&1
  check "module/build.sh replaces wic_tna.so by rename (new inode)" test "$(stat -c %i build/wic_tna/wic_tna.so)" != "$mod_ino"
fi

part "done"
echo "$pass passed, $fail failed ($((SECONDS-t0)) s)"
[ "$fail" = 0 ]
