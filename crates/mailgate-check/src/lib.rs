//! The check engine: one diagnosis of an account, step by step, used by the API
//! (`POST /accounts/{id}/test`), the admin UI and `mailgate check`.
//!
//! Steps: DNS → TCP → TLS (or STARTTLS; certificate subject, issuer, expiry) → greeting and
//! capabilities → token (provider errors decoded) → token claims (roles, tenant, audience,
//! app-only) → AUTH (server replies explained) → a test mail (SMTP) or SELECT of the folder
//! (IMAP). Each step has a status, its duration, what was seen, and for a failure the likely
//! cause and the fix. No secret or token ever appears in a report.

mod certificate;
mod claims;
mod report;
mod run;

pub use report::{CheckReport, Status, Step};
pub use run::{CheckOptions, Checker};
