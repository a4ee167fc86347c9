//! Mail accounts: create, change, delete.

use mailgate_core::model::{Account, AfterRetrieval, AuthMethod, Connection, OAuthMechanism, Protocol, Secret};
use mailgate_core::{Mailbox, ValidationErrors, new_id, now_millis};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Fields of an account as an admin enters them. On update, absent fields keep their value;
/// the password is write-only; the protocol cannot change.
/// No `Debug`: it holds a password.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "name": "invoices", "protocol": "smtp", "auth": "xoauth2", "oauth_client": "contoso",
    "username": "invoices@contoso.com", "send_address": "Contoso Invoices <invoices@contoso.com>",
    "host": "smtp.office365.com", "port": 587, "connection": "starttls"
}))]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    pub name: Option<String>,
    pub protocol: Option<Protocol>,
    pub auth: Option<AuthMethod>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// OAuth client name or id (for auth `xoauth2`).
    pub oauth_client: Option<String>,
    /// `auto` (default: XOAUTH2 where offered), `xoauth2` or `oauthbearer`.
    pub oauth_mechanism: Option<OAuthMechanism>,
    /// `Name <address>` or a bare address; empty clears it.
    pub send_address: Option<String>,
    pub connection: Option<Connection>,
    pub host: Option<String>,
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    pub imap_folder: Option<String>,
    pub after_retrieval: Option<AfterRetrieval>,
    pub move_folder: Option<String>,
    #[schema(minimum = 5, maximum = 86400)]
    pub poll_interval_secs: Option<u32>,
    pub idle: Option<bool>,
    #[schema(minimum = 1, maximum = 100)]
    pub max_sessions: Option<u32>,
    pub enabled: Option<bool>,
    pub comment: Option<String>,
}

async fn apply(state: &AppState, input: AccountInput, a: &mut Account, creating: bool) -> ApiResult<()> {
    let mut errors = ValidationErrors::new();
    if let Some(name) = input.name {
        super::check_name("name", &name, &mut errors);
        a.name = name.trim().to_string();
    } else if creating {
        errors.add("name", "required");
    }
    match (input.protocol, creating) {
        (Some(p), true) => a.protocol = p,
        (Some(p), false) if p != a.protocol => errors.add("protocol", "cannot change after creation; create a new account"),
        (None, true) => errors.add("protocol", "required: smtp or imap"),
        _ => {}
    }
    if let Some(auth) = input.auth {
        a.auth = auth;
    }
    if let Some(u) = input.username {
        if u.chars().any(char::is_control) || u.len() > 320 {
            errors.add("username", "must be at most 320 characters without control characters");
        }
        a.username = u.trim().to_string();
    }
    if let Some(p) = input.password {
        if p.is_empty() {
            a.password = None;
            a.password_updated_at = None;
        } else {
            a.password = Some(state.vault.seal(&Secret::new(p)));
            a.password_updated_at = Some(now_millis());
        }
    }
    if let Some(key) = input.oauth_client {
        if key.trim().is_empty() {
            a.oauth_client_id = None;
        } else {
            match state.store.get_oauth_client(key.trim()).await {
                Ok(c) => a.oauth_client_id = Some(c.id),
                Err(mailgate_store::StoreError::NotFound(_)) => errors.add("oauth_client", "no OAuth client with this name or id"),
                Err(e) => return Err(e.into()),
            }
        }
    }
    if let Some(m) = input.oauth_mechanism {
        a.oauth_mechanism = m;
    }
    if let Some(s) = input.send_address {
        if s.trim().is_empty() {
            a.send_address = None;
            a.send_name = None;
        } else {
            match Mailbox::parse(&s) {
                Ok(m) => {
                    a.send_address = Some(m.address);
                    a.send_name = m.name;
                }
                Err(e) => errors.add("send_address", e),
            }
        }
    }
    let connection_given = input.connection.is_some();
    if let Some(c) = input.connection {
        a.connection = c;
    }
    if let Some(h) = input.host {
        super::check_host("host", h.trim(), &mut errors);
        a.host = h.trim().to_string();
    } else if creating {
        errors.add("host", "required");
    }
    match input.port {
        Some(0) => errors.add("port", "must be 1 to 65535"),
        Some(p) => a.port = p,
        None if creating || connection_given => a.port = a.connection.default_port(a.protocol),
        None => {}
    }
    if let Some(f) = input.imap_folder {
        if f.trim().is_empty() || f.chars().any(char::is_control) {
            errors.add("imap_folder", "must be a folder name");
        }
        a.imap_folder = f;
    }
    if let Some(r) = input.after_retrieval {
        a.after_retrieval = r;
    }
    if let Some(f) = input.move_folder {
        a.move_folder = (!f.trim().is_empty()).then_some(f);
    }
    if let Some(p) = input.poll_interval_secs {
        if !(5..=86_400).contains(&p) {
            errors.add("poll_interval_secs", "must be 5 to 86400 seconds");
        }
        a.poll_interval_secs = p;
    }
    if let Some(i) = input.idle {
        a.idle = i;
    }
    if let Some(m) = input.max_sessions {
        if !(1..=100).contains(&m) {
            errors.add("max_sessions", "must be 1 to 100");
        }
        a.max_sessions = m;
    }
    if let Some(e) = input.enabled {
        a.enabled = e;
    }
    if let Some(c) = input.comment {
        a.comment = c;
    }
    // Rules across fields.
    match a.auth {
        AuthMethod::Xoauth2 if a.oauth_client_id.is_none() && !errors.errors.iter().any(|e| e.field == "oauth_client") => {
            errors.add("oauth_client", "required for auth xoauth2")
        }
        AuthMethod::Plain | AuthMethod::Login if a.password.is_none() => errors.add("password", "required for this auth method"),
        _ => {}
    }
    if a.auth != AuthMethod::None && a.username.is_empty() {
        errors.add("username", "required for this auth method (the mailbox address for Microsoft 365)");
    }
    if a.protocol == Protocol::Imap && a.auth == AuthMethod::None {
        errors.add("auth", "IMAP accounts must authenticate");
    }
    if a.after_retrieval == AfterRetrieval::Move && a.move_folder.is_none() {
        errors.add("move_folder", "required when after_retrieval is move");
    }
    errors.into_result(()).map_err(ApiError::from)
}

