//! `/api/v1/inbox`: retrieved mail for applications — list, read, download, claim, consume.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailgate_core::{ValidationErrors, now_millis, rfc3339_to_millis};
use mailgate_store::InboxFilter;
use serde::Deserialize;

use super::json::{ApiPath, ApiQuery, OptionalJson};
use super::views::{InboxView, PageView};
use super::{Caller, Paging};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    account: Option<String>,
    /// `false` (default): not consumed yet; `true`: consumed; `all`.
    #[param(pattern = "^(false|true|all)$")]
    consumed: Option<String>,
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

#[utoipa::path(
    get,
    path = "/api/v1/inbox",
    tag = "inbox",
    operation_id = "list_inbox",
    summary = "List retrieved messages",
    params(ListParams),
    responses(
        (status = 200, description = "A page of messages", body = PageView<InboxView>),
    ),
)]
pub async fn list(State(state): State<AppState>, _caller: Caller, ApiQuery(p): ApiQuery<ListParams>) -> ApiResult<Json<PageView<InboxView>>> {
    let mut errors = ValidationErrors::new();
    let consumed = match p.consumed.as_deref() {
        None | Some("false") => Some(false),
        Some("true") => Some(true),
        Some("all") => None,
        Some(_) => {
            errors.add("consumed", "must be false, true or all");
            None
        }
    };
    let mut time = |field: &str, v: Option<&str>| {
        let t = v.map(rfc3339_to_millis)?;
        if t.is_none() {
            errors.add(field, "must be an RFC 3339 time");
        }
        t
    };
    let since = time("since", p.since.as_deref());
    let until = time("until", p.until.as_deref());
    errors.into_result(())?;
    let account_id = match p.account.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => Some(state.store.get_account(a).await?.id),
        None => None,
    };
    let (limit, offset) = Paging { limit: p.limit, offset: p.offset }.resolve()?;
    let filter = InboxFilter { account_id, consumed, query: p.q, since, until, limit, offset };
    let page = state.store.list_inbox(&filter).await?;
    Ok(Json(PageView { items: page.items.iter().map(|m| InboxView::new(m, false)).collect(), total: page.total, limit, offset }))
}

#[utoipa::path(
    get,
    path = "/api/v1/inbox/{id}",
    tag = "inbox",
    operation_id = "show_inbox_message",
    summary = "Read a retrieved message",
    description = "Parsed fields, text and HTML bodies, attachment list.",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message", body = InboxView),
    ),
)]
pub async fn show(State(state): State<AppState>, _caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Json<InboxView>> {
    Ok(Json(InboxView::new(&state.store.get_inbox_message(&id).await?, true)))
}

#[utoipa::path(
    get,
    path = "/api/v1/inbox/{id}/raw",
    tag = "inbox",
    operation_id = "inbox_raw",
    summary = "Download the message as retrieved",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The RFC 5322 message, byte for byte", body = String, content_type = "message/rfc822"),
    ),
)]
pub async fn raw(State(state): State<AppState>, _caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Response> {
    let raw = state.store.get_inbox_raw(&id).await?;
    Ok(([(header::CONTENT_TYPE, "message/rfc822")], raw).into_response())
}

/// `attachment; filename="…"; filename*=UTF-8''…` (RFC 6266) for any file name.
pub(crate) fn content_disposition(filename: &str) -> String {
    let ascii: String = filename.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String = filename
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[utoipa::path(
    get,
    path = "/api/v1/inbox/{id}/attachments/{n}",
    tag = "inbox",
    operation_id = "inbox_attachment",
    summary = "Download an attachment",
    params(("id" = String, Path, description = "Message id"), ("n" = usize, Path, description = "Attachment index, from 0")),
    responses(
        (status = 200, description = "The attachment, with its content type and file name", body = [u8], content_type = "application/octet-stream"),
    ),
)]
pub async fn attachment(State(state): State<AppState>, _caller: Caller, ApiPath((id, n)): ApiPath<(String, usize)>) -> ApiResult<Response> {
    let raw = state.store.get_inbox_raw(&id).await?;
    let (filename, content_type, bytes) = mailgate_imap::parse::attachment(&raw, n)
        .ok_or_else(|| ApiError::NotFound(format!("message '{id}' has no attachment {n}")))?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = content_type.parse() {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = content_disposition(&filename).parse() {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, axum::http::HeaderValue::from_static("nosniff"));
    Ok(response)
}

#[utoipa::path(
    delete,
    path = "/api/v1/inbox/{id}",
    tag = "inbox",
    operation_id = "consume_inbox_message",
    summary = "Mark a message consumed",
    description = "It leaves the default listing and is deleted after the inbox retention.",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 204, description = "Consumed"),
    ),
)]
pub async fn consume(State(state): State<AppState>, _caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    state.store.consume_inbox_message(&id, now_millis()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimInput {
    /// How long the message is reserved for this consumer (default 300 s, 5–3600).
    lease_secs: Option<u32>,
    account: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/inbox/claim",
    tag = "inbox",
    operation_id = "claim_inbox_message",
    summary = "Claim the oldest unconsumed message",
    description = "Reserves it for this consumer for lease_secs; other consumers do not get it meanwhile. The body is optional.",
    request_body(content = Option<ClaimInput>, content_type = "application/json"),
    responses(
        (status = 200, description = "The claimed message", body = InboxView),
        (status = 204, description = "Nothing to claim"),
    ),
)]
pub async fn claim(State(state): State<AppState>, caller: Caller, OptionalJson(input): OptionalJson<ClaimInput>) -> ApiResult<Response> {
    let lease = input.lease_secs.unwrap_or(300);
    if !(5..=3600).contains(&lease) {
        return Err(ValidationErrors::single("lease_secs", "must be 5 to 3600").into());
    }
    let account_id = match input.account.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => Some(state.store.get_account(a).await?.id),
        None => None,
    };
    let claimer = format!("{}:{}", caller.key.id, uuid::Uuid::new_v4().simple());
    match state.store.claim_inbox_message(&claimer, now_millis(), i64::from(lease) * 1000, account_id.as_deref()).await? {
        Some(m) => Ok(Json(InboxView::new(&m, true)).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}
