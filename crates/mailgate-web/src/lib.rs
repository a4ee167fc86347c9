//! mailgate's HTTP interface.
//!
//! - [`service`]: the operations behind every interface (validation, secrets sealed, rules
//!   such as "never a random sending account") — the API and the admin UI both call these.
//! - [`api`]: the REST API under `/api/v1` (JSON, bearer API keys, problem+json errors) and
//!   the health endpoints.
//! - [`ui`]: the admin web UI under `/ui` (askama templates, htmx, logins and sessions).
//! - [`error`]: [`error::ApiError`] and its RFC 9457 rendering.
//! - [`state::AppState`]: what handlers share.

pub mod api;
pub mod error;
pub mod service;
pub mod state;
pub mod ui;
mod request_log;

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

pub use state::AppState;

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    api::routes(state.clone())
        .merge(ui::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), request_log::log_requests))
        .with_state(state)
}

/// Serves HTTP on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
