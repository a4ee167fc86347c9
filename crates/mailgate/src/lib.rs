//! mailgate: a self-hosted mail gateway for applications.
//!
//! Applications hand mail to mailgate (REST API or CLI); mailgate spools it durably and sends it
//! through SMTP accounts — Microsoft 365 and others — with OAuth2 (client credentials, XOAUTH2)
//! or passwords. This crate is the binary's library: [`config`] reads the settings, [`app`]
//! wires the store, token cache, spool workers and HTTP server together, [`client`] is the
//! command-line client of a running server. The other crates hold the parts:
//! `mailgate-core` (domain rules), `mailgate-store` (database), `mailgate-oauth` (tokens),
//! `mailgate-smtp` (sending), `mailgate-web` (HTTP).

pub mod app;
pub mod client;
pub mod config;
pub mod logging;
