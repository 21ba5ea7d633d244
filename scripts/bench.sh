#!/usr/bin/env bash
# Engine benchmarks, hlbot vs Python Celery 5.7 on one machine (not a test; never run in CI).
# Prints ONE table: enqueue rate, drain rate, enqueue→start latency, idle memory, Redis commands
# per task — each drain row with the SAME worker flags on both sides (-c 2 -m 1, -c 2 -m 4,
# -c 8 -m 16) — then a fleet table: 1, 2 and 4 hlbot worker processes (-c 8 -m 16 each) on one
# Redis, with Redis's own CPU time per task (`INFO cpu` delta / tasks). The raw JSON of every run
# is kept in $BENCH_OUT (default target/bench/engine.jsonl).
#
#   scripts/bench.sh [-n 50000] [--lat-n 500] [--quick] [--no-fleet] [--no-amqp | --amqp-only]
#                    [--debug]
#
# BENCH_HLBOT=PATH measures that hlbot binary (e.g. a copy built before a change) instead of
# building this tree's; BENCH_PORT picks the private redis-server's port. --debug uses (and
# builds) the debug binaries instead of release ones: only to check the script, the numbers
# mean nothing.
#
# RabbitMQ rows (issue #20): the same drain with the tasks on RabbitMQ (`--broker amqp://…`,
# results still in the Redis above) for hlbot and for Celery (`broker_url = amqp://…`, Redis
# result backend), same flags (AMQP_FLAGS), each run in a fresh vhost of the RabbitMQ at
# BENCH_AMQP (default amqp://guest:guest@127.0.0.1:5672, vhosts made and deleted with
# `rabbitmqctl`); skipped with a note when rabbitmqctl cannot reach it.
#
# Redis: a private redis-server on 127.0.0.1:$BENCH_PORT (default 6399) started and stopped by
# this script, so other users of the shared Redis neither slow the numbers down nor show up in
# the INFO commandstats deltas. Set BENCH_REDIS=redis://127.0.0.1:6379/0 to use the shared one
# instead (every run still uses its own fresh key prefix, deleted afterwards).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=/dev/null
source "$ROOT/scripts/env.sh"

N=50000
LAT_N=500
# Worker flags of the drain rows, given to hlbot and Celery alike.
DRAIN_FLAGS=("-c 2 --prefetch-multiplier 1" "-c 2 --prefetch-multiplier 4" "-c 8 --prefetch-multiplier 16")
FLEET_FLAGS="-c 8 --prefetch-multiplier 16"
FLEET=(1 2 4)
# Worker flags of the RabbitMQ drain rows, given to hlbot and Celery alike.
AMQP_FLAGS=("-c 2 --prefetch-multiplier 4" "-c 8 --prefetch-multiplier 16")
REDIS_ROWS=1
AMQP_ROWS=1
PROFILE=release
while [ $# -gt 0 ]; do
    case "$1" in
        -n) N="$2"; shift 2 ;;
        --lat-n) LAT_N="$2"; shift 2 ;;
        --quick) N=5000; LAT_N=100; shift ;;
        --no-fleet) FLEET=(); shift ;;
        --no-amqp) AMQP_ROWS=""; shift ;;
        --amqp-only) REDIS_ROWS=""; FLEET=(); shift ;;
        --debug) PROFILE=debug; shift ;;
        *) echo "usage: $0 [-n N] [--lat-n N] [--quick] [--no-fleet] [--no-amqp | --amqp-only] [--debug]" >&2; exit 2 ;;
    esac
done

OUT="${BENCH_OUT:-$ROOT/target/bench/engine.jsonl}"
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
WORK="$(mktemp -d /tmp/hlbot-bench.XXXXXX)"
unset DATABASE_URL
export HLBOT_DATA_DIR="$WORK/data"   # hlbot's SQLite library, not the user's
LOG="$WORK/bench.log"
REDIS_PID=""
VHOSTS=()

