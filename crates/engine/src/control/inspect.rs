//! Read-only pidbox commands (reference §4.4): `ping`, `active`, `reserved`, `scheduled`,
//! `revoked`, `registered`, `stats`, `active_queues`, `conf`, `report`, `query_task`, `clock`,
//! `hello`. Reply shapes are Python's, since Flower and `celery inspect` parse them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};

use super::{Answer, str_list};
use crate::worker::Shared;
use crate::worker::state::Phase;

/// Answer `method` if it is an inspect command.
pub fn handle(sh: &Arc<Shared>, method: &str, args: &Map<String, Value>) -> Option<Answer> {
    let safe = args.get("safe").and_then(Value::as_bool).unwrap_or(false);
    let v = match method {
        "ping" => json!({"ok": "pong"}),
        "active" => Value::Array(infos(sh, Phase::Active, safe)),
        "reserved" => Value::Array(infos(sh, Phase::Reserved, safe)),
        "scheduled" => scheduled(sh, safe),
        "revoked" => json!(sh.state.revoked_ids()),
        "registered" => registered(sh),
        "stats" => stats(sh),
        "active_queues" => Value::Array(sh.queues().iter().map(|q| queue_dict(q)).collect()),
        "conf" => conf(sh),
        "report" => json!({"ok": report(sh)}),
        "query_task" => query_task(sh, &str_list(args, "ids")),
        "clock" => json!({"clock": sh.events.clock.forward()}),
        "hello" => hello(sh, args),
        _ => return None,
    };
    Some(Answer::Reply(v))
}

fn infos(sh: &Shared, phase: Phase, safe: bool) -> Vec<Value> {
    let mut reqs = sh.state.requests(phase);
    reqs.sort_by(|a, b| a.id().cmp(b.id()));
    reqs.iter()
        .filter_map(|r| sh.state.info(r, &sh.hostname, safe))
        .collect()
}

