//! Engine integration tests against the real Redis (127.0.0.1:6379 unless `HLBOT_TEST_REDIS`).
//! Each test takes its own key prefix and removes its keys when done.

mod acks;
mod amqp;
mod beat;
mod broker;
mod canvas;
mod client;
mod control;
mod faults;
mod fixture;
mod reclaim;
mod silent;
mod worker;