cleanup() {
    local v
    for v in "${VHOSTS[@]}"; do
        rabbitmqctl -q delete_vhost "$v" > /dev/null 2>&1 || true
    done
    if [ -n "$REDIS_PID" ]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$PROFILE" = release ]; then CARGO_PROFILE=(--release); else CARGO_PROFILE=(); fi
# BENCH_HLBOT=/path/to/hlbot: measure that binary instead of building this tree's (before/after).
if [ -n "${BENCH_HLBOT:-}" ]; then
    echo "building the $PROFILE bench tool (hlbot: $BENCH_HLBOT)..." >&2
    (cd "$ROOT" && cargo build "${CARGO_PROFILE[@]}" -q -p hlbot-engine --example bench)
    HLBOT="$BENCH_HLBOT"
else
    echo "building $PROFILE binaries (hlbot, bench)..." >&2
    (cd "$ROOT" && cargo build "${CARGO_PROFILE[@]}" -q -p hlbot-cli && \
        cargo build "${CARGO_PROFILE[@]}" -q -p hlbot-engine --example bench)
    HLBOT="$ROOT/target/$PROFILE/hlbot"
fi
BENCH="$ROOT/target/$PROFILE/examples/bench"
[ "$PROFILE" = release ] || echo "DEBUG BUILD: these numbers only show that the script works" >&2

if [ -z "${BENCH_REDIS:-}" ]; then
    PORT="${BENCH_PORT:-6399}"
    redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$WORK" --daemonize no > "$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 50); do redis-cli -p "$PORT" ping > /dev/null 2>&1 && break; sleep 0.1; done
    BENCH_REDIS="redis://127.0.0.1:$PORT/0"
fi
redis-cli -u "$BENCH_REDIS" ping > /dev/null

# --- the Python side: a Celery app with hlbot.debug.echo, and a send_task loop ----------------
cat > "$WORK/benchapp.py" <<'PY'
"""Celery app for the benchmark: the same `hlbot.debug.echo` task the hlbot worker runs."""
import os
from celery import Celery

_url = os.environ['BENCH_BROKER']
_prefix = os.environ['BENCH_PREFIX']
# BENCH_BACKEND: the Redis result backend when the broker is RabbitMQ.
_backend = os.environ.get('BENCH_BACKEND', _url)
app = Celery('benchapp', broker=_url,
             backend=None if os.environ.get('BENCH_NO_BACKEND') else _backend)
app.conf.update(
    broker_transport_options={'global_keyprefix': _prefix} if _url.startswith('redis') else {},
    result_backend_transport_options={'global_keyprefix': _prefix},
    task_default_queue='bench',
    task_serializer='json', result_serializer='json', accept_content=['json'],
    # hlbot stores STARTED too (track_started on by default): same work per task.
    task_track_started=True,
    worker_hijack_root_logger=False,
)


@app.task(name='hlbot.debug.echo')
def echo(*args, **kwargs):
    return {'args': list(args), 'kwargs': kwargs}
PY
cat > "$WORK/celery_enqueue.py" <<'PY'
"""Enqueue rate of Celery's own client: app.send_task in a loop."""
import json, os, sys, time
from benchapp import app

n = int(sys.argv[1])
app.send_task('hlbot.debug.echo', args=[0], queue='bench')  # warm up: connect, declare
with app.connection_for_write() as conn:
    conn.default_channel.queue_purge('bench')
t0 = time.perf_counter()
for i in range(n):
    app.send_task('hlbot.debug.echo', args=[i], queue='bench')
secs = time.perf_counter() - t0
with app.connection_for_write() as conn:
    queued = conn.default_channel.queue_purge('bench')
assert queued == n, f'{queued} queued, expected {n}'
backend = 'no result backend' if os.environ.get('BENCH_NO_BACKEND') else 'redis result backend'
print(json.dumps({'bench': 'enqueue', 'mode': f'celery send_task loop ({backend})', 'n': n,
                  'secs': secs, 'rate': n / secs}))
PY

fresh_prefix() { echo "bench:$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n'):"; }
drop_prefix() {
    redis-cli -u "$BENCH_REDIS" --scan --pattern "$1*" | \
        xargs -r -n 1000 redis-cli -u "$BENCH_REDIS" del > /dev/null
}

# run LABEL PREFIX COMMAND...: one benchmark, its JSON tagged with LABEL, appended to $OUT.
run() {
    local label="$1" prefix="$2"; shift 2
    echo "  $label" >&2
    local json
    json="$("$@" 2>> "$LOG")" || { echo "FAILED: $label (see below)" >&2; tail -30 "$LOG" >&2; exit 1; }
    echo "{\"label\": \"$label\", \"result\": $json}" >> "$OUT"
    drop_prefix "$prefix"
}

# Task history off: the engine alone is measured here (history's cost: scripts/bench-store.sh).
hlbot_worker() { echo "$HLBOT --broker $BENCH_REDIS --key-prefix $1 -l warn worker -Q bench --no-history"; }
# celery_worker PREFIX FLAGS...: the same flags as the hlbot side (-c, --prefetch-multiplier).
celery_worker() {
    local prefix="$1"; shift
    echo "env PYTHONPATH=$WORK BENCH_BROKER=$BENCH_REDIS BENCH_PREFIX=$prefix $HLBOT_PYTHON -m celery" \
        "-A benchapp worker --pool prefork $* -Q bench --without-gossip --without-mingle" \
        "--without-heartbeat -l WARNING"
}

