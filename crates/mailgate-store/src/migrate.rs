//! Schema migrations: numbered SQL files embedded in the binary, applied in order inside a
//! transaction each, recorded with a checksum so an edited migration is noticed.

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
    Migration { version: 5, name: "admin", sql: include_str!("../migrations/sqlite/0005_admin.sql") },
];

/// Applies pending SQLite migrations; returns how many ran.
pub async fn run_sqlite(pool: &sqlx::SqlitePool) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
         checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await
    .context("creating schema_migrations")?;
    let applied: Vec<(i64, String)> = sqlx::query_as("SELECT version, checksum FROM schema_migrations")
        .fetch_all(pool)
        .await
        .context("reading schema_migrations")?;
    let mut ran = 0;
    for m in SQLITE {
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
        let mut tx = pool.begin().await.context("starting a migration")?;
        sqlx::raw_sql(m.sql)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("applying migration {} ({})", m.version, m.name))?;
        sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)")
            .bind(m.version)
            .bind(m.name)
            .bind(&sum)
            .bind(mailgate_core::now_millis())
            .execute(&mut *tx)
            .await
            .context("recording a migration")?;
        tx.commit().await.context("committing a migration")?;
        ran += 1;
    }
    Ok(ran)
}

/// Whether every known migration has been applied.
pub async fn is_current_sqlite(pool: &sqlx::SqlitePool) -> bool {
    let latest = SQLITE.iter().map(|m| m.version).max().unwrap_or(0);
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
