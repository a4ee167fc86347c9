//! The token request of the client credentials flow and the parsing of its answer.

use std::time::Duration;

use mailgate_core::model::{CredentialKind, OAuthClient, Secret};
use serde_json::json;

use crate::assertion;
use crate::error::{ProviderError, TokenError};

/// A token as the endpoint issued it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: Secret,
    pub expires_in: Duration,
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The form a token request sends, by credential kind: a client secret, a client assertion
/// signed with the certificate's key (Microsoft), or a JWT bearer assertion (Google, acting
/// as `subject`).
fn token_form(client: &OAuthClient, credential: &Secret, subject: &str, url: &str) -> Result<String, TokenError> {
    let scope = client.scopes.join(" ");
    let config = |e: String| TokenError::Config(e);
    let form = match client.credential_kind {
        CredentialKind::Secret => serde_urlencoded_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client.client_id.as_str()),
            ("client_secret", credential.expose()),
            ("scope", scope.as_str()),
        ]),
        CredentialKind::Certificate => {
            let key = assertion::rsa_key(credential.expose()).map_err(config)?;
            let cert = client.certificate.as_deref().ok_or_else(|| config("the OAuth client has no certificate".into()))?;
            let der = assertion::certificate_der(cert).map_err(config)?;
            let now = now_secs();
            let claims = json!({
                "aud": url, "iss": client.client_id, "sub": client.client_id,
                "jti": uuid::Uuid::new_v4().to_string(), "nbf": now, "iat": now, "exp": now + 300,
            });
            let header = json!({"x5t#S256": assertion::thumbprint_sha256(&der)});
            let jwt = assertion::sign(&key, &client.signing_alg, header, &claims).map_err(config)?;
            serde_urlencoded_form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client.client_id.as_str()),
                ("scope", scope.as_str()),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", jwt.as_str()),
            ])
        }
        CredentialKind::GoogleServiceAccount => {
            let sa = assertion::ServiceAccountKey::parse(credential.expose()).map_err(config)?;
            if subject.is_empty() {
                return Err(config("a Google service account needs the mailbox to act as (the account's username)".into()));
            }
            let key = assertion::rsa_key(&sa.private_key).map_err(config)?;
            let now = now_secs();
            let claims = json!({"iss": sa.client_email, "sub": subject, "scope": scope, "aud": url, "iat": now, "exp": now + 3600});
            let header = json!({"kid": sa.private_key_id});
            let jwt = assertion::sign(&key, "RS256", header, &claims).map_err(config)?;
            serde_urlencoded_form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", jwt.as_str())])
        }
    };
    Ok(form)
}

/// Requests a token with the client's credential; `subject` is the mailbox a Google service
/// account acts as (ignored otherwise).
pub async fn request_token(
    http: &reqwest::Client,
    client: &OAuthClient,
    credential: &Secret,
    subject: &str,
) -> Result<IssuedToken, TokenError> {
    let url = client.resolved_token_url();
    if url.is_empty() {
        return Err(TokenError::Config("the OAuth client has no token URL".into()));
    }
    if client.token_url.contains("{tenant}") && client.tenant.as_deref().unwrap_or("").is_empty() {
        return Err(TokenError::Config("the token URL needs a tenant, but the OAuth client has none".into()));
    }
    let body = token_form(client, credential, subject, &url)?;
    let response = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| TokenError::Network(describe_reqwest(&e)))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| TokenError::Network(describe_reqwest(&e)))?;
    if !(200..300).contains(&status) {
        return Err(TokenError::Provider(Box::new(ProviderError::from_response(status, &text))));
    }
    parse_success(&text)
}

fn parse_success(text: &str) -> Result<IssuedToken, TokenError> {
    #[derive(serde::Deserialize)]
    struct Body {
        access_token: String,
        #[serde(default)]
        token_type: Option<String>,
        expires_in: Option<serde_json::Value>,
    }
    let body: Body = serde_json::from_str(text)
        .map_err(|e| TokenError::InvalidResponse(format!("not a token response ({e})")))?;
    if let Some(t) = &body.token_type
        && !t.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::InvalidResponse(format!("token type '{t}' is not Bearer")));
        }
    // Microsoft sends a number, some providers a string; assume an hour when absent.
    let secs = match body.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(3600),
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(3600),
        _ => 3600,
    };
    if body.access_token.is_empty() {
        return Err(TokenError::InvalidResponse("empty access token".into()));
    }
    Ok(IssuedToken { access_token: Secret::new(body.access_token), expires_in: Duration::from_secs(secs) })
}

/// `application/x-www-form-urlencoded` encoding of the form fields.
fn serde_urlencoded_form(fields: &[(&str, &str)]) -> String {
    fn encode(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// A reqwest error without the URL's query (never holds secrets here, but stays short).
fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_microsoft_success_and_errors() {
        let t = parse_success(r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ.x.y"}"#).unwrap();
        assert_eq!(t.expires_in, Duration::from_secs(3599));
        let e = ProviderError::from_response(
            401,
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215],"trace_id":"t1","correlation_id":"c1"}"#,
        );
        let err = TokenError::Provider(Box::new(e));
        assert!(!err.is_temporary());
        let text = err.to_string();
        assert!(text.contains("AADSTS7000215") && text.contains("Value") && text.contains("t1"), "{text}");
        assert!(TokenError::Provider(Box::new(ProviderError::from_response(503, "oops"))).is_temporary());
    }

    #[test]
    fn encodes_form_fields() {
        assert_eq!(serde_urlencoded_form(&[("a", "x y/+")]), "a=x+y%2F%2B");
    }
}
