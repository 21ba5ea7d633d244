//! The pages, by area: fleet (workers, queues, beat), tasks (live list, one task, history),
//! library (sources, one source, costs); and the SSE stream the live pages follow.

pub mod fleet;
pub mod library;
pub mod tasks;

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::App;

/// `?msg=` after an action.
#[derive(Debug, Default, Deserialize)]
pub struct Flash {
    pub msg: Option<String>,
}

/// `GET /events`: every task and worker change as one JSON `data:` line, until the client
/// goes or the dashboard stops (a slow client skips what it missed; the page stays right
/// because each message is the whole task).
pub async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.monitor.subscribe();
    let stop = app.stop.clone();
    let stream = futures::stream::unfold((rx, stop), |(mut rx, stop)| async move {
        loop {
            let got = tokio::select! {
                r = rx.recv() => r,
                _ = stop.cancelled() => return None,
            };
            match got {
                Ok(v) => return Some((Ok(Event::default().data(v.to_string())), (rx, stop))),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
