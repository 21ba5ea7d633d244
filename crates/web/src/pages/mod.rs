//! The pages, by area: fleet (workers, queues, beat), tasks (live list, one task, history),
//! library (sources, one source, costs); and the SSE stream the live pages follow.

pub mod fleet;
pub mod library;
pub mod tasks;

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::App;

/// `?task=` on `/events`: the task a task page follows.
#[derive(Debug, Default, Deserialize)]
pub struct Follow {
    pub task: Option<String>,
}

/// `?msg=` after an action.
#[derive(Debug, Default, Deserialize)]
pub struct Flash {
    pub msg: Option<String>,
}

/// `GET /events`: every task and worker change as one JSON `data:` line, until the client
/// goes or the dashboard stops (a slow client skips what it missed; the page stays right
/// because each message is the whole task).
///
/// With `?task=<id>` the stream opens with that task's current view (when the live window
/// has it), taken after subscribing: a page rendered before the task's events arrived cannot
/// miss the change that happened while its stream was connecting.
pub async fn events(
    State(app): State<App>,
    Query(q): Query<Follow>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.monitor.subscribe();
    let first = q
        .task
        .and_then(|id| app.monitor.task(&id))
        .and_then(|t| serde_json::to_value(t).ok())
        .map(|mut v| {
            v["kind"] = serde_json::json!("task");
            v.to_string()
        });
    let stop = app.stop.clone();
    let stream = futures::stream::unfold((rx, stop, first), |(mut rx, stop, first)| async move {
        if let Some(v) = first {
            return Some((Ok(Event::default().data(v)), (rx, stop, None)));
        }
        loop {
            let got = tokio::select! {
                r = rx.recv() => r,
                _ = stop.cancelled() => return None,
            };
            match got {
                Ok(v) => {
                    return Some((Ok(Event::default().data(v.to_string())), (rx, stop, None)));
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
