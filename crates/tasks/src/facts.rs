//! What `hlbot ingest` read from a source before any strategy was looked for: title, pages and
//! OCR'd pages, duration, frames, images, language, encoding. Built from the `process_*` result
//! (as JSON, so the queued path reads the same facts from the chain's first result) or from the
//! caption/text file itself. Printing is the CLI's; this owns only the facts.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The facts about one source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadFacts {
    /// `pdf`, `video`, `captions`, `text` or `image`.
    pub kind: String,
    pub title: Option<String>,
    pub pages: Option<u64>,
    /// Pages whose text came from OCR.
    pub ocr_pages: Option<u64>,
    /// Seconds.
    pub duration: Option<f64>,
    pub frames: Option<u64>,
    pub images: Option<u64>,
    /// Caption cues or transcript segments.
    pub segments: Option<u64>,
    /// ISO 639-1 code, when the source says (caption track, file name).
    pub language: Option<String>,
    /// The text's encoding as read (`UTF-8`, `windows-1254 (detected)`, …).
    pub encoding: Option<String>,
    /// Where a video's transcript came from (`captions:auto:en`, `asr`, `none`).
    pub transcript_source: Option<String>,
    /// Characters of text handed to the extractor.
    pub characters: u64,
    /// What the read step warned about (silent audio, no subtitles and no speech-to-text, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ReadFacts {
    /// Facts from a `process_pdf_document` or `process_youtube_video` result.
    pub fn from_document(v: &Value) -> ReadFacts {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let n = |k: &str| v.get(k).and_then(Value::as_array).map(|a| a.len() as u64);
        if let Some(pages) = v.get("pages").and_then(Value::as_array) {
            let ocr = pages
                .iter()
                .filter(|p| p.get("source").and_then(Value::as_str) == Some("ocr"))
                .count() as u64;
            let images: u64 = pages
                .iter()
                .filter_map(|p| p.get("images").and_then(Value::as_array))
                .map(|a| a.len() as u64)
                .sum();
            let chars: u64 = pages
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(|t| t.chars().count() as u64)
                .sum();
            let title = v
                .pointer("/metadata/title")
                .and_then(Value::as_str)
                .filter(|t| !t.trim().is_empty())
                .map(str::to_string)
                .or_else(|| file_name(v.get("path").and_then(Value::as_str)));
            return ReadFacts {
                kind: "pdf".into(),
                title,
                pages: v
                    .get("page_count")
                    .and_then(Value::as_u64)
                    .or(Some(pages.len() as u64)),
                ocr_pages: Some(ocr),
                images: Some(images),
                characters: chars,
                ..Default::default()
            };
        }
        let source = s("transcript_source");
        let language = source
            .as_deref()
            .and_then(|t| t.strip_prefix("captions:"))
            .and_then(|t| t.rsplit(':').next())
            .map(str::to_string);
        let local = s("extractor").as_deref() == Some("file");
        ReadFacts {
            kind: if local { "media file" } else { "video" }.into(),
            title: s("title"),
            duration: v.get("duration").and_then(Value::as_f64),
            frames: n("frames"),
            segments: n("transcript_segments"),
            language,
            encoding: caption_encoding(v),
            transcript_source: source,
            characters: v
                .get("transcript")
                .and_then(Value::as_str)
                .map_or(0, |t| t.chars().count() as u64),
            // Why a transcript is missing or partial ("captions failed: …", "no transcript: …",
            // music left out): YouTube videos' as much as local files'. The caption encoding has
            // its own line.
            warnings: v
                .get("warnings")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|w| !w.starts_with("captions decoded from "))
                .map(str::to_string)
                .collect(),
            ..Default::default()
        }
    }

    /// Facts of a caption file.
    pub fn from_captions(path: &Path, c: &hlbot_youtube::Captions) -> ReadFacts {
        ReadFacts {
            kind: "captions".into(),
            title: file_name(path.to_str()),
            duration: c.segments.last().map(|s| s.end),
            segments: Some(c.segments.len() as u64),
            language: hlbot_youtube::lang_from_path(path),
            encoding: Some(c.encoding.to_string()),
            characters: c
                .segments
                .iter()
                .map(|s| s.text.chars().count() as u64)
                .sum(),
            ..Default::default()
        }
    }

    /// Facts of a plain text file.
    pub fn from_text(path: &Path, text: &str, encoding: &hlbot_youtube::Encoding) -> ReadFacts {
        ReadFacts {
            kind: "text".into(),
            title: file_name(path.to_str()),
            language: hlbot_youtube::lang_from_path(path),
            encoding: Some(encoding.to_string()),
            characters: text.chars().count() as u64,
            ..Default::default()
        }
    }

    /// Facts of a chart image.
    pub fn image(path: &Path) -> ReadFacts {
        ReadFacts {
            kind: "image".into(),
            title: file_name(path.to_str()),
            images: Some(1),
            ..Default::default()
        }
    }

    /// One line per known fact, `label: value`, in reading order.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("source", self.kind.clone())];
        let mut add = |label: &'static str, v: Option<String>| {
            if let Some(v) = v {
                out.push((label, v));
            }
        };
        add("title", self.title.clone());
        add("pages", self.pages.map(|p| p.to_string()));
        add("OCR'd pages", self.ocr_pages.map(|p| p.to_string()));
        add("duration", self.duration.map(hms));
        add("segments", self.segments.map(|p| p.to_string()));
        add("frames", self.frames.map(|p| p.to_string()));
        add("images", self.images.map(|p| p.to_string()));
        add("language", self.language.clone());
        add("encoding", self.encoding.clone());
        add(
            "transcript",
            self.transcript_source.as_deref().map(transcript_label),
        );
        add("characters", Some(self.characters.to_string()));
        for w in &self.warnings {
            out.push(("warning", w.clone()));
        }
        out
    }
}

