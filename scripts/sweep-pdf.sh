#!/usr/bin/env bash
# Held-out PDF sweep (a drill, not a test): every PDF under the given folders through hlbot's PDF
# pipeline (pdf-dump: OCR auto, images on, as `hlbot ingest` reads them) and through PyMuPDF 2.0,
# printed as Markdown: how each file ended, the slowest files, and every file whose text differs
# from PyMuPDF's by more than 5 % (and 50 characters). Exits 1 when a file hung (past
# SWEEP_TIMEOUT), crashed pdf-dump, or failed without a typed error — a damaged, encrypted or
# empty file must end as a typed refusal, never as one of those.
# Usage: scripts/sweep-pdf.sh DIR|FILE...   (needs scripts/setup.sh done)
#   e.g. the test PDFs of pdf.js, pdfplumber, pdfminer.six, OCRmyPDF, pypdf, py-pdf/sample-files
#   (read them where they are; never copy third-party files into this repository).
#   SWEEP_JOBS=2 files at a time, SWEEP_TIMEOUT=300 seconds per file, SWEEP_DUMP=<pdf-dump> to
#   sweep an already built binary (default: this tree's debug build, built if missing).
set -euo pipefail
[ $# -gt 0 ] || { sed -n 2,12p "$0" >&2; exit 2; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"
PY="$HLBOT_VENV/bin/python"
"$HLBOT_VENV/bin/pip" install -q --disable-pip-version-check "pymupdf==2.0" >&2
if [ -n "${SWEEP_DUMP:-}" ]; then
  DUMP=$SWEEP_DUMP
else
  (cd "$ROOT" && cargo build -q --workspace --features hlbot-youtube/whisper --example pdf-dump --bin hlbot-pdf-child >&2)
  DUMP=${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/pdf-dump
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
find "$@" -type f -iname '*.pdf' | sort > "$WORK/files"
echo "sweeping $(wc -l < "$WORK/files") PDFs with $DUMP, ${SWEEP_JOBS:-2} at a time" >&2

# One line per file: rc, seconds, path. The JSON (or the error line) goes to out/<n>.json.
mkdir -p "$WORK/out"
export DUMP WORK SWEEP_TIMEOUT="${SWEEP_TIMEOUT:-300}"
nl -ba "$WORK/files" | xargs -d '\n' -n 1 -P "${SWEEP_JOBS:-2}" bash -c '
  n=$(echo ${0%%$'"'"'\t'"'"'*}); f=${0#*$'"'"'\t'"'"'}; s=$(date +%s.%N)
  PDF_CACHE="$WORK/cache.$n" timeout "$SWEEP_TIMEOUT" "$DUMP" "$f" > "$WORK/out/$n.json" 2> /dev/null; rc=$?
  rm -rf "$WORK/cache.$n"
  printf "%s\t%s\t%s\t%s\n" "$n" "$rc" "$(echo "$(date +%s.%N) - $s" | bc)" "$f"' >> "$WORK/runs"

exec "$PY" - "$WORK" <<'EOF'
import json, sys, pymupdf

work = sys.argv[1]
pymupdf.TOOLS.mupdf_display_errors(False)
rows = []
for line in open(f"{work}/runs"):
    n, rc, secs, path = line.rstrip("\n").split("\t", 3)
    raw = open(f"{work}/out/{n}.json", errors="replace").read()
    row = {"path": path, "rc": int(rc), "secs": float(secs), "kind": None, "chars": None}
    try:
        doc = json.loads(raw)
        row["pages"] = doc["page_count"]
        row["chars"] = sum(len("".join(p["text"].split())) for p in doc["pages"])
        row["ocr"] = sum(p["source"] != "text" for p in doc["pages"])
    except ValueError:
        # pdf-dump's error line: "<path>\tERROR <kind>: <message>\t<ms>"
        row["kind"] = raw.split("\tERROR ", 1)[1].split(":", 1)[0] if "\tERROR " in raw else None
    try:
        with pymupdf.open(path) as d:
            if not d.needs_pass:
                row["mu_chars"] = sum(len("".join(p.get_text().split())) for p in d)
    except Exception:
        pass
    rows.append(row)

def outcome(r):
    if r["rc"] == 124:
        return "hang"
    if r["rc"] == 0 and r["chars"] is not None:
        return "read"
    if r["rc"] == 1 and r["kind"]:
        return "refused: " + r["kind"]
    return f"FAILED (exit {r['rc']})"

counts = {}
for r in rows:
    counts[outcome(r)] = counts.get(outcome(r), 0) + 1
print(f"## {len(rows)} PDFs\n\n| outcome | files |\n|---|---:|")
for k, v in sorted(counts.items(), key=lambda kv: -kv[1]):
    print(f"| {k} | {v} |")
print("\n## Slowest\n\n| file | seconds | pages | OCR'd pages |\n|---|---:|---:|---:|")
for r in sorted(rows, key=lambda r: -r["secs"])[:10]:
    print(f"| {r['path'].split('/')[-1]} | {r['secs']:.2f} | {r.get('pages', '-')} | {r.get('ocr', '-')} |")
print("\n## Text differing from PyMuPDF's (> 5 % and > 50 non-space characters)\n")
print("| file | hlbot chars | PyMuPDF chars | OCR'd pages |\n|---|---:|---:|---:|")
for r in rows:
    a, b = r["chars"], r.get("mu_chars")
    if a is not None and b is not None and abs(a - b) > max(50, 0.05 * b):
        print(f"| {r['path'].split('/')[-1]} | {a} | {b} | {r['ocr']} |")
bad = [r for r in rows if outcome(r) == "hang" or outcome(r).startswith("FAILED")]
for r in bad:
    print(f"\n{outcome(r)}: {r['path']}")
sys.exit(1 if bad else 0)
EOF
