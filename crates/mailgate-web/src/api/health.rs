//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::state::AppState;

/// The process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The database answers and the workers run.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let database = state.store.ping().await.is_ok();
    let workers = state.workers_running();
    let ready = database && workers;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": ready, "database": database, "workers": workers})))
}
