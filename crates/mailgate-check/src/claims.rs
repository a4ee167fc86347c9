//! Checks of an access token's claims against what the account needs. Microsoft app-only
//! tokens must carry the protocol's role, be app tokens, be for the configured tenant and
//! for Exchange Online.

use mailgate_core::model::{OAuthClient, Protocol};
use mailgate_oauth::TokenClaims;

/// A problem with the claims: (detail, cause, fix).
pub type Finding = (String, String, String);

fn is_guid(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// The audiences an Exchange Online token may carry.
const EXCHANGE_AUDIENCES: &[&str] = &[
    "https://outlook.office365.com",
    "https://outlook.office.com",
    "00000002-0000-0ff1-ce00-000000000000",
    "https://outlook.office365.us",
    "https://partner.outlook.cn",
];

/// Checks the claims; `Err` names the first problem.
pub fn check(client: &OAuthClient, protocol: Protocol, claims: &TokenClaims) -> Result<String, Finding> {
    let role = match protocol {
        Protocol::Smtp => "SMTP.SendAsApp",
        Protocol::Imap => "IMAP.AccessAsApp",
    };
    if claims.scp.is_some() && claims.roles.is_empty() || claims.idtyp.as_deref().is_some_and(|t| t != "app") {
        return Err((
            format!("a delegated (user) token, scp = {}", claims.scp.as_deref().unwrap_or("")),
            "the token was issued for a user, but mailgate uses the app-only client credentials flow".into(),
            format!("grant the application permission {role} (not the delegated one) and admin consent (setup steps 4.3, 4.4)"),
        ));
    }
    if !claims.roles.iter().any(|r| r == role) {
        let have = if claims.roles.is_empty() { "none".to_string() } else { claims.roles.join(", ") };
        return Err((
            format!("roles: {have}; {role} is missing"),
            format!("the app has no {role} permission, or admin consent was not granted"),
            format!("API permissions → Office 365 Exchange Online → Application permissions → {role}, then 'Grant admin consent' (setup steps 4.3, 4.4)"),
        ));
    }
    if let (Some(configured), Some(tid)) = (client.tenant.as_deref(), claims.tid.as_deref())
        && is_guid(configured) && !configured.eq_ignore_ascii_case(tid) {
            return Err((
                format!("token tenant {tid}, configured tenant {configured}"),
                "the token was issued by another tenant than the one configured".into(),
                "enter the Directory (tenant) ID of the tenant that holds the mailbox (setup step 4)".into(),
            ));
        }
    if let Some(aud) = claims.aud.as_deref() {
        let exchange_scope = client.scopes.iter().any(|s| s.contains("outlook.") || s.contains("partner.outlook"));
        if exchange_scope && !EXCHANGE_AUDIENCES.iter().any(|a| aud.eq_ignore_ascii_case(a)) {
            return Err((
                format!("audience {aud}"),
                "the token is not for Exchange Online, so SMTP and IMAP will refuse it".into(),
                "use the scope https://outlook.office365.com/.default".into(),
            ));
        }
    }
    Ok(format!(
        "app-only token with {role}; tenant {}; audience {}",
        claims.tid.as_deref().unwrap_or("?"),
        claims.aud.as_deref().unwrap_or("?")
    ))
}
