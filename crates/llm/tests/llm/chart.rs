//! The offline `rules` chart reader on real images: a frame of the corpus lesson video and a
//! chart drawn by ffmpeg here (real tesseract in both).

use std::path::Path;
use std::process::Command;

use hlbot_llm::{CHART_RULES_LABEL, LlmOptions, analyze_chart};
use tokio_util::sync::CancellationToken;

use crate::corpus;

fn have(tool: &str) -> bool {
    hlbot_testkit::tool(tool, "--version")
}

fn ffmpeg(args: &[&str]) -> bool {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn corpus_video_frame_chart() {
    let Some(dir) = corpus() else {
        return;
    };
    if !have("ffmpeg") || !have("tesseract") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let frame = tmp.path().join("frame.png");
    let video = dir.join("video/gen_trading_lesson_3scenes.mp4");
    assert!(ffmpeg(&[
        "-ss",
        "3",
        "-i",
        video.to_str().unwrap(),
        "-frames:v",
        "1",
        frame.to_str().unwrap()
    ]));
    let r = analyze_chart(
        &LlmOptions::default(),
        &frame,
        "rules",
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r.provider, "rules");
    assert_eq!(r.label.as_deref(), Some(CHART_RULES_LABEL));
    assert_eq!(
        (r.image.width, r.image.height, r.image.format.as_str()),
        (1280, 720, "png")
    );
    assert_eq!(r.analysis.instrument.as_deref(), Some("EUR/USD"));
    assert_eq!(r.analysis.timeframe.as_deref(), Some("4H"));
    assert!(r.analysis.patterns.contains(&"bounce".to_string()));
    // The price axis (92.5 … 110.0 in steps of 2.5) is read from the left strip.
    let axis: Vec<f64> = (0..8).map(|i| 92.5 + 2.5 * i as f64).collect();
    let found = axis
        .iter()
        .filter(|p| r.analysis.price_labels.contains(p))
        .count();
    assert!(found >= 6, "axis labels {:?}", r.analysis.price_labels);
    assert_eq!(
        r.analysis.trend, "unknown",
        "the offline reader does not guess trends"
    );
    assert!(r.analysis.trade_idea.is_none());
}

#[tokio::test]
async fn drawn_chart_labels() {
    if !have("ffmpeg") || !have("tesseract") {
        return;
    }
    let font = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    if !Path::new(font).exists() {
        return hlbot_testkit::missing::<()>("the DejaVu font (fonts-dejavu-core)").unwrap_or(());
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("chart.jpg");
    let text = |t: &str, x: u32, y: u32, size: u32| {
        format!("drawtext=fontfile={font}:text='{t}':x={x}:y={y}:fontsize={size}:fontcolor=black")
    };
    let filter = [
        text("BTC/USD 1H", 300, 20, 48),
        text("42000", 20, 120, 32),
        text("41500", 20, 260, 32),
        text("41000", 20, 400, 32),
        text("Support 41200", 500, 420, 32),
        text("RSI 28.5", 500, 520, 32),
    ]
    .join(",");
    assert!(ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=white:s=960x600",
        "-vf",
        &filter,
        "-frames:v",
        "1",
        out.to_str().unwrap()
    ]));
    let r = analyze_chart(
        &LlmOptions::default(),
        &out,
        "rules",
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&r.analysis).unwrap());
    assert_eq!(r.image.format, "jpeg");
    assert_eq!(r.analysis.instrument.as_deref(), Some("BTC/USD"));
    assert_eq!(r.analysis.timeframe.as_deref(), Some("1H"));
    for p in [41000.0, 41500.0, 42000.0] {
        assert!(
            r.analysis.price_labels.contains(&p),
            "{p} in {:?}",
            r.analysis.price_labels
        );
    }
    assert_eq!(r.analysis.support_levels, vec![41200.0]);
    let rsi = r
        .analysis
        .indicators
        .iter()
        .find(|i| i.name == "RSI")
        .expect("RSI");
    assert_eq!(rsi.value, Some(serde_json::json!("28.5")));
}

#[tokio::test]
async fn bad_image_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("not.png");
    std::fs::write(&p, b"%PDF-1.4 not an image").unwrap();
    let err = analyze_chart(
        &LlmOptions::default(),
        &p,
        "rules",
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("not a PNG, JPEG, WebP or GIF"),
        "{err}"
    );
}
