//! The retriever: for every enabled IMAP account one task, one session at a time.
//!
//! A pass lists the mailbox's UIDs and sizes, leaves messages over the size limit on the server
//! (and reports them), then fetches the rest in batches bounded by count and bytes with
//! `BODY.PEEK[]` (nothing is marked \Seen by a failed run). Each message is committed to the
//! store — raw bytes and parsed fields — before anything happens on the server; then exactly
//! those UIDs are deleted (`UID STORE +FLAGS.SILENT (\Deleted)` + `UID EXPUNGE`) or moved. A
//! crash in between leaves the messages on the server; the next pass finds them stored already
//! (same account, folder, UIDVALIDITY and UID) and only removes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use mailgate_core::model::{Account, AfterRetrieval, AttachmentSummary, AuthMethod, OversizeMessage, Protocol, RetrievalState};
use mailgate_core::metrics::{self, Metrics};
use mailgate_core::{Millis, new_id, now_millis};
use mailgate_oauth::TokenCache;
use mailgate_oauth::account::{self as login, Login};
use mailgate_store::{NewInboxMessage, Store, Vault};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::parse;
use crate::session::{self, ImapCredentials, ImapError, ImapSession};

/// Tuning of the retriever.
#[derive(Debug, Clone)]
pub struct RetrieverConfig {
    /// Messages larger than this stay on the server and are reported.
    pub max_message_bytes: u64,
    pub batch_messages: usize,
    pub batch_bytes: u64,
    pub timeout: Duration,
    /// How often the list of accounts is re-read (new, changed, removed accounts).
    pub refresh_interval: Duration,
    /// Longest IDLE before the session is renewed (servers drop idle sessions after ~30 min).
    pub idle_max: Duration,
    /// Renew the session this long before its access token expires.
    pub token_margin: Duration,
    /// This node's name as the holder of mailbox leases (unique among running nodes).
    pub node: String,
    /// How long a mailbox lease lasts without renewal: how soon another node takes over the
    /// accounts of a node that died. It is renewed every sixth of that.
    pub lease: Duration,
}

impl Default for RetrieverConfig {
    fn default() -> Self {
        RetrieverConfig {
            max_message_bytes: 25 * 1024 * 1024,
            batch_messages: 25,
            batch_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_secs(60),
            refresh_interval: Duration::from_secs(5),
            idle_max: Duration::from_secs(25 * 60),
            token_margin: Duration::from_secs(300),
            node: "local".into(),
            lease: Duration::from_secs(30),
        }
    }
}

/// What one pass over a mailbox did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub stored: usize,
    pub duplicates: usize,
    pub removed: usize,
    pub oversize: usize,
}

/// Retrieval for every IMAP account.
pub struct Retriever {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    tokens: Arc<TokenCache>,
    tls: Arc<rustls::ClientConfig>,
    config: RetrieverConfig,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    metrics: Arc<Metrics>,
}

