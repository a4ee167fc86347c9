//! Sending mail: an SMTP client made for this job, and the outgoing spool worker.
//!
//! - [`tls`]: the one rustls configuration for SMTP, IMAP and token endpoints (system roots
//!   plus the configured extra CAs; verification is never switched off).
//! - [`reply`]: SMTP replies, parsed with limits against hostile servers.
//! - [`client`]: a session — connect (TLS or STARTTLS), EHLO, AUTH (PLAIN, LOGIN, XOAUTH2
//!   with the provider's JSON challenge decoded), pipelined MAIL/RCPT/DATA, timeouts on every step.
//! - [`explain`]: what a server's refusal most likely means and how to fix it.
//! - [`pool`]: idle sessions kept per account for reuse, and the per-account session limit.
//! - [`spool`]: the worker that claims due mails, sends them, retries with backoff and records
//!   every attempt.

pub mod client;
pub mod explain;
pub mod pool;
pub mod reply;
pub mod spool;
pub mod tls;

pub use client::{Credentials, SmtpError, SmtpSession, Timeouts};
pub use spool::{Spool, SpoolConfig};
