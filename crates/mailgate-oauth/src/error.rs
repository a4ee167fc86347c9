//! Token errors: what the provider or the network said, and whether a retry can help.

use serde::Serialize;

use crate::aadsts::{self, Explanation};

/// The provider's error answer (OAuth2 error response, Microsoft's extra fields included).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProviderError {
    pub http_status: u16,
    pub error: String,
    pub error_description: String,
    pub error_codes: Vec<i64>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub explanation: Option<Explanation>,
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    /// The provider refused the request.
    #[error("{}", describe_provider(.0))]
    Provider(Box<ProviderError>),
    /// The token endpoint could not be reached or did not answer in time.
    #[error("token endpoint unreachable: {0}")]
    Network(String),
    /// The endpoint answered something that is not a token response.
    #[error("token endpoint answered unexpectedly: {0}")]
    InvalidResponse(String),
    /// mailgate's own configuration is incomplete (no secret, no client, …).
    #[error("{0}")]
    Config(String),
}

fn describe_provider(e: &ProviderError) -> String {
    let mut text = format!("token request refused (HTTP {}): {}", e.http_status, e.error);
    let first_line = e.error_description.lines().next().unwrap_or("").trim();
    if !first_line.is_empty() {
        text.push_str(": ");
        text.push_str(first_line);
    }
    if let Some(x) = &e.explanation {
        text.push_str(&format!(" — likely cause: {}; fix: {}", x.cause, x.fix));
    }
    if let Some(t) = &e.trace_id {
        text.push_str(&format!(" (trace ID {t}"));
        if let Some(c) = &e.correlation_id {
            text.push_str(&format!(", correlation ID {c}"));
        }
        text.push(')');
    }
    text
}

impl TokenError {
    /// True when retrying later, without anyone changing anything, may succeed.
    pub fn is_temporary(&self) -> bool {
        match self {
            TokenError::Network(_) | TokenError::InvalidResponse(_) => true,
            TokenError::Config(_) => false,
            TokenError::Provider(p) => {
                if let Some(x) = &p.explanation {
                    return x.temporary;
                }
                p.http_status == 429
                    || p.http_status >= 500
                    || matches!(p.error.as_str(), "temporarily_unavailable" | "server_error")
            }
        }
    }
}

impl ProviderError {
    /// Builds the error from the HTTP status and body of a refused token request.
    pub fn from_response(http_status: u16, body: &str) -> ProviderError {
        #[derive(serde::Deserialize, Default)]
        struct Body {
            #[serde(default)]
            error: String,
            #[serde(default)]
            error_description: String,
            #[serde(default)]
            error_codes: Vec<i64>,
            trace_id: Option<String>,
            correlation_id: Option<String>,
        }
        let parsed: Body = serde_json::from_str(body).unwrap_or_default();
        let mut codes = parsed.error_codes;
        if codes.is_empty() {
            codes.extend(aadsts::code_in_description(&parsed.error_description));
        }
        let explanation = codes
            .iter()
            .find_map(|c| aadsts::explain(*c))
            .copied()
            .or_else(|| aadsts::explain_google(&parsed.error, &parsed.error_description));
        let error = if parsed.error.is_empty() {
            let snippet: String = body.chars().take(200).collect();
            format!("no OAuth error in the answer: {snippet}")
        } else {
            parsed.error
        };
        ProviderError {
            http_status,
            error,
            error_description: parsed.error_description,
            error_codes: codes,
            trace_id: parsed.trace_id,
            correlation_id: parsed.correlation_id,
            explanation,
        }
    }
}
