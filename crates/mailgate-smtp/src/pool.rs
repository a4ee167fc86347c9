//! Idle SMTP sessions kept per account for reuse, and the per-account session limit.
//!
//! A worker takes a permit (at most `max_sessions` per account are open at once), then an
//! idle session if a fresh one is there. Sessions idle longer than the TTL, or opened under an
//! older version of the account, are closed instead of reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailgate_core::Millis;
use mailgate_core::model::Account;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client::SmtpSession;

struct Idle {
    session: SmtpSession,
    since: Instant,
    version: Millis,
}

struct AccountSessions {
    permits: Arc<Semaphore>,
    max: u32,
    idle: Vec<Idle>,
}

/// Session reuse and limits for all accounts.
pub struct SessionPool {
    accounts: Mutex<HashMap<String, AccountSessions>>,
    idle_ttl: Duration,
}

/// The right to hold one session of an account, with an idle session when one was there.
pub struct Checkout {
    pub session: Option<SmtpSession>,
    _permit: OwnedSemaphorePermit,
}

impl SessionPool {
    pub fn new(idle_ttl: Duration) -> SessionPool {
        SessionPool { accounts: Mutex::new(HashMap::new()), idle_ttl }
    }

    fn permits(&self, account: &Account) -> Arc<Semaphore> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let max = account.max_sessions.max(1);
        let entry = accounts.entry(account.id.clone()).or_insert_with(|| AccountSessions {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            idle: Vec::new(),
        });
        if entry.max != max {
            // The limit changed: sessions under the old semaphore finish, new ones use this.
            entry.permits = Arc::new(Semaphore::new(max as usize));
            entry.max = max;
        }
        entry.permits.clone()
    }

    /// Waits for a permit of `account`, then hands out a fresh idle session if there is one.
    pub async fn checkout(&self, account: &Account) -> Checkout {
        // Our semaphores are never closed, so acquiring cannot fail.
        let permit = self.permits(account).acquire_owned().await.expect("pool semaphores are never closed");
        let mut stale = Vec::new();
        let session = {
            let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
            let mut found = None;
            if let Some(entry) = accounts.get_mut(&account.id) {
                while let Some(idle) = entry.idle.pop() {
                    if idle.version == account.updated_at && idle.since.elapsed() < self.idle_ttl {
                        found = Some(idle.session);
                        break;
                    }
                    stale.push(idle.session);
                }
            }
            found
        };
        for s in stale {
            tokio::spawn(s.quit());
        }
        Checkout { session, _permit: permit }
    }

    /// Keeps a healthy session for the next mail of the same account.
    pub fn put_back(&self, account: &Account, session: SmtpSession) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = accounts.get_mut(&account.id) {
            entry.idle.push(Idle { session, since: Instant::now(), version: account.updated_at });
        }
    }

    /// Closes every idle session (at shutdown).
    pub async fn close_all(&self) {
        let sessions: Vec<SmtpSession> = {
            let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
            accounts.values_mut().flat_map(|a| a.idle.drain(..).map(|i| i.session)).collect()
        };
        for s in sessions {
            s.quit().await;
        }
    }
}
