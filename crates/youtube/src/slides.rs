//! Text on screen: the kept frames OCR'd with the tesseract CLI (one run for all of a video's
//! frames, a list file in, pages split at tesseract's page separator; a run per frame if that
//! fails or does not give one page per frame); lines that read as words (a
//! share of dictionary-like tokens, junk from charts and photos dropped) join the transcript as
//! `[on screen] …` segments at the frame's time — a lesson's slides often state the rules.
//! Does not decide which frames exist (`frames.rs`).

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::frames::Frame;
use crate::options::YoutubeOptions;
use crate::process::{Cmd, run};
use crate::segment::Segment;

/// What a segment made from a frame's text starts with.
pub const ON_SCREEN: &str = "[on screen]";
/// Share of a line's tokens that must look like words.
const WORD_SHARE: f64 = 0.6;
/// What tesseract makes of a bullet point.
const BULLETS: &[&str] = &["•", "e", "©", "«", "»", "o", "-", "*", "·", "+"];
/// Seconds an on-screen segment lasts when no later frame ends it.
const HOLD: f64 = 5.0;

/// Adds the readable text of `frames` to `segments` (kept in time order). Never fails: a
/// missing tesseract is a warning when OCR was asked for explicitly, silent when on `auto`.
pub(crate) async fn add_on_screen(
    opts: &YoutubeOptions,
    frames: &[Frame],
    segments: &mut Vec<Segment>,
    warnings: &mut Vec<String>,
    cancel: &CancellationToken,
) -> Result<()> {
    if opts.frame_ocr == Some(false) || frames.is_empty() {
        return Ok(());
    }
    let texts: Vec<Result<String>> = match ocr_all(opts, frames, cancel).await {
        Ok(pages) => pages.into_iter().map(Ok).collect(),
        // Handled below as a run per frame would be, without starting a missing tool N times.
        Err(e @ (Error::Cancelled | Error::ToolMissing { .. })) => vec![Err(e)],
        Err(_) => {
            let mut one = Vec::with_capacity(frames.len());
            for f in frames {
                one.push(ocr(opts, &f.path, cancel).await);
            }
            one
        }
    };
    let mut added = Vec::new();
    for ((i, f), text) in frames.iter().enumerate().zip(texts) {
        let text = match text {
            Ok(t) => t,
            Err(Error::Cancelled) => return Err(Error::Cancelled),
            Err(e @ Error::ToolMissing { .. }) => {
                if opts.frame_ocr == Some(true) {
                    warnings.push(format!("slide OCR skipped: {e}"));
                }
                return Ok(());
            }
            Err(e) => {
                warnings.push(format!("slide OCR failed at {:.1} s: {e}", f.timestamp));
                continue;
            }
        };
        let Some(text) = readable(&text) else {
            continue;
        };
        let end = frames
            .get(i + 1)
            .map_or(f.timestamp + HOLD, |n| n.timestamp);
        added.push(Segment {
            start: f.timestamp,
            end,
            text: format!("{ON_SCREEN} {text}"),
        });
    }
    segments.extend(added);
    segments.sort_by(|a, b| a.start.total_cmp(&b.start));
    Ok(())
}

/// Every frame in one `tesseract LIST stdout` run (same settings as [`ocr`]; tesseract's engine
/// reads each page on its own, so each page's text is what a run on that frame alone gives).
/// Fails unless the output splits into exactly one page per frame.
async fn ocr_all(
    opts: &YoutubeOptions,
    frames: &[Frame],
    cancel: &CancellationToken,
) -> Result<Vec<String>> {
    let mut list = tempfile::Builder::new()
        .prefix("hlbot-ocr-")
        .suffix(".txt")
        .tempfile()
        .map_err(|e| Error::io("creating the OCR list file", e))?;
    for f in frames {
        let path = f.path.to_string_lossy();
        if path.contains('\n') {
            return Err(Error::Media {
                path: f.path.clone(),
                reason: "a frame path with a newline cannot go in a list file".into(),
            });
        }
        std::io::Write::write_all(&mut list, format!("{path}\n").as_bytes())
            .map_err(|e| Error::io("writing the OCR list file", e))?;
    }
    let mut c = tesseract(opts);
    c.arg(list.path());
    c.args([
        "stdout",
        "-l",
        "eng",
        "--psm",
        "3",
        "-c",
        "page_separator=\u{c}",
    ]);
    let out = run(&c, cancel, None).await?.check("tesseract")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut pages: Vec<String> = text.split('\u{c}').map(str::to_string).collect();
    if pages.last().is_some_and(|p| p.trim().is_empty()) && pages.len() == frames.len() + 1 {
        pages.pop();
    }
    if pages.len() != frames.len() {
        return Err(Error::Tool {
            tool: "tesseract".into(),
            status: format!("{} pages for {} frames", pages.len(), frames.len()),
            stderr: crate::process::last_lines(&out.stderr, 4),
        });
    }
    Ok(pages)
}

