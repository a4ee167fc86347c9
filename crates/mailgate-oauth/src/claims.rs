//! Reading an access token's claims (without verifying it) for diagnosis and display.

use base64::Engine as _;
use serde::Serialize;

/// The claims of an access token that matter to a mail admin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TokenClaims {
    pub aud: Option<String>,
    pub iss: Option<String>,
    pub tid: Option<String>,
    pub appid: Option<String>,
    pub app_displayname: Option<String>,
    pub idtyp: Option<String>,
    pub roles: Vec<String>,
    /// Delegated tokens carry `scp` instead of `roles`.
    pub scp: Option<String>,
    pub iat: Option<i64>,
    pub exp: Option<i64>,
}

impl TokenClaims {
    /// The claims of a JWT access token; `None` when the token is not a readable JWT
    /// (Google's tokens, for one, are opaque).
    pub fn from_jwt(token: &str) -> Option<TokenClaims> {
        let payload = token.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let aud = match v.get("aud") {
            Some(serde_json::Value::Array(a)) => a.first().and_then(|x| x.as_str()).map(str::to_string),
            _ => text("aud"),
        };
        Some(TokenClaims {
            aud,
            iss: text("iss"),
            tid: text("tid"),
            appid: text("appid").or_else(|| text("azp")),
            app_displayname: text("app_displayname"),
            idtyp: text("idtyp"),
            roles: v
                .get("roles")
                .and_then(|r| r.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            scp: text("scp"),
            iat: v.get("iat").and_then(|x| x.as_i64()),
            exp: v.get("exp").and_then(|x| x.as_i64()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_claims_of_an_app_token() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"aud":"https://outlook.office365.com","tid":"t","roles":["SMTP.SendAsApp"],"idtyp":"app","exp":5}"#)
        );
        let c = TokenClaims::from_jwt(&token).unwrap();
        assert_eq!(c.roles, vec!["SMTP.SendAsApp"]);
        assert_eq!(c.aud.as_deref(), Some("https://outlook.office365.com"));
        assert_eq!(c.exp, Some(5));
        assert!(TokenClaims::from_jwt("ya29.opaque").is_none());
    }
}
