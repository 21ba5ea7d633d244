//! The queue engine: kombu-compatible Redis broker, Celery result backend, producer client,
//! worker, beat, remote control and events. Knows nothing about YouTube, PDFs or LLMs.

pub mod backend;
pub mod broker;
pub mod client;
pub mod error;
pub mod redis;
pub mod route;

pub use backend::Backend;
pub use broker::{Broker, BrokerOptions, Consumer, Delivery};
pub use client::{AsyncResult, Client, SendOptions, TaskCall};
pub use error::{Error, Result};
pub use redis::{Keys, RedisSettings};
pub use route::Router;
