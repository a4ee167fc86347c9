//! The OpenAPI 3.1 document of the API (`/api/openapi.json`), generated from the handlers'
//! `#[utoipa::path]` attributes and the request/response types, and its browsable reference
//! (`/api/docs`, Swagger UI embedded in the binary).
//!
//! Error answers are the same problem+json shape everywhere, so they are added to every
//! operation here from what the operation takes (a path id can be unknown, a body can be
//! malformed…) instead of being repeated on each handler.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{accounts, health, inbox, keys, mails, metrics, oauth_clients, settings, status, traffic};
use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mailgate API",
        description = "Submit mail for delivery through Microsoft 365, Google Workspace or any SMTP server, \
read retrieved mail, and administer OAuth clients, accounts, settings and API keys.\n\n\
Authenticate with an API key as a bearer token (`Authorization: Bearer mg_…`). Keys without the admin \
flag may submit and read their own mails and the inbox; everything else needs an admin key. \
Every error is `application/problem+json` (RFC 9457); validation errors list the fields in `errors`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        mails::submit, mails::list, mails::show, mails::raw, mails::retry, mails::remove,
        inbox::list, inbox::claim, inbox::show, inbox::raw, inbox::attachment, inbox::consume,
        accounts::list, accounts::create, accounts::show, accounts::update, accounts::remove,
        accounts::test, accounts::retrieve,
        oauth_clients::templates, oauth_clients::list, oauth_clients::create, oauth_clients::show,
        oauth_clients::update, oauth_clients::remove, oauth_clients::token_test,
        traffic::list, status::show, settings::show, settings::update,
        keys::list, keys::create, keys::revoke,
        health::healthz, health::readyz, metrics::metrics,
    ),
    components(schemas(Problem, mailgate_core::model::MailStatus, mailgate_core::model::Direction)),
    modifiers(&Security, &StandardErrors),
    tags(
        (name = "mails", description = "The outgoing spool: submit, follow, retry, delete"),
        (name = "inbox", description = "Mail retrieved from IMAP accounts"),
        (name = "accounts", description = "SMTP and IMAP accounts (admin)"),
        (name = "oauth-clients", description = "OAuth clients: the app registrations that get tokens (admin)"),
        (name = "traffic", description = "The log of mail sent and received (admin)"),
        (name = "status", description = "What needs attention (admin)"),
        (name = "settings", description = "Runtime settings (admin)"),
        (name = "api-keys", description = "API keys (admin)"),
        (name = "health", description = "Probes and metrics for operators"),
    ),
)]
struct ApiDoc;

/// Bearer API keys for everything but the health endpoints (which say `security(())`).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what)).build())
        };
        components.add_security_scheme("api_key", bearer("An API key (`mailgate api-key create` or POST /api/v1/api-keys)."));
        components.add_security_scheme("metrics_token", bearer("The configured metrics_token."));
        openapi.security = Some(vec![SecurityRequirement::new("api_key", Vec::<String>::new())]);
    }
}

/// Adds the problem+json answers each operation can give.
struct StandardErrors;

impl StandardErrors {
    fn add(op: &mut Operation, status: u16, description: &str) {
        let key = status.to_string();
        if op.responses.responses.contains_key(&key) {
            return;
        }
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/problem+json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
            .build();
        op.responses.responses.insert(key, RefOr::T(response));
    }
}

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            // PUT and PATCH share a handler (absent fields keep their value); ids must differ.
            if let (Some(put), Some(patch)) = (&item.put, &mut item.patch)
                && patch.operation_id == put.operation_id
            {
                patch.operation_id = put.operation_id.as_ref().map(|id| id.replacen("update_", "patch_", 1));
            }
            let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for op in ops.into_iter().flatten() {
                let records = op.tags.as_ref().is_some_and(|t| t.iter().any(|t| ["accounts", "oauth-clients", "api-keys"].contains(&t.as_str())));
                let admin_only = !op.tags.as_ref().is_some_and(|t| t.iter().any(|t| t == "mails" || t == "inbox"));
                let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let has_body = op.request_body.is_some();
                Self::add(op, 401, "Missing or unknown API key");
                if admin_only {
                    Self::add(op, 403, "The API key is not an admin key");
                }
                if has_params || has_body {
                    Self::add(op, 400, "Malformed request (e.g. the body is not JSON)");
                    Self::add(op, 404, "The record named in the path or the request does not exist");
                    Self::add(op, 422, "Invalid fields; `errors` lists each field and what is wrong");
                }
                if has_body && records {
                    Self::add(op, 409, "Conflicts with another record (e.g. the name is taken)");
                }
                if has_body {
                    Self::add(op, 413, "The body is larger than allowed");
                    Self::add(op, 415, "The body's content type is not accepted");
                }
                Self::add(op, 500, "Internal error; the log has the details under `error_id`");
            }
        }
    }
}

/// The document, serialised once.
pub fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"cannot serialise the OpenAPI document: {e}\"}}"))
    })
}

pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document_json()).into_response()
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mailgate API reference</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body>
</html>
"#;

// Kept out of the page so that the CSP needs no inline script.
const DOCS_INIT: &str = r##"window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  tryItOutEnabled: false,
  validatorUrl: null
});
"##;

/// Self-hosted only: scripts and styles from mailgate, nothing remote.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

pub async fn docs_page() -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], DOCS_PAGE).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

pub async fn docs_init() -> Response {
    asset("text/javascript; charset=utf-8", DOCS_INIT.as_bytes())
}

pub async fn docs_bundle() -> Response {
    asset("text/javascript; charset=utf-8", include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"))
}

pub async fn docs_css() -> Response {
    asset("text/css; charset=utf-8", include_bytes!("../../assets/swagger-ui/swagger-ui.css"))
}
