//! `/api/v1/accounts`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::Caller;
use super::json::{ApiJson, ApiPath, OptionalJson};
use super::views::{AccountView, RetrievalView};
use crate::error::Problem;
use crate::error::ApiResult;
use crate::ui::auth::audit;
use crate::service::accounts::{self, AccountInput};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/v1/accounts",
    tag = "accounts",
    operation_id = "list_accounts",
    summary = "List mail accounts",
    responses(
        (status = 200, description = "Every account; passwords only as \"set\"", body = [AccountView]),
    ),
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<AccountView>>> {
    caller.require_admin()?;
    let accounts = state.store.list_accounts().await?;
    Ok(Json(accounts.iter().map(AccountView::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/v1/accounts/{id}",
    tag = "accounts",
    operation_id = "show_account",
    summary = "Show a mail account",
    params(("id" = String, Path, description = "Account id or name")),
    responses(
        (status = 200, description = "The account, with the retriever's last pass for IMAP", body = AccountView),
    ),
)]
pub async fn show(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Json<AccountView>> {
    caller.require_admin()?;
    let account = state.store.get_account(&id).await?;
    let mut view = AccountView::from(&account);
    if account.protocol == mailgate_core::model::Protocol::Imap {
        view.retrieval = state.store.get_retrieval_state(&account.id).await?.as_ref().map(RetrievalView::from);
    }
    Ok(Json(view))
}

#[utoipa::path(
    post,
    path = "/api/v1/accounts",
    tag = "accounts",
    operation_id = "create_account",
    summary = "Create a mail account",
    request_body = AccountInput,
    responses(
        (status = 201, description = "Created", body = AccountView),
    ),
)]
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

#[utoipa::path(
    method(put, patch),
    path = "/api/v1/accounts/{id}",
    tag = "accounts",
    operation_id = "update_account",
    summary = "Change a mail account",
    description = "Absent fields keep their value (PATCH does the same); the protocol cannot change.",
    params(("id" = String, Path, description = "Account id or name")),
    request_body = AccountInput,
    responses(
        (status = 200, description = "Changed", body = AccountView),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<AccountInput>,
) -> ApiResult<Json<AccountView>> {
    caller.require_admin()?;
    let account = accounts::update(&state, &id, input).await?;
    audit(&state, &caller.actor(), "account.update", &account.name, "").await;
    Ok(Json(AccountView::from(&account)))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestInput {
    /// SMTP accounts: send a test mail to this address.
    send_to: Option<String>,
}

/// Diagnoses the account step by step (DNS, TCP, TLS, greeting, token, claims, AUTH, test
/// mail or SELECT); a failed step carries the likely cause and the fix.
#[utoipa::path(
    post,
    path = "/api/v1/accounts/{id}/test",
    tag = "accounts",
    operation_id = "test_account",
    summary = "Diagnose an account step by step",
    description = "DNS, TCP, TLS, greeting, token, token claims, AUTH, then a test mail (SMTP, with send_to) or SELECT of the folder (IMAP). A failed step names the likely cause and the fix. The body is optional.",
    params(("id" = String, Path, description = "Account id or name")),
    request_body(content = Option<TestInput>, content_type = "application/json"),
    responses(
        (status = 200, description = "The diagnosis", body = mailgate_check::CheckReport),
    ),
)]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(input): OptionalJson<TestInput>,
) -> ApiResult<Json<mailgate_check::CheckReport>> {
    caller.require_admin()?;
    let account = state.store.get_account(&id).await?;
    let options = mailgate_check::CheckOptions { send_to: input.send_to };
    Ok(Json(state.checker.check_account(&account, &options).await))
}

/// Retrieves an IMAP account now and answers what the pass did.
#[utoipa::path(
    post,
    path = "/api/v1/accounts/{id}/retrieve",
    tag = "accounts",
    operation_id = "retrieve_account",
    summary = "Retrieve an IMAP account now",
    params(("id" = String, Path, description = "Account id or name")),
    responses(
        (status = 200, description = "What the pass did: {ok, stored, duplicates, removed, oversize} or {ok: false, error, temporary}", body = serde_json::Value),
        (status = 409, description = "Not an IMAP account", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn retrieve(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Json<serde_json::Value>> {
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

#[utoipa::path(
    delete,
    path = "/api/v1/accounts/{id}",
    tag = "accounts",
    operation_id = "delete_account",
    summary = "Delete a mail account",
    params(("id" = String, Path, description = "Account id or name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "Still in use (queued mails or a setting names it)", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn remove(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    accounts::delete(&state, &id).await?;
    audit(&state, &caller.actor(), "account.delete", &id, "").await;
    Ok(StatusCode::NO_CONTENT)
}
