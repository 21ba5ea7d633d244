#!/usr/bin/env bash
# Runs every test hlbot has, on a fresh machine too: installs what is missing (scripts/setup.sh),
# makes sure Redis answers, then the Rust workspace tests and the Python Celery interop suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase's wall time, so a slow CI run says where its minutes went.
t0=$SECONDS; tp=$SECONDS
phase() { echo "[test] $1 took $((SECONDS - tp)) s (total $((SECONDS - t0)) s)" >&2; tp=$SECONDS; }
bash scripts/setup.sh
phase setup
source scripts/env.sh

# Redis: the machine normally runs one on 127.0.0.1:6379; start it if it is not answering.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "[test] starting redis-server on 127.0.0.1:6379" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# PostgreSQL on 127.0.0.1:5432, user postgres without a password (the store's tests create and
# drop a database each): start the machine's cluster if it is not answering, trust local TCP.
pg_ok() { psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; }
if ! pg_ok; then
  echo "[test] starting PostgreSQL on 127.0.0.1:5432" >&2
  cluster=$(pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 {print $1" "$2; exit}')
  if [ -z "$cluster" ]; then
    ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
    [ -n "$ver" ] && pg_createcluster -p 5432 "$ver" main >/dev/null && cluster="$ver main"
  fi
  if [ -n "$cluster" ]; then
    hba="/etc/postgresql/${cluster% *}/${cluster#* }/pg_hba.conf"
    grep -q '^host all postgres 127.0.0.1/32 trust' "$hba" 2>/dev/null \
      || sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba" 2>/dev/null || true
    pg_ctlcluster $cluster start 2>/dev/null || pg_ctlcluster $cluster reload 2>/dev/null || true
    for _ in $(seq 100); do pg_ok && break; sleep 0.1; done
  fi
  pg_ok || { echo "[test] PostgreSQL is not answering on 127.0.0.1:5432 as user postgres (the store suites need it)" >&2; exit 1; }
fi

# RabbitMQ on 127.0.0.1:5672 (guest/guest) for the AMQP transport's suites (each creates and
# deletes a vhost of its own with rabbitmqctl): start the machine's server if it is not answering.
rabbit_ok() { rabbitmqctl -q status >/dev/null 2>&1; }
if command -v rabbitmq-server >/dev/null && ! rabbit_ok; then
  echo "[test] starting rabbitmq-server" >&2
  rabbitmq-server -detached >/dev/null 2>&1 || true
  rabbitmqctl -q wait --timeout 60 /var/lib/rabbitmq/mnesia/rabbit@$(hostname -s).pid >/dev/null 2>&1 || true
  for _ in $(seq 60); do rabbit_ok && break; sleep 1; done
fi
rabbit_ok || echo "[test] RabbitMQ is not running (install rabbitmq-server): the AMQP suites fail under CI=true" >&2

if [ -d ../shared/corpus ]; then
  export HLBOT_SHARED="$(cd ../shared && pwd)"
else
  echo "[test] ../shared/corpus not found: corpus suites will be skipped" >&2
fi

phase services
# Local Whisper (CTranslate2) sits behind a cargo feature so a plain `cargo build` stays fast. The
# tests build it once, in the same build as everything else: one feature set for the whole
# workspace, so no dependency compiles twice (a separate `cargo test -p hlbot-youtube --features
# whisper` run resolved the shared dependencies' features anew and rebuilt ~200 crates, 29 min of
# a 43-min run on 2 cores).
FEATURES=(--features hlbot-youtube/whisper)
cargo build --workspace --bins "${FEATURES[@]}"
phase "build (bins)"
export HLBOT_BIN="$(pwd)/target/debug/hlbot"
cargo test --workspace "${FEATURES[@]}" -- --test-threads="${HLBOT_TEST_THREADS:-4}"
phase "cargo test --workspace (whisper included)"
if [ -d compat/tests ]; then
  "$HLBOT_PYTHON" -m pytest -q --durations=15 compat/tests
  phase "compat (pytest)"
fi
