//! Expiry notices: before an OAuth client's credential expires (default 90, 30, 10 and 1 days
//! before, and at once when it has expired), the admin contacts get a mail naming the client,
//! its tenant and the date, and saying how to renew. One notice per threshold, also across
//! restarts (the store remembers); a new expiration date starts over.

use mailgate_core::model::OAuthClient;
use mailgate_core::now_millis;
use mailgate_core::submission::{AddressInput, MailSubmission, OneOrMany};

use crate::service::mails::{self, Submission};
use crate::service::settings;
use crate::state::AppState;

/// What the run did for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub client: String,
    pub expires_on: String,
    pub days_left: i64,
    /// The most urgent threshold reached (-1: expired).
    pub threshold: i64,
    /// The spooled notice, or `None` when it could not be sent (see the warnings).
    pub mail_id: Option<String>,
}

fn parse_date(s: &str) -> Option<time::Date> {
    time::Date::parse(s, &time::format_description::well_known::Iso8601::DATE).ok()
}

fn body(client: &OAuthClient, days_left: i64, expires_on: &str) -> (String, String) {
    let tenant = client.tenant.as_deref().unwrap_or("(none)");
    let when = if days_left < 0 {
        format!("EXPIRED on {expires_on}")
    } else if days_left == 0 {
        format!("expires TODAY ({expires_on})")
    } else {
        format!("expires in {days_left} day{} ({expires_on})", if days_left == 1 { "" } else { "s" })
    };
    let subject = format!("[mailgate] OAuth client \"{}\" credential {when}", client.name);
    let text = format!(
        "The credential of the OAuth client \"{name}\" {when}.\n\n\
         Client:    {name}\nTemplate:  {template}\nTenant:    {tenant}\nClient ID: {client_id}\nExpires:   {expires_on}\n\n\
         When it has expired, every mail account using this client stops sending and retrieving mail.\n\n\
         How to renew (Microsoft Entra):\n\
         1. Entra admin center → App registrations → the application with client ID {client_id}\n   → Certificates & secrets → New client secret. Copy its Value (not the Secret ID).\n\
         2. In mailgate, edit the OAuth client \"{name}\": paste the new secret and set the new expiration date.\n\
         3. Run \"Test token\" on the client to confirm, then delete the old secret in Entra.\n\n\
         Nothing else (API permissions, mailbox permissions) needs to be redone.\n",
        name = client.name,
        template = client.template,
        client_id = client.client_id,
    );
    (subject, text)
}

/// Sends the notices due on `today`. Runs at start and every hour; the clock is a parameter so
/// tests can move it.
pub async fn run(state: &AppState, today: time::Date) -> anyhow::Result<Vec<Notice>> {
    let settings = settings::get(state).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut thresholds: Vec<i64> = settings.expiry_notice_days.iter().map(|d| i64::from(*d)).collect();
    thresholds.sort_unstable();
    let account = state.store.get_settings().await?.get("notice_account").cloned().or(settings.default_account.clone());
    let mut out = Vec::new();
    for client in state.store.list_oauth_clients().await? {
        let Some(expires_on) = client.expires_on.clone() else { continue };
        let Some(date) = parse_date(&expires_on) else { continue };
        let days_left = (date - today).whole_days();
        // Every threshold reached so far; -1 stands for "expired".
        let mut due: Vec<i64> = thresholds.iter().copied().filter(|t| days_left <= *t).collect();
        if days_left < 0 {
            due.insert(0, -1);
        }
        let Some(&most_urgent) = due.first() else { continue };
        let sent = state.store.expiry_notices_sent(&client.id, &expires_on).await?;
        if sent.contains(&most_urgent) {
            continue;
        }
        let mut notice = Notice { client: client.name.clone(), expires_on: expires_on.clone(), days_left, threshold: most_urgent, mail_id: None };
        if settings.admin_contacts.is_empty() {
            tracing::warn!(oauth_client = %client.name, days_left, "credential expiry notice not sent: no admin contacts are set");
            out.push(notice);
            continue;
        }
        let Some(account) = account.clone() else {
            tracing::warn!(oauth_client = %client.name, days_left, "credential expiry notice not sent: no notice or default sending account is set");
            out.push(notice);
            continue;
        };
        let (subject, text) = body(&client, days_left, &expires_on);
        let submission = MailSubmission {
            account: Some(account),
            to: OneOrMany::Many(settings.admin_contacts.iter().cloned().map(AddressInput::Text).collect()),
            subject: Some(subject),
            text: Some(text),
            ..Default::default()
        };
        match mails::submit(state, None, Submission::Json(Box::new(submission)), None).await {
            Ok(accepted) => {
                tracing::info!(oauth_client = %client.name, days_left, mail_id = %accepted.mail.id, "credential expiry notice spooled");
                state.store.record_expiry_notices(&client.id, &expires_on, &due, now_millis(), Some(&accepted.mail.id)).await?;
                notice.mail_id = Some(accepted.mail.id);
            }
            Err(e) => tracing::warn!(oauth_client = %client.name, error = %e, "credential expiry notice could not be spooled"),
        }
        out.push(notice);
    }
    Ok(out)
}

/// Today's date in UTC.
pub fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}
