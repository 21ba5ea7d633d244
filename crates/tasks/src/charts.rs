//! Charts inside sources: after a PDF or a video is processed, its images and frames that look
//! like price charts (`hlbot_llm::chart_look`, a pixel test) are read like
//! `analyze_chart_image` reads a screenshot — by the model when a key is set, else by the
//! offline reader, which says in its label that it read only the text (title, axes, prices).
//! At most [`MAX_CHARTS`] per source: each reading may be a paid vision call.

use std::path::PathBuf;

use hlbot_engine::TaskContext;
use serde_json::{Value, json};

use crate::settings::TaskSettings;

/// Most charts read per source.
pub const MAX_CHARTS: usize = 6;

/// An image the source produced, and where in the source it was.
struct Picture {
    path: PathBuf,
    /// `{"page": n}` or `{"time": seconds}`.
    at: Value,
}

/// The images of a `process_pdf_document` result and the frames of a `process_youtube_video`
/// (or local video) result, in document order.
fn pictures(doc: &Value) -> Vec<Picture> {
    let mut out = Vec::new();
    for page in doc["pages"].as_array().into_iter().flatten() {
        for img in page["images"].as_array().into_iter().flatten() {
            if let Some(p) = img["path"].as_str() {
                out.push(Picture {
                    path: p.into(),
                    at: json!({"page": page["number"]}),
                });
            }
        }
    }
    for f in doc["frames"].as_array().into_iter().flatten() {
        if let Some(p) = f["path"].as_str() {
            out.push(Picture {
                path: p.into(),
                at: json!({"time": f["timestamp"]}),
            });
        }
    }
    out
}

/// Read the charts among `doc`'s pictures. Each entry: where it was, the image, why it was
/// taken for a chart, and the chart reading (or the error that stopped it). Never fails: a
/// picture that cannot be read is skipped or reported in its entry.
pub async fn read_charts(
    s: &TaskSettings,
    doc: &Value,
    model: Option<&str>,
    ctx: &TaskContext,
) -> Vec<Value> {
    let mut out = Vec::new();
    for pic in pictures(doc) {
        if out.len() >= MAX_CHARTS || ctx.cancel.is_cancelled() {
            break;
        }
        // These files were written by hlbot itself into its cache (not user input); the same
        // size cap as any chart image still applies.
        let Ok(meta) = std::fs::metadata(&pic.path) else {
            continue;
        };
        if s.llm.max_image_bytes > 0 && meta.len() > s.llm.max_image_bytes {
            continue;
        }
        let Ok(bytes) = std::fs::read(&pic.path) else {
            continue;
        };
        let look = match tokio::task::spawn_blocking({
            let b = bytes.clone();
            move || hlbot_llm::chart_look_bytes(&b)
        })
        .await
        {
            Ok(Some(l)) if l.is_chart => l,
            _ => continue,
        };
        ctx.progress(json!({"stage": "chart", "image": pic.path, "at": pic.at}));
        let (model, warning) = crate::llm::pick_model(s, model);
        let reading =
            hlbot_llm::analyze_chart_bytes(&s.llm, &pic.path, bytes, &model, &ctx.cancel).await;
        let mut entry = json!({
            "at": pic.at,
            "image": pic.path,
            "kind": look.kind,
            "why": look.why,
        });
        match reading {
            Ok(r) => {
                let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                if let (Some(w), Some(list)) = (warning, v["warnings"].as_array_mut()) {
                    list.insert(0, json!(w));
                }
                entry["analysis"] = v;
            }
            Err(e) => entry["error"] = json!(e.to_string()),
        }
        out.push(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_of_documents_and_videos_in_order() {
        let doc = json!({
            "pages": [
                {"number": 1, "images": [{"path": "/c/a.png"}]},
                {"number": 2, "images": [{"path": "/c/b.jpg"}, {"nopath": 1}]},
            ],
            "frames": [{"timestamp": 2.5, "path": "/c/f.png"}],
        });
        let p = pictures(&doc);
        let got: Vec<(String, Value)> = p
            .iter()
            .map(|p| (p.path.display().to_string(), p.at.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/c/a.png".into(), json!({"page": 1})),
                ("/c/b.jpg".into(), json!({"page": 2})),
                ("/c/f.png".into(), json!({"time": 2.5})),
            ]
        );
        assert!(pictures(&json!({"text": "x"})).is_empty());
    }
}
