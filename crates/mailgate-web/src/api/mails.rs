//! `/api/v1/mails`: submit, list, show, retry, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailgate_core::model::MailStatus;
use mailgate_core::{ValidationErrors, rfc3339_to_millis};
use mailgate_store::MailFilter;
use serde::{Deserialize, Serialize};

use super::views::{MailView, PageView};
use super::json::{ApiPath, ApiQuery};
use super::{Caller, Paging, json};
use crate::error::Problem;
use crate::error::{ApiError, ApiResult};
use crate::service::mails::{self, Submission};
use crate::state::AppState;

/// Query parameters of a raw (`message/rfc822`) submission.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawParams {
    account: Option<String>,
    /// Comma-separated envelope recipients (default: To, Cc and Bcc of the message).
    to: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SubmitAnswer {
    id: String,
    status: String,
    message_id: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/mails",
    tag = "mails",
    operation_id = "submit_mail",
    summary = "Submit a mail",
    description = "JSON (application/json) or a complete RFC 5322 message (message/rfc822, recipients from its header unless `to` is given). 202 means the mail is stored durably. An `Idempotency-Key` header makes a retry of the same submission answer the first mail.",
    params(RawParams, ("Idempotency-Key" = Option<String>, Header, description = "Replays answer the mail first submitted with this key")),
    request_body(content((mailgate_core::submission::MailSubmission = "application/json"), (String = "message/rfc822"))),
    responses(
        (status = 202, description = "Accepted and stored", body = SubmitAnswer, headers(("Location" = String, description = "The mail's URL"), ("Idempotent-Replayed" = String, description = "true when an earlier submission with the same key was answered"))),
    ),
)]
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(value_type = Option<mailgate_core::model::MailStatus>)]
    status: Option<String>,
    account: Option<String>,
    /// Words to find in addresses, subject and body.
    q: Option<String>,
    /// Only records from this time on (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only records before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Page size, 1 to 1000 (default 50; larger values are capped).
    #[param(minimum = 1)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

fn parse_time(field: &str, value: Option<&str>, errors: &mut ValidationErrors) -> Option<i64> {
    let value = value?;
    let parsed = rfc3339_to_millis(value);
    if parsed.is_none() {
        errors.add(field, "must be an RFC 3339 time like 2026-11-29T16:00:00Z");
    }
    parsed
}

#[utoipa::path(
    get,
    path = "/api/v1/mails",
    tag = "mails",
    operation_id = "list_mails",
    summary = "List mails in the spool",
    description = "Newest first; non-admin keys see only their own mails.",
    params(ListParams),
    responses(
        (status = 200, description = "A page of mails", body = PageView<MailView>),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<PageView<MailView>>> {
    let mut errors = ValidationErrors::new();
    let status = match params.status.as_deref() {
        None => None,
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
    let (limit, offset) = Paging { limit: params.limit, offset: params.offset }.resolve()?;
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

#[utoipa::path(
    get,
    path = "/api/v1/mails/{id}",
    tag = "mails",
    operation_id = "show_mail",
    summary = "Show a mail with its attempts",
    params(("id" = String, Path, description = "Mail id")),
    responses(
        (status = 200, description = "The mail and every delivery attempt", body = MailView),
    ),
)]
pub async fn show(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Json<MailView>> {
    let mail = mails::visible_mail(&state, &id, caller.scope()).await?;
    let attempts = state.store.list_attempts(&mail.id).await?;
    Ok(Json(MailView::new(&mail, Some(&attempts))))
}

#[utoipa::path(
    get,
    path = "/api/v1/mails/{id}/raw",
    tag = "mails",
    operation_id = "mail_raw",
    summary = "Download the message as sent",
    params(("id" = String, Path, description = "Mail id")),
    responses(
        (status = 200, description = "The RFC 5322 message", body = String, content_type = "message/rfc822"),
    ),
)]
pub async fn raw(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Response> {
    let mail = mails::visible_mail(&state, &id, caller.scope()).await?;
    let raw = state.store.get_mail_raw(&mail.id).await?;
    Ok(([(header::CONTENT_TYPE, "message/rfc822")], raw).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/mails/{id}/retry",
    tag = "mails",
    operation_id = "retry_mail",
    summary = "Send a failed or waiting mail again now",
    description = "Resets the attempt count.",
    params(("id" = String, Path, description = "Mail id")),
    responses(
        (status = 200, description = "Queued again", body = MailView),
        (status = 409, description = "The mail is sent or being sent", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn retry(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Json<MailView>> {
    let mail = mails::retry(&state, &id, caller.scope()).await?;
    if caller.key.admin {
        crate::ui::auth::audit(&state, &caller.actor(), "mail.retry", &mail.id, "").await;
    }
    Ok(Json(MailView::new(&mail, None)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/mails/{id}",
    tag = "mails",
    operation_id = "delete_mail",
    summary = "Delete a mail",
    params(("id" = String, Path, description = "Mail id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "The mail is being sent", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn remove(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    mails::delete(&state, &id, caller.scope()).await?;
    if caller.key.admin {
        crate::ui::auth::audit(&state, &caller.actor(), "mail.delete", &id, "").await;
    }
    Ok(StatusCode::NO_CONTENT)
}
