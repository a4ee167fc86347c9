//! The admin web UI: server-rendered pages (askama templates in `templates/`) with htmx for
//! the parts that update in place (token test, account test, template picker). Every asset is
//! compiled into the binary; every page calls the same [`crate::service`] functions as the
//! API. Logins, sessions and CSRF protection live in [`auth`].

pub mod auth;
mod pages;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use auth::UiState;

use crate::error::ApiError;
use crate::state::AppState;

const HTMX: &[u8] = include_bytes!("../../assets/htmx.min.js");
const CSS: &[u8] = include_bytes!("../../assets/app.css");
const ICONS: &[u8] = include_bytes!("../../assets/icons.svg");
const JS: &[u8] = include_bytes!("../../assets/app.js");

/// The pages' Content-Security-Policy: scripts and styles only from here, no inline script.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                        connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'";
/// A mail's HTML body: nothing runs, nothing loads from anywhere (inline styles and data:
/// images only), and it may only be shown framed by our own pages.
pub const MAIL_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; \
                            form-action 'none'; frame-ancestors 'self'; base-uri 'none'; sandbox";

pub fn routes() -> Router<AppState> {
    let ui = Router::new()
        .route("/ui/", get(pages::dashboard))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/setup", get(pages::setup_form).post(pages::setup))
        .route("/ui/password", get(pages::password_form).post(pages::password))
        .route("/ui/oauth-clients", get(pages::clients).post(pages::client_create))
        .route("/ui/oauth-clients/new", get(pages::client_new))
        .route("/ui/oauth-clients/template-fields", get(pages::client_template_fields))
        .route("/ui/oauth-clients/{id}", get(pages::client_edit).post(pages::client_update))
        .route("/ui/oauth-clients/{id}/delete", post(pages::client_delete))
        .route("/ui/oauth-clients/{id}/token-test", post(pages::client_token_test))
        .route("/ui/accounts", get(pages::accounts).post(pages::account_create))
        .route("/ui/accounts/new", get(pages::account_new))
        .route("/ui/accounts/{id}", get(pages::account_edit).post(pages::account_update))
        .route("/ui/accounts/{id}/delete", post(pages::account_delete))
        .route("/ui/accounts/{id}/test", post(pages::account_test))
        .route("/ui/accounts/{id}/retrieve", post(pages::account_retrieve))
        .route("/ui/spool", get(pages::spool))
        .route("/ui/spool/bulk", post(pages::spool_bulk))
        .route("/ui/spool/{dir}/{id}", get(pages::mail_view))
        .route("/ui/spool/{dir}/{id}/html", get(pages::mail_html))
        .route("/ui/spool/{dir}/{id}/attachments/{n}", get(pages::mail_attachment))
        .route("/ui/traffic", get(pages::traffic))
        .route("/ui/settings", get(pages::settings).post(pages::settings_update))
        .route("/ui/api-keys", get(pages::api_keys).post(pages::api_key_create))
        .route("/ui/api-keys/{id}/revoke", post(pages::api_key_revoke))
        .route("/ui/audit", get(pages::audit_log))
        .fallback(|| async { pages::message_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.") })
        .layer(axum::middleware::from_fn(security_headers));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .merge(ui)
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "icons.svg" => (ICONS, "image/svg+xml"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// Security headers on every UI answer; pages get the strict CSP unless they set their own.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An error while answering a page: a page naming what went wrong; a 500 shows only an id
/// that matches the log line.
pub struct UiError(pub ApiError);

impl<E: Into<ApiError>> From<E> for UiError {
    fn from(e: E) -> Self {
        UiError(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match self.0 {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "Conflict", m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            ApiError::Validation(v) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid input", v.to_string()),
            ApiError::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "Too large", m),
            ApiError::Internal(e) => {
                let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
                tracing::error!(error_id = %id, error = %format!("{e:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    format!("An internal error occurred. The log has the details under error id {id}."),
                )
            }
            other => (StatusCode::FORBIDDEN, "Refused", other.to_string()),
        };
        pages::message_page(status, title, &detail)
    }
}

pub type UiResult<T> = Result<T, UiError>;
