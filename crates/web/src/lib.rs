//! `hlbot dashboard`: one process serving server-rendered pages (Workers, Queues, Tasks,
//! History, Library, Costs, Beat) with live updates over SSE, the actions behind them, and a
//! fleet-wide Prometheus `/metrics`. Reads through the engine (events, control, queues) and the
//! store (history, library, costs); owns no state that a restart would lose.

mod actions;
pub mod auth;
pub mod error;
pub mod html;
pub mod metrics;
mod pages;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use hlbot_engine::monitor::{Monitor, MonitorOptions};
use hlbot_engine::{Client, beat::EntryConfig};
use hlbot_store::Store;
use tokio_util::sync::CancellationToken;

pub use auth::{AuthConfig, hash_password};
pub use error::{Error, Result};

/// Everything the dashboard needs, built by the caller (the cli) from its settings.
#[derive(Clone)]
pub struct DashboardOptions {
    pub address: String,
    pub port: u16,
    pub client: Client,
    /// The task history and library; pages that need it say so when absent.
    pub store: Option<Store>,
    /// Queues to show even when empty.
    pub queues: Vec<String>,
    /// Beat entries from the config.
    pub beat: Vec<EntryConfig>,
    pub auth: AuthConfig,
    /// Tasks kept in the live window.
    pub max_tasks: usize,
}

impl std::fmt::Debug for DashboardOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardOptions")
            .field("address", &self.address)
            .field("port", &self.port)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub(crate) struct App {
    pub opts: Arc<DashboardOptions>,
    pub monitor: Monitor,
    pub stats: stats::WorkerStats,
    pub sessions: auth::Sessions,
    /// Cancelled at shutdown: open SSE streams end so the server can stop.
    pub stop: CancellationToken,
}

/// Serve until `shutdown`. Refuses to start off loopback without credentials.
pub async fn run(opts: DashboardOptions, shutdown: CancellationToken) -> Result<()> {
    let listener = bind(&opts).await?;
    serve(listener, opts, shutdown).await
}

/// Bind the address (checking the auth policy first).
pub async fn bind(opts: &DashboardOptions) -> Result<tokio::net::TcpListener> {
    let addr: SocketAddr = format!("{}:{}", opts.address, opts.port)
        .parse()
        .or_else(|_| format!("[{}]:{}", opts.address, opts.port).parse())
        .map_err(|e| Error::Config(format!("bad address {}: {e}", opts.address)))?;
    opts.auth.check(addr.ip())?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Bind {
            address: addr.to_string(),
            reason: e.to_string(),
        })
}

/// Serve on an already bound listener until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    opts: DashboardOptions,
    shutdown: CancellationToken,
) -> Result<()> {
    let local = listener.local_addr()?;
    let broker = opts.client.broker().clone();
    let mopts = MonitorOptions {
        max_tasks: opts.max_tasks,
        ..Default::default()
    };
    // Events are where the workers publish them: RabbitMQ's `celeryev` on an AMQP broker.
    let monitor = match opts.client.amqp() {
        Some(a) => Monitor::spawn_amqp(broker.clone(), a.url.clone(), mopts, shutdown.clone()),
        None => Monitor::spawn(broker.clone(), mopts, shutdown.clone()),
    };
    let control = hlbot_engine::control::ControlClient::for_client(&opts.client);
    let stats = stats::WorkerStats::spawn(control, shutdown.clone());
    let required = !local.ip().is_loopback();
    let app = App {
        opts: Arc::new(opts),
        monitor,
        stats,
        sessions: auth::Sessions::new(required),
        stop: shutdown.clone(),
    };
    tracing::info!(
        "dashboard on http://{local}/ (login {})",
        if required {
            "required"
        } else {
            "not required on loopback"
        }
    );
    let router = router(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

fn router(app: App) -> Router {
    let guarded = Router::new()
        .route("/", get(pages::fleet::workers))
        .route("/workers", get(pages::fleet::workers))
        .route("/queues", get(pages::fleet::queues))
        .route("/beat", get(pages::fleet::beat))
        .route("/tasks", get(pages::tasks::live))
        .route("/task/{id}", get(pages::tasks::task))
        .route("/history", get(pages::tasks::history))
        .route("/library", get(pages::library::library))
        .route("/source/{id}", get(pages::library::source))
        .route("/costs", get(pages::library::costs))
        .route("/events", get(pages::events))
        .route("/api/tasks", get(pages::tasks::api_tasks))
        .route("/api/workers", get(pages::fleet::api_workers))
        .route("/metrics", get(metrics::endpoint))
        .route("/worker/{name}/{action}", post(actions::worker))
        .route("/queue/{name}/purge", post(actions::purge))
        .route("/dead/replay", post(actions::replay))
        .route("/task/{id}/{action}", post(actions::task))
        .route("/logout", post(auth::logout))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::guard,
        ));
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/static/style.css", get(html::css))
        .route("/static/app.js", get(html::js))
        .merge(guarded)
        .with_state(app)
}
