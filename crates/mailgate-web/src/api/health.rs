//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::state::AppState;

/// What `/readyz` found.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// The database answers (and its migrations were applied at start).
    pub database: bool,
    /// The spool workers and the retriever run.
    pub workers: bool,
}

/// The process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    summary = "The process is alive",
    responses(
        (status = 200, description = "ok", body = String, content_type = "text/plain"),
    ),
    security(()),
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The database answers and the workers run.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    summary = "Ready to work",
    responses(
        (status = 200, description = "Database reachable, migrations applied, workers running", body = Readiness),
        (status = 503, description = "Not ready; the fields say what is missing", body = Readiness),
    ),
    security(()),
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let database = state.store.ping().await.is_ok();
    let workers = state.workers_running();
    let ready = database && workers;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { ready, database, workers }))
}
