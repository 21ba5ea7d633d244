//! PostgreSQL fixtures. [`TestPostgres`]: a fresh database of the test's own on the server at
//! `$HLBOT_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped on
//! drop — tests run in parallel and twice in a row without meeting. Unreachable: a skip, or a
//! failure under `CI`. [`Gate`]: a TCP proxy in front of it that a test can cut (every
//! connection closed, new ones refused) and open again — "the database goes away" — or freeze
//! the connections it carries (open but silent).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{Connection, Executor, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub fn admin_url() -> String {
    std::env::var("HLBOT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of the test's own.
pub struct TestPostgres {
    pub name: String,
    /// URL of the test's database.
    pub url: String,
    admin: String,
}

impl TestPostgres {
    /// Create `hlbot_t<random>`; None (skip) when the server is unreachable outside CI.
    pub async fn new() -> Option<TestPostgres> {
        let admin = admin_url();
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => return crate::missing(&format!("PostgreSQL at {admin} ({e})")),
        };
        let name = format!(
            "hlbot_t{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let url = match admin.rfind('/') {
            Some(i) if admin[..i].contains("://") && i > admin.find("://").unwrap_or(0) + 2 => {
                let (base, rest) = admin.split_at(i);
                let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
                format!("{base}/{name}{query}")
            }
            _ => format!("{admin}/{name}"),
        };
        Some(TestPostgres { name, url, admin })
    }

    /// This database's URL with the host and port replaced by `addr` (to go through a [`Gate`]).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        let mut u = url::Url::parse(&self.url).expect("url");
        let _ = u.set_host(Some(&addr.ip().to_string()));
        let _ = u.set_port(Some(addr.port()));
        u.to_string()
    }

    /// host:port of the server.
    pub fn server_addr(&self) -> String {
        let u = url::Url::parse(&self.url).expect("url");
        format!(
            "{}:{}",
            u.host_str().unwrap_or("127.0.0.1"),
            u.port().unwrap_or(5432)
        )
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = c.execute(sql.as_str()).await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

/// A TCP proxy to `target` that can be cut and opened again, or freeze its connections.
pub struct Gate {
    pub addr: std::net::SocketAddr,
    open: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    freeze: watch::Sender<u64>,
}

impl Gate {
    /// Listen on 127.0.0.1 (a free port) and forward to `target` (`host:port`).
    pub async fn start(target: &str) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (freeze, _) = watch::channel(0u64);
        let (o, c, f, target) = (
            open.clone(),
            cut.clone(),
            freeze.clone(),
            target.to_string(),
        );
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let mut cut_rx = c.subscribe();
                let mut freeze_rx = f.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = cut_rx.changed() => {}
                        _ = freeze_rx.changed() => {
                            // Both sockets stay open and silent until the gate is cut or dropped.
                            let _ = cut_rx.changed().await;
                        }
                    }
                });
            }
        });
        Gate {
            addr,
            open,
            cut,
            freeze,
        }
    }

    /// Stop forwarding on every connection open now, keeping them open (a peer that stopped
    /// answering: no FIN, no RST); connections made later pass as usual.
    pub fn freeze(&self) {
        self.freeze.send_modify(|g| *g += 1);
    }

    /// Close every connection through the gate and refuse new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }

    /// Let connections through again.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}