/// The tesseract command, one thread: its OpenMP threads spin against each other and against
/// the other work of the machine (8 frames here: 4.7 s wall, 5 s CPU with the default threads;
/// 0.66 s with one), as the PDF and chart readers already found.
fn tesseract(opts: &YoutubeOptions) -> Cmd {
    let mut c = Cmd::new("tesseract", &opts.tesseract, opts.timeouts.ffmpeg);
    c.env.push(("OMP_THREAD_LIMIT".into(), "1".into()));
    c
}

/// `tesseract IMAGE stdout` (English, automatic page segmentation).
async fn ocr(opts: &YoutubeOptions, image: &Path, cancel: &CancellationToken) -> Result<String> {
    let mut c = tesseract(opts);
    c.arg(image);
    c.args(["stdout", "-l", "eng", "--psm", "3"]);
    let out = run(&c, cancel, None).await?.check("tesseract")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The lines of OCR output that read as words, joined into sentences (a line without final
/// punctuation gets a full stop, so a slide's bullets stay separate rules); `None` when none do.
pub(crate) fn readable(ocr: &str) -> Option<String> {
    let mut lines = Vec::new();
    for line in ocr.lines() {
        let line = line.trim();
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let words = tokens.iter().filter(|t| wordlike(t)).count();
        if words < 2 || (words as f64) < WORD_SHARE * tokens.len() as f64 {
            continue;
        }
        // Bullets come out of tesseract as `•`, `e`, `©`, `«`, `o` or `-`.
        let body = match tokens.first() {
            Some(b) if tokens.len() > 2 && BULLETS.contains(b) => &tokens[1..],
            _ => &tokens[..],
        };
        let line = body.join(" ");
        let mut s = line.to_string();
        if !s.ends_with(['.', '!', '?', ':', ';']) {
            s.push('.');
        }
        lines.push(s);
    }
    (!lines.is_empty()).then(|| lines.join(" "))
}

/// A token that looks like an English word or a trading number: letters with a vowel (case
/// as words have it), or a number such as `1.5`, `50`, `2R`, `1%`, `4H`, `EUR/USD`.
fn wordlike(t: &str) -> bool {
    let t = t.trim_matches(|c: char| ",.;:!?()\"'&".contains(c));
    if t.is_empty() {
        return false;
    }
    if t.contains('/') {
        return t
            .split('/')
            .all(|p| p.len() >= 2 && p.chars().all(|c| c.is_ascii_uppercase()));
    }
    let digits = t.chars().filter(char::is_ascii_digit).count();
    if digits > 0 {
        let rest: String = t
            .chars()
            .filter(|c| !c.is_ascii_digit() && *c != '.')
            .collect();
        return rest.len() <= 3 && rest.chars().all(|c| c.is_ascii_alphabetic() || c == '%');
    }
    if !t
        .chars()
        .all(|c| c.is_alphabetic() || c == '-' || c == '\'')
    {
        return false;
    }
    let letters: Vec<char> = t.chars().filter(|c| c.is_alphabetic()).collect();
    let lower = letters.iter().skip(1).all(|c| c.is_lowercase());
    let upper = letters.iter().all(|c| c.is_uppercase());
    let vowel = t.chars().any(|c| "aeiouyAEIOUY".contains(c));
    (letters.len() == 1 && "aAI".contains(letters[0]))
        || (letters.len() >= 2 && vowel && (lower || upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_kept_and_junk_dropped() {
        let ocr = "Risk Management\n\n« Stop loss 1.5 ATR below the swing low\n1.1050 1.1100 ~~ |\\ iI| ,;\nRisk 1% per trade\nEUR/USD 4H - bounce at support\n";
        let t = readable(ocr).unwrap();
        assert_eq!(
            t,
            "Risk Management. Stop loss 1.5 ATR below the swing low. Risk 1% per trade. EUR/USD 4H - bounce at support."
        );
        assert_eq!(readable("1.1050\n1.1100\n|| ~ _ ="), None);
        assert_eq!(readable("xq zzkt vbnm"), None);
    }
}
