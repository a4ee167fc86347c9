//! Admin logins: argon2id passwords, server-side sessions (the cookie holds a random id; the
//! store only its SHA-256), a CSRF token per session, the one-time setup token for the first
//! admin, and a login rate limit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use mailgate_core::{ValidationErrors, new_id, now_millis};
use mailgate_store::{AdminSession, AdminUser, AuditEntry, Store};
use ring::rand::SecureRandom as _;

use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "mg_session";
/// Double-submit cookie protecting the login and setup forms (there is no session yet).
pub const PRE_CSRF_COOKIE: &str = "mg_csrf";
pub const CSRF_FIELD: &str = "_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
const SESSION_LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// Failed logins allowed per IP address and username within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_ALLOWED: usize = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// In-memory state of the UI: the setup token and the login rate limiter.
#[derive(Default)]
pub struct UiState {
    /// SHA-256 of the one-time setup token while no admin exists.
    setup_token_hash: Mutex<Option<String>>,
    failures: Mutex<HashMap<(IpAddr, String), Vec<Instant>>>,
}

/// 32 random bytes, base64url.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("no random numbers available"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn sha256_hex(s: &str) -> String {
    crate::service::api_keys::hash(s)
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hashes a password with argon2id (default parameters: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut salt).map_err(|_| anyhow::anyhow!("no random numbers available"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("hashing: {e}"))?.to_string())
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// The rules for a new password.
pub fn check_password(field: &str, password: &str, errors: &mut ValidationErrors) {
    if password.chars().count() < 12 {
        errors.add(field, "must be at least 12 characters");
    } else if password.len() > 1024 {
        errors.add(field, "must be at most 1024 bytes");
    }
}

fn check_username(username: &str, errors: &mut ValidationErrors) {
    let u = username.trim();
    if u.is_empty() || u.chars().count() > 100 || u.chars().any(|c| c.is_control() || c.is_whitespace()) {
        errors.add("username", "must be 1 to 100 characters without spaces");
    }
}

/// Creates an admin login (the CLI, the setup page). Hashing runs off the async threads.
pub async fn create_admin(store: &dyn Store, username: &str, password: &str) -> Result<AdminUser, ApiError> {
    let mut errors = ValidationErrors::new();
    check_username(username, &mut errors);
    check_password("password", password, &mut errors);
    errors.into_result(())?;
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
    let now = now_millis();
    let admin = AdminUser { id: new_id(), username: username.trim().to_string(), password_hash: hash, created_at: now, password_changed_at: now };
    store.insert_admin(&admin).await?;
    tracing::info!(admin = %admin.username, "admin login created");
    Ok(admin)
}

/// Writes one audit log entry; a failure is logged, never shown as the change failing.
pub async fn audit(state: &AppState, actor: &str, action: &str, target: &str, detail: &str) {
    audit_store(state.store.as_ref(), actor, action, target, detail).await
}

/// [`audit`] with only a store (the CLI).
pub async fn audit_store(store: &dyn Store, actor: &str, action: &str, target: &str, detail: &str) {
    let entry = AuditEntry {
        id: 0,
        at: now_millis(),
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        detail: detail.to_string(),
    };
    if let Err(e) = store.insert_audit(&entry).await {
        tracing::error!(error = %e, action, "could not write the audit log");
    }
}

impl UiState {
    /// When no admin exists: a new one-time setup token (replacing an earlier one).
    pub async fn issue_setup_token(&self, store: &dyn Store) -> anyhow::Result<Option<String>> {
        if store.count_admins().await? > 0 {
            return Ok(None);
        }
        let token = random_token()?;
        *self.setup_token_hash.lock().unwrap_or_else(|p| p.into_inner()) = Some(sha256_hex(&token));
        Ok(Some(token))
    }

    pub fn setup_token_valid(&self, token: &str) -> bool {
        let guard = self.setup_token_hash.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_deref().is_some_and(|h| constant_time_eq(h, &sha256_hex(token)))
    }

    pub fn consume_setup_token(&self) {
        *self.setup_token_hash.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether this IP address may try this username again now.
    pub fn login_allowed(&self, ip: IpAddr, username: &str) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let key = (ip, username.to_lowercase());
        let Some(list) = map.get_mut(&key) else { return true };
        list.retain(|t| t.elapsed() < LOGIN_WINDOW);
        let allowed = list.len() < LOGIN_FAILURES_ALLOWED;
        if list.is_empty() {
            map.remove(&key);
        }
        allowed
    }

    pub fn login_failed(&self, ip: IpAddr, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, l| l.iter().any(|t| t.elapsed() < LOGIN_WINDOW));
        }
        map.entry((ip, username.to_lowercase())).or_default().push(Instant::now());
    }

    pub fn login_succeeded(&self, ip: IpAddr, username: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&(ip, username.to_lowercase()));
    }
}

