//! `hlbot config show`: every key of the configuration table in docs/reference.md with its
//! effective value and where that value came from (`default`, `file:<path>`, `env:VAR`,
//! `flag:--x`), plus the API keys (environment only). Values come from the loaded `Settings`
//! and the task settings built from them — nothing is parsed twice; the sources come from the
//! record `Settings::load` keeps. Secrets are masked: an API key shows as `****` and at most its
//! last 4 characters, a URL's password as `****`.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::settings::Settings;

/// One key as shown.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub key: String,
    pub value: Value,
    pub source: String,
}

pub fn show(s: &Settings, json_out: bool) -> anyhow::Result<ExitCode> {
    for r in rows(s) {
        if json_out {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!("{} = {}  ({})", r.key, r.value, r.source);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `redis://u:secret@h/0` → `redis://u:****@h/0` (each part of a `;`-separated sentinel URL);
/// text that is no URL but holds an `@` keeps only what follows it.
pub fn mask_url(url: &str) -> String {
    if url.contains(';') {
        return url.split(';').map(mask_url).collect::<Vec<_>>().join(";");
    }
    if !url.contains('@') {
        return url.to_string();
    }
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => format!("****{}", &url[url.rfind('@').unwrap_or(0)..]),
    }
}

/// An API key as shown: `****` and, for a key long enough that 4 characters give nothing
/// away, its last 4 (`****a1b2`).
pub fn mask_key(key: &str) -> String {
    let n = key.chars().count();
    if n < 20 {
        return "****".into();
    }
    let tail: String = key.chars().skip(n - 4).collect();
    format!("****{tail}")
}

/// The source of `key`: the global option `arg` if one was given (flag or its variable), else
/// the config file if it sets the key, else the default.
fn source(s: &Settings, key: &str, arg: Option<&str>) -> String {
    if let Some(o) = arg.and_then(|a| s.origins.get(a)) {
        return o.clone();
    }
    if s.file_keys.contains(key) {
        return file(s);
    }
    "default".into()
}

fn file(s: &Settings) -> String {
    match &s.config_path {
        Some(p) => format!("file:{}", p.display()),
        None => "file".into(),
    }
}

/// A set, non-empty environment variable (the CLI is where the environment is read).
fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// For keys an environment variable overrides (`HLBOT_MODEL` over `llm.model`).
fn env_first(s: &Settings, key: &str, var: &str) -> String {
    match env(var) {
        Some(_) => format!("env:{var}"),
        None => source(s, key, None),
    }
}

/// For keys the file overrides (`youtube.ytdlp` over `HLBOT_YTDLP`); `fallback` otherwise.
fn file_first(s: &Settings, key: &str, var: &str, fallback: &str) -> String {
    if s.file_keys.contains(key) {
        file(s)
    } else if env(var).is_some() {
        format!("env:{var}")
    } else {
        fallback.into()
    }
}

/// For lists the file and a variable both add to (`input_roots` + `HLBOT_INPUT_ROOTS`).
fn both(s: &Settings, key: &str, var: &str) -> String {
    let mut parts = Vec::new();
    if s.file_keys.contains(key) {
        parts.push(file(s));
    }
    if env(var).is_some() {
        parts.push(format!("env:{var}"));
    }
    if parts.is_empty() {
        "default".into()
    } else {
        parts.join(" + ")
    }
}

fn path(p: &std::path::Path) -> Value {
    p.display().to_string().into()
}

/// Every key, in docs/reference.md's order.
pub fn rows(s: &Settings) -> Vec<Row> {
    let ts = crate::domain::task_settings(&s.domain, &[]);
    let d = &s.domain;
    let mut out = Vec::new();
    let mut row = |key: &str, value: Value, source: String| {
        out.push(Row {
            key: key.into(),
            value,
            source,
        })
    };
    row(
        "broker_url",
        s.broker_display().into(),
        source(s, "broker_url", Some("broker")),
    );
    row(
        "result_backend",
        mask_url(&s.backend.display_url()).into(),
        source(s, "result_backend", Some("result_backend")),
    );
    row(
        "task_default_queue_type",
        match s.amqp_layout.queue_type {
            hlbot_engine::amqp::QueueType::Classic => "classic",
            hlbot_engine::amqp::QueueType::Quorum => "quorum",
        }
        .into(),
        source(s, "task_default_queue_type", Some("queue_type")),
    );
    row(
        "task_queue_max_priority",
        s.amqp_layout.max_priority.into(),
        source(s, "task_queue_max_priority", Some("max_priority")),
    );
    row(
        "key_prefix",
        s.broker.key_prefix.clone().into(),
        source(s, "key_prefix", Some("key_prefix")),
    );
    row(
        "result_key_prefix",
        s.backend.result_prefix.clone().into(),
        source(s, "result_key_prefix", Some("result_key_prefix")),
    );
    row(
        "sentinel_master",
        s.broker.sentinel().map(|x| x.master.clone()).into(),
        source(s, "sentinel_master", Some("sentinel_master")),
    );
    row(
        "result_chord_ordered",
        s.broker.chord_ordered.into(),
        source(s, "result_chord_ordered", Some("result_chord_ordered")),
    );
    row(
        "database_url",
        s.store.url.as_deref().map(mask_url).into(),
        source(s, "database_url", Some("database_url")),
    );
    row(
        "data_dir",
        path(&s.store.data_dir),
        source(s, "data_dir", Some("data_dir")),
    );
    row(
        "task_history_days",
        s.store.task_history_days.into(),
        source(s, "task_history_days", None),
    );
    row(
        "result_expires",
        s.result_expires.map_or(0, |d| d.as_secs()).into(),
        source(s, "result_expires", None),
    );
    row(
        "result_extended",
        s.result_extended.into(),
        source(s, "result_extended", None),
    );
    row(
        "task_default_queue",
        s.router.default_queue.clone().into(),
        source(s, "task_default_queue", Some("task_default_queue")),
    );
    row(
        "task_serializer",
        s.broker.task_serializer.name().into(),
        source(s, "task_serializer", Some("task_serializer")),
    );
    row(
        "result_serializer",
        s.backend.result_serializer.name().into(),
        source(s, "result_serializer", Some("result_serializer")),
    );
    row(
        "accept_content",
        json!(
            s.accept_content
                .iter()
                .map(|x| x.name())
                .collect::<Vec<_>>()
        ),
        source(s, "accept_content", Some("accept_content")),
    );
    row(
        "visibility_timeout",
        s.visibility_timeout.as_secs_f64().into(),
        source(s, "visibility_timeout", Some("visibility_timeout")),
    );
    row(
        "broker_transport_options.priority_steps",
        json!(s.broker.layout.priority_steps),
        source(s, "broker_transport_options.priority_steps", None),
    );
    row(
        "broker_transport_options.sep",
        s.broker.layout.sep.clone().into(),
        source(s, "broker_transport_options.sep", None),
    );
    row(
        "max_message_bytes",
        s.max_message_bytes.into(),
        source(s, "max_message_bytes", Some("max_message_bytes")),
    );
    row("queues", json!(s.queues), source(s, "queues", None));
    let roots: Vec<Value> = crate::domain::input_roots(d)
        .iter()
        .map(|p| path(p))
        .collect();
    row(
        "input_roots",
        roots.into(),
        both(s, "input_roots", "HLBOT_INPUT_ROOTS"),
    );
    row(
        "cache_dir",
        path(&ts.cache_dir),
        file_first(s, "cache_dir", "HLBOT_CACHE_DIR", "default"),
    );
    row("routes", json!(s.config_routes), source(s, "routes", None));
    row(
        "log_format",
        s.log_format.as_str().into(),
        source(s, "log_format", Some("log_format")),
    );

    let pdf = &ts.pdf;
    row(
        "pdf.pdfium_lib",
        path(&pdf.pdfium_lib),
        file_first(
            s,
            "pdf.pdfium_lib",
            "HLBOT_PDFIUM_LIB",
            "default (search order)",
        ),
    );
    row(
        "pdf.tesseract",
        path(&pdf.tesseract),
        source(s, "pdf.tesseract", None),
    );
    row(
        "pdf.languages",
        pdf.default_languages.clone().into(),
        source(s, "pdf.languages", None),
    );
    for (key, value) in [
        ("pdf.min_image_side", json!(pdf.min_image_side)),
        ("pdf.worker_processes", json!(pdf.worker_processes)),
        ("pdf.prestart_workers", json!(pdf.prestart_workers)),
        ("pdf.worker_max_documents", json!(pdf.worker_max_documents)),
        ("pdf.worker_max_rss", json!(pdf.worker_max_rss)),
        ("pdf.max_bytes", json!(pdf.max_bytes)),
        ("pdf.max_pages", json!(pdf.max_pages)),
    ] {
        row(key, value, source(s, key, None));
    }

    let yt = &ts.youtube;
    row(
        "youtube.ytdlp",
        path(&yt.ytdlp),
        file_first(s, "youtube.ytdlp", "HLBOT_YTDLP", "default (search order)"),
    );
    row(
        "youtube.allowed_hosts",
        json!(yt.extra_allowed_hosts),
        both(s, "youtube.allowed_hosts", "HLBOT_YOUTUBE_ALLOWED_HOSTS"),
    );
    for (key, value) in [
        ("youtube.ffmpeg", path(&yt.ffmpeg)),
        ("youtube.ffprobe", path(&yt.ffprobe)),
        ("youtube.languages", json!(yt.caption_languages)),
        (
            "youtube.cookies_file",
            json!(yt.cookies_file.as_ref().map(|p| p.display().to_string())),
        ),
        ("youtube.js_runtime", json!(yt.js_runtime)),
        ("youtube.sleep_requests", json!(yt.sleep_requests)),
        ("youtube.max_frames", json!(yt.max_frames)),
        ("youtube.max_filesize", json!(yt.max_filesize)),
        ("youtube.max_duration", json!(yt.max_duration)),
        (
            "youtube.max_transcript_chars",
            json!(yt.max_transcript_chars),
        ),
        ("youtube.egress_guard", json!(yt.egress_guard)),
        ("youtube.scene_threshold", json!(yt.scene_threshold)),
        ("youtube.min_frame_interval", json!(yt.min_frame_interval)),
        ("youtube.frame_ocr", json!(yt.frame_ocr)),
        (
            "youtube.whisper_model",
            json!(match &yt.asr {
                hlbot_youtube::AsrProvider::LocalWhisper { model_dir } =>
                    Some(model_dir.display().to_string()),
                _ => None,
            }),
        ),
    ] {
        row(key, value, source(s, key, None));
    }

    let llm = &ts.llm;
    row(
        "llm.model",
        ts.default_model.clone().into(),
        env_first(s, "llm.model", "HLBOT_MODEL"),
    );
    row(
        "llm.anthropic_base_url",
        mask_url(&llm.anthropic.base_url).into(),
        env_first(s, "llm.anthropic_base_url", "ANTHROPIC_BASE_URL"),
    );
    let base = |prefix: &str| llm.openai.get(prefix).map(|o| mask_url(&o.base_url));
    row(
        "llm.openai_base_url",
        base("openai").into(),
        env_first(s, "llm.openai_base_url", "OPENAI_BASE_URL"),
    );
    row(
        "llm.ollama_base_url",
        base("ollama").into(),
        source(s, "llm.ollama_base_url", None),
    );
    for (key, value) in [
        ("llm.aliases", json!(d.llm.aliases)),
        ("llm.max_concurrency", json!(llm.max_concurrency)),
        ("llm.allowed_models", json!(llm.allowed_models)),
        ("llm.max_cost_usd", json!(llm.max_cost_usd.unwrap_or(0.0))),
        (
            "llm.max_daily_cost_usd",
            json!(llm.max_daily_cost_usd.unwrap_or(0.0)),
        ),
        ("llm.max_content_chars", json!(llm.max_content_chars)),
        ("llm.max_chunks", json!(llm.max_chunks)),
        ("llm.max_image_bytes", json!(llm.max_image_bytes)),
        ("llm.max_image_pixels", json!(llm.max_image_pixels)),
    ] {
        row(key, value, source(s, key, None));
    }

    row(
        "beat.lease",
        s.beat.lease.unwrap_or(10.0).into(),
        source(s, "beat.lease", None),
    );
    let entries = s
        .beat
        .entries
        .clone()
        .unwrap_or_else(hlbot_tasks::beat_entries);
    row(
        "beat.entries",
        entries
            .iter()
            .map(|e| format!("{}: {}", e.name, e.task))
            .collect::<Vec<_>>()
            .into(),
        source(s, "beat.entries", None),
    );
    row(
        "dashboard.user",
        s.dashboard.user.clone().into(),
        source(s, "dashboard.user", None),
    );
    // A hash is not a password, but it is never shown either: only whether one is set.
    row(
        "dashboard.password_hash",
        s.dashboard.password_hash.as_ref().map(|_| "****").into(),
        source(s, "dashboard.password_hash", None),
    );

    // Keys come only from the environment; shown so an operator sees which are set.
    for var in ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "HLBOT_ASR_API_KEY"] {
        let value = env(var).map(|k| mask_key(&k));
        let src = if value.is_some() {
            format!("env:{var}")
        } else {
            "unset".into()
        };
        row(&format!("env.{var}"), value.into(), src);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask_url("redis://user:s3cret@h:6379/0"),
            "redis://user:****@h:6379/0"
        );
        assert_eq!(
            mask_url("sentinel://:pw@a:26379;sentinel://:pw@b:26379/0"),
            "sentinel://:****@a:26379;sentinel://:****@b:26379/0"
        );
        assert_eq!(mask_url("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(mask_key("sk-ant-api03-abcdefghijklmnopWXYZ"), "****WXYZ");
        assert_eq!(mask_key("short-key"), "****");
    }
}
