# Source this (after scripts/setup.sh) to point hlbot and its tests at the installed tools.
_HL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HLBOT_VENV="$_HL_ROOT/.hlbot/venv"
export HLBOT_PDFIUM_LIB="$_HL_ROOT/.hlbot/pdfium/libpdfium.so"
export HLBOT_YTDLP="$HLBOT_VENV/bin/yt-dlp"
export HLBOT_PYTHON="$HLBOT_VENV/bin/python"
export OMP_THREAD_LIMIT=1
