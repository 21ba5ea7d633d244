//! URLs: the allowed-host check done before any network call, and video ids parsed from every
//! YouTube URL form (watch?v=, youtu.be/, shorts/, embed/, live/, v/, e/, attribution links).

use url::Url;

use crate::error::{Error, Result};
use crate::options::{DEFAULT_ALLOWED_HOSTS, YoutubeOptions};

/// Parses `url`, requires http(s), no credentials, and a host that is a YouTube default or one of
/// `opts.extra_allowed_hosts` (`host` matches any port, `host:port` only that port).
pub fn check_url(opts: &YoutubeOptions, url: &str) -> Result<Url> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_string(),
        reason: reason.into(),
    };
    let parsed = Url::parse(url.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("only http and https URLs are fetched"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("credentials in URLs are not accepted"));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| invalid("no host"))?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let port = parsed.port_or_known_default();
    if !host_allowed(opts, &host, port) {
        let mut allowed: Vec<&str> = DEFAULT_ALLOWED_HOSTS.to_vec();
        allowed.extend(opts.extra_allowed_hosts.iter().map(String::as_str));
        return Err(Error::HostNotAllowed {
            host,
            allowed: allowed.join(", "),
        });
    }
    Ok(parsed)
}

/// True for YouTube's own hosts (where yt-dlp's generic extractor is switched off).
pub(crate) fn is_youtube_host(url: &Url) -> bool {
    url.host_str().is_some_and(|h| {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        DEFAULT_ALLOWED_HOSTS.contains(&h.as_str())
    })
}

fn host_allowed(opts: &YoutubeOptions, host: &str, port: Option<u16>) -> bool {
    if DEFAULT_ALLOWED_HOSTS.contains(&host) {
        return true;
    }
    opts.extra_allowed_hosts.iter().any(|entry| {
        let entry = entry.trim().trim_end_matches('.').to_ascii_lowercase();
        // `[::1]:8080`, `127.0.0.1:8080`, `example.com`
        match entry.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()) => {
                let h = h.trim_start_matches('[').trim_end_matches(']');
                let host = host.trim_start_matches('[').trim_end_matches(']');
                h == host && p.parse::<u16>().ok() == port
            }
            _ => {
                let e = entry.trim_start_matches('[').trim_end_matches(']');
                e == host.trim_start_matches('[').trim_end_matches(']')
            }
        }
    })
}

