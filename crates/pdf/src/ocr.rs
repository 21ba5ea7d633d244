//! OCR with warm `tesseract` processes. A `Recogniser` is one tesseract CLI process (one thread:
//! `OMP_THREAD_LIMIT=1`; the parallelism comes from one recogniser per core) started with
//! `-c stream_filelist=1`: it loads the language model once, then reads image paths from its
//! stdin, one per line, and writes each page's TSV to stdout when the page is done. After every
//! page a tiny blank "marker" image is sent; the marker's page row says the real page is
//! complete (tesseract writes a page's rows at once, but says nothing after them). Text and
//! mean word confidence are rebuilt from the TSV. An image tesseract cannot read ends the
//! process (tesseract stops the list there): that page fails with tesseract's stderr, and the
//! caller starts a new recogniser for the next page. The process lives in its own process group,
//! killed with it when the recogniser is dropped (timeout, cancel, end of the document).
//! Each page's DPI travels in its PNG (`render::write_png`), so pages may differ.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};
use tokio_util::sync::CancellationToken;

use crate::error::{PdfError, Result};
use crate::subprocess;

/// Keep at most this much of tesseract's stderr (the tail is what explains a failure).
const STDERR_CAP: usize = 16 * 1024;

/// Side of the blank marker image, pixels.
const MARKER_SIDE: u32 = 64;

/// Text and mean word confidence (0–100) of one OCR'd page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OcrText {
    pub text: String,
    pub confidence: Option<f32>,
}

/// The clockwise turn (90, 180 or 270) that sets `image` upright, by tesseract's orientation
/// detection (`--psm 0`, the `osd` model), when it is sure; `None` when the page is upright,
/// detection is unsure or fails (no `osd` model, no text), or it runs past `timeout`.
pub(crate) async fn orientation(tesseract: &Path, image: &Path, timeout: Duration) -> Option<u32> {
    let mut cmd = tokio::process::Command::new(tesseract);
    cmd.arg(image)
        .args(["-", "--psm", "0"])
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .ok()?
        .ok()?;
    parse_orientation(&String::from_utf8_lossy(&out.stdout))
}

/// `Rotate: 180` and `Orientation confidence: 19.43` from tesseract's OSD report.
fn parse_orientation(report: &str) -> Option<u32> {
    let field = |name: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f32>().ok())
    };
    let rotate = field("Rotate:")? as u32;
    // Clean scans measure 12–19, a coarse dot-matrix page 1.4; below 1 it is a guess. A wrong
    // turn costs one more OCR pass: the caller keeps the surer of the two readings.
    (matches!(rotate, 90 | 180 | 270) && field("Orientation confidence:")? >= 1.0).then_some(rotate)
}

/// Writes the blank marker image into `dir` (once per document) and returns its path.
pub(crate) fn write_marker(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("marker.png");
    let white = vec![255u8; (MARKER_SIDE * MARKER_SIDE) as usize];
    crate::render::write_png(&path, &white, MARKER_SIDE, MARKER_SIDE, 300).map_err(|detail| {
        PdfError::Ocr {
            page: 0,
            detail: format!("cannot write the OCR marker image: {detail}"),
        }
    })?;
    Ok(path)
}

/// One warm tesseract process.
pub(crate) struct Recogniser {
    child: Option<std::process::Child>,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    drain: Option<tokio::task::JoinHandle<()>>,
    marker: PathBuf,
    /// Images sent so far (tesseract numbers pages from 1 in the order it reads them).
    sent: u32,
    /// Wrote the header line already (it comes before the first page).
    header_seen: bool,
}

impl Drop for Recogniser {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            subprocess::kill_group(child.id());
            // Killed: the wait returns at once, but off the caller's thread all the same.
            std::thread::spawn(move || child.wait());
        }
    }
}

