//! `/api/v1/settings`.

use axum::Json;
use axum::extract::State;

use super::Caller;
use super::json::ApiJson;
use crate::error::ApiResult;
use crate::service::settings::{self, Settings, SettingsInput};
use crate::state::AppState;

pub async fn show(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Settings>> {
    caller.require_admin()?;
    Ok(Json(settings::get(&state).await?))
}

pub async fn update(State(state): State<AppState>, caller: Caller, ApiJson(input): ApiJson<SettingsInput>) -> ApiResult<Json<Settings>> {
    caller.require_admin()?;
    let settings = settings::update(&state, input).await?;
    crate::ui::auth::audit(&state, &caller.actor(), "settings.update", "settings", "").await;
    Ok(Json(settings))
}
