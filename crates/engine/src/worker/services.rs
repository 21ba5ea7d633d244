//! What a running task may ask of the broker (`task::Services`): send a task, wait for a
//! result, start a chord, bump a counter — backed by the worker's own client.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use serde_json::{Map, Value};

use super::chord;
use crate::client::Client;
use crate::task::Services;

/// Broker-backed services for tasks.
pub(super) struct WorkerServices {
    pub(super) client: Client,
}

#[async_trait]
impl Services for WorkerServices {
    async fn send(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<String, String> {
        self.client
            .send_task(name, args, kwargs, Default::default())
            .await
            .map(|h| h.id)
            .map_err(|e| e.to_string())
    }
    async fn wait(&self, id: &str, timeout: Duration) -> Result<Value, String> {
        self.client
            .handle(id)
            .get(timeout)
            .await
            .map_err(|e| e.to_string())
    }
    async fn send_chord(&self, c: crate::task::ChordSpec) -> Result<String, String> {
        let header = c
            .header
            .into_iter()
            .map(|(name, kwargs)| crate::client::TaskCall {
                name,
                args: vec![],
                kwargs,
                options: Default::default(),
            })
            .collect();
        let mut extra = Map::new();
        if c.partial {
            extra.insert(chord::PARTIAL.into(), Value::Bool(true));
        }
        if c.progress {
            extra.insert(chord::PROGRESS.into(), Value::Bool(true));
        }
        let body = crate::client::TaskCall {
            name: c.body,
            args: c.body_args,
            kwargs: Map::new(),
            options: crate::client::SendOptions {
                task_id: Some(c.body_id),
                ..Default::default()
            },
        };
        self.client
            .send_chord_with(header, body, extra)
            .await
            .map(|h| h.id)
            .map_err(|e| e.to_string())
    }
    async fn incr(&self, key: &str) -> Result<u64, String> {
        let mut c = self.client.broker().conn();
        c.incr(self.client.broker().keys().flaky(key), 1)
            .await
            .map_err(|e| e.to_string())
    }
}
