//! Who may use the dashboard. On loopback nobody logs in; on any other address a login is
//! required — a token (`HLBOT_DASHBOARD_TOKEN`) or a user with an argon2 password hash from
//! `[dashboard]` — and the dashboard refuses to start with neither. A login makes a session
//! (an `HttpOnly`, `SameSite=Strict` cookie, 12 h); every POST must carry the session's CSRF
//! token (form field `csrf` or header `x-csrf-token`). `Authorization: Bearer <token>` works for
//! scrapers and scripts. Secrets are never rendered or logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Form;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::html::{esc, page_bare};
use crate::{App, Error, Result};

const COOKIE: &str = "hlbot_session";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first): a flood of logins cannot grow memory.
const MAX_SESSIONS: usize = 10_000;

/// Credentials from the config and environment.
#[derive(Clone, Default)]
pub struct AuthConfig {
    pub token: Option<String>,
    pub user: Option<String>,
    /// PHC string from `hlbot dashboard --hash-password`.
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("user", &self.user)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .finish()
    }
}

impl AuthConfig {
    fn has_password(&self) -> bool {
        self.user.is_some() && self.password_hash.is_some()
    }

    /// Refuse an off-loopback address without credentials, and a hash that does not parse.
    pub fn check(&self, ip: IpAddr) -> Result<()> {
        if let Some(h) = &self.password_hash {
            PasswordHash::new(h).map_err(|e| {
                Error::Config(format!(
                    "[dashboard] password_hash is not an argon2 hash: {e}"
                ))
            })?;
        }
        if self.token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(Error::Config(
                "HLBOT_DASHBOARD_TOKEN must be at least 16 characters".into(),
            ));
        }
        if !ip.is_loopback() && self.token.is_none() && !self.has_password() {
            return Err(Error::Config(format!(
                "refusing to serve on {ip} without a login: set HLBOT_DASHBOARD_TOKEN, or \
                 [dashboard] user and password_hash (hlbot dashboard --hash-password), or \
                 listen on 127.0.0.1"
            )));
        }
        Ok(())
    }

    fn token_ok(&self, given: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| constant_eq(t.as_bytes(), given.as_bytes()))
    }

    fn password_ok(&self, user: &str, password: &str) -> bool {
        let (Some(u), Some(h)) = (&self.user, &self.password_hash) else {
            return false;
        };
        let Ok(parsed) = PasswordHash::new(h) else {
            return false;
        };
        let pw_ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        pw_ok && constant_eq(u.as_bytes(), user.as_bytes())
    }
}

/// An argon2id PHC hash of `password` with a random salt.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| Error::Config(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Config(e.to_string()))
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A logged-in (or, on loopback, anonymous) browser session.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    created: Instant,
}

/// The session table.
#[derive(Clone)]
pub struct Sessions {
    required: bool,
    map: Arc<Mutex<HashMap<String, Session>>>,
}

impl Sessions {
    pub fn new(required: bool) -> Self {
        Self {
            required,
            map: Arc::default(),
        }
    }

    fn create(&self) -> (String, Session) {
        let id = random_hex();
        let s = Session {
            csrf: random_hex(),
            created: Instant::now(),
        };
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, v| v.created.elapsed() < SESSION_TTL);
        if m.len() >= MAX_SESSIONS {
            if let Some(oldest) = m
                .iter()
                .min_by_key(|(_, v)| v.created)
                .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(id.clone(), s.clone());
        (id, s)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.get(id)
            .filter(|s| s.created.elapsed() < SESSION_TTL)
            .cloned()
    }

    fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

fn random_hex() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(id: &str) -> HeaderValue {
    let v = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

fn bearer_ok(app: &App, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| app.opts.auth.token_ok(t.trim()))
}

/// Middleware on every page and action: find or make the session, enforce the login and the
/// CSRF token. The session is passed on as a request extension.
pub(crate) async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    let headers = req.headers().clone();
    let session = cookie_of(&headers).and_then(|id| app.sessions.get(&id));
    let (session, new_cookie) = match session {
        Some(s) => (s, None),
        None if bearer_ok(&app, &headers) => {
            // A script with the token: no cookie, no CSRF (browsers never send this header).
            let mut req = req;
            req.extensions_mut().insert(Session {
                csrf: String::new(),
                created: Instant::now(),
            });
            return next.run(req).await;
        }
        None if !app.sessions.required => {
            let (id, s) = app.sessions.create();
            (s, Some(id))
        }
        None => {
            let path = req.uri().path();
            let page = !(path == "/events" || path == "/metrics" || path.starts_with("/api/"));
            if req.method() == Method::GET && page {
                let next_path = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                let to = format!("/login?next={}", urlencode(&next_path));
                return Redirect::to(&to).into_response();
            }
            return (StatusCode::UNAUTHORIZED, "login required\n").into_response();
        }
    };
    let mut req = req;
    if req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n").into_response();
        };
        let from_header = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let from_form = form_field(&bytes, "csrf");
        let given = from_header.or(from_form).unwrap_or_default();
        if !constant_eq(given.as_bytes(), session.csrf.as_bytes()) {
            return (StatusCode::FORBIDDEN, "bad or missing CSRF token\n").into_response();
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    req.extensions_mut().insert(session);
    let mut resp = next.run(req).await;
    if let Some(id) = new_cookie {
        resp.headers_mut()
            .append(header::SET_COOKIE, set_cookie(&id));
    }
    resp
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| urldecode(v))
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    failed: Option<u8>,
}

/// Only a local path: never an open redirect.
fn safe_next(n: Option<&str>) -> String {
    match n {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.into(),
        _ => "/".into(),
    }
}

pub(crate) async fn login_page(State(app): State<App>, Query(q): Query<NextQuery>) -> Html<String> {
    let next = safe_next(q.next.as_deref());
    let a = &app.opts.auth;
    let mut form = String::new();
    if a.token.is_some() {
        form.push_str(
            r#"<label>Token <input type="password" name="token" autocomplete="off"></label>"#,
        );
    }
    if a.has_password() {
        form.push_str(
            r#"<label>User <input name="user" autocomplete="username"></label>
<label>Password <input type="password" name="password" autocomplete="current-password"></label>"#,
        );
    }
    let failed = if q.failed.is_some() {
        r#"<p class="flash bad">Wrong credentials.</p>"#
    } else {
        ""
    };
    Html(page_bare(
        "Login",
        &format!(
            r#"<h1>hlbot dashboard</h1>{failed}<form method="post" action="/login" class="login" id="login">
<input type="hidden" name="next" value="{}">{form}<button type="submit">Log in</button></form>"#,
            esc(&next)
        ),
    ))
}

#[derive(Deserialize)]
pub struct LoginForm {
    next: Option<String>,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

pub(crate) async fn login(State(app): State<App>, Form(f): Form<LoginForm>) -> Response {
    let a = &app.opts.auth;
    let ok = f
        .token
        .as_deref()
        .is_some_and(|t| !t.is_empty() && a.token_ok(t))
        || match (&f.user, &f.password) {
            (Some(u), Some(p)) if !u.is_empty() => a.password_ok(u, p),
            _ => false,
        };
    let next = safe_next(f.next.as_deref());
    if !ok {
        // Slow down guessing.
        tokio::time::sleep(Duration::from_millis(500)).await;
        tracing::warn!("dashboard: failed login");
        return Redirect::to(&format!("/login?failed=1&next={}", urlencode(&next))).into_response();
    }
    let (id, _) = app.sessions.create();
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&id));
    resp
}

pub(crate) async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_of(&headers) {
        app.sessions.remove(&id);
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("hlbot_session=; Path=/; Max-Age=0"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let none = AuthConfig::default();
        assert!(none.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(none.check("0.0.0.0".parse().unwrap()).is_err());
        let tok = AuthConfig {
            token: Some("0123456789abcdef".into()),
            ..Default::default()
        };
        assert!(tok.check("0.0.0.0".parse().unwrap()).is_ok());
        assert!(tok.token_ok("0123456789abcdef") && !tok.token_ok("0123456789abcdeX"));
        assert!(!format!("{tok:?}").contains("0123"));
    }

    #[test]
    fn password_roundtrip() {
        let h = hash_password("s3cret").unwrap();
        let a = AuthConfig {
            user: Some("ops".into()),
            password_hash: Some(h),
            ..Default::default()
        };
        assert!(a.check("10.0.0.1".parse().unwrap()).is_ok());
        assert!(a.password_ok("ops", "s3cret"));
        assert!(!a.password_ok("ops", "wrong") && !a.password_ok("other", "s3cret"));
    }

    #[test]
    fn redirects_stay_local() {
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/tasks?x=1")), "/tasks?x=1");
        assert_eq!(urldecode("a%2Fb+c"), "a/b c");
    }
}
