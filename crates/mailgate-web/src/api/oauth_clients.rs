//! `/api/v1/oauth-clients` and `/api/v1/oauth-templates`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mailgate_core::template::{TEMPLATES, Template};

use super::Caller;
use super::json::ApiJson;
use super::views::OAuthClientView;
use crate::error::ApiResult;
use crate::ui::auth::audit;
use crate::service::oauth_clients::{self, OAuthClientInput, TokenTest};
use crate::state::AppState;

pub async fn templates(_caller: Caller) -> Json<&'static [Template]> {
    Json(TEMPLATES)
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<OAuthClientView>>> {
    caller.require_admin()?;
    let clients = state.store.list_oauth_clients().await?;
    Ok(Json(clients.iter().map(OAuthClientView::from).collect()))
}

pub async fn show(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<OAuthClientView>> {
    caller.require_admin()?;
    Ok(Json(OAuthClientView::from(&state.store.get_oauth_client(&id).await?)))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<OAuthClientInput>,
) -> ApiResult<(StatusCode, Json<OAuthClientView>)> {
    caller.require_admin()?;
    let client = oauth_clients::create(&state, input).await?;
    audit(&state, &caller.actor(), "oauth_client.create", &client.name, "").await;
    Ok((StatusCode::CREATED, Json(OAuthClientView::from(&client))))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<OAuthClientInput>,
) -> ApiResult<Json<OAuthClientView>> {
    caller.require_admin()?;
    let client = oauth_clients::update(&state, &id, input).await?;
    audit(&state, &caller.actor(), "oauth_client.update", &client.name, "").await;
    Ok(Json(OAuthClientView::from(&client)))
}

pub async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    oauth_clients::delete(&state, &id).await?;
    audit(&state, &caller.actor(), "oauth_client.delete", &id, "").await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenTestInput {
    /// Google service accounts: the mailbox to act as.
    subject: Option<String>,
}

pub async fn token_test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<TokenTest>> {
    caller.require_admin()?;
    let input: TokenTestInput = if body.iter().all(u8::is_ascii_whitespace) { TokenTestInput::default() } else { super::json::parse(&body)? };
    Ok(Json(oauth_clients::token_test(&state, &id, input.subject.as_deref()).await?))
}
