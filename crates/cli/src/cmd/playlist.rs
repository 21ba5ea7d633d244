//! `hlbot ingest` of a YouTube playlist or channel: here, video after video
//! (`hlbot_tasks::ingest_playlist`), or with `--queue` every video's pipeline sent to the workers
//! at once, then each waited for. A video that fails is reported and the others go on; the run
//! exits 1 only when videos were listed and none was ingested.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hlbot_tasks::{IngestOptions, SourceKind};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::ingest::{collect, print_charts, print_queued, print_read, print_readable, send};
use super::progress::Bar;
use crate::args::IngestArgs;

/// In this process.
pub(super) async fn here(
    ts: &hlbot_tasks::TaskSettings,
    url: &str,
    opts: &IngestOptions,
    as_json: bool,
    bar: Arc<Bar>,
    stop: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let report = hlbot_tasks::ingest_playlist(ts, url, opts, Some(bar.clone()), stop).await;
    bar.finish();
    let report = report?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let n = report.videos.len();
        for v in &report.videos {
            println!(
                "== video {}/{n}: {}",
                v.index,
                title(v.title.as_deref(), &v.url)
            );
            match (&v.report, &v.error) {
                (Some(r), _) => {
                    print_read(&r.read);
                    print_readable(&r.result);
                    print_charts(&r.charts);
                }
                (None, e) => println!("failed: {}", e.as_deref().unwrap_or("?")),
            }
            println!();
        }
        summary(n, report.succeeded, report.failed);
    }
    Ok(exit(report.videos.len(), report.succeeded))
}

/// `--queue`: listed here, every video's chain sent, then each waited for in order.
pub(super) async fn queued(
    client: &hlbot_engine::Client,
    ts: &hlbot_tasks::TaskSettings,
    a: &IngestArgs,
    url: &str,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let entries = hlbot_youtube::list_playlist(&ts.youtube, url, a.max_videos, stop).await?;
    let mut sent = Vec::with_capacity(entries.len());
    for e in &entries {
        sent.push(send(client, ts, a, &SourceKind::Youtube(e.url.clone())).await?);
    }
    eprintln!("queued {} video(s) of {url}", sent.len());
    let timeout = Duration::from_secs_f64(a.timeout);
    let (mut ok, mut videos) = (0, Vec::new());
    for (e, s) in entries.iter().zip(sent) {
        let id = s.final_id.clone();
        let outcome = match collect(client, s, timeout, stop).await? {
            Ok(v) => Ok(v),
            Err(super::wait::Waited::Interrupted) => {
                return Ok(ExitCode::from(super::wait::INTERRUPTED));
            }
            Err(super::wait::Waited::TimedOut(state)) => {
                Err(format!("timed out (task {id} still {state})"))
            }
            Err(super::wait::Waited::Done(m)) => Err(format!(
                "{}: {}",
                m.status,
                m.exception()
                    .map_or_else(|| m.status.to_string(), |e| e.display())
            )),
        };
        ok += usize::from(outcome.is_ok());
        if a.json {
            videos.push(match outcome {
                Ok(v) => json!({"index": e.index, "url": e.url, "title": e.title, "result": v}),
                Err(why) => json!({"index": e.index, "url": e.url, "title": e.title, "error": why}),
            });
            continue;
        }
        println!(
            "== video {}/{}: {}",
            e.index,
            entries.len(),
            title(e.title.as_deref(), &e.url)
        );
        match outcome {
            Ok(v) => print_queued(&v, false)?,
            Err(why) => println!("failed: {why}"),
        }
        println!();
    }
    if a.json {
        let n = videos.len();
        let report = json!({"source": {"kind": "playlist", "source": url}, "videos": videos,
            "succeeded": ok, "failed": n - ok});
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        summary(entries.len(), ok, entries.len() - ok);
    }
    Ok(exit(entries.len(), ok))
}

fn title(title: Option<&str>, url: &str) -> String {
    match title {
        Some(t) => format!("{t} ({url})"),
        None => url.to_string(),
    }
}

fn summary(n: usize, ok: usize, failed: usize) {
    println!("playlist: {n} video(s), {ok} ingested, {failed} failed");
}

fn exit(listed: usize, ok: usize) -> ExitCode {
    if listed > 0 && ok == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
