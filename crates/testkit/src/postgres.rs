//! PostgreSQL fixtures. [`TestPostgres`]: a fresh database of the test's own on the server at
//! `$HLBOT_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped on
//! drop — tests run in parallel and twice in a row without meeting. Unreachable: a skip, or a
//! failure under `CI`. (The TCP gate tests put in front of it is `gate.rs`.)

use sqlx::{Connection, Executor, PgConnection};

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
