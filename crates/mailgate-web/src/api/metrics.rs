//! `/metrics` in Prometheus' text format: credential expiry per OAuth client, the spool by
//! status, and this node's token requests. Label values are admin-chosen names (bounded),
//! never addresses or subjects.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiResult;
use crate::state::AppState;

fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "The text exposition format. When `metrics_token` is configured, send it as a bearer token.",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain"),
        (status = 401, description = "metrics_token is set and was not given", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security((), ("metrics_token" = [])),
)]
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> ApiResult<Response> {
    if let Some(expected) = &state.metrics_token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        // Comparing digests keeps the comparison's timing independent of the token.
        let digest = |v: &str| ring::digest::digest(&ring::digest::SHA256, v.as_bytes()).as_ref().to_vec();
        let matches = given.is_some_and(|g| digest(g) == digest(expected));
        if !matches {
            return Err(crate::error::ApiError::Unauthorized);
        }
    }
    let mut out = String::new();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    out.push_str("# HELP mailgate_oauth_credential_expiry_seconds Seconds until the OAuth client's credential expires (negative: expired).\n");
    out.push_str("# TYPE mailgate_oauth_credential_expiry_seconds gauge\n");
    for c in state.store.list_oauth_clients().await? {
        let Some(date) = c.expires_on.as_deref() else { continue };
        let Ok(date) = time::Date::parse(date, &time::format_description::well_known::Iso8601::DATE) else { continue };
        let expires = date.midnight().assume_utc().unix_timestamp();
        let _ = writeln!(out, "mailgate_oauth_credential_expiry_seconds{{client=\"{}\"}} {}", label(&c.name), expires - now);
    }
    out.push_str("# HELP mailgate_spool_mails Mails in the outgoing spool by status.\n# TYPE mailgate_spool_mails gauge\n");
    let counts = state.store.count_mails_by_status().await?;
    for status in mailgate_core::model::MailStatus::ALL {
        let n = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "mailgate_spool_mails{{status=\"{status}\"}} {n}");
    }
    out.push_str("# HELP mailgate_retrieval_oversize_messages Messages left on the server because they exceed the size limit.\n");
    out.push_str("# TYPE mailgate_retrieval_oversize_messages gauge\n");
    for a in state.store.list_accounts().await? {
        if a.protocol != mailgate_core::model::Protocol::Imap {
            continue;
        }
        let oversize = state.store.get_retrieval_state(&a.id).await?.map_or(0, |s| s.oversize.len());
        let _ = writeln!(out, "mailgate_retrieval_oversize_messages{{account=\"{}\"}} {oversize}", label(&a.name));
    }
    let stats = &state.tokens.stats;
    out.push_str("# HELP mailgate_token_requests_total Token requests this node made.\n# TYPE mailgate_token_requests_total counter\n");
    let _ = writeln!(out, "mailgate_token_requests_total {}", stats.requests.load(Ordering::Relaxed));
    out.push_str("# HELP mailgate_token_request_failures_total Token requests that failed.\n# TYPE mailgate_token_request_failures_total counter\n");
    let _ = writeln!(out, "mailgate_token_request_failures_total {}", stats.failures.load(Ordering::Relaxed));
    state.metrics.render(&mut out);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response())
}
