#!/usr/bin/env bash
# Playlist fan-out benchmark (#19): a 10-video playlist of local media (8 s 640x360 each, frames
# extracted) served by a local HTTP server through yt-dlp's generic extractor, processed by one
# `hlbot worker -Q youtube -c 1` and then by two, on a private Redis DB. Prints one table (wall
# seconds from send to the playlist's result, and the two-worker time as a share of one).
#
#   scripts/bench-playlist.sh
#
# Needs scripts/setup.sh (yt-dlp, ffmpeg) and the Redis on 127.0.0.1:6379. Debug build: the
# work is yt-dlp and ffmpeg's, not hlbot's.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source scripts/env.sh
# The workspace's test feature set (scripts/test.sh), so a tree the tests built is reused as is.
exec cargo test -q --workspace --features hlbot-youtube/whisper --test playlist -- --ignored \
  --nocapture --exact playlist_bench