# --- RabbitMQ: a fresh vhost per run -----------------------------------------------------------
BENCH_AMQP="${BENCH_AMQP:-amqp://guest:guest@127.0.0.1:5672}"
if [ -n "$AMQP_ROWS" ] && ! rabbitmqctl -q list_vhosts > /dev/null 2>&1; then
    echo "NOTE: rabbitmqctl cannot reach RabbitMQ: no AMQP rows" >&2
    AMQP_ROWS=""
fi
# fresh_vhost: sets VHOST_URL to a new vhost's URL, deleted at exit (not called in a command
# substitution: its subshell would lose the VHOSTS entry and leak the vhost).
fresh_vhost() {
    local v
    v="hlbot-bench-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    rabbitmqctl -q add_vhost "$v" > /dev/null
    rabbitmqctl -q set_permissions -p "$v" guest '.*' '.*' '.*' > /dev/null
    VHOSTS+=("$v")
    VHOST_URL="$BENCH_AMQP/$v"
}
hlbot_amqp_worker() {
    echo "$HLBOT --broker $1 --result-backend $BENCH_REDIS --key-prefix $2 -l warn worker -Q bench --no-history"
}
# celery_amqp_worker AMQP_URL PREFIX FLAGS...
celery_amqp_worker() {
    local url="$1" prefix="$2"; shift 2
    echo "env PYTHONPATH=$WORK BENCH_BROKER=$url BENCH_BACKEND=$BENCH_REDIS BENCH_PREFIX=$prefix" \
        "$HLBOT_PYTHON -m celery -A benchapp worker --pool prefork $* -Q bench --without-gossip" \
        "--without-mingle --without-heartbeat -l WARNING"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "$AMQP_ROWS" ]; then
    echo "drain on RabbitMQ ($N preloaded echo tasks, confirmed; results in Redis)..." >&2
    for flags in "${AMQP_FLAGS[@]}"; do
        # shellcheck disable=SC2086 # flags are words
        P=$(fresh_prefix); fresh_vhost; A=$VHOST_URL; run "amqp drain: hlbot worker $flags" "$P" \
            "$BENCH" drain --broker "$BENCH_REDIS" --amqp "$A" --prefix "$P" -n "$N" -- \
            $(hlbot_amqp_worker "$A" "$P") $flags
        # shellcheck disable=SC2086
        P=$(fresh_prefix); fresh_vhost; A=$VHOST_URL; run "amqp drain: celery prefork $flags" "$P" \
            "$BENCH" drain --broker "$BENCH_REDIS" --amqp "$A" --prefix "$P" -n "$N" -- \
            $(celery_amqp_worker "$A" "$P" $flags)
    done
fi
if [ -n "$REDIS_ROWS" ]; then
echo "enqueue ($N messages)..." >&2
P=$(fresh_prefix); run "enqueue: hlbot send_many (batches of 1000)" "$P" \
    "$BENCH" enqueue --broker "$BENCH_REDIS" --prefix "$P" -n "$N" --batch 1000
P=$(fresh_prefix); run "enqueue: hlbot send_task loop" "$P" \
    "$BENCH" enqueue --broker "$BENCH_REDIS" --prefix "$P" -n "$N" --loop
P=$(fresh_prefix); run "enqueue: celery send_task loop" "$P" \
    env PYTHONPATH="$WORK" BENCH_BROKER="$BENCH_REDIS" BENCH_PREFIX="$P" \
    "$HLBOT_PYTHON" "$WORK/celery_enqueue.py" "$N"
P=$(fresh_prefix); run "enqueue: celery send_task loop, no backend" "$P" \
    env PYTHONPATH="$WORK" BENCH_BROKER="$BENCH_REDIS" BENCH_PREFIX="$P" BENCH_NO_BACKEND=1 \
    "$HLBOT_PYTHON" "$WORK/celery_enqueue.py" "$N"

echo "drain ($N preloaded echo tasks, results stored)..." >&2
for flags in "${DRAIN_FLAGS[@]}"; do
    # shellcheck disable=SC2086 # flags are words
    P=$(fresh_prefix); run "drain: hlbot worker $flags" "$P" \
        "$BENCH" drain --broker "$BENCH_REDIS" --prefix "$P" -n "$N" -- $(hlbot_worker "$P") $flags
    # shellcheck disable=SC2086
    P=$(fresh_prefix); run "drain: celery prefork $flags" "$P" \
        "$BENCH" drain --broker "$BENCH_REDIS" --prefix "$P" -n "$N" -- $(celery_worker "$P" $flags)
