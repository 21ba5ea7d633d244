//! yt-dlp's info JSON (`-J`) as the fields this crate uses, chapters, and the choice of caption
//! track: manual subtitles in the preferred languages first, then auto captions; json3 over VTT/SRT
//! over YouTube's XML formats.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// A chapter as yt-dlp reports it (seconds). An untitled chapter (`"title": null`, as some
/// extractors give) has an empty title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chapter {
    pub start_time: f64,
    #[serde(default, deserialize_with = "lenient")]
    pub end_time: Option<f64>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub title: String,
}

/// A field of the type expected, else `None`: one odd field of one extractor must not make the
/// whole info JSON unreadable.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(lenient::<D, String>(d)?.unwrap_or_default())
}

/// Chapters that can be read; one without a start time is skipped.
fn chapters<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Chapter>>, D::Error> {
    let Some(list) = lenient::<D, Vec<serde_json::Value>>(d)? else {
        return Ok(None);
    };
    Ok(Some(
        list.into_iter()
            .filter_map(|c| serde_json::from_value(c).ok())
            .collect(),
    ))
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SubFormat {
    #[serde(default, deserialize_with = "lenient")]
    pub ext: Option<String>,
}

/// Caption tracks by language; a language whose list is of an unexpected shape is skipped.
fn tracks<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, Vec<SubFormat>>>, D::Error> {
    let Some(map) = lenient::<D, serde_json::Map<String, serde_json::Value>>(d)? else {
        return Ok(None);
    };
    Ok(Some(
        map.into_iter()
            .filter_map(|(lang, v)| Some((lang, serde_json::from_value(v).ok()?)))
            .collect(),
    ))
}

/// The subset of yt-dlp's info dict we read; every field optional (the generic extractor omits
/// most), and one of an unexpected type reads as absent.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct VideoInfo {
    #[serde(default, rename = "_type", deserialize_with = "lenient")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub channel: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub uploader: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub duration: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    pub upload_date: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "chapters")]
    pub chapters: Option<Vec<Chapter>>,
    #[serde(default, deserialize_with = "tracks")]
    pub subtitles: Option<BTreeMap<String, Vec<SubFormat>>>,
    #[serde(default, deserialize_with = "tracks")]
    pub automatic_captions: Option<BTreeMap<String, Vec<SubFormat>>>,
    #[serde(default, deserialize_with = "lenient")]
    pub webpage_url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub extractor: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
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
    fn odd_fields_read_as_absent_not_as_an_unreadable_info() {
        let i = info(
            r#"{"id":"x","title":null,"duration":"12:30","upload_date":20261128,"channel":["a"],
                "chapters":[{"start_time":0,"end_time":null,"title":null},{"title":"no start"},
                            {"start_time":90.5,"end_time":"?","title":"Entries"}],
                "subtitles":{"en":[{"ext":null},{"ext":"vtt"}],"de":"none"}}"#,
        );
        assert_eq!((i.id.as_deref(), i.title.as_deref()), (Some("x"), None));
        assert_eq!((i.duration, i.upload_date.as_deref()), (None, None));
        assert_eq!(i.channel(), None);
        let ch = i.chapters.clone().unwrap();
        assert_eq!(ch.len(), 2);
        assert_eq!((ch[0].title.as_str(), ch[1].end_time), ("", None));
        assert_eq!(ch[1].title, "Entries");
        // A language whose track list has an unexpected shape is skipped, the others read.
        let t = choose_track(&i, &["de".into(), "en".into()]).unwrap();
        assert_eq!((t.lang.as_str(), t.ext), ("en", "vtt"));
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
