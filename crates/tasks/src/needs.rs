//! Which external tool each task needs, so a worker can check, for the queues it serves, that
//! the tools are there before it takes work (`hlbot worker` start-up checks). Names only; finding
//! and probing the tools is the CLI's.

/// An external program or library a task uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tool {
    /// libpdfium.so (PDF text and images).
    Pdfium,
    /// tesseract with the configured language packs (OCR of scanned PDF pages).
    Tesseract,
    /// yt-dlp (YouTube metadata, captions, media).
    YtDlp,
    /// ffmpeg and ffprobe (local video and audio files: streams, subtitles, audio, frames).
    Ffmpeg,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Pdfium => "pdfium",
            Tool::Tesseract => "tesseract",
            Tool::YtDlp => "yt-dlp",
            Tool::Ffmpeg => "ffmpeg",
        }
    }
}

/// The tools task `name` needs (with or without the app's module prefix); none for unknown names.
pub fn needs(name: &str) -> &'static [Tool] {
    match name.strip_prefix(crate::MODULE).unwrap_or(name) {
        "process_pdf_document" => &[Tool::Pdfium, Tool::Tesseract],
        "process_youtube_video" | "process_youtube_playlist" => &[Tool::YtDlp],
        "process_video_file" => &[Tool::Ffmpeg],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_and_youtube_tasks_name_their_tools() {
        assert_eq!(
            needs("process_pdf_document"),
            &[Tool::Pdfium, Tool::Tesseract]
        );
        assert_eq!(
            needs("app.workers.tasks.process_youtube_video"),
            &[Tool::YtDlp]
        );
        assert_eq!(needs("process_video_file"), &[Tool::Ffmpeg]);
        assert!(needs("extract_trading_strategy").is_empty());
    }
}
