//! Sends one JSON request with the retry policy: 429 waits for `retry-after` / the rate-limit
//! reset headers, 529/503/5xx and network errors back off exponentially with jitter,
//! 400/401/403/404 fail at once. Bounded by attempts, a time budget and the cancel token.
//! Never logs headers or bodies (they carry the key and the user's content).

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::options::LlmOptions;
use crate::secret::Secret;

/// A client for one provider: the reqwest client plus what the retry loop needs.
pub(crate) struct Http {
    client: reqwest::Client,
    provider: String,
    secret: Option<Secret>,
    request_timeout: Duration,
    retry_budget: Duration,
    max_attempts: u32,
}

impl Http {
    pub(crate) fn new(opts: &LlmOptions, provider: &str, secret: Option<Secret>) -> Result<Self> {
        let mut b = reqwest::Client::builder()
            .timeout(opts.request_timeout)
            .connect_timeout(opts.request_timeout.min(Duration::from_secs(30)));
        if !opts.system_proxy {
            b = b.no_proxy();
        }
        let client = b
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Http {
            client,
            provider: provider.to_string(),
            secret,
            request_timeout: opts.request_timeout,
            retry_budget: opts.retry_budget,
            max_attempts: opts.max_attempts.max(1),
        })
    }

    /// POSTs `body` to `url` with `headers`, retrying as the module doc says.
    pub(crate) async fn post_json(
        &self,
        url: &str,
        headers: HeaderMap,
        body: &Value,
        cancel: &CancellationToken,
    ) -> Result<Value> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let send = self
                .client
                .post(url)
                .headers(headers.clone())
                .json(body)
                .send();
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                r = send => r,
            };
            let err = match outcome {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let resp_headers = resp.headers().clone();
                    let text = tokio::select! {
                        _ = cancel.cancelled() => return Err(Error::Cancelled),
                        t = resp.text() => t,
                    };
                    match text {
                        Ok(text) if (200..300).contains(&status) => {
                            return serde_json::from_str(&text).map_err(|e| Error::InvalidOutput {
                                provider: self.provider.clone(),
                                message: format!("response body is not JSON: {e}"),
                            });
                        }
                        Ok(text) => self.status_error(status, &resp_headers, &text),
                        Err(e) => self.transport_error(&e),
                    }
                }
                Err(e) => self.transport_error(&e),
            };
            let elapsed = started.elapsed();
            if !err.retryable() || attempt >= self.max_attempts {
                return Err(err);
            }
            let wait = err.retry_after().unwrap_or_else(|| backoff(attempt));
            if elapsed + wait > self.retry_budget {
                tracing::warn!(provider = %self.provider, attempt, "retry budget exhausted: {err}");
                return Err(err);
            }
            tracing::info!(
                provider = %self.provider,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying after: {err}"
            );
            tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One GET of `url` with `headers`, no retries (a credentials check: its answer is the
    /// point, not its eventual success).
    pub(crate) async fn get_json(
        &self,
        url: &str,
        headers: HeaderMap,
        cancel: &CancellationToken,
    ) -> Result<Value> {
        let send = self.client.get(url).headers(headers).send();
        let resp = tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled),
            r = send => r.map_err(|e| self.transport_error(&e))?,
        };
        let status = resp.status().as_u16();
        let resp_headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| self.transport_error(&e))?;
        if !(200..300).contains(&status) {
            return Err(self.status_error(status, &resp_headers, &text));
        }
        serde_json::from_str(&text).map_err(|e| Error::InvalidOutput {
            provider: self.provider.clone(),
            message: format!("response body is not JSON: {e}"),
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::Timeout {
                provider: self.provider.clone(),
                after: self.request_timeout,
            };
        }
        // reqwest errors carry the URL (no key: keys travel in headers) and a cause chain.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Error::Network {
            provider: self.provider.clone(),
            message: self.redact(&message),
        }
    }

    fn status_error(&self, status: u16, headers: &HeaderMap, body: &str) -> Error {
        let provider = self.provider.clone();
        let (kind, message) = error_message(body);
        let message = self.redact(&message);
        let after = retry_after(headers);
        match status {
            401 | 403 => Error::Auth {
                provider,
                status,
                message,
            },
            429 => Error::RateLimited {
                provider,
                retry_after: after,
                message,
            },
            529 | 503 => Error::Overloaded {
                provider,
                status,
                retry_after: after,
            },
            _ if kind == "overloaded_error" => Error::Overloaded {
                provider,
                status,
                retry_after: after,
            },
            500..=599 => Error::Server {
                provider,
                status,
                message,
            },
            _ => Error::BadRequest {
                provider,
                status,
                message,
            },
        }
    }

    fn redact(&self, text: &str) -> String {
        match &self.secret {
            Some(s) => s.redact(text),
            None => text.to_string(),
        }
    }
}

