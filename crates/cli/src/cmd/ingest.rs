//! `ingest` (the main job, in-process or through the queue) and `captions`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hlbot_engine::{SendOptions, Shutdown};
use hlbot_proto::Signature;
use hlbot_tasks::needs::Tool;
use hlbot_tasks::{IngestOptions, SourceKind};
use serde_json::{Map, Value, json};

use super::progress::Bar;
use crate::args::{CaptionsArgs, IngestArgs};
use crate::domain::task_settings;
use crate::settings::Settings;

pub async fn ingest(s: &Settings, a: IngestArgs, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let extra_root = Path::new(&a.source)
        .parent()
        .filter(|_| Path::new(&a.source).exists())
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        });
    let mut ts = task_settings(&s.domain, extra_root.as_slice());
    if let Some(m) = &a.model {
        // The operator chose the model at the terminal: allowed for this run.
        ts.llm.allowed_models.push(m.clone());
    }
    if a.queue {
        return queued(s, &ts, a, &shutdown.warm).await;
    }
    // Run here: the tools this source needs are checked first, so a missing one is named.
    let kind = hlbot_tasks::ingest::detect(&a.source);
    let tools = match &kind {
        Ok(SourceKind::Pdf(_)) => vec![Tool::Pdfium, Tool::Tesseract],
        Ok(SourceKind::Youtube(_) | SourceKind::Playlist(_)) => vec![Tool::YtDlp],
        Ok(SourceKind::Media(_)) => vec![Tool::Ffmpeg],
        _ => vec![],
    };
    for p in crate::checks::check(&ts, &tools.into_iter().collect()).problems {
        eprintln!("warning: {p}");
    }
    if !a.no_library {
        ts.library = super::library::open_optional(s).await;
    }
    let bar = Bar::new();
    let opts = IngestOptions {
        model: a.model.clone(),
        frames: !a.no_frames,
        force: a.force,
        charts: !a.no_charts,
        max_videos: a.max_videos,
    };
    if let Ok(SourceKind::Playlist(url)) = &kind {
        return super::playlist::here(&ts, url, &opts, a.json, bar, shutdown.warm.clone()).await;
    }
    let report = hlbot_tasks::ingest(
        &ts,
        &a.source,
        &opts,
        Some(bar.clone()),
        shutdown.warm.clone(),
    )
    .await;
    bar.finish();
    let report = report?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_read(&report.read);
        print_readable(&report.result);
        print_charts(&report.charts);
    }
    Ok(ExitCode::SUCCESS)
}

/// The charts found inside the source, one block each: where, why, and what was read.
pub(super) fn print_charts(charts: &[serde_json::Value]) {
    for c in charts {
        let at = match (c["at"]["page"].as_u64(), c["at"]["time"].as_f64()) {
            (Some(p), _) => format!("page {p}"),
            (_, Some(t)) => format!("at {t:.1} s"),
            _ => "?".into(),
        };
        println!(
            "\nchart ({at}, {}): {}",
            c["kind"].as_str().unwrap_or("?"),
            c["image"].as_str().unwrap_or("?")
        );
        println!("  why: {}", c["why"].as_str().unwrap_or(""));
        if let Some(e) = c["error"].as_str() {
            println!("  could not read it: {e}");
            continue;
        }
        let r = &c["analysis"];
        let a = &r["analysis"];
        for (label, v) in [
            ("read by", &r["provider"]),
            ("note", &r["label"]),
            ("instrument", &a["instrument"]),
            ("timeframe", &a["timeframe"]),
            ("trend", &a["trend"]),
        ] {
            if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                println!("  {label}: {v}");
            }
        }
        for (label, key) in [
            ("support", "support_levels"),
            ("resistance", "resistance_levels"),
        ] {
            let levels: Vec<String> = a[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.to_string())
                .collect();
            if !levels.is_empty() {
                println!("  {label}: {}", levels.join(", "));
            }
        }
    }
}

