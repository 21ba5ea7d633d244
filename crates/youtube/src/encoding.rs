//! Text decoding of caption and text files: BOMs (UTF-8/16/32), BOM-less UTF-16 detected from its
//! NUL pattern, strict UTF-8, and otherwise the legacy code page detected from the bytes with
//! `chardetng` (Firefox's detector), hinted by the language in the file name (`lesson.tr.srt` →
//! Turkish → windows-1254), decoded with `encoding_rs`. Never a blind Latin-1 fallback, never
//! UTF-16 read as UTF-8. The encoding chosen is reported so callers can show it.

use std::path::Path;

use chardetng::EncodingDetector;
use serde::{Deserialize, Serialize};

/// How [`decode`] knew the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    /// A byte-order mark.
    Bom,
    /// NUL bytes in every other position (UTF-16 without a BOM).
    NulPattern,
    /// Valid UTF-8 (or plain ASCII).
    Utf8,
    /// Named by the XML declaration (`<?xml … encoding="ISO-8859-1"?>`) of a TTML/srv file.
    Declared,
    /// Guessed from the bytes by `chardetng`.
    Detected,
}

/// The encoding a text was decoded from: its WHATWG name (`UTF-8`, `UTF-16LE`, `windows-1254`,
/// `Shift_JIS`, `ISO-8859-2`, …) and how it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoding {
    pub name: String,
    pub detection: Detection,
}

impl Encoding {
    fn new(name: &str, detection: Detection) -> Encoding {
        Encoding {
            name: name.to_string(),
            detection,
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.detection {
            Detection::Bom => "BOM",
            Detection::NulPattern => "NUL pattern",
            Detection::Utf8 => "valid UTF-8",
            Detection::Declared => "XML declaration",
            Detection::Detected => "detected",
        };
        write!(f, "{} ({how})", self.name)
    }
}

/// Decodes caption or text bytes (BOM removed). `lang` is an ISO 639-1 language code hint
/// (see [`lang_from_path`]); it only steers the legacy code-page guess.
pub fn decode(bytes: &[u8], lang: Option<&str>) -> (String, Encoding) {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return (
            String::from_utf8_lossy(rest).into_owned(),
            Encoding::new("UTF-8", Detection::Bom),
        );
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE, 0, 0]) {
        return (
            utf32(rest, u32::from_le_bytes),
            Encoding::new("UTF-32LE", Detection::Bom),
        );
    }
    if let Some(rest) = bytes.strip_prefix(&[0, 0, 0xFE, 0xFF]) {
        return (
            utf32(rest, u32::from_be_bytes),
            Encoding::new("UTF-32BE", Detection::Bom),
        );
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        let (t, _) = encoding_rs::UTF_16LE.decode_without_bom_handling(rest);
        return (t.into_owned(), Encoding::new("UTF-16LE", Detection::Bom));
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        let (t, _) = encoding_rs::UTF_16BE.decode_without_bom_handling(rest);
        return (t.into_owned(), Encoding::new("UTF-16BE", Detection::Bom));
    }
    if let Some(enc) = nul_pattern(bytes) {
        let (t, _) = enc.decode_without_bom_handling(bytes);
        return (
            t.into_owned(),
            Encoding::new(enc.name(), Detection::NulPattern),
        );
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (s.to_string(), Encoding::new("UTF-8", Detection::Utf8));
    }
    if let Some(enc) = xml_declared(bytes) {
        let (t, _) = enc.decode_without_bom_handling(bytes);
        return (
            t.into_owned(),
            Encoding::new(enc.name(), Detection::Declared),
        );
    }
    let mut det = EncodingDetector::new();
    det.feed(bytes, true);
    let tld = lang.and_then(tld_for);
    let enc = det.guess(tld.as_deref().map(str::as_bytes), false);
    let (t, _) = enc.decode_without_bom_handling(bytes);
    (
        t.into_owned(),
        Encoding::new(enc.name(), Detection::Detected),
    )
}

