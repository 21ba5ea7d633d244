//! The offline `rules` provider: the shared corpus caption file and our own sample transcript.

use hlbot_llm::{ContentType, LlmOptions, RULES_LABEL, extract_strategy, prepare};
use tokio_util::sync::CancellationToken;

use crate::{corpus, sample_transcript};

#[tokio::test]
async fn corpus_support_resistance_captions() {
    let Some(dir) = corpus() else {
        return;
    };
    let vtt =
        std::fs::read_to_string(dir.join("captions/gen_youtube_auto_en_support_resistance.en.vtt"))
            .unwrap();
    let expected = std::fs::read_to_string(
        dir.join("captions/gen_youtube_auto_en_support_resistance.expected.txt"),
    )
    .unwrap();

    // The caption file becomes timestamped lines whose words are exactly the expected transcript.
    let prepared = prepare(&vtt, ContentType::Captions);
    let words: Vec<&str> = prepared
        .lines()
        .map(|l| l.split_once("] ").map_or(l, |(_, t)| t))
        .filter(|t| *t != "[Music]")
        .flat_map(str::split_whitespace)
        .collect();
    assert_eq!(words, expected.split_whitespace().collect::<Vec<_>>());

    let opts = LlmOptions::default();
    let r = extract_strategy(
        &opts,
        &vtt,
        ContentType::Captions,
        "rules",
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.provider, "rules");
    assert_eq!(r.label.as_deref(), Some(RULES_LABEL));
    assert_eq!(r.cost_usd, Some(0.0));
    assert_eq!(r.strategies.len(), 1, "{:#?}", r.strategies);
    let s = &r.strategies[0];
    println!("{}", serde_json::to_string_pretty(s).unwrap());
    assert_eq!(s.instruments, vec!["EUR/USD"], "the euro dollar");
    assert_eq!(s.market.as_deref(), Some("forex"));
    let level = s
        .key_levels
        .iter()
        .find(|k| k.price == 1.085)
        .expect("1.0850 level");
    assert_eq!(level.kind, "support", "price bounced off 1.0850");
    assert_eq!(
        s.timeframes,
        vec!["1D", "4H"],
        "daily chart, then the four hour chart"
    );
    let names: Vec<&str> = s.indicators.iter().map(|i| i.name.as_str()).collect();
    assert!(names.contains(&"Support and resistance"), "{names:?}");
    assert!(names.contains(&"Candle wicks"), "{names:?}");
    assert!(
        s.entry_rules
            .iter()
            .any(|r| r.contains("wait for the candle to close")),
        "{:?}",
        s.entry_rules
    );
    assert!(
        s.stop_loss
            .as_deref()
            .unwrap_or("")
            .contains("beyond the level"),
        "{:?}",
        s.stop_loss
    );
    assert_eq!(
        s.position_sizing.as_deref(),
        Some("risk 1% of the account per trade")
    );
    assert!(
        s.filters
            .iter()
            .any(|f| f.contains("tested at least twice")),
        "{:?}",
        s.filters
    );
    // Evidence keeps the caption timestamps.
    let ev = s
        .evidence
        .iter()
        .find(|e| e.quote.contains("1.0850"))
        .expect("evidence for 1.0850");
    let ts = ev.timestamp.as_deref().expect("timestamp");
    assert!(("00:00:20".."00:00:50").contains(&ts), "{ts}");
}