fn scheduled(sh: &Shared, safe: bool) -> Value {
    let mut out: Vec<(String, Value)> = sh
        .state
        .requests(Phase::Scheduled)
        .iter()
        .filter_map(|r| {
            let eta = r.msg.headers.eta_time()?;
            let info = sh.state.info(r, &sh.hostname, safe)?;
            let eta = eta.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
            Some((
                eta.clone(),
                json!({"eta": eta, "priority": 6, "request": info}),
            ))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(out.into_iter().map(|(_, v)| v).collect())
}

fn registered(sh: &Shared) -> Value {
    let names: Vec<String> = sh
        .registry
        .names()
        .into_iter()
        .filter(|n| !n.starts_with("celery."))
        .collect();
    json!(names)
}

fn query_task(sh: &Shared, ids: &[String]) -> Value {
    let mut m = Map::new();
    for id in ids {
        // Duplicate ids: the running delivery first, else the oldest.
        let held = sh.state.by_id(id);
        let Some((req, phase)) = held
            .iter()
            .find(|(_, p)| *p == Phase::Active)
            .or(held.first())
            .cloned()
        else {
            continue;
        };
        let name = match phase {
            Phase::Active => "active",
            Phase::Reserved => "reserved",
            Phase::Scheduled => "scheduled",
        };
        if let Some(info) = sh.state.info(&req, &sh.hostname, false) {
            m.insert(id.clone(), json!([name, info]));
        }
    }
    Value::Object(m)
}

/// Mingle: tell another node our revoked ids and clock; `null` to ourselves.
fn hello(sh: &Shared, args: &Map<String, Value>) -> Value {
    let from = args.get("from_node").and_then(Value::as_str).unwrap_or("");
    let theirs = str_list(args, "revoked");
    if !theirs.is_empty() {
        sh.state.revoke(&theirs, false);
    }
    if from == sh.hostname {
        return Value::Null;
    }
    json!({"revoked": sh.state.revoked_ids(), "clock": sh.events.clock.forward()})
}

/// `kombu.Queue.as_dict(recurse=True)` for a direct queue named like its exchange.
pub fn queue_dict(q: &str) -> Value {
    json!({
        "name": q,
        "exchange": {"name": q, "type": "direct", "arguments": null, "durable": true,
                     "passive": false, "auto_delete": false, "delivery_mode": null,
                     "no_declare": false},
        "routing_key": q, "queue_arguments": null, "binding_arguments": null,
        "consumer_arguments": null, "durable": true, "exclusive": false, "auto_delete": false,
        "no_ack": false, "alias": null, "bindings": [], "no_declare": null, "expires": null,
        "message_ttl": null, "max_length": null, "max_length_bytes": null, "max_priority": null
    })
}

fn stats(sh: &Shared) -> Value {
    let settings = sh.broker.settings();
    let (host, port) = settings.host_port();
    let concurrency = sh.concurrency.load(Ordering::SeqCst);
    let children: Vec<u32> = vec![std::process::id()];
    let w = sh.writer.stats();
    json!({
        "total": sh.state.totals(),
        "pid": std::process::id(),
        "clock": sh.events.clock.value().to_string(),
        "uptime": sh.started_at.elapsed().as_secs(),
        "pool": {
            "implementation": "hlbot:TokioPool",
            "max-concurrency": concurrency,
            "processes": children,
            "max-tasks-per-child": "N/A",
            "put-guarded-by-semaphore": false,
            "timeouts": [
                sh.opts.soft_time_limit.map_or(0.0, |d| d.as_secs_f64()),
                sh.opts.time_limit.map_or(0.0, |d| d.as_secs_f64()),
            ],
        },
        "broker": broker_info(sh, host, port),
        "prefetch_count": sh.qos(),
        "rusage": rusage(),
        // hlbot: the result writer's backlog (writes not yet in Redis; fetching pauses while
        // Redis refuses them).
        "writer": {
            "backlog": w.backlog.load(Ordering::SeqCst),
            "unwritten_acks": w.unwritten_acks.load(Ordering::SeqCst),
            "unsent_slots": w.unsent_slots.load(Ordering::SeqCst),
            "failing": w.failing.load(Ordering::SeqCst),
            "retries": w.retries.load(Ordering::SeqCst),
        },
    })
}

/// kombu's `Connection.info()` of the worker's broker (RabbitMQ when it consumes from one).
fn broker_info(sh: &Shared, host: String, port: u16) -> Value {
    let settings = sh.broker.settings();
    let mut info = json!({
        "hostname": host, "userid": null, "virtual_host": settings.db().to_string(),
        "port": port, "insist": false, "ssl": settings.is_tls(), "transport": "redis",
        "connect_timeout": 4, "transport_options": transport_options(sh),
        "login_method": null, "uri_prefix": null, "heartbeat": 120.0,
        "failover_strategy": "round-robin", "alternates": [], "credential_provider": null,
    });
    if let Some(a) = &sh.amqp {
        info["hostname"] = json!(a.url.host());
        info["port"] = json!(a.url.port());
        info["virtual_host"] = json!(a.url.vhost());
        info["ssl"] = json!(a.url.is_tls());
        info["transport"] = json!("amqp");
        info["transport_options"] = json!({});
        info["heartbeat"] = json!(60.0);
    }
    info
}

fn transport_options(sh: &Shared) -> Value {
    let p = sh.broker.keys().prefix();
    let mut m = Map::new();
    if !p.is_empty() {
        m.insert("global_keyprefix".into(), json!(p));
    }
    m.insert(
        "visibility_timeout".into(),
        json!(sh.broker.options.visibility_timeout.as_secs_f64()),
    );
    Value::Object(m)
}

/// `getrusage(RUSAGE_SELF)`-like numbers from /proc (utime/stime in s, maxrss in KiB).
fn rusage() -> Value {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime/stime are fields 14/15 (1-based).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let tick = 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ctx = |name: &str| kib(name);
    json!({
        "utime": num(11) / tick, "stime": num(12) / tick, "maxrss": kib("VmHWM:"),
        "ixrss": 0, "idrss": 0, "isrss": 0, "minflt": num(7) as u64, "majflt": num(9) as u64,
        "nswap": 0, "inblock": 0, "oublock": 0, "msgsnd": 0, "msgrcv": 0, "nsignals": 0,
        "nvcsw": ctx("voluntary_ctxt_switches:"), "nivcsw": ctx("nonvoluntary_ctxt_switches:"),
    })
}

/// The broker as shown to operators (password masked): RabbitMQ's URL when the worker
/// consumes from it, else the Redis one.
fn broker_url(sh: &Shared) -> String {
    match &sh.amqp {
        Some(a) => a.url.redacted(),
        None => sh.broker.settings().display_url(),
    }
}

fn conf(sh: &Shared) -> Value {
    let queues: Vec<Value> = sh.queues().iter().map(|q| queue_dict(q)).collect();
    json!({
        "broker_url": broker_url(sh),
        "result_backend": sh.broker.settings().display_url(),
        "task_queues": queues,
        "worker_concurrency": sh.concurrency.load(Ordering::SeqCst),
        "worker_prefetch_multiplier": sh.opts.prefetch_multiplier,
        "task_acks_late": sh.opts.acks_late,
        "worker_send_task_events": sh.events.task_events_enabled(),
        "task_track_started": sh.opts.track_started,
        "result_extended": sh.opts.result_extended,
        "result_serializer": sh.broker.settings().result_serializer.name(),
        "accept_content": sh.opts.accept_content.iter().map(|s| s.name()).collect::<Vec<_>>(),
    })
}

fn report(sh: &Shared) -> String {
    format!(
        "\nsoftware -> hlbot:{} (rust) celery-protocol:2\n            platform -> system:Linux\n            \
         loader -> hlbot\n            settings -> transport:{} results:redis\n\n\
         broker_url: '{}'\nresult_backend: '{}'\n",
        env!("CARGO_PKG_VERSION"),
        if sh.amqp.is_some() { "amqp" } else { "redis" },
        broker_url(sh),
        sh.broker.settings().display_url(),
    )
}
