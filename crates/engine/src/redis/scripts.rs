//! The Lua scripts (each `.lua` file opens with a header saying what it guarantees), loaded once.

use std::sync::LazyLock;

use redis::Script;

pub static FETCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("fetch.lua")));
pub static RESTORE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("restore.lua")));
/// `requeue.lua`'s text: the worker's writer runs it with `EVAL` inside its transaction (rare).
pub const REQUEUE_LUA: &str = include_str!("requeue.lua");
pub static REQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(REQUEUE_LUA));
pub static STORE_RESULT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("store_result.lua")));
/// The worker writer's batch: every write of a batch at once, exactly once (`batch.lua`).
pub static BATCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("batch.lua")));
/// Give back a dead worker's in-flight list (`recover.lua`).
pub static RECOVER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("recover.lua")));
/// Refresh held messages' scores; report vanished entries (`refresh.lua`).
pub static REFRESH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("refresh.lua")));
