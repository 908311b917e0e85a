#!/usr/bin/env bash
# Install everything wic-tna's demo and tests need on a fresh Debian
# bookworm machine, then build the library and CLI. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# kamailio-ims-modules + kamailio-presence-modules: the IMS S-CSCF of the
# tests and the demo (kamailio-example/ims/); chromium: the browser WICs
APT_PKGS=(kamailio kamailio-python3-modules kamailio-websocket-modules kamailio-tls-modules
          kamailio-ims-modules kamailio-presence-modules sip-tester
          valgrind gcc make pkg-config python3 openssl dpkg-dev libc6-dev
          redis-server chromium)
# the Debian packages (tests/packaging/run.sh): debhelper build, lintian
APT_PKGS+=(debhelper dh-python lintian)
# Kamailio 5.8 (make) and 6.0 (CMake) built from source with the example
# cfgs' modules (tests/kamailio_versions/), and the module README from its
# DocBook (kamailio-example/module/build.sh --readme)
APT_PKGS+=(bison flex cmake libssl-dev libunistring-dev libreadline-dev
           xsltproc docbook-xsl docbook-xml lynx)
# OpenSIPS 3.6.8 built from ../shared/opensips/ with the example's modules
# (opensips-example/module/build.sh): the python module, tls_openssl, the
# menuconfig of its Makefile
APT_PKGS+=(libncurses-dev python3-dev)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Kamailio's Debian package enables a system service on install; the demo
# and tests run their own instances on other ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet kamailio 2>/dev/null; then
  $SUDO systemctl stop kamailio || true
fi
# Prometheus 2.42 (promtool: the alert rule tests of monitoring/; prometheus:
# the scrape test, tests/e2e/test_metrics.py, which starts its own on
# loopback with its own configuration and data directory). Without the
# recommended node exporter; the package's own service (0.0.0.0:9090) is
# stopped and disabled: nothing here needs it.
if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "install ok installed"; then
  echo "==> apt-get install --no-install-recommends prometheus"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/prometheus ]; then
    $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  fi
fi

# Python packages for the tests (independent token implementations, a
# WebSocket client, pytest, the Diameter stack of the HSS fixture), into
# the python3 first on PATH.
PY=python3
if ! $PY -c 'import jwt, jwcrypto, websockets, pytest, cryptography, diameter' 2>/dev/null; then
  echo "==> pip install PyJWT jwcrypto websockets pytest python-diameter"
  $PY -m pip install -q --disable-pip-version-check 'PyJWT[crypto]>=2.8' 'jwcrypto>=1.5' \
      'websockets>=12' 'pytest>=7' 'python-diameter==0.9.0'
fi

# opensips-cli (PyPI opensipscli), the OpenSIPS operators' MI client, for
# the e2e test that drives the native OpenSIPS module as they would
# (tests/e2e_opensips/test_opensips_native.py); in its own venv under
# build/, as it brings SQLAlchemy and PyMySQL along.
if [ ! -x build/opensips-cli-venv/bin/opensips-cli ]; then
  echo "==> opensips-cli (pip opensipscli) into build/opensips-cli-venv"
  rm -rf build/opensips-cli-venv
  $PY -m venv build/opensips-cli-venv
  build/opensips-cli-venv/bin/pip install -q --disable-pip-version-check 'opensipscli==0.4.1'
fi

# The browser WICs' JavaScript (JsSIP, SIP.js, playwright-core driving
# Debian's chromium), pinned by tests/browser/package-lock.json.
# Needs Node.js 20 or later (playwright-core 1.65); bookworm's nodejs is 18,
# NodeSource's 20 is what this project's machines have.
if [ -f tests/browser/package-lock.json ] \
   && ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.wic-tna-lock; then
  echo "==> npm ci (tests/browser)"
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
  cp tests/browser/package-lock.json tests/browser/node_modules/.wic-tna-lock
fi

# The test authorization server of tests/e2e/test_oidc_provider.py (the
# certified oidc-provider, pinned by tests/as/package-lock.json).
if [ -f tests/as/package-lock.json ] \
   && ! cmp -s tests/as/package-lock.json tests/as/node_modules/.wic-tna-lock; then
  echo "==> npm ci (tests/as)"
  npm ci --prefix tests/as --no-audit --no-fund --loglevel=error
  cp tests/as/package-lock.json tests/as/node_modules/.wic-tna-lock
fi

# rustfmt and clippy (the test command checks formatting and lints) and
# cargo-fuzz (the fuzz smoke run) for the one rustup toolchain.
for c in rustfmt clippy; do
  cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$c"
done
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked -q

echo "==> cargo build --release"
cargo build --release --locked -q 2>/dev/null || cargo build --release -q
