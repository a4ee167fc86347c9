//! Runtime settings kept in the database (changeable without restart).

use std::collections::BTreeMap;

use mailgate_core::{Mailbox, ValidationErrors};
use mailgate_core::model::Protocol;
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::state::AppState;

/// The settings an admin can change.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Settings {
    /// Account used when a submission names none; never a random one.
    pub default_account: Option<String>,
    /// Account that sends expiry notices (default: the default account).
    pub notice_account: Option<String>,
    pub traffic_retention_days: u32,
    /// Consumed inbox messages are deleted after this many days.
    pub inbox_retention_days: u32,
    pub admin_contacts: Vec<String>,
    pub expiry_notice_days: Vec<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    pub default_account: Option<Option<String>>,
    pub notice_account: Option<Option<String>>,
    /// Days the traffic log is kept; 0 keeps it forever.
    #[schema(maximum = 36500)]
    pub traffic_retention_days: Option<u32>,
    #[schema(maximum = 36500)]
    pub inbox_retention_days: Option<u32>,
    /// Addresses that get credential expiry notices.
    pub admin_contacts: Option<Vec<String>>,
    /// Days before expiry on which a notice goes out (each 0 to 3650).
    pub expiry_notice_days: Option<Vec<u32>>,
}

fn from_map(map: &BTreeMap<String, String>) -> Settings {
    let list = |k: &str| -> Option<Vec<String>> { map.get(k).and_then(|v| serde_json::from_str(v).ok()) };
    Settings {
        default_account: map.get("default_account").cloned(),
        notice_account: map.get("notice_account").cloned(),
        traffic_retention_days: map.get("traffic_retention_days").and_then(|v| v.parse().ok()).unwrap_or(90),
        inbox_retention_days: map.get("inbox_retention_days").and_then(|v| v.parse().ok()).unwrap_or(7),
        admin_contacts: list("admin_contacts").unwrap_or_default(),
        expiry_notice_days: map
            .get("expiry_notice_days")
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_else(|| vec![90, 30, 10, 1]),
    }
}

/// Validates an optional SMTP account choice (`null` or "" clears it).
async fn smtp_account_choice(
    state: &AppState,
    field: &str,
    choice: &Option<Option<String>>,
    errors: &mut ValidationErrors,
) -> ApiResult<Option<Option<String>>> {
    let Some(choice) = choice else { return Ok(None) };
    match choice.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(Some(None)),
        Some(key) => match state.store.get_account(key).await {
            Ok(a) if a.protocol == Protocol::Smtp => Ok(Some(Some(a.name))),
            Ok(_) => {
                errors.add(field, "must be an SMTP account");
                Ok(None)
            }
            Err(mailgate_store::StoreError::NotFound(_)) => {
                errors.add(field, "no such account");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        },
    }
}

pub async fn get(state: &AppState) -> ApiResult<Settings> {
    Ok(from_map(&state.store.get_settings().await?))
}

pub async fn update(state: &AppState, input: SettingsInput) -> ApiResult<Settings> {
    let mut errors = ValidationErrors::new();
    let default_account_id = smtp_account_choice(state, "default_account", &input.default_account, &mut errors).await?;
    let notice_account_id = smtp_account_choice(state, "notice_account", &input.notice_account, &mut errors).await?;
    if let Some(days) = input.traffic_retention_days
        && days > 36_500 {
            errors.add("traffic_retention_days", "must be 0 (keep forever) to 36500");
        }
    if let Some(days) = input.inbox_retention_days
        && days > 36_500 {
            errors.add("inbox_retention_days", "must be 0 to 36500");
        }
    if let Some(contacts) = &input.admin_contacts {
        for (i, c) in contacts.iter().enumerate() {
            if let Err(e) = Mailbox::parse(c) {
                errors.add(format!("admin_contacts[{i}]"), e);
            }
        }
    }
    if let Some(days) = &input.expiry_notice_days
        && days.iter().any(|d| *d > 3650) {
            errors.add("expiry_notice_days", "each must be 0 to 3650");
        }
    errors.into_result(())?;
    let store = &state.store;
    if let Some(choice) = default_account_id {
        store.put_setting("default_account", choice.as_deref()).await?;
    }
    if let Some(choice) = notice_account_id {
        store.put_setting("notice_account", choice.as_deref()).await?;
    }
    if let Some(days) = input.traffic_retention_days {
        store.put_setting("traffic_retention_days", Some(&days.to_string())).await?;
    }
    if let Some(days) = input.inbox_retention_days {
        store.put_setting("inbox_retention_days", Some(&days.to_string())).await?;
    }
    if let Some(contacts) = input.admin_contacts {
        store.put_setting("admin_contacts", Some(&serde_json::to_string(&contacts).unwrap_or_default())).await?;
    }
    if let Some(mut days) = input.expiry_notice_days {
        days.sort_unstable_by(|a, b| b.cmp(a));
        days.dedup();
        store.put_setting("expiry_notice_days", Some(&serde_json::to_string(&days).unwrap_or_default())).await?;
    }
    get(state).await
}
