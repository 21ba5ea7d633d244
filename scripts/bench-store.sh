#!/usr/bin/env bash
# Store benchmarks (not a test; never run in CI). Prints ONE table and keeps the raw JSON in
# $BENCH_OUT (default target/bench/store.jsonl):
#   - the worker draining N preloaded echo tasks with task history off (--no-history), on
#     SQLite, on PostgreSQL: drain rate (first→last result), and task-run rows written per
#     second (first→last run landing in the database; each row carries its state changes)
#   - `hlbot library search` over S strategies: in-process query p50/p95 per query shape, and
#     the whole `hlbot library search` command (process start included), both backends
#
#   scripts/bench-store.sh [-n 50000] [-s 100000] [--debug] [--quick]
#
# Redis: a private redis-server on 127.0.0.1:$BENCH_PORT (default 6398), started and stopped
# here. PostgreSQL: the machine's on 127.0.0.1:5432 (user postgres), a database of its own
# created and dropped here. --debug uses the debug build (faster to build, slower to run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=/dev/null
source "$ROOT/scripts/env.sh"

N=50000
S=100000
PROFILE=release
while [ $# -gt 0 ]; do
    case "$1" in
        -n) N="$2"; shift 2 ;;
        -s) S="$2"; shift 2 ;;
        --debug) PROFILE=debug; shift ;;
        --quick) N=5000; S=10000; shift ;;
        *) echo "usage: $0 [-n N] [-s STRATEGIES] [--debug] [--quick]" >&2; exit 2 ;;
    esac
done

OUT="${BENCH_OUT:-$ROOT/target/bench/store.jsonl}"
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
WORK="$(mktemp -d /tmp/hlbot-bench-store.XXXXXX)"
LOG="$WORK/bench.log"
REDIS_PID=""
PGDB="hlbot_bench_$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PSQL=(psql -h 127.0.0.1 -U postgres -d postgres -qAt)

