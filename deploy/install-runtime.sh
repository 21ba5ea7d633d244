#!/usr/bin/env bash
# Installs what the hlbot worker needs at run time, pinned: the Debian packages (tesseract + English
# data, ffmpeg, Python for yt-dlp), yt-dlp in its own venv, and libpdfium.so from the pypdfium2 wheel,
# checksum-verified. The container image runs exactly this; scripts/setup.sh uses its pdfium step;
# crates/cli/tests/deploy.rs runs it (without apt) into a temporary prefix.
#
#   deploy/install-runtime.sh [--prefix /opt/hlbot] [--no-apt] [--only apt|ytdlp|pdfium]
#                             [--python PY] [--pdfium-dir DIR] [--sha-file FILE]
#
# Result: $PREFIX/yt-dlp/bin/yt-dlp and $PREFIX/lib/libpdfium.so (or --pdfium-dir/libpdfium.so).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
YTDLP_VERSION=2026.10.26
PDFIUM_WHEEL_VERSION=5.15.2
PREFIX=/opt/hlbot
APT=1
ONLY=""
PY=python3
PDFIUM_DIR=""
SHA_FILE="$HERE/../scripts/pdfium.sha256"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --no-apt) APT=0; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --pdfium-dir) PDFIUM_DIR="$2"; shift 2 ;;
    --sha-file) SHA_FILE="$2"; shift 2 ;;
    *) echo "usage: $0 [--prefix DIR] [--no-apt] [--only apt|ytdlp|pdfium] [--python PY] [--pdfium-dir DIR] [--sha-file FILE]" >&2; exit 2 ;;
  esac
done
PDFIUM_DIR="${PDFIUM_DIR:-$PREFIX/lib}"
step() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }
log() { echo "[install-runtime] $*" >&2; }

if step apt && [ "$APT" = 1 ]; then
  log "apt-get install tesseract-ocr tesseract-ocr-eng ffmpeg python3-venv ca-certificates"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    tesseract-ocr tesseract-ocr-eng ffmpeg python3-venv ca-certificates >/dev/null
  rm -rf /var/lib/apt/lists/*
fi

if step ytdlp; then
  log "yt-dlp==$YTDLP_VERSION into $PREFIX/yt-dlp"
  "$PY" -m venv "$PREFIX/yt-dlp"
  "$PREFIX/yt-dlp/bin/pip" install -q --disable-pip-version-check --no-cache-dir "yt-dlp==$YTDLP_VERSION"
  "$PREFIX/yt-dlp/bin/yt-dlp" --version >/dev/null
  PY="$PREFIX/yt-dlp/bin/python"   # has pip, for the wheel download below
fi

if step pdfium && [ ! -f "$PDFIUM_DIR/libpdfium.so" ]; then
  log "libpdfium.so from pypdfium2==$PDFIUM_WHEEL_VERSION into $PDFIUM_DIR"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_17_x86_64 -d "$tmp" "pypdfium2==$PDFIUM_WHEEL_VERSION"
  mkdir -p "$PDFIUM_DIR"
  "$PY" - "$(ls "$tmp"/pypdfium2-*.whl)" "$PDFIUM_DIR/libpdfium.so.tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[2], "wb").write(z.read("pypdfium2_raw/libpdfium.so"))
PY
  want=$(cut -d' ' -f1 "$SHA_FILE")
  got=$(sha256sum "$PDFIUM_DIR/libpdfium.so.tmp" | cut -d' ' -f1)
  if [ "$want" != "$got" ]; then
    rm -f "$PDFIUM_DIR/libpdfium.so.tmp"
    echo "libpdfium.so checksum mismatch: want $want (from $SHA_FILE), got $got" >&2
    exit 1
  fi
  mv "$PDFIUM_DIR/libpdfium.so.tmp" "$PDFIUM_DIR/libpdfium.so"
fi
log "done"
