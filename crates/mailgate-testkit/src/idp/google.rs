//! Google's token endpoint for service accounts with domain-wide delegation (the JWT bearer
//! grant, RFC 7523), issuing opaque `ya29.` access tokens that introspection accepts.
//!
//! `POST /google/token` checks, in this order (Google's error body is
//! `{"error": …, "error_description": …}`):
//!
//! | check | HTTP, `error`, `error_description` |
//! |---|---|
//! | `grant_type` is `urn:ietf:params:oauth:grant-type:jwt-bearer` | 400 `unsupported_grant_type` "Invalid grant_type: …" |
//! | an `assertion` is sent | 400 `invalid_request` "Missing required parameter: assertion" |
//! | it parses, `alg` RS256, `kid` a registered `private_key_id`, the signature verifies | 400 `invalid_grant` "Invalid JWT Signature." |
//! | `iss` is a registered `client_email` | 401 `invalid_client` "The OAuth client was not found." |
//! | the key named by `kid` belongs to `iss` | 400 `invalid_grant` "Invalid JWT Signature." |
//! | `aud` is this endpoint's URL as the client saw it | 400 `invalid_grant` "Invalid JWT: Failed audience check." |
//! | `iat` and `exp` present, `exp` ≤ `iat` + 3600, `exp` not past, `iat` not more than 60 s ahead | 400 `invalid_grant` "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim." |
//! | `scope` present | 400 `invalid_scope` "Empty or missing scope not allowed." |
//! | `scope` holds `https://mail.google.com/` | 400 `invalid_scope` "Invalid OAuth scope or ID token audience provided." |
//! | `sub` present, an address in the account's `mail_domain` | 401 `unauthorized_client` "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested." |
//!
//! Success: `{"access_token":"ya29.<180 url-safe characters>","expires_in":N,"token_type":"Bearer"}`.
//! Requests are counted under the assertion's (unverified) `iss`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::jose::{Jwt, RsaAlg};
use super::{AppState, json_response, request_url, unix_now, with_note};

/// The path of Google's token endpoint here.
pub(super) const TOKEN_PATH: &str = "/google/token";
/// The only grant Google's token endpoint takes from a service account.
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The scope of Gmail's IMAP and SMTP.
const MAIL_SCOPE: &str = "https://mail.google.com/";
/// The longest assertion Google accepts, `iat` to `exp`.
const MAX_ASSERTION_SECS: i64 = 3600;
const SKEW_SECS: i64 = 60;
/// Random bytes in a token: 135 bytes are 180 base64url characters.
const TOKEN_RANDOM_BYTES: usize = 135;

/// A Google service account with one key (`POST /_admin/google/service-accounts` upserts it by
/// `client_email`, replacing its key). Its counters are those of `client_email`
/// (`GET /_admin/clients/{client_email}/stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoogleServiceAccountSpec {
    /// `name@project.iam.gserviceaccount.com`; the assertion's `iss`.
    pub client_email: String,
    /// The key's id; the assertion header's `kid`.
    pub private_key_id: String,
    /// The key's public half: a SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`) or a certificate
    /// PEM (Google publishes the keys as certificates).
    pub public_key_pem: String,
    /// The Workspace domain delegated to this account: `sub` must be an address in it.
    pub mail_domain: String,
    /// `expires_in` of issued tokens. 0 gives tokens that are already expired.
    #[serde(default = "default_google_lifetime")]
    pub lifetime_secs: u64,
}

fn default_google_lifetime() -> u64 {
    3599
}

impl GoogleServiceAccountSpec {
    /// An account for `mail_domain` with a 3599 s token lifetime.
    pub fn new(
        client_email: impl Into<String>,
        private_key_id: impl Into<String>,
        public_key_pem: impl Into<String>,
        mail_domain: impl Into<String>,
    ) -> GoogleServiceAccountSpec {
        GoogleServiceAccountSpec {
            client_email: client_email.into(),
            private_key_id: private_key_id.into(),
            public_key_pem: public_key_pem.into(),
            mail_domain: mail_domain.into(),
            lifetime_secs: default_google_lifetime(),
        }
    }
}

/// A registered service account.
pub(super) struct ServiceAccount {
    pub(super) spec: GoogleServiceAccountSpec,
    /// PKCS#1 `RSAPublicKey` DER of the key.
    pub(super) rsa_public_key: Vec<u8>,
}

/// An issued opaque access token.
pub(super) struct GoogleToken {
    pub(super) client_email: String,
    pub(super) sub: String,
    pub(super) exp: i64,
    pub(super) revoked: bool,
}

/// Google's error answer.
struct GoogleError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl GoogleError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> GoogleError {
        GoogleError {
            status,
            error,
            description: description.into(),
        }
    }

    fn bad_signature() -> GoogleError {
        GoogleError::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT Signature.",
        )
    }

    fn into_response(self, who: &str) -> Response {
        let body = serde_json::json!({"error": self.error, "error_description": self.description});
        with_note(
            json_response(self.status, &body),
            format!(
                "service account {who}: {} ({})",
                self.error, self.description
            ),
        )
    }
}

/// The success body, fields in Google's order.
#[derive(Serialize)]
struct GoogleTokenBody<'a> {
    access_token: &'a str,
    expires_in: u64,
    token_type: &'a str,
}

