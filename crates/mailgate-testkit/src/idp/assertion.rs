//! Microsoft certificate credentials: checking the `client_assertion` JWT a client sends instead
//! of a secret (RFC 7523 client authentication), with Entra's error codes.
//!
//! The checks run in this order; the first failure answers:
//!
//! | check | HTTP, `error`, AADSTS |
//! |---|---|
//! | the JWT parses (three base64url parts, JSON header and claims) | 400 `invalid_request` 50027 "JWT token is invalid or malformed." |
//! | header `alg` is RS256 or PS256 | 400 `invalid_request` 5002730 "Invalid JWT token. Unsupported key for the signing algorithm." |
//! | header has `x5t#S256` or `x5t` | 400 `invalid_request` 50027 "Invalid JWT token. No certificate thumbprint specified in token header." |
//! | the thumbprint names a registered certificate | 401 `invalid_client` 700027 "… [Reason - The key was not found., Thumbprint of key used by client: '…', …]" |
//! | the signature verifies with its key | 401 `invalid_client` 700027 "… [Reason - The provided signature value did not match the expected signature value., …]" |
//! | the certificate has not expired | 401 `invalid_client` 700027 "… [Reason - The key used is expired., …]" |
//! | `aud` is one string (Entra refuses an array) | 400 `invalid_request` 50027 "JWT token is invalid or malformed." |
//! | `aud` is the URL the request was sent to | 401 `invalid_client` 700023 |
//! | `iss` and `sub` are the client id | 401 `invalid_client` 700021 |
//! | `exp` present and not past, `nbf` not in the future, at most 600 s from `nbf` to `exp` (60 s skew both ways) | 401 `invalid_client` 700024 |
//! | `jti` present and not used before by this client | 400 `invalid_request` 50013 "Assertion failed signature validation. [Reason - The JWT token has been used before]" (missing: "… [Reason - The JWT token has no 'jti' claim]") |
//!
//! The 50013 texts for `jti` are our choice: Entra's exact answer to a replayed assertion is not
//! documented; 50013 is the code Entra uses for "Assertion failed signature validation"
//! reasons.

use std::collections::HashSet;

use axum::http::StatusCode;

use super::AadError;
use super::jose::{Certificate, Jwt, RsaAlg, decode_thumbprint, hex_upper};

/// `client_assertion_type` of a JWT client assertion.
pub(super) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on `nbf` and `exp`.
const SKEW_SECS: i64 = 60;
/// The longest assertion Entra accepts, `nbf` (or `iat`) to `exp`.
const MAX_LIFETIME_SECS: i64 = 600;
const CERT_DOCS: &str = "Review the documentation at \
                         https://learn.microsoft.com/entra/identity-platform/certificate-credentials .";

/// Checks `assertion` as client `client_id`'s credential. `audience` is the token URL the
/// request came to. On success returns the `jti` (not yet recorded as used).
pub(super) fn verify(
    assertion: &str,
    client_id: &str,
    certificates: &[Certificate],
    used_jti: &HashSet<String>,
    audience: &str,
    now: i64,
) -> Result<String, AadError> {
    let malformed = || {
        AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        )
    };
    let Some(jwt) = Jwt::parse(assertion) else {
        return Err(malformed());
    };
    let Some(alg) = jwt.header_str("alg").and_then(RsaAlg::from_name) else {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            5002730,
            "Invalid JWT token. Unsupported key for the signing algorithm.",
        ));
    };
    // x5t#S256 wins when both are present.
    let (thumbprint_text, by_sha256) = match (jwt.header_str("x5t#S256"), jwt.header_str("x5t")) {
        (Some(t), _) => (t, true),
        (None, Some(t)) => (t, false),
        (None, None) => {
            return Err(AadError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                "Invalid JWT token. No certificate thumbprint specified in token header.",
            ));
        }
    };
    let thumbprint = decode_thumbprint(thumbprint_text);
    let shown = thumbprint
        .as_deref()
        .map(hex_upper)
        .unwrap_or_else(|| thumbprint_text.to_owned());
    let found = thumbprint.as_deref().and_then(|t| {
        certificates.iter().find(|c| {
            if by_sha256 {
                c.sha256 == t
            } else {
                c.sha1 == t
            }
        })
    });
    let invalid_signature = |reason: String| {
        AadError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            format!("Client assertion contains an invalid signature. [Reason - {reason}]"),
        )
    };
    let Some(certificate) = found else {
        return Err(invalid_signature(format!(
            "The key was not found., Thumbprint of key used by client: '{shown}', Please visit the \
             Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id \
             '{client_id}'. Review the documentation at \
             https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http \
             to learn how to retrieve application keys."
        )));
    };
    let found_key = format!(
        "Found key 'Start={}, End={}'",
        iso_time(certificate.not_before),
        iso_time(certificate.not_after)
    );
    if !jwt.verify(alg, &certificate.rsa_public_key) {
        return Err(invalid_signature(format!(
            "The provided signature value did not match the expected signature value., Thumbprint \
             of key used by client: '{shown}', {found_key}"
        )));
    }
    if certificate.not_after < now {
        return Err(invalid_signature(format!(
            "The key used is expired., Thumbprint of key used by client: '{shown}', {found_key}, \
             Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see \
             configured keys for app Id '{client_id}'."
        )));
    }

    match jwt.claim("aud") {
        Some(serde_json::Value::String(aud)) if aud == audience => {}
        Some(serde_json::Value::Array(_)) => return Err(malformed()),
        _ => {
            return Err(AadError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700023,
                format!("Client assertion audience claim does not match Realm issuer. {CERT_DOCS}"),
            ));
        }
    }
    if jwt.claim_str("iss") != Some(client_id) || jwt.claim_str("sub") != Some(client_id) {
        return Err(AadError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700021,
            format!(
                "Client assertion application identifier doesn't match 'client_id' parameter. \
                 {CERT_DOCS}"
            ),
        ));
    }
    let nbf = jwt.claim_time("nbf");
    let exp = jwt.claim_time("exp");
    let start = nbf.or_else(|| jwt.claim_time("iat")).unwrap_or(now);
    let in_range = match exp {
        None => false,
        Some(exp) => {
            exp + SKEW_SECS > now
                && nbf.is_none_or(|nbf| nbf <= now + SKEW_SECS)
                && exp.saturating_sub(start) <= MAX_LIFETIME_SECS
        }
    };
    if !in_range {
        return Err(AadError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion \
                 valid from {}, expiry time of assertion {}. {CERT_DOCS}",
                iso_time(now),
                iso_time(nbf.unwrap_or(0)),
                iso_time(exp.unwrap_or(0)),
            ),
        ));
    }
    let replay = |reason: &str| {
        AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50013,
            format!("Assertion failed signature validation. [Reason - {reason}]"),
        )
    };
    match jwt.claim_str("jti").filter(|j| !j.is_empty()) {
        None => Err(replay("The JWT token has no 'jti' claim")),
        Some(jti) if used_jti.contains(jti) => Err(replay("The JWT token has been used before")),
        Some(jti) => Ok(jti.to_owned()),
    }
}

/// `2025-08-29T05:47:32.0000000Z`, the form of Entra's times in error texts.
fn iso_time(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].0000000Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}
