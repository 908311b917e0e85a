#!/usr/bin/env bash
# Run every test of wic-tna (and the demo): formatting and lints, Rust unit
# and integration tests (tokens from PyJWT and our own minting), a fuzz smoke
# run of every target, the C harness (plain, ASan/UBSan, valgrind),
# the Kamailio end-to-end tests, the load test (quick) and the Debian
# package test.
# Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "==> cargo fmt --check, cargo clippy (warnings are errors)"
cargo fmt --check
cargo clippy --all-targets --release -q -- -D warnings

echo "==> cargo test"
cargo test --release 2>&1 | tee /tmp/wic-tna-cargo-test.log
grep -q "test result: FAILED" /tmp/wic-tna-cargo-test.log && exit 1

echo "==> cargo bench --no-run (benches compile; they are timed by scripts/bench.sh, not here)"
cargo bench --no-run

echo "==> Prometheus alert rules: promtool check + unit tests (monitoring/)"
bash monitoring/test.sh

echo "==> fuzz smoke: every target 20 s (bash fuzz/run.sh 600 for a real run)"
bash fuzz/run.sh --smoke 20

if [ -f tests/c/run.sh ]; then
  echo "==> C harness"
  bash tests/c/run.sh
fi

if [ -f tests/e2e/run.sh ]; then
  echo "==> Kamailio end-to-end"
  bash tests/e2e/run.sh
fi
if [ -f tests/kamailio_versions/run.sh ]; then
  echo "==> Kamailio versions: the module and the e2e core cases on 5.6.3 (Debian), 5.8.8 (make) and 6.0.7 (CMake; skipped without ../shared/kamailio)"
  bash tests/kamailio_versions/run.sh
fi
if [ -f tests/load/run.sh ]; then
  echo "==> Kamailio under load with faults (quick: 100 REGISTER/s, every fault; full: bash tests/load/run.sh)"
  bash tests/load/run.sh --quick
fi
echo "==> the demo (the README's run command: it fails unless the WIC registers)"
bash scripts/demo.sh

echo "==> OpenSIPS handler (no OpenSIPS needed) and end-to-end, native module and python (OpenSIPS built from ../shared/opensips, or WIC_TNA_OPENSIPS)"
python3 -m pytest -q tests/e2e_opensips/test_handler.py
bash tests/e2e_opensips/run.sh

if [ -f tests/packaging/run.sh ]; then
  echo "==> Debian package: build, install, use"
  bash tests/packaging/run.sh
fi
echo "==> all tests passed"
