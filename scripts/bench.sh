#!/usr/bin/env bash
# The benchmark table of issue #4 (BENCHMARKS.md), reproduced by one command:
#
#   bash scripts/bench.sh
#
# 1. installs what the peer benchmark needs (libjwt-dev, libssl-dev, gcc) when missing,
# 2. builds the library, the CLI and the benches (cargo build --release, cargo bench --no-run),
# 3. full verify vs the crypto floor, and the cache-hit refresh path (criterion, then
#    the same ratios measured interleaved): cargo bench --bench verify
# 4. scale (1 / 100 / 10,000 issuers, JWKS of 1 / 100 keys): cargo bench --bench scale
# 5. memory (RSS after 10k and 1M verifications): cargo bench --bench memory
# 6. the peer: libjwt (Kamailio jwt module style) vs wic_tna_verify through the C ABI,
#    benches/peer/peer.c, on the same token files
# 7. end to end through Kamailio (eP-CSCF CPU per REGISTER from /proc, sipp at a fixed
#    rate): plain forwarding (no token check), the native module, the Python glue and
#    the cache hit, when the Kamailio module, the e2e harness and sipp are there
#    (benches/e2e/register_cpu.py); skipped otherwise
# 8. end to end through OpenSIPS: the same measure for OpenSIPS's eP-CSCF with no
#    check, the native module and the python path (tests/e2e_opensips/
#    bench_register_cpu.py), when WIC_TNA_OPENSIPS names an OpenSIPS 3.x or
#    ../shared/opensips/ holds its source (built once, cached under build/); skipped
#    otherwise
# 9. prints the table (also written to target/bench/table.md).
#
# Environment:
#   WIC_TNA_BENCH_OUT      results directory (default target/bench)
#   WIC_TNA_BENCH_ROUNDS   rounds of the interleaved measurements (default 15)
#   WIC_TNA_BENCH_NO_E2E=1 skip steps 7 and 8
#   WIC_TNA_OPENSIPS       an opensips binary for step 8 (else built from
#                          WIC_TNA_OPENSIPS_SRC or ../shared/opensips/)
#   WIC_TNA_SKIP_APT=1     never call apt-get
# Runs in about 3 minutes on 2 cores once built (the first build takes longer).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${WIC_TNA_BENCH_OUT:-$repo/target/bench}
rounds=${WIC_TNA_BENCH_ROUNDS:-15}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export WIC_TNA_BENCH_OUT=$out WIC_TNA_BENCH_ROUNDS=$rounds
rm -f "$out"/{meta,verify,peer,e2e,opensips,memory,scale}.txt "$out/table.md"

step() { printf '\n==> %s\n' "$*"; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

step "packages"
pkgs=(libjwt-dev libssl-dev gcc libc6-dev python3 pkg-config sip-tester)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ -n "${WIC_TNA_SKIP_APT:-}" ] && { echo "bench.sh: missing ${missing[*]} and WIC_TNA_SKIP_APT is set" >&2; exit 1; }
  echo "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "present: ${pkgs[*]}"
fi
# perf, for the in-situ profile of step 7: optional (without it, or where
# it cannot record, that row is left out)
if ! command -v perf >/dev/null 2>&1 && [ -z "${WIC_TNA_SKIP_APT:-}" ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq linux-perf >/dev/null 2>&1 \
    || echo "bench.sh: linux-perf not installed: no in-situ profile"
fi

step "build"
cargo build --release
cargo bench --no-run

libjwt_ver=$(dpkg-query -W -f='${Version}' libjwt-dev 2>/dev/null | sed 's/-[^-]*$//')
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1)"
  echo "kernel=$(uname -sr)"
  echo "rustc=$(rustc --version)"
  echo "libjwt=${libjwt_ver:-?}"
  echo "openssl=$(openssl version 2>/dev/null | awk '{print $2}')"
  echo "kamailio=$(/usr/sbin/kamailio -v 2>/dev/null | sed -n 's/^version: kamailio \([0-9.]*\).*/\1/p' | head -n1)"
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ modified)')"
  echo "command=bash scripts/bench.sh"
} > "$out/meta.txt"

step "full verify vs floor; refresh path (cargo bench --bench verify)"
cargo bench --bench verify

step "scale (cargo bench --bench scale)"
cargo bench --bench scale

step "memory (cargo bench --bench memory)"
cargo bench --bench memory

