//! Local HTTP servers for tests (127.0.0.1, a free port, stopped with the test's runtime): `Mock`
//! answers any request with scripted JSON replies and records what it saw (the LLM suites speak
//! the providers' wire formats through it); `serve_dir` is a static file server (yt-dlp's
//! generic extractor, downloads, slow drips for time-limit tests).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![],
            body,
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub at: Instant,
}

type Responder = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    default: Option<Responder>,
    seen: Vec<Seen>,
    in_flight: usize,
    max_in_flight: usize,
}

/// The running server; dropped with the test's runtime.
#[derive(Clone)]
pub struct Mock {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Mock {
    pub async fn start() -> Mock {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Mock { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues replies, answered in order before the default responder.
    pub fn push(&self, r: Reply) -> &Self {
        self.inner.lock().unwrap().script.push_back(r);
        self
    }

    pub fn respond_with(&self, f: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        self.inner.lock().unwrap().default = Some(Arc::new(f));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.inner.lock().unwrap().max_in_flight
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = {
        let mut g = inner.lock().unwrap();
        g.seen.push(Seen {
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.clone(),
            at: Instant::now(),
        });
        g.in_flight += 1;
        g.max_in_flight = g.max_in_flight.max(g.in_flight);
        match g.script.pop_front() {
            Some(r) => r,
            None => match &g.default {
                Some(f) => f(&body),
                None => Reply::json(
                    500,
                    json!({"error": {"type": "api_error", "message": "no scripted reply"}}),
                ),
            },
        }
    };
    tokio::time::sleep(reply.delay).await;
    inner.lock().unwrap().in_flight -= 1;
    let mut resp = (
        StatusCode::from_u16(reply.status).unwrap(),
        axum::Json(reply.body),
    )
        .into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    resp
}

/// A static file server on 127.0.0.1 (a free port) for yt-dlp's generic extractor.
/// `/slow/NAME` drips NAME at ~5 KiB/s with the full Content-Length (for time-limit tests).
pub struct Server {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }
    pub fn hits(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Serve the files under `dir` (GET `/<name>`, `/slow/<name>`).
pub async fn serve_dir(dir: PathBuf) -> Server {
    use axum::body::Body;
    use axum::extract::{Path as AxPath, State};
    use axum::http::{StatusCode, header};
    use axum::response::Response;

    #[derive(Clone)]
    struct St {
        dir: PathBuf,
        requests: Arc<AtomicUsize>,
    }

    fn mime(name: &str) -> &'static str {
        match name.rsplit('.').next().unwrap_or("") {
            "mp4" => "video/mp4",
            "webm" => "video/webm",
            "mkv" => "video/x-matroska",
            "vtt" => "text/vtt",
            "srt" => "application/x-subrip",
            "html" => "text/html; charset=utf-8",
            "json" | "json3" => "application/json",
            "mp3" => "audio/mpeg",
            "wav" => "audio/wav",
            _ => "application/octet-stream",
        }
    }

    async fn file(State(st): State<St>, AxPath(path): AxPath<String>) -> Response {
        st.requests.fetch_add(1, Ordering::SeqCst);
        let (slow, name) = match path.strip_prefix("slow/") {
            Some(n) => (true, n.to_string()),
            None => (false, path.clone()),
        };
        if name.contains("..") {
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(Body::empty())
                .unwrap();
        }
        let Ok(data) = tokio::fs::read(st.dir.join(&name)).await else {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::from("not found"))
                .unwrap();
        };
        let len = data.len();
        let body = if slow {
            let stream = futures_lite_stream(data);
            Body::from_stream(stream)
        } else {
            Body::from(data)
        };
        Response::builder()
            .header(header::CONTENT_TYPE, mime(&name))
            .header(header::CONTENT_LENGTH, len)
            .body(body)
            .unwrap()
    }

    fn futures_lite_stream(
        data: Vec<u8>,
    ) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send {
        futures::stream::unfold((data, 0usize), |(data, pos)| async move {
            if pos >= data.len() {
                return None;
            }
            if pos > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let end = (pos + 1024).min(data.len());
            let chunk = data[pos..end].to_vec();
            Some((Ok(chunk), (data, end)))
        })
    }

    let requests = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::get(file))
        .with_state(St {
            dir,
            requests: requests.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server {
        addr,
        requests,
        task,
    }
}
