//! Redis connection settings from a `redis://` / `rediss://` URL (user, password, DB), with the
//! password kept out of every log line and error message.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

use crate::error::{Error, Result};
use crate::redis::{Conn, Keys};

/// Where Redis is and how keys are named there.
#[derive(Clone)]
pub struct RedisSettings {
    url: String,
    /// kombu's `global_keyprefix` for broker keys and channels.
    pub key_prefix: String,
    /// The result backend's own key prefix.
    pub result_prefix: String,
    /// Celery's `result_chord_ordered` (result backend transport option, default on): chord
    /// parts are kept in a zset by `group_index`; off, in a list in completion order. Every
    /// worker and client of one chord must agree.
    pub chord_ordered: bool,
    /// Celery's `result_serializer`: the format results and chord entries are stored in.
    pub result_serializer: hlbot_proto::Serializer,
    /// Celery's `task_serializer`: the body format of messages a client publishes.
    pub task_serializer: hlbot_proto::Serializer,
    /// kombu's `sep` and `priority_steps` transport options (the list names).
    pub layout: super::keys::Layout,
    /// Celery's `ssl_*` options of a `rediss://` URL (taken off the URL).
    tls: Option<std::sync::Arc<super::tls::TlsOptions>>,
    /// Set for a `sentinel://` URL once the master's name is known
    /// ([`RedisSettings::with_sentinel_master`]).
    sentinel: Option<std::sync::Arc<super::sentinel::Sentinel>>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// `redis+socket:///path?virtual_host=N` (kombu's broker form) or `socket:///path?…` (Celery's
/// result-backend form) as the `unix:///path?db=N` redis-rs opens; `None` for other URLs.
/// kombu passes the query's `password`/`username` to redis-py: they are kept.
fn unix_socket_url(url: &str) -> Result<Option<String>> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Ok(None);
    };
    if !matches!(scheme, "redis+socket" | "socket") {
        return Ok(None);
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::Config(format!("invalid Redis URL {}: {e}", redact_url(url))))?;
    if parsed.path().len() < 2 {
        return Err(Error::Config(format!(
            "{scheme}:// needs the socket's path: {scheme}:///var/run/redis/redis.sock"
        )));
    }
    let mut out = url::Url::parse("unix:///").expect("static URL");
    out.set_path(parsed.path());
    {
        let mut q = out.query_pairs_mut();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "virtual_host" | "db" => q.append_pair("db", v.trim_start_matches('/')),
                "password" => q.append_pair("pass", &v),
                "username" => q.append_pair("user", &v),
                _ => q.append_pair(&k, &v),
            };
        }
    }
    Ok(Some(out.to_string().trim_end_matches('?').to_string()))
}

impl RedisSettings {
    /// Validate a `redis://[user:pass@]host[:port][/db]` or `rediss://` URL, or kombu's
    /// `sentinel://h1:26379;sentinel://h2:26379/0` (then see [`RedisSettings::with_sentinel_master`]).
    /// kombu's and Celery's Unix-socket forms (`redis+socket:///path?virtual_host=1`,
    /// `socket:///path`) are taken too.
    pub fn new(url: &str) -> Result<Self> {
        let kombu_socket = unix_socket_url(url)?;
        let url = kombu_socket.as_deref().unwrap_or(url);
        let (url, tls) = if url.starts_with("rediss://") {
            let (u, o) = super::tls::split(url)?;
            (u, Some(std::sync::Arc::new(o)))
        } else {
            (url.to_string(), None)
        };
        let url = url.as_str();
        let first = url.split(';').next().unwrap_or(url);
        let parsed = url::Url::parse(first)
            .map_err(|e| Error::Config(format!("invalid Redis URL {}: {e}", redact_url(url))))?;
        match parsed.scheme() {
            "redis" | "rediss" | "unix" | "redis+unix" | "sentinel" => {}
            s => {
                return Err(Error::Config(format!(
                    "unsupported Redis URL scheme {s:?} (use redis://, rediss://, sentinel://, or \
                     unix:///path or redis+socket:///path for a Unix socket)"
                )));
            }
        }
        Ok(Self {
            url: url.into(),
            key_prefix: String::new(),
            result_prefix: String::new(),
            chord_ordered: true,
            result_serializer: hlbot_proto::Serializer::Json,
            task_serializer: hlbot_proto::Serializer::Json,
            layout: Default::default(),
            tls,
            sentinel: None,
        })
    }

    /// For a `sentinel://` URL: the master's name (kombu's `master_name` transport option).
    /// Without one a sentinel URL is refused; for other URLs this does nothing.
    pub fn with_sentinel_master(mut self, master: Option<&str>) -> Result<Self> {
        if super::sentinel::is_sentinel(&self.url) {
            let s = super::sentinel::Sentinel::parse(&self.url, master.unwrap_or(""))?;
            self.sentinel = Some(std::sync::Arc::new(s));
        }
        Ok(self)
    }

    /// The sentinels behind this URL, if it is a `sentinel://` one.
    pub fn sentinel(&self) -> Option<&super::sentinel::Sentinel> {
        self.sentinel.as_deref()
    }

    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Celery's result backend appends `_` to a `global_keyprefix` that does not end in one of
    /// `:_-.` (`BaseKeyValueStoreBackend._add_global_keyprefix`); do the same so both find the
    /// same `celery-task-meta-*` keys and channels.
    pub fn with_result_prefix(mut self, prefix: &str) -> Self {
        self.result_prefix = if prefix.is_empty() || prefix.ends_with([':', '_', '-', '.']) {
            prefix.into()
        } else {
            format!("{prefix}_")
        };
        self
    }

