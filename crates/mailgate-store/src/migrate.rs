//! Schema migrations: numbered SQL files per backend embedded in the binary, applied in order
//! inside a transaction each, recorded with a checksum so an edited migration is noticed.
//!
//! Both backends share the version numbers (a schema change adds one file to each directory)
//! and the checks; on PostgreSQL the whole run holds an advisory lock, so several nodes that
//! start at once apply each migration exactly once and the others wait, then find it done.

use anyhow::Context as _;
use sha_free::checksum;

/// One migration file.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/sqlite/0001_init.sql") },
    Migration { version: 2, name: "inbox", sql: include_str!("../migrations/sqlite/0002_inbox.sql") },
    Migration { version: 3, name: "expiry_notices", sql: include_str!("../migrations/sqlite/0003_expiry_notices.sql") },
    Migration { version: 4, name: "credentials", sql: include_str!("../migrations/sqlite/0004_credentials.sql") },
    Migration { version: 5, name: "cluster", sql: include_str!("../migrations/sqlite/0005_cluster.sql") },
    Migration { version: 6, name: "admin", sql: include_str!("../migrations/sqlite/0006_admin.sql") },
    Migration { version: 7, name: "body_search", sql: include_str!("../migrations/sqlite/0007_body_search.sql") },
];

pub const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/postgres/0001_init.sql") },
    Migration { version: 2, name: "inbox", sql: include_str!("../migrations/postgres/0002_inbox.sql") },
    Migration { version: 3, name: "expiry_notices", sql: include_str!("../migrations/postgres/0003_expiry_notices.sql") },
    Migration { version: 4, name: "credentials", sql: include_str!("../migrations/postgres/0004_credentials.sql") },
    Migration { version: 5, name: "cluster", sql: include_str!("../migrations/postgres/0005_cluster.sql") },
    Migration { version: 6, name: "admin", sql: include_str!("../migrations/postgres/0006_admin.sql") },
    Migration { version: 7, name: "body_search", sql: include_str!("../migrations/postgres/0007_body_search.sql") },
];

/// The advisory lock key that serialises migration runs on one PostgreSQL database
/// (`'mailgate'` as bytes).
const PG_MIGRATION_LOCK: i64 = 0x6d61_696c_6761_7465;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
     checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// The migrations of `all` not applied yet, after checking that the applied ones are unchanged.
fn pending<'m>(all: &'m [Migration], applied: &[(i64, String)]) -> anyhow::Result<Vec<(&'m Migration, String)>> {
    let mut todo = Vec::new();
    for m in all {
        let sum = checksum(m.sql);
        if let Some((_, stored)) = applied.iter().find(|(v, _)| *v == m.version) {
            anyhow::ensure!(
                *stored == sum,
                "migration {} ({}) was changed after it was applied; migrations must never be edited",
                m.version,
                m.name
            );
            continue;
        }
        todo.push((m, sum));
    }
    Ok(todo)
}

/// Applies `migrations` on one connection `conn` (each in a transaction), recording them with
/// the `insert` statement; evaluates to how many ran. (A macro: the body is the same for both
/// backends, sqlx's generic bounds for it are not worth their weight.)
macro_rules! apply {
    ($conn:expr, $migrations:expr, $insert:expr) => {{
        let conn = $conn;
        sqlx::query(CREATE_TABLE).execute(&mut *conn).await.context("creating schema_migrations")?;
        let applied: Vec<(i64, String)> = sqlx::query_as("SELECT version, checksum FROM schema_migrations")
            .fetch_all(&mut *conn)
            .await
            .context("reading schema_migrations")?;
        let mut ran = 0;
        for (m, sum) in pending($migrations, &applied)? {
            let mut tx = sqlx::Connection::begin(&mut *conn).await.context("starting a migration")?;
            // A query without arguments runs as a simple query: several statements at once.
            // (Not `raw_sql`: its future is not provably `Send` for nodes that open the store
            // inside a spawned task.)
            sqlx::Executor::execute(&mut *tx, m.sql)
                .await
                .with_context(|| format!("applying migration {} ({})", m.version, m.name))?;
            sqlx::query($insert)
                .bind(m.version)
                .bind(m.name.to_string())
                .bind(sum)
                .bind(mailgate_core::now_millis())
                .execute(&mut *tx)
                .await
                .context("recording a migration")?;
            tx.commit().await.context("committing a migration")?;
            ran += 1;
        }
        anyhow::Ok(ran)
    }};
}

/// Applies pending SQLite migrations; returns how many ran.
pub async fn run_sqlite(pool: &sqlx::SqlitePool) -> anyhow::Result<usize> {
    let mut conn = pool.acquire().await.context("connecting for migrations")?;
    let conn: &mut sqlx::SqliteConnection = &mut conn;
    apply!(conn, SQLITE, "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)")
}

/// Applies pending PostgreSQL migrations under an advisory lock; returns how many ran.
pub async fn run_postgres(pool: &sqlx::PgPool) -> anyhow::Result<usize> {
    let mut conn = pool.acquire().await.context("connecting for migrations")?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PG_MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .context("waiting for the migration lock")?;
    let result = apply_postgres(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)").bind(PG_MIGRATION_LOCK).execute(&mut *conn).await;
    if unlocked.is_err() {
        // The session lock would outlive this attempt on a pooled connection: drop the connection.
        conn.detach();
    }
    result
}

async fn apply_postgres(conn: &mut sqlx::PgConnection) -> anyhow::Result<usize> {
    apply!(conn, POSTGRES, "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
}

/// Whether every known migration has been applied.
pub async fn is_current_sqlite(pool: &sqlx::SqlitePool) -> bool {
    let latest = SQLITE.iter().map(|m| m.version).max().unwrap_or(0);
    sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        .fetch_one(pool)
        .await
        .is_ok_and(|v| v >= latest)
}

/// Whether every known migration has been applied.
pub async fn is_current_postgres(pool: &sqlx::PgPool) -> bool {
    let latest = POSTGRES.iter().map(|m| m.version).max().unwrap_or(0);
    sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        .fetch_one(pool)
        .await
        .is_ok_and(|v| v >= latest)
}

mod sha_free {
    /// SHA-256 of the migration text, hex.
    pub fn checksum(sql: &str) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, sql.as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}
