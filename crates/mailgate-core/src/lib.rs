//! Domain types of mailgate and the rules that keep them valid.
//!
//! Nothing in here does I/O: the store, the token providers, the SMTP spool and the web layer
//! all speak these types, so a rule (what an address is, which header a caller may set, how a
//! submitted mail becomes MIME) lives in exactly one place.
//!
//! - [`address`]: mailbox parsing and validation (`"Name" <user@example.com>`).
//! - [`model`]: OAuth clients, accounts, spooled mails, traffic rows, API keys.
//! - [`template`]: provider templates (Microsoft 365 global / US Gov / China, custom).
//! - [`submission`]: a submitted mail (JSON or raw RFC 5322) → validated, built message.
//! - [`validation`]: per-field validation errors.

pub mod address;
pub mod metrics;
pub mod model;
pub mod submission;
pub mod template;
pub mod validation;

pub use address::Mailbox;
pub use validation::{FieldError, ValidationErrors};

/// Milliseconds since the Unix epoch: the one time representation the store uses.
pub type Millis = i64;

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as Millis
}

/// Formats milliseconds since the epoch as RFC 3339 (UTC).
pub fn millis_to_rfc3339(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses an RFC 3339 timestamp into milliseconds since the epoch.
pub fn rfc3339_to_millis(s: &str) -> Option<Millis> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as Millis)
}

/// A new random identifier, time-ordered (UUID v7) so that lists sort by creation.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