step "peer: libjwt ${libjwt_ver} vs wic_tna_verify (benches/peer/peer.c)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
keys=$repo/tests/fixtures/keys
peer=$tmp/peer
mkdir -p "$peer"
# The example configuration, absolute key paths, verified-token cache off.
{ echo "verified_cache_size = 0"; sed "s#\.\./tests/fixtures/keys#$keys#g" config/wic-tna.toml; } > "$peer/wic-tna.toml"
# Same token shape as benches/common: typ JWT (libjwt 1.x refuses others), 50 minutes left.
while IFS=: read -r alg priv pub kid; do
  ./target/release/wic-tna mint --key "$keys/$priv" --alg "$alg" --kid "$kid" --typ JWT \
    --iss https://wwsf.socialnet.example --impi alice@socialnet.ims.example.net \
    --impu sip:alice@socialnet.ims.example.net --sub user-1 \
    --scope "openid webrtc-ims-client-access-to-ims" --lifetime 3000 > "$peer/$alg.jwt"
  cp "$keys/$pub" "$peer/$alg.key"
done <<'EOF'
HS256:issuer-a-hmac.secret:issuer-a-hmac.secret:a-hs256
RS256:issuer-a-rsa.key:issuer-a-rsa.pub.pem:a-rsa
PS256:issuer-a-rsa.key:issuer-a-rsa.pub.pem:a-rsa
ES256:issuer-a-p256.key:issuer-a-p256.pub.pem:a-es256
EdDSA:issuer-a-ed25519.key:issuer-a-ed25519.pub.pem:a-ed
EOF
gcc -O2 -Wall -Wextra -o "$out/peer" benches/peer/peer.c -Iinclude \
  -DPEER_LIBJWT_VERSION="\"${libjwt_ver:-1.x}\"" \
  -L"$repo/target/release" -lwic_tna -ljwt -lcrypto -Wl,-rpath,"$repo/target/release"
"$out/peer" "$peer" "$rounds" "$out/peer.txt"

step "end to end: Kamailio eP-CSCF, CPU per REGISTER"
if [ -n "${WIC_TNA_BENCH_NO_E2E:-}" ]; then
  echo "skipped (WIC_TNA_BENCH_NO_E2E)"
  printf 'measured 0\nreason skipped_(WIC_TNA_BENCH_NO_E2E)\n' > "$out/e2e.txt"
else
  python3 benches/e2e/register_cpu.py --out "$out/e2e.txt" \
    || { echo "end-to-end measurement failed: not measured"; printf 'measured 0\nreason run_failed\n' > "$out/e2e.txt"; }
fi

step "end to end: OpenSIPS eP-CSCF, CPU per REGISTER"
os_src=${WIC_TNA_OPENSIPS_SRC:-}
if [ -z "$os_src" ] && [ -d "$repo/../shared/opensips" ]; then
  os_src=$(cd "$repo/../shared/opensips" && pwd)
fi
if [ -n "${WIC_TNA_BENCH_NO_E2E:-}" ]; then
  echo "skipped (WIC_TNA_BENCH_NO_E2E)"
  printf 'measured 0\nreason skipped_(WIC_TNA_BENCH_NO_E2E)\n' > "$out/opensips.txt"
elif [ -z "${WIC_TNA_OPENSIPS:-}" ] && [ -z "$os_src" ]; then
  echo "skipped: no WIC_TNA_OPENSIPS and no ../shared/opensips/"
  printf 'measured 0\nreason no_OpenSIPS_(WIC_TNA_OPENSIPS_or_../shared/opensips/)\n' > "$out/opensips.txt"
elif ! os_bin=${WIC_TNA_OPENSIPS:-$(bash opensips-example/module/build.sh --opensips-src "$os_src" --opensips-only | tail -n 1)} \
     || ! bash opensips-example/module/build.sh ${os_src:+--opensips-src "$os_src"} >/dev/null; then
  echo "building OpenSIPS or its module failed: not measured"
  printf 'measured 0\nreason build_failed\n' > "$out/opensips.txt"
else
  WIC_TNA_OPENSIPS=$os_bin python3 tests/e2e_opensips/bench_register_cpu.py --out "$out/opensips.txt" \
    || { echo "OpenSIPS end-to-end measurement failed: not measured"; printf 'measured 0\nreason run_failed\n' > "$out/opensips.txt"; }
fi

step "table"
python3 benches/table.py "$out" | tee "$out/table.md"