struct AccountTask {
    version: Millis,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// How a session ended.
enum Ended {
    /// Done for now: wait for the poll interval (or a wake-up).
    Wait,
    /// The session must be renewed at once (IDLE limit or token expiry).
    Reconnect,
}

fn uid_set(uids: &[u32]) -> String {
    uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

impl Retriever {
    pub fn new(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        tokens: Arc<TokenCache>,
        tls: Arc<rustls::ClientConfig>,
        config: RetrieverConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Retriever> {
        Arc::new(Retriever { store, vault, tokens, tls, config, wakers: Mutex::new(HashMap::new()), metrics })
    }

    fn waker(&self, account_id: &str) -> Arc<Notify> {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner()).entry(account_id.to_string()).or_default().clone()
    }

    /// Asks the account's task to retrieve now (ends an IDLE or a wait).
    pub fn wake(&self, account_id: &str) {
        self.waker(account_id).notify_one();
    }

    /// Runs one task per enabled IMAP account until `shutdown`; follows account changes.
    pub fn spawn(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tasks: HashMap<String, AccountTask> = HashMap::new();
            while !*shutdown.borrow() {
                match this.store.list_accounts().await {
                    Ok(accounts) => {
                        let wanted: HashMap<String, Account> = accounts
                            .into_iter()
                            .filter(|a| a.protocol == Protocol::Imap && a.enabled)
                            .map(|a| (a.id.clone(), a))
                            .collect();
                        tasks.retain(|id, task| {
                            let keep = wanted.get(id).is_some_and(|a| a.updated_at == task.version);
                            if !keep {
                                let _ = task.stop.send(true);
                            }
                            keep
                        });
                        for (id, account) in wanted {
                            if let std::collections::hash_map::Entry::Vacant(e) = tasks.entry(id) {
                                let (stop, stop_rx) = watch::channel(false);
                                let version = account.updated_at;
                                let handle = tokio::spawn(this.clone().account_loop(account, stop_rx));
                                e.insert(AccountTask { version, stop, handle });
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the accounts to retrieve"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(this.config.refresh_interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
            for task in tasks.values() {
                let _ = task.stop.send(true);
            }
            for (_, task) in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(10), task.handle).await;
            }
        })
    }

    /// Keeps `held` true while this node holds the account's mailbox lease: tries to take or
    /// renew it every sixth of the lease time; a failure (taken, or no database) counts as lost.
    async fn heartbeat(self: Arc<Self>, account_id: String, held: watch::Sender<bool>) {
        let lease_ms = self.config.lease.as_millis() as i64;
        let beat = (self.config.lease / 6).max(Duration::from_millis(100));
        loop {
            let ok = match self.store.acquire_mailbox_lease(&account_id, &self.config.node, now_millis(), lease_ms).await {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::warn!(account_id = %account_id, error = %e, "cannot renew the mailbox lease");
                    false
                }
            };
            held.send_if_modified(|h| std::mem::replace(h, ok) != ok);
            tokio::time::sleep(beat).await;
        }
    }

    async fn account_loop(self: Arc<Self>, account: Account, mut stop: watch::Receiver<bool>) {
        let waker = self.waker(&account.id);
        let (held_tx, mut held) = watch::channel(false);
        let heartbeat = tokio::spawn(self.clone().heartbeat(account.id.clone(), held_tx));
        let mut failures: u32 = 0;
        let poll = Duration::from_secs(u64::from(account.poll_interval_secs.max(5)));
        while !*stop.borrow() {
            if !*held.borrow_and_update() {
                // Another node retrieves this account (or the database is away): wait.
                tokio::select! {
                    _ = held.changed() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let wait = match self.session(&account, &mut stop, &waker, &mut held).await {
                Ok(Ended::Reconnect) => {
                    failures = 0;
                    continue;
                }
                Ok(Ended::Wait) => {
                    failures = 0;
                    poll
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(account = %account.name, error = %e.message, "retrieval failed");
                    self.record_failure(&account, &e).await;
                    let backoff = Duration::from_secs(5u64.saturating_mul(1 << failures.min(6)));
                    e.backoff.unwrap_or(backoff.min(poll.max(Duration::from_secs(5))))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = waker.notified() => {}
                _ = stop.changed() => {}
            }
        }
        heartbeat.abort();
        // Let another node take over at once instead of after the lease lapses.
        if *held.borrow() {
            let _ = self.store.release_mailbox_lease(&account.id, &self.config.node).await;
        }
    }

    async fn credentials(&self, account: &Account) -> Result<(ImapCredentials, Option<Instant>), ImapError> {
        let login = login::resolve(self.store.as_ref(), &self.vault, &self.tokens, account, false)
            .await
            .map_err(|e| ImapError { message: e.to_string(), temporary: e.is_temporary(), backoff: None })?;
        let user = account.username.clone();
        Ok(match (login, account.auth) {
            (Login::None, _) => return Err(ImapError::permanent("IMAP accounts must authenticate")),
            (Login::Password(password), AuthMethod::Login) => (ImapCredentials::Login { user, password }, None),
            (Login::Password(password), _) => (ImapCredentials::Plain { user, password }, None),
            (Login::Token { token, .. }, _) => {
                let expiry = Some(token.expires_at);
                (ImapCredentials::OAuth { user, token: token.secret, mechanism: account.oauth_mechanism }, expiry)
            }
        })
    }

    async fn open(&self, account: &Account) -> Result<(ImapSession, Option<Instant>), ImapError> {
        let (credentials, token_expiry) = self.credentials(account).await?;
        let session =
            session::open(&account.host, account.port, account.connection, &credentials, &self.tls, self.config.timeout)
                .await?;
        Ok((session, token_expiry))
    }

    /// Connects, selects the folder and retrieves; with IDLE, stays and retrieves whenever the
    /// server reports new mail.
    async fn session(
        &self,
        account: &Account,
        stop: &mut watch::Receiver<bool>,
        waker: &Notify,
        held: &mut watch::Receiver<bool>,
    ) -> Result<Ended, ImapError> {
        let (mut session, token_expiry) = self.open(account).await?;
        let caps = self.with_timeout("CAPABILITY", session.capabilities()).await?;
        let has = |c: &str| caps.has_str(c);
        let (uidplus, can_move, can_idle) = (has("UIDPLUS"), has("MOVE"), has("IDLE"));
        let opened = Instant::now();
        loop {
            if !*held.borrow_and_update() {
                // The lease was lost (another node retrieves now).
                let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
                return Ok(Ended::Wait);
            }
            self.pass(&mut session, account, uidplus, can_move).await?;
            if !(account.idle && can_idle) || *stop.borrow() {
                let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
                return Ok(Ended::Wait);
            }
            let mut limit = self.config.idle_max.saturating_sub(opened.elapsed());
            if let Some(expiry) = token_expiry {
                limit = limit.min(expiry.saturating_duration_since(Instant::now()).saturating_sub(self.config.token_margin));
            }
            if limit.is_zero() {
                let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
                return Ok(Ended::Reconnect);
            }
            let mut idle = session.idle();
            self.with_timeout("IDLE", idle.init()).await?;
            let renew = {
                let (wait, _interrupt) = idle.wait_with_timeout(limit);
                tokio::select! {
                    r = wait => match r {
                        Ok(async_imap::extensions::idle::IdleResponse::Timeout) => true,
                        Ok(_) => false,
                        Err(e) => return Err(ImapError::from_imap("IDLE", &e)),
                    },
                    _ = waker.notified() => false,
                    _ = stop.changed() => false,
                    // The lease was lost (another node retrieves now): end the session.
                    _ = held.changed() => false,
                }
            };
            session = self.with_timeout("DONE", idle.done()).await?;
            if renew {
                let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
                return Ok(Ended::Reconnect);
            }
        }
    }

    async fn with_timeout<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = async_imap::error::Result<T>>,
    ) -> Result<T, ImapError> {
        match tokio::time::timeout(self.config.timeout, fut).await {
            Err(_) => Err(ImapError::temporary(format!("{what} timed out"))),
            Ok(r) => r.map_err(|e| ImapError::from_imap(what, &e)),
        }
    }

    /// One pass over the selected folder (selects it first).
    async fn pass(&self, session: &mut ImapSession, account: &Account, uidplus: bool, can_move: bool) -> Result<Report, ImapError> {
        let started = now_millis();
        let mailbox = match tokio::time::timeout(self.config.timeout, session.select(&account.imap_folder)).await {
            Err(_) => return Err(ImapError::temporary("SELECT timed out")),
            Ok(Err(async_imap::error::Error::No(text))) => {
                return Err(ImapError::permanent(format!("the folder '{}' cannot be selected: {text}", account.imap_folder)));
            }
            Ok(r) => r.map_err(|e| ImapError::from_imap("SELECT", &e))?,
        };
        let uidvalidity = i64::from(mailbox.uid_validity.ok_or_else(|| ImapError::permanent("the server sent no UIDVALIDITY"))?);
        let mut report = Report::default();
        let mut oversize = Vec::new();
        if mailbox.exists > 0 {
            let mut uids: Vec<u32> = self.with_timeout("UID SEARCH", session.uid_search("UNDELETED")).await?.into_iter().collect();
            uids.sort_unstable();
            let mut sized = Vec::with_capacity(uids.len());
            for chunk in uids.chunks(500) {
                let fetches: Vec<_> = self
                    .with_timeout("UID FETCH sizes", async {
                        session.uid_fetch(uid_set(chunk), "(UID RFC822.SIZE)").await?.try_collect::<Vec<_>>().await
                    })
                    .await?;
                sized.extend(fetches.iter().filter_map(|f| Some((f.uid?, u64::from(f.size.unwrap_or(0))))));
            }
            sized.sort_unstable();
            let mut batch: Vec<u32> = Vec::new();
            let mut batch_bytes = 0u64;
            for (i, &(uid, size)) in sized.iter().enumerate() {
                if size > self.config.max_message_bytes {
                    oversize.push(OversizeMessage { uid, size });
                } else {
                    batch.push(uid);
                    batch_bytes += size;
                }
                let last = i + 1 == sized.len();
                if !batch.is_empty() && (last || batch.len() >= self.config.batch_messages || batch_bytes >= self.config.batch_bytes) {
                    self.batch(session, account, uidvalidity, &batch, uidplus, can_move, &mut report).await?;
                    batch.clear();
                    batch_bytes = 0;
                }
            }
        }
        if !oversize.is_empty() {
            tracing::warn!(account = %account.name, count = oversize.len(), limit = self.config.max_message_bytes,
                "messages over the size limit stay on the server");
        }
        report.oversize = oversize.len();
        let previous = self.store.get_retrieval_state(&account.id).await.ok().flatten().unwrap_or_default();
        let state = RetrievalState {
            account_id: account.id.clone(),
            uidvalidity: Some(uidvalidity),
            last_run_at: Some(started),
            last_success_at: Some(now_millis()),
            last_error: None,
            last_error_at: previous.last_error_at,
            stored_total: previous.stored_total + report.stored as i64,
            oversize,
        };
        if let Err(e) = self.store.put_retrieval_state(&state).await {
            tracing::warn!(account = %account.name, error = %e, "cannot record retrieval state");
        }
        if report.stored > 0 || report.removed > 0 {
            tracing::info!(account = %account.name, stored = report.stored, duplicates = report.duplicates,
                removed = report.removed, "retrieved mail");
        }
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn batch(
        &self,
        session: &mut ImapSession,
        account: &Account,
        uidvalidity: i64,
        uids: &[u32],
        uidplus: bool,
        can_move: bool,
        report: &mut Report,
    ) -> Result<(), ImapError> {
        let set = uid_set(uids);
        let fetches: Vec<_> = self
            .with_timeout("UID FETCH", async {
                session.uid_fetch(&set, "(UID RFC822.SIZE BODY.PEEK[])").await?.try_collect::<Vec<_>>().await
            })
            .await?;
        let mut done = Vec::with_capacity(fetches.len());
        for fetch in &fetches {
            let (Some(uid), Some(raw)) = (fetch.uid, fetch.body()) else { continue };
            let stored = self.store_message(account, uidvalidity, uid, raw).await?;
            if stored {
                report.stored += 1;
                let labels = [("account", account.name.as_str())];
                self.metrics.inc(metrics::MESSAGES_RETRIEVED, &labels);
                self.metrics.add(metrics::BYTES_RETRIEVED, &labels, raw.len() as u64);
            } else {
                report.duplicates += 1;
            }
            done.push(uid);
        }
        drop(fetches);
        if done.is_empty() {
            return Ok(());
        }
        // Crash-test hook: die like kill -9 right between the commit and the removal.
        if std::env::var_os("MAILGATE_TEST_ABORT_AFTER_COMMIT").is_some() {
            std::process::abort();
        }
        // Everything in `done` is committed: only now does the server lose it.
        let set = uid_set(&done);
        match account.after_retrieval {
            AfterRetrieval::Move => {
                let target = account.move_folder.as_deref().unwrap_or("Archive");
                if can_move {
                    self.with_timeout("UID MOVE", session.uid_mv(&set, target)).await?;
                } else {
                    self.with_timeout("UID COPY", session.uid_copy(&set, target)).await?;
                    self.delete(session, &set, uidplus).await?;
                }
            }
            AfterRetrieval::Delete => self.delete(session, &set, uidplus).await?,
        }
        report.removed += done.len();
        Ok(())
    }

    async fn delete(&self, session: &mut ImapSession, set: &str, uidplus: bool) -> Result<(), ImapError> {
        self.with_timeout("UID STORE", async {
            session.uid_store(set, "+FLAGS.SILENT (\\Deleted)").await?.try_collect::<Vec<_>>().await
        })
        .await?;
        if uidplus {
            self.with_timeout("UID EXPUNGE", async { session.uid_expunge(set).await?.try_collect::<Vec<_>>().await }).await?;
        } else {
            // Without UIDPLUS only a mailbox-wide EXPUNGE exists; it can also remove messages
            // others flagged \Deleted — the documented reason to use a dedicated mailbox.
            self.with_timeout("EXPUNGE", async { session.expunge().await?.try_collect::<Vec<_>>().await }).await?;
        }
        Ok(())
    }

    async fn store_message(&self, account: &Account, uidvalidity: i64, uid: u32, raw: &[u8]) -> Result<bool, ImapError> {
        let parsed = parse::parse(raw);
        let list = |v: &[mailgate_core::Mailbox]| v.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ");
        if !parsed.problems.is_empty() {
            tracing::warn!(account = %account.name, uid, problems = ?parsed.problems, "stored a message with problems");
        }
        let message = NewInboxMessage {
            id: new_id(),
            account_id: account.id.clone(),
            folder: account.imap_folder.clone(),
            uidvalidity,
            uid: i64::from(uid),
            message_id: parsed.message_id.clone(),
            subject: parsed.subject.clone().unwrap_or_default(),
            from: parsed.from.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            to: list(&parsed.to),
            cc: list(&parsed.cc),
            date: parsed.date,
            parsed: serde_json::to_string(&parsed).map_err(|e| ImapError::permanent(format!("serialising: {e}")))?,
            problems: parsed.problems.clone(),
            attachments: parsed.attachments.iter().map(|a| AttachmentSummary { filename: a.filename.clone(), size: a.size }).collect(),
            raw: raw.to_vec(),
            body_text: mailgate_core::submission::searchable_text(raw),
            now: now_millis(),
        };
        self.store
            .insert_inbox_message(&message)
            .await
            .map_err(|e| ImapError::temporary(format!("storing message UID {uid}: {e}")))
    }

    async fn record_failure(&self, account: &Account, e: &ImapError) {
        let now = now_millis();
        let mut state = self.store.get_retrieval_state(&account.id).await.ok().flatten().unwrap_or_default();
        state.account_id = account.id.clone();
        state.last_run_at = Some(now);
        state.last_error = Some(e.message.clone());
        state.last_error_at = Some(now);
        if let Err(err) = self.store.put_retrieval_state(&state).await {
            tracing::warn!(account = %account.name, error = %err, "cannot record retrieval state");
        }
        let _ = self.store.record_account_health(&account.id, now, Some(&e.message)).await;
    }

    /// One complete pass for `account` now (connect, retrieve, log out). For tests and the
    /// "retrieve now" action; the account task may run at the same time on another session.
    pub async fn retrieve_once(&self, account: &Account) -> Result<Report, ImapError> {
        let report = async {
            let (mut session, _) = self.open(account).await?;
            let caps = self.with_timeout("CAPABILITY", session.capabilities()).await?;
            let report = self.pass(&mut session, account, caps.has_str("UIDPLUS"), caps.has_str("MOVE")).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
            report
        }
        .await;
        if let Err(e) = &report {
            self.record_failure(account, e).await;
        }
        report
    }
}
