//! Shared state of the HTTP handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mailgate_core::submission::Limits;
use mailgate_oauth::TokenCache;
use mailgate_check::Checker;
use mailgate_imap::Retriever;
use mailgate_smtp::Spool;
use mailgate_store::{Store, Vault};

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
    pub tokens: Arc<TokenCache>,
    pub spool: Arc<Spool>,
    pub retriever: Arc<Retriever>,
    pub checker: Arc<Checker>,
    pub metrics: Arc<mailgate_core::metrics::Metrics>,
    /// Bearer token `/metrics` requires, when configured.
    pub metrics_token: Option<Arc<str>>,
    pub limits: Limits,
    /// Set once the workers run; cleared when shutting down.
    pub workers_running: Arc<AtomicBool>,
    /// The admin UI's in-memory state (setup token, login rate limit).
    pub ui: Arc<crate::ui::UiState>,
}

impl AppState {
    pub fn workers_running(&self) -> bool {
        self.workers_running.load(Ordering::Relaxed)
    }
}
