//! The queue engine: kombu-compatible Redis broker, Celery result backend, producer client,
//! worker, beat, remote control and events. Knows nothing about YouTube, PDFs or LLMs.

pub mod amqp;
pub mod apply;
pub mod backend;
pub mod backoff;
pub mod beat;
pub mod broker;
pub mod builtin;
pub mod canvas;
pub mod client;
pub mod control;
pub mod deadletter;
pub mod debug;
pub mod delivery;
pub mod error;
pub mod events;
pub mod fetch;
pub mod liveness;
pub mod monitor;
pub mod queues;
pub mod redis;
pub mod registry;
pub mod revoke;
pub mod route;
pub mod runlog;
pub mod task;
pub mod typed;
pub mod worker;

pub use backend::Backend;
pub use broker::{Broker, BrokerOptions, Consumer, Delivery};
pub use canvas::GroupResult;
pub use client::{AsyncResult, Client, SendOptions, TaskCall};
pub use error::{Error, Result};
pub use redis::{Keys, RedisSettings};
pub use registry::Registry;
pub use route::Router;
pub use runlog::{RunFact, RunLog, RunState};
pub use task::{ChordSpec, Isolation, RetryPolicy, Task, TaskContext, TaskError, TaskOptions};
pub use typed::{Typed, TypedTask};
pub use worker::{Shutdown, Worker, WorkerOptions};
