//! `/api/v1/accounts`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::Caller;
use super::json::ApiJson;
use super::views::AccountView;
use crate::error::ApiResult;
use crate::service::accounts::{self, AccountInput};
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<AccountView>>> {
    caller.require_admin()?;
    let accounts = state.store.list_accounts().await?;
    Ok(Json(accounts.iter().map(AccountView::from).collect()))
}

pub async fn show(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<AccountView>> {
    caller.require_admin()?;
    Ok(Json(AccountView::from(&state.store.get_account(&id).await?)))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<AccountInput>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    caller.require_admin()?;
    let account = accounts::create(&state, input).await?;
    Ok((StatusCode::CREATED, Json(AccountView::from(&account))))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<AccountInput>,
) -> ApiResult<Json<AccountView>> {
    caller.require_admin()?;
    Ok(Json(AccountView::from(&accounts::update(&state, &id, input).await?)))
}

pub async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    accounts::delete(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
