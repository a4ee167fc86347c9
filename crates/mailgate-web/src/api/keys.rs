//! `/api/v1/api-keys`: admins create (the key is shown once), list and revoke keys.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mailgate_core::now_millis;
use serde::{Deserialize, Serialize};

use super::Caller;
use super::json::{ApiJson, ApiPath};
use super::views::ApiKeyView;
use crate::error::{ApiError, ApiResult};
use crate::service::api_keys;
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    #[serde(default)]
    admin: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    record: ApiKeyView,
    /// The key itself: shown this once, stored only as a hash.
    key: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    operation_id = "list_api_keys",
    summary = "List API keys",
    responses(
        (status = 200, description = "Every key (never the key itself)", body = [ApiKeyView]),
    ),
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ApiKeyView>>> {
    caller.require_admin()?;
    Ok(Json(state.store.list_api_keys().await?.iter().map(ApiKeyView::from).collect()))
}

#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    operation_id = "create_api_key",
    summary = "Create an API key",
    description = "The key is in this answer only; mailgate keeps a hash.",
    request_body = NewKey,
    responses(
        (status = 201, description = "Created", body = CreatedKey),
    ),
)]
pub async fn create(State(state): State<AppState>, caller: Caller, ApiJson(input): ApiJson<NewKey>) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    caller.require_admin()?;
    let (record, key) = api_keys::create(state.store.as_ref(), &input.name, input.admin)
        .await
        .map_err(|e| ApiError::Validation(mailgate_core::ValidationErrors::single("name", e.to_string())))?;
    crate::ui::auth::audit(&state, &caller.actor(), "api_key.create", &record.name, if input.admin { "admin key" } else { "sending key" }).await;
    Ok((StatusCode::CREATED, Json(CreatedKey { record: ApiKeyView::from(&record), key })))
}

#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "api-keys",
    operation_id = "revoke_api_key",
    summary = "Revoke an API key",
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 409, description = "The key is the one making the request", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn revoke(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    if id == caller.key.id {
        return Err(ApiError::Conflict(
            "this is the key making the request; revoke it with another admin key or `mailgate api-key revoke`".into(),
        ));
    }
    state.store.revoke_api_key(&id, now_millis()).await?;
    crate::ui::auth::audit(&state, &caller.actor(), "api_key.revoke", &id, "").await;
    Ok(StatusCode::NO_CONTENT)
}