/// The peer's address (mailgate does not trust X-Forwarded-For).
pub fn client_ip(parts_extensions: &axum::http::Extensions) -> IpAddr {
    parts_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// Whether the browser reached us over TLS (directly or through a proxy that says so).
pub fn is_https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// `Set-Cookie` for a cookie of ours: HttpOnly, SameSite=Lax, Secure over TLS.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, https: bool) -> String {
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{}", if https { "; Secure" } else { "" })
}

/// Starts a session for `admin`: returns the `Set-Cookie` value.
pub async fn start_session(state: &AppState, admin: &AdminUser, https: bool) -> Result<String, ApiError> {
    let id = random_token()?;
    let now = now_millis();
    let session = AdminSession {
        id_hash: sha256_hex(&id),
        admin_id: admin.id.clone(),
        username: admin.username.clone(),
        csrf_token: random_token()?,
        created_at: now,
        expires_at: now + SESSION_LIFETIME_MS,
    };
    state.store.insert_admin_session(&session).await?;
    Ok(set_cookie(SESSION_COOKIE, &id, SESSION_LIFETIME_MS / 1000, https))
}

/// Only paths inside the UI are followed after login: never another site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

/// A logged-in admin (the extractor redirects to the login page otherwise).
#[derive(Clone)]
pub struct Admin {
    pub username: String,
    pub admin_id: String,
    pub csrf: String,
    pub session_hash: String,
}

impl Admin {
    pub fn actor(&self) -> String {
        format!("admin:{}", self.username)
    }
}

/// Why a UI request was not let in.
pub enum Rejection {
    /// Not logged in: to the login page (`HX-Redirect` for htmx requests).
    Login(String, bool),
    Forbidden(&'static str),
    Error(ApiError),
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::Login(next, htmx) => {
                let target = format!("/ui/login?next={}", urlencode(&next));
                if htmx {
                    (StatusCode::OK, [("hx-redirect", target)]).into_response()
                } else {
                    Redirect::to(&target).into_response()
                }
            }
            Rejection::Forbidden(why) => super::pages::message_page(StatusCode::FORBIDDEN, "Refused", why),
            Rejection::Error(e) => super::UiError(e).into_response(),
        }
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn session_admin(parts: &Parts, state: &AppState) -> Result<Option<Admin>, ApiError> {
    let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else { return Ok(None) };
    let hash = sha256_hex(&id);
    Ok(state.store.get_admin_session(&hash, now_millis()).await?.map(|s| Admin {
        username: s.username,
        admin_id: s.admin_id,
        csrf: s.csrf_token,
        session_hash: hash,
    }))
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match session_admin(parts, state).await {
            Ok(Some(a)) => Ok(a),
            Ok(None) => {
                let next = if parts.method == Method::GET {
                    parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default()
                } else {
                    "/ui/".into()
                };
                Err(Rejection::Login(next, parts.headers.contains_key("hx-request")))
            }
            Err(e) => Err(Rejection::Error(e)),
        }
    }
}

/// A form (urlencoded) posted by a logged-in admin with the session's CSRF token — in the
/// `_csrf` field or the `X-CSRF-Token` header (htmx). Without it: 403.
pub struct AdminForm {
    pub admin: Admin,
    pub fields: Vec<(String, String)>,
}

impl AdminForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A field's value, `None` when missing.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// Every value of a repeated field.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

pub const MAX_FORM_BYTES: usize = 4 * 1024 * 1024;

impl FromRequest<AppState> for AdminForm {
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let admin = Admin::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| Rejection::Error(ApiError::PayloadTooLarge("the form is too large".into())))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let given = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| fields.iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.clone()));
        match given {
            Some(t) if constant_time_eq(&t, &admin.csrf) => Ok(AdminForm { admin, fields }),
            _ => {
                tracing::warn!(admin = %admin.username, path = %parts.uri.path(), "form without a valid CSRF token refused");
                Err(Rejection::Forbidden("The form had no valid security token. Reload the page and try again."))
            }
        }
    }
}

/// A form posted before login (login, first-admin setup), with the double-submit token.
pub struct PublicForm {
    pub fields: Vec<(String, String)>,
    pub ip: IpAddr,
    pub https: bool,
}

impl PublicForm {
    pub fn get(&self, name: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

impl FromRequest<AppState> for PublicForm {
    type Rejection = Rejection;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map_err(|_| Rejection::Error(ApiError::PayloadTooLarge("the form is too large".into())))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let given = fields.iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.as_str());
        let expected = cookie(&parts.headers, PRE_CSRF_COOKIE);
        match (given, expected) {
            (Some(g), Some(e)) if !e.is_empty() && constant_time_eq(g, &e) => {
                Ok(PublicForm { ip: client_ip(&parts.extensions), https: is_https(&parts.headers), fields })
            }
            _ => Err(Rejection::Forbidden("The form had no valid security token. Reload the page and try again.")),
        }
    }
}
