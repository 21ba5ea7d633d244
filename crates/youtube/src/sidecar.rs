//! Subtitle files next to a local media file, as yt-dlp (`--write-subs`: `lesson.en.vtt`) and
//! players (`lesson.srt`) name them: which names to look for, and the file the caller opened.
//! Opening is the caller's job (it decides which folders may be read).

use std::path::{Path, PathBuf};

/// Caption file extensions looked for, best first (as for YouTube tracks).
const EXTENSIONS: [&str; 10] = [
    "json3", "vtt", "srt", "srv3", "ttml", "srv1", "srv2", "sbv", "ass", "ssa",
];

/// A subtitle file found next to a media file: its name and its bytes.
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// Region and script variants of a language as YouTube (and so yt-dlp's file names) writes them:
/// a track uploaded as English (United States) is saved as `lesson.en-US.vtt`.
fn variants(lang: &str) -> &'static [&'static str] {
    match lang {
        "en" => &[
            "en-US", "en-GB", "en-CA", "en-AU", "en-IN", "en-IE", "en-NZ",
        ],
        "es" => &["es-419", "es-ES", "es-MX", "es-US"],
        "pt" => &["pt-BR", "pt-PT"],
        "fr" => &["fr-FR", "fr-CA", "fr-BE", "fr-CH"],
        "de" => &["de-DE", "de-AT", "de-CH"],
        "zh" => &["zh-Hans", "zh-Hant", "zh-CN", "zh-TW", "zh-HK"],
        "nl" => &["nl-NL", "nl-BE"],
        "it" => &["it-IT"],
        "ru" => &["ru-RU"],
        "ja" => &["ja-JP"],
        "ko" => &["ko-KR"],
        "ar" => &["ar-SA", "ar-EG"],
        _ => &[],
    }
}

/// The subtitle file names to try for `media`, best first: for each preferred language in order,
/// `<stem>.<lang>.<ext>`, `<stem>.<lang>-orig.<ext>`, then the same for its region and script
/// variants (`en-US`, `en-GB`, …, `pt-BR`, `zh-Hans`; a folder is never listed, so the names
/// are guessed); last `<stem>.<ext>`.
pub fn sidecar_names(media: &Path, languages: &[String]) -> Vec<PathBuf> {
    let Some(stem) = media.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let mut tags: Vec<String> = languages
        .iter()
        .flat_map(|l| {
            std::iter::once(l.as_str())
                .chain(variants(l).iter().copied().filter(|v| v != l))
                .flat_map(|l| [format!(".{l}"), format!(".{l}-orig")])
                .collect::<Vec<_>>()
        })
        .collect();
    tags.push(String::new());
    let mut out = Vec::new();
    for tag in &tags {
        for ext in EXTENSIONS {
            out.push(media.with_file_name(format!("{stem}{tag}.{ext}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_preference_order() {
        let names = sidecar_names(Path::new("/v/lesson.one.mp4"), &["en".into(), "xx".into()]);
        // en, en-orig, 7 regions × 2, xx, xx-orig, then the bare name: 19 tags × 10 formats.
        assert_eq!(names.len(), 190);
        assert_eq!(names[0], Path::new("/v/lesson.one.en.json3"));
        assert_eq!(names[1], Path::new("/v/lesson.one.en.vtt"));
        assert_eq!(names[10], Path::new("/v/lesson.one.en-orig.json3"));
        // yt-dlp's name for an English (United States) track, before the next language.
        assert_eq!(names[21], Path::new("/v/lesson.one.en-US.vtt"));
        assert_eq!(names[161], Path::new("/v/lesson.one.xx.vtt"));
        assert_eq!(names[182], Path::new("/v/lesson.one.srt"));
        // A language already given with its region is not repeated.
        let names = sidecar_names(Path::new("/v/a.mp4"), &["en-US".into()]);
        assert_eq!(names.len(), 30);
        assert!(sidecar_names(Path::new("/"), &["en".into()]).is_empty());
    }
}
