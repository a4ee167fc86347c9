//! The PostgreSQL implementation of [`Store`], for one node or several sharing the database.
//!
//! The same schema and the same semantics as [`crate::sqlite`]; where SQLite serialises writers,
//! PostgreSQL runs them side by side, so claims lock their rows with `FOR UPDATE SKIP LOCKED`
//! inside the claiming `UPDATE`: concurrent claimers (threads or nodes) skip each other's rows
//! instead of waiting, and a row is claimed by one of them only.
//!
//! The pool reconnects on its own after the database restarts; until then every call returns
//! a [`StoreError::Database`] (never panics), and [`Store::ping`] reports it for `/readyz`.

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use mailgate_core::Millis;
use mailgate_core::model::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row as _};

use crate::{
    AdminSession, AdminUser, AttemptRecord, AuditEntry, Context as _, InboxFilter, Inserted, MailFilter, NewInboxMessage, NewMail, Page, Result, Store,
    StoreError, TrafficFilter,
};

/// mailgate's store on a PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…` or `postgresql://…`) and applies
    /// pending migrations (serialised across nodes by an advisory lock).
    pub async fn open(url: &str) -> anyhow::Result<PgStore> {
        PgStore::open_with(url, 16).await
    }

    /// As [`PgStore::open`], with at most `max_connections` connections.
    pub async fn open_with(url: &str, max_connections: u32) -> anyhow::Result<PgStore> {
        use anyhow::Context as _;
        let options = PgConnectOptions::from_str(url).context("invalid PostgreSQL URL")?.application_name("mailgate");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            // While the database is away, calls fail after this long instead of queueing forever.
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(true)
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))?;
        crate::migrate::run_postgres(&pool).await?;
        Ok(PgStore { pool })
    }

    /// Whether all migrations are applied (for readiness checks).
    pub async fn is_current(&self) -> bool {
        crate::migrate::is_current_postgres(&self.pool).await
    }

    /// The connection pool (tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn parse_enum<T>(text: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} '{text}'")))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn is_fk_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

