#!/usr/bin/env bash
# The full-size Redis Sentinel failover drill (issue #14): the same drill as
# crates/cli/tests/sentinel.rs — a private redis-server master + replica + three sentinels on free
# loopback ports, one hlbot worker on the sentinel:// URL draining acks_late tasks, the master
# SIGKILLed half-way — with more tasks (default 50 000; CI runs 5 000).
#
#   scripts/sentinel-drill.sh [TASKS] [ROUNDS]
#
# Prints one `sentinel drill: tasks N, succeeded …, lost …, ran twice …, replica promoted …s`
# line per round; exits non-zero if any round loses a task. Needs redis-server (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tasks="${1:-50000}"
rounds="${2:-1}"
command -v redis-server >/dev/null || { echo "redis-server missing (run scripts/setup.sh)" >&2; exit 77; }
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for ((i = 1; i <= rounds; i++)); do
  rc=0
  HLBOT_SENTINEL_DRILL_TASKS="$tasks" CI=true \
    cargo test -q -p hlbot-cli --test sentinel -- --nocapture >"$log" 2>&1 || rc=$?
  grep -E '^sentinel drill:|panicked|timed out' "$log" || true
  [ "$rc" -eq 0 ] || { echo "round $i failed (exit $rc)" >&2; exit 1; }
done
