#!/usr/bin/env bash
# Dashboard benchmark (not a test; never run in CI), for BENCHMARKS.md:
#   - 1 000 000 task runs in the store (SQLite, bulk-inserted), then the History page's latency:
#     the newest page, a deep page (cursor near the oldest run) and a filtered page, p50/p95
#     over R requests each (whole HTTP request, measured by curl)
#   - RSS of `hlbot dashboard` and of Flower 2.2 (from the venv) after both were fed the same
#     events: E tasks run by an hlbot worker with task events on
#
#   scripts/bench-dashboard.sh [-n 1000000] [-e 20000] [-r 50] [--debug]
#
# Redis: a private redis-server on 127.0.0.1:$BENCH_PORT (default 6397), started and stopped
# here (Flower and the dashboard both read its db 0 with no key prefix).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=/dev/null
source "$ROOT/scripts/env.sh"

N=1000000
E=20000
R=50
PROFILE=release
while [ $# -gt 0 ]; do
    case "$1" in
        -n) N="$2"; shift 2 ;;
        -e) E="$2"; shift 2 ;;
        -r) R="$2"; shift 2 ;;
        --debug) PROFILE=debug; shift ;;
        *) echo "usage: $0 [-n RUNS] [-e EVENT_TASKS] [-r REQUESTS] [--debug]" >&2; exit 2 ;;
    esac
done

PORT="${BENCH_PORT:-6397}"
DPORT=5591
FPORT=5592
BIN="$ROOT/target/$PROFILE/hlbot"
[ "$PROFILE" = release ] && (cd "$ROOT" && cargo build --release -q -p hlbot-cli)
[ -x "$BIN" ] || { echo "no $BIN (cargo build${PROFILE:+ --$PROFILE})" >&2; exit 1; }
WORK="$(mktemp -d /tmp/hlbot-bench-dash.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

redis-server --port "$PORT" --save '' --appendonly no --dir "$WORK" --daemonize no \
    > "$WORK/redis.log" 2>&1 &
PIDS+=($!)
export REDIS_URL="redis://127.0.0.1:$PORT/0" HLBOT_DATA_DIR="$WORK/data"
unset DATABASE_URL HLBOT_CONFIG HLBOT_KEY_PREFIX
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# --- 1. N task runs in the store ------------------------------------------------------------
"$BIN" db migrate >/dev/null
DB="$HLBOT_DATA_DIR/library.sqlite3"
t0=$(date +%s.%N)
"$HLBOT_PYTHON" - "$DB" "$N" <<'PY'
import sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
now = time.time()
# One run every 0.25 s going back; one in 20 failed, names and workers from small sets.
c.execute("""
WITH RECURSIVE i(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM i WHERE x < ?)
INSERT INTO task_runs (task_id, name, queue, state, worker, retries, args, kwargs,
    received_at, started_at, finished_at, runtime, error_type, error_message, updated_at, transitions)
SELECT printf('%08x-0000-4000-8000-%012x', x, x),
       CASE x % 4 WHEN 0 THEN 'process_pdf_document' WHEN 1 THEN 'process_youtube_video'
                  WHEN 2 THEN 'extract_trading_strategy' ELSE 'hlbot.debug.echo' END,
       'default', CASE WHEN x % 20 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END,
       'w' || (x % 8) || '@bench', 0, '[' || x || ']', '{}',
       ? - x * 0.25 - 1, ? - x * 0.25 - 0.9, ? - x * 0.25, 0.1,
       CASE WHEN x % 20 = 0 THEN 'ValueError' END, CASE WHEN x % 20 = 0 THEN 'bench' END,
       ? - x * 0.25, ''
FROM i""", (n - 1, now, now, now, now))
c.commit()
print(c.execute("SELECT COUNT(*) FROM task_runs").fetchone()[0], "runs")
PY
echo "filled $N runs in $(echo "$(date +%s.%N) - $t0" | bc) s" >&2

# --- 2. the dashboard and Flower, the same events -------------------------------------------
"$BIN" -l warn dashboard --port "$DPORT" --max-tasks 10000 > "$WORK/dash.log" 2>&1 &
DPID=$!; PIDS+=($DPID)
"$HLBOT_PYTHON" -m celery --broker "$REDIS_URL" flower --port="$FPORT" --address=127.0.0.1 \
    --max_tasks=10000 > "$WORK/flower.log" 2>&1 &
FPID=$!; PIDS+=($FPID)
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$DPORT/healthz" >/dev/null && curl -sf "http://127.0.0.1:$FPORT/healthcheck" >/dev/null && break
    sleep 0.2
done
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
echo "idle RSS: dashboard $(rss $DPID) MB, flower $(rss $FPID) MB" >&2
"$BIN" -l warn worker -Q default -c 8 -E -n bench@%h --no-history > "$WORK/worker.log" 2>&1 &
WPID=$!; PIDS+=($WPID)
"$HLBOT_PYTHON" - "$REDIS_URL" "$E" "$ROOT" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
from compat.app import make_app
app = make_app(broker=sys.argv[1], prefix='')
app.conf.task_send_sent_event = True
n = int(sys.argv[2])
with app.producer_or_acquire() as p:
    for i in range(n):
        app.send_task('hlbot.debug.echo', args=[i], queue='default', producer=p)
PY
# Wait for the queue to drain and the last events to land.
for _ in $(seq 600); do
    [ "$(redis-cli -p "$PORT" llen default)" = 0 ] && break; sleep 0.5
done
sleep 3
DASH_RSS=$(rss $DPID); FLOWER_RSS=$(rss $FPID)
SEEN=$(curl -s "http://127.0.0.1:$DPORT/metrics" | awk '/^celery_task_succeeded_total/ {s += $2} END {print s + 0}')

# --- 3. History latency at N runs --------------------------------------------------------------
OLDEST=$("$HLBOT_PYTHON" -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT MIN(updated_at) + 60 FROM task_runs').fetchone()[0])" "$DB")
lat() {
    local url="$1"
    for _ in $(seq "$R"); do curl -s -o /dev/null -w '%{time_total}\n' "$url"; done | sort -n |
        awk '{a[NR] = $1} END {printf "p50 %.1f ms, p95 %.1f ms", a[int(NR * 0.5) + 1] * 1000, a[int(NR * 0.95)] * 1000}'
}
NEWEST=$(lat "http://127.0.0.1:$DPORT/history")
DEEP=$(lat "http://127.0.0.1:$DPORT/history?before=$OLDEST")
FILTERED=$(lat "http://127.0.0.1:$DPORT/history?state=FAILURE&name=process_pdf_document")
DASH_RSS_AFTER=$(rss $DPID)

cat <<TABLE
| measure ($PROFILE build, $N runs in SQLite, $E tasks of events) | value |
|---|---|
| dashboard RSS after the events | $DASH_RSS MB |
| Flower 2.2 RSS after the same events | $FLOWER_RSS MB |
| dashboard RSS after the history requests | $DASH_RSS_AFTER MB |
| tasks the dashboard counted (celery_task_succeeded_total) | $SEEN |
| History, newest page (50 rows) | $NEWEST |
| History, deepest page (cursor at the oldest run) | $DEEP |
| History, filtered (state + name) | $FILTERED |
TABLE
