//! yt-dlp's info JSON (`-J`) as the fields this crate uses, chapters, and the choice of caption
//! track: manual subtitles in the preferred languages first, then auto captions; json3 over VTT/SRT
//! over YouTube's XML formats.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A chapter as yt-dlp reports it (seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chapter {
    pub start_time: f64,
    pub end_time: Option<f64>,
    pub title: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SubFormat {
    #[serde(default)]
    pub ext: Option<String>,
}

/// The subset of yt-dlp's info dict we read; every field optional (the generic extractor omits most).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct VideoInfo {
    #[serde(default, rename = "_type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub uploader: Option<String>,
    #[serde(default)]
    pub duration: Option<f64>,
    #[serde(default)]
    pub upload_date: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub chapters: Option<Vec<Chapter>>,
    #[serde(default)]
    pub subtitles: Option<BTreeMap<String, Vec<SubFormat>>>,
    #[serde(default)]
    pub automatic_captions: Option<BTreeMap<String, Vec<SubFormat>>>,
    #[serde(default)]
    pub webpage_url: Option<String>,
    #[serde(default)]
    pub extractor: Option<String>,
    #[serde(default)]
    pub live_status: Option<String>,
}

impl VideoInfo {
    pub fn channel(&self) -> Option<String> {
        self.channel.clone().or_else(|| self.uploader.clone())
    }

    /// `20091025` → `2009-10-25`; other shapes pass through.
    pub fn upload_date_iso(&self) -> Option<String> {
        let d = self.upload_date.as_deref()?;
        if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) {
            Some(format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]))
        } else {
            Some(d.to_string())
        }
    }
}

/// A caption track to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Track {
    pub lang: String,
    pub auto: bool,
    pub ext: &'static str,
}

impl Track {
    /// `captions:manual:en` / `captions:auto:en`.
    pub fn source(&self) -> String {
        format!(
            "captions:{}:{}",
            if self.auto { "auto" } else { "manual" },
            self.lang
        )
    }
}

/// Caption formats `read_captions` reads, best first: json3 has no rolling-line quirks; the XML
/// formats only when a track offers nothing else.
const PARSEABLE: [&str; 7] = ["json3", "vtt", "srt", "srv3", "ttml", "srv1", "srv2"];

/// Manual subtitles in preference order, then auto captions (original-language `-orig` first).
pub(crate) fn choose_track(info: &VideoInfo, prefs: &[String]) -> Option<Track> {
    let empty = BTreeMap::new();
    let manual = info.subtitles.as_ref().unwrap_or(&empty);
    let auto = info.automatic_captions.as_ref().unwrap_or(&empty);
    for (tracks, is_auto) in [(manual, false), (auto, true)] {
        for pref in prefs {
            let pref = pref.to_ascii_lowercase();
            let mut keys: Vec<&String> = tracks
                .keys()
                .filter(|k| k.as_str() != "live_chat")
                .filter(|k| {
                    let k = k.to_ascii_lowercase();
                    k == pref || k.starts_with(&format!("{pref}-"))
                })
                .collect();
            // `en-orig` (the speech itself) before `en`, before `en-US`…
            keys.sort_by_key(|k| {
                let k = k.to_ascii_lowercase();
                (k != format!("{pref}-orig"), k != pref, k.clone())
            });
            for key in keys {
                let exts: Vec<&str> = tracks[key]
                    .iter()
                    .filter_map(|f| f.ext.as_deref())
                    .collect();
                if let Some(ext) = PARSEABLE.iter().find(|e| exts.contains(e)) {
                    return Some(Track {
                        lang: key.clone(),
                        auto: is_auto,
                        ext,
                    });
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: &str) -> VideoInfo {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn manual_before_auto_and_json3_first() {
        let i = info(
            r#"{"subtitles":{"de":[{"ext":"vtt"}],"en-GB":[{"ext":"vtt"},{"ext":"json3"}]},
                "automatic_captions":{"en":[{"ext":"json3"}],"en-orig":[{"ext":"json3"}]}}"#,
        );
        let t = choose_track(&i, &["en".into()]).unwrap();
        assert_eq!(
            t,
            Track {
                lang: "en-GB".into(),
                auto: false,
                ext: "json3"
            }
        );
        assert_eq!(t.source(), "captions:manual:en-GB");
        let t = choose_track(&i, &["fr".into(), "de".into()]).unwrap();
        assert_eq!(t.lang, "de");
    }

    #[test]
    fn auto_prefers_orig_and_skips_unparseable() {
        let i = info(
            r#"{"subtitles":{"en":[{"ext":"lrc"}],"live_chat":[{"ext":"json"}]},
                "automatic_captions":{"en":[{"ext":"vtt"}],"en-orig":[{"ext":"srv3"},{"ext":"vtt"}]}}"#,
        );
        let t = choose_track(&i, &["en".into()]).unwrap();
        assert_eq!(
            t,
            Track {
                lang: "en-orig".into(),
                auto: true,
                ext: "vtt"
            }
        );
        assert_eq!(choose_track(&VideoInfo::default(), &["en".into()]), None);
        // A manual track offered only as TTML is read (before any auto track).
        let i = info(
            r#"{"subtitles":{"en":[{"ext":"ttml"},{"ext":"srv1"}]},"automatic_captions":{"en":[{"ext":"vtt"}]}}"#,
        );
        let t = choose_track(&i, &["en".into()]).unwrap();
        assert_eq!((t.auto, t.ext), (false, "ttml"));
    }

    #[test]
    fn generic_extractor_json_parses() {
        let i = info(
            r#"{"id":"x","title":"x","formats":[],"subtitles":{},"extractor":"generic","upload_date":"20261128"}"#,
        );
        assert_eq!(i.duration, None);
        assert_eq!(i.upload_date_iso().as_deref(), Some("2026-11-28"));
    }
}
