//! The egress guard: a small HTTP proxy on 127.0.0.1 that yt-dlp is pointed at (through its
//! environment) for pages outside YouTube's own hosts, where the generic extractor follows
//! whatever the page, a redirect or an HLS playlist names. Every request's host is resolved
//! here and the connection is made to the address that was checked — so no re-resolution
//! (DNS rebinding) — and only if that address is public, or the host was named in
//! `extra_allowed_hosts` (the operator's explicit trust). Private, loopback, link-local
//! (cloud metadata), CGNAT, multicast and reserved addresses are refused with a 403.
//! Does not look inside TLS: a CONNECT is checked by its host and port only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{Error, Result};

/// A running guard; stops when dropped.
pub(crate) struct Guard {
    pub url: String,
    refused: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Guard {
    /// Starts a guard that also lets through `explicit` (`host` or `host:port`, lower case).
    pub(crate) async fn start(explicit: Vec<String>) -> Result<Guard> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("starting the egress guard", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("starting the egress guard", e))?;
        let refused = Arc::new(Mutex::new(Vec::new()));
        let explicit = Arc::new(explicit);
        let r = refused.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (explicit, r) = (explicit.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &explicit, &r).await;
                });
            }
        });
        Ok(Guard {
            url: format!("http://{addr}"),
            refused,
            task,
        })
    }

    /// The first fetch refused so far, if any (`host:port` and why).
    pub(crate) fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .cloned()
    }
}

/// Options for one run: unchanged for YouTube's own hosts (the generic extractor is off there)
/// or when an upstream proxy is configured (its egress policy applies — see SECURITY.md);
/// otherwise pointed at a fresh guard, which the caller keeps alive for the run.
pub(crate) async fn guarded(
    opts: &crate::options::YoutubeOptions,
    url: &url::Url,
) -> Result<(crate::options::YoutubeOptions, Option<Guard>)> {
    if !opts.egress_guard || opts.proxy.is_some() || crate::link::is_youtube_host(url) {
        return Ok((opts.clone(), None));
    }
    let explicit = opts
        .extra_allowed_hosts
        .iter()
        .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let guard = Guard::start(explicit).await?;
    let mut o = opts.clone();
    o.proxy = Some(crate::options::ApiKey::new(guard.url.clone()));
    Ok((o, Some(guard)))
}

/// A failed run whose fetch the guard refused reports that, not yt-dlp's view of the 403.
pub(crate) fn explain<T>(r: Result<T>, guard: Option<&Guard>) -> Result<T> {
    match (r, guard.and_then(Guard::refused)) {
        (Err(_), Some(what)) => Err(Error::EgressRefused(format!(
            "{what}: only public addresses (or hosts named in allowed_hosts) may be fetched"
        ))),
        (r, _) => r,
    }
}

/// Whether an address may be fetched from: globally routable unicast only.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return public_v4(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 metadata)
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::from([0u8; 16]))
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local() // 169.254.0.0/16: cloud metadata lives at 169.254.169.254
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 CGNAT (100.100.100.200 metadata)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240) // reserved
}

const HEAD_MAX: usize = 32 * 1024;

async fn serve(
    mut conn: TcpStream,
    explicit: &[String],
    refused: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > HEAD_MAX {
            return Ok(());
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut chunk))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("HTTP/1.1"),
    );
    let connect = method.eq_ignore_ascii_case("CONNECT");
    let (host, port, path) = if connect {
        match split_host_port(target, 443) {
            Some((h, p)) => (h, p, String::new()),
            None => return deny(&mut conn, "bad CONNECT target").await,
        }
    } else {
        match url::Url::parse(target) {
            Ok(u) if u.scheme() == "http" && u.host_str().is_some() => {
                let mut path = u.path().to_string();
                if let Some(q) = u.query() {
                    path.push('?');
                    path.push_str(q);
                }
                (
                    u.host_str()
                        .unwrap_or_default()
                        .trim_matches(['[', ']'])
                        .to_string(),
                    u.port_or_known_default().unwrap_or(80),
                    path,
                )
            }
            _ => return deny(&mut conn, "only http:// URLs and CONNECT are proxied").await,
        }
    };
    let upstream = match check(&host, port, explicit).await {
        Ok(addr) => addr,
        Err(why) => {
            let msg = format!("{host}:{port} ({why})");
            tracing::warn!(target = %msg, "egress guard refused a fetch");
            refused.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
            return deny(&mut conn, &why).await;
        }
    };
    let mut up = TcpStream::connect(upstream).await?;
    if connect {
        conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        if buf.len() > head_end {
            up.write_all(&buf[head_end..]).await?;
        }
    } else {
        // Origin-form request line, proxy headers dropped, one request per connection (the
        // next one may name another host and must be checked again).
        let mut out = format!("{method} {path} {version}\r\n");
        for l in lines.filter(|l| !l.is_empty()) {
            let name = l
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if !matches!(
                name.as_str(),
                "proxy-connection" | "proxy-authorization" | "connection" | "keep-alive"
            ) {
                out.push_str(l);
                out.push_str("\r\n");
            }
        }
        out.push_str("Connection: close\r\n\r\n");
        up.write_all(out.as_bytes()).await?;
        up.write_all(&buf[head_end..]).await?;
    }
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
    Ok(())
}

/// The address to connect to for `host:port`, or why not.
async fn check(
    host: &str,
    port: u16,
    explicit: &[String],
) -> std::result::Result<SocketAddr, String> {
    let h = host.to_ascii_lowercase();
    let trusted = explicit
        .iter()
        .any(|a| *a == h || *a == format!("{h}:{port}"));
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((h.as_str(), port))
        .await
        .map_err(|_| "does not resolve".to_string())?
        .collect();
    let first = *addrs.first().ok_or("does not resolve")?;
    if trusted {
        return Ok(first);
    }
    // Every address must be public: a name that resolves to one public and one private
    // address could be steered to the private one.
    if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(format!("resolves to non-public address {}", bad.ip()));
    }
    Ok(first)
}

fn split_host_port(target: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = target.strip_prefix('[') {
        let (h, p) = rest.split_once(']')?;
        let port = p
            .strip_prefix(':')
            .map_or(Some(default), |p| p.parse().ok())?;
        return Some((h.to_string(), port));
    }
    match target.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((target.to_string(), default)),
    }
}

async fn deny(conn: &mut TcpStream, why: &str) -> std::io::Result<()> {
    let body = format!("hlbot egress guard: refused: {why}\n");
    let resp = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_metadata_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.100.100.200",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "240.0.0.1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "142.250.74.46", "2a00:1450:4001:80b::200e"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn connect_targets_parse() {
        assert_eq!(
            split_host_port("example.org:443", 443),
            Some(("example.org".into(), 443))
        );
        assert_eq!(
            split_host_port("[::1]:8080", 443),
            Some(("::1".into(), 8080))
        );
        assert_eq!(
            split_host_port("example.org", 443),
            Some(("example.org".into(), 443))
        );
    }
}
