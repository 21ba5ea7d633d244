//! The real-Redis fixtures, from the shared test kit, and a writer batch made by hand.

use hlbot_engine::redis::RedisSettings;
pub use hlbot_testkit::{PrivateRedis, TestRedis};

/// A TCP gate in front of the test's Redis, and settings (the test's key prefix) that connect
/// through it.
pub async fn gated(t: &TestRedis) -> (hlbot_testkit::Gate, RedisSettings) {
    let url = url::Url::parse(&t.url).expect("url");
    let host = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(6379)
    );
    let gate = hlbot_testkit::Gate::start(&host).await;
    let mut gated = url.clone();
    gated
        .set_host(Some(&gate.addr.ip().to_string()))
        .expect("host");
    gated.set_port(Some(gate.addr.port())).expect("port");
    let settings = RedisSettings::new(gated.as_str())
        .expect("url")
        .with_prefix(&t.prefix)
        .with_result_prefix(&t.prefix);
    (gate, settings)
}

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
