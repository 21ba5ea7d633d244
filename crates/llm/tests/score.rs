//! The offline extractor's scores on the lesson fixtures may not fall below the floors recorded
//! in docs/llm.md (the numbers there are the measured ones; the floors leave a little slack).

#[allow(dead_code)]
#[path = "../examples/score.rs"]
mod score;

#[tokio::test]
async fn rules_extractor_scores_hold() {
    let (tune, held) = score::score_all(false).await;
    let all = score::total(&tune, &held);
    println!("{}", tune.table("tuning set"));
    println!("{}", held.table("held-out set"));
    println!("{}", all.table("all"));
    assert!(tune.lessons >= 17 && held.lessons >= 5);
    let floors = [
        ("name recall", all.name.recall(), 0.85),
        ("timeframe recall", all.timeframes.recall(), 0.90),
        ("timeframe precision", all.timeframes.precision(), 0.85),
        ("instrument recall", all.instruments.recall(), 0.85),
        ("indicator recall", all.indicators.recall(), 0.80),
        ("rule precision", all.rules.precision(), 0.80),
        ("rule recall", all.rules.recall(), 0.80),
        ("rule kind accuracy", all.kind_accuracy(), 0.80),
        ("whole sentences", all.whole_share(), 0.80),
        ("held-out rule recall", held.rules.recall(), 0.60),
    ];
    let low: Vec<String> = floors
        .iter()
        .filter(|(_, v, floor)| v < floor)
        .map(|(n, v, floor)| format!("{n} {v:.2} < {floor}"))
        .collect();
    assert!(low.is_empty(), "below the floor: {low:?}");
}
