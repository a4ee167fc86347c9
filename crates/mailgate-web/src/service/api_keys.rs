//! API keys: random, shown once, stored as a SHA-256 hash.

use base64::Engine as _;
use mailgate_core::model::ApiKey;
use mailgate_core::{new_id, now_millis};
use mailgate_store::Store;
use ring::rand::SecureRandom as _;

const PREFIX: &str = "mgk_";

/// The stored hash of a key.
pub fn hash(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates a key; returns its record and the key itself, which is never shown again.
pub async fn create(store: &dyn Store, name: &str, admin: bool) -> anyhow::Result<(ApiKey, String)> {
    let name = name.trim();
    anyhow::ensure!(!name.is_empty() && name.len() <= 100, "the key's name must be 1 to 100 characters");
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("no random numbers available"))?;
    let key = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let record = ApiKey {
        id: new_id(),
        name: name.to_string(),
        prefix: key[..PREFIX.len() + 6].to_string(),
        admin,
        created_at: now_millis(),
        last_used_at: None,
        revoked_at: None,
    };
    store.insert_api_key(&record, &hash(&key)).await?;
    Ok((record, key))
}
