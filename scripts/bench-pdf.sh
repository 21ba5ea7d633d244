#!/usr/bin/env bash
# PDF benchmark (one run, not a test), printed as Markdown tables:
#   1. text extraction over every corpus PDF: hlbot-pdf (release, ocr=never, no images) vs PyMuPDF
#      (page.get_text() on every page), each timed in-process, best of 5 interleaved passes after
#      a warm-up (the machine may be shared: the best pass is the least disturbed one). pdf-dump
#      starts its PDFium workers before its clock starts, as a long-running worker does at
#      start-up (PyMuPDF's import is not timed either); workers are long-lived (many documents each);
#   2. OCR pages/s: hlbot-pdf ocr=always (render + warm tesseract per core, pipelined, DPI per
#      page; one document at a time, and two at a time as a `-c 2` worker runs them) vs a plain sequential loop that renders each page at 300 dpi with PyMuPDF and runs
#      the `tesseract` CLI on it, render time counted on both sides: single-threaded
#      (OMP_THREAD_LIMIT=1, the reference) and with tesseract's default threads.
# Usage: scripts/bench-pdf.sh            (needs scripts/setup.sh done and ../shared/corpus)
#   BENCH_CPUS=0 pins both sides of the text benchmark to those CPUs (`taskset -c 0`: the one-core
#   run); BENCH_TEXT_ONLY=1 skips the OCR part, BENCH_OCR_ONLY=1 the text part; BENCH_DUMP (below).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
SHARED="${HLBOT_SHARED:-../shared}"
CORPUS="$SHARED/corpus/pdf"
[ -d "$CORPUS" ] || { echo "corpus not found at $CORPUS (set HLBOT_SHARED)" >&2; exit 1; }
PY="$HLBOT_VENV/bin/python"
"$HLBOT_VENV/bin/pip" install -q --disable-pip-version-check "pymupdf==2.0" >&2
# BENCH_DUMP=<pdf-dump> measures an already built pdf-dump (e.g. an older commit's, for a
# before/after pair; its hlbot-pdf-child sits two folders up) instead of building this tree.
if [ -n "${BENCH_DUMP:-}" ]; then
  DUMP=$BENCH_DUMP
else
  cargo build -q --release -p hlbot-pdf --examples --bins >&2
  DUMP=${CARGO_TARGET_DIR:-target}/release/examples/pdf-dump
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