fn valid_id(s: &str) -> bool {
    s.len() == 11
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `url` parsed (`https://` assumed when it has no scheme, as a browser's address bar shows it)
/// and its host without a trailing dot, in lower case, without `www.`, `m.` or `music.`.
fn parse_loose(url: &str) -> Option<(Url, String)> {
    let url = url.trim();
    let parsed = if url.contains("://") {
        Url::parse(url)
    } else {
        Url::parse(&format!("https://{url}"))
    }
    .ok()?;
    let host = parsed
        .host_str()?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    let host = host.strip_prefix("m.").unwrap_or(host);
    let host = host.strip_prefix("music.").unwrap_or(host).to_string();
    Some((parsed, host))
}

/// The 11-character video id in a YouTube URL (any form), or a bare id; `None` otherwise.
pub fn video_id(url: &str) -> Option<String> {
    let url = url.trim();
    if valid_id(url) {
        return Some(url.to_string());
    }
    let (parsed, host) = parse_loose(url)?;
    let mut segments = parsed.path_segments()?.filter(|s| !s.is_empty());
    let first = segments.next();
    let found = match host.as_str() {
        "youtu.be" => first.map(str::to_string),
        "youtube.com" | "youtube-nocookie.com" => match first {
            Some("watch") => query(&parsed, "v"),
            Some("shorts" | "embed" | "live" | "v" | "e") => segments.next().map(str::to_string),
            Some("attribution_link") => query(&parsed, "u")
                .and_then(|inner| video_id(&format!("https://youtube.com{inner}"))),
            _ => query(&parsed, "v"),
        },
        _ => None,
    }?;
    // Some share links append junk after the id (`…/ID&feature=share`, `ID?si=…`).
    let id: String = found.chars().take(11).collect();
    valid_id(&id).then_some(id)
}

/// Whether `url` names a list of YouTube videos rather than one: a playlist (`/playlist?list=`,
/// or `watch?list=` without a `v=`), or a channel or one of its tabs (`/@handle`, `/channel/…`,
/// `/c/…`, `/user/…`; not their `/live`, which is one video). A `watch?v=…&list=…` link is the
/// video, as yt-dlp's `--no-playlist` reads it.
pub fn is_playlist_url(url: &str) -> bool {
    let Some((parsed, host)) = parse_loose(url) else {
        return false;
    };
    if host != "youtube.com" {
        return false;
    }
    let segments: Vec<&str> = parsed
        .path_segments()
        .map(|s| s.filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let has_list = query(&parsed, "list").is_some_and(|l| !l.is_empty());
    match segments.as_slice() {
        ["playlist", ..] => has_list,
        ["watch", ..] => has_list && query(&parsed, "v").is_none(),
        [h, rest @ ..] if h.starts_with('@') && h.len() > 1 => rest.first() != Some(&"live"),
        ["channel" | "c" | "user", _, rest @ ..] => rest.first() != Some(&"live"),
        _ => false,
    }
}

fn query(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "dQw4w9WgXcQ";

    #[test]
    fn every_url_form_gives_the_id() {
        let forms = [
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            "https://youtube.com/watch?v=dQw4w9WgXcQ&t=42s&list=PL123",
            "http://m.youtube.com/watch?feature=share&v=dQw4w9WgXcQ",
            "https://music.youtube.com/watch?v=dQw4w9WgXcQ&si=abc",
            "https://youtu.be/dQw4w9WgXcQ",
            "https://youtu.be/dQw4w9WgXcQ?si=xyz&t=10",
            "youtu.be/dQw4w9WgXcQ",
            "www.youtube.com/watch?v=dQw4w9WgXcQ",
            "https://www.youtube.com/shorts/dQw4w9WgXcQ?feature=share",
            "https://www.youtube.com/embed/dQw4w9WgXcQ?autoplay=1",
            "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ",
            "https://www.youtube.com/live/dQw4w9WgXcQ?si=1",
            "https://www.youtube.com/v/dQw4w9WgXcQ?version=3",
            "https://www.youtube.com/e/dQw4w9WgXcQ",
            "https://www.youtube.com/attribution_link?a=x&u=%2Fwatch%3Fv%3DdQw4w9WgXcQ%26feature%3Dshare",
            "https://WWW.YOUTUBE.COM/watch?v=dQw4w9WgXcQ",
            "https://www.youtube.com./watch?v=dQw4w9WgXcQ",
            "  https://www.youtube.com/watch?v=dQw4w9WgXcQ  ",
            ID,
        ];
        for f in forms {
            assert_eq!(video_id(f).as_deref(), Some(ID), "{f}");
        }
    }

    #[test]
    fn non_video_urls_give_none() {
        for f in [
            "https://www.youtube.com/playlist?list=PLrEnWoR732-BHrPp_Pm8_VleD68f9s14-",
            "https://www.youtube.com/@channel/videos",
            "https://www.youtube.com/watch?v=short",
            "https://example.com/watch?v=dQw4w9WgXcQ",
            "https://youtu.be/",
            "not a url",
            "",
        ] {
            assert_eq!(video_id(f), None, "{f}");
        }
    }

    #[test]
    fn playlists_and_channels_are_told_from_videos() {
        for list in [
            "https://www.youtube.com/playlist?list=PLrEnWoR732-BHrPp_Pm8_VleD68f9s14-",
            "youtube.com/playlist?list=PL123",
            "https://music.youtube.com/playlist?list=OLAK5uy_x",
            "https://www.youtube.com/watch?list=PL123",
            "https://www.youtube.com/@PinchflatTestChannel",
            "https://www.youtube.com/@channel/videos",
            "https://m.youtube.com/@channel/streams",
            "https://www.youtube.com/channel/UCuAXFkgsw1L7xaCfnd5JJOw/videos",
            "https://www.youtube.com/c/SomeName",
            "https://www.youtube.com/user/someone/videos",
        ] {
            assert!(is_playlist_url(list), "{list}");
        }
        for one in [
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=PL123",
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            "https://youtu.be/dQw4w9WgXcQ?list=PL123",
            "https://www.youtube.com/@channel/live",
            "https://www.youtube.com/channel/UCuAXFkgsw1L7xaCfnd5JJOw/live",
            "https://www.youtube.com/playlist",
            "https://www.youtube.com/shorts/dQw4w9WgXcQ",
            "https://example.com/playlist?list=PL123",
            "https://www.youtube.com/@",
            "nonsense",
        ] {
            assert!(!is_playlist_url(one), "{one}");
        }
    }

    #[test]
    fn allowed_hosts_are_enforced_before_network() {
        let mut opts = YoutubeOptions::default();
        for ok in [
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            "https://youtu.be/dQw4w9WgXcQ",
            "https://music.youtube.com/playlist?list=x",
            "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ",
        ] {
            check_url(&opts, ok).unwrap();
        }
        for bad in [
            "http://127.0.0.1:8000/x.mp4",
            "http://169.254.169.254/latest/meta-data/",
            "https://youtube.com.evil.example/watch?v=dQw4w9WgXcQ",
            "https://evilyoutube.com/watch?v=dQw4w9WgXcQ",
        ] {
            assert!(
                matches!(check_url(&opts, bad), Err(Error::HostNotAllowed { .. })),
                "{bad}"
            );
        }
        for bad in [
            "file:///etc/passwd",
            "ftp://youtube.com/x",
            "https://user:pw@www.youtube.com/watch?v=dQw4w9WgXcQ",
            "nonsense",
        ] {
            assert!(
                matches!(check_url(&opts, bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
        opts.extra_allowed_hosts =
            YoutubeOptions::parse_host_list(" 127.0.0.1 , Media.Example.COM.,");
        check_url(&opts, "http://127.0.0.1:8000/x.mp4").unwrap();
        check_url(&opts, "https://media.example.com/a").unwrap();
        opts.extra_allowed_hosts = vec!["127.0.0.1:9000".into()];
        check_url(&opts, "http://127.0.0.1:9000/x.mp4").unwrap();
        assert!(check_url(&opts, "http://127.0.0.1:8000/x.mp4").is_err());
    }
}
