#!/usr/bin/env bash
# Run every fuzz target in turn.
#
#   bash fuzz/run.sh [SECONDS]          each target SECONDS (default 60); the
#                                       whole libFuzzer log of a failing target
#                                       is printed
#   bash fuzz/run.sh --smoke SECONDS    each target SECONDS, for CI: one line
#                                       per target, the last 40 log lines of a
#                                       failing one, and a closing
#                                       "fuzz: N passed, N failed" line
#
# Every target runs, even after one fails; the exit status is 1 if any
# failed. A crash leaves its input in fuzz/artifacts/<target>/ and the log
# in $WIC_TNA_FUZZ_LOGS (default /tmp/wic-tna-fuzz)/<target>.log.
#
# Needs cargo-fuzz (installed with `cargo install cargo-fuzz --locked` when
# missing). On a stable toolchain RUSTC_BOOTSTRAP=1 lets it pass the
# sanitizer flags; nightly is not needed.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: bash fuzz/run.sh [SECONDS] | --smoke SECONDS" >&2; exit 2; }
smoke=0
secs=60
case "${1:-}" in
  --smoke) smoke=1; [ $# -eq 2 ] || usage; secs=$2 ;;
  "") [ $# -eq 0 ] || usage ;;
  *) [ $# -eq 1 ] || usage; secs=$1 ;;
esac
[[ $secs =~ ^[1-9][0-9]*$ ]] || usage

targets=(header verify config scscf)
logs=${WIC_TNA_FUZZ_LOGS:-/tmp/wic-tna-fuzz}
mkdir -p "$logs"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
bash fuzz/seed.sh
export RUSTC_BOOTSTRAP=1
# Build every target once, so that the time given is fuzzing time.
echo "==> building the fuzz targets"
cargo fuzz build --fuzz-dir fuzz >"$logs/build.log" 2>&1 \
  || { tail -n 40 "$logs/build.log" >&2; echo "fuzz: build failed (log: $logs/build.log)" >&2; exit 1; }

passed=0
failed=()
for t in "${targets[@]}"; do
  log=$logs/$t.log
  [ "$smoke" -eq 1 ] || echo "==> fuzz $t for ${secs}s"
  start=$SECONDS
  # libFuzzer writes to stderr: both streams into the log.
  if cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
       -max_total_time="$secs" -max_len=16384 -timeout=60 >"$log" 2>&1; then
    rc=0
  else
    rc=$?
  fi
  # The run count: the "Done N runs" line, else the last status line.
  runs=$(grep -Eo '^Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' | tail -n1 || true)
  [ -n "$runs" ] || runs=$(grep -Eo '^#[0-9]+' "$log" | tr -d '#' | tail -n1 || true)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $t: ok, ${runs:-?} runs in $((SECONDS - start)) s"
  else
    failed+=("$t")
    echo "fuzz $t: FAILED (exit $rc) after ${runs:-?} runs; log: $log"
    if [ "$smoke" -eq 1 ]; then tail -n 40 "$log"; else cat "$log"; fi
    ls fuzz/artifacts/"$t"/ 2>/dev/null | sed "s#^#  artifact: fuzz/artifacts/$t/#" || true
  fi
done

[ "$smoke" -eq 0 ] || echo "fuzz: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: failed: ${failed[*]}" >&2; exit 1; }