done
for k in "${FLEET[@]}"; do
    echo "fleet: $k hlbot worker process(es), $FLEET_FLAGS each..." >&2
    # shellcheck disable=SC2086
    P=$(fresh_prefix); run "fleet: $k hlbot worker(s) $FLEET_FLAGS" "$P" \
        "$BENCH" drain --broker "$BENCH_REDIS" --prefix "$P" -n "$N" --workers "$k" -- \
        $(hlbot_worker "$P") $FLEET_FLAGS
done

echo "latency + idle memory ($LAT_N tasks one at a time)..." >&2
# -E: the start time is the worker's own `task-started` event timestamp.
P=$(fresh_prefix); run "latency: hlbot worker -c 2" "$P" \
    "$BENCH" latency --broker "$BENCH_REDIS" --prefix "$P" -n "$LAT_N" -- $(hlbot_worker "$P") -c 2 -E
P=$(fresh_prefix); run "latency: celery prefork -c 2" "$P" \
    "$BENCH" latency --broker "$BENCH_REDIS" --prefix "$P" -n "$LAT_N" -- $(celery_worker "$P" -c 2) -E
fi

# --- one table ---------------------------------------------------------------------------------
"$HLBOT_PYTHON" - "$OUT" "$N" "$LAT_N" <<'PY'
import json, sys
rows = {json.loads(l)['label']: json.loads(l)['result'] for l in open(sys.argv[1])}
n, lat_n = sys.argv[2], sys.argv[3]
def g(label, *path):
    v = rows[label]
    for p in path:
        v = v[p]
    return v
# What hlbot's Lua scripts run inside Redis (fetch.lua: RPOP/HSET/ZADD per message;
# store_result.lua: GET/SETEX|SET/PUBLISH per state): counted by commandstats, never sent.
SCRIPTED = {'rpop', 'hset', 'zadd', 'get', 'setex', 'set', 'publish'}
def sent(label):
    by = g(label, 'redis_cmds_by_name')
    if not ({'eval', 'evalsha'} & by.keys()):
        return sum(by.values())
    return sum(v for k, v in by.items() if k not in SCRIPTED)
table = []
def row(metric, h, c, better_high=True, fmt='{:,.0f}'):
    r = h / c if better_high else c / h
    table.append((metric, fmt.format(h), fmt.format(c), f'{r:.1f}×'))

def short(f):
    return f.replace('--prefetch-multiplier', '-m')
