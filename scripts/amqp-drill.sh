#!/usr/bin/env bash
# The full-size RabbitMQ fault drill (issue #20): the same drill as crates/cli/tests/amqp_drill.rs
# — a private RabbitMQ node (own node name, free loopback ports, temp data folder; never the
# machine's shared node), acks_late tasks published with confirms and drained by `hlbot worker
# --broker amqp://…` with results in Redis, the worker SIGKILLed three times and the RabbitMQ node
# stopped and started again once on its data folder — with more tasks (default 10 000; CI runs
# 400).
#
#   scripts/amqp-drill.sh [TASKS] [ROUNDS]
#
# Each round also runs the cluster drill (same file): three private nodes joined into one
# cluster, the tasks on a quorum queue through the failover list, the worker's node SIGKILLed,
# restarted, then the node it failed over to SIGKILLed — with TASKS tasks too.
#
# Prints the drill's table and one `amqp drill: tasks N, succeeded …, lost …, committed twice …`
# line per round; exits non-zero if any round loses a task, commits one twice or leaves a message
# in RabbitMQ. HLBOT_AMQP_DRILL_KEEP=1 keeps the node's and workers' logs (their folder is
# printed). Needs RabbitMQ's server scripts in /usr/lib/rabbitmq/bin (or $HLBOT_RABBITMQ_BIN) and
# the shared Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
tasks="${1:-10000}"
rounds="${2:-1}"
[ -x "${HLBOT_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}/rabbitmq-server" ] || {
  echo "rabbitmq-server missing (install rabbitmq-server, or set HLBOT_RABBITMQ_BIN)" >&2; exit 77; }
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for ((i = 1; i <= rounds; i++)); do
  rc=0
  HLBOT_AMQP_DRILL_TASKS="$tasks" HLBOT_AMQP_CLUSTER_TASKS="$tasks" CI=true \
    cargo test -q -p hlbot-cli --test amqp_drill -- --nocapture --test-threads 1 >"$log" 2>&1 || rc=$?
  grep -E '^\||^amqp (cluster )?drill:|panicked|timed out|stalled' "$log" || true
  [ "$rc" -eq 0 ] || { echo "round $i failed (exit $rc)" >&2; exit 1; }
done
