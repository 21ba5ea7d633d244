//! The Lua scripts (each `.lua` file opens with a header saying what it guarantees), loaded once.

use std::sync::LazyLock;

use redis::Script;

/// `deadline.lua` (the late-call check of `clock.rs`) is prepended to `fetch.lua`, `batch.lua`
/// and `orphans.lua`.
pub static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("deadline.lua"),
        include_str!("fetch.lua")
    ))
});
pub static RESTORE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("restore.lua")));
/// `reject(requeue=True)` outside the worker (`Broker::requeue`); the worker's writer does the same
/// as `batch.lua`'s `requeue` op.
pub static REQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("requeue.lua")));
/// `succeeded.lua` (is a stored meta a SUCCESS, in any serializer) is prepended to
/// `store_result.lua` and `batch.lua`.
pub static STORE_RESULT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("succeeded.lua"),
        include_str!("store_result.lua")
    ))
});
/// The worker writer's batch: every write of a batch at once, exactly once (`batch.lua`).
/// `chord.lua` (a chord part's accounting) is prepended: one script, one atomic step.
pub static BATCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("deadline.lua"),
        include_str!("succeeded.lua"),
        include_str!("chord.lua"),
        include_str!("batch.lua")
    ))
});
/// Give back a dead worker's in-flight list (`recover.lua`).
pub static RECOVER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("recover.lua")));
/// Refresh held messages' scores; report vanished entries (`refresh.lua`).
pub static REFRESH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("refresh.lua")));
/// Re-lease the chord bodies of workers that died before sending them (`orphans.lua`).
pub static ORPHANS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("deadline.lua"),
        include_str!("orphans.lua")
    ))
});