mapfile -t ALL < <(ls "$CORPUS"/*.pdf)
OCR_FILES=("$CORPUS/py-pdf-sample-files__pdflatex-4-pages.pdf" "$CORPUS/py-pdf-sample-files__multicolumn.pdf"
  "$CORPUS/gen_scanned_trading_notes.pdf" "$CORPUS/ocrmypdf__linn.pdf")

# --- 1. text extraction ----------------------------------------------------------------------
if [ -z "${BENCH_OCR_ONLY:-}" ]; then
PIN=()
[ -n "${BENCH_CPUS:-}" ] && PIN=(taskset -c "$BENCH_CPUS")
ours_text() { PDF_QUIET=1 PDF_OCR=never PDF_IMAGES=0 "${PIN[@]}" "$DUMP" "${ALL[@]}" 2>"$WORK/ours.err" >"$WORK/ours.pass.tsv" || true; }
cat >"$WORK/mupdf_text.py" <<'PY'
import sys, time, pymupdf
def once():
    per = {}
    t0 = time.perf_counter()
    for f in sys.argv[1:]:
        t = time.perf_counter(); chars = 0
        try:
            with pymupdf.open(f) as d:
                for p in d:
                    chars += len(p.get_text())
        except Exception:
            chars = -1
        per[f] = ((time.perf_counter() - t) * 1000, chars)
    return time.perf_counter() - t0, per
once()  # warm-up inside this interpreter
total, per = once()
for f, (ms, chars) in per.items():
    print(f"{f}\t{chars}\t{ms:.1f}")
print(f"TOTAL\t{total:.4f}")
PY
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
less_than() { awk -v a="$1" -v b="$2" 'BEGIN{exit !(b=="" || a<b)}'; }
ours_text   # warm-up
OURS_TEXT_S=""; MUPDF_TEXT_S=""
# Interleaved passes, best of 5 each: both tools see the same machine load.
for _ in 1 2 3 4 5; do
  ours_text
  s=$(sed -n 's/^total \([0-9.]*\) s$/\1/p' "$WORK/ours.err")
  if less_than "$s" "$OURS_TEXT_S"; then OURS_TEXT_S=$s; cp "$WORK/ours.pass.tsv" "$WORK/ours.tsv"; fi
  "${PIN[@]}" "$PY" "$WORK/mupdf_text.py" "${ALL[@]}" >"$WORK/mupdf.pass.tsv"
  s=$(awk -F'\t' '$1=="TOTAL"{print $2}' "$WORK/mupdf.pass.tsv")
  if less_than "$s" "$MUPDF_TEXT_S"; then MUPDF_TEXT_S=$s; cp "$WORK/mupdf.pass.tsv" "$WORK/mupdf.tsv"; fi
done

echo "## Text extraction: ${#ALL[@]} corpus PDFs (hlbot-pdf ocr=never, images off; PyMuPDF $("$PY" -c 'import pymupdf;print(pymupdf.VersionBind)'))"
echo
echo "$(date -u +%H:%M) UTC, load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) now (1/5/15 min); CPUs: ${BENCH_CPUS:-all $(getconf _NPROCESSORS_ONLN)}."
echo
echo "| file | hlbot-pdf ms | PyMuPDF ms | hlbot chars | PyMuPDF chars |"
echo "|---|---:|---:|---:|---:|"
while IFS=$'\t' read -r f a b c d; do
  name=$(basename "$f")
  ours_ms=$(echo "$a $b $c $d" | grep -o '[0-9.]* ms' | cut -d' ' -f1)
  case "$a" in
    ERROR*) ours_chars="error" ;;
    *) ours_chars=$(echo "$b" | grep -o '^[0-9]*' || true) ;;
  esac
  read -r mu_chars mu_ms < <(awk -F'\t' -v f="$f" '$1==f{print $2, $3}' "$WORK/mupdf.tsv")
  [ "$mu_chars" = "-1" ] && mu_chars="error"
  echo "| $name | $ours_ms | $mu_ms | $ours_chars | $mu_chars |"
done <"$WORK/ours.tsv"
echo "| **total (s)** | **$OURS_TEXT_S** | **$MUPDF_TEXT_S** | | |"
echo
echo "Ratio PyMuPDF time / hlbot-pdf time: $(awk -v a="$OURS_TEXT_S" -v b="$MUPDF_TEXT_S" 'BEGIN{printf "%.2f", b/a}') (above 1 = hlbot-pdf faster)"
echo
fi

# --- 2. OCR throughput -----------------------------------------------------------------------
[ -n "${BENCH_TEXT_ONLY:-}" ] && exit 0
OCR_LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
PDF_QUIET=1 PDF_OCR=always PDF_IMAGES=0 "$DUMP" "${OCR_FILES[@]}" 2>"$WORK/ocr.err" >"$WORK/ocr.tsv"
OURS_OCR_S=$(sed -n 's/^total \([0-9.]*\) s$/\1/p' "$WORK/ocr.err")
OCR_PAGES=$(awk -F'\t' '{split($4, a, " "); n += a[1]} END {print n}' "$WORK/ocr.tsv")
# Two documents at a time, as `hlbot worker -Q pdf -c 2` runs them: they share the OCR slots.
PDF_JOBS=2 PDF_QUIET=1 PDF_OCR=always PDF_IMAGES=0 "$DUMP" "${OCR_FILES[@]}" 2>"$WORK/ocr2.err" >"$WORK/ocr2.tsv"
OURS_OCR2_S=$(sed -n 's/^total \([0-9.]*\) s$/\1/p' "$WORK/ocr2.err")
OCR2_PAGES=$(awk -F'\t' '{split($4, a, " "); n += a[1]} END {print n}' "$WORK/ocr2.tsv")

# The loop: render one page (PyMuPDF, 300 dpi, grayscale PNG), run tesseract on it, next page.
cat >"$WORK/loop.py" <<'PY'
import os, subprocess, sys, time, pymupdf
out = sys.argv[1]; n = 0; render = 0.0
t0 = time.perf_counter()
for f in sys.argv[2:]:
    with pymupdf.open(f) as d:
        for p in d:
            n += 1
            png = f"{out}/p{n:04d}.png"
            t = time.perf_counter()
            p.get_pixmap(dpi=300, colorspace=pymupdf.csGRAY).save(png)
            render += time.perf_counter() - t
            subprocess.run(["tesseract", png, png[:-4], "-l", "eng", "--dpi", "300", "txt", "tsv"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            os.remove(png)
print(f"{n}\t{time.perf_counter() - t0:.3f}\t{render:.3f}")
PY
mkdir -p "$WORK/png"
read -r LOOP_PAGES LOOP_ONE_S LOOP_ONE_RENDER < <(OMP_THREAD_LIMIT=1 "$PY" "$WORK/loop.py" "$WORK/png" "${OCR_FILES[@]}")
read -r _ LOOP_DEFAULT_S _ < <(env -u OMP_THREAD_LIMIT "$PY" "$WORK/loop.py" "$WORK/png" "${OCR_FILES[@]}")

pps() { awk -v p="$1" -v s="$2" 'BEGIN{printf "%.2f", p/s}'; }
OURS_PPS=$(pps "$OCR_PAGES" "$OURS_OCR_S")
OURS2_PPS=$(pps "$OCR2_PAGES" "$OURS_OCR2_S")
DEF_PPS=$(pps "$LOOP_PAGES" "$LOOP_DEFAULT_S")
ONE_PPS=$(pps "$LOOP_PAGES" "$LOOP_ONE_S")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "## OCR: $OCR_PAGES pages from ${#OCR_FILES[@]} PDFs, eng, $(getconf _NPROCESSORS_ONLN) cores"
echo
echo "$(date -u +%H:%M) UTC, load average $OCR_LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1/5/15 min)."
echo
echo "| run | pages | seconds | pages/s | ratio vs loop, 1 thread |"
echo "|---|---:|---:|---:|---:|"
echo "| hlbot-pdf ocr=always (PDFium render + warm tesseract per core, pipelined), one document at a time | $OCR_PAGES | $OURS_OCR_S | $OURS_PPS | **$(ratio "$OURS_PPS" "$ONE_PPS")** |"
echo "| hlbot-pdf ocr=always, two documents at a time (PDF_JOBS=2, as a \`-c 2\` worker; shared OCR slots) | $OCR2_PAGES | $OURS_OCR2_S | $OURS2_PPS | **$(ratio "$OURS2_PPS" "$ONE_PPS")** |"
echo "| loop: PyMuPDF render 300 dpi + tesseract CLI, OMP_THREAD_LIMIT=1 (render $LOOP_ONE_RENDER s) | $LOOP_PAGES | $LOOP_ONE_S | $ONE_PPS | 1.00 |"
echo "| loop: PyMuPDF render 300 dpi + tesseract CLI, default threads | $LOOP_PAGES | $LOOP_DEFAULT_S | $DEF_PPS | $(ratio "$DEF_PPS" "$ONE_PPS") |"
