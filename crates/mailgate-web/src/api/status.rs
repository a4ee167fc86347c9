//! `/api/v1/status`: what an admin should look at — the queue, failing accounts, credentials
//! nearing expiry, and configuration warnings (the dashboard's data).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::Caller;
use super::views::days_until;
use crate::error::ApiResult;
use crate::service::settings;
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ExpiringClient {
    pub name: String,
    pub tenant: Option<String>,
    pub expires_on: String,
    pub days_until_expiry: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FailingAccount {
    pub name: String,
    pub protocol: String,
    pub last_error: String,
    pub last_error_at: Option<String>,
}

/// What needs an admin's attention.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = StatusReport)]
pub struct Status {
    pub mails: std::collections::BTreeMap<String, i64>,
    pub expiring_clients: Vec<ExpiringClient>,
    pub failing_accounts: Vec<FailingAccount>,
    pub warnings: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "status",
    operation_id = "status",
    summary = "What needs an admin's attention",
    description = "Mails by status, failing accounts, credentials nearing expiry, configuration warnings.",
    responses(
        (status = 200, description = "The status", body = Status),
    ),
)]
pub async fn show(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Status>> {
    caller.require_admin()?;
    Ok(Json(gather(&state).await?))
}

/// What the status endpoint and the dashboard show.
pub async fn gather(state: &AppState) -> ApiResult<Status> {
    let settings = settings::get(state).await?;
    let horizon = settings.expiry_notice_days.iter().copied().max().unwrap_or(90) as i64;
    let mut warnings = Vec::new();
    let mut expiring_clients = Vec::new();
    for c in state.store.list_oauth_clients().await? {
        let Some(date) = c.expires_on.clone() else { continue };
        let Some(days) = days_until(&date) else { continue };
        if days < 0 {
            warnings.push(format!("the credential of OAuth client '{}' expired on {date}", c.name));
        }
        if days <= horizon {
            expiring_clients.push(ExpiringClient { name: c.name, tenant: c.tenant, expires_on: date, days_until_expiry: days });
        }
    }
    expiring_clients.sort_by_key(|c| c.days_until_expiry);
    if settings.admin_contacts.is_empty() {
        warnings.push("no admin contacts are set: credential expiry notices cannot be sent (Settings)".into());
    } else if settings.notice_account.is_none() && settings.default_account.is_none() {
        warnings.push("no notice or default sending account is set: credential expiry notices cannot be sent (Settings)".into());
    }
    let failing_accounts = state
        .store
        .list_accounts()
        .await?
        .into_iter()
        .filter(|a| a.last_error_at.is_some_and(|e| a.last_success_at.is_none_or(|s| e > s)))
        .map(|a| FailingAccount {
            name: a.name,
            protocol: a.protocol.to_string(),
            last_error: a.last_error.unwrap_or_default(),
            last_error_at: a.last_error_at.map(mailgate_core::millis_to_rfc3339),
        })
        .collect();
    let mails = state.store.count_mails_by_status().await?.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
    Ok(Status { mails, expiring_clients, failing_accounts, warnings })
}