/// The single-byte or multi-byte encoding an XML declaration names (`<?xml version="1.0"
/// encoding="windows-1252"?>`); UTF-8/16 declarations are not trusted over the bytes.
fn xml_declared(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let head = bytes.strip_prefix(b"<?xml")?;
    let decl = &head[..head.iter().position(|&b| b == b'>')?];
    let decl = std::str::from_utf8(decl).ok()?;
    let rest = &decl[decl.find("encoding")? + "encoding".len()..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let label = rest[1..].split(quote).next()?;
    encoding_rs::Encoding::for_label(label.trim().as_bytes()).filter(|e| {
        *e != encoding_rs::UTF_8 && *e != encoding_rs::UTF_16LE && *e != encoding_rs::UTF_16BE
    })
}

/// BOM-less UTF-16: ASCII-heavy text has a NUL in every other byte.
fn nul_pattern(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let sample = &bytes[..bytes.len().min(4096)];
    if sample.len() < 4 {
        return None;
    }
    let even = sample.iter().step_by(2).filter(|b| **b == 0).count();
    let odd = sample
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|b| **b == 0)
        .count();
    let half = sample.len() / 2;
    if odd * 10 >= half * 3 && even * 10 < half {
        return Some(encoding_rs::UTF_16LE);
    }
    if even * 10 >= half * 3 && odd * 10 < half {
        return Some(encoding_rs::UTF_16BE);
    }
    None
}

fn utf32(bytes: &[u8], f: fn([u8; 4]) -> u32) -> String {
    bytes
        .chunks_exact(4)
        .map(|c| char::from_u32(f([c[0], c[1], c[2], c[3]])).unwrap_or('\u{FFFD}'))
        .collect()
}

/// The language code in a caption file name: `lesson.tr.srt` → `tr`, `abc.en-US.vtt` → `en`.
pub fn lang_from_path(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let mut parts: Vec<&str> = name.split('.').collect();
    if parts.len() < 3 {
        return None;
    }
    parts.pop();
    let tag = parts.pop()?;
    let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
    (primary.len() == 2 && primary.chars().all(|c| c.is_ascii_lowercase())).then_some(primary)
}

/// The country TLD `chardetng` takes as a hint for a language (its code-page families).
fn tld_for(lang: &str) -> Option<String> {
    let tld = match lang {
        "tr" | "az" => "tr",
        "ru" | "be" | "kk" => "ru",
        "uk" => "ua",
        "bg" => "bg",
        "sr" | "mk" => "rs",
        "ja" => "jp",
        "zh" => "cn",
        "ko" => "kr",
        "pl" => "pl",
        "cs" => "cz",
        "sk" => "sk",
        "hu" => "hu",
        "sl" => "si",
        "hr" => "hr",
        "ro" => "ro",
        "el" => "gr",
        "he" => "il",
        "ar" => "eg",
        "fa" => "ir",
        "th" => "th",
        "vi" => "vn",
        "lt" => "lt",
        "lv" => "lv",
        "et" => "ee",
        "de" => "de",
        "fr" => "fr",
        "es" => "es",
        "it" => "it",
        "pt" => "pt",
        "nl" => "nl",
        "sv" => "se",
        "da" => "dk",
        "no" | "nb" => "no",
        "fi" => "fi",
        _ => return None,
    };
    Some(tld.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_forms() {
        let text = "1\n00:00:01,000 --> 00:00:02,000\nÁÉíöÙ café\n";
        let (t, e) = decode(text.as_bytes(), None);
        assert_eq!((t.as_str(), e.name.as_str()), (text, "UTF-8"));
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(text.as_bytes());
        assert_eq!(decode(&bom, None).0, text);
        let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(
            decode(&le, None),
            (
                text.to_string(),
                Encoding::new("UTF-16LE", Detection::NulPattern)
            )
        );
        assert_eq!(
            decode(&be, None),
            (
                text.to_string(),
                Encoding::new("UTF-16BE", Detection::NulPattern)
            )
        );
    }

    #[test]
    fn languages_from_names() {
        assert_eq!(
            lang_from_path(Path::new("lesson.tr.srt")).as_deref(),
            Some("tr")
        );
        assert_eq!(
            lang_from_path(Path::new("/x/abc.en-US.vtt")).as_deref(),
            Some("en")
        );
        assert_eq!(lang_from_path(Path::new("lesson.srt")), None);
        assert_eq!(lang_from_path(Path::new("my.lesson.srt")), None);
    }
}
