#!/usr/bin/env bash
# Long runs of the fuzz targets: property tests (proptest, stable toolchain) over every parser of
# untrusted bytes. The test suite runs each with proptest's default 256 cases; this runs them with
# PROPTEST_CASES (default 20000) each, under a wall-clock limit (a hang fails) and an
# address-space limit (an over-allocation aborts and fails). Prints cases per target.
#
#   scripts/fuzz.sh                      # all targets
#   PROPTEST_CASES=100000 FUZZ_SECONDS=1800 scripts/fuzz.sh captions
#
# A failure prints proptest's minimal failing input: make it a named regression test next to the
# property (see the regression_* tests) and fix the parser.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=/dev/null
source scripts/env.sh

CASES="${PROPTEST_CASES:-20000}"
LIMIT="${FUZZ_SECONDS:-900}"          # per target
MEM_KIB="${FUZZ_MEM_KIB:-8388608}"   # 8 GiB of address space per target

# name | cargo test arguments | properties in the target
TARGETS=(
  "envelope|-p hlbot-proto --test fuzz|5"
  "captions|-p hlbot-youtube --test fuzz|6"
  "pdf-protocol|-p hlbot-pdf --lib child::fuzz|4"
  "pdf-documents|-p hlbot-pdf --test pdf mutants::damaged|1"
)

want="${1:-}"
echo "building the fuzz targets..."
for t in "${TARGETS[@]}"; do
  IFS='|' read -r name args _ <<<"$t"
  [[ -n "$want" && "$want" != "$name" ]] && continue
  # shellcheck disable=SC2086
  cargo test $args --no-run -q
done

failed=0
printf '%-14s %10s %10s %8s  %s\n' target properties cases seconds result
for t in "${TARGETS[@]}"; do
  IFS='|' read -r name args props <<<"$t"
  [[ -n "$want" && "$want" != "$name" ]] && continue
  log="$(mktemp)"
  start=$(date +%s)
  set +e
  # shellcheck disable=SC2086
  ( ulimit -v "$MEM_KIB"; PROPTEST_CASES="$CASES" timeout --kill-after=10 "$LIMIT" \
      cargo test $args -q -- --test-threads=2 ) >"$log" 2>&1
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))
  case $rc in
    0) result=ok ;;
    124|137) result="HANG (over ${LIMIT}s)"; failed=1 ;;
    *) result="FAILED (exit $rc)"; failed=1 ;;
  esac
  printf '%-14s %10s %10s %8s  %s\n' "$name" "$props" "$((props * CASES))" "$secs" "$result"
  if [[ $rc -ne 0 ]]; then
    grep -E "panicked|minimal failing input|Test failed|memory allocation" -A6 "$log" | head -40 || tail -40 "$log"
  fi
  rm -f "$log"
done
exit $failed
