//! OAuth clients: create, change, delete, and test whether a token can be had.

use std::time::Instant;

use base64::Engine as _;
use mailgate_core::model::{CredentialKind, OAuthClient, Secret};
use mailgate_oauth::assertion;
use mailgate_core::{ValidationErrors, new_id, now_millis, template};
use mailgate_oauth::claims::TokenClaims;
use mailgate_oauth::error::ProviderError;
use mailgate_oauth::TokenError;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Fields of an OAuth client as an admin enters them. On update, absent fields keep their
/// value; the secret is write-only.
/// No `Debug`: it holds secrets and private keys.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "name": "contoso", "template": "microsoft365", "tenant": "contoso.onmicrosoft.com",
    "client_id": "8a3c0b6e-1f52-4d8e-9a77-2f1c5e9d0b41", "client_secret": "the secret's value", "expires_on": "2027-06-30"
}))]
#[serde(deny_unknown_fields)]
pub struct OAuthClientInput {
    pub name: Option<String>,
    pub template: Option<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    /// `secret` (default; `google_service_account` with the google template) or `certificate`.
    pub credential_kind: Option<CredentialKind>,
    pub client_secret: Option<String>,
    /// Certificate credentials: the certificate and its private key (PEM), or both in one
    /// PKCS#12 file (base64) with its password.
    pub certificate_pem: Option<String>,
    pub private_key_pem: Option<String>,
    pub pkcs12_base64: Option<String>,
    pub pkcs12_password: Option<String>,
    /// `RS256` (default) or `PS256` for client assertions.
    pub signing_alg: Option<String>,
    /// Google: the service account's JSON key file, as downloaded.
    pub service_account_json: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub token_url: Option<String>,
    /// `YYYY-MM-DD`; an empty string clears it.
    pub expires_on: Option<String>,
    pub comment: Option<String>,
}