if any(l.startswith('enqueue: ') for l in rows):
    eq = 'enqueue: '
    row(f'enqueue {n} msgs/s — hlbot send_many(1000) vs celery send_task loop',
        g(eq + 'hlbot send_many (batches of 1000)', 'rate'), g(eq + 'celery send_task loop', 'rate'))
    row('enqueue msgs/s — hlbot send_task loop vs celery send_task loop',
        g(eq + 'hlbot send_task loop', 'rate'), g(eq + 'celery send_task loop', 'rate'))
    row('enqueue msgs/s — hlbot send_many(1000) vs celery send_task loop, no result backend',
        g(eq + 'hlbot send_many (batches of 1000)', 'rate'),
        g(eq + 'celery send_task loop, no backend', 'rate'))
    flags = [l[len('drain: hlbot worker '):] for l in rows if l.startswith('drain: hlbot worker ')]
    for f in flags:
        hl, cl = f'drain: hlbot worker {f}', f'drain: celery prefork {f}'
        row(f'drain {n} tasks/s (first→last date_done), both `{short(f)}`',
            g(hl, 'rate'), g(cl, 'rate'))
        row(f'drain tasks/s incl. worker start, both `{short(f)}`',
            g(hl, 'wall_rate'), g(cl, 'wall_rate'))
        row(f'Redis commands executed per task incl. inside Lua, both `{short(f)}` '
            '(lower is better)',
            g(hl, 'redis_cmds_per_task'), g(cl, 'redis_cmds_per_task'),
            better_high=False, fmt='{:.2f}')
        row(f'Redis commands sent per task, top level, both `{short(f)}` (lower is better)',
            sent(hl), sent(cl), better_high=False, fmt='{:.2f}')
        row(f'Redis CPU µs per task, both `{short(f)}` (lower is better)',
            g(hl, 'redis_cpu_us_per_task'), g(cl, 'redis_cpu_us_per_task'),
            better_high=False, fmt='{:.1f}')
    lh, lc = 'latency: hlbot worker -c 2', 'latency: celery prefork -c 2'
    for p in ('p50', 'p99'):
        row(f'enqueue→task start latency {p} ms (task-started event time), idle worker ({lat_n} sends; lower is better)',
            g(lh, 'start_ms', p), g(lc, 'start_ms', p), better_high=False, fmt='{:.2f}')
    for p in ('p50', 'p99'):
        row(f'enqueue→SUCCESS seen by the client, latency {p} ms (lower is better)',
            g(lh, 'done_ms', p), g(lc, 'done_ms', p), better_high=False, fmt='{:.2f}')
    row('idle RSS MiB, sum over processes (lower is better)',
        g(lh, 'idle_memory', 'rss_kib') / 1024, g(lc, 'idle_memory', 'rss_kib') / 1024,
        better_high=False, fmt='{:.1f}')
    row('idle PSS MiB, sum over processes (lower is better)',
        g(lh, 'idle_memory', 'pss_kib') / 1024, g(lc, 'idle_memory', 'pss_kib') / 1024,
        better_high=False, fmt='{:.1f}')

    print('| metric | hlbot | celery 5.7 | hlbot advantage |')
    print('|---|---:|---:|---:|')
    for m, h, c, r in table:
        print(f'| {m} | {h} | {c} | {r} |')
    print()
    print(f"processes at idle: hlbot {g(lh, 'idle_memory', 'processes')}, "
          f"celery {g(lc, 'idle_memory', 'processes')}")
    for label in [l for l in rows if l.startswith('drain: ')]:
        top = ', '.join(f'{k} {v}' for k, v in list(g(label, 'redis_cmds_by_name').items())[:10])
        print(f'commands per task, {short(label[7:])}: {top}')
    fleet = [l for l in rows if l.startswith('fleet: ')]
    if fleet:
        print()
        print('| hlbot worker processes on one Redis | tasks/s (first→last date_done) | '
              'tasks/s incl. start | Redis CPU µs per task | Redis commands per task |')
        print('|---:|---:|---:|---:|---:|')
        for label in fleet:
            r = rows[label]
            print(f"| {r['workers']} × `{short(label.split(' worker(s) ')[1])}` | {r['rate']:,.0f} | "
                  f"{r['wall_rate']:,.0f} | {r['redis_cpu_us_per_task']:.1f} | "
                  f"{r['redis_cmds_per_task']:.2f} |")

# RabbitMQ rows: hlbot and Celery with the same flags, tasks on RabbitMQ, results in Redis; the
# Redis-broker drain of the same flags beside them when it ran.
amqp = [l[len('amqp drain: hlbot worker '):] for l in rows if l.startswith('amqp drain: hlbot worker ')]
if amqp:
    print()
    print(f'| drain {n} tasks/s (first→last date_done) | hlbot on RabbitMQ | celery 5.7 on RabbitMQ | '
          'hlbot advantage | hlbot on Redis | celery 5.7 on Redis |')
    print('|---|---:|---:|---:|---:|---:|')
    def opt(label, key):
        return f"{rows[label][key]:,.0f}" if label in rows else '-'
    for f in amqp:
        h, c = rows[f'amqp drain: hlbot worker {f}'], rows[f'amqp drain: celery prefork {f}']
        print(f"| both `{short(f)}` | {h['rate']:,.0f} | {c['rate']:,.0f} | "
              f"{h['rate'] / c['rate']:.1f}× | {opt(f'drain: hlbot worker {f}', 'rate')} | "
              f"{opt(f'drain: celery prefork {f}', 'rate')} |")
    for f in amqp:
        h, c = rows[f'amqp drain: hlbot worker {f}'], rows[f'amqp drain: celery prefork {f}']
        print(f"| incl. worker start, both `{short(f)}` | {h['wall_rate']:,.0f} | "
              f"{c['wall_rate']:,.0f} | {h['wall_rate'] / c['wall_rate']:.1f}× | "
              f"{opt(f'drain: hlbot worker {f}', 'wall_rate')} | "
              f"{opt(f'drain: celery prefork {f}', 'wall_rate')} |")
    for f in amqp:
        h, c = rows[f'amqp drain: hlbot worker {f}'], rows[f'amqp drain: celery prefork {f}']
        print(f"| Redis (result backend) commands per task, both `{short(f)}` | "
              f"{h['redis_cmds_per_task']:.2f} | {c['redis_cmds_per_task']:.2f} | "
              f"{c['redis_cmds_per_task'] / max(h['redis_cmds_per_task'], 1e-9):.1f}× | - | - |")
PY
echo
echo "load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc --all) CPUs"
echo "raw results: $OUT" >&2