fn oauth_client_from_row(r: &PgRow) -> Result<OAuthClient> {
    Ok(OAuthClient {
        id: r.get("id"),
        name: r.get("name"),
        template: r.get("template"),
        tenant: r.get("tenant"),
        client_id: r.get("client_id"),
        credential_kind: parse_enum(&r.get::<String, _>("credential_kind"), CredentialKind::parse, "credential kind")?,
        secret: r.get::<Option<String>, _>("secret").map(Sealed),
        secret_updated_at: r.get("secret_updated_at"),
        certificate: r.get("certificate"),
        signing_alg: r.get("signing_alg"),
        scopes: parse_json(&r.get::<String, _>("scopes"), "scopes")?,
        token_url: r.get("token_url"),
        expires_on: r.get("expires_on"),
        comment: r.get("comment"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

fn account_from_row(r: &PgRow) -> Result<Account> {
    Ok(Account {
        id: r.get("id"),
        name: r.get("name"),
        protocol: parse_enum(&r.get::<String, _>("protocol"), Protocol::parse, "protocol")?,
        auth: parse_enum(&r.get::<String, _>("auth"), AuthMethod::parse, "auth method")?,
        username: r.get("username"),
        password: r.get::<Option<String>, _>("password").map(Sealed),
        password_updated_at: r.get("password_updated_at"),
        oauth_client_id: r.get("oauth_client_id"),
        oauth_mechanism: parse_enum(&r.get::<String, _>("oauth_mechanism"), OAuthMechanism::parse, "OAuth mechanism")?,
        send_address: r.get("send_address"),
        send_name: r.get("send_name"),
        connection: parse_enum(&r.get::<String, _>("connection"), Connection::parse, "connection")?,
        host: r.get("host"),
        port: u16::try_from(r.get::<i64, _>("port")).map_err(|_| StoreError::Corrupt("port".into()))?,
        imap_folder: r.get("imap_folder"),
        after_retrieval: parse_enum(&r.get::<String, _>("after_retrieval"), AfterRetrieval::parse, "after_retrieval")?,
        move_folder: r.get("move_folder"),
        poll_interval_secs: r.get::<i64, _>("poll_interval_secs") as u32,
        idle: r.get("idle"),
        max_sessions: r.get::<i64, _>("max_sessions") as u32,
        enabled: r.get("enabled"),
        comment: r.get("comment"),
        last_success_at: r.get("last_success_at"),
        last_error: r.get("last_error"),
        last_error_at: r.get("last_error_at"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

const MAIL_COLUMNS: &str = "m.id, m.account_id, a.name AS account_name, m.api_key_id, m.message_id, \
    m.envelope_from, m.recipients, m.header_from, m.to_display, m.cc_display, m.subject, m.attachments, m.size, \
    m.status, m.attempts, m.next_attempt_at, m.last_error, m.server_reply, m.idempotency_key, m.created_at, \
    m.updated_at, m.sent_at";

fn mail_from_row(r: &PgRow) -> Result<Mail> {
    Ok(Mail {
        id: r.get("id"),
        account_id: r.get("account_id"),
        account_name: r.get("account_name"),
        api_key_id: r.get("api_key_id"),
        message_id: r.get("message_id"),
        envelope_from: r.get("envelope_from"),
        recipients: parse_json(&r.get::<String, _>("recipients"), "recipients")?,
        header_from: r.get("header_from"),
        to_display: r.get("to_display"),
        cc_display: r.get("cc_display"),
        subject: r.get("subject"),
        attachments: parse_json(&r.get::<String, _>("attachments"), "attachments")?,
        size: r.get("size"),
        status: parse_enum(&r.get::<String, _>("status"), MailStatus::parse, "mail status")?,
        attempts: r.get::<i64, _>("attempts") as u32,
        next_attempt_at: r.get("next_attempt_at"),
        last_error: r.get("last_error"),
        server_reply: r.get("server_reply"),
        idempotency_key: r.get("idempotency_key"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        sent_at: r.get("sent_at"),
    })
}

fn traffic_from_row(r: &PgRow) -> Result<TrafficEntry> {
    Ok(TrafficEntry {
        id: r.get("id"),
        direction: parse_enum(&r.get::<String, _>("direction"), Direction::parse, "direction")?,
        account_name: r.get("account_name"),
        mail_id: r.get("mail_id"),
        message_id: r.get("message_id"),
        from: r.get("from_addr"),
        to: r.get("to_addrs"),
        cc: r.get("cc_addrs"),
        subject: r.get("subject"),
        attachments: parse_json(&r.get::<String, _>("attachments"), "attachments")?,
        size: r.get("size"),
        at: r.get("at"),
    })
}

fn api_key_from_row(r: &PgRow) -> ApiKey {
    ApiKey {
        id: r.get("id"),
        name: r.get("name"),
        prefix: r.get("prefix"),
        admin: r.get("admin"),
        created_at: r.get("created_at"),
        last_used_at: r.get("last_used_at"),
        revoked_at: r.get("revoked_at"),
    }
}

const INBOX_COLUMNS: &str = "i.id, i.account_id, a.name AS account_name, i.folder, i.uidvalidity, i.uid, \
    i.message_id, i.subject, i.from_addr, i.to_addrs, i.cc_addrs, i.date, i.size, i.parsed, i.problems, \
    i.received_at, i.claimed_until, i.consumed_at";

fn inbox_from_row(r: &PgRow) -> Result<InboxMessage> {
    Ok(InboxMessage {
        id: r.get("id"),
        account_id: r.get("account_id"),
        account_name: r.get("account_name"),
        folder: r.get("folder"),
        uidvalidity: r.get("uidvalidity"),
        uid: r.get("uid"),
        message_id: r.get("message_id"),
        subject: r.get("subject"),
        from: r.get("from_addr"),
        to: r.get("to_addrs"),
        cc: r.get("cc_addrs"),
        date: r.get("date"),
        size: r.get("size"),
        parsed: r.get("parsed"),
        problems: parse_json(&r.get::<String, _>("problems"), "problems")?,
        received_at: r.get("received_at"),
        claimed_until: r.get("claimed_until"),
        consumed_at: r.get("consumed_at"),
    })
}

/// `%text%` for LIKE with the wildcards in `text` escaped.
fn like_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// A WHERE clause built from optional conditions, with its bind values in order.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    binds: Vec<Bind>,
}

/// `sql` with each `?` replaced by the next numbered placeholder after `used`.
fn number_placeholders(sql: &str, used: usize) -> String {
    let mut n = used;
    let mut out = String::with_capacity(sql.len() + 8);
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(ch);
        }
    }
    out
}

enum Bind {
    Text(String),
    Int(i64),
}

/// What a list query selects, from where, in which order, and how rows become records.
struct Listing<T> {
    select: &'static str,
    from: &'static str,
    order: &'static str,
    map: fn(&PgRow) -> Result<T>,
    what: &'static str,
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl Conditions {
    fn push(&mut self, sql: &str, binds: impl IntoIterator<Item = Bind>) {
        self.sql.push(number_placeholders(sql, self.binds.len()));
        self.binds.extend(binds);
    }

    /// A case-insensitive substring search over `columns` (nothing when `query` is empty).
    fn search(&mut self, columns: &[&str], query: Option<&str>) {
        let Some(q) = query.filter(|q| !q.is_empty()) else { return };
        let pattern = like_pattern(q);
        let any = columns.iter().map(|c| format!("{c} ILIKE ? ESCAPE '\\'")).collect::<Vec<_>>().join(" OR ");
        self.push(&format!("({any})"), columns.iter().map(|_| Bind::Text(pattern.clone())));
    }

    /// `column` within [since, until).
    fn range(&mut self, column: &str, since: Option<Millis>, until: Option<Millis>) {
        if let Some(s) = since {
            self.push(&format!("{column} >= ?"), [Bind::Int(s)]);
        }
        if let Some(u) = until {
            self.push(&format!("{column} < ?"), [Bind::Int(u)]);
        }
    }

    fn clause(&self) -> String {
        if self.sql.is_empty() { String::new() } else { format!(" WHERE {}", self.sql.join(" AND ")) }
    }

    fn bind<'q>(&'q self, mut q: PgQuery<'q>) -> PgQuery<'q> {
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }

    /// One page of `listing` with these conditions, and the total count.
    async fn page<T>(&self, pool: &PgPool, listing: Listing<T>, (limit, offset): (u32, u64)) -> Result<Page<T>> {
        let Listing { select, from, order, map, what } = listing;
        let clause = self.clause();
        let count_sql = format!("SELECT COUNT(*) FROM {from}{clause}");
        let total: i64 = self.bind(sqlx::query(&count_sql)).fetch_one(pool).await.ctx(what)?.get(0);
        let n = self.binds.len();
        let sql = format!("SELECT {select} FROM {from}{clause} ORDER BY {order} LIMIT ${} OFFSET ${}", n + 1, n + 2);
        let rows = self.bind(sqlx::query(&sql)).bind(i64::from(limit)).bind(offset as i64).fetch_all(pool).await.ctx(what)?;
        Ok(Page { items: rows.iter().map(map).collect::<Result<_>>()?, total })
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.ctx("checking the database")?;
        Ok(())
    }

    async fn list_oauth_clients(&self) -> Result<Vec<OAuthClient>> {
        let rows = sqlx::query("SELECT * FROM oauth_clients ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .ctx("listing OAuth clients")?;
        rows.iter().map(oauth_client_from_row).collect()
    }

    async fn get_oauth_client(&self, key: &str) -> Result<OAuthClient> {
        let row = sqlx::query("SELECT * FROM oauth_clients WHERE id = $1 OR name = $2 ORDER BY id = $3 DESC LIMIT 1")
            .bind(key)
            .bind(key)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an OAuth client")?;
        oauth_client_from_row(&row.ok_or_else(|| StoreError::NotFound(format!("OAuth client '{key}'")))?)
    }

    async fn insert_oauth_client(&self, c: &OAuthClient) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO oauth_clients (id, name, template, tenant, client_id, secret, secret_updated_at, scopes, \
             token_url, expires_on, comment, created_at, updated_at, credential_kind, certificate, signing_alg) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.template)
        .bind(&c.tenant)
        .bind(&c.client_id)
        .bind(c.secret.as_ref().map(|s| s.0.as_str()))
        .bind(c.secret_updated_at)
        .bind(json_list(&c.scopes))
        .bind(&c.token_url)
        .bind(&c.expires_on)
        .bind(&c.comment)
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.credential_kind.as_str())
        .bind(&c.certificate)
        .bind(&c.signing_alg)
        .execute(&self.pool)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("an OAuth client named '{}' exists already", c.name)))
            }
            r => r.map(|_| ()).ctx("inserting an OAuth client"),
        }
    }

    async fn update_oauth_client(&self, c: &OAuthClient) -> Result<()> {
        let r = sqlx::query(
            "UPDATE oauth_clients SET name=$1, template=$2, tenant=$3, client_id=$4, secret=$5, secret_updated_at=$6, \
             scopes=$7, token_url=$8, expires_on=$9, comment=$10, updated_at=$11, credential_kind=$12, certificate=$13, signing_alg=$14 \
             WHERE id=$15",
        )
        .bind(&c.name)
        .bind(&c.template)
        .bind(&c.tenant)
        .bind(&c.client_id)
        .bind(c.secret.as_ref().map(|s| s.0.as_str()))
        .bind(c.secret_updated_at)
        .bind(json_list(&c.scopes))
        .bind(&c.token_url)
        .bind(&c.expires_on)
        .bind(&c.comment)
        .bind(c.updated_at)
        .bind(c.credential_kind.as_str())
        .bind(&c.certificate)
        .bind(&c.signing_alg)
        .bind(&c.id)
        .execute(&self.pool)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("an OAuth client named '{}' exists already", c.name)))
            }
            Ok(done) if done.rows_affected() == 0 => Err(StoreError::NotFound(format!("OAuth client '{}'", c.id))),
            r => r.map(|_| ()).ctx("updating an OAuth client"),
        }
    }

    async fn delete_oauth_client(&self, id: &str) -> Result<()> {
        let users: Vec<String> = sqlx::query_scalar("SELECT name FROM accounts WHERE oauth_client_id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .ctx("checking OAuth client use")?;
        if !users.is_empty() {
            return Err(StoreError::Conflict(format!("the OAuth client is used by accounts: {}", users.join(", "))));
        }
        let done = sqlx::query("DELETE FROM oauth_clients WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("deleting an OAuth client")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("OAuth client '{id}'")));
        }
        Ok(())
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query("SELECT * FROM accounts ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .ctx("listing accounts")?;
        rows.iter().map(account_from_row).collect()
    }

    async fn get_account(&self, key: &str) -> Result<Account> {
        let row = sqlx::query("SELECT * FROM accounts WHERE id = $1 OR name = $2 ORDER BY id = $3 DESC LIMIT 1")
            .bind(key)
            .bind(key)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an account")?;
        account_from_row(&row.ok_or_else(|| StoreError::NotFound(format!("account '{key}'")))?)
    }

    async fn insert_account(&self, a: &Account) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO accounts (id, name, protocol, auth, username, password, password_updated_at, \
             oauth_client_id, send_address, send_name, connection, host, port, imap_folder, after_retrieval, \
             move_folder, poll_interval_secs, idle, max_sessions, enabled, comment, created_at, updated_at, oauth_mechanism) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24)",
        )
        .bind(&a.id)
        .bind(&a.name)
        .bind(a.protocol.as_str())
        .bind(a.auth.as_str())
        .bind(&a.username)
        .bind(a.password.as_ref().map(|s| s.0.as_str()))
        .bind(a.password_updated_at)
        .bind(&a.oauth_client_id)
        .bind(&a.send_address)
        .bind(&a.send_name)
        .bind(a.connection.as_str())
        .bind(&a.host)
        .bind(i64::from(a.port))
        .bind(&a.imap_folder)
        .bind(a.after_retrieval.as_str())
        .bind(&a.move_folder)
        .bind(i64::from(a.poll_interval_secs))
        .bind(a.idle)
        .bind(i64::from(a.max_sessions))
        .bind(a.enabled)
        .bind(&a.comment)
        .bind(a.created_at)
        .bind(a.updated_at)
        .bind(a.oauth_mechanism.as_str())
        .execute(&self.pool)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("an account named '{}' exists already", a.name)))
            }
            Err(e) if is_fk_violation(&e) => Err(StoreError::Conflict("the OAuth client does not exist".into())),
            r => r.map(|_| ()).ctx("inserting an account"),
        }
    }

    async fn update_account(&self, a: &Account) -> Result<()> {
        let r = sqlx::query(
            "UPDATE accounts SET name=$1, auth=$2, username=$3, password=$4, password_updated_at=$5, oauth_client_id=$6, \
             send_address=$7, send_name=$8, connection=$9, host=$10, port=$11, imap_folder=$12, after_retrieval=$13, \
             move_folder=$14, poll_interval_secs=$15, idle=$16, max_sessions=$17, enabled=$18, comment=$19, updated_at=$20, \
             oauth_mechanism=$21 WHERE id=$22",
        )
        .bind(&a.name)
        .bind(a.auth.as_str())
        .bind(&a.username)
        .bind(a.password.as_ref().map(|s| s.0.as_str()))
        .bind(a.password_updated_at)
        .bind(&a.oauth_client_id)
        .bind(&a.send_address)
        .bind(&a.send_name)
        .bind(a.connection.as_str())
        .bind(&a.host)
        .bind(i64::from(a.port))
        .bind(&a.imap_folder)
        .bind(a.after_retrieval.as_str())
        .bind(&a.move_folder)
        .bind(i64::from(a.poll_interval_secs))
        .bind(a.idle)
        .bind(i64::from(a.max_sessions))
        .bind(a.enabled)
        .bind(&a.comment)
        .bind(a.updated_at)
        .bind(a.oauth_mechanism.as_str())
        .bind(&a.id)
        .execute(&self.pool)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("an account named '{}' exists already", a.name)))
            }
            Err(e) if is_fk_violation(&e) => Err(StoreError::Conflict("the OAuth client does not exist".into())),
            Ok(done) if done.rows_affected() == 0 => Err(StoreError::NotFound(format!("account '{}'", a.id))),
            r => r.map(|_| ()).ctx("updating an account"),
        }
    }

    async fn delete_account(&self, id: &str) -> Result<()> {
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM mails WHERE account_id = $1 AND status IN ('queued','sending')")
                .bind(id)
                .fetch_one(&self.pool)
                .await
                .ctx("checking account use")?;
        if pending > 0 {
            return Err(StoreError::Conflict(format!(
                "the account has {pending} mails waiting to be sent; delete or let them finish first"
            )));
        }
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        sqlx::query("DELETE FROM mails WHERE account_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting an account's mails")?;
        let done = sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting an account")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("account '{id}'")));
        }
        tx.commit().await.ctx("committing")?;
        Ok(())
    }

    async fn record_account_health(&self, id: &str, at: Millis, error: Option<&str>) -> Result<()> {
        let q = match error {
            None => sqlx::query("UPDATE accounts SET last_success_at = $1 WHERE id = $2").bind(at).bind(id),
            Some(e) => sqlx::query("UPDATE accounts SET last_error = $1, last_error_at = $2 WHERE id = $3")
                .bind(e)
                .bind(at)
                .bind(id),
        };
        q.execute(&self.pool).await.ctx("recording account health")?;
        Ok(())
    }

    async fn insert_mail(&self, m: &NewMail) -> Result<Inserted> {
        let r = sqlx::query(
            "INSERT INTO mails (id, account_id, api_key_id, message_id, envelope_from, recipients, header_from, \
             to_display, cc_display, subject, attachments, size, raw, status, attempts, next_attempt_at, \
             idempotency_key, created_at, updated_at, body_text) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,'queued',0,$14,$15,$16,$17,$18)",
        )
        .bind(&m.id)
        .bind(&m.account_id)
        .bind(&m.api_key_id)
        .bind(&m.message_id)
        .bind(&m.envelope_from)
        .bind(json_list(&m.recipients))
        .bind(&m.header_from)
        .bind(&m.to_display)
        .bind(&m.cc_display)
        .bind(&m.subject)
        .bind(serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into()))
        .bind(m.raw.len() as i64)
        .bind(&m.raw)
        .bind(m.now)
        .bind(&m.idempotency_key)
        .bind(m.now)
        .bind(m.now)
        .bind(&m.body_text)
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => Ok(Inserted::Created(self.get_mail(&m.id).await?)),
            Err(e) if is_unique_violation(&e) && m.idempotency_key.is_some() => {
                let sql = format!(
                    "SELECT {MAIL_COLUMNS} FROM mails m JOIN accounts a ON a.id = m.account_id \
                     WHERE m.api_key_id IS NOT DISTINCT FROM $1 AND m.idempotency_key = $2"
                );
                let row = sqlx::query(&sql)
                    .bind(&m.api_key_id)
                    .bind(&m.idempotency_key)
                    .fetch_one(&self.pool)
                    .await
                    .ctx("reading the mail with the same idempotency key")?;
                Ok(Inserted::Existing(mail_from_row(&row)?))
            }
            Err(e) if is_fk_violation(&e) => Err(StoreError::NotFound(format!("account '{}'", m.account_id))),
            Err(e) => Err(StoreError::Database { context: "spooling a mail", source: e }),
        }
    }

    async fn get_mail(&self, id: &str) -> Result<Mail> {
        let sql = format!("SELECT {MAIL_COLUMNS} FROM mails m JOIN accounts a ON a.id = m.account_id WHERE m.id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await.ctx("reading a mail")?;
        mail_from_row(&row.ok_or_else(|| StoreError::NotFound(format!("mail '{id}'")))?)
    }

    async fn get_mail_raw(&self, id: &str) -> Result<Vec<u8>> {
        let raw: Option<Vec<u8>> = sqlx::query_scalar("SELECT raw FROM mails WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a mail's content")?;
        raw.ok_or_else(|| StoreError::NotFound(format!("mail '{id}'")))
    }

    async fn list_mails(&self, f: &MailFilter) -> Result<Page<Mail>> {
        let mut c = Conditions::default();
        if let Some(s) = f.status {
            c.push("m.status = $1", [Bind::Text(s.as_str().into())]);
        }
        if let Some(a) = &f.account_id {
            c.push("m.account_id = $1", [Bind::Text(a.clone())]);
        }
        if let Some(k) = &f.api_key_id {
            c.push("m.api_key_id = $1", [Bind::Text(k.clone())]);
        }
        c.search(
            &["m.header_from", "m.to_display", "m.cc_display", "m.subject", "m.recipients", "m.message_id", "m.body_text"],
            f.query.as_deref(),
        );
        c.range("m.created_at", f.since, f.until);
        let listing = Listing {
            select: MAIL_COLUMNS,
            from: "mails m JOIN accounts a ON a.id = m.account_id",
            order: "m.created_at DESC, m.id DESC",
            map: mail_from_row,
            what: "listing mails",
        };
        c.page(&self.pool, listing, (f.limit, f.offset)).await
    }

    async fn list_attempts(&self, mail_id: &str) -> Result<Vec<Attempt>> {
        let rows = sqlx::query("SELECT * FROM mail_attempts WHERE mail_id = $1 ORDER BY id")
            .bind(mail_id)
            .fetch_all(&self.pool)
            .await
            .ctx("listing attempts")?;
        rows.iter()
            .map(|r| {
                Ok(Attempt {
                    at: r.get("at"),
                    outcome: parse_enum(&r.get::<String, _>("outcome"), AttemptOutcome::parse, "outcome")?,
                    error: r.get("error"),
                    reply: r.get("reply"),
                    duration_ms: r.get("duration_ms"),
                })
            })
            .collect()
    }

    async fn claim_mails(&self, owner: &str, now: Millis, lease_ms: i64, limit: u32) -> Result<Vec<Mail>> {
        // One statement: pick the account of the most overdue mail nobody is claiming right
        // now, then lock and claim that account's due mails. SKIP LOCKED makes concurrent
        // claimers (other workers, other nodes) pass over each other's rows instead of waiting
        // for them; under READ COMMITTED a locked row is re-checked against the condition, so
        // a mail another claimer took in the meantime is not taken again.
        let due = "((status = 'queued' AND next_attempt_at <= $1) OR (status = 'sending' AND locked_until < $1))";
        let sql = format!(
            "UPDATE mails m SET status = 'sending', locked_by = $2, locked_until = $3, updated_at = $1 \
             FROM accounts a WHERE a.id = m.account_id AND m.id IN (SELECT id FROM mails WHERE {due} AND account_id = \
               (SELECT account_id FROM mails WHERE {due} ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
             ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING {MAIL_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .ctx("claiming mails")?;
        let mut mails = rows.iter().map(mail_from_row).collect::<Result<Vec<_>>>()?;
        mails.sort_by(|x, y| (x.next_attempt_at, &x.id).cmp(&(y.next_attempt_at, &y.id)));
        Ok(mails)
    }

    async fn finish_attempts(&self, owner: &str, records: &[AttemptRecord]) -> Result<()> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        for r in records {
            let sent_at = (r.new_status == MailStatus::Sent).then_some(r.at);
            let recipients = r.remaining_recipients.as_ref().map(|v| json_list(v));
            let done = sqlx::query(
                "UPDATE mails SET status = $1, attempts = attempts + $2, next_attempt_at = $3, last_error = $4, \
                 server_reply = COALESCE($5, server_reply), recipients = COALESCE($6, recipients), \
                 sent_at = COALESCE($7, sent_at), locked_by = NULL, locked_until = NULL, updated_at = $8 \
                 WHERE id = $9 AND locked_by = $10",
            )
            .bind(r.new_status.as_str())
            .bind(i64::from(r.counts))
            .bind(r.next_attempt_at)
            .bind(&r.error)
            .bind(&r.reply)
            .bind(recipients)
            .bind(sent_at)
            .bind(r.at)
            .bind(&r.mail_id)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .ctx("recording an attempt")?;
            if done.rows_affected() == 0 {
                tracing::warn!(mail_id = %r.mail_id, "lease lost before the attempt was recorded");
                continue;
            }
            sqlx::query(
                "INSERT INTO mail_attempts (mail_id, at, outcome, error, reply, duration_ms) VALUES ($1,$2,$3,$4,$5,$6)",
            )
            .bind(&r.mail_id)
            .bind(r.at)
            .bind(r.outcome.as_str())
            .bind(&r.error)
            .bind(&r.reply)
            .bind(r.duration_ms)
            .execute(&mut *tx)
            .await
            .ctx("recording an attempt")?;
            if r.outcome == AttemptOutcome::Sent {
                sqlx::query(
                    "INSERT INTO traffic (direction, account_name, mail_id, message_id, from_addr, to_addrs, cc_addrs, \
                     subject, attachments, size, at) SELECT 'out', a.name, m.id, m.message_id, m.header_from, \
                     m.to_display, m.cc_display, m.subject, m.attachments, m.size, $1 \
                     FROM mails m JOIN accounts a ON a.id = m.account_id WHERE m.id = $2",
                )
                .bind(r.at)
                .bind(&r.mail_id)
                .execute(&mut *tx)
                .await
                .ctx("writing the traffic log")?;
            }
        }
        tx.commit().await.ctx("committing attempts")?;
        Ok(())
    }

    async fn release_claims(&self, owner: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE mails SET status = 'queued', locked_by = NULL, locked_until = NULL WHERE locked_by = $1 AND status = 'sending'",
        )
        .bind(owner)
        .execute(&self.pool)
        .await
        .ctx("releasing claims")?;
        Ok(done.rows_affected())
    }

    async fn release_node_claims(&self, node: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE mails SET status = 'queued', locked_by = NULL, locked_until = NULL \
             WHERE status = 'sending' AND starts_with(locked_by, $1)",
        )
        .bind(format!("{node}/"))
        .execute(&self.pool)
        .await
        .ctx("releasing a node's claims")?;
        Ok(done.rows_affected())
    }

    async fn next_due_at(&self) -> Result<Option<Millis>> {
        sqlx::query_scalar(
            "SELECT MIN(t) FROM (SELECT MIN(next_attempt_at) AS t FROM mails WHERE status = 'queued' \
             UNION ALL SELECT MIN(locked_until) FROM mails WHERE status = 'sending') AS due",
        )
        .fetch_one(&self.pool)
        .await
        .ctx("finding the next due mail")
    }

    async fn retry_mail(&self, id: &str, now: Millis) -> Result<Mail> {
        let done = sqlx::query(
            "UPDATE mails SET status = 'queued', attempts = 0, next_attempt_at = $1, updated_at = $2 \
             WHERE id = $3 AND status IN ('failed', 'queued')",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .ctx("queuing a mail again")?;
        let mail = self.get_mail(id).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("the mail is {}; only failed or queued mails can be retried", mail.status)));
        }
        Ok(mail)
    }

    async fn delete_mail(&self, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM mails WHERE id = $1 AND status != 'sending'")
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("deleting a mail")?;
        if done.rows_affected() == 0 {
            let mail = self.get_mail(id).await?;
            return Err(StoreError::Conflict(format!("the mail is {} right now; try again in a moment", mail.status)));
        }
        Ok(())
    }

    async fn count_mails_by_status(&self) -> Result<Vec<(MailStatus, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT status, COUNT(*) FROM mails GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .ctx("counting mails")?;
        rows.into_iter().map(|(s, n)| Ok((parse_enum(&s, MailStatus::parse, "mail status")?, n))).collect()
    }

    async fn list_traffic(&self, f: &TrafficFilter) -> Result<Page<TrafficEntry>> {
        let mut c = Conditions::default();
        if let Some(d) = f.direction {
            c.push("direction = $1", [Bind::Text(d.as_str().into())]);
        }
        if let Some(a) = &f.account_name {
            c.push("account_name = $1", [Bind::Text(a.clone())]);
        }
        c.search(&["from_addr", "to_addrs", "cc_addrs", "subject"], f.query.as_deref());
        c.range("at", f.since, f.until);
        let listing =
            Listing { select: "*", from: "traffic", order: "at DESC, id DESC", map: traffic_from_row, what: "listing traffic" };
        c.page(&self.pool, listing, (f.limit, f.offset)).await
    }

    async fn purge_traffic(&self, before: Millis) -> Result<u64> {
        let done = sqlx::query("DELETE FROM traffic WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .ctx("purging traffic")?;
        Ok(done.rows_affected())
    }

    async fn insert_api_key(&self, key: &ApiKey, hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO api_keys (id, name, prefix, hash, admin, created_at) VALUES ($1,$2,$3,$4,$5,$6)")
            .bind(&key.id)
            .bind(&key.name)
            .bind(&key.prefix)
            .bind(hash)
            .bind(key.admin)
            .bind(key.created_at)
            .execute(&self.pool)
            .await
            .ctx("inserting an API key")?;
        Ok(())
    }

    async fn authenticate_api_key(&self, hash: &str, now: Millis) -> Result<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE hash = $1 AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .ctx("checking an API key")?;
        let Some(row) = row else { return Ok(None) };
        let key = api_key_from_row(&row);
        // As on SQLite: a write per request would make every API call contend for the key's
        // row (several nodes, one key): refresh the last-used time at most once a minute.
        if key.last_used_at.is_none_or(|t| now - t > 60_000) {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&key.id)
                .execute(&self.pool)
                .await
                .ctx("marking an API key used")?;
        }
        Ok(Some(key))
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at")
            .fetch_all(&self.pool)
            .await
            .ctx("listing API keys")?;
        Ok(rows.iter().map(api_key_from_row).collect())
    }

    async fn revoke_api_key(&self, id: &str, now: Millis) -> Result<()> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("revoking an API key")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("API key '{id}'")));
        }
        Ok(())
    }

    async fn insert_inbox_message(&self, m: &NewInboxMessage) -> Result<bool> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let done = sqlx::query(
            "INSERT INTO inbox (id, account_id, folder, uidvalidity, uid, message_id, subject, from_addr, to_addrs, \
             cc_addrs, date, size, parsed, problems, raw, received_at, body_text) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) \
             ON CONFLICT (account_id, folder, uidvalidity, uid) DO NOTHING",
        )
        .bind(&m.id)
        .bind(&m.account_id)
        .bind(&m.folder)
        .bind(m.uidvalidity)
        .bind(m.uid)
        .bind(&m.message_id)
        .bind(&m.subject)
        .bind(&m.from)
        .bind(&m.to)
        .bind(&m.cc)
        .bind(m.date)
        .bind(m.raw.len() as i64)
        .bind(&m.parsed)
        .bind(json_list(&m.problems))
        .bind(&m.raw)
        .bind(m.now)
        .bind(&m.body_text)
        .execute(&mut *tx)
        .await
        .ctx("storing a retrieved message")?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO traffic (direction, account_name, mail_id, message_id, from_addr, to_addrs, cc_addrs, subject, \
             attachments, size, at) SELECT 'in', a.name, $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM accounts a WHERE a.id = $10",
        )
        .bind(&m.id)
        .bind(m.message_id.clone().unwrap_or_default())
        .bind(&m.from)
        .bind(&m.to)
        .bind(&m.cc)
        .bind(&m.subject)
        .bind(serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into()))
        .bind(m.raw.len() as i64)
        .bind(m.now)
        .bind(&m.account_id)
        .execute(&mut *tx)
        .await
        .ctx("writing the traffic log")?;
        tx.commit().await.ctx("committing a retrieved message")?;
        Ok(true)
    }

    async fn list_inbox(&self, f: &InboxFilter) -> Result<Page<InboxMessage>> {
        let mut c = Conditions::default();
        if let Some(a) = &f.account_id {
            c.push("i.account_id = $1", [Bind::Text(a.clone())]);
        }
        match f.consumed {
            Some(true) => c.push("i.consumed_at IS NOT NULL", []),
            Some(false) => c.push("i.consumed_at IS NULL", []),
            None => {}
        }
        c.search(&["i.from_addr", "i.to_addrs", "i.cc_addrs", "i.subject", "i.message_id", "i.body_text"], f.query.as_deref());
        c.range("i.received_at", f.since, f.until);
        let listing = Listing {
            select: INBOX_COLUMNS,
            from: "inbox i JOIN accounts a ON a.id = i.account_id",
            order: "i.received_at DESC, i.id DESC",
            map: inbox_from_row,
            what: "listing messages",
        };
        c.page(&self.pool, listing, (f.limit, f.offset)).await
    }

    async fn get_inbox_message(&self, id: &str) -> Result<InboxMessage> {
        let sql = format!("SELECT {INBOX_COLUMNS} FROM inbox i JOIN accounts a ON a.id = i.account_id WHERE i.id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await.ctx("reading a message")?;
        inbox_from_row(&row.ok_or_else(|| StoreError::NotFound(format!("message '{id}'")))?)
    }

    async fn get_inbox_raw(&self, id: &str) -> Result<Vec<u8>> {
        let raw: Option<Vec<u8>> = sqlx::query_scalar("SELECT raw FROM inbox WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a message's content")?;
        raw.ok_or_else(|| StoreError::NotFound(format!("message '{id}'")))
    }

    async fn consume_inbox_message(&self, id: &str, now: Millis) -> Result<()> {
        let done = sqlx::query("UPDATE inbox SET consumed_at = COALESCE(consumed_at, $1), claimed_by = NULL, claimed_until = NULL WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("consuming a message")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("message '{id}'")));
        }
        Ok(())
    }

    async fn claim_inbox_message(
        &self,
        claimer: &str,
        now: Millis,
        lease_ms: i64,
        account_id: Option<&str>,
    ) -> Result<Option<InboxMessage>> {
        let id: Option<String> = sqlx::query_scalar(
            "UPDATE inbox SET claimed_by = $1, claimed_until = $2 WHERE id = (SELECT id FROM inbox \
             WHERE consumed_at IS NULL AND (claimed_until IS NULL OR claimed_until < $3) AND ($4::text IS NULL OR account_id = $4) \
             ORDER BY received_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id",
        )
        .bind(claimer)
        .bind(now + lease_ms)
        .bind(now)
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await
        .ctx("claiming a message")?;
        match id {
            Some(id) => Ok(Some(self.get_inbox_message(&id).await?)),
            None => Ok(None),
        }
    }

    async fn purge_consumed_inbox(&self, consumed_before: Millis) -> Result<u64> {
        let done = sqlx::query("DELETE FROM inbox WHERE consumed_at IS NOT NULL AND consumed_at < $1")
            .bind(consumed_before)
            .execute(&self.pool)
            .await
            .ctx("purging consumed messages")?;
        Ok(done.rows_affected())
    }

    async fn get_retrieval_state(&self, account_id: &str) -> Result<Option<RetrievalState>> {
        let row = sqlx::query("SELECT * FROM retrieval_state WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading retrieval state")?;
        row.map(|r| {
            Ok(RetrievalState {
                account_id: r.get("account_id"),
                uidvalidity: r.get("uidvalidity"),
                last_run_at: r.get("last_run_at"),
                last_success_at: r.get("last_success_at"),
                last_error: r.get("last_error"),
                last_error_at: r.get("last_error_at"),
                stored_total: r.get("stored_total"),
                oversize: parse_json(&r.get::<String, _>("oversize"), "oversize")?,
            })
        })
        .transpose()
    }

    async fn put_retrieval_state(&self, s: &RetrievalState) -> Result<()> {
        sqlx::query(
            "INSERT INTO retrieval_state (account_id, uidvalidity, last_run_at, last_success_at, last_error, last_error_at, \
             stored_total, oversize) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT(account_id) DO UPDATE SET \
             uidvalidity = excluded.uidvalidity, last_run_at = excluded.last_run_at, last_success_at = excluded.last_success_at, \
             last_error = excluded.last_error, last_error_at = excluded.last_error_at, stored_total = excluded.stored_total, \
             oversize = excluded.oversize",
        )
        .bind(&s.account_id)
        .bind(s.uidvalidity)
        .bind(s.last_run_at)
        .bind(s.last_success_at)
        .bind(&s.last_error)
        .bind(s.last_error_at)
        .bind(s.stored_total)
        .bind(serde_json::to_string(&s.oversize).unwrap_or_else(|_| "[]".into()))
        .execute(&self.pool)
        .await
        .ctx("writing retrieval state")?;
        Ok(())
    }

    async fn expiry_notices_sent(&self, client_id: &str, expires_on: &str) -> Result<Vec<i64>> {
        sqlx::query_scalar("SELECT threshold FROM expiry_notices WHERE oauth_client_id = $1 AND expires_on = $2")
            .bind(client_id)
            .bind(expires_on)
            .fetch_all(&self.pool)
            .await
            .ctx("reading expiry notices")
    }

    async fn record_expiry_notices(
        &self,
        client_id: &str,
        expires_on: &str,
        thresholds: &[i64],
        at: Millis,
        mail_id: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        for t in thresholds {
            sqlx::query(
                "INSERT INTO expiry_notices (oauth_client_id, expires_on, threshold, sent_at, mail_id) VALUES ($1,$2,$3,$4,$5) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(client_id)
            .bind(expires_on)
            .bind(t)
            .bind(at)
            .bind(mail_id)
            .execute(&mut *tx)
            .await
            .ctx("recording an expiry notice")?;
        }
        tx.commit().await.ctx("committing expiry notices")?;
        Ok(())
    }

    async fn acquire_mailbox_lease(&self, account_id: &str, owner: &str, now: Millis, lease_ms: i64) -> Result<bool> {
        let got: std::result::Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO mailbox_leases (account_id, owner, locked_until) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id) DO UPDATE SET owner = excluded.owner, locked_until = excluded.locked_until \
             WHERE mailbox_leases.owner = excluded.owner OR mailbox_leases.locked_until < $4 RETURNING owner",
        )
        .bind(account_id)
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(&self.pool)
        .await;
        match got {
            Ok(got) => Ok(got.is_some()),
            // The account was deleted meanwhile: nothing to retrieve.
            Err(e) if is_fk_violation(&e) => Ok(false),
            Err(e) => Err(StoreError::Database { context: "taking a mailbox lease", source: e }),
        }
    }

    async fn release_mailbox_lease(&self, account_id: &str, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM mailbox_leases WHERE account_id = $1 AND owner = $2")
            .bind(account_id)
            .bind(owner)
            .execute(&self.pool)
            .await
            .ctx("releasing a mailbox lease")?;
        Ok(())
    }

    async fn claim_job_run(&self, name: &str, period_start: Millis, owner: &str, now: Millis) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO job_runs (name, period_start, owner, started_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(period_start)
        .bind(owner)
        .bind(now)
        .execute(&self.pool)
        .await
        .ctx("claiming a job run")?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_settings(&self) -> Result<BTreeMap<String, String>> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM settings")
            .fetch_all(&self.pool)
            .await
            .ctx("reading settings")?;
        Ok(rows.into_iter().collect())
    }

    async fn put_setting(&self, key: &str, value: Option<&str>) -> Result<()> {
        let q = match value {
            Some(v) => sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                .bind(key)
                .bind(v),
            None => sqlx::query("DELETE FROM settings WHERE key = $1").bind(key),
        };
        q.execute(&self.pool).await.ctx("writing a setting")?;
        Ok(())
    }

    async fn count_admins(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM admins").fetch_one(&self.pool).await.ctx("counting admins")
    }

    async fn insert_admin(&self, a: &AdminUser) -> Result<()> {
        let r = sqlx::query("INSERT INTO admins (id, username, password_hash, created_at, password_changed_at) VALUES ($1,$2,$3,$4,$5)")
            .bind(&a.id)
            .bind(&a.username)
            .bind(&a.password_hash)
            .bind(a.created_at)
            .bind(a.password_changed_at)
            .execute(&self.pool)
            .await;
        match r {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("an admin named '{}' exists already", a.username))),
            r => r.map(|_| ()).ctx("inserting an admin"),
        }
    }

    async fn get_admin_by_username(&self, username: &str) -> Result<Option<AdminUser>> {
        let row = sqlx::query("SELECT * FROM admins WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an admin")?;
        Ok(row.map(|r| AdminUser {
            id: r.get("id"),
            username: r.get("username"),
            password_hash: r.get("password_hash"),
            created_at: r.get("created_at"),
            password_changed_at: r.get("password_changed_at"),
        }))
    }

    async fn set_admin_password(&self, admin_id: &str, password_hash: &str, now: Millis) -> Result<()> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let done = sqlx::query("UPDATE admins SET password_hash = $1, password_changed_at = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(now)
            .bind(admin_id)
            .execute(&mut *tx)
            .await
            .ctx("changing a password")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("admin '{admin_id}'")));
        }
        sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1")
            .bind(admin_id)
            .execute(&mut *tx)
            .await
            .ctx("ending sessions")?;
        tx.commit().await.ctx("committing a password change")
    }

    async fn insert_admin_session(&self, s: &AdminSession) -> Result<()> {
        sqlx::query("DELETE FROM admin_sessions WHERE expires_at < $1")
            .bind(s.created_at)
            .execute(&self.pool)
            .await
            .ctx("deleting expired sessions")?;
        sqlx::query("INSERT INTO admin_sessions (id_hash, admin_id, csrf_token, created_at, expires_at) VALUES ($1,$2,$3,$4,$5)")
            .bind(&s.id_hash)
            .bind(&s.admin_id)
            .bind(&s.csrf_token)
            .bind(s.created_at)
            .bind(s.expires_at)
            .execute(&self.pool)
            .await
            .ctx("inserting a session")?;
        Ok(())
    }

    async fn get_admin_session(&self, id_hash: &str, now: Millis) -> Result<Option<AdminSession>> {
        let row = sqlx::query(
            "SELECT s.*, a.username FROM admin_sessions s JOIN admins a ON a.id = s.admin_id WHERE s.id_hash = $1 AND s.expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a session")?;
        Ok(row.map(|r| AdminSession {
            id_hash: r.get("id_hash"),
            admin_id: r.get("admin_id"),
            username: r.get("username"),
            csrf_token: r.get("csrf_token"),
            created_at: r.get("created_at"),
            expires_at: r.get("expires_at"),
        }))
    }

    async fn delete_admin_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM admin_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .ctx("deleting a session")?;
        Ok(())
    }

    async fn insert_audit(&self, e: &AuditEntry) -> Result<()> {
        sqlx::query("INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1,$2,$3,$4,$5)")
            .bind(e.at)
            .bind(&e.actor)
            .bind(&e.action)
            .bind(&e.target)
            .bind(&e.detail)
            .execute(&self.pool)
            .await
            .ctx("writing the audit log")?;
        Ok(())
    }

    async fn list_audit(&self, limit: u32, offset: u64) -> Result<Page<AuditEntry>> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log").fetch_one(&self.pool).await.ctx("counting the audit log")?;
        let rows = sqlx::query("SELECT * FROM audit_log ORDER BY id DESC LIMIT $1 OFFSET $2")
            .bind(i64::from(limit))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .ctx("reading the audit log")?;
        let items = rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get("id"),
                at: r.get("at"),
                actor: r.get("actor"),
                action: r.get("action"),
                target: r.get("target"),
                detail: r.get("detail"),
            })
            .collect();
        Ok(Page { items, total })
    }
}