impl Recogniser {
    /// Starts tesseract for `languages` (already validated); it loads its model while the
    /// first page is on its way.
    pub(crate) fn start(tesseract: &Path, languages: &str, marker: &Path) -> Result<Recogniser> {
        let args = [
            "-l",
            languages,
            "--psm",
            "3",
            "-c",
            "stream_filelist=1",
            "stdin",
            "stdout",
            "tsv",
        ];
        let args: Vec<_> = args.iter().map(Into::into).collect();
        let env = [("OMP_THREAD_LIMIT".to_string(), "1".to_string())];
        let mut child = subprocess::start(tesseract, &args, &env)?;
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(stdin), Some(stdout), Some(stderr)) = pipes else {
            subprocess::discard(child);
            return Err(PdfError::Child {
                detail: "tesseract started without pipes".into(),
                stderr: String::new(),
            });
        };
        let io_err = |e| PdfError::io(tesseract, e);
        let convert = || -> std::io::Result<_> {
            Ok((
                ChildStdin::from_std(stdin)?,
                ChildStdout::from_std(stdout)?,
                tokio::process::ChildStderr::from_std(stderr)?,
            ))
        };
        let (stdin, stdout, mut err) = match convert() {
            Ok(p) => p,
            Err(e) => {
                subprocess::discard(child);
                return Err(io_err(e));
            }
        };
        let buf = Arc::new(Mutex::new(Vec::new()));
        let tail = buf.clone();
        let drain = tokio::spawn(async move {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut chunk).await {
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.extend_from_slice(&chunk[..n]);
                if t.len() > STDERR_CAP {
                    let cut = t.len() - STDERR_CAP;
                    t.drain(..cut);
                }
            }
        });
        Ok(Recogniser {
            child: Some(child),
            stdin,
            stdout: BufReader::new(stdout).lines(),
            stderr: buf,
            drain: Some(drain),
            marker: marker.to_path_buf(),
            sent: 0,
            header_seen: false,
        })
    }

    /// Recognises one image under `timeout` and `cancel`. After any error the recogniser must
    /// be dropped (its process may be mid-page or gone).
    pub(crate) async fn recognise(
        &mut self,
        image: &Path,
        page: u32,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<OcrText> {
        let work = self.exchange(image, page);
        tokio::select! {
            r = work => r,
            _ = tokio::time::sleep(timeout) => Err(PdfError::Timeout {
                what: format!("OCR of page {page}"),
                seconds: timeout.as_secs_f64(),
            }),
            _ = cancel.cancelled() => Err(PdfError::Cancelled),
        }
    }

    async fn exchange(&mut self, image: &Path, page: u32) -> Result<OcrText> {
        let (img, marker) = (image.to_string_lossy(), self.marker.to_string_lossy());
        if img.contains('\n') || marker.contains('\n') {
            return Err(PdfError::Ocr {
                page,
                detail: "image path contains a line break".into(),
            });
        }
        let (want, done) = (self.sent + 1, self.sent + 2);
        self.sent += 2;
        let line = format!("{img}\n{marker}\n");
        if let Err(e) = self.stdin.write_all(line.as_bytes()).await {
            return Err(self
                .ended(page, &format!("writing to tesseract: {e}"))
                .await);
        }
        let _ = self.stdin.flush().await;
        let mut tsv = String::from(TSV_HEADER);
        loop {
            let line = match self.stdout.next_line().await {
                Ok(Some(l)) => l,
                Ok(None) => return Err(self.ended(page, "tesseract stopped").await),
                Err(e) => {
                    return Err(self.ended(page, &format!("reading tesseract: {e}")).await);
                }
            };
            if !self.header_seen && line.starts_with("level") {
                self.header_seen = true;
                continue;
            }
            let mut cols = line.split('\t');
            let (level, num) = (cols.next(), cols.next().and_then(|n| n.parse::<u32>().ok()));
            match num {
                Some(n) if n == done && level == Some("1") => break,
                Some(n) if n == want => {
                    tsv.push_str(&line);
                    tsv.push('\n');
                }
                _ => {}
            }
        }
        Ok(OcrText {
            text: clean(&text_from_tsv(&tsv)),
            confidence: mean_confidence(&tsv),
        })
    }

    /// The process ended (or its pipes broke) during page `page`: the error, with its stderr.
    async fn ended(&mut self, page: u32, what: &str) -> PdfError {
        if let Some(d) = self.drain.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), d).await;
        }
        let stderr = {
            let buf = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&buf).trim().to_string()
        };
        // Tesseract announces each image on stderr ("Page 3 : /path"); the rest explains.
        let why: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("Page ")).collect();
        PdfError::Ocr {
            page,
            detail: format!("{what}: {}", why.join("; ")),
        }
    }
}

