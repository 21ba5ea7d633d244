//! The crate's one error type: every failure of yt-dlp, ffmpeg, caption parsing, ASR and the cache,
//! each variant saying whether trying again later can help (`retryable`). Messages never hold secrets.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while ingesting a video or playlist.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL could not be parsed or uses a scheme other than http(s).
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The URL's host is not on the allowed list; refused before any network call.
    #[error("host {host:?} is not allowed (allowed: {allowed})")]
    HostNotAllowed { host: String, allowed: String },
    /// yt-dlp has no extractor for the URL.
    #[error("unsupported URL: {0}")]
    UnsupportedUrl(String),
    /// YouTube's "Sign in to confirm you're not a bot" (server IPs); cookies or a proxy help.
    #[error(
        "YouTube bot check (sign in to confirm you're not a bot); configure cookies or a proxy: {0}"
    )]
    BotCheck(String),
    /// HTTP 429 Too Many Requests (often on subtitles).
    #[error("rate limited (HTTP 429): {0}")]
    RateLimited(String),
    /// Private video or playlist.
    #[error("private video: {0}")]
    Private(String),
    /// Age-restricted; needs cookies of a signed-in adult account.
    #[error("age-restricted video: {0}")]
    AgeRestricted(String),
    /// Channel members only.
    #[error("members-only video: {0}")]
    MembersOnly(String),
    /// Removed, deleted, terminated account or otherwise unavailable.
    #[error("video unavailable: {0}")]
    Unavailable(String),
    /// Not available from this country.
    #[error("geo-blocked: {0}")]
    GeoBlocked(String),
    /// A live stream or premiere that has not started yet.
    #[error("live stream / premiere not available yet: {0}")]
    NotYetLive(String),
    /// YouTube requires a JavaScript runtime yt-dlp could not find.
    #[error("yt-dlp needs a JavaScript runtime (set js_runtime, e.g. node or deno): {0}")]
    JsRuntimeMissing(String),
    /// DNS, connection refused/reset, TLS or read timeouts.
    #[error("network error: {0}")]
    Network(String),
    /// A helper program (yt-dlp, ffmpeg, ffprobe) is not installed at the configured path.
    #[error("{tool} not found at {path}: install it (see scripts/setup.sh)")]
    ToolMissing { tool: String, path: PathBuf },
    /// A helper program failed in a way not classified above; stderr tail attached.
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        status: String,
        stderr: String,
    },
    /// A helper program ran past its time limit and its process group was killed.
    #[error("{tool} timed out after {:.0?}; process group killed", .after)]
    Timeout { tool: String, after: Duration },
    /// The caller's cancellation token fired; the running process group was killed.
    #[error("cancelled")]
    Cancelled,
    /// Media that ffmpeg/ffprobe cannot decode (truncated or corrupt download).
    #[error("invalid or truncated media {path}: {reason}")]
    Media { path: PathBuf, reason: String },
    /// A caption file that cannot be read.
    #[error("caption parse error at line {line}: {reason}")]
    Caption { line: usize, reason: String },
    /// The transcription endpoint answered with an error status.
    #[error("ASR endpoint returned HTTP {status}: {body}")]
    AsrStatus { status: u16, body: String },
    /// The transcription endpoint could not be reached or answered garbage.
    #[error("ASR request failed: {0}")]
    AsrRequest(String),
    /// Local speech-to-text (Whisper) failed.
    #[error("local speech-to-text failed: {0}")]
    LocalAsr(String),
    /// Invalid options (e.g. an unusable cache dir).
    /// Over a configured cap (download size, duration, transcript length). Never retried.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The egress guard refused a fetch (a private, loopback, link-local or metadata address).
    #[error("fetch refused: {0}")]
    EgressRefused(String),
    #[error("configuration error: {0}")]
    Config(String),
    /// yt-dlp printed JSON we could not use.
    #[error("unexpected yt-dlp output: {0}")]
    Output(String),
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    /// True when the same request may succeed later (with backoff); false when it is final.
    pub fn retryable(&self) -> bool {
        match self {
            Error::BotCheck(_)
            | Error::RateLimited(_)
            | Error::NotYetLive(_)
            | Error::Network(_)
            | Error::Timeout { .. }
            | Error::AsrRequest(_) => true,
            Error::AsrStatus { status, .. } => *status == 429 || *status >= 500,
            // An unclassified tool failure is most often a transient YouTube-side hiccup.
            Error::Tool { .. } => true,
            Error::InvalidUrl { .. }
            | Error::HostNotAllowed { .. }
            | Error::UnsupportedUrl(_)
            | Error::Private(_)
            | Error::AgeRestricted(_)
            | Error::MembersOnly(_)
            | Error::Unavailable(_)
            | Error::GeoBlocked(_)
            | Error::JsRuntimeMissing(_)
            | Error::ToolMissing { .. }
            | Error::Cancelled
            | Error::Media { .. }
            | Error::Caption { .. }
            | Error::LocalAsr(_)
            | Error::Config(_)
            | Error::Output(_)
            | Error::TooLarge(_)
            | Error::EgressRefused(_)
            | Error::Io { .. } => false,
        }
    }

    /// A short stable name for logs, JSON results and metrics (`"bot_check"`, `"private"`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidUrl { .. } => "invalid_url",
            Error::HostNotAllowed { .. } => "host_not_allowed",
            Error::UnsupportedUrl(_) => "unsupported_url",
            Error::BotCheck(_) => "bot_check",
            Error::RateLimited(_) => "rate_limited",
            Error::Private(_) => "private",
            Error::AgeRestricted(_) => "age_restricted",
            Error::MembersOnly(_) => "members_only",
            Error::Unavailable(_) => "unavailable",
            Error::GeoBlocked(_) => "geo_blocked",
            Error::NotYetLive(_) => "not_yet_live",
            Error::JsRuntimeMissing(_) => "js_runtime_missing",
            Error::Network(_) => "network",
            Error::ToolMissing { .. } => "tool_missing",
            Error::Tool { .. } => "tool_failed",
            Error::Timeout { .. } => "timeout",
            Error::Cancelled => "cancelled",
            Error::Media { .. } => "media",
            Error::Caption { .. } => "caption",
            Error::AsrStatus { .. } => "asr_status",
            Error::AsrRequest(_) => "asr_request",
            Error::LocalAsr(_) => "local_asr",
            Error::Config(_) => "config",
            Error::TooLarge(_) => "too_large",
            Error::EgressRefused(_) => "egress_refused",
            Error::Output(_) => "output",
            Error::Io { .. } => "io",
        }
    }

    /// Suggested minimum wait before a retry, when the failure says something about it.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited(_) => Some(Duration::from_secs(300)),
            Error::BotCheck(_) => Some(Duration::from_secs(900)),
            Error::NotYetLive(_) => Some(Duration::from_secs(1800)),
            Error::Network(_) | Error::Timeout { .. } | Error::Tool { .. } => {
                Some(Duration::from_secs(30))
            }
            Error::AsrStatus { .. } | Error::AsrRequest(_) => Some(Duration::from_secs(30)),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
