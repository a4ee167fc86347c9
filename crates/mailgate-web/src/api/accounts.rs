//! `/api/v1/accounts`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::Caller;
use super::json::ApiJson;
use super::views::{AccountView, RetrievalView};
use crate::error::ApiResult;
use crate::ui::auth::audit;
use crate::service::accounts::{self, AccountInput};
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<AccountView>>> {
    caller.require_admin()?;
    let accounts = state.store.list_accounts().await?;
    Ok(Json(accounts.iter().map(AccountView::from).collect()))
}

pub async fn show(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<AccountView>> {
    caller.require_admin()?;
    let account = state.store.get_account(&id).await?;
    let mut view = AccountView::from(&account);
    if account.protocol == mailgate_core::model::Protocol::Imap {
        view.retrieval = state.store.get_retrieval_state(&account.id).await?.as_ref().map(RetrievalView::from);
    }
    Ok(Json(view))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<AccountInput>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    caller.require_admin()?;
    let account = accounts::create(&state, input).await?;
    audit(&state, &caller.actor(), "account.create", &account.name, "").await;
    Ok((StatusCode::CREATED, Json(AccountView::from(&account))))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<AccountInput>,
) -> ApiResult<Json<AccountView>> {
    caller.require_admin()?;
    let account = accounts::update(&state, &id, input).await?;
    audit(&state, &caller.actor(), "account.update", &account.name, "").await;
    Ok(Json(AccountView::from(&account)))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestInput {
    /// SMTP accounts: send a test mail to this address.
    send_to: Option<String>,
}

/// Diagnoses the account step by step (DNS, TCP, TLS, greeting, token, claims, AUTH, test
/// mail or SELECT); a failed step carries the likely cause and the fix.
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<mailgate_check::CheckReport>> {
    caller.require_admin()?;
    let input: TestInput = if body.iter().all(u8::is_ascii_whitespace) { TestInput::default() } else { super::json::parse(&body)? };
    let account = state.store.get_account(&id).await?;
    let options = mailgate_check::CheckOptions { send_to: input.send_to };
    Ok(Json(state.checker.check_account(&account, &options).await))
}

/// Retrieves an IMAP account now and answers what the pass did.
pub async fn retrieve(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    let account = state.store.get_account(&id).await?;
    if account.protocol != mailgate_core::model::Protocol::Imap {
        return Err(crate::error::ApiError::Conflict(format!("'{}' is an SMTP account; only IMAP accounts retrieve mail", account.name)));
    }
    let result = state.retriever.retrieve_once(&account).await;
    Ok(Json(match result {
        Ok(r) => serde_json::json!({"ok": true, "stored": r.stored, "duplicates": r.duplicates, "removed": r.removed, "oversize": r.oversize}),
        Err(e) => serde_json::json!({"ok": false, "error": e.message, "temporary": e.temporary}),
    }))
}

pub async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    accounts::delete(&state, &id).await?;
    audit(&state, &caller.actor(), "account.delete", &id, "").await;
    Ok(StatusCode::NO_CONTENT)
}
