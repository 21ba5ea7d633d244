//! Caption files in legacy code pages and UTF-16, made here from original text with
//! `encoding_rs`: each decodes to the exact text and reports the encoding it was in.

use hlbot_youtube::{Detection, lang_from_path, read_captions};

fn srt(text: &str) -> String {
    format!(
        "1\n00:00:01,000 --> 00:00:04,000\n{text}\n\n2\n00:00:04,000 --> 00:00:08,000\n{text}\n"
    )
}

fn encode(enc: &'static encoding_rs::Encoding, text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = enc.encode(text);
    assert!(!unmappable, "{} cannot hold {text:?}", enc.name());
    bytes.into_owned()
}

/// Decodes `bytes` as if read from `name` and checks text and reported encoding.
fn check(name: &str, bytes: &[u8], text: &str, want: &str) {
    let lang = lang_from_path(std::path::Path::new(name));
    let c = read_captions(bytes, lang.as_deref()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(c.segments[0].text, text, "{name}");
    assert_eq!(c.encoding.name, want, "{name}");
}

const TURKISH: &str = "Bu derste ilk adım: günlük grafikte trendi bul, sonra dört saatlik grafikte geri çekilmeyi bekle ve işlem aç.";
const RUSSIAN: &str = "Сначала найдите тренд на дневном графике, затем ждите отката к скользящей средней и входите в сделку.";
const JAPANESE: &str = "まず日足でトレンドを確認し、次に四時間足で押し目を待ってからエントリーします。損切りは直近の安値の下です。";
const POLISH: &str = "Najpierw znajdź trend na wykresie dziennym, potem czekaj na cofnięcie do średniej i zajmij pozycję. Zlecenie obronne ustaw poniżej dołka, ryzykuj jeden procent kapitału.";

#[test]
fn turkish_windows_1254_from_file_name() {
    let bytes = encode(encoding_rs::WINDOWS_1254, &srt(TURKISH));
    check("lesson.tr.srt", &bytes, TURKISH, "windows-1254");
    let c = read_captions(&bytes, Some("tr")).unwrap();
    assert!(c.segments[0].text.contains("adım"), "not adým");
    assert_eq!(c.encoding.detection, Detection::Detected);
}

#[test]
fn cyrillic_windows_1251() {
    let bytes = encode(encoding_rs::WINDOWS_1251, &srt(RUSSIAN));
    check("lesson.ru.srt", &bytes, RUSSIAN, "windows-1251");
    // No hint needed: the bytes say it.
    check("lesson.srt", &bytes, RUSSIAN, "windows-1251");
}

#[test]
fn japanese_shift_jis() {
    let bytes = encode(encoding_rs::SHIFT_JIS, &srt(JAPANESE));
    check("lesson.ja.srt", &bytes, JAPANESE, "Shift_JIS");
    check("lesson.srt", &bytes, JAPANESE, "Shift_JIS");
}

#[test]
fn central_european_iso_8859_2() {
    let bytes = encode(encoding_rs::ISO_8859_2, &srt(POLISH));
    check("lesson.pl.srt", &bytes, POLISH, "ISO-8859-2");
}

#[test]
fn utf16_with_and_without_bom() {
    let text = srt(TURKISH);
    let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    check("a.srt", &le, TURKISH, "UTF-16LE");
    check("a.srt", &be, TURKISH, "UTF-16BE");
    let c = read_captions(&le, None).unwrap();
    assert_eq!(c.encoding.detection, Detection::NulPattern);
    let mut bom = vec![0xFF, 0xFE];
    bom.extend_from_slice(&le);
    check("a.srt", &bom, TURKISH, "UTF-16LE");
    let mut bom = vec![0xFE, 0xFF];
    bom.extend_from_slice(&be);
    check("a.srt", &bom, TURKISH, "UTF-16BE");
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(text.as_bytes());
    let c = read_captions(&bom, None).unwrap();
    assert_eq!(
        (c.encoding.name.as_str(), c.encoding.detection),
        ("UTF-8", Detection::Bom)
    );
}

#[test]
fn plain_utf8_is_reported() {
    check("a.vtt", srt(TURKISH).as_bytes(), TURKISH, "UTF-8");
}
