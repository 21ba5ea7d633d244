//! Redis as hlbot needs it: reachable, version ≥ 6.2, Lua scripting allowed (every atomic step
//! is a script), persistence on (AOF or RDB snapshots,
//! else a restart loses the queued work), `maxmemory-policy noeviction` once `maxmemory` is set
//! (else Redis evicts queued messages and results), and for a `sentinel://` URL the master and
//! its replicas, and messages in priority lists another kombu layout names. Reads `INFO`, `CONFIG
//! GET` and list lengths; changes nothing.

use std::collections::HashMap;
use std::time::Duration;

use hlbot_engine::RedisSettings;
use hlbot_engine::redis::sentinel::Sentinel;
use redis::aio::MultiplexedConnection;

use super::Finding;
use crate::cmd::config::mask_url;
use crate::settings::Settings;

const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn check(s: &Settings, out: &mut Vec<Finding>) {
    if let Some(sentinel) = s.broker.sentinel() {
        sentinel_check(sentinel, out).await;
    }
    let Some(mut conn) = connect("redis", &s.broker, out).await else {
        return;
    };
    let server = info(&mut conn, "server").await;
    let version = server.get("redis_version").cloned().unwrap_or_default();
    out.push(Finding::ok(
        "redis",
        format!(
            "reachable at {} (Redis {version})",
            mask_url(&s.broker.display_url())
        ),
    ));
    out.push(version_finding(&version));
    scripting(&mut conn, out).await;
    persistence(&mut conn, out).await;
    let memory = info(&mut conn, "memory").await;
    out.push(memory_finding(
        memory.get("maxmemory").map(String::as_str).unwrap_or("0"),
        memory
            .get("maxmemory_policy")
            .map(String::as_str)
            .unwrap_or(""),
    ));
    if s.amqp.is_none() {
        layout(&mut conn, s, out).await;
    }
    if s.backend.display_url() != s.broker.display_url() {
        if connect("result backend", &s.backend, out).await.is_some() {
            out.push(Finding::ok(
                "result backend",
                format!("reachable at {}", mask_url(&s.backend.display_url())),
            ));
        }
    }
}

/// Messages waiting in priority lists another kombu layout names (a client with other
/// `priority_steps`/`sep`): no worker with this config would ever run them.
async fn layout(conn: &mut MultiplexedConnection, s: &Settings, out: &mut Vec<Finding>) {
    let stray = hlbot_engine::queues::stray_priority_lists(conn, &s.broker.keys(), &s.queues).await;
    match stray.unwrap_or_default().as_slice() {
        [] => out.push(Finding::ok(
            "priority lists",
            "no messages outside this config's priority lists",
        )),
        lists => {
            for (key, n) in lists {
                out.push(Finding::warn(
                    "priority lists",
                    hlbot_engine::queues::describe_stray(key, *n),
                    "set [broker_transport_options] priority_steps and sep as the sending app \
                     does (docs/reference.md)",
                ));
            }
        }
    }
}

