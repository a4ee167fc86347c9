//! The outgoing spool worker.
//!
//! Workers claim due mails of one account at a time under a lease, send them over one
//! (reused) session, and record every attempt. Temporary failures (4xx, network, timeouts,
//! token endpoint trouble) are retried with exponential backoff and jitter; permanent ones
//! (5xx, a token error no retry fixes) fail at once with the reason. A mail also fails once
//! it has used up its attempts or its age — nothing stays hidden in the spool.
//!
//! Workers sleep until woken by a submission ([`Spool::wake`]), until the next mail is due,
//! or at the latest after the poll interval (for leases lapsed elsewhere).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailgate_core::metrics::{self, Metrics};
use mailgate_core::model::{Account, AttemptOutcome, AuthMethod, Mail, MailStatus};
use mailgate_core::{Millis, now_millis};
use mailgate_oauth::TokenCache;
use mailgate_oauth::account::{self as login, Login};
use mailgate_store::{AttemptRecord, Store, StoreError, Vault};
use tokio::sync::{Notify, watch};

use crate::client::{Credentials, Delivery, SmtpError, SmtpSession, Stage, Timeouts};
use crate::explain;
use crate::pool::SessionPool;

/// Tuning of the spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub workers: usize,
    pub batch_size: u32,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub max_attempts: u32,
    pub max_age: Duration,
    pub idle_session_ttl: Duration,
    pub helo_name: String,
    pub timeouts: Timeouts,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            workers: 8,
            batch_size: 50,
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(5),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            max_attempts: 10,
            max_age: Duration::from_secs(3 * 24 * 3600),
            idle_session_ttl: Duration::from_secs(30),
            helo_name: "localhost".into(),
            timeouts: Timeouts::default(),
        }
    }
}

/// What one step of a worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Idle,
    Worked(usize),
}

/// Why a mail (or a whole batch) could not be sent this time.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    temporary: bool,
    reply: Option<String>,
}

impl Failure {
    fn from_smtp(e: &SmtpError, oauth: bool) -> Failure {
        Failure { message: explain::describe(e, oauth), temporary: e.is_temporary(), reply: e.reply().map(|r| r.to_string()) }
    }
}

/// The spool: shared by all workers of this process.
pub struct Spool {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    tokens: Arc<TokenCache>,
    tls: Arc<rustls::ClientConfig>,
    config: SpoolConfig,
    wake: Notify,
    pool: SessionPool,
    node_id: String,
    health_written: Mutex<HashMap<String, (Instant, bool)>>,
    metrics: Arc<Metrics>,
}

