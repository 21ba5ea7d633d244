//! Turns yt-dlp's stderr into a typed [`Error`]: bot check, 429, private, age-restricted,
//! members-only, unavailable, geo-blocked, not-yet-live, JS runtime, network, unsupported URL.
//! Patterns follow the wording of yt-dlp's YouTube extractor (2026.10) and YouTube's own reasons.

use crate::error::Error;

/// Classifies a failed yt-dlp run from its stderr (the `ERROR:` lines decide; warnings only help).
pub fn classify_ytdlp(stderr: &str) -> Error {
    let errors: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ERROR:"))
        .collect();
    let message = if errors.is_empty() {
        crate::process::last_lines(stderr, 6)
    } else {
        errors.join("\n")
    };
    let message = shorten(&message);
    let err = message.to_lowercase();
    let all = stderr.to_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| err.contains(n));

    if all.contains("no supported javascript runtime")
        && has(&[
            "requested format is not available",
            "challenge",
            "signature",
            "no video formats",
        ])
    {
        return Error::JsRuntimeMissing(message);
    }
    if has(&["not a bot", "captcha", "unusual traffic"]) {
        return Error::BotCheck(message);
    }
    if has(&[
        "confirm your age",
        "age-restricted",
        "age restricted",
        "inappropriate for some users",
    ]) {
        return Error::AgeRestricted(message);
    }
    if has(&[
        "private video",
        "video is private",
        "playlist is private",
        "is private",
    ]) {
        return Error::Private(message);
    }
    if has(&[
        "members-only",
        "members only",
        "join this channel",
        "channel's members",
    ]) {
        return Error::MembersOnly(message);
    }
    if has(&[
        "in your country",
        "geo restrict",
        "geo-restrict",
        "from your location",
    ]) {
        return Error::GeoBlocked(message);
    }
    if has(&[
        "live event will begin",
        "premieres in",
        "premiere will begin",
        "is_upcoming",
        "will begin in",
        "waiting for scheduled stream",
    ]) {
        return Error::NotYetLive(message);
    }
    if has(&[
        "http error 429",
        "too many requests",
        "rate-limited",
        "rate limited",
    ]) {
        return Error::RateLimited(message);
    }
    if has(&["unsupported url", "no suitable extractor"]) {
        return Error::UnsupportedUrl(message);
    }
    if has(&[
        "video unavailable",
        "been removed",
        "no longer available",
        "has been terminated",
        "does not exist",
        "this video is not available",
        "video has been deleted",
        "http error 404",
        "http error 410",
        "not available",
    ]) {
        return Error::Unavailable(message);
    }
    if has(&[
        "temporary failure in name resolution",
        "name or service not known",
        "nodename nor servname",
        "connection refused",
        "connection reset",
        "connection aborted",
        "timed out",
        "network is unreachable",
        "no route to host",
        "unable to connect",
        "remote end closed",
        "transporterror",
        "incompleteread",
        "ssl:",
        "certificate verify failed",
        "http error 5",
        "got error: ",
    ]) {
        return Error::Network(message);
    }
    Error::Tool {
        tool: "yt-dlp".into(),
        status: "failed".into(),
        stderr: message,
    }
}

/// `WARNING:` lines worth passing on to the result (e.g. a missing JS runtime, 429 on a subtitle).
pub(crate) fn ytdlp_warnings(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("WARNING:"))
        .map(|w| shorten(w.trim()))
        .collect()
}

fn shorten(s: &str) -> String {
    const MAX: usize = 600;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}