fn apply(input: OAuthClientInput, client: &mut OAuthClient, creating: bool, vault: &mailgate_store::Vault) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::new();
    if let Some(name) = input.name {
        super::check_name("name", &name, &mut errors);
        client.name = name.trim().to_string();
    } else if creating {
        errors.add("name", "required");
    }
    let template_changed = input.template.is_some();
    if let Some(t) = input.template {
        if template::find(&t).is_none() {
            let known: Vec<_> = template::TEMPLATES.iter().map(|t| t.id).collect();
            errors.add("template", format!("unknown template; known: {}", known.join(", ")));
        }
        client.template = t;
    }
    let tpl = template::find(&client.template);
    if let Some(tenant) = input.tenant {
        let tenant = tenant.trim().to_string();
        if tenant.contains(['/', '?', '#', ' ']) {
            errors.add("tenant", "must be a tenant ID or a domain, without '/', '?', '#' or spaces");
        }
        client.tenant = (!tenant.is_empty()).then_some(tenant);
    }
    if let Some(id) = input.client_id {
        let id = id.trim().to_string();
        if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
            errors.add("client_id", "must be 1 to 200 characters");
        }
        client.client_id = id;
    } else if creating && input.service_account_json.is_none() {
        errors.add("client_id", "required");
    }
    if let Some(secret) = input.client_secret {
        if secret.is_empty() || secret.len() > 4096 {
            errors.add("client_secret", "must be 1 to 4096 characters");
        } else {
            client.secret = Some(vault.seal(&Secret::new(secret)));
            client.secret_updated_at = Some(now_millis());
        }
    }
    if let Some(kind) = input.credential_kind {
        client.credential_kind = kind;
    } else if creating && client.template == "google" {
        client.credential_kind = CredentialKind::GoogleServiceAccount;
    }
    if let Some(alg) = input.signing_alg {
        if !matches!(alg.as_str(), "RS256" | "PS256") {
            errors.add("signing_alg", "must be RS256 or PS256");
        }
        client.signing_alg = alg;
    }
    apply_certificate(&input.certificate_pem, &input.private_key_pem, &input.pkcs12_base64, &input.pkcs12_password, client, vault, &mut errors);
    if let Some(json) = input.service_account_json {
        match assertion::ServiceAccountKey::parse(&json) {
            Ok(key) => {
                client.client_id = key.client_email.clone();
                client.secret = Some(vault.seal(&Secret::new(json)));
                client.secret_updated_at = Some(now_millis());
            }
            Err(e) => errors.add("service_account_json", e),
        }
    }
    match client.credential_kind {
        CredentialKind::Certificate if client.certificate.is_none() => {
            errors.add("certificate_pem", "required for certificate credentials (or pkcs12_base64)");
        }
        CredentialKind::GoogleServiceAccount if client.secret.is_none() && !errors.errors.iter().any(|e| e.field == "service_account_json") => {
            errors.add("service_account_json", "required for a Google service account");
        }
        _ => {}
    }
    match input.scopes {
        Some(scopes) => {
            if scopes.iter().any(|s| s.trim().is_empty() || s.contains(char::is_whitespace)) {
                errors.add("scopes", "each scope must be a non-empty word without spaces");
            }
            client.scopes = scopes;
        }
        None if creating || template_changed => {
            client.scopes = tpl.map(|t| t.scopes.iter().map(|s| s.to_string()).collect()).unwrap_or_default();
        }
        None => {}
    }
    match input.token_url {
        Some(url) => client.token_url = url.trim().to_string(),
        None if creating || template_changed => {
            client.token_url = tpl.map(|t| t.token_url.to_string()).unwrap_or_default();
        }
        None => {}
    }
    // A certificate's own expiry date wins over a typed one.
    let typed_expiry = input.expires_on.filter(|_| client.certificate.is_none());
    if let Some(date) = typed_expiry {
        let date = date.trim().to_string();
        if date.is_empty() {
            client.expires_on = None;
        } else if time::Date::parse(&date, &time::format_description::well_known::Iso8601::DATE).is_err() {
            errors.add("expires_on", "must be a date like 2027-05-31");
        } else {
            client.expires_on = Some(date);
        }
    }
    if let Some(c) = input.comment {
        client.comment = c;
    }
    if client.scopes.is_empty() {
        errors.add("scopes", "at least one scope is required");
    }
    let url = &client.token_url;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        errors.add("token_url", "must be an http(s) URL");
    }
    if url.contains("{tenant}") && client.tenant.is_none() {
        errors.add("tenant", "required by this token URL");
    }
    if client.tenant.as_deref().is_some_and(|t| matches!(t.to_ascii_lowercase().as_str(), "common" | "consumers" | "organizations")) {
        errors.add("tenant", "the client credentials flow needs your own tenant (ID or domain), not common/consumers/organizations");
    }
    errors.into_result(())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// Certificate and key from PEM or PKCS#12: the key must belong to the certificate; the
/// credential's expiry date is the certificate's.
fn apply_certificate(
    cert_pem: &Option<String>,
    key_pem: &Option<String>,
    pkcs12: &Option<String>,
    pkcs12_password: &Option<String>,
    client: &mut OAuthClient,
    vault: &mailgate_store::Vault,
    errors: &mut ValidationErrors,
) {
    let (cert, key) = match (cert_pem, key_pem, pkcs12) {
        (None, None, None) => return,
        (_, _, Some(b64)) => {
            let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
                errors.add("pkcs12_base64", "not valid base64");
                return;
            };
            let password = pkcs12_password.as_deref().unwrap_or("");
            let store = match p12_keystore::KeyStore::from_pkcs12(&der, password, p12_keystore::Pkcs12ImportPolicy::Relaxed) {
                Ok(s) => s,
                Err(e) => {
                    errors.add("pkcs12_base64", format!("cannot read the PKCS#12 file (wrong password?): {e}"));
                    return;
                }
            };
            let Some((_, chain)) = store.private_key_chain() else {
                errors.add("pkcs12_base64", "the PKCS#12 file holds no private key with a certificate");
                return;
            };
            let Some(first) = chain.certs().first() else {
                errors.add("pkcs12_base64", "the PKCS#12 file holds no certificate for its key");
                return;
            };
            (pem("CERTIFICATE", first.as_der()), pem("PRIVATE KEY", chain.key().as_der()))
        }
        (Some(c), Some(k), None) => (c.clone(), k.clone()),
        _ => {
            errors.add("certificate_pem", "give the certificate and its private key together");
            return;
        }
    };
    let der = match assertion::certificate_der(&cert) {
        Ok(d) => d,
        Err(e) => {
            errors.add("certificate_pem", e);
            return;
        }
    };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(&der) else {
        errors.add("certificate_pem", "not a valid X.509 certificate");
        return;
    };
    let key_pair = match assertion::rsa_key(&key) {
        Ok(k) => k,
        Err(e) => {
            errors.add("private_key_pem", e);
            return;
        }
    };
    if !assertion::key_matches_certificate(&key_pair, &parsed.public_key().subject_public_key.data) {
        errors.add("private_key_pem", "the private key does not belong to the certificate");
        return;
    }
    let not_after = parsed.validity().not_after.timestamp();
    client.expires_on = time::OffsetDateTime::from_unix_timestamp(not_after).ok().map(|t| t.date().to_string());
    client.certificate = Some(cert);
    client.credential_kind = CredentialKind::Certificate;
    client.secret = Some(vault.seal(&Secret::new(key)));
    client.secret_updated_at = Some(now_millis());
}

