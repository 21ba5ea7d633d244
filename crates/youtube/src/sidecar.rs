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

/// The subtitle file names to try for `media`, best first: `<stem>.<lang>.<ext>` and
/// `<stem>.<lang>-orig.<ext>` for each preferred language in order, then `<stem>.<ext>`.
pub fn sidecar_names(media: &Path, languages: &[String]) -> Vec<PathBuf> {
    let Some(stem) = media.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let mut tags: Vec<String> = languages
        .iter()
        .flat_map(|l| [format!(".{l}"), format!(".{l}-orig")])
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
        let names = sidecar_names(Path::new("/v/lesson.one.mp4"), &["en".into(), "de".into()]);
        assert_eq!(names.len(), 50);
        assert_eq!(names[0], Path::new("/v/lesson.one.en.json3"));
        assert_eq!(names[1], Path::new("/v/lesson.one.en.vtt"));
        assert_eq!(names[10], Path::new("/v/lesson.one.en-orig.json3"));
        assert_eq!(names[21], Path::new("/v/lesson.one.de.vtt"));
        assert_eq!(names[42], Path::new("/v/lesson.one.srt"));
        assert!(sidecar_names(Path::new("/"), &["en".into()]).is_empty());
    }
}
