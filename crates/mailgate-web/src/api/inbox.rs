//! `/api/v1/inbox`: retrieved mail for applications — list, read, download, claim, consume.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailgate_core::{ValidationErrors, now_millis, rfc3339_to_millis};
use mailgate_store::InboxFilter;
use serde::Deserialize;

use super::json::ApiQuery;
use super::views::{InboxView, PageView};
use super::{Caller, Paging};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct ListParams {
    account: Option<String>,
    /// `false` (default): not consumed yet; `true`: consumed; `all`.
    consumed: Option<String>,
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
}

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
    let (limit, offset) = Paging { limit: p.limit, offset: p.offset }.resolve();
    let filter = InboxFilter { account_id, consumed, query: p.q, since, until, limit, offset };
    let page = state.store.list_inbox(&filter).await?;
    Ok(Json(PageView { items: page.items.iter().map(|m| InboxView::new(m, false)).collect(), total: page.total, limit, offset }))
}

pub async fn show(State(state): State<AppState>, _caller: Caller, Path(id): Path<String>) -> ApiResult<Json<InboxView>> {
    Ok(Json(InboxView::new(&state.store.get_inbox_message(&id).await?, true)))
}

pub async fn raw(State(state): State<AppState>, _caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
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

pub async fn attachment(State(state): State<AppState>, _caller: Caller, Path((id, n)): Path<(String, usize)>) -> ApiResult<Response> {
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

pub async fn consume(State(state): State<AppState>, _caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.store.consume_inbox_message(&id, now_millis()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimInput {
    /// How long the message is reserved for this consumer (default 300 s, 5–3600).
    lease_secs: Option<u32>,
    account: Option<String>,
}

pub async fn claim(State(state): State<AppState>, caller: Caller, body: axum::body::Bytes) -> ApiResult<Response> {
    let input: ClaimInput = if body.iter().all(u8::is_ascii_whitespace) { ClaimInput::default() } else { super::json::parse(&body)? };
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