/// `(error.type, error.message)` from an Anthropic/OpenAI error body, else the body's start.
fn error_message(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let err = &v["error"];
    let kind = err["type"].as_str().unwrap_or("").to_string();
    let msg = err["message"]
        .as_str()
        .or_else(|| err.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.chars().take(300).collect());
    let msg: String = msg.chars().take(500).collect();
    if kind.is_empty() {
        (kind, msg)
    } else {
        (kind.clone(), format!("{kind}: {msg}"))
    }
}

/// Exponential backoff with jitter: 0.5 s, 1 s, 2 s … capped at 30 s, ±25 %.
fn backoff(attempt: u32) -> Duration {
    let base = 0.5 * 2f64.powi(attempt.saturating_sub(1).min(10) as i32);
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    Duration::from_secs_f64((base * jitter).min(30.0))
}

/// How long the server asked us to wait: `retry-after-ms`, `retry-after` (seconds or an HTTP
/// date), then the latest exhausted `anthropic-ratelimit-*-reset` (RFC 3339) or OpenAI
/// `x-ratelimit-reset-*` (`1s`, `6m0s`, `20ms`).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            return Some(Duration::from_secs_f64(secs.max(0.0)));
        }
        if let Ok(date) = chrono::DateTime::parse_from_rfc2822(v) {
            return Some(until(date.with_timezone(&chrono::Utc)));
        }
    }
    let mut best: Option<Duration> = None;
    for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
        let remaining = get(&format!("anthropic-ratelimit-{kind}-remaining"));
        if remaining.is_some_and(|r| r != "0") {
            continue;
        }
        if let Some(reset) = get(&format!("anthropic-ratelimit-{kind}-reset"))
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
        {
            let d = until(reset.with_timezone(&chrono::Utc));
            best = Some(best.map_or(d, |b| b.max(d)));
        }
    }
    for kind in ["requests", "tokens"] {
        let remaining = get(&format!("x-ratelimit-remaining-{kind}"));
        if remaining.is_some_and(|r| r != "0") {
            continue;
        }
        if let Some(d) = get(&format!("x-ratelimit-reset-{kind}")).and_then(go_duration) {
            best = Some(best.map_or(d, |b| b.max(d)));
        }
    }
    best
}

fn until(t: chrono::DateTime<chrono::Utc>) -> Duration {
    (t - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

/// Parses `1h2m3.5s`, `6m0s`, `20ms`.
fn go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += n * unit;
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_sources() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3".into())])),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250".into())])),
            Some(Duration::from_millis(250))
        );
        let reset = (chrono::Utc::now() + chrono::Duration::seconds(20)).to_rfc3339();
        let d = retry_after(&headers(&[
            ("anthropic-ratelimit-tokens-remaining", "0".into()),
            ("anthropic-ratelimit-tokens-reset", reset),
        ]))
        .unwrap();
        assert!(d > Duration::from_secs(15) && d <= Duration::from_secs(20));
        assert_eq!(
            retry_after(&headers(&[("x-ratelimit-reset-requests", "6m0s".into())])),
            Some(Duration::from_secs(360))
        );
        assert_eq!(retry_after(&HeaderMap::new()), None);
        assert_eq!(go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("x"), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert!(backoff(1) <= Duration::from_millis(625));
        assert!(backoff(4) >= Duration::from_secs(3));
        assert!(backoff(30) <= Duration::from_secs(30));
    }

    #[test]
    fn error_bodies() {
        let (k, m) = error_message(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(k, "overloaded_error");
        assert_eq!(m, "overloaded_error: Overloaded");
        let (_, m) = error_message("plain text");
        assert_eq!(m, "plain text");
    }
}
