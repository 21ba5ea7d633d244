//! AMQP broker URLs (`amqp://user:pass@host:5672/vhost`, `amqps://…`) parsed the way kombu reads
//! them, shown with the password redacted, and connections opened with capped backoff. Owns no
//! channel or queue: `consume.rs` and `publish.rs` open their own channels on a connection.

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

/// A parsed broker URL. `Display`/`Debug` never show the password.
#[derive(Clone, PartialEq)]
pub struct AmqpUrl {
    uri: AMQPUri,
}

impl AmqpUrl {
    /// kombu's reading: user/password default to `guest`, port to 5672 (5671 for `amqps`), an
    /// empty path or `/` to the vhost `/`; `%2f` and other escapes are decoded.
    pub fn parse(s: &str) -> Result<Self> {
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
        Ok(Self {
            uri: AMQPUri {
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
            },
        })
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

    /// The URL with the password shown as `***` (logs, banners, errors).
    pub fn redacted(&self) -> String {
        let a = &self.uri.authority;
        format!(
            "{}://{}:***@{}:{}/{}",
            match self.uri.scheme {
                AMQPScheme::AMQP => "amqp",
                AMQPScheme::AMQPS => "amqps",
            },
            a.userinfo.username,
            a.host,
            a.port,
            vhost_path(&self.uri.vhost)
        )
    }

    /// An error about this broker, the password left out.
    pub fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Amqp {
            url: self.redacted(),
            message: e.to_string(),
        }
    }

    /// Open one connection (named `name` in `rabbitmqctl list_connections client_properties`).
    pub async fn connect(&self, name: &str) -> Result<Connection> {
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let fut = Connection::connect_uri(self.uri.clone(), props);
        match tokio::time::timeout(Duration::from_secs(10), fut).await {
            Ok(r) => r.map_err(|e| self.err(e)),
            Err(_) => Err(self.err("connection timed out after 10s")),
        }
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
