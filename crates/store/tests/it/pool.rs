//! The connection pool after a write SQLite gave up on. On a full disk SQLite rolls the whole
//! transaction back by itself (at `COMMIT`, or at a statement with nothing smaller to undo) while
//! sqlx still counts it open; the rollback sqlx sends then fails, and the connection's next
//! `BEGIN` is a `SAVEPOINT`. Once such a savepoint's release fails too (the disk still full),
//! sqlx rolls back to it and leaves a real transaction open beneath: from then on every write on
//! that connection reported success inside a transaction that never committed, held the write
//! lock, and was gone at exit (the task history of a worker that once met a full disk). Such a
//! connection must be closed, not reused. A page cap stands in for the full disk, a deferred
//! foreign key for the failing release.

use hlbot_store::{Store, StoreConfig};
use sqlx::Connection;

async fn exec(conn: &mut sqlx::AnyConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(conn).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_the_database_was_full_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::sqlite_in(dir.path());
    cfg.max_connections = 1;
    let store = Store::connect(&cfg).await.expect("sqlite");
    let pool = store.pool();
    for sql in [
        "CREATE TABLE filler (b BLOB)",
        "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }

    // 1. The database is full: SQLite ends the transaction at the insert.
    let mut conn = pool.acquire().await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    exec(&mut conn, &format!("PRAGMA max_page_count = {pages}"))
        .await
        .unwrap();
    {
        let mut tx = conn.begin().await.unwrap();
        let e = exec(&mut tx, "INSERT INTO filler VALUES (zeroblob(100000))")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("full"), "{e}");
    }
    drop(conn);

    // 2. The next write's commit fails, and SQLite keeps that transaction.
    let mut conn = pool.acquire().await.unwrap();
    exec(&mut conn, "PRAGMA max_page_count = 1073741823")
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    exec(&mut tx, "INSERT INTO child VALUES (42)")
        .await
        .unwrap();
    tx.commit().await.unwrap_err();
    drop(conn);

    // 3. A write that commits must be in the database.
    let mut conn = pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    exec(&mut tx, "INSERT INTO filler VALUES (x'01')")
        .await
        .unwrap();
    tx.commit().await.expect("commit");
    drop(conn);

    let other = Store::connect(&cfg).await.expect("a second store");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM filler")
        .fetch_one(other.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "the committed row is not in the database");
    other.close().await;
    store.close().await;
}
