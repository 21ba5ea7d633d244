#!/usr/bin/env bash
# The chaos drill of issue #10: fault injection against hlbot workers on a PRIVATE redis-server
# (own free port on 127.0.0.1, own temp dir, AOF on), never the shared Redis.
#
#   (a) acks_late tasks through three worker SIGKILLs      (e) a READONLY phase (REPLICAOF nowhere)
#   (b) idle-worker SIGKILLs 0-3 ms after a push           (f) duplicate task ids
#   (c) redis-server SIGKILL + restart under load (AOF)    (g) poison messages, rate_limit 1e-30/s
#   (d) maxmemory (noeviction) refusal for 2 s under load  (h) FLUSHALL with ETA tasks held
#   (i) chords (two acks_late parts each) through repeated worker SIGKILLs
#   (j) redis-server paused (SIGSTOP) 40 s under load, then 40 s with the worker idle
#   (k) a worker SIGKILLed holding reserved, running and ETA tasks, visibility timeout 1 h
#
# It prints ONE table (scenario | tasks | succeeded | lost | committed twice | left in unacked |
# worker RSS after | verdict | notes) and exits non-zero on any loss, leftover or hang.
#
#   scripts/chaos.sh [--ci] [--bin PATH] [--only a,b,...]
#
# --ci (or CHAOS_SCALE=ci): every scenario, small (about 2-3 minutes). --bin: the hlbot binary
# (default target/release/hlbot if built, else target/debug/hlbot). CHAOS_LOGLEVEL sets the workers' log level (default warn); CHAOS_KEEP=1 keeps the
# temp dir (worker and redis logs). Exit codes: 0 all rows ok, 1 a row failed, 2 usage,
# 77 a prerequisite is missing (redis-server, the Python venv with redis-py), 124 overall bound.
# The scenarios themselves are in scripts/chaos.py (run with $HLBOT_PYTHON); this wrapper owns
# the temp dir and kills every process the drill started when it exits, however it exits.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=/dev/null
source "$ROOT/scripts/env.sh"

SCALE="${CHAOS_SCALE:-full}"
BIN=""
ONLY=""
usage() { echo "usage: $0 [--ci] [--bin PATH] [--only a,b,...]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --ci) SCALE=ci; shift ;;
        --bin) [ $# -ge 2 ] || usage; BIN="$2"; shift 2 ;;
        --only) [ $# -ge 2 ] || usage; ONLY="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) usage ;;
    esac
done
case "$SCALE" in full|ci) ;; *) echo "CHAOS_SCALE must be full or ci" >&2; exit 2 ;; esac
if [ -z "$BIN" ]; then
    BIN="$ROOT/target/release/hlbot"
    [ -x "$BIN" ] || BIN="$ROOT/target/debug/hlbot"
fi
[ -x "$BIN" ] || { echo "chaos: no hlbot binary at $BIN (cargo build -p hlbot-cli)" >&2; exit 2; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

command -v redis-server > /dev/null || { echo "chaos: redis-server is not installed" >&2; exit 77; }
if ! [ -x "${HLBOT_PYTHON:-}" ] || ! "$HLBOT_PYTHON" -c 'import redis' 2> /dev/null; then
    echo "chaos: no Python with redis-py at ${HLBOT_PYTHON:-?} (run scripts/setup.sh)" >&2
    exit 77
fi
# Nothing from the caller's environment may point the workers elsewhere.
unset HLBOT_CONFIG HLBOT_KEY_PREFIX HLBOT_VISIBILITY_TIMEOUT HLBOT_RESULT_BACKEND REDIS_URL DATABASE_URL

WORK="$(mktemp -d /tmp/hlbot-chaos.XXXXXX)"
# The workers' task history goes to an SQLite library in the drill's folder, not the user's.
export HLBOT_DATA_DIR="$WORK/data"
cleanup() {
    local f pid
    for f in "$WORK"/pids/*; do
        [ -e "$f" ] || continue
        pid="${f##*/}"
        kill -KILL -- "-$pid" 2> /dev/null || kill -KILL "$pid" 2> /dev/null || true
    done
    if [ -n "${CHAOS_KEEP:-}" ]; then
        echo "chaos: logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
CHILD=""
trap cleanup EXIT
# `wait` (unlike a foreground command) returns at once on a signal, so the traps run now.
trap '[ -z "$CHILD" ] || kill -TERM "$CHILD" 2> /dev/null; exit 130' INT TERM

# A bound on the whole drill on top of every bounded wait inside it.
if [ "$SCALE" = ci ]; then LIMIT=600; else LIMIT=3600; fi
rc=0
timeout --kill-after=15 "$LIMIT" "$HLBOT_PYTHON" "$ROOT/scripts/chaos.py" \
    --bin "$BIN" --work "$WORK" --scale "$SCALE" --only "$ONLY" &
CHILD=$!
wait "$CHILD" || rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "chaos: FAIL: the drill exceeded its overall bound of $LIMIT s" >&2
    rc=124
fi
exit "$rc"