/// The column names tesseract writes once at the top of its TSV output.
const TSV_HEADER: &str = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n";

/// The page's text from its TSV, as tesseract's `txt` output lays it out: words of a line
/// joined by spaces, lines by a line break, paragraphs (and blocks) by a blank line.
fn text_from_tsv(tsv: &str) -> String {
    let mut out = String::new();
    let mut last: Option<(&str, &str, &str)> = None;
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < 12 || cols[0] != "5" || cols[11].trim().is_empty() {
            continue;
        }
        let (block, par, line) = (cols[2], cols[3], cols[4]);
        match last {
            None => {}
            Some((b, p, _)) if (b, p) != (block, par) => out.push_str("\n\n"),
            Some((_, _, l)) if l != line => out.push('\n'),
            Some(_) => out.push(' '),
        }
        last = Some((block, par, line));
        out.push_str(cols[11]);
    }
    out
}

/// Tesseract ends pages with a form feed and pads blocks with blank lines; keep paragraphs.
fn clean(text: &str) -> String {
    let text = text.replace('\u{c}', "");
    let mut out = String::new();
    let mut blank = false;
    for line in text.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        out.push_str(line);
    }
    out
}

/// Mean confidence of recognised words (TSV level 5 rows with text and conf ≥ 0).
fn mean_confidence(tsv: &str) -> Option<f32> {
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < 12 || cols[0] != "5" || cols[11].trim().is_empty() {
            continue;
        }
        if let Ok(conf) = cols[10].parse::<f64>()
            && conf >= 0.0
        {
            sum += conf;
            n += 1;
        }
    }
    (n > 0).then(|| (sum / n as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientation_report() {
        let r = "Page number: 0\nOrientation in degrees: 90\nRotate: 270\nOrientation confidence: 12.05\nScript: Latin\n";
        assert_eq!(parse_orientation(r), Some(270));
        assert_eq!(parse_orientation(&r.replace("12.05", "0.80")), None);
        assert_eq!(parse_orientation(&r.replace("12.05", "1.48")), Some(270));
        assert_eq!(
            parse_orientation(&r.replace("Rotate: 270", "Rotate: 0")),
            None
        );
        assert_eq!(parse_orientation(""), None);
    }

    #[test]
    fn tsv_confidence() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
                   1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n\
                   5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t90.5\tHello\n\
                   5\t1\t1\t1\t1\t2\t0\t0\t10\t10\t70.5\tworld\n\
                   5\t1\t1\t1\t1\t3\t0\t0\t10\t10\t95\t \n";
        assert_eq!(mean_confidence(tsv), Some(80.5));
        assert_eq!(mean_confidence("header\n"), None);
    }

    #[test]
    fn text_from_tsv_keeps_lines_and_paragraphs() {
        let row = |b, p, l, w, t: &str| format!("5\t1\t{b}\t{p}\t{l}\t{w}\t0\t0\t9\t9\t90\t{t}\n");
        let tsv = [
            TSV_HEADER.to_string(),
            "1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n".to_string(),
            row(1, 1, 1, 1, "Hello"),
            row(1, 1, 1, 2, "world"),
            row(1, 1, 2, 1, "again"),
            row(1, 1, 2, 2, " "),
            row(1, 2, 1, 1, "New"),
            row(2, 1, 1, 1, "Block"),
        ]
        .concat();
        assert_eq!(text_from_tsv(&tsv), "Hello world\nagain\n\nNew\n\nBlock");
        assert_eq!(text_from_tsv(TSV_HEADER), "");
    }

    #[test]
    fn cleans_tesseract_text() {
        assert_eq!(clean("a\nb\n\n\nc\n\u{c}"), "a\nb\n\nc");
        assert_eq!(clean("\n\n \u{c}"), "");
    }
}
