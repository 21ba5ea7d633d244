//! YouTube ingestion as a plain async library: yt-dlp + ffmpeg + caption parsing. Knows nothing about queues.
