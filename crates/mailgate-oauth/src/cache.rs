//! The token cache: one access token per (OAuth client, subject), renewed before it expires.
//!
//! Every key has its own async mutex, so when fifty workers need a token at once exactly one
//! request goes to the provider and the others wait for its answer. A failed request is
//! remembered for a short while (5 s when it may be temporary, 30 s otherwise) so that a burst
//! of mails does not hammer a refusing endpoint; editing the client (a new `updated_at`)
//! starts afresh at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailgate_core::Millis;
use mailgate_core::model::{OAuthClient, Secret};

use crate::claims::TokenClaims;
use crate::error::TokenError;
use crate::fetch;

/// A usable access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub secret: Secret,
    pub expires_at: Instant,
    /// What the provider said the lifetime was when it issued the token.
    pub lifetime: Duration,
    pub claims: Option<TokenClaims>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SlotKey {
    client_id: String,
    version: Millis,
    subject: String,
}

#[derive(Default)]
struct Slot {
    token: Option<AccessToken>,
    failure: Option<(TokenError, Instant)>,
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct TokenStats {
    pub requests: AtomicU64,
    pub failures: AtomicU64,
}

/// Caches access tokens per OAuth client and subject.
pub struct TokenCache {
    http: reqwest::Client,
    margin: Duration,
    slots: Mutex<HashMap<SlotKey, Arc<tokio::sync::Mutex<Slot>>>>,
    pub stats: TokenStats,
}

const TEMPORARY_FAILURE_MEMORY: Duration = Duration::from_secs(5);
const PERMANENT_FAILURE_MEMORY: Duration = Duration::from_secs(30);

impl TokenCache {
    /// A cache that renews tokens `margin` before they expire (at least 10 minutes is what
    /// Microsoft's SMTP endpoints need).
    pub fn new(http: reqwest::Client, margin: Duration) -> TokenCache {
        TokenCache { http, margin, slots: Mutex::new(HashMap::new()), stats: TokenStats::default() }
    }

    fn slot(&self, key: SlotKey) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Tokens of an older version of this client are useless now.
        slots.retain(|k, _| k.client_id != key.client_id || k.subject != key.subject || k.version == key.version);
        slots.entry(key).or_default().clone()
    }

    /// A token for `client` acting as `subject` (empty for tenant-wide app tokens), from the
    /// cache while it has more than the margin left, else freshly requested.
    pub async fn get(&self, client: &OAuthClient, secret: &Secret, subject: &str) -> Result<AccessToken, TokenError> {
        self.get_inner(client, secret, subject, false).await
    }

    /// A newly requested token (the cached one is replaced): for tests of the credential.
    pub async fn get_fresh(&self, client: &OAuthClient, secret: &Secret, subject: &str) -> Result<AccessToken, TokenError> {
        self.get_inner(client, secret, subject, true).await
    }

    /// Forgets the cached token, e.g. after a server refused it.
    pub async fn invalidate(&self, client: &OAuthClient, subject: &str) {
        let slot = self.slot(SlotKey { client_id: client.id.clone(), version: client.updated_at, subject: subject.into() });
        let mut slot = slot.lock().await;
        slot.token = None;
    }

    async fn get_inner(
        &self,
        client: &OAuthClient,
        secret: &Secret,
        subject: &str,
        fresh: bool,
    ) -> Result<AccessToken, TokenError> {
        let key = SlotKey { client_id: client.id.clone(), version: client.updated_at, subject: subject.into() };
        let slot = self.slot(key);
        let mut slot = slot.lock().await;
        let now = Instant::now();
        if !fresh {
            if let Some(token) = &slot.token {
                let margin = self.margin.min(token.lifetime / 2);
                if token.expires_at > now + margin {
                    return Ok(token.clone());
                }
            }
            if let Some((error, until)) = &slot.failure
                && *until > now {
                    return Err(error.clone());
                }
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        match fetch::request_token(&self.http, client, secret, subject).await {
            Ok(issued) => {
                let token = AccessToken {
                    claims: TokenClaims::from_jwt(issued.access_token.expose()),
                    secret: issued.access_token,
                    expires_at: started + issued.expires_in,
                    lifetime: issued.expires_in,
                };
                tracing::debug!(client = %client.name, lifetime_s = issued.expires_in.as_secs(), "token obtained");
                slot.token = Some(token.clone());
                slot.failure = None;
                Ok(token)
            }
            Err(error) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                let memory = if error.is_temporary() { TEMPORARY_FAILURE_MEMORY } else { PERMANENT_FAILURE_MEMORY };
                tracing::warn!(client = %client.name, error = %error, "token request failed");
                slot.failure = Some((error.clone(), Instant::now() + memory));
                Err(error)
            }
        }
    }
}
