//! `/api/v1/api-keys`: admins create (the key is shown once), list and revoke keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mailgate_core::now_millis;
use serde::{Deserialize, Serialize};

use super::Caller;
use super::json::ApiJson;
use super::views::ApiKeyView;
use crate::error::{ApiError, ApiResult};
use crate::service::api_keys;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
    #[serde(default)]
    admin: bool,
}

#[derive(Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    record: ApiKeyView,
    /// The key itself: shown this once, stored only as a hash.
    key: String,
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ApiKeyView>>> {
    caller.require_admin()?;
    Ok(Json(state.store.list_api_keys().await?.iter().map(ApiKeyView::from).collect()))
}

pub async fn create(State(state): State<AppState>, caller: Caller, ApiJson(input): ApiJson<NewKey>) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    caller.require_admin()?;
    let (record, key) = api_keys::create(state.store.as_ref(), &input.name, input.admin)
        .await
        .map_err(|e| ApiError::Validation(mailgate_core::ValidationErrors::single("name", e.to_string())))?;
    crate::ui::auth::audit(&state, &caller.actor(), "api_key.create", &record.name, if input.admin { "admin key" } else { "sending key" }).await;
    Ok((StatusCode::CREATED, Json(CreatedKey { record: ApiKeyView::from(&record), key })))
}

pub async fn revoke(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.store.revoke_api_key(&id, now_millis()).await?;
    crate::ui::auth::audit(&state, &caller.actor(), "api_key.revoke", &id, "").await;
    Ok(StatusCode::NO_CONTENT)
}