/// A warning `captions decoded from windows-1254 (detected)` left by the video step.
fn caption_encoding(v: &Value) -> Option<String> {
    let warnings = v.get("warnings").and_then(Value::as_array)?;
    let from = warnings
        .iter()
        .filter_map(Value::as_str)
        .find_map(|w| w.strip_prefix("captions decoded from "))
        .map(str::to_string);
    let captions = v
        .get("transcript_source")
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("captions:"));
    from.or_else(|| captions.then(|| "UTF-8".to_string()))
}

/// A transcript source as a reader says it: `captions:embedded:eng` → `embedded subtitles (eng)`,
/// `captions:file:en` → `subtitle file beside it (en)`,
/// `asr:whisper` → `speech-to-text (local Whisper)`; YouTube's own sources as they are.
fn transcript_label(source: &str) -> String {
    match source.split_once(':') {
        Some(("captions", rest)) if rest.starts_with("embedded") => {
            let lang = rest.rsplit(':').next().filter(|l| *l != "embedded");
            match lang {
                Some(l) => format!("embedded subtitles ({l})"),
                None => "embedded subtitles".into(),
            }
        }
        Some(("captions", rest)) if rest.starts_with("file:") => {
            format!("subtitle file beside it ({})", &rest["file:".len()..])
        }
        Some(("asr", "whisper")) => "speech-to-text (local Whisper)".into(),
        Some(("asr", "api")) => "speech-to-text (API)".into(),
        _ => source.to_string(),
    }
}

fn file_name(p: Option<&str>) -> Option<String> {
    Path::new(p?)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn hms(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pdf_and_video_facts() {
        let pdf = json!({"path": "/x/notes.pdf", "page_count": 2, "metadata": {"title": null},
            "pages": [{"number": 1, "text": "abc", "source": "text", "images": [{}]},
                      {"number": 2, "text": "de", "source": "ocr", "images": []}]});
        let f = ReadFacts::from_document(&pdf);
        assert_eq!(
            (
                f.kind.as_str(),
                f.title.as_deref(),
                f.pages,
                f.ocr_pages,
                f.images,
                f.characters
            ),
            ("pdf", Some("notes.pdf"), Some(2), Some(1), Some(1), 5)
        );
        let video = json!({"title": "Lesson", "duration": 75.0, "frames": [{}, {}],
            "transcript": "hello", "transcript_segments": [{}], "transcript_source": "captions:auto:tr",
            "warnings": ["captions decoded from windows-1254 (detected)"]});
        let f = ReadFacts::from_document(&video);
        assert_eq!(f.language.as_deref(), Some("tr"));
        assert_eq!(f.encoding.as_deref(), Some("windows-1254 (detected)"));
        assert!(f.warnings.is_empty(), "the encoding has its own line");
        assert_eq!(f.frames, Some(2));
        assert!(f.lines().contains(&("duration", "0:01:15".to_string())));
        let silent = json!({"title": "Lesson", "transcript": "", "transcript_source": "none",
            "warnings": ["captions failed: HTTP Error 429", "no transcript: no usable captions and no ASR provider configured"]});
        let f = ReadFacts::from_document(&silent);
        assert!(
            f.lines()
                .contains(&("warning", "captions failed: HTTP Error 429".to_string())),
            "a YouTube video says why it has no transcript"
        );
        let local = json!({"title": "lesson.mp4", "extractor": "file", "duration": 6.0,
            "transcript": "", "transcript_segments": [], "transcript_source": "captions:embedded:eng",
            "warnings": ["the audio is silent"]});
        let f = ReadFacts::from_document(&local);
        assert_eq!(f.kind, "media file");
        assert!(
            f.lines()
                .contains(&("transcript", "embedded subtitles (eng)".to_string()))
        );
        assert!(
            f.lines()
                .contains(&("warning", "the audio is silent".to_string()))
        );
        assert_eq!(
            transcript_label("asr:whisper"),
            "speech-to-text (local Whisper)"
        );
    }
}
