#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 60): bash fuzz/run.sh [SECONDS]
# Needs cargo-fuzz (cargo install cargo-fuzz); on a stable toolchain
# RUSTC_BOOTSTRAP=1 lets it use the sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
bash fuzz/seed.sh
export RUSTC_BOOTSTRAP=1
for t in header verify config scscf; do
  echo "==> fuzz $t for ${SECS}s"
  cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- -max_total_time="$SECS" -max_len=16384 2>&1 \
    > "/tmp/wic-tna-fuzz-$t.log" || { tail -n 40 "/tmp/wic-tna-fuzz-$t.log"; exit 1; }
  grep -E "^Done [0-9]+ runs|stat::number_of_executed_units" "/tmp/wic-tna-fuzz-$t.log" | tail -1
done
