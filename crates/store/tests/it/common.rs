//! A store per test on each backend.

use hlbot_store::{Store, StoreConfig};
use hlbot_testkit::TestPostgres;

/// A store and what keeps its database alive.
pub struct Db {
    pub store: Store,
    pub cfg: StoreConfig,
    pub _pg: Option<TestPostgres>,
    pub _dir: tempfile::TempDir,
}

pub async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::sqlite_in(dir.path());
    let store = Store::open(&cfg).await.expect("open sqlite");
    Db {
        store,
        cfg,
        _pg: None,
        _dir: dir,
    }
}

pub async fn postgres() -> Option<Db> {
    let pg = TestPostgres::new().await?;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::sqlite_in(dir.path());
    cfg.url = Some(pg.url.clone());
    let store = Store::open(&cfg).await.expect("open postgres");
    Some(Db {
        store,
        cfg,
        _pg: Some(pg),
        _dir: dir,
    })
}

/// Run `$body` (an async fn taking `Db`) on SQLite and, when reachable, PostgreSQL.
#[macro_export]
macro_rules! both {
    ($sqlite:ident, $pg:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $body($crate::common::sqlite().await).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $pg() {
            if let Some(db) = $crate::common::postgres().await {
                $body(db).await;
            }
        }
    };
}