pub(super) async fn token_endpoint(
    State(state): State<Arc<AppState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let param = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let audience = request_url(&headers, uri.path());
    let assertion = param("assertion");
    let jwt = assertion.and_then(Jwt::parse);
    let who = jwt
        .as_ref()
        .and_then(|j| j.claim_str("iss"))
        .unwrap_or("-")
        .to_owned();
    let random = state.signer.random(TOKEN_RANDOM_BYTES);
    let access_token = format!("ya29.{}", URL_SAFE_NO_PAD.encode(random));
    match decide(
        &state,
        param("grant_type"),
        assertion.is_some(),
        jwt.as_ref(),
        &audience,
        &access_token,
    ) {
        Ok((lifetime, sub)) => {
            let body = GoogleTokenBody {
                access_token: &access_token,
                expires_in: lifetime,
                token_type: "Bearer",
            };
            with_note(
                json_response(StatusCode::OK, &body),
                format!("service account {who}: issued a token for {sub} ({lifetime} s)"),
            )
        }
        Err(error) => error.into_response(&who),
    }
}

/// Google's checks, in order; counts the request and remembers the token it issues.
fn decide(
    state: &AppState,
    grant_type: Option<&str>,
    has_assertion: bool,
    jwt: Option<&Jwt>,
    audience: &str,
    access_token: &str,
) -> Result<(u64, String), GoogleError> {
    let now = unix_now();
    let mut inner = state.lock();
    if let Some(iss) = jwt.and_then(|j| j.claim_str("iss")) {
        inner.stats(iss).token_requests += 1;
    }
    if grant_type != Some(JWT_BEARER_GRANT) {
        return Err(GoogleError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("Invalid grant_type: {}", grant_type.unwrap_or("")),
        ));
    }
    if !has_assertion {
        return Err(GoogleError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: assertion",
        ));
    }
    let Some(jwt) = jwt else {
        return Err(GoogleError::bad_signature());
    };
    if jwt.header_str("alg") != Some("RS256") {
        return Err(GoogleError::bad_signature());
    }
    let Some(key_owner) = jwt.header_str("kid").and_then(|kid| {
        inner
            .google_accounts
            .values()
            .find(|a| a.spec.private_key_id == kid)
    }) else {
        return Err(GoogleError::bad_signature());
    };
    if !jwt.verify(RsaAlg::Rs256, &key_owner.rsa_public_key) {
        return Err(GoogleError::bad_signature());
    }
    let key_owner = key_owner.spec.client_email.clone();
    let Some(account) = jwt
        .claim_str("iss")
        .and_then(|iss| inner.google_accounts.get(iss))
    else {
        return Err(GoogleError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        ));
    };
    if account.spec.client_email != key_owner {
        return Err(GoogleError::bad_signature());
    }
    if jwt.claim_str("aud") != Some(audience) {
        return Err(GoogleError::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Failed audience check.",
        ));
    }
    let timely = match (jwt.claim_time("iat"), jwt.claim_time("exp")) {
        (Some(iat), Some(exp)) => {
            exp.saturating_sub(iat) <= MAX_ASSERTION_SECS && exp > now && iat <= now + SKEW_SECS
        }
        _ => false,
    };
    if !timely {
        return Err(GoogleError::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        ));
    }
    match jwt
        .claim_str("scope")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => {
            return Err(GoogleError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "Empty or missing scope not allowed.",
            ));
        }
        Some(scope) if !scope.split_ascii_whitespace().any(|s| s == MAIL_SCOPE) => {
            return Err(GoogleError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "Invalid OAuth scope or ID token audience provided.",
            ));
        }
        Some(_) => {}
    }
    let in_domain = jwt.claim_str("sub").and_then(|sub| {
        let (local, domain) = sub.rsplit_once('@')?;
        (!local.is_empty() && domain.eq_ignore_ascii_case(&account.spec.mail_domain))
            .then(|| sub.to_owned())
    });
    let Some(sub) = in_domain else {
        return Err(GoogleError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not \
             authorized for any of the scopes requested.",
        ));
    };

    let lifetime = account.spec.lifetime_secs;
    let client_email = account.spec.client_email.clone();
    inner.google_tokens.insert(
        access_token.to_owned(),
        GoogleToken {
            client_email: client_email.clone(),
            sub: sub.clone(),
            exp: now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX / 2)),
            revoked: false,
        },
    );
    inner.stats(&client_email).tokens_issued += 1;
    Ok((lifetime, sub))
}

/// Introspection of a Google token: `None` when `token` is not one issued here; otherwise the
/// verdict (`Ok(username)` or `Err(reason)`) and the service account, counted in its stats.
pub(super) fn introspect(
    state: &AppState,
    token: &str,
) -> Option<(Result<String, String>, String)> {
    let now = unix_now();
    let mut inner = state.lock();
    let issued = inner.google_tokens.get(token)?;
    let verdict = if issued.revoked {
        Err("revoked".to_owned())
    } else if issued.exp <= now {
        Err(format!("expired {} s ago", now - issued.exp))
    } else {
        Ok(issued.sub.clone())
    };
    let client_email = issued.client_email.clone();
    let stats = inner.stats(&client_email);
    match verdict {
        Ok(_) => stats.introspections_active += 1,
        Err(_) => stats.introspections_rejected += 1,
    }
    Some((verdict, client_email))
}
