//! Submitting mail to the spool, and acting on spooled mail.

use mailgate_core::model::{Account, Mail, Protocol};
use mailgate_core::submission::{self, MailSubmission};
use mailgate_core::{Mailbox, ValidationErrors, new_id, now_millis};
use mailgate_store::{Inserted, NewMail, StoreError};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A submission in one of the accepted forms.
#[derive(Debug)]
pub enum Submission {
    Json(Box<MailSubmission>),
    /// A complete RFC 5322 message; recipients from its header unless `envelope_to` is given.
    Raw { raw: Vec<u8>, account: Option<String>, envelope_to: Option<Vec<String>> },
}

/// A mail the spool accepted (or had accepted before under the same idempotency key).
#[derive(Debug)]
pub struct Accepted {
    pub mail: Mail,
    pub replayed: bool,
}

fn check_idempotency_key(key: &str) -> Result<(), ValidationErrors> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ValidationErrors::single("Idempotency-Key", "must be 1 to 255 visible ASCII characters"));
    }
    Ok(())
}

/// The account a submission goes out through: the named one, else the configured default —
/// never a random one.
async fn sending_account(state: &AppState, named: Option<&str>) -> ApiResult<Account> {
    let key = match named.map(str::trim).filter(|s| !s.is_empty()) {
        Some(name) => name.to_string(),
        None => match state.store.get_settings().await?.remove("default_account") {
            Some(default) => default,
            None => {
                return Err(ValidationErrors::single("account", "required: name the sending account (no default account is set)").into());
            }
        },
    };
    let account = match state.store.get_account(&key).await {
        Ok(a) => a,
        Err(StoreError::NotFound(_)) => {
            return Err(ValidationErrors::single("account", format!("no account named '{key}'")).into());
        }
        Err(e) => return Err(e.into()),
    };
    if account.protocol != Protocol::Smtp {
        return Err(ValidationErrors::single("account", format!("'{}' is an IMAP account; mail is sent through SMTP accounts", account.name)).into());
    }
    if !account.enabled {
        return Err(ValidationErrors::single("account", format!("the account '{}' is disabled", account.name)).into());
    }
    Ok(account)
}

fn send_address(account: &Account) -> Option<Mailbox> {
    account.send_address.as_ref().map(|a| Mailbox { name: account.send_name.clone(), address: a.clone() })
}

/// Validates, builds and durably spools a mail; wakes the spool.
pub async fn submit(
    state: &AppState,
    api_key_id: Option<&str>,
    submission: Submission,
    idempotency_key: Option<String>,
) -> ApiResult<Accepted> {
    if let Some(k) = &idempotency_key {
        check_idempotency_key(k)?;
    }
    let now = now_millis();
    let (account, prepared) = match submission {
        Submission::Json(sub) => {
            let account = sending_account(state, sub.account.as_deref()).await?;
            let prepared = submission::prepare_json(&sub, send_address(&account).as_ref(), &state.limits, now)?;
            (account, prepared)
        }
        Submission::Raw { raw, account, envelope_to } => {
            let account = sending_account(state, account.as_deref()).await?;
            let prepared =
                submission::prepare_raw(&raw, send_address(&account).as_ref(), envelope_to.as_deref(), &state.limits, now)?;
            (account, prepared)
        }
    };
    let new = NewMail {
        id: new_id(),
        account_id: account.id.clone(),
        api_key_id: api_key_id.map(str::to_string),
        message_id: prepared.message_id,
        envelope_from: prepared.envelope_from,
        recipients: prepared.recipients,
        header_from: prepared.header_from,
        to_display: prepared.to_display,
        cc_display: prepared.cc_display,
        subject: prepared.subject,
        attachments: prepared.attachments,
        body_text: prepared.body_text,
        raw: prepared.raw,
        idempotency_key,
        now,
    };
    let accepted = match state.store.insert_mail(&new).await? {
        Inserted::Created(mail) => {
            tracing::info!(mail_id = %mail.id, account = %account.name, size = mail.size, "mail accepted");
            state.metrics.inc(mailgate_core::metrics::MAILS_SUBMITTED, &[("account", account.name.as_str())]);
            state.spool.wake();
            Accepted { mail, replayed: false }
        }
        Inserted::Existing(mail) => Accepted { mail, replayed: true },
    };
    Ok(accepted)
}

/// A mail visible to the caller: admins see all, other keys their own.
pub async fn visible_mail(state: &AppState, id: &str, api_key_id: Option<&str>) -> ApiResult<Mail> {
    let mail = state.store.get_mail(id).await?;
    if let Some(key) = api_key_id
        && mail.api_key_id.as_deref() != Some(key) {
            return Err(ApiError::NotFound(format!("mail '{id}' not found")));
        }
    Ok(mail)
}

pub async fn retry(state: &AppState, id: &str, api_key_id: Option<&str>) -> ApiResult<Mail> {
    let mail = visible_mail(state, id, api_key_id).await?;
    let mail = state.store.retry_mail(&mail.id, now_millis()).await?;
    state.spool.wake();
    Ok(mail)
}

pub async fn delete(state: &AppState, id: &str, api_key_id: Option<&str>) -> ApiResult<()> {
    let mail = visible_mail(state, id, api_key_id).await?;
    state.store.delete_mail(&mail.id).await?;
    Ok(())
}
