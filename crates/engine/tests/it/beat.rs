//! Beat against real Redis: interval and crontab firing, two beats → every tick exactly once,
//! the leader killed → a standby takes over within the lease with no tick lost or doubled,
//! restart resumes from the stored last-run time.

use std::time::{Duration, Instant};

use hlbot_engine::Client;
use hlbot_engine::beat::{Beat, BeatOptions, Entry, EntryConfig, now_ms};
use redis::AsyncCommands;
use serde_json::{Map, json};
use tokio_util::sync::CancellationToken;

use crate::fixture::TestRedis;

fn entry(name: &str, interval: Option<f64>, crontab: Option<&str>) -> Entry {
    Entry::from_config(&EntryConfig {
        name: name.into(),
        task: "hlbot.debug.echo".into(),
        interval,
        crontab: crontab.map(str::to_string),
        timezone: Some("Europe/Berlin".into()),
        args: vec![json!(name)],
        kwargs: Map::new(),
        queue: Some("beatq".into()),
        options: Map::new(),
    })
    .expect("entry")
}

struct Running {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<hlbot_engine::Result<()>>,
}

async fn spawn_beat(client: &Client, entries: Vec<Entry>, lease: Duration) -> Running {
    let mut o = BeatOptions::new(entries);
    o.lease = lease;
    let stop = CancellationToken::new();
    let handle = tokio::spawn(Beat::new(client.clone(), o).run(stop.clone()));
    Running { stop, handle }
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.handle).await;
    }
}

async fn queued(t: &TestRedis) -> usize {
    let mut c = t.conn().await;
    c.llen::<_, usize>(t.key("beatq")).await.expect("llen")
}

async fn last(t: &TestRedis, name: &str) -> i64 {
    let mut c = t.conn().await;
    c.get::<_, Option<i64>>(t.key(&format!("hlbot.beat.last.{name}")))
        .await
        .expect("get")
        .unwrap_or(0)
}

async fn set_last(t: &TestRedis, name: &str, ms: i64) {
    let mut c = t.conn().await;
    let _: () = c
        .set(t.key(&format!("hlbot.beat.last.{name}")), ms)
        .await
        .expect("set");
}

async fn lease_owner(t: &TestRedis) -> Option<String> {
    let mut c = t.conn().await;
    c.get(t.key("hlbot.beat.lease")).await.expect("get")
}

/// Messages in the queue must be exactly the ticks between `anchor` and the stored last run.
async fn assert_exact(t: &TestRedis, name: &str, anchor: i64, period_ms: i64) -> usize {
    let l = last(t, name).await;
    assert_eq!((l - anchor) % period_ms, 0, "last run off the grid");
    let ticks = ((l - anchor) / period_ms) as usize;
    assert_eq!(queued(t).await, ticks, "messages vs ticks due");
    let mut c = t.conn().await;
    let sent: Vec<String> = c
        .keys(t.key(&format!("hlbot.beat.sent.{name}.*")))
        .await
        .expect("keys");
    assert_eq!(sent.len(), ticks, "one idempotency key per tick");
    ticks
}

#[tokio::test]
async fn interval_ticks_run_on_a_worker() {
    let t = TestRedis::new();
    let client = t.client().await;
    let anchor = now_ms();
    set_last(&t, "every", anchor).await;
    let b = spawn_beat(
        &client,
        vec![entry("every", Some(0.2), None)],
        Duration::from_secs(2),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued(&t).await < 4 {
        assert!(Instant::now() < deadline, "beat sent nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.stop().await;
    let n = assert_exact(&t, "every", anchor, 200).await;
    assert!(n >= 4);
    // The messages are ordinary Celery tasks: an hlbot worker runs them.
    let w = crate::worker::start(
        &t,
        hlbot_engine::Registry::with_debug_tasks(),
        crate::worker::opts(&["beatq"]),
        Duration::from_secs(3600),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued(&t).await > 0 {
        assert!(
            Instant::now() < deadline,
            "worker did not drain beat messages"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.stop().await;
}

#[tokio::test]
async fn crontab_catches_up_missed_minutes_once() {
    let t = TestRedis::new();
    let client = t.client().await;
    // Last run 3 minutes ago, on a minute boundary: exactly three ticks are due now.
    let minute = 60_000;
    let anchor = (now_ms() / minute - 3) * minute;
    set_last(&t, "cron", anchor).await;
    let e = entry("cron", None, Some("* * * * *"));
    let b1 = spawn_beat(&client, vec![e.clone()], Duration::from_secs(2)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued(&t).await < 3 {
        assert!(Instant::now() < deadline, "crontab ticks not sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b1.stop().await;
    // A restart must not repeat them.
    let b2 = spawn_beat(&client, vec![e], Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    b2.stop().await;
    let n = assert_exact(&t, "cron", anchor, minute).await;
    assert!((3..=4).contains(&n), "{n}");
}

#[tokio::test]
async fn two_beats_thirty_ticks_exactly_thirty_messages() {
    let t = TestRedis::new();
    let client = t.client().await;
    // 30 ticks of a 60 s schedule are due at once; the next one is 30 s away.
    let period = 60_000;
    let anchor = now_ms() - 30 * period - period / 2;
    set_last(&t, "thirty", anchor).await;
    let e = entry("thirty", Some(60.0), None);
    let a = spawn_beat(&client, vec![e.clone()], Duration::from_secs(2)).await;
    let b = spawn_beat(&client, vec![e], Duration::from_secs(2)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued(&t).await < 30 {
        assert!(Instant::now() < deadline, "ticks not sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.stop().await;
    b.stop().await;
    assert_eq!(assert_exact(&t, "thirty", anchor, period).await, 30);
}

#[tokio::test]
async fn killed_leader_hands_over_within_the_lease() {
    let t = TestRedis::new();
    let client = t.client().await;
    let period = 200;
    let anchor = now_ms();
    set_last(&t, "ha", anchor).await;
    let e = entry("ha", Some(0.2), None);
    let lease = Duration::from_millis(1500);
    let a = spawn_beat(&client, vec![e.clone()], lease).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while lease_owner(&t).await.is_none() {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = lease_owner(&t).await.unwrap_or_default();
    let b = spawn_beat(&client, vec![e], lease).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        lease_owner(&t).await.as_deref(),
        Some(first.as_str()),
        "leader unchanged"
    );
    // Crash the leader: its task is dropped mid-flight, the lease is not released.
    a.handle.abort();
    let killed = Instant::now();
    loop {
        let owner = lease_owner(&t).await;
        if owner.as_ref().is_some_and(|o| *o != first) {
            break;
        }
        assert!(
            killed.elapsed() < lease + Duration::from_secs(1),
            "no handover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let handover = killed.elapsed();
    eprintln!(
        "handover after {:.0} ms (lease {:?})",
        handover.as_secs_f64() * 1000.0,
        lease
    );
    assert!(handover <= lease + Duration::from_millis(600));
    let token = |s: &str| {
        s.rsplit(' ')
            .next()
            .and_then(|x| x.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let now_owner = lease_owner(&t).await.unwrap_or_default();
    assert!(token(&now_owner) > token(&first), "new fencing token");
    // Give the new leader time to catch up the ticks due while nobody led.
    tokio::time::sleep(Duration::from_millis(600)).await;
    b.stop().await;
    let n = assert_exact(&t, "ha", anchor, period).await;
    let elapsed_ticks = ((last(&t, "ha").await - anchor) / period) as usize;
    assert_eq!(n, elapsed_ticks);
    assert!(n >= 10, "{n}");
}
