//! `/api/v1/oauth-clients` and `/api/v1/oauth-templates`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mailgate_core::template::{TEMPLATES, Template};

use super::Caller;
use super::json::{ApiJson, ApiPath, OptionalJson};
use super::views::OAuthClientView;
use crate::error::Problem;
use crate::error::ApiResult;
use crate::ui::auth::audit;
use crate::service::oauth_clients::{self, OAuthClientInput, TokenTest};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/v1/oauth-templates",
    tag = "oauth-clients",
    summary = "Provider templates",
    description = "Token URL and scopes for Microsoft 365 (global, US Government, China), Google Workspace and custom providers.",
    responses(
        (status = 200, description = "The templates", body = [mailgate_core::template::Template]),
    ),
)]
pub async fn templates(_caller: Caller) -> Json<&'static [Template]> {
    Json(TEMPLATES)
}

#[utoipa::path(
    get,
    path = "/api/v1/oauth-clients",
    tag = "oauth-clients",
    operation_id = "list_oauth_clients",
    summary = "List OAuth clients",
    responses(
        (status = 200, description = "Every OAuth client; credentials only as \"set\"", body = [OAuthClientView]),
    ),
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<OAuthClientView>>> {
    caller.require_admin()?;
    let clients = state.store.list_oauth_clients().await?;
    Ok(Json(clients.iter().map(OAuthClientView::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/v1/oauth-clients/{id}",
    tag = "oauth-clients",
    operation_id = "show_oauth_client",
    summary = "Show an OAuth client",
    params(("id" = String, Path, description = "OAuth client id or name")),
    responses(
        (status = 200, description = "The OAuth client", body = OAuthClientView),
    ),
)]
pub async fn show(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Json<OAuthClientView>> {
    caller.require_admin()?;
    Ok(Json(OAuthClientView::from(&state.store.get_oauth_client(&id).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/oauth-clients",
    tag = "oauth-clients",
    operation_id = "create_oauth_client",
    summary = "Create an OAuth client",
    description = "The template fills token URL and scopes; the secret, private key or key file is sealed and never shown again.",
    request_body = OAuthClientInput,
    responses(
        (status = 201, description = "Created", body = OAuthClientView),
    ),
)]
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

#[utoipa::path(
    method(put, patch),
    path = "/api/v1/oauth-clients/{id}",
    tag = "oauth-clients",
    operation_id = "update_oauth_client",
    summary = "Change an OAuth client",
    description = "Absent fields keep their value (PATCH does the same).",
    params(("id" = String, Path, description = "OAuth client id or name")),
    request_body = OAuthClientInput,
    responses(
        (status = 200, description = "Changed", body = OAuthClientView),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<OAuthClientInput>,
) -> ApiResult<Json<OAuthClientView>> {
    caller.require_admin()?;
    let client = oauth_clients::update(&state, &id, input).await?;
    audit(&state, &caller.actor(), "oauth_client.update", &client.name, "").await;
    Ok(Json(OAuthClientView::from(&client)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/oauth-clients/{id}",
    tag = "oauth-clients",
    operation_id = "delete_oauth_client",
    summary = "Delete an OAuth client",
    description = "Refused with 409 while accounts use it.",
    params(("id" = String, Path, description = "OAuth client id or name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "Accounts still use it", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn remove(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    oauth_clients::delete(&state, &id).await?;
    audit(&state, &caller.actor(), "oauth_client.delete", &id, "").await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenTestInput {
    /// Google service accounts: the mailbox to act as.
    subject: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/oauth-clients/{id}/token-test",
    tag = "oauth-clients",
    summary = "Request a token now",
    description = "Fetches a fresh token and answers the outcome and the decoded claims (never the token); a provider error comes with its likely cause and fix.",
    params(("id" = String, Path, description = "OAuth client id or name")),
    request_body(content = Option<TokenTestInput>, content_type = "application/json", description = "Optional"),
    responses(
        (status = 200, description = "The outcome (ok or the provider's error explained)", body = TokenTest),
    ),
)]
pub async fn token_test(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(input): OptionalJson<TokenTestInput>,
) -> ApiResult<Json<TokenTest>> {
    caller.require_admin()?;
    Ok(Json(oauth_clients::token_test(&state, &id, input.subject.as_deref()).await?))
}
