//! The real-Redis fixtures, from the shared test kit, and a writer batch made by hand.

pub use hlbot_testkit::{PrivateRedis, TestRedis};

/// One `batch.lua` call as a writer owned by `owner` makes it (batch number `seq`), with `ops`.
pub async fn batch(t: &TestRedis, owner: &str, seq: u64, ops: &[String]) -> Vec<redis::Value> {
    batch_until(t, owner, seq, ops, 1e12).await
}

/// [`batch`] with its deadline (Redis's clock, unix seconds).
pub async fn batch_until(
    t: &TestRedis,
    owner: &str,
    seq: u64,
    ops: &[String],
    deadline: f64,
) -> Vec<redis::Value> {
    let mut inv = hlbot_engine::redis::scripts::BATCH.prepare_invoke();
    inv.arg(t.key(&format!("hlbot.writer.{owner}")))
        .arg(seq)
        .arg(60)
        .arg(t.key("unacked"))
        .arg(t.key("unacked_index"))
        .arg(0)
        .arg(t.key("hlbot.dead"))
        .arg(10)
        .arg(t.key("hlbot.dead.trimmed"))
        .arg(t.key(&format!("hlbot.writer.{owner}.chords")))
        .arg(t.key("hlbot.chords.pending"))
        .arg(t.key("hlbot.chords.sent"))
        .arg(owner)
        .arg(deadline)
        .arg(t.key("hlbot.held"));
    for op in ops {
        inv.arg(op);
    }
    inv.invoke_async(&mut t.conn().await).await.expect("batch")
}