pub async fn create(state: &AppState, input: OAuthClientInput) -> ApiResult<OAuthClient> {
    let now = now_millis();
    let mut client = OAuthClient {
        id: new_id(),
        name: String::new(),
        template: input.template.clone().unwrap_or_else(|| "microsoft365".into()),
        tenant: None,
        client_id: String::new(),
        credential_kind: CredentialKind::Secret,
        secret: None,
        secret_updated_at: None,
        certificate: None,
        signing_alg: "RS256".into(),
        scopes: Vec::new(),
        token_url: String::new(),
        expires_on: None,
        comment: String::new(),
        created_at: now,
        updated_at: now,
    };
    apply(input, &mut client, true, &state.vault)?;
    state.store.insert_oauth_client(&client).await?;
    tracing::info!(oauth_client = %client.name, "OAuth client created");
    Ok(client)
}

pub async fn update(state: &AppState, id: &str, input: OAuthClientInput) -> ApiResult<OAuthClient> {
    let mut client = state.store.get_oauth_client(id).await?;
    apply(input, &mut client, false, &state.vault)?;
    client.updated_at = now_millis().max(client.updated_at + 1);
    state.store.update_oauth_client(&client).await?;
    tracing::info!(oauth_client = %client.name, "OAuth client changed");
    Ok(client)
}

pub async fn delete(state: &AppState, id: &str) -> ApiResult<()> {
    let client = state.store.get_oauth_client(id).await?;
    state.store.delete_oauth_client(&client.id).await?;
    tracing::info!(oauth_client = %client.name, "OAuth client deleted");
    Ok(())
}

/// The outcome of a token test: never the token itself.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenTest {
    pub ok: bool,
    pub duration_ms: u64,
    pub token_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<TokenClaims>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TokenTestError>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenTestError {
    pub message: String,
    pub temporary: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderError>,
}

/// Requests a new token now and reports what came back; `subject` is the mailbox a Google
/// service account acts as.
pub async fn token_test(state: &AppState, id: &str, subject: Option<&str>) -> ApiResult<TokenTest> {
    let client = state.store.get_oauth_client(id).await?;
    let started = Instant::now();
    let result = match &client.secret {
        None => Err(TokenError::Config("the OAuth client has no credential yet".into())),
        Some(sealed) => {
            let secret = state.vault.open(sealed).map_err(ApiError::Internal)?;
            state.tokens.get_fresh(&client, &secret, client.token_subject(subject.unwrap_or(""))).await
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let token_url = client.resolved_token_url();
    Ok(match result {
        Ok(token) => TokenTest {
            ok: true,
            duration_ms,
            token_url,
            lifetime_secs: Some(token.lifetime.as_secs()),
            claims: token.claims,
            error: None,
        },
        Err(e) => TokenTest {
            ok: false,
            duration_ms,
            token_url,
            lifetime_secs: None,
            claims: None,
            error: Some(TokenTestError {
                message: e.to_string(),
                temporary: e.is_temporary(),
                provider: match e {
                    TokenError::Provider(p) => Some(*p),
                    _ => None,
                },
            }),
        },
    })
}
