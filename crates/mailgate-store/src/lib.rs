//! mailgate's storage.
//!
//! [`Store`] is the one backend-neutral interface the rest of mailgate uses (held as
//! `Arc<dyn Store>`); [`sqlite::SqliteStore`] implements it on an embedded SQLite file in WAL
//! mode, [`postgres::PgStore`] on PostgreSQL (one node or several sharing the database).
//! [`vault::Vault`] encrypts secrets at rest with the master key. Migrations live in
//! `migrations/<backend>/` and are applied by [`migrate`], never edited once released.
//!
//! Work is claimed with leases (`locked_by`, `locked_until`) in single statements, so that a
//! process that dies mid-send has its mails taken over once the lease lapses.

pub mod migrate;
pub mod postgres;
pub mod sqlite;
pub mod vault;

use std::collections::BTreeMap;

use async_trait::async_trait;
use mailgate_core::Millis;
use mailgate_core::model::{
    Account, ApiKey, Attempt, AttemptOutcome, AttachmentSummary, Direction, InboxMessage, Mail, MailStatus, OAuthClient,
    RetrievalState, TrafficEntry,
};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use vault::Vault;

/// What can go wrong in the store; callers act on the variant.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error while {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches a description of what was being done to a database error.
pub(crate) trait Context<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|source| StoreError::Database { context, source })
    }
}

/// One page of a list, with the total number of matching rows.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// A mail to add to the spool.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub id: String,
    pub account_id: String,
    pub api_key_id: Option<String>,
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub header_from: String,
    pub to_display: String,
    pub cc_display: String,
    pub subject: String,
    pub attachments: Vec<AttachmentSummary>,
    pub raw: Vec<u8>,
    /// The text the list search looks in besides addresses and subject (see
    /// `mailgate_core::submission::searchable_text`).
    pub body_text: String,
    pub idempotency_key: Option<String>,
    pub now: Millis,
}

/// Whether `insert_mail` stored a new mail or found one with the same idempotency key.
#[derive(Debug, Clone)]
pub enum Inserted {
    Created(Mail),
    Existing(Mail),
}

/// Filters for listing spooled mails.
#[derive(Debug, Clone, Default)]
pub struct MailFilter {
    pub status: Option<MailStatus>,
    pub account_id: Option<String>,
    pub api_key_id: Option<String>,
    /// Substring search over addresses and subject.
    pub query: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub limit: u32,
    pub offset: u64,
}

/// Filters for listing the traffic log.
#[derive(Debug, Clone, Default)]
pub struct TrafficFilter {
    pub direction: Option<Direction>,
    pub account_name: Option<String>,
    pub query: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub limit: u32,
    pub offset: u64,
}

/// A retrieved message to store.
#[derive(Debug, Clone)]
pub struct NewInboxMessage {
    pub id: String,
    pub account_id: String,
    pub folder: String,
    pub uidvalidity: i64,
    pub uid: i64,
    pub message_id: Option<String>,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub date: Option<Millis>,
    pub parsed: String,
    pub problems: Vec<String>,
    pub attachments: Vec<AttachmentSummary>,
    pub raw: Vec<u8>,
    /// The text the list search looks in besides addresses and subject.
    pub body_text: String,
    pub now: Millis,
}

/// Filters for listing retrieved mail.
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    pub account_id: Option<String>,
    /// `Some(false)`: only messages not consumed yet.
    pub consumed: Option<bool>,
    pub query: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub limit: u32,
    pub offset: u64,
}

/// What happened to a claimed mail, as the spool worker decided it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub mail_id: String,
    pub at: Millis,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    pub reply: Option<String>,
    pub duration_ms: i64,
    /// The status the mail moves to (`sent`, `queued` for a retry, `failed`).
    pub new_status: MailStatus,
    pub next_attempt_at: Millis,
    /// Recipients still to deliver, when some were accepted and others deferred.
    pub remaining_recipients: Option<Vec<String>>,
    /// Whether this attempt counts toward the attempt limit (a crash-recovered claim does not).
    pub counts: bool,
}

/// An admin login of the web UI.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub id: String,
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub created_at: Millis,
    pub password_changed_at: Millis,
}