impl Spool {
    pub fn new(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        tokens: Arc<TokenCache>,
        tls: Arc<rustls::ClientConfig>,
        config: SpoolConfig,
        node_id: String,
        metrics: Arc<Metrics>,
    ) -> Arc<Spool> {
        let pool = SessionPool::new(config.idle_session_ttl);
        Arc::new(Spool {
            store,
            vault,
            tokens,
            tls,
            config,
            wake: Notify::new(),
            pool,
            node_id,
            health_written: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Wakes a sleeping worker: a mail was just spooled.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the workers; they stop when `shutdown` turns true, finishing the mail in hand
    /// and giving back the rest of their batch.
    pub fn spawn_workers(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.config.workers.max(1))
            .map(|i| tokio::spawn(self.clone().run_worker(i, shutdown.clone())))
            .collect()
    }

    async fn run_worker(self: Arc<Self>, index: usize, mut shutdown: watch::Receiver<bool>) {
        let owner = format!("{}/spool-{index}", self.node_id);
        while !*shutdown.borrow() {
            let wait = match self.step(&owner, &shutdown).await {
                Ok(StepOutcome::Worked(_)) => continue,
                Ok(StepOutcome::Idle) => self.idle_wait().await,
                Err(e) => {
                    tracing::error!(worker = %owner, error = %format!("{e:#}"), "spool step failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        if let Err(e) = self.store.release_claims(&owner).await {
            tracing::warn!(worker = %owner, error = %e, "could not release claims at shutdown");
        }
        if index == 0 {
            self.pool.close_all().await;
        }
    }

    async fn idle_wait(&self) -> Duration {
        let poll = self.config.poll_interval;
        match self.store.next_due_at().await {
            Ok(Some(due)) => Duration::from_millis((due - now_millis()).clamp(0, poll.as_millis() as i64) as u64),
            _ => poll,
        }
    }

    /// Claims one batch and sends it. Tests drive the spool with this, without sleeping.
    pub async fn step(&self, owner: &str, shutdown: &watch::Receiver<bool>) -> anyhow::Result<StepOutcome> {
        let now = now_millis();
        let mails =
            self.store.claim_mails(owner, now, self.config.lease.as_millis() as i64, self.config.batch_size).await?;
        if mails.is_empty() {
            return Ok(StepOutcome::Idle);
        }
        let count = mails.len();
        let account = match self.store.get_account(&mails[0].account_id).await {
            Ok(a) => a,
            Err(e) => {
                let failure = Failure { message: format!("account unavailable: {e}"), temporary: true, reply: None };
                let records: Vec<_> = mails.iter().map(|m| self.record(m, Err(&failure), 0)).collect();
                self.store.finish_attempts(owner, &records).await?;
                return Ok(StepOutcome::Worked(count));
            }
        };
        let attempted = self.send_batch(&account, &mails, owner, shutdown).await?;
        // Whatever was not attempted (shutdown) goes back to the queue untouched.
        if attempted < count {
            self.store.release_claims(owner).await?;
        }
        Ok(StepOutcome::Worked(count))
    }

    /// Sends the batch over one session and records each attempt as soon as it is made, so
    /// that a crash can resend at most the mail in hand. Returns how many were attempted.
    async fn send_batch(
        &self,
        account: &Account,
        mails: &[Mail],
        owner: &str,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<usize> {
        let oauth = account.auth == AuthMethod::Xoauth2;
        if !account.enabled {
            let failure = Failure { message: "the account is disabled".into(), temporary: true, reply: None };
            let records: Vec<_> = mails.iter().map(|m| self.record(m, Err(&failure), 0)).collect();
            self.store.finish_attempts(owner, &records).await?;
            return Ok(mails.len());
        }
        let mut attempted = 0;
        let checkout = self.pool.checkout(account).await;
        let mut session = checkout.session;
        let mut reused = session.is_some();
        for (i, mail) in mails.iter().enumerate() {
            if i > 0 && *shutdown.borrow() {
                break;
            }
            let started = Instant::now();
            let raw = match self.store.get_mail_raw(&mail.id).await {
                Ok(raw) => raw,
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => {
                    let f = Failure { message: format!("reading the mail failed: {e}"), temporary: true, reply: None };
                    self.store.finish_attempts(owner, &[self.record(mail, Err(&f), 0)]).await?;
                    attempted += 1;
                    continue;
                }
            };
            let mut open_failed = false;
            let result = loop {
                let mut s = match session.take() {
                    Some(s) => s,
                    None => match self.open_session(account).await {
                        Ok(s) => {
                            reused = false;
                            s
                        }
                        Err(f) => {
                            open_failed = true;
                            break Err(f);
                        }
                    },
                };
                match s.send(&mail.envelope_from, &mail.recipients, &raw).await {
                    Ok(delivery) => {
                        session = Some(s);
                        break Ok(delivery);
                    }
                    // A pooled session the server closed meanwhile: open a new one and retry
                    // this mail; nothing was delivered.
                    Err(e) if reused && e.breaks_session() && matches!(stage_of(&e), Some(Stage::MailFrom)) => {
                        tracing::debug!(account = %account.name, error = %e, "pooled session was stale");
                        reused = false;
                        continue;
                    }
                    Err(e) => {
                        if !e.breaks_session() {
                            session = Some(s);
                        }
                        break Err(Failure::from_smtp(&e, oauth));
                    }
                }
            };
            reused = false;
            let elapsed = started.elapsed().as_millis() as i64;
            match &result {
                Ok(d) => tracing::info!(mail_id = %mail.id, account = %account.name, reply = %d.reply, "mail sent"),
                Err(f) => tracing::warn!(mail_id = %mail.id, account = %account.name, error = %f.message, "mail not sent"),
            }
            self.note_health(account, result.as_ref().err()).await;
            let mut records = vec![self.record(mail, result.as_ref(), elapsed)];
            self.count(account, mail, &records[0]);
            attempted += 1;
            if let (true, Err(f)) = (open_failed, &result) {
                // The server is unreachable or refused the login: the rest of the batch would
                // only repeat the same failure; record it for them without hammering the server.
                for rest in &mails[i + 1..] {
                    let record = self.record(rest, Err(f), 0);
                    self.count(account, rest, &record);
                    records.push(record);
                }
                attempted = mails.len();
            }
            if let Err(e) = self.store.finish_attempts(owner, &records).await {
                if let Some(s) = session.take() {
                    self.pool.put_back(account, s);
                }
                return Err(e.into());
            }
            if attempted == mails.len() {
                break;
            }
        }
        if let Some(s) = session {
            self.pool.put_back(account, s);
        }
        Ok(attempted)
    }

    /// Counts an attempt's outcome (and the latency of a sent mail).
    fn count(&self, account: &Account, mail: &Mail, record: &AttemptRecord) {
        let labels = [("account", account.name.as_str())];
        match (record.new_status, record.outcome) {
            (MailStatus::Sent, _) => {
                self.metrics.inc(metrics::MAILS_SENT, &labels);
                let seconds = (record.at - mail.created_at).max(0) as f64 / 1000.0;
                self.metrics.observe(metrics::SEND_LATENCY, &[], seconds);
            }
            (MailStatus::Failed, outcome) => {
                self.metrics.inc(metrics::MAILS_FAILED, &labels);
                self.metrics.inc(metrics::SMTP_ERRORS, &[("account", account.name.as_str()), ("class", outcome.as_str())]);
            }
            (_, outcome) => {
                self.metrics.inc(metrics::MAILS_RETRIED, &labels);
                self.metrics.inc(metrics::SMTP_ERRORS, &[("account", account.name.as_str()), ("class", outcome.as_str())]);
            }
        }
    }

    /// Connects and authenticates a new session for `account`.
    async fn open_session(&self, account: &Account) -> Result<SmtpSession, Failure> {
        let oauth = account.auth == AuthMethod::Xoauth2;
        let mut session = SmtpSession::connect(
            &account.host,
            account.port,
            account.connection,
            &self.tls,
            &self.config.helo_name,
            self.config.timeouts,
        )
        .await
        .map_err(|e| Failure::from_smtp(&e, oauth))?;
        self.metrics.inc(metrics::SMTP_SESSIONS, &[("account", account.name.as_str())]);
        let credentials = self.credentials(account, false).await?;
        match session.authenticate(&credentials).await {
            Ok(()) => Ok(session),
            Err(SmtpError::Rejected { stage: Stage::Auth, .. }) if oauth => {
                // The cached token may have been revoked: one more try with a new token on a
                // new connection (servers may drop the session after a failed AUTH).
                tokio::spawn(session.quit());
                let credentials = self.credentials(account, true).await?;
                let mut session = SmtpSession::connect(
                    &account.host,
                    account.port,
                    account.connection,
                    &self.tls,
                    &self.config.helo_name,
                    self.config.timeouts,
                )
                .await
                .map_err(|e| Failure::from_smtp(&e, oauth))?;
                session.authenticate(&credentials).await.map_err(|e| Failure::from_smtp(&e, oauth))?;
                Ok(session)
            }
            Err(e) => Err(Failure::from_smtp(&e, oauth)),
        }
    }

    async fn credentials(&self, account: &Account, fresh_token: bool) -> Result<Credentials, Failure> {
        let login = login::resolve(self.store.as_ref(), &self.vault, &self.tokens, account, fresh_token)
            .await
            .map_err(|e| Failure { message: e.to_string(), temporary: e.is_temporary(), reply: None })?;
        let user = account.username.clone();
        Ok(match (login, account.auth) {
            (Login::None, _) => Credentials::None,
            (Login::Password(password), AuthMethod::Login) => Credentials::Login { user, password },
            (Login::Password(password), _) => Credentials::Plain { user, password },
            (Login::Token { token, .. }, _) => Credentials::OAuth { user, token: token.secret, mechanism: account.oauth_mechanism },
        })
    }

    /// Writes the account's health when it changed, or at most every 30 s.
    async fn note_health(&self, account: &Account, failure: Option<&Failure>) {
        let ok = failure.is_none();
        let due = {
            let mut written = self.health_written.lock().unwrap_or_else(|p| p.into_inner());
            let due = written.get(&account.id).is_none_or(|(at, was_ok)| *was_ok != ok || at.elapsed() > Duration::from_secs(30));
            if due {
                written.insert(account.id.clone(), (Instant::now(), ok));
            }
            due
        };
        if due {
            let error = failure.map(|f| f.message.as_str());
            if let Err(e) = self.store.record_account_health(&account.id, now_millis(), error).await {
                tracing::warn!(account = %account.name, error = %e, "could not record account health");
            }
        }
    }

    /// Turns the result of one attempt into what the store records.
    fn record(&self, mail: &Mail, result: Result<&Delivery, &Failure>, duration_ms: i64) -> AttemptRecord {
        let now = now_millis();
        let base = AttemptRecord {
            mail_id: mail.id.clone(),
            at: now,
            outcome: AttemptOutcome::Sent,
            error: None,
            reply: None,
            duration_ms,
            new_status: MailStatus::Sent,
            next_attempt_at: now,
            remaining_recipients: None,
            counts: true,
        };
        match result {
            Ok(d) => {
                let deferred: Vec<&(String, crate::reply::Reply)> = d.rejected.iter().filter(|(_, r)| r.is_transient()).collect();
                let refused = |list: &[&(String, crate::reply::Reply)]| {
                    list.iter().map(|(r, reply)| format!("{r} ({reply})")).collect::<Vec<_>>().join(", ")
                };
                let bounced: Vec<&(String, crate::reply::Reply)> = d.rejected.iter().filter(|(_, r)| r.is_permanent()).collect();
                if deferred.is_empty() {
                    let error = (!bounced.is_empty()).then(|| format!("refused recipients: {}", refused(&bounced)));
                    return AttemptRecord { reply: Some(d.reply.to_string()), error, ..base };
                }
                let failure = Failure {
                    message: format!(
                        "delivered to {}; deferred: {}{}",
                        d.accepted.join(", "),
                        refused(&deferred),
                        if bounced.is_empty() { String::new() } else { format!("; refused: {}", refused(&bounced)) }
                    ),
                    temporary: true,
                    reply: Some(d.reply.to_string()),
                };
                let remaining = deferred.iter().map(|(r, _)| r.clone()).collect();
                AttemptRecord { remaining_recipients: Some(remaining), ..self.failure_record(mail, &failure, base) }
            }
            Err(f) => self.failure_record(mail, f, base),
        }
    }

    fn failure_record(&self, mail: &Mail, f: &Failure, base: AttemptRecord) -> AttemptRecord {
        let now = base.at;
        let attempts = mail.attempts + 1;
        let age = Duration::from_millis((now - mail.created_at).max(0) as u64);
        if !f.temporary {
            return AttemptRecord {
                outcome: AttemptOutcome::Permanent,
                error: Some(f.message.clone()),
                reply: f.reply.clone(),
                new_status: MailStatus::Failed,
                ..base
            };
        }
        if attempts >= self.config.max_attempts || age >= self.config.max_age {
            return AttemptRecord {
                outcome: AttemptOutcome::Temporary,
                error: Some(format!("gave up after {attempts} attempts over {}: {}", human(age), f.message)),
                reply: f.reply.clone(),
                new_status: MailStatus::Failed,
                ..base
            };
        }
        AttemptRecord {
            outcome: AttemptOutcome::Temporary,
            error: Some(f.message.clone()),
            reply: f.reply.clone(),
            new_status: MailStatus::Queued,
            next_attempt_at: now + backoff(&self.config, attempts).as_millis() as Millis,
            ..base
        }
    }
}

fn stage_of(e: &SmtpError) -> Option<Stage> {
    match e {
        SmtpError::Io { stage, .. } | SmtpError::Protocol { stage, .. } | SmtpError::Timeout { stage } => Some(*stage),
        _ => None,
    }
}

/// Exponential backoff with ±20 % jitter: base, 2×base, 4×base, … capped at the maximum.
pub fn backoff(config: &SpoolConfig, attempts: u32) -> Duration {
    let exp = config.retry_base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = exp.min(config.retry_max);
    capped.mul_f64(0.8 + fastrand::f64() * 0.4)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let c = SpoolConfig { retry_base: Duration::from_secs(10), retry_max: Duration::from_secs(100), ..Default::default() };
        let first = backoff(&c, 1);
        assert!(first >= Duration::from_secs(8) && first <= Duration::from_secs(12));
        let third = backoff(&c, 3);
        assert!(third >= Duration::from_secs(32) && third <= Duration::from_secs(48));
        assert!(backoff(&c, 30) <= Duration::from_secs(120));
    }
}
