//! Property tests (proptest) over the PDFium worker protocol, both directions: whatever a
//! (possibly compromised) worker prints, the parent's line parser and done-line check never
//! panic; every event the worker can send is one line that parses back to itself; any request
//! JSON and any page selection the parent may forward is handled without a panic and with work
//! bounded by the page count. Case counts: `PROPTEST_CASES` (`scripts/fuzz.sh` runs more).

use proptest::prelude::*;

use super::*;
use crate::options::PageSelection;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\"\\\\{}\\[\\]:,a-z\u{2028}\u{FEFF}]{0,24}"
    ]
}

fn event() -> impl Strategy<Value = ChildEvent> {
    let page = (
        any::<u32>(),
        text(),
        any::<f32>(),
        prop::collection::vec(text(), 0..3),
    )
        .prop_map(|(number, text, width, warnings)| {
            ChildEvent::Page(Box::new(ChildPage {
                number,
                text,
                width,
                height: width,
                rotation: number % 360,
                ocr_reason: None,
                render: None,
                images: vec![],
                warnings,
                text_ms: 0,
                images_ms: 0,
                render_ms: 0,
            }))
        });
    let opened = (
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(any::<u32>(), 0..8),
        text(),
    )
        .prop_map(|(page_count, shards, pages, title)| {
            ChildEvent::Opened(Box::new(Opened {
                page_count,
                selected: page_count,
                shards,
                pages,
                metadata: crate::document::Metadata {
                    title: Some(title),
                    ..Default::default()
                },
                open_ms: 1,
                warnings: vec![],
            }))
        });
    prop_oneof![
        Just(ChildEvent::Ready),
        (any::<u32>(), any::<u32>())
            .prop_map(|(pid, documents)| ChildEvent::Done { pid, documents }),
        (text(), text(), any::<bool>()).prop_map(|(kind, message, alive)| ChildEvent::Error {
            kind,
            message,
            alive
        }),
        page,
        opened,
    ]
}

proptest! {
    // Crashes found become named regression tests (below), not a persistence file.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn any_worker_line_is_parsed_without_panic(line in prop_oneof![
        any::<String>(),
        "\\{\"event\":\"(ready|done|opened|page|error)\"[ -~]{0,64}\\}",
    ]) {
        let _ = serde_json::from_str::<ChildEvent>(&line);
        let _ = is_done_line(&line);
    }

    #[test]
    fn every_event_is_one_line_that_parses_back(ev in event()) {
        let line = serde_json::to_string(&ev).expect("serialises");
        prop_assert!(!line.contains('\n'), "{}", line);
        prop_assert_eq!(is_done_line(&line), matches!(ev, ChildEvent::Done { .. }));
        let back: ChildEvent = serde_json::from_str(&line).expect("parses back");
        // f32 NaN never equals itself: compare the re-serialised text instead.
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), line);
    }

    #[test]
    fn any_request_json_is_handled(raw in any::<String>(), pages in prop::option::of("[0-9,\\- ]{0,40}")) {
        let _ = serde_json::from_str::<ChildRequest>(&raw);
        let v = serde_json::json!({
            "pdf_path": "/x.pdf", "password": null, "pages": pages, "extract_images": false,
            "image_dir": "/tmp", "min_image_side": 1, "ocr": "never", "render_dir": "/tmp",
            "ocr_dpi": 1, "max_render_pixels": 1, "max_render_side": 1,
        });
        let _ = serde_json::from_value::<ChildRequest>(v);
    }

    /// Work (and memory) bounded by the page count however the selection repeats itself.
    #[test]
    fn page_selection_work_is_bounded(
        parts in prop::collection::vec((0u32..20_000, prop::option::of(0u32..u32::MAX), any::<bool>()), 0..200),
        page_count in 0u32..20_000,
    ) {
        let spec: String = parts
            .iter()
            .map(|(a, b, open)| match (b, open) {
                (_, true) => format!("{a}-"),
                (Some(b), false) => format!("{a}-{b}"),
                (None, false) => format!("{a}"),
            })
            .collect::<Vec<_>>()
            .join(",");
        if let Ok((ok, missing)) = PageSelection::Spec(spec).resolve(page_count) {
            prop_assert!(ok.len() <= page_count as usize);
            prop_assert!(ok.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(ok.iter().all(|&p| p >= 1 && p <= page_count));
            prop_assert!(missing.len() <= 2 * parts.len());
        }
    }
}

/// Found in review of the protocol under fuzzing: 10 000 copies of "1-" on a 5 000-page
/// document expanded to 50 million entries before de-duplication.
#[test]
fn regression_repeated_open_ranges_stay_bounded() {
    let spec = vec!["1-"; 10_000].join(",");
    let t = std::time::Instant::now();
    let (ok, missing) = PageSelection::Spec(spec).resolve(5_000).unwrap();
    assert_eq!(ok.len(), 5_000);
    assert!(missing.is_empty());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
}