/// A logged-in browser session, found by the hash of its cookie value.
#[derive(Debug, Clone)]
pub struct AdminSession {
    pub id_hash: String,
    pub admin_id: String,
    /// Filled in by `get_admin_session`.
    pub username: String,
    pub csrf_token: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// One admin change: who, what, when (never a secret value).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// The storage interface of mailgate.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    async fn list_oauth_clients(&self) -> Result<Vec<OAuthClient>>;
    /// By id or by name.
    async fn get_oauth_client(&self, key: &str) -> Result<OAuthClient>;
    async fn insert_oauth_client(&self, client: &OAuthClient) -> Result<()>;
    async fn update_oauth_client(&self, client: &OAuthClient) -> Result<()>;
    async fn delete_oauth_client(&self, id: &str) -> Result<()>;

    async fn list_accounts(&self) -> Result<Vec<Account>>;
    /// By id or by name.
    async fn get_account(&self, key: &str) -> Result<Account>;
    async fn insert_account(&self, account: &Account) -> Result<()>;
    async fn update_account(&self, account: &Account) -> Result<()>;
    async fn delete_account(&self, id: &str) -> Result<()>;
    /// Records the latest success (`error` = None) or failure of an account.
    async fn record_account_health(&self, id: &str, at: Millis, error: Option<&str>) -> Result<()>;

    async fn insert_mail(&self, mail: &NewMail) -> Result<Inserted>;
    async fn get_mail(&self, id: &str) -> Result<Mail>;
    async fn get_mail_raw(&self, id: &str) -> Result<Vec<u8>>;
    async fn list_mails(&self, filter: &MailFilter) -> Result<Page<Mail>>;
    async fn list_attempts(&self, mail_id: &str) -> Result<Vec<Attempt>>;
    /// Claims up to `limit` due mails of one account for `owner` until `now + lease_ms`:
    /// queued mails whose time has come, and mails whose previous lease lapsed.
    async fn claim_mails(&self, owner: &str, now: Millis, lease_ms: i64, limit: u32) -> Result<Vec<Mail>>;
    /// Records the outcome of attempts made under `owner`'s lease (others are ignored: the
    /// lease was lost and another worker owns the mail now).
    async fn finish_attempts(&self, owner: &str, records: &[AttemptRecord]) -> Result<()>;
    /// Gives back every mail `owner` holds without recording an attempt.
    async fn release_claims(&self, owner: &str) -> Result<u64>;
    /// Gives back the claims of every worker of `node` (`node/…` owners): at start, the
    /// claims a killed earlier run of this node left behind.
    async fn release_node_claims(&self, node: &str) -> Result<u64>;
    /// The earliest time a queued mail becomes due, or a held lease lapses.
    async fn next_due_at(&self) -> Result<Option<Millis>>;
    /// Queues a failed (or waiting) mail for an immediate new try with a fresh attempt count.
    async fn retry_mail(&self, id: &str, now: Millis) -> Result<Mail>;
    async fn delete_mail(&self, id: &str) -> Result<()>;
    async fn count_mails_by_status(&self) -> Result<Vec<(MailStatus, i64)>>;

    async fn list_traffic(&self, filter: &TrafficFilter) -> Result<Page<TrafficEntry>>;
    async fn purge_traffic(&self, before: Millis) -> Result<u64>;

    async fn insert_api_key(&self, key: &ApiKey, hash: &str) -> Result<()>;
    /// The key with this hash, if it exists and is not revoked; marks it used.
    async fn authenticate_api_key(&self, hash: &str, now: Millis) -> Result<Option<ApiKey>>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    async fn revoke_api_key(&self, id: &str, now: Millis) -> Result<()>;