cleanup() {
    [ -n "$REDIS_PID" ] && { kill -TERM "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; }
    "${PSQL[@]}" -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

FLAG=()
[ "$PROFILE" = release ] && FLAG=(--release)
echo "building $PROFILE binaries (hlbot, bench, store_bench)..." >&2
(cd "$ROOT" && cargo build "${FLAG[@]}" -q -p hlbot-cli --bin hlbot \
    && cargo build "${FLAG[@]}" -q -p hlbot-engine --example bench \
    && cargo build "${FLAG[@]}" -q -p hlbot-store --example store_bench)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
HLBOT="$TARGET/hlbot"
BENCH="$TARGET/examples/bench"
SBENCH="$TARGET/examples/store_bench"

PORT="${BENCH_PORT:-6398}"
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    --daemonize no > "$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 50); do redis-cli -p "$PORT" ping > /dev/null 2>&1 && break; sleep 0.1; done
R="redis://127.0.0.1:$PORT/0"
"${PSQL[@]}" -c "CREATE DATABASE $PGDB" >/dev/null
PG="postgres://postgres@127.0.0.1:5432/$PGDB"
unset DATABASE_URL

fresh_prefix() { echo "bs:$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n'):"; }
record() { echo "{\"label\": \"$1\", \"result\": $2}" >> "$OUT"; }

# drain LABEL DATADIR [DB_URL|-] [WORKER ARGS...]: preload N, start a worker, time the drain;
# with a database, also time the task-run rows landing.
drain() {
    local label="$1" data="$2" url="$3"; shift 3
    local p rows_pid="" json
    p=$(fresh_prefix)
    local db=()
    [ "$url" != - ] && db=(--database-url "$url")
    echo "  $label" >&2
    if [ "$url" != - ]; then
        HLBOT_DATA_DIR="$data" "$SBENCH" rows --url "$url" -n "$N" --timeout 900 \
            > "$WORK/rows.json" 2>> "$LOG" &
        rows_pid=$!
    fi
    json="$(HLBOT_DATA_DIR="$data" "$BENCH" drain --broker "$R" --prefix "$p" -n "$N" --timeout 900 -- \
        "$HLBOT" --broker "$R" --key-prefix "$p" "${db[@]}" -l warn worker -Q bench \
        "${FLAGS[@]}" "$@" 2>> "$LOG")" \
        || { echo "FAILED: $label" >&2; tail -30 "$LOG" >&2; exit 1; }
    record "$label" "$json"
    if [ -n "$rows_pid" ]; then
        wait "$rows_pid" || { echo "FAILED: rows for $label" >&2; tail -30 "$LOG" >&2; exit 1; }
        record "rows: $label" "$(cat "$WORK/rows.json")"
    fi
    redis-cli -u "$R" flushdb > /dev/null
}

SQ="$WORK/sqlite"
# Two worker shapes: the most the box can drain (-c 8 -m 16: worker and Redis fill both cores,
# so the history's CPU comes straight out of the drain) and the worker's defaults (-c 2 -m 1).
for shape in "-c 8 -m 16" "-c 2 -m 1"; do
    read -r _ c _ m <<< "$shape"
    FLAGS=(-c "$c" --prefetch-multiplier "$m")
    echo "drain ($N echo tasks, $shape)..." >&2
    drain "[$shape] history off (--no-history)" "$WORK/off" - --no-history
    rm -rf "$SQ"
    drain "[$shape] history on: SQLite" "$SQ" "sqlite://$SQ/library.sqlite3?mode=rwc"
    psql -h 127.0.0.1 -U postgres -d "$PGDB" -qAt -c "TRUNCATE task_runs" > /dev/null 2>&1 || true
    drain "[$shape] history on: PostgreSQL" "$WORK/pg" "$PG"
done

echo "search ($S strategies)..." >&2
for b in sqlite postgres; do
    url="$PG"
    [ $b = sqlite ] && url="sqlite://$SQ/library.sqlite3?mode=rwc"
    record "search: $b" "$("$SBENCH" search --url "$url" -n "$S" --runs 200 2>> "$LOG")"
    # The whole command as a user runs it (process start, pool, migration check, query).
    t0=$(date +%s.%N)
    for _ in $(seq 20); do
        "$HLBOT" --database-url "$url" library search "rsi divergence" --instrument EUR/USD \
            --timeframe 1H > /dev/null
    done
    t1=$(date +%s.%N)
    record "cli: $b" "{\"runs\": 20, \"mean_ms\": $(echo "($t1 - $t0) * 1000 / 20" | bc -l)}"
done

python3 - "$OUT" "$N" "$S" "$PROFILE" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line); rows[r['label']] = r['result']
n, s, profile = sys.argv[2], sys.argv[3], sys.argv[4]
print(f"| measure ({profile} build) | value |")
print("| --- | --- |")
for shape in ('-c 8 -m 16', '-c 2 -m 1'):
    off = rows[f'[{shape}] history off (--no-history)']['rate']
    for b in ('SQLite', 'PostgreSQL'):
        on = rows[f'[{shape}] history on: {b}']['rate']
        print(f"| `{shape}`: drain {n} tasks/s, history on {b} vs off | {on:,.0f} vs {off:,.0f} ({(on/off-1)*100:+.1f} %) |")
        w = rows[f'rows: [{shape}] history on: {b}']
        print(f"| `{shape}`: task-run rows written/s on {b} (one row per task; its state changes appended) | {w['runs_per_sec']:,.0f} rows/s = {w['facts_per_sec']:,.0f} state changes/s ({w['runs']} runs) |")
for b in ('sqlite', 'postgres'):
    for q in rows[f'search: {b}']['queries']:
        what = ' '.join(x for x in [repr(q['text']) if q['text'] else '',
                                    *(f"--{k} {q[k]}" for k in ('instrument', 'timeframe', 'indicator') if q[k])] if x)
        print(f"| search {s} strategies on {b}: {what} (hits {q['hits']}) | p50 {q['p50_ms']:.2f} ms, p95 {q['p95_ms']:.2f} ms |")
    print(f"| `hlbot library search` whole command on {b} (mean of 20) | {rows['cli: ' + b]['mean_ms']:.1f} ms |")
PY
