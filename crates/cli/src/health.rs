//! The worker's health endpoint (`--health-address`, and `--http-port` with `/metrics`): a
//! minimal HTTP/1.1 server answering `GET /healthz` from the worker's vitals — 200 while it
//! consumes and its heartbeat advances, 503 otherwise — `GET /readyz` (200 once consuming, 503
//! while starting or stopping: take it out of rotation), `GET /metrics` (this node's task
//! counters in Prometheus text); and `hlbot health`, the client a container `HEALTHCHECK` runs.

use std::time::{Duration, Instant};

use hlbot_engine::monitor::Monitor;
use hlbot_engine::worker::vitals::{Stage, Vitals};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Whether the worker is healthy, and a one-line reason.
fn verdict(v: Vitals, since_beat: Duration, heartbeat: Duration) -> (bool, String) {
    let age = since_beat.as_secs_f64();
    match v.stage {
        Stage::Ready if since_beat < heartbeat * 3 => (
            true,
            format!("ok: consuming, heartbeat {age:.1}s ago ({} beats)", v.beats),
        ),
        Stage::Ready => (false, format!("unhealthy: no heartbeat for {age:.1}s")),
        Stage::Starting => (false, "starting: not consuming yet".into()),
        Stage::Stopping => (false, "stopping: warm shutdown under way".into()),
    }
}

/// Serve `/healthz`, `/readyz` (and `/metrics` from `monitor`) on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    mut vitals: watch::Receiver<Vitals>,
    heartbeat: Duration,
    monitor: Option<Monitor>,
    stop: CancellationToken,
) {
    let last = std::sync::Arc::new(std::sync::Mutex::new((Vitals::default(), Instant::now())));
    let follower = last.clone();
    tokio::spawn(async move {
        while vitals.changed().await.is_ok() {
            let v = *vitals.borrow_and_update();
            let mut g = follower.lock().unwrap_or_else(|e| e.into_inner());
            if v.beats != g.0.beats {
                g.1 = Instant::now();
            }
            g.0 = v;
        }
    });
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.cancelled() => return,
        };
        let Ok((mut stream, _)) = conn else { continue };
        let (v, at) = *last.lock().unwrap_or_else(|e| e.into_inner());
        let monitor = monitor.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let mut ctype = "text/plain";
            let (status, body) = match (path, &monitor) {
                ("/healthz" | "/health" | "/", _) => match verdict(v, at.elapsed(), heartbeat) {
                    (true, why) => ("200 OK", why),
                    (false, why) => ("503 Service Unavailable", why),
                },
                ("/readyz", _) if v.stage == Stage::Ready => ("200 OK", "ready".to_string()),
                ("/readyz", _) => ("503 Service Unavailable", format!("{:?}", v.stage)),
                ("/metrics", Some(m)) => {
                    ctype = hlbot_web::metrics::CONTENT_TYPE;
                    let now = hlbot_proto::time::unix(chrono::Utc::now());
                    let mut text = hlbot_web::metrics::render_monitor(m, now);
                    text.pop();
                    ("200 OK", text)
                }
                _ => ("404 Not Found", "try /healthz".to_string()),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}\n",
                body.len() + 1
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        });
    }
}

/// `hlbot health`: ask a worker's endpoint; `Ok(true)` on 200.
pub async fn probe(address: &str) -> anyhow::Result<(bool, String)> {
    let go = async {
        let mut s = TcpStream::connect(address).await?;
        s.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {address}\r\n\r\n").as_bytes())
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        anyhow::Ok(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(5), go)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {address} within 5 s"))?
        .map_err(|e| anyhow::anyhow!("cannot reach the worker's health endpoint {address}: {e}"))?;
    let ok = out.starts_with("HTTP/1.1 200");
    let body = out
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    Ok((ok, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let hb = Duration::from_secs(2);
        let ready = Vitals {
            stage: Stage::Ready,
            beats: 3,
        };
        assert!(verdict(ready, Duration::from_secs(1), hb).0);
        assert!(!verdict(ready, Duration::from_secs(7), hb).0);
        assert!(!verdict(Vitals::default(), Duration::ZERO, hb).0);
        let stopping = Vitals {
            stage: Stage::Stopping,
            beats: 3,
        };
        assert!(!verdict(stopping, Duration::ZERO, hb).0);
    }

    #[tokio::test]
    async fn endpoint_follows_the_stage() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = watch::channel(Vitals::default());
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            rx,
            Duration::from_secs(2),
            None,
            stop.clone(),
        ));
        let (ok, body) = probe(&addr).await.unwrap();
        assert!(!ok && body.starts_with("starting"), "{body}");
        tx.send_modify(|v| {
            v.stage = Stage::Ready;
            v.beats = 1;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (ok, body) = probe(&addr).await.unwrap();
        assert!(ok, "{body}");
        tx.send_modify(|v| v.stage = Stage::Stopping);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!probe(&addr).await.unwrap().0);
        stop.cancel();
    }
}
