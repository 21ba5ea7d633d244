#!/usr/bin/env bash
# Records a terminal session with tmux (send-keys / capture-pane): a worker runs
# `hlbot.debug.sleep`, `hlbot send --wait` shows its live status line (state, runtime), then
# Ctrl-C stops the wait — exit 130, "task keeps running; follow it with `hlbot result ID --wait`".
#
# Usage: scripts/record-terminal.sh [OUT_FILE]      (default: terminal-session.txt)
# Env:   HLBOT_BIN (default target/debug/hlbot), REDIS_URL, HLBOT_KEY_PREFIX (both passed on,
#        so a test can run it on its own key prefix).
# OUT_FILE gets two frames: "--- live" (the status line while waiting) and "--- after Ctrl-C".
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-terminal-session.txt}
bin=${HLBOT_BIN:-target/debug/hlbot}
command -v tmux >/dev/null || { echo "tmux is missing (scripts/setup.sh installs it)" >&2; exit 2; }
sock="hlbot-record-$$"
t() { tmux -L "$sock" "$@"; }
trap 't kill-server 2>/dev/null || true' EXIT
env_line="REDIS_URL='${REDIS_URL:-redis://127.0.0.1:6379/0}' HLBOT_KEY_PREFIX='${HLBOT_KEY_PREFIX:-}'"
t new-session -d -s rec -x 150 -y 12 "env -i PATH=\"$PATH\" HOME=\"$HOME\" TERM=xterm bash --norc --noprofile"
t new-window -d -t rec:1 "env $env_line '$bin' worker -Q default -c 1 2>/dev/null"
# The worker is up when it answers a ping (so the recording shows no "nobody consumes" warning).
for _ in $(seq 60); do
  env REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}" HLBOT_KEY_PREFIX="${HLBOT_KEY_PREFIX:-}" \
    "$bin" inspect ping -t 0.5 >/dev/null 2>&1 && break
done
t send-keys -t rec:0 "export $env_line; PS1='$ '; clear" Enter
t send-keys -t rec:0 "'$bin' send hlbot.debug.sleep --args '[30]' --wait; echo \"exit=\$?\"" Enter

# Wait until the status line shows the running task and its runtime (at most 30 s).
frame=""
for _ in $(seq 300); do
  frame=$(t capture-pane -p -t rec:0)
  if grep -Eq 'STARTED [0-9]+\.[0-9]s' <<<"$frame"; then break; fi
  sleep 0.1
done
sleep 1
live=$(t capture-pane -p -t rec:0)
t send-keys -t rec:0 C-c
sent=$(date +%s.%N)
after=""
for _ in $(seq 300); do
  after=$(t capture-pane -p -t rec:0)
  if grep -q '^exit=' <<<"$after"; then break; fi
  sleep 0.1
done
took=$(echo "$(date +%s.%N) - $sent" | bc 2>/dev/null || echo "?")
{
  echo "--- live"
  echo "$live"
  echo "--- after Ctrl-C"
  echo "$after"
  echo "--- Ctrl-C to exit: ${took}s"
} >"$out"
cat "$out"
