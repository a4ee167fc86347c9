//! `/api/v1/mails`: submit, list, show, retry, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailgate_core::model::MailStatus;
use mailgate_core::{ValidationErrors, rfc3339_to_millis};
use mailgate_store::MailFilter;
use serde::{Deserialize, Serialize};

use super::views::{MailView, PageView};
use super::json::ApiQuery;
use super::{Caller, Paging, json};
use crate::error::{ApiError, ApiResult};
use crate::service::mails::{self, Submission};
use crate::state::AppState;

/// Query parameters of a raw (`message/rfc822`) submission.
#[derive(Debug, Deserialize)]
pub struct RawParams {
    account: Option<String>,
    /// Comma-separated envelope recipients (default: To, Cc and Bcc of the message).
    to: Option<String>,
}

#[derive(Serialize)]
pub struct SubmitAnswer {
    id: String,
    status: String,
    message_id: String,
}

pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<RawParams>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let submission = match content_type.as_str() {
        "application/json" => Submission::Json(Box::new(json::parse(&body)?)),
        "message/rfc822" => Submission::Raw {
            raw: body.to_vec(),
            account: params.account,
            envelope_to: params.to.map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()),
        },
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "send JSON (application/json) or a complete message (message/rfc822)".into(),
            ));
        }
    };
    let idempotency_key = headers.get("idempotency-key").map(|v| v.to_str().map(str::to_string));
    let idempotency_key = match idempotency_key {
        Some(Err(_)) => {
            return Err(ValidationErrors::single("Idempotency-Key", "must be visible ASCII").into());
        }
        Some(Ok(k)) => Some(k),
        None => None,
    };
    let accepted = mails::submit(&state, Some(&caller.key.id), submission, idempotency_key).await?;
    let mail = accepted.mail;
    let answer = SubmitAnswer { id: mail.id.clone(), status: mail.status.to_string(), message_id: mail.message_id.clone() };
    let mut response = (StatusCode::ACCEPTED, Json(answer)).into_response();
    if let Ok(v) = format!("/api/v1/mails/{}", mail.id).parse() {
        response.headers_mut().insert(header::LOCATION, v);
    }
    if accepted.replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    status: Option<String>,
    account: Option<String>,
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
}

fn parse_time(field: &str, value: Option<&str>, errors: &mut ValidationErrors) -> Option<i64> {
    let value = value?;
    let parsed = rfc3339_to_millis(value);
    if parsed.is_none() {
        errors.add(field, "must be an RFC 3339 time like 2026-11-29T16:00:00Z");
    }
    parsed
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<PageView<MailView>>> {
    let mut errors = ValidationErrors::new();
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(s) => {
            let parsed = MailStatus::parse(s);
            if parsed.is_none() {
                errors.add("status", "must be queued, sending, sent or failed");
            }
            parsed
        }
    };
    let since = parse_time("since", params.since.as_deref(), &mut errors);
    let until = parse_time("until", params.until.as_deref(), &mut errors);
    errors.into_result(())?;
    let account_id = match params.account.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => Some(state.store.get_account(a).await?.id),
        None => None,
    };
    let (limit, offset) = Paging { limit: params.limit, offset: params.offset }.resolve();
    let filter = MailFilter {
        status,
        account_id,
        api_key_id: caller.scope().map(str::to_string),
        query: params.q,
        since,
        until,
        limit,
        offset,
    };
    let page = state.store.list_mails(&filter).await?;
    Ok(Json(PageView { items: page.items.iter().map(|m| MailView::new(m, None)).collect(), total: page.total, limit, offset }))
}

pub async fn show(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<MailView>> {
    let mail = mails::visible_mail(&state, &id, caller.scope()).await?;
    let attempts = state.store.list_attempts(&mail.id).await?;
    Ok(Json(MailView::new(&mail, Some(&attempts))))
}

pub async fn raw(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let mail = mails::visible_mail(&state, &id, caller.scope()).await?;
    let raw = state.store.get_mail_raw(&mail.id).await?;
    Ok(([(header::CONTENT_TYPE, "message/rfc822")], raw).into_response())
}

pub async fn retry(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<MailView>> {
    let mail = mails::retry(&state, &id, caller.scope()).await?;
    if caller.key.admin {
        crate::ui::auth::audit(&state, &caller.actor(), "mail.retry", &mail.id, "").await;
    }
    Ok(Json(MailView::new(&mail, None)))
}

pub async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    mails::delete(&state, &id, caller.scope()).await?;
    if caller.key.admin {
        crate::ui::auth::audit(&state, &caller.actor(), "mail.delete", &id, "").await;
    }
    Ok(StatusCode::NO_CONTENT)
}