#[tokio::test]
async fn own_sample_transcript() {
    let opts = LlmOptions::default();
    let text = sample_transcript();
    let r = extract_strategy(
        &opts,
        &text,
        ContentType::Transcript,
        "rules",
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.strategies.len(), 1);
    let s = &r.strategies[0];
    println!("{}", serde_json::to_string_pretty(s).unwrap());
    assert_eq!(s.name, "EMA pullback", "what the speaker calls it");
    assert_eq!(s.instruments, vec!["EUR/USD"]);
    assert_eq!(s.timeframes, vec!["1H", "4H"]);
    let periods: Vec<String> = s
        .indicators
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i.name,
                i.parameters
                    .get("period")
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            )
        })
        .collect();
    assert!(periods.contains(&"EMA 200".to_string()), "{periods:?}");
    assert!(periods.contains(&"EMA 50".to_string()), "{periods:?}");
    assert!(periods.contains(&"RSI 14".to_string()), "{periods:?}");
    let rsi = s.indicators.iter().find(|i| i.name == "RSI").unwrap();
    assert_eq!(rsi.parameters["oversold"], 40.0);
    assert!(
        s.key_levels
            .iter()
            .any(|k| k.price == 1.085 && k.kind == "support")
    );
    assert!(
        s.key_levels
            .iter()
            .any(|k| k.price == 1.105 && k.kind == "resistance")
    );
    assert!(
        s.stop_loss
            .as_deref()
            .unwrap()
            .contains("15 pips below the swing low")
    );
    assert!(s.take_profit.as_deref().unwrap().contains("2:1"));
    assert!(
        s.filters.iter().any(|f| f.contains("above the 200 EMA")),
        "{:?}",
        s.filters
    );
    // One kind per sentence: "Risk 1% … and avoid trading before news" is sizing.
    assert!(s.risk_management.iter().any(|f| f.contains("news")));
    assert_eq!(
        s.position_sizing.as_deref(),
        Some("risk 1% of the account per trade")
    );
    assert!(
        s.evidence
            .iter()
            .any(|e| e.timestamp.as_deref() == Some("00:00:58") && e.quote.contains("stop loss"))
    );
}

#[tokio::test]
async fn rules_on_text_without_strategy() {
    let opts = LlmOptions::default();
    let r = extract_strategy(
        &opts,
        "Lorem ipsum dolor sit amet.",
        ContentType::Text,
        "rules",
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(r.strategies.is_empty());
    assert!(r.label.is_some());
}

#[tokio::test]
async fn corpus_scanned_notes_with_pages() {
    let Some(dir) = corpus() else {
        return;
    };
    // The exact text of the two scanned pages, with page markers as a document would carry.
    let p1 = std::fs::read_to_string(dir.join("pdf/gen_scanned_trading_notes.p1.txt")).unwrap();
    let p2 = std::fs::read_to_string(dir.join("pdf/gen_scanned_trading_notes.p2.txt")).unwrap();
    let doc = format!("--- page 1 ---\n{p1}\n--- page 2 ---\n{p2}");
    let r = extract_strategy(
        &LlmOptions::default(),
        &doc,
        ContentType::Document,
        "rules",
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.strategies.len(), 1);
    let s = &r.strategies[0];
    println!("{}", serde_json::to_string_pretty(s).unwrap());
    assert_eq!(s.instruments, vec!["EUR/USD"]);
    assert_eq!(s.timeframes, vec!["1D"]);
    assert_eq!(
        s.key_levels.iter().map(|k| k.price).collect::<Vec<_>>(),
        vec![1.085],
        "no account sizes as levels"
    );
    assert_eq!(s.key_levels[0].kind, "support");
    assert!(
        s.entry_rules
            .iter()
            .any(|e| e.contains("Wait for a candle close"))
    );
    // The checklist under "Entry checklist" becomes entry rules.
    assert!(
        s.entry_rules
            .contains(&"Price is at a marked level (within 10 pips)".to_string()),
        "{:?}",
        s.entry_rules
    );
    assert!(
        s.entry_rules
            .contains(&"Volume is above the 20-day average".to_string())
    );
    assert!(!s.entry_rules.contains(&"Entry checklist".to_string()));
    let stop = s.stop_loss.as_deref().unwrap();
    assert!(stop.contains("beyond the level"), "{stop}");
    assert_eq!(
        s.position_sizing.as_deref(),
        Some("risk 1% of the account per trade")
    );
    let names: Vec<&str> = s.indicators.iter().map(|i| i.name.as_str()).collect();
    assert!(
        names.contains(&"Volume") && names.contains(&"Candle wicks"),
        "{names:?}"
    );
    let page_of = |needle: &str| {
        s.evidence
            .iter()
            .find(|e| e.quote.contains(needle))
            .and_then(|e| e.page)
    };
    assert_eq!(page_of("1.0850"), Some(1));
    assert_eq!(page_of("Stop loss goes beyond"), Some(2));
}
