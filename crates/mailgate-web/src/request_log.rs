//! One log line per request, inside a span carrying a request id (also sent back as
//! `x-request-id`, and shown in 500 answers so an admin can find the log line).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use crate::state::AppState;

pub async fn log_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    let span = tracing::info_span!("http", request_id = %id, method = %method, route = %route);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let status_text = status.to_string();
    state.metrics.inc(
        mailgate_core::metrics::HTTP_REQUESTS,
        &[("route", route.as_str()), ("method", method.as_str()), ("status", status_text.as_str())],
    );
    span.in_scope(|| {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::error!(status, ms, "request failed");
        } else {
            tracing::debug!(status, ms, "request");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}
