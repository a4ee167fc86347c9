//! Bearer API keys.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mailgate_core::model::ApiKey;
use mailgate_core::now_millis;

use crate::error::{ApiError, ApiResult};
use crate::service::api_keys;
use crate::state::AppState;

/// The API key that made the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: ApiKey,
}

impl Caller {
    /// `None` for admins (everything is visible), else the key whose mails are visible.
    pub fn scope(&self) -> Option<&str> {
        if self.key.admin { None } else { Some(&self.key.id) }
    }

    /// Who made a change, for the audit log.
    pub fn actor(&self) -> String {
        format!("api-key:{}", self.key.name)
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.key.admin { Ok(()) } else { Err(ApiError::Forbidden) }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let key = state
            .store
            .authenticate_api_key(&api_keys::hash(token), now_millis())
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Caller { key })
    }
}
