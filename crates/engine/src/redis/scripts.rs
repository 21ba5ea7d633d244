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