    /// Stores a retrieved message and its traffic row; `false` when the same (account, folder,
    /// UIDVALIDITY, UID) is stored already (nothing changes then).
    async fn insert_inbox_message(&self, message: &NewInboxMessage) -> Result<bool>;
    async fn list_inbox(&self, filter: &InboxFilter) -> Result<Page<InboxMessage>>;
    async fn get_inbox_message(&self, id: &str) -> Result<InboxMessage>;
    async fn get_inbox_raw(&self, id: &str) -> Result<Vec<u8>>;
    /// Marks a message consumed (idempotent); it is purged after the retention time.
    async fn consume_inbox_message(&self, id: &str, now: Millis) -> Result<()>;
    /// Hands the oldest unconsumed, unclaimed (or lapsed) message to `claimer` until
    /// `now + lease_ms`; one message goes to exactly one claimer.
    async fn claim_inbox_message(
        &self,
        claimer: &str,
        now: Millis,
        lease_ms: i64,
        account_id: Option<&str>,
    ) -> Result<Option<InboxMessage>>;
    async fn purge_consumed_inbox(&self, consumed_before: Millis) -> Result<u64>;
    async fn get_retrieval_state(&self, account_id: &str) -> Result<Option<RetrievalState>>;
    async fn put_retrieval_state(&self, state: &RetrievalState) -> Result<()>;

    /// Thresholds (days; -1 = expired) for which a notice about `client_id` expiring on
    /// `expires_on` was sent.
    async fn expiry_notices_sent(&self, client_id: &str, expires_on: &str) -> Result<Vec<i64>>;
    /// Records that the notice for these thresholds went out (as mail `mail_id`).
    async fn record_expiry_notices(
        &self,
        client_id: &str,
        expires_on: &str,
        thresholds: &[i64],
        at: Millis,
        mail_id: Option<&str>,
    ) -> Result<()>;

    /// Takes or renews the lease on retrieving IMAP account `account_id` for `owner` (a node)
    /// until `now + lease_ms`: granted when nobody holds it, `owner` holds it already, or the
    /// holder's lease lapsed. `false`: another node holds it.
    async fn acquire_mailbox_lease(&self, account_id: &str, owner: &str, now: Millis, lease_ms: i64) -> Result<bool>;
    /// Gives the lease back (if `owner` holds it), so that another node can take over at once.
    async fn release_mailbox_lease(&self, account_id: &str, owner: &str) -> Result<()>;
    /// Claims the run of periodic job `name` for the period starting at `period_start`:
    /// `true` for the one caller across all nodes that gets it, `false` for every other.
    async fn claim_job_run(&self, name: &str, period_start: Millis, owner: &str, now: Millis) -> Result<bool>;

    async fn get_settings(&self) -> Result<BTreeMap<String, String>>;
    /// Sets (or with `None` removes) one setting.
    async fn put_setting(&self, key: &str, value: Option<&str>) -> Result<()>;

    // Admin web UI.
    async fn count_admins(&self) -> Result<i64>;
    /// `Conflict` when the username is taken.
    async fn insert_admin(&self, admin: &AdminUser) -> Result<()>;
    async fn get_admin_by_username(&self, username: &str) -> Result<Option<AdminUser>>;
    /// Sets a new password hash and ends every session of that admin.
    async fn set_admin_password(&self, admin_id: &str, password_hash: &str, now: Millis) -> Result<()>;
    /// Stores a session (and deletes sessions that have expired).
    async fn insert_admin_session(&self, session: &AdminSession) -> Result<()>;
    /// The session when it exists and has not expired at `now`, with the admin's username.
    async fn get_admin_session(&self, id_hash: &str, now: Millis) -> Result<Option<AdminSession>>;
    async fn delete_admin_session(&self, id_hash: &str) -> Result<()>;
    /// Appends to the audit log (`id` is assigned).
    async fn insert_audit(&self, entry: &AuditEntry) -> Result<()>;
    /// Newest first.
    async fn list_audit(&self, limit: u32, offset: u64) -> Result<Page<AuditEntry>>;
}

/// Whether a database URL names PostgreSQL (`postgres://…`, `postgresql://…`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens the store a database URL names: PostgreSQL (`postgres://…`, `postgresql://…`), else
/// SQLite (`sqlite://path` or a bare path). Pending migrations are applied.
pub async fn connect(url: &str) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    if is_postgres_url(url) {
        return Ok(std::sync::Arc::new(PgStore::open(url).await?));
    }
    let store = SqliteStore::open(url).await?;
    Ok(std::sync::Arc::new(store))
}
