//! AMQP broker URLs (`amqp://user:pass@host:5672/vhost`, `amqps://…`, and kombu's failover list
//! `amqp://node1;amqp://node2`) parsed the way kombu reads them, shown with the password
//! redacted, and connections opened with capped backoff — to the next node of the list when one
//! is unreachable (kombu's round-robin failover). Owns no channel or queue: `consume.rs` and
//! `publish.rs` open their own channels on a connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Whether `url` names an AMQP broker rather than Redis.
pub fn is_amqp(url: &str) -> bool {
    let l = url.trim().to_ascii_lowercase();
    l.starts_with("amqp://") || l.starts_with("amqps://") || l.starts_with("pyamqp://")
}

/// A parsed broker URL: one node, or several separated by `;` (a cluster's nodes, tried in turn
/// as kombu's failover does). `Display`/`Debug` never show the password.
#[derive(Clone)]
pub struct AmqpUrl {
    /// The node in use (connections go here first).
    uri: AMQPUri,
    /// Every node of the list, in the order given; `uri` is one of them.
    nodes: Arc<Vec<AMQPUri>>,
    /// Index into `nodes` of the node the next connection tries first, shared by every clone.
    current: Arc<AtomicUsize>,
}

impl PartialEq for AmqpUrl {
    fn eq(&self, other: &Self) -> bool {
        self.nodes == other.nodes
    }
}

