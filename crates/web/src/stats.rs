//! What events do not carry, asked of the workers every 5 s with one `stats` broadcast (like
//! Flower's inspector): pool size, peak RSS, the result writer's backlog. Bounded: one entry per
//! answering node, replaced on each round, dropped when a node stops answering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hlbot_engine::control::client::{Broadcast, ControlClient};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// One node's numbers from its last `stats` reply.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    pub concurrency: Option<u64>,
    pub maxrss_kib: Option<u64>,
    pub writer_backlog: Option<u64>,
}

#[derive(Clone, Default)]
pub struct WorkerStats(Arc<Mutex<HashMap<String, NodeStats>>>);

impl WorkerStats {
    pub fn spawn(control: ControlClient, stop: CancellationToken) -> Self {
        let me = WorkerStats::default();
        let map = me.0.clone();
        tokio::spawn(async move {
            let mut b = Broadcast::new("stats", Map::new());
            b.timeout = Duration::from_millis(800);
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let Ok(replies) = control.broadcast(&b).await else {
                    continue;
                };
                let fresh: HashMap<String, NodeStats> =
                    replies.iter().map(|(n, v)| (n.clone(), parse(v))).collect();
                *map.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
            }
        });
        me
    }

    pub fn get(&self, node: &str) -> NodeStats {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned()
            .unwrap_or_default()
    }

    /// Sum of the writers' backlogs (`hlbot_writer_backlog`).
    pub fn backlog(&self) -> Vec<(String, u64)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(String, u64)> = m
            .iter()
            .filter_map(|(n, s)| s.writer_backlog.map(|b| (n.clone(), b)))
            .collect();
        v.sort();
        v
    }
}

fn parse(v: &Value) -> NodeStats {
    NodeStats {
        concurrency: v["pool"]["max-concurrency"].as_u64(),
        maxrss_kib: v["rusage"]["maxrss"].as_u64(),
        writer_backlog: v["writer"]["backlog"].as_u64(),
    }
}
