//! What an SMTP server's refusal most likely means, and what the admin does about it.
//! The Exchange Online cases follow the replies users of other tools have reported; step
//! numbers refer to the Microsoft 365 setup guide.

use crate::client::{SmtpError, Stage};
use crate::reply::Reply;

/// A likely cause with its fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Hint {
    pub cause: &'static str,
    pub fix: &'static str,
}

const fn hint(cause: &'static str, fix: &'static str) -> Option<Hint> {
    Some(Hint { cause, fix })
}

/// Explains a refusal; `oauth` says whether the account authenticates with XOAUTH2.
pub fn explain_reply(stage: Stage, reply: &Reply, oauth: bool) -> Option<Hint> {
    let text = reply.text();
    let enhanced = reply.enhanced().unwrap_or("");
    if text.contains("5.7.139") || text.contains("SmtpClientAuthentication is disabled") {
        return hint(
            "SMTP AUTH is disabled for the tenant or this mailbox",
            "enable 'Authenticated SMTP' for the mailbox in the Microsoft 365 admin center, and make sure it is not disabled organisation-wide (setup step 2)",
        );
    }
    if text.contains("5.7.30") || text.contains("Basic authentication is not supported") {
        return hint("the server no longer accepts passwords", "switch the account to auth 'xoauth2' with an OAuth client");
    }
    if text.contains("SendAsDenied") {
        return hint(
            "the mailbox may not send as this From address",
            "send as the mailbox itself, or grant Send As with Add-RecipientPermission",
        );
    }
    if text.contains("5.5.127") || text.contains("Token will expire soon") {
        return hint(
            "the access token was too close to its expiry",
            "raise the token renewal margin (oauth.renew_margin_secs, at least 600)",
        );
    }
    if reply.code == 530 && enhanced == "5.7.57" {
        return hint(
            "the server does not consider the session authenticated",
            "use connection 'starttls' on port 587 and make sure the account authenticates",
        );
    }
    match (stage, reply.code) {
        (Stage::Auth, 535) if oauth => hint(
            "the server refused the access token: the app lacks SMTP.SendAsApp or admin consent, its service principal has no permission on this mailbox, or the username is not the mailbox",
            "grant SMTP.SendAsApp with admin consent (steps 4.3, 4.4), register the service principal with the Enterprise application's object ID and give it FullAccess to the mailbox (steps 6, 7), and use the mailbox address as username",
        ),
        (Stage::Auth, 535) => hint("the username or password is wrong", "check the account's username and password"),
        (Stage::Auth, 454) => hint(
            "the server could not check the credentials right now",
            "nothing: mailgate retries; if it persists, check the server's authentication backend",
        ),
        (Stage::Auth, 504) => hint("the server does not support this AUTH mechanism", "choose another auth method"),
        (Stage::RcptTo, 550 | 551 | 553) => hint("the recipient address does not exist or is not allowed", "check the address"),
        (_, 552) | (Stage::Message, 554) if enhanced == "5.3.4" || text.to_ascii_lowercase().contains("size") => {
            hint("the message is larger than the server accepts", "send a smaller message")
        }
        (_, 421) => hint(
            "the server is closing the connection (overloaded or throttling)",
            "nothing: mailgate retries later; lower the account's max sessions if it persists",
        ),
        _ => None,
    }
}

/// Explains an SMTP error that is not a refusal (connection, TLS, missing capability).
pub fn explain_error(error: &SmtpError, oauth: bool) -> Option<Hint> {
    match error {
        SmtpError::Rejected { stage, reply, .. } => explain_reply(*stage, reply, oauth),
        SmtpError::Connect { detail, .. } if detail.contains("refused") => hint(
            "nothing listens on that host and port",
            "check host and port (SMTP: 587 with starttls, 465 with tls)",
        ),
        SmtpError::Connect { .. } => hint("the server cannot be reached", "check the host name, DNS and firewalls"),
        SmtpError::Timeout { stage: Stage::Greeting | Stage::Tls, .. } => hint(
            "the server did not answer: the connection type probably does not match the port",
            "use 'tls' for port 465 and 'starttls' for port 587",
        ),
        SmtpError::Tls { detail, .. } if detail.contains("expired") => {
            hint("the server's certificate has expired", "ask the server's operator to renew it")
        }
        SmtpError::Tls { detail, .. } if detail.contains("UnknownIssuer") || detail.contains("issuer") => hint(
            "the server's certificate is not signed by a trusted CA",
            "add the CA to extra_ca_file (MAILGATE_EXTRA_CA_FILE)",
        ),
        SmtpError::Tls { detail, .. } if detail.contains("NotValidForName") || detail.contains("name") => hint(
            "the server's certificate does not name this host",
            "use the host name the certificate was issued for",
        ),
        SmtpError::Tls { .. } => hint(
            "the TLS handshake failed",
            "check that the port speaks implicit TLS (465) or use 'starttls' (587)",
        ),
        _ => None,
    }
}

/// The error text with the hint appended, as stored with a failed attempt.
pub fn describe(error: &SmtpError, oauth: bool) -> String {
    match explain_error(error, oauth) {
        Some(h) => format!("{error} — likely cause: {}; fix: {}", h.cause, h.fix),
        None => error.to_string(),
    }
}