impl AmqpUrl {
    /// kombu's reading: user/password default to `guest`, port to 5672 (5671 for `amqps`), an
    /// empty path or `/` to the vhost `/`; `%2f` and other escapes are decoded. `a;b;c` is a
    /// failover list (kombu's `broker_url = "amqp://h1;amqp://h2"`), every node an AMQP URL.
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() {
            return Err(Error::Config("broker URL is empty".into()));
        }
        let nodes = parts
            .iter()
            .map(|p| Self::parse_one(p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            uri: nodes[0].clone(),
            nodes: Arc::new(nodes),
            current: Arc::default(),
        })
    }

    fn parse_one(s: &str) -> Result<AMQPUri> {
        let bad = |why: &str| Error::Config(format!("broker URL {}: {why}", redact(s)));
        let u = url::Url::parse(s.trim()).map_err(|e| bad(&e.to_string()))?;
        let tls = match u.scheme() {
            "amqp" | "pyamqp" => false,
            "amqps" => true,
            other => return Err(bad(&format!("scheme {other:?} is not amqp:// or amqps://"))),
        };
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost")
            .to_string();
        let decode = |x: &str| {
            percent_encoding_decode(x).ok_or_else(|| bad("bad percent-escape in the URL"))
        };
        let username = if u.username().is_empty() {
            "guest".to_string()
        } else {
            decode(u.username())?
        };
        let password = match u.password() {
            Some(p) => decode(p)?,
            None => "guest".to_string(),
        };
        let path = u.path().strip_prefix('/').unwrap_or(u.path());
        let vhost = if path.is_empty() {
            "/".to_string()
        } else {
            decode(path)?
        };
        let mut query = AMQPQueryString {
            heartbeat: Some(60),
            ..Default::default()
        };
        for (k, v) in u.query_pairs() {
            if k == "heartbeat" {
                query.heartbeat = v.parse().ok();
            }
        }
        Ok(AMQPUri {
            scheme: if tls {
                AMQPScheme::AMQPS
            } else {
                AMQPScheme::AMQP
            },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo { username, password },
                host,
                port: u.port().unwrap_or(if tls { 5671 } else { 5672 }),
            },
            vhost,
            query,
        })
    }

    /// How many nodes the URL lists (more than one: failover).
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn vhost(&self) -> &str {
        &self.uri.vhost
    }

    pub fn host(&self) -> &str {
        &self.uri.authority.host
    }

    pub fn port(&self) -> u16 {
        self.uri.authority.port
    }

    /// `amqps://`.
    pub fn is_tls(&self) -> bool {
        self.uri.scheme == AMQPScheme::AMQPS
    }

    /// The URL with the password shown as `***` (logs, banners, errors); every node of a
    /// failover list, `;`-separated.
    pub fn redacted(&self) -> String {
        self.nodes
            .iter()
            .map(redacted_node)
            .collect::<Vec<_>>()
            .join(";")
    }

    /// An error about this broker, the password left out.
    pub fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Amqp {
            url: self.redacted(),
            message: e.to_string(),
        }
    }

    /// Open one connection (named `name` in `rabbitmqctl list_connections client_properties`):
    /// to the node that answered last, else to each further node of a failover list in turn
    /// (round-robin, as kombu); the first that answers becomes the node every clone tries first.
    pub async fn connect(&self, name: &str) -> Result<Connection> {
        let n = self.nodes.len();
        let start = self.current.load(Ordering::SeqCst) % n;
        let mut last = None;
        for k in 0..n {
            let i = (start + k) % n;
            let uri = self.nodes[i].clone();
            let props = ConnectionProperties::default().with_connection_name(name.into());
            let fut = Connection::connect_uri(uri, props);
            let r = match tokio::time::timeout(Duration::from_secs(10), fut).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("connection timed out after 10s".to_string()),
            };
            match r {
                Ok(c) => {
                    if i != start {
                        tracing::warn!(
                            "AMQP broker: failed over to {}",
                            redacted_node(&self.nodes[i])
                        );
                    }
                    self.current.store(i, Ordering::SeqCst);
                    return Ok(c);
                }
                Err(e) => last = Some(format!("{}: {e}", redacted_node(&self.nodes[i]))),
            }
        }
        Err(self.err(last.unwrap_or_default()))
    }

    /// [`AmqpUrl::connect`] until it succeeds (backoff 100 ms doubling to 5 s) or `stop`.
    pub async fn connect_with_backoff(
        &self,
        name: &str,
        stop: &CancellationToken,
    ) -> Option<Connection> {
        let mut backoff = Duration::from_millis(100);
        let mut logged = false;
        loop {
            match self.connect(name).await {
                Ok(c) => {
                    if logged {
                        tracing::warn!("AMQP broker {} reachable again", self.redacted());
                    }
                    return Some(c);
                }
                Err(e) => {
                    if !logged {
                        tracing::error!("{e}; retrying with backoff");
                        logged = true;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return None,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

impl std::fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AmqpUrl({})", self.redacted())
    }
}

/// One node's URL with the password shown as `***`.
fn redacted_node(u: &AMQPUri) -> String {
    let a = &u.authority;
    format!(
        "{}://{}:***@{}:{}/{}",
        match u.scheme {
            AMQPScheme::AMQP => "amqp",
            AMQPScheme::AMQPS => "amqps",
        },
        a.userinfo.username,
        a.host,
        a.port,
        vhost_path(&u.vhost)
    )
}

/// The vhost as a URL path segment (`/` → `%2F`).
fn vhost_path(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn percent_encoding_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A URL string with any password replaced by `***` (for URLs that did not parse).
pub fn redact(s: &str) -> String {
    match url::Url::parse(s.trim()) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kombu_defaults() {
        let u = AmqpUrl::parse("amqp://localhost").unwrap();
        assert_eq!(u.vhost(), "/");
        assert_eq!(u.port(), 5672);
        let u = AmqpUrl::parse("amqps://h").unwrap();
        assert_eq!(u.port(), 5671);
        assert!(u.is_tls() && !AmqpUrl::parse("amqp://h").unwrap().is_tls());
        let u = AmqpUrl::parse("amqp://u:p@h:5673//").unwrap();
        assert_eq!(u.vhost(), "/");
        let u = AmqpUrl::parse("amqp://u:p@h/%2Fx").unwrap();
        assert_eq!(u.vhost(), "/x");
        let u = AmqpUrl::parse("amqp://u:p@h/celery").unwrap();
        assert_eq!(u.vhost(), "celery");
        assert_eq!(u.uri.authority.userinfo.username, "u");
        assert!(AmqpUrl::parse("redis://h").is_err());
        assert!(is_amqp("AMQP://x") && is_amqp("amqps://x") && !is_amqp("redis://x"));
    }

    #[test]
    fn failover_list_like_kombu() {
        let u = AmqpUrl::parse("amqp://u:pw1@h1:5672/v; amqp://u:pw2@h2:5673/v").unwrap();
        assert_eq!(u.nodes(), 2);
        assert_eq!((u.host(), u.port(), u.vhost()), ("h1", 5672, "v"));
        let shown = u.redacted();
        assert_eq!(shown, "amqp://u:***@h1:5672/v;amqp://u:***@h2:5673/v");
        assert!(!format!("{u:?}{u}").contains("pw"));
        assert!(AmqpUrl::parse("amqp://h1;redis://h2").is_err());
        assert!(AmqpUrl::parse(";").is_err());
        assert_eq!(AmqpUrl::parse("amqp://h1;").unwrap().nodes(), 1);
    }

    #[test]
    fn password_never_shown() {
        let u = AmqpUrl::parse("amqp://bob:s3cr%40t@rabbit:5672/prod").unwrap();
        assert_eq!(u.uri.authority.userinfo.password, "s3cr@t");
        for shown in [
            u.redacted(),
            u.to_string(),
            format!("{u:?}"),
            u.err("boom").to_string(),
        ] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains("bob:***@rabbit:5672/prod"), "{shown}");
        }
        assert_eq!(
            AmqpUrl::parse("amqp://g:x@h//").unwrap().redacted(),
            "amqp://g:***@h:5672/%2F"
        );
        let e = AmqpUrl::parse("ftp://u:hunter2@h/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
