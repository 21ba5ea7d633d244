//! Redis Sentinel, kombu style: `sentinel://[:password@]h1:26379;sentinel://h2:26379/0` plus a
//! master name. The sentinels are asked for the master (`SENTINEL get-master-addr-by-name`);
//! hlbot's connections go to a loopback forwarder that connects each new connection to the
//! current master and cuts every open one when the sentinels name another (failover), so every
//! part of hlbot — consumer, writer, pidbox, events, beat — reconnects to the new master with
//! its usual reconnect logic and nothing else knows Sentinel exists. Owns no Redis key. The
//! password is the master's (sent by hlbot's own AUTH through the forwarder); sentinels are
//! asked without one. TLS (`rediss`) behind Sentinel is not supported.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// How often the sentinels are asked who the master is.
const POLL: Duration = Duration::from_millis(500);

/// A parsed `sentinel://` URL and its forwarder (started on first use).
#[derive(Debug)]
pub struct Sentinel {
    pub sentinels: Vec<(String, u16)>,
    pub password: Option<String>,
    pub username: Option<String>,
    pub db: i64,
    pub master: String,
    forwarder: OnceLock<SocketAddr>,
    current: watch::Sender<Option<SocketAddr>>,
}

/// Is `url` a kombu sentinel URL?
pub fn is_sentinel(url: &str) -> bool {
    url.starts_with("sentinel://")
}

impl Sentinel {
    /// Parse `sentinel://[:pw@]h:p;sentinel://h2:p2/db` (`;`-separated, each `sentinel://`; the
    /// first password and the last DB number count).
    pub fn parse(url: &str, master: &str) -> Result<Self> {
        let mut sentinels = Vec::new();
        let (mut password, mut username, mut db) = (None, None, 0);
        for part in url.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let u = url::Url::parse(part).map_err(|e| {
                Error::Config(format!(
                    "invalid sentinel URL {}: {e}",
                    super::redact_url(part)
                ))
            })?;
            if u.scheme() != "sentinel" {
                return Err(Error::Config(format!(
                    "mixed sentinel URL: {} is not sentinel://",
                    super::redact_url(part)
                )));
            }
            let host = u
                .host_str()
                .ok_or_else(|| Error::Config("sentinel URL without a host".into()))?;
            sentinels.push((host.to_string(), u.port().unwrap_or(26379)));
            if password.is_none() {
                password = u.password().map(str::to_string);
                username = Some(u.username().to_string()).filter(|s| !s.is_empty());
            }
            if let Ok(n) = u.path().trim_start_matches('/').parse() {
                db = n;
            }
        }
        if sentinels.is_empty() {
            return Err(Error::Config("sentinel URL names no sentinel".into()));
        }
        if master.is_empty() {
            return Err(Error::Config(
                "a sentinel:// URL needs the master's name: --sentinel-master NAME, \
                 HLBOT_SENTINEL_MASTER or sentinel_master in the config"
                    .into(),
            ));
        }
        Ok(Self {
            sentinels,
            password,
            username,
            db,
            master: master.to_string(),
            forwarder: OnceLock::new(),
            current: watch::channel(None).0,
        })
    }

    /// The `redis://` URL hlbot connects to: the forwarder on loopback (started now if needed).
    pub fn local_url(self: &Arc<Self>) -> Result<String> {
        let addr = match self.forwarder.get() {
            Some(a) => *a,
            None => {
                let std = std::net::TcpListener::bind("127.0.0.1:0")
                    .map_err(|e| Error::Other(format!("sentinel forwarder: {e}")))?;
                let addr = std
                    .local_addr()
                    .map_err(|e| Error::Other(format!("sentinel forwarder: {e}")))?;
                if self.forwarder.set(addr).is_ok() {
                    std.set_nonblocking(true)
                        .map_err(|e| Error::Other(format!("sentinel forwarder: {e}")))?;
                    let l = TcpListener::from_std(std)
                        .map_err(|e| Error::Other(format!("sentinel forwarder: {e}")))?;
                    tokio::spawn(accept(l, self.clone()));
                    tokio::spawn(watch_master(self.clone()));
                }
                *self.forwarder.get().unwrap_or(&addr)
            }
        };
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(p)) => format!("{u}:{p}@"),
            (None, Some(p)) => format!(":{p}@"),
            _ => String::new(),
        };
        Ok(format!("redis://{auth}{addr}/{}", self.db))
    }

    /// The master the sentinels name now (first sentinel that answers).
    pub async fn master_addr(&self) -> Option<SocketAddr> {
        for (h, p) in &self.sentinels {
            let Ok(c) = redis::Client::open(format!("redis://{h}:{p}/")) else {
                continue;
            };
            let cfg = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(Duration::from_secs(1)));
            let Ok(mut conn) = c.get_multiplexed_async_connection_with_config(&cfg).await else {
                continue;
            };
            let r: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.master)
                .query_async(&mut conn)
                .await;
            if let Ok(Some((host, port))) = r
                && let Ok(mut addrs) = tokio::net::lookup_host((host.as_str(), port)).await
                && let Some(a) = addrs.next()
            {
                return Some(a);
            }
        }
        None
    }
}

/// Keep `current` on the master the sentinels name.
async fn watch_master(s: Arc<Sentinel>) {
    loop {
        if let Some(a) = s.master_addr().await {
            let changed = *s.current.borrow() != Some(a);
            if changed {
                if s.current.borrow().is_some() {
                    tracing::warn!(master = %s.master, "sentinel: master moved to {a}; reconnecting");
                } else {
                    tracing::info!(master = %s.master, "sentinel: master is {a}");
                }
                s.current.send_replace(Some(a));
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn accept(l: TcpListener, s: Arc<Sentinel>) {
    loop {
        let Ok((inbound, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(pipe(inbound, s.clone()));
    }
}

/// Connect one inbound connection to the current master; cut it when the master changes.
async fn pipe(mut inbound: TcpStream, s: Arc<Sentinel>) {
    let mut rx = s.current.subscribe();
    let master =
        match tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_some)).await {
            Ok(Ok(a)) => a.unwrap_or_else(|| unreachable!()),
            _ => return,
        };
    let Ok(Ok(mut out)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(master)).await
    else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = out.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
        _ = rx.wait_for(|a| *a != Some(master)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kombu_urls() {
        let s = Sentinel::parse(
            "sentinel://:pw@10.0.0.1:26379;sentinel://10.0.0.2:26380/3",
            "mymaster",
        )
        .unwrap();
        assert_eq!(
            s.sentinels,
            [
                ("10.0.0.1".to_string(), 26379),
                ("10.0.0.2".to_string(), 26380)
            ]
        );
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.db, 3);
        assert!(Sentinel::parse("sentinel://h:1", "").is_err());
        assert!(Sentinel::parse("sentinel://h:1;redis://x", "m").is_err());
    }
}
