//! The worker's background upkeep: its liveness key and holder record, the scores of the messages
//! it holds (and what a Redis that lost its data dropped), the copies it drops after being taken
//! for dead, and the restore loop that gives back what crashed peers left (stale `unacked`, dead
//! workers' in-flight lists and held messages, chord bodies).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::liveness;
use crate::worker::state::{self, Phase};
use crate::worker::{Shared, orphans, writer};

/// Keep every held message's `unacked_index` score fresh, so no restorer — ours or a Python
/// worker's — re-queues an ETA task or a long acks_late task while this worker has it. Also keeps
/// this worker's liveness key, and repairs what a Redis that lost its data (`FLUSHALL`, restart
/// without persistence) dropped: unacked entries of messages still held here are written again,
/// queue bindings declared again.
pub(super) async fn refresh_loop(sh: Arc<Shared>, stop: CancellationToken) {
    let every = (sh.broker.options.visibility_timeout / 4)
        .min(sh.opts.inflight_lease / 3)
        .clamp(Duration::from_millis(200), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let taken_for_dead = match liveness::keep_alive(
            &sh.broker,
            &sh.worker_id,
            &sh.hostname,
            sh.opts.inflight_lease,
        )
        .await
        {
            Ok(taken) => taken,
            Err(e) => {
                tracing::debug!("liveness refresh failed: {e}");
                continue;
            }
        };
        // Bindings too come back after a data loss (two SADDs per queue, no-ops normally).
        if sh.amqp.is_none() {
            if let Err(e) = sh.broker.declare(&sh.queues()).await {
                tracing::debug!("re-declaring queues failed: {e}");
            }
        }
        // Survivors took this worker for dead (frozen or cut off past --reclaim-after) and gave
        // back what it held: drop the copies here that are no longer ours.
        if taken_for_dead && sh.amqp.is_none() {
            drop_given_back(&sh, &held_in_redis(&sh)).await;
        }
        let held = held_in_redis(&sh);
        let tags: Vec<String> = held.iter().map(|r| r.delivery.tag.clone()).collect();
        match sh.broker.refresh(&tags).await {
            Ok(missing) if !missing.is_empty() => {
                let ids: Vec<&str> = held
                    .iter()
                    .filter(|r| missing.contains(&r.delivery.tag))
                    .map(|r| r.id())
                    .take(5)
                    .collect();
                tracing::warn!(
                    "{} held message(s) lost their unacked entry (Redis lost data?): recording them again (tasks {})",
                    missing.len(),
                    ids.join(", ")
                );
                for r in held.iter().filter(|r| missing.contains(&r.delivery.tag)) {
                    sh.writer.send(writer::Op::Unacked {
                        tag: r.delivery.tag.clone(),
                        stored: r.delivery.unacked_value(),
                        acked: r.acked_flag(),
                    });
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("refresh of held messages failed: {e}"),
        }
    }
}

/// Held requests whose message has an `unacked` entry (AMQP deliveries are held by RabbitMQ).
fn held_in_redis(sh: &Shared) -> Vec<state::Request> {
    sh.state
        .held()
        .into_iter()
        .filter(|r| !crate::amqp::is_amqp_tag(&r.delivery.tag))
        .collect()
}

/// This worker was taken for dead (frozen or cut off from Redis past `--reclaim-after`) and
/// survivors gave back messages it held: a held request whose `hlbot.held` record no longer is
/// the one its fetch wrote was given back (its copy runs elsewhere, or here once fetched again).
/// Reserved and ETA-held ones are dropped, without an ack or a restore; running ones finish (a
/// copy whose SUCCESS is stored by then is not run again). Idle-wait claims, all recorded as
/// `<worker> c`, are dropped only when their record is gone.
async fn drop_given_back(sh: &Shared, held: &[state::Request]) {
    if held.is_empty() {
        return;
    }
    let tags: Vec<&str> = held.iter().map(|r| r.delivery.tag.as_str()).collect();
    let mut c = sh.broker.conn();
    let records: Vec<Option<String>> = match redis::cmd("HMGET")
        .arg(sh.broker.keys().held())
        .arg(&tags)
        .query_async(&mut c)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("taken for dead, but the holder records could not be read: {e}");
            return;
        }
    };
    let running: Vec<u64> = sh
        .state
        .requests(Phase::Active)
        .iter()
        .map(|r| r.key)
        .collect();
    let (mut dropped, mut finishing) = (0, 0);
    for (r, rec) in held.iter().zip(records) {
        if rec.is_some() && rec == r.delivery.holder {
            continue;
        }
        if running.contains(&r.key) {
            finishing += 1;
        } else {
            r.abandon();
            sh.state.remove(r);
            dropped += 1;
        }
    }
    tracing::warn!(
        "this worker was taken for dead (frozen or cut off from Redis past --reclaim-after) and its messages given back: dropped {dropped} reserved/held copies, {finishing} running ones finish"
    );
}

/// Send the chord bodies of workers that died before sending them ([`orphans`]).
pub(super) async fn recover_chord_bodies(sh: &Shared) {
    match orphans::recover(sh).await {
        Ok(n) if n > 0 => tracing::warn!("took over {n} chord bod(ies) left by a worker that died"),
        Ok(_) => {}
        Err(e) => tracing::debug!("chord body recovery failed: {e}"),
    }
}

/// Restore messages other consumers left unacked past the visibility timeout (crashed workers).
pub(super) async fn restore_loop(sh: Arc<Shared>, stop: CancellationToken) {
    let every = (sh.broker.options.visibility_timeout / 2)
        .min(sh.opts.inflight_lease / 2)
        .clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut suspects = liveness::Suspects::default();
    let mut dead_holders = liveness::Suspects::default();
    let reclaim = sh.opts.reclaim_after.map(|r| r.max(sh.opts.inflight_lease));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match sh.broker.restore_visible().await {
                    Ok(n) if n > 0 => tracing::warn!("restored {n} message(s) unacked past the visibility timeout"),
                    Ok(_) => {}
                    Err(e) => tracing::debug!("restore scan failed: {e}"),
                }
                match liveness::recover_inflight(&sh.broker, &mut suspects, sh.opts.inflight_lease).await {
                    Ok(n) if n > 0 => tracing::warn!("gave back {n} message(s) from the in-flight list of a worker that died"),
                    Ok(_) => {}
                    Err(e) => tracing::debug!("in-flight recovery failed: {e}"),
                }
                if let Some(grace) = reclaim {
                    match liveness::recover_held(&sh.broker, &mut dead_holders, grace).await {
                        Ok(n) if n > 0 => tracing::warn!("gave back {n} message(s) held unacked by a worker that died"),
                        Ok(_) => {}
                        Err(e) => tracing::debug!("recovery of a dead worker's messages failed: {e}"),
                    }
                }
                recover_chord_bodies(&sh).await;
            }
            _ = stop.cancelled() => return,
        }
    }
}
