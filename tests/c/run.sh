#!/usr/bin/env bash
# The C harness (tests/c/harness.c) against target/release/libwic_tna.so,
# three times:
#   1. plain build (cc -std=c11 -Wall -Wextra -Werror -pedantic);
#   2. ASan + UBSan build, LeakSanitizer on (ASAN_OPTIONS=detect_leaks=1:
#      it works with the Rust library and needs no suppressions), UBSan
#      halting on the first report;
#   3. the plain build under valgrind memcheck (definite leaks are errors;
#      no suppressions: none were needed).
# Each run gets a fresh cases file from tests/cases/make_cases.py, since the
# tokens' times are relative to when it ran.
#
#   bash tests/c/run.sh        (from anywhere; builds into tests/c/build/)
#
# Exit status 0 when every step passed. Full outputs: tests/c/build/*.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=tests/c/build
LIB=target/release/libwic_tna.so
CONFIG=config/wic-tna.toml
CASES=$OUT/cases.tsv
mkdir -p "$OUT"

# The library: built when missing or older than its sources.
if [ ! -f "$LIB" ] || [ -n "$(find src Cargo.toml Cargo.lock build.rs -newer "$LIB" -print -quit 2>/dev/null)" ]; then
  echo "==> cargo build --release"
  cargo build --release || { echo "tests/c/run.sh: cargo build --release failed" >&2; exit 1; }
fi
[ -f "$LIB" ] || { echo "tests/c/run.sh: $LIB is missing after the build" >&2; exit 1; }
python3 -c 'import jwt' 2>/dev/null || {
  echo "tests/c/run.sh: python3 lacks PyJWT (bash scripts/install-deps.sh installs it)" >&2
  exit 1
}

CFLAGS=(-std=c11 -Wall -Wextra -Werror -pedantic -Iinclude)
LDFLAGS=(-L"$ROOT/target/release" -lwic_tna "-Wl,-rpath,$ROOT/target/release" -pthread)
SANITIZE=(-fsanitize=address,undefined -fno-omit-frame-pointer -g)

failed=()
summary=()

# run_step NAME LOG SHOW_ALL COMMAND...: fresh cases, run, show the output
# (all of it, or without the per-case detail lines), record the result.
run_step() {
  local name=$1 log=$2 show_all=$3
  shift 3
  echo "==> $name"
  if ! python3 tests/cases/make_cases.py "$CASES"; then
    failed+=("$name: make_cases.py failed")
    return
  fi
  local start=$SECONDS rc
  "$@" >"$log" 2>&1
  rc=$?
  if [ "$show_all" = 1 ]; then
    cat "$log"
  else
    # Sections, failures, the summary and every sanitizer/valgrind line;
    # not the "ok" lines and the printed identities (see the log).
    grep -v -E '^(ok   |       )' "$log"
  fi
  local last
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1)
  summary+=("$(printf '%-22s %-26s exit %d, %d s' "$name:" "${last:-no summary line}" "$rc" $((SECONDS - start)))")
  if [ "$rc" -ne 0 ] || [ -z "$last" ]; then
    failed+=("$name (exit $rc; see $log)")
  fi
}

echo "==> compile (plain)"
if cc "${CFLAGS[@]}" -o "$OUT/harness" tests/c/harness.c "${LDFLAGS[@]}"; then
  run_step "plain" "$OUT/plain.log" 1 "$OUT/harness" "$CONFIG" "$CASES"
else
  failed+=("compile (plain)")
fi

echo "==> compile (ASan + UBSan)"
if cc "${CFLAGS[@]}" "${SANITIZE[@]}" -o "$OUT/harness-asan" tests/c/harness.c "${LDFLAGS[@]}"; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run_step "ASan+UBSan+LSan" "$OUT/asan.log" 0 "$OUT/harness-asan" "$CONFIG" "$CASES"
else
  failed+=("compile (ASan + UBSan)")
fi

if command -v valgrind >/dev/null; then
  if [ -x "$OUT/harness" ]; then
    # --show-leak-kinds=definite: the "possibly lost" blocks are the
    # library's interned reason strings (a bounded static table, see
    # src/ffi/result.rs leak_z) and, in the fork test's child, the parent's
    # live objects; neither is a leak, and neither fails the run.
    run_step "valgrind" "$OUT/valgrind.log" 0 \
      valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
      --show-leak-kinds=definite "$OUT/harness" "$CONFIG" "$CASES"
  fi
else
  failed+=("valgrind: not installed")
fi

echo
echo "==> C harness summary"
for s in "${summary[@]}"; do echo "    $s"; done
if [ ${#failed[@]} -ne 0 ]; then
  for f in "${failed[@]}"; do echo "FAILED: $f"; done
  exit 1
fi
echo "all C harness runs passed"