    /// The URL with its password masked, Celery style (`redis://:********@host:6379/0`).
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The DB number (0 unless the URL names one).
    pub fn db(&self) -> i64 {
        if let Some(s) = &self.sentinel {
            return s.db;
        }
        let Ok(u) = url::Url::parse(self.url.rsplit(';').next().unwrap_or(&self.url)) else {
            return 0;
        };
        if matches!(u.scheme(), "unix" | "redis+unix") {
            // The path is the socket's; the DB is in the query (`?db=N`).
            let db = u.query_pairs().find(|(k, _)| k == "db");
            return db.and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        }
        u.path().trim_start_matches('/').parse().unwrap_or(0)
    }

    pub fn host_port(&self) -> (String, u16) {
        if let Some((h, p)) = self.sentinel.as_ref().and_then(|s| s.sentinels.first()) {
            return (h.clone(), *p);
        }
        let u = url::Url::parse(&self.url).ok();
        let host = u
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "127.0.0.1".into());
        (host, u.and_then(|u| u.port()).unwrap_or(6379))
    }

    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    pub fn keys(&self) -> Keys {
        Keys::new(&self.key_prefix, &self.result_prefix, self.db()).with_layout(&self.layout)
    }

    pub(crate) fn client(&self) -> Result<Client> {
        if super::sentinel::is_sentinel(&self.url) {
            let Some(s) = &self.sentinel else {
                return Err(Error::Config(
                    "a sentinel:// URL needs the master's name (--sentinel-master)".into(),
                ));
            };
            return Client::open(s.local_url()?.as_str()).map_err(|e| self.err(e));
        }
        if let Some(o) = &self.tls {
            return super::tls::client(&self.url, o);
        }
        Client::open(self.url.as_str()).map_err(|e| self.err(e))
    }

    /// A self-healing connection for ordinary commands (reconnects with backoff, and when Redis
    /// stops answering: [`Conn`]).
    pub async fn manager(&self) -> Result<Conn> {
        Conn::connect(self.client()?).await.map_err(|e| self.err(e))
    }

    /// A dedicated connection for blocking commands (`BRPOP`): no response timeout.
    pub async fn blocking(&self) -> Result<MultiplexedConnection> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(None);
        self.client()?
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| self.err(e))
    }

    /// A pub/sub connection.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        self.client()?
            .get_async_pubsub()
            .await
            .map_err(|e| self.err(e))
    }

    /// Wrap a Redis error with the (redacted) URL.
    pub fn err(&self, e: redis::RedisError) -> Error {
        Error::Redis {
            url: self.display_url(),
            message: one_line(&e),
        }
    }
}

fn one_line(e: &redis::RedisError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Mask the password in a URL: `redis://user:secret@h/0` → `redis://user:********@h/0`
/// (each part of a `;`-separated sentinel URL).
pub fn redact_url(url: &str) -> String {
    if url.contains(';') {
        return url.split(';').map(redact_url).collect::<Vec<_>>().join(";");
    }
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("********"));
            }
            // redis-rs's unix:///path?pass=… and kombu's ?password=… carry it in the query.
            if u.query_pairs().any(|(k, _)| is_secret_param(&k)) {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| match is_secret_param(&k) {
                        true => (k.into_owned(), "********".into()),
                        false => (k.into_owned(), v.into_owned()),
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => match url.rfind('@') {
            Some(at) => format!("<redacted>{}", &url[at..]),
            None => url.to_string(),
        },
    }
}

fn is_secret_param(k: &str) -> bool {
    matches!(k, "pass" | "password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_and_parses() {
        assert_eq!(
            redact_url("redis://:hunter2@10.0.0.1:6380/4"),
            "redis://:********@10.0.0.1:6380/4"
        );
        assert_eq!(
            redact_url("rediss://bob:pw@h/1"),
            "rediss://bob:********@h/1"
        );
        let s =
            RedisSettings::new("redis://:pw@127.0.0.1:6390/7").unwrap_or_else(|_| unreachable!());
        assert_eq!(s.db(), 7);
        assert_eq!(s.host_port(), ("127.0.0.1".to_string(), 6390));
        assert!(!format!("{s:?}").contains("pw@"));
        assert!(RedisSettings::new("http://x").is_err());
        // kombu's and Celery's Unix-socket forms; the DB and a password in the query.
        for (kombu, opened, db) in [
            ("redis+socket:///run/r.sock", "unix:///run/r.sock", 0),
            (
                "redis+socket:///run/r.sock?virtual_host=3",
                "unix:///run/r.sock?db=3",
                3,
            ),
            ("socket:///run/r.sock?db=/2", "unix:///run/r.sock?db=2", 2),
            ("unix:///run/r.sock?db=5", "unix:///run/r.sock?db=5", 5),
        ] {
            let s = RedisSettings::new(kombu).unwrap_or_else(|e| panic!("{kombu}: {e}"));
            assert_eq!((s.url.as_str(), s.db()), (opened, db), "{kombu}");
        }
        let s = RedisSettings::new("redis+socket:///r.sock?password=hunter2")
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(s.url, "unix:///r.sock?pass=hunter2");
        assert_eq!(s.display_url(), "unix:///r.sock?pass=********");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(RedisSettings::new("redis+socket://").is_err());
        assert_eq!(
            redact_url("sentinel://:pw@a:1;sentinel://:pw@b:2/0"),
            "sentinel://:********@a:1;sentinel://:********@b:2/0"
        );
    }
}
