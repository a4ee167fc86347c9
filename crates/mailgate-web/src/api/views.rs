//! What the API shows of each record. Secrets appear only as "set" and when they changed.

use mailgate_core::model::{Account, ApiKey, Attempt, AttachmentSummary, Mail, OAuthClient, TrafficEntry};
use mailgate_core::{Millis, millis_to_rfc3339, now_millis};
use serde::Serialize;

fn ts(ms: Millis) -> String {
    millis_to_rfc3339(ms)
}

fn opt_ts(ms: Option<Millis>) -> Option<String> {
    ms.map(ts)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OAuthClientView {
    pub id: String,
    pub name: String,
    pub template: String,
    pub tenant: Option<String>,
    pub client_id: String,
    pub credential_kind: String,
    /// Whether the credential (secret, private key or key file) is stored; it is never shown.
    pub client_secret_set: bool,
    pub client_secret_updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateView>,
    pub signing_alg: String,
    pub scopes: Vec<String>,
    pub token_url: String,
    pub expires_on: Option<String>,
    /// Days until the credential expires (negative when expired).
    pub days_until_expiry: Option<i64>,
    pub comment: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Whole days from today (UTC) until `date` (`YYYY-MM-DD`).
pub fn days_until(date: &str) -> Option<i64> {
    let d = time::Date::parse(date, &time::format_description::well_known::Iso8601::DATE).ok()?;
    let today = time::OffsetDateTime::from_unix_timestamp(now_millis() / 1000).ok()?.date();
    Some((d - today).whole_days())
}

/// What identifies a certificate credential (to match it with what Entra shows).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CertificateView {
    /// SHA-1 thumbprint in hex, as the Entra portal lists it.
    pub thumbprint: String,
    /// `x5t#S256` as sent in the assertion header.
    pub thumbprint_sha256: String,
    pub pem: String,
}

impl From<&OAuthClient> for OAuthClientView {
    fn from(c: &OAuthClient) -> Self {
        OAuthClientView {
            id: c.id.clone(),
            name: c.name.clone(),
            template: c.template.clone(),
            tenant: c.tenant.clone(),
            client_id: c.client_id.clone(),
            credential_kind: c.credential_kind.to_string(),
            client_secret_set: c.secret.is_some(),
            client_secret_updated_at: opt_ts(c.secret_updated_at),
            certificate: c.certificate.as_deref().and_then(|pem| {
                let der = mailgate_oauth::assertion::certificate_der(pem).ok()?;
                Some(CertificateView {
                    thumbprint: mailgate_oauth::assertion::thumbprint_sha1_hex(&der),
                    thumbprint_sha256: mailgate_oauth::assertion::thumbprint_sha256(&der),
                    pem: pem.to_string(),
                })
            }),
            signing_alg: c.signing_alg.clone(),
            scopes: c.scopes.clone(),
            token_url: c.token_url.clone(),
            expires_on: c.expires_on.clone(),
            days_until_expiry: c.expires_on.as_deref().and_then(days_until),
            comment: c.comment.clone(),
            created_at: ts(c.created_at),
            updated_at: ts(c.updated_at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub id: String,
    pub name: String,
    pub protocol: String,
    pub auth: String,
    pub username: String,
    pub password_set: bool,
    pub password_updated_at: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_mechanism: String,
    pub send_address: Option<String>,
    pub connection: String,
    pub host: String,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imap_folder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_retrieval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub move_folder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval_secs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<bool>,
    pub max_sessions: u32,
    pub enabled: bool,
    pub comment: String,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalView>,
}

/// The retriever's last pass over an IMAP account.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RetrievalView {
    pub last_run_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub stored_total: i64,
    /// Messages left on the server because they exceed the size limit.
    pub oversize: Vec<mailgate_core::model::OversizeMessage>,
}

impl From<&mailgate_core::model::RetrievalState> for RetrievalView {
    fn from(s: &mailgate_core::model::RetrievalState) -> Self {
        RetrievalView {
            last_run_at: opt_ts(s.last_run_at),
            last_success_at: opt_ts(s.last_success_at),
            last_error: s.last_error.clone(),
            last_error_at: opt_ts(s.last_error_at),
            stored_total: s.stored_total,
            oversize: s.oversize.clone(),
        }
    }
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        let imap = a.protocol == mailgate_core::model::Protocol::Imap;
        let send_address = a.send_address.as_ref().map(|addr| {
            mailgate_core::Mailbox { name: a.send_name.clone(), address: addr.clone() }.to_string()
        });
        AccountView {
            id: a.id.clone(),
            name: a.name.clone(),
            protocol: a.protocol.to_string(),
            auth: a.auth.to_string(),
            username: a.username.clone(),
            password_set: a.password.is_some(),
            password_updated_at: opt_ts(a.password_updated_at),
            oauth_client_id: a.oauth_client_id.clone(),
            oauth_mechanism: a.oauth_mechanism.to_string(),
            send_address,
            connection: a.connection.to_string(),
            host: a.host.clone(),
            port: a.port,
            imap_folder: imap.then(|| a.imap_folder.clone()),
            after_retrieval: imap.then(|| a.after_retrieval.to_string()),
            move_folder: if imap { a.move_folder.clone() } else { None },
            poll_interval_secs: imap.then_some(a.poll_interval_secs),
            idle: imap.then_some(a.idle),
            max_sessions: a.max_sessions,
            enabled: a.enabled,
            comment: a.comment.clone(),
            last_success_at: opt_ts(a.last_success_at),
            last_error: a.last_error.clone(),
            last_error_at: opt_ts(a.last_error_at),
            created_at: ts(a.created_at),
            updated_at: ts(a.updated_at),
            retrieval: None,
        }
    }
}

/// A retrieved message; with `detail`, the parsed fields and bodies.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InboxView {
    pub id: String,
    pub account: String,
    pub folder: String,
    pub uid: i64,
    pub message_id: Option<String>,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub date: Option<String>,
    pub size: i64,
    /// True when the message did not parse cleanly; `problems` says why.
    pub flagged: bool,
    pub problems: Vec<String>,
    pub received_at: String,
    pub claimed_until: Option<String>,
    pub consumed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parsed: Option<serde_json::Value>,
}

impl InboxView {
    pub fn new(m: &mailgate_core::model::InboxMessage, detail: bool) -> InboxView {
        let parsed = detail.then(|| {
            let mut v: serde_json::Value = serde_json::from_str(&m.parsed).unwrap_or(serde_json::Value::Null);
            if let Some(date) = v.get("date").and_then(serde_json::Value::as_i64) {
                v["date"] = serde_json::Value::String(ts(date));
            }
            v
        });
        InboxView {
            id: m.id.clone(),
            account: m.account_name.clone(),
            folder: m.folder.clone(),
            uid: m.uid,
            message_id: m.message_id.clone(),
            subject: m.subject.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            cc: m.cc.clone(),
            date: opt_ts(m.date),
            size: m.size,
            flagged: !m.problems.is_empty(),
            problems: m.problems.clone(),
            received_at: ts(m.received_at),
            claimed_until: opt_ts(m.claimed_until),
            consumed_at: opt_ts(m.consumed_at),
            parsed,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub at: String,
    pub outcome: String,
    pub error: Option<String>,
    pub reply: Option<String>,
    pub duration_ms: i64,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        AttemptView {
            at: ts(a.at),
            outcome: a.outcome.to_string(),
            error: a.error.clone(),
            reply: a.reply.clone(),
            duration_ms: a.duration_ms,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MailView {
    pub id: String,
    pub status: String,
    pub account: String,
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub envelope_from: String,
    /// Recipients still to be delivered (all of them until the mail is sent).
    pub recipients: Vec<String>,
    pub subject: String,
    pub size: i64,
    pub attachments: Vec<AttachmentSummary>,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub server_reply: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub sent_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_history: Option<Vec<AttemptView>>,
}

impl MailView {
    pub fn new(m: &Mail, attempts: Option<&[Attempt]>) -> MailView {
        let waiting = m.status == mailgate_core::model::MailStatus::Queued;
        MailView {
            id: m.id.clone(),
            status: m.status.to_string(),
            account: m.account_name.clone(),
            message_id: m.message_id.clone(),
            from: m.header_from.clone(),
            to: m.to_display.clone(),
            cc: m.cc_display.clone(),
            envelope_from: m.envelope_from.clone(),
            recipients: m.recipients.clone(),
            subject: m.subject.clone(),
            size: m.size,
            attachments: m.attachments.clone(),
            attempts: m.attempts,
            next_attempt_at: waiting.then(|| ts(m.next_attempt_at)),
            last_error: m.last_error.clone(),
            server_reply: m.server_reply.clone(),
            idempotency_key: m.idempotency_key.clone(),
            created_at: ts(m.created_at),
            updated_at: ts(m.updated_at),
            sent_at: opt_ts(m.sent_at),
            attempt_history: attempts.map(|a| a.iter().map(AttemptView::from).collect()),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TrafficView {
    pub id: i64,
    pub direction: String,
    pub account: String,
    pub mail_id: Option<String>,
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub subject: String,
    pub attachments: Vec<AttachmentSummary>,
    pub size: i64,
    pub at: String,
}

impl From<&TrafficEntry> for TrafficView {
    fn from(t: &TrafficEntry) -> Self {
        TrafficView {
            id: t.id,
            direction: t.direction.to_string(),
            account: t.account_name.clone(),
            mail_id: t.mail_id.clone(),
            message_id: t.message_id.clone(),
            from: t.from.clone(),
            to: t.to.clone(),
            cc: t.cc.clone(),
            subject: t.subject.clone(),
            attachments: t.attachments.clone(),
            size: t.size,
            at: ts(t.at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub admin: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        ApiKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            admin: k.admin,
            created_at: ts(k.created_at),
            last_used_at: opt_ts(k.last_used_at),
            revoked_at: opt_ts(k.revoked_at),
        }
    }
}

/// A page of a list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PageView<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: u32,
    pub offset: u64,
}