/// `--queue`: the same pipeline as a Celery chain (process → extract) on the workers.
async fn queued(
    s: &Settings,
    ts: &hlbot_tasks::TaskSettings,
    a: IngestArgs,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<ExitCode> {
    let kind = hlbot_tasks::ingest::detect(&a.source)?;
    let client = super::client(s).await?;
    if let SourceKind::Playlist(url) = &kind {
        return super::playlist::queued(&client, ts, &a, url, stop).await;
    }
    let sent = send(&client, ts, &a, &kind).await?;
    eprintln!("queued; waiting for task {}", sent.final_id);
    let v = match collect(&client, sent, Duration::from_secs_f64(a.timeout), stop).await? {
        Ok(v) => v,
        Err(other) => return super::producer::finish(other),
    };
    print_queued(&v, a.json)?;
    Ok(ExitCode::SUCCESS)
}

/// A pipeline sent to the workers: the task to wait for, the chain's first task (whose result
/// holds a PDF's or video's facts) and what was read here.
pub(super) struct Sent {
    pub final_id: String,
    parents: Vec<String>,
    read: Option<hlbot_tasks::ReadFacts>,
}

/// Sends the pipeline for `kind` (a playlist's videos one by one: [`SourceKind::Youtube`]).
pub(super) async fn send(
    client: &hlbot_engine::Client,
    ts: &hlbot_tasks::TaskSettings,
    a: &IngestArgs,
    kind: &SourceKind,
) -> anyhow::Result<Sent> {
    let model = a.model.clone().unwrap_or_else(|| ts.default_model.clone());
    let path_arg = |p: &Path| json!(p.canonicalize().unwrap_or_else(|_| p.to_path_buf()));
    let (first, last) = kind.tasks();
    let final_id = uuid_v4();
    let last_sig = Signature {
        task: last.into(),
        args: vec![],
        kwargs: [("model".to_string(), json!(model))].into_iter().collect(),
        options: [("task_id".to_string(), json!(final_id))]
            .into_iter()
            .collect(),
        subtask_type: None,
        immutable: false,
        extra: Map::new(),
    };
    let mut kwargs = Map::new();
    let mut read = None;
    match kind {
        SourceKind::Pdf(p) => {
            kwargs.insert("pdf_path".into(), path_arg(p));
        }
        SourceKind::Youtube(u) | SourceKind::Playlist(u) => {
            kwargs.insert("url".into(), json!(u));
            kwargs.insert("extract_frames".into(), json!(!a.no_frames));
        }
        SourceKind::Media(p) => {
            kwargs.insert("path".into(), path_arg(p));
            kwargs.insert("extract_frames".into(), json!(!a.no_frames));
        }
        SourceKind::Image(p) => {
            kwargs.insert("image_path".into(), path_arg(p));
            kwargs.insert("model".into(), json!(model));
            read = Some(hlbot_tasks::ReadFacts::image(p));
        }
        SourceKind::Captions(p) => {
            // Parsed here (any format and encoding), sent as the same `[hh:mm:ss] text` lines the
            // in-process path reads: the worker needs no access to the file.
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let lang = hlbot_youtube::lang_from_path(p);
            let captions = hlbot_youtube::read_captions(&bytes, lang.as_deref())
                .with_context(|| format!("parsing {}", p.display()))?;
            kwargs.insert(
                "content".into(),
                json!(hlbot_tasks::ingest::caption_lines(&captions)),
            );
            kwargs.insert("model".into(), json!(model));
            read = Some(hlbot_tasks::ReadFacts::from_captions(p, &captions));
        }
        SourceKind::Text(p) => {
            let (text, facts) = hlbot_tasks::ingest::read_text(ts, p)?;
            kwargs.insert("content".into(), json!(text));
            kwargs.insert("model".into(), json!(model));
            read = Some(facts);
        }
    }
    let parents = if first.is_empty() {
        let o = SendOptions {
            task_id: Some(final_id.clone()),
            ..Default::default()
        };
        client.send_task(last, vec![], kwargs, o).await?;
        vec![]
    } else {
        let o = SendOptions {
            chain: Some(vec![last_sig]),
            ..Default::default()
        };
        vec![client.send_task(first, vec![], kwargs, o).await?.id]
    };
    Ok(Sent {
        final_id,
        parents,
        read,
    })
}

/// Waits for a sent pipeline: its result with what was read added as `read`, or how the wait
/// ended otherwise.
pub(super) async fn collect(
    client: &hlbot_engine::Client,
    sent: Sent,
    timeout: Duration,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Result<Value, super::wait::Waited>> {
    let Sent {
        final_id,
        parents,
        mut read,
    } = sent;
    let mut v = match super::wait::wait(client, &final_id, &parents, timeout, stop).await? {
        super::wait::Waited::Done(m) if m.status == hlbot_proto::State::Success => m.result.clone(),
        other => return Ok(Err(other)),
    };
    // A PDF's or video's facts are in the chain's first result.
    if let Some(first) = parents.first() {
        match client.handle(first).meta().await {
            Ok(m) if m.status == hlbot_proto::State::Success => {
                read = Some(hlbot_tasks::ReadFacts::from_document(&m.result));
            }
            Ok(_) => {}
            Err(e) => eprintln!("warning: could not read the first step's result: {e}"),
        }
    }
    if let (Some(r), Some(o)) = (&read, v.as_object_mut()) {
        o.insert("read".into(), serde_json::to_value(r)?);
    }
    Ok(Ok(v))
}

/// A queued pipeline's result: JSON, or what was read and the strategies.
pub(super) fn print_queued(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        if let Some(r) = v
            .get("read")
            .and_then(|r| serde_json::from_value::<hlbot_tasks::ReadFacts>(r.clone()).ok())
        {
            print_read(&r);
        }
        print_readable(v);
    }
    Ok(())
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn list(v: &Value) -> String {
    match v {
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(short).collect::<Vec<_>>().join(", "),
        Value::Null => "-".into(),
        other => short(other),
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("quote") => {
            let at = o
                .get("timestamp")
                .and_then(Value::as_str)
                .map(|t| format!("[{t}] "));
            let page = o
                .get("page")
                .and_then(Value::as_u64)
                .map(|p| format!("[p. {p}] "));
            format!(
                "{}{}\"{}\"",
                at.unwrap_or_default(),
                page.unwrap_or_default(),
                o["quote"].as_str().unwrap_or_default()
            )
        }
        Value::Object(o) => {
            let name = o
                .get("name")
                .or_else(|| o.get("rule"))
                .or_else(|| o.get("description"))
                .or_else(|| o.get("text"));
            let params = o
                .get("parameters")
                .filter(|p| !p.is_null() && p.as_object().is_none_or(|m| !m.is_empty()));
            match (name, params) {
                (Some(n), Some(p)) => format!("{} {}", short(n), p),
                (Some(n), None) => short(n),
                _ => v.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// What was read, before any strategy.
pub(super) fn print_read(r: &hlbot_tasks::ReadFacts) {
    println!("read:");
    for (label, value) in r.lines() {
        println!("  {label:<16} {value}");
    }
    println!();
}

/// A human summary of a strategy (or chart) result.
pub(super) fn print_readable(v: &Value) {
    let provider = v.get("provider").and_then(Value::as_str).unwrap_or("?");
    let model = v.get("model").and_then(Value::as_str).unwrap_or("?");
    println!("provider: {provider} ({model})");
    if let Some(l) = v.get("label").and_then(Value::as_str) {
        println!("note: {l}");
    }
    for w in v
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!("warning: {}", w.as_str().unwrap_or_default());
    }
    if let Some(strats) = v.get("strategies").and_then(Value::as_array) {
        if strats.is_empty() {
            println!("\nno strategy found");
        }
        for (i, st) in strats.iter().enumerate() {
            let name = st
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)");
            println!("\nStrategy {}: {name}", i + 1);
            for (label, key) in [
                ("instruments", "instruments"),
                ("market", "market"),
                ("timeframes", "timeframes"),
                ("style", "style"),
                ("indicators", "indicators"),
                ("entry", "entry_rules"),
                ("exit", "exit_rules"),
                ("stop loss", "stop_loss"),
                ("take profit", "take_profit"),
                ("position sizing", "position_sizing"),
                ("risk", "risk_management"),
                ("filters", "filters"),
                ("confidence", "confidence"),
            ] {
                if let Some(x) = st.get(key).filter(|x| !x.is_null()) {
                    println!("  {label:<16} {}", list(x));
                }
            }
            for e in st
                .get("evidence")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .take(5)
            {
                println!("  evidence         {}", short(e));
            }
        }
    } else {
        for (k, x) in v.as_object().into_iter().flatten() {
            if !["provider", "model", "label", "warnings", "schema_version"].contains(&k.as_str()) {
                println!("  {k:<16} {}", list(x));
            }
        }
    }
    if let Some(c) = v.get("cost_usd") {
        println!(
            "\ncost: ${c} usage: {}",
            v.get("usage").cloned().unwrap_or(Value::Null)
        );
    }
}

pub fn captions(a: CaptionsArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let lang = hlbot_youtube::lang_from_path(&a.file);
    let segments = hlbot_youtube::read_captions(&bytes, lang.as_deref())
        .with_context(|| format!("parsing {}", a.file.display()))?
        .segments;
    if a.json {
        let v: Vec<Value> = segments
            .iter()
            .map(|g| json!({"start": g.start, "end": g.end, "text": g.text}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", hlbot_youtube::transcript_text(&segments));
    }
    Ok(ExitCode::SUCCESS)
}
