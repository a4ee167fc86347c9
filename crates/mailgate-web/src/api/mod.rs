//! The REST API under `/api/v1` and the health endpoints.

mod accounts;
mod auth;
mod health;
pub(crate) mod inbox;
mod json;
mod keys;
mod metrics;
mod mails;
mod oauth_clients;
pub mod openapi;
mod settings;
pub mod status;
mod traffic;
pub mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

pub use auth::Caller;

use crate::error::ApiError;
use crate::state::AppState;

/// Paging parameters shared by the list endpoints.
#[derive(Debug, Clone)]
pub struct Paging {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Paging {
    /// (limit, offset): the limit 1 or more (default 50), capped at 1000; the offset 0 or more.
    pub fn resolve(&self) -> Result<(u32, u64), ApiError> {
        let mut errors = mailgate_core::ValidationErrors::new();
        let limit = self.limit.unwrap_or(50);
        if limit < 1 {
            errors.add("limit", "must be 1 or more (values over 1000 are capped)");
        }
        let offset = self.offset.unwrap_or(0);
        if offset < 0 {
            errors.add("offset", "must be 0 or more");
        }
        errors.into_result(())?;
        let limit = u32::try_from(limit.min(1000)).unwrap_or(1000);
        Ok((limit, offset.unsigned_abs()))
    }
}

pub fn routes(state: AppState) -> Router<AppState> {
    // Room for the largest allowed message in base64 inside JSON.
    let submit_limit = state.limits.max_message_bytes / 3 * 4 + 1024 * 1024;
    let v1 = Router::new()
        .route("/oauth-templates", get(oauth_clients::templates))
        .route("/oauth-clients", get(oauth_clients::list).post(oauth_clients::create))
        .route(
            "/oauth-clients/{id}",
            get(oauth_clients::show).put(oauth_clients::update).patch(oauth_clients::update).delete(oauth_clients::remove),
        )
        .route("/oauth-clients/{id}/token-test", post(oauth_clients::token_test))
        .route("/accounts", get(accounts::list).post(accounts::create))
        .route("/accounts/{id}", get(accounts::show).put(accounts::update).patch(accounts::update).delete(accounts::remove))
        .route("/mails", get(mails::list).post(mails::submit).layer(DefaultBodyLimit::max(submit_limit)))
        .route("/mails/{id}", get(mails::show).delete(mails::remove))
        .route("/mails/{id}/raw", get(mails::raw))
        .route("/mails/{id}/retry", post(mails::retry))
        .route("/accounts/{id}/retrieve", post(accounts::retrieve))
        .route("/accounts/{id}/test", post(accounts::test))
        .route("/inbox", get(inbox::list))
        .route("/inbox/claim", post(inbox::claim))
        .route("/inbox/{id}", get(inbox::show).delete(inbox::consume))
        .route("/inbox/{id}/raw", get(inbox::raw))
        .route("/inbox/{id}/attachments/{n}", get(inbox::attachment))
        .route("/traffic", get(traffic::list))
        .route("/status", get(status::show))
        .route("/settings", get(settings::show).put(settings::update).patch(settings::update))
        .route("/api-keys", get(keys::list).post(keys::create))
        .route("/api-keys/{id}", delete(keys::revoke))
        .fallback(|| async { ApiError::NotFound("no such API endpoint".into()) });
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/docs", get(openapi::docs_page))
        .route("/api/docs/", get(openapi::docs_page))
        .route("/api/docs/init.js", get(openapi::docs_init))
        .route("/api/docs/swagger-ui-bundle.js", get(openapi::docs_bundle))
        .route("/api/docs/swagger-ui.css", get(openapi::docs_css))
        .nest("/api/v1", v1)
}
