#!/usr/bin/env bash
# Runs every test hlbot has, on a fresh machine too: installs what is missing (scripts/setup.sh),
# makes sure Redis answers, then the Rust workspace tests and the Python Celery interop suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

# Redis: the machine normally runs one on 127.0.0.1:6379; start it if it is not answering.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "[test] starting redis-server on 127.0.0.1:6379" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

if [ -d ../shared/corpus ]; then
  export HLBOT_SHARED="$(cd ../shared && pwd)"
else
  echo "[test] ../shared/corpus not found: corpus suites will be skipped" >&2
fi

cargo build --workspace --bins
export HLBOT_BIN="$(pwd)/target/debug/hlbot"
cargo test --workspace -- --test-threads="${HLBOT_TEST_THREADS:-4}"
# Local Whisper (CTranslate2) sits behind a cargo feature so the default build stays fast.
cargo test -p hlbot-youtube --features whisper --test whisper
if [ -d compat/tests ]; then
  "$HLBOT_PYTHON" -m pytest -q compat/tests
fi
