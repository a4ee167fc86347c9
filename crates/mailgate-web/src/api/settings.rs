//! `/api/v1/settings`.

use axum::Json;
use axum::extract::State;

use super::Caller;
use super::json::ApiJson;
use crate::error::ApiResult;
use crate::service::settings::{self, Settings, SettingsInput};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/v1/settings",
    tag = "settings",
    operation_id = "show_settings",
    summary = "Show runtime settings",
    responses(
        (status = 200, description = "The settings", body = Settings),
    ),
)]
pub async fn show(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Settings>> {
    caller.require_admin()?;
    Ok(Json(settings::get(&state).await?))
}

#[utoipa::path(
    method(put, patch),
    path = "/api/v1/settings",
    tag = "settings",
    operation_id = "update_settings",
    summary = "Change runtime settings",
    description = "Absent fields keep their value (PATCH does the same); null clears an account choice.",
    request_body = SettingsInput,
    responses(
        (status = 200, description = "The settings now", body = Settings),
    ),
)]
pub async fn update(State(state): State<AppState>, caller: Caller, ApiJson(input): ApiJson<SettingsInput>) -> ApiResult<Json<Settings>> {
    caller.require_admin()?;
    let settings = settings::update(&state, input).await?;
    crate::ui::auth::audit(&state, &caller.actor(), "settings.update", "settings", "").await;
    Ok(Json(settings))
}
