//! The records mailgate keeps: OAuth clients, accounts, spooled mails, attempts, traffic rows
//! and API keys. Secrets are held only as [`Sealed`] ciphertext; the store's vault opens them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// A secret in clear text, held only as long as needed; `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear text: call only where the secret is about to be used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A secret encrypted at rest (the vault's text form). `Debug` never shows the ciphertext
/// either, so a record can be logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(pub String);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed(..)")
    }
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// What an account does: send (SMTP) or retrieve (IMAP).
    Protocol { Smtp => "smtp", Imap => "imap" }
);
text_enum!(
    /// How an account authenticates to its server.
    AuthMethod { Plain => "plain", Login => "login", Xoauth2 => "xoauth2", None => "none" }
);
text_enum!(
    /// Transport security: implicit TLS, STARTTLS, or none.
    Connection { Tls => "tls", Starttls => "starttls", None => "none" }
);
text_enum!(
    /// What an OAuth client authenticates with at the token endpoint.
    CredentialKind { Secret => "secret", Certificate => "certificate", GoogleServiceAccount => "google_service_account" }
);
text_enum!(
    /// The SASL mechanism for OAuth tokens: XOAUTH2, OAUTHBEARER (RFC 7628), or automatic
    /// (XOAUTH2 where offered, else OAUTHBEARER).
    OAuthMechanism { Auto => "auto", Xoauth2 => "xoauth2", Oauthbearer => "oauthbearer" }
);
text_enum!(
    /// What happens to a retrieved message on the server.
    AfterRetrieval { Delete => "delete", Move => "move" }
);
text_enum!(
    /// Where a spooled mail stands.
    MailStatus { Queued => "queued", Sending => "sending", Sent => "sent", Failed => "failed" }
);
text_enum!(
    /// How an attempt ended.
    AttemptOutcome { Sent => "sent", Temporary => "temporary", Permanent => "permanent" }
);
text_enum!(
    /// Direction of a traffic-log row.
    Direction { Out => "out", In => "in" }
);

impl Connection {
    /// The port people expect for this connection type and protocol.
    pub fn default_port(self, protocol: Protocol) -> u16 {
        match (protocol, self) {
            (Protocol::Smtp, Connection::Tls) => 465,
            (Protocol::Smtp, Connection::Starttls) => 587,
            (Protocol::Smtp, Connection::None) => 25,
            (Protocol::Imap, Connection::Tls) => 993,
            (Protocol::Imap, _) => 143,
        }
    }
}

/// An OAuth2 client registered with a provider (client credentials flow).
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthClient {
    pub id: String,
    pub name: String,
    pub template: String,
    pub tenant: Option<String>,
    pub client_id: String,
    pub credential_kind: CredentialKind,
    /// The sealed credential: client secret, private key (PEM), or service-account key (JSON).
    pub secret: Option<Sealed>,
    pub secret_updated_at: Option<Millis>,
    /// Certificate credentials: the certificate (PEM, public).
    pub certificate: Option<String>,
    /// `RS256` or `PS256` for client assertions.
    pub signing_alg: String,
    pub scopes: Vec<String>,
    /// May contain `{tenant}`, replaced when a token is requested.
    pub token_url: String,
    /// The credential's expiration date, `YYYY-MM-DD`.
    pub expires_on: Option<String>,
    pub comment: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl OAuthClient {
    /// The subject a token is requested for: Google service accounts act as each mailbox
    /// (one token per mailbox); Microsoft app tokens are tenant-wide.
    pub fn token_subject<'a>(&self, mailbox: &'a str) -> &'a str {
        if self.credential_kind == CredentialKind::GoogleServiceAccount { mailbox } else { "" }
    }

    /// The token URL with `{tenant}` substituted.
    pub fn resolved_token_url(&self) -> String {
        let tenant = self.tenant.as_deref().unwrap_or("");
        self.token_url.replace("{tenant}", tenant).replace("{TENANT}", tenant)
    }
}

/// A mail account: where and how mail is sent (SMTP) or retrieved (IMAP).
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub protocol: Protocol,
    pub auth: AuthMethod,
    pub username: String,
    pub password: Option<Sealed>,
    pub password_updated_at: Option<Millis>,
    pub oauth_client_id: Option<String>,
    pub oauth_mechanism: OAuthMechanism,
    pub send_address: Option<String>,
    pub send_name: Option<String>,
    pub connection: Connection,
    pub host: String,
    pub port: u16,
    pub imap_folder: String,
    pub after_retrieval: AfterRetrieval,
    pub move_folder: Option<String>,
    pub poll_interval_secs: u32,
    pub idle: bool,
    /// Parallel SMTP sessions this account may use.
    pub max_sessions: u32,
    pub enabled: bool,
    pub comment: String,
    pub last_success_at: Option<Millis>,
    pub last_error: Option<String>,
    pub last_error_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A mail in the outgoing spool (without its raw bytes, which are loaded when sending).
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub id: String,
    pub account_id: String,
    pub account_name: String,
    pub api_key_id: Option<String>,
    pub message_id: String,
    pub envelope_from: String,
    /// Recipients still to be delivered (shrinks when some were accepted and others deferred).
    pub recipients: Vec<String>,
    pub header_from: String,
    pub to_display: String,
    pub cc_display: String,
    pub subject: String,
    pub attachments: Vec<AttachmentSummary>,
    pub size: i64,
    pub status: MailStatus,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
    pub server_reply: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub sent_at: Option<Millis>,
}

/// One delivery attempt of a mail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub at: Millis,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    pub reply: Option<String>,
    pub duration_ms: i64,
}

/// An attachment's name and size, as the traffic log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttachmentSummary {
    pub filename: String,
    pub size: u64,
}

/// One row of the traffic log: a mail sent or received.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficEntry {
    pub id: i64,
    pub direction: Direction,
    pub account_name: String,
    pub mail_id: Option<String>,
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub subject: String,
    pub attachments: Vec<AttachmentSummary>,
    pub size: i64,
    pub at: Millis,
}

/// An API key (its hash stays in the store).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub admin: bool,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// A retrieved message (without its raw bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct InboxMessage {
    pub id: String,
    pub account_id: String,
    pub account_name: String,
    pub folder: String,
    pub uidvalidity: i64,
    pub uid: i64,
    pub message_id: Option<String>,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub date: Option<Millis>,
    pub size: i64,
    /// The full parsed view as JSON (fields, bodies, attachment list).
    pub parsed: String,
    /// Parse problems; non-empty means the message is flagged.
    pub problems: Vec<String>,
    pub received_at: Millis,
    pub claimed_until: Option<Millis>,
    pub consumed_at: Option<Millis>,
}

/// What the retriever last did for an IMAP account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrievalState {
    pub account_id: String,
    pub uidvalidity: Option<i64>,
    pub last_run_at: Option<Millis>,
    pub last_success_at: Option<Millis>,
    pub last_error: Option<String>,
    pub last_error_at: Option<Millis>,
    pub stored_total: i64,
    /// Messages left on the server because they exceed the size limit.
    pub oversize: Vec<OversizeMessage>,
}

/// A message too large to retrieve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OversizeMessage {
    pub uid: u32,
    pub size: u64,
}