pub async fn create(state: &AppState, input: AccountInput) -> ApiResult<Account> {
    let now = now_millis();
    let mut account = Account {
        id: new_id(),
        name: String::new(),
        protocol: input.protocol.unwrap_or(Protocol::Smtp),
        auth: AuthMethod::Xoauth2,
        username: String::new(),
        password: None,
        password_updated_at: None,
        oauth_client_id: None,
        oauth_mechanism: OAuthMechanism::Auto,
        send_address: None,
        send_name: None,
        connection: Connection::Starttls,
        host: String::new(),
        port: 0,
        imap_folder: "INBOX".into(),
        after_retrieval: AfterRetrieval::Delete,
        move_folder: None,
        poll_interval_secs: 60,
        idle: false,
        max_sessions: 4,
        enabled: true,
        comment: String::new(),
        last_success_at: None,
        last_error: None,
        last_error_at: None,
        created_at: now,
        updated_at: now,
    };
    apply(state, input, &mut account, true).await?;
    state.store.insert_account(&account).await?;
    tracing::info!(account = %account.name, protocol = %account.protocol, "account created");
    Ok(account)
}

pub async fn update(state: &AppState, id: &str, input: AccountInput) -> ApiResult<Account> {
    let mut account = state.store.get_account(id).await?;
    apply(state, input, &mut account, false).await?;
    account.updated_at = now_millis().max(account.updated_at + 1);
    state.store.update_account(&account).await?;
    tracing::info!(account = %account.name, "account changed");
    Ok(account)
}

pub async fn delete(state: &AppState, id: &str) -> ApiResult<()> {
    let account = state.store.get_account(id).await?;
    state.store.delete_account(&account.id).await?;
    tracing::info!(account = %account.name, "account deleted");
    Ok(())
}