/// A connection, or a FAIL line naming the (masked) URL and why.
async fn connect(
    check: &str,
    r: &RedisSettings,
    out: &mut Vec<Finding>,
) -> Option<MultiplexedConnection> {
    let url = mask_url(&r.display_url());
    let why = match tokio::time::timeout(TIMEOUT, r.blocking()).await {
        Ok(Ok(mut c)) => {
            let ping: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
            match ping {
                Ok(_) => return Some(c),
                Err(e) => first_line(&e.to_string()),
            }
        }
        Ok(Err(hlbot_engine::Error::Redis { message, .. })) => message,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {}s", TIMEOUT.as_secs()),
    };
    out.push(Finding::fail(
        check,
        format!(
            "cannot connect to {url}: {}",
            hlbot_store::redact_text(&why)
        ),
        "start Redis, or point --broker / REDIS_URL / broker_url at it (and check the password)",
    ));
    None
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// `INFO section` as `field → value` (empty when the command is refused).
async fn info(c: &mut MultiplexedConnection, section: &str) -> HashMap<String, String> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(c)
        .await
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn version_finding(version: &str) -> Finding {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= (6, 2) {
        Finding::ok("redis version", format!("{version} (6.2 or later)"))
    } else {
        Finding::warn(
            "redis version",
            format!("{version} is older than 6.2: hlbot is tested on 6.2 and later"),
            "upgrade Redis to 6.2 or later (Debian bookworm ships 7.0)",
        )
    }
}

/// hlbot's atomic steps (fetch, ack, store a result) are Lua scripts: a user or a managed
/// Redis that refuses EVAL breaks every worker. `return 1` touches no key.
async fn scripting(c: &mut MultiplexedConnection, out: &mut Vec<Finding>) {
    let r: redis::RedisResult<i64> = redis::cmd("EVAL")
        .arg("return 1")
        .arg(0)
        .query_async(c)
        .await;
    out.push(match r {
        Ok(_) => Finding::ok("redis scripting", "EVAL allowed"),
        Err(e) => Finding::fail(
            "redis scripting",
            format!(
                "EVAL refused ({}): hlbot's atomic steps are Lua scripts",
                first_line(&e.to_string())
            ),
            "allow scripting for hlbot's Redis user (ACL: +@scripting), or use a Redis that \
             allows Lua",
        ),
    });
}

/// AOF from `INFO persistence`; RDB save points from `CONFIG GET save` (managed Redis may
/// refuse CONFIG: then say what could not be read).
async fn persistence(c: &mut MultiplexedConnection, out: &mut Vec<Finding>) {
    let p = info(c, "persistence").await;
    let aof = p.get("aof_enabled").is_some_and(|v| v.trim() == "1");
    let save: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query_async(c)
        .await;
    let save = save.ok().and_then(|v| v.get(1).cloned());
    out.push(persistence_finding(aof, save.as_deref()));
}

fn persistence_finding(aof: bool, save: Option<&str>) -> Finding {
    let rdb = save.map(str::trim).filter(|s| !s.is_empty());
    match (aof, rdb, save) {
        (true, _, _) => Finding::ok("redis persistence", "AOF on"),
        (false, Some(points), _) => Finding::ok(
            "redis persistence",
            format!(
                "RDB snapshots (save {points}); AOF off: a crash loses what was queued since \
                 the last snapshot"
            ),
        ),
        (false, None, None) => Finding::warn(
            "redis persistence",
            "AOF off and the save points cannot be read (CONFIG is refused)",
            "make sure the server keeps AOF or RDB snapshots: without either, restarts lose \
             queued work",
        ),
        (false, None, Some(_)) => Finding::warn(
            "redis persistence",
            "neither AOF nor RDB snapshots are on: restarts lose queued work",
            "set `appendonly yes` in redis.conf (now: CONFIG SET appendonly yes), or save points",
        ),
    }
}

fn memory_finding(maxmemory: &str, policy: &str) -> Finding {
    let limit: u64 = maxmemory.trim().parse().unwrap_or(0);
    let policy = policy.trim();
    match (limit, policy) {
        (_, "noeviction") => Finding::ok(
            "redis maxmemory",
            "policy noeviction: a full Redis refuses writes instead of dropping data",
        ),
        (0, p) => Finding::warn(
            "redis maxmemory",
            format!("no maxmemory limit, policy {p}: once a limit is set, Redis will evict keys"),
            "set `maxmemory-policy noeviction` in redis.conf",
        ),
        (n, p) => Finding::fail(
            "redis maxmemory",
            format!(
                "maxmemory {n} bytes with policy {p}: under memory pressure Redis evicts queued \
                 messages and results"
            ),
            "set `maxmemory-policy noeviction` (CONFIG SET maxmemory-policy noeviction, and in \
             redis.conf)",
        ),
    }
}

/// The master the sentinels name, and how many replicas they know.
async fn sentinel_check(s: &Sentinel, out: &mut Vec<Finding>) {
    let list = s
        .sentinels
        .iter()
        .map(|(h, p)| format!("{h}:{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    match s.master_addr().await {
        Some(addr) => out.push(Finding::ok(
            "sentinel",
            format!("master {:?} is {addr} (asked {list})", s.master),
        )),
        None => {
            out.push(Finding::fail(
                "sentinel",
                format!("no sentinel of {list} names a master {:?}", s.master),
                "check --sentinel-master / HLBOT_SENTINEL_MASTER and that the sentinels run",
            ));
            return;
        }
    }
    for (h, p) in &s.sentinels {
        let Ok(client) = redis::Client::open(format!("redis://{h}:{p}/")) else {
            continue;
        };
        let Ok(Ok(mut c)) =
            tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection()).await
        else {
            continue;
        };
        let replicas: redis::RedisResult<Vec<redis::Value>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(&s.master)
            .query_async(&mut c)
            .await;
        if let Ok(r) = replicas {
            out.push(if r.is_empty() {
                Finding::warn(
                    "sentinel replicas",
                    format!(
                        "master {:?} has no replica: a failover has nothing to promote",
                        s.master
                    ),
                    "add a replica (replicaof) so Sentinel can fail over",
                )
            } else {
                Finding::ok(
                    "sentinel replicas",
                    format!("{} replica(s) of {:?}", r.len(), s.master),
                )
            });
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::doctor::Level;

    #[test]
    fn judgements() {
        assert_eq!(version_finding("6.0.16").level, Level::Warn);
        assert_eq!(version_finding("7.0.15").level, Level::Ok);
        assert_eq!(persistence_finding(false, Some("")).level, Level::Warn);
        assert_eq!(persistence_finding(false, Some("3600 1")).level, Level::Ok);
        assert_eq!(memory_finding("0", "noeviction").level, Level::Ok);
        assert_eq!(memory_finding("0", "allkeys-lru").level, Level::Warn);
        assert_eq!(memory_finding("1000000", "allkeys-lru").level, Level::Fail);
    }
}
