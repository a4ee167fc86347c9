//! Retrieving mail from IMAP mailboxes.
//!
//! - [`session`]: connect (TLS, STARTTLS, none) and authenticate (XOAUTH2 with the provider's
//!   JSON challenge answered and kept, PLAIN, LOGIN), with timeouts.
//! - [`parse`]: a retrieved message → the fields applications want; broken messages are kept
//!   and their problems listed.
//! - [`retriever`]: per account, one session at a time: `UID FETCH … BODY.PEEK[]` in bounded
//!   batches, store the raw bytes, commit, and only then delete (`UID EXPUNGE` of exactly those
//!   UIDs) or move them; IDLE for near-real-time delivery.

pub mod parse;
pub mod retriever;
pub mod session;

pub use retriever::{Retriever, RetrieverConfig};
