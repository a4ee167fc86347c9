//! The pages. Each handler reads or changes records through the same service functions and
//! store calls as the API handler for the same thing, and renders a template.

use std::collections::HashMap;
use std::sync::OnceLock;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use mailgate_core::model::{AfterRetrieval, AuthMethod, Connection, CredentialKind, Direction, MailStatus, Protocol};
use mailgate_core::{FieldError, ValidationErrors, millis_to_rfc3339, now_millis, template};
use mailgate_store::{InboxFilter, MailFilter, TrafficFilter};

use super::auth::{self, Admin, AdminForm, PublicForm, audit};
use super::{UiError, UiResult};
use crate::api::views::{AccountView, ApiKeyView, AttemptView, OAuthClientView, TrafficView};
use crate::error::ApiError;
use crate::service::{self, accounts::AccountInput, oauth_clients::OAuthClientInput, settings::SettingsInput};
use crate::state::AppState;

type Params = Query<HashMap<String, String>>;

/// What every page's frame needs.
pub struct Layout {
    pub title: String,
    pub nav: &'static str,
    pub user: String,
    pub csrf: String,
    pub flash: Option<String>,
}

impl Layout {
    fn new(admin: &Admin, nav: &'static str, title: impl Into<String>, params: &HashMap<String, String>) -> Layout {
        Layout { title: title.into(), nav, user: admin.username.clone(), csrf: admin.csrf.clone(), flash: flash(params) }
    }

    fn public(title: &str) -> Layout {
        Layout { title: title.into(), nav: "", user: String::new(), csrf: String::new(), flash: None }
    }
}

/// Messages after a change (fixed texts: nothing from the URL is shown).
fn flash(params: &HashMap<String, String>) -> Option<String> {
    let text = match params.get("ok")?.as_str() {
        "saved" => "Saved.",
        "created" => "Created.",
        "deleted" => "Deleted.",
        "revoked" => "The key is revoked.",
        "password" => "Your password is changed.",
        "retried" => "The selected mails are queued again.",
        "removed" => "The selected mails are removed.",
        "partial" => "Some of the selected mails could not be changed (a mail that is being sent or was sent cannot be retried).",
        _ => return None,
    };
    Some(text.to_string())
}

/// One `<option>`.
pub struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn opt(value: &str, label: &str, current: &str) -> Opt {
    Opt { value: value.to_string(), label: label.to_string(), selected: value == current }
}

fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => UiError(ApiError::Internal(anyhow::anyhow!("rendering a page: {e}"))).into_response(),
    }
}

fn ts(ms: i64) -> String {
    // 2026-11-29 16:00:00 UTC: readable, sortable.
    let s = millis_to_rfc3339(ms);
    s.get(..19).map(|x| format!("{} UTC", x.replace('T', " "))).unwrap_or(s)
}

fn opt_ts(ms: Option<i64>) -> String {
    ms.map(ts).unwrap_or_default()
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    l: Layout,
    title: String,
    detail: String,
}

/// A page that only says something (errors, refusals).
pub fn message_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let page = MessagePage { l: Layout::public(title), title: title.into(), detail: detail.into() };
    (status, render(&page)).into_response()
}

macro_rules! field_errors {
    ($($t:ty),+) => {$(
        impl $t {
            fn errs(&self, field: &str) -> Vec<&str> {
                self.field_errors.iter().filter(|e| e.field == field).map(|e| e.message.as_str()).collect()
            }
            #[allow(dead_code)]
            fn errs_prefix(&self, field: &str) -> Vec<String> {
                self.field_errors.iter().filter(|e| e.field.starts_with(field)).map(|e| format!("{}: {}", e.field, e.message)).collect()
            }
        }
    )+};
}

/// A failed change: field errors and a message for the form, or a page for anything else.
fn form_failure(e: ApiError) -> Result<(Vec<FieldError>, String), UiError> {
    match e {
        ApiError::Validation(v) => Ok((v.errors, "Some fields need attention.".into())),
        ApiError::Conflict(m) | ApiError::NotFound(m) | ApiError::BadRequest(m) => Ok((Vec::new(), m)),
        other => Err(UiError(other)),
    }
}

fn redirect(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn with_ok(back: &str, code: &str) -> String {
    let sep = if back.contains('?') { '&' } else { '?' };
    format!("{back}{sep}ok={code}")
}

// ---------------------------------------------------------------- login, setup, password

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    pre_csrf: String,
    next: String,
    username: String,
    error: Option<String>,
}

/// The double-submit token of the login/setup forms: the cookie's value, or a new one.
fn pre_csrf(headers: &axum::http::HeaderMap) -> Result<(String, Option<String>), UiError> {
    match auth::cookie(headers, auth::PRE_CSRF_COOKIE).filter(|c| c.len() >= 32) {
        Some(c) => Ok((c, None)),
        None => {
            let t = auth::random_token()?;
            let set = auth::set_cookie(auth::PRE_CSRF_COOKIE, &t, 3600, auth::is_https(headers));
            Ok((t, Some(set)))
        }
    }
}

fn with_cookie(mut response: Response, set: Option<String>) -> Response {
    if let Some(v) = set.and_then(|s| HeaderValue::from_str(&s).ok()) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

pub async fn login_form(headers: axum::http::HeaderMap, Query(p): Params) -> UiResult<Response> {
    let (token, set) = pre_csrf(&headers)?;
    let page = LoginPage {
        l: Layout::public("Sign in"),
        pre_csrf: token,
        next: auth::safe_next(p.get("next").map(String::as_str)),
        username: String::new(),
        error: None,
    };
    Ok(with_cookie(render(&page), set))
}

/// A hash to verify against when the username does not exist, so that both cases take
/// equally long.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| auth::hash_password("not a password of anyone").unwrap_or_default())
}

pub async fn login(State(state): State<AppState>, headers: axum::http::HeaderMap, form: PublicForm) -> UiResult<Response> {
    let username = form.get("username").trim().to_string();
    let password = form.get("password").to_string();
    let next = auth::safe_next(Some(form.get("next")));
    let (token, _) = pre_csrf(&headers)?;
    let page = |error: &str| LoginPage {
        l: Layout::public("Sign in"),
        pre_csrf: token.clone(),
        next: next.clone(),
        username: username.clone(),
        error: Some(error.to_string()),
    };
    if !state.ui.login_allowed(form.ip, &username) {
        tracing::warn!(admin = %username, ip = %form.ip, "login refused: too many failed attempts");
        return Ok((StatusCode::TOO_MANY_REQUESTS, render(&page("Too many failed attempts. Wait 15 minutes and try again.")))
            .into_response());
    }
    let admin = state.store.get_admin_by_username(&username).await?;
    let hash = admin.as_ref().map(|a| a.password_hash.clone()).unwrap_or_else(|| dummy_hash().to_string());
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash)).await.unwrap_or(false);
    match admin {
        Some(admin) if ok => {
            state.ui.login_succeeded(form.ip, &username);
            let cookie = auth::start_session(&state, &admin, form.https).await?;
            tracing::info!(admin = %admin.username, "admin signed in");
            let mut response = redirect(&next);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(response)
        }
        _ => {
            state.ui.login_failed(form.ip, &username);
            tracing::warn!(admin = %username, ip = %form.ip, "failed login");
            Ok((StatusCode::UNAUTHORIZED, render(&page("Wrong username or password."))).into_response())
        }
    }
}

pub async fn logout(State(state): State<AppState>, headers: axum::http::HeaderMap, form: AdminForm) -> UiResult<Response> {
    state.store.delete_admin_session(&form.admin.session_hash).await?;
    tracing::info!(admin = %form.admin.username, "admin signed out");
    let mut response = redirect("/ui/login");
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(auth::SESSION_COOKIE, "", 0, auth::is_https(&headers))) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    l: Layout,
    pre_csrf: String,
    token: String,
    username: String,
    errors: Vec<String>,
}

const SETUP_GONE: &str = "This setup link is not valid (any more). An admin exists already, or mailgate was restarted and \
                          printed a new link. From the shell, `mailgate admin create --username NAME` creates a login.";

pub async fn setup_form(State(state): State<AppState>, headers: axum::http::HeaderMap, Query(p): Params) -> UiResult<Response> {
    let token = p.get("token").cloned().unwrap_or_default();
    if !state.ui.setup_token_valid(&token) || state.store.count_admins().await? > 0 {
        return Ok(message_page(StatusCode::NOT_FOUND, "Setup link not valid", SETUP_GONE));
    }
    let (pre, set) = pre_csrf(&headers)?;
    let page = SetupPage { l: Layout::public("First admin"), pre_csrf: pre, token, username: "admin".into(), errors: Vec::new() };
    Ok(with_cookie(render(&page), set))
}

pub async fn setup(State(state): State<AppState>, headers: axum::http::HeaderMap, form: PublicForm) -> UiResult<Response> {
    let token = form.get("token").to_string();
    if !state.ui.setup_token_valid(&token) || state.store.count_admins().await? > 0 {
        return Ok(message_page(StatusCode::NOT_FOUND, "Setup link not valid", SETUP_GONE));
    }
    let username = form.get("username").trim().to_string();
    let password = form.get("password");
    let mut errors = ValidationErrors::new();
    auth::check_password("password", password, &mut errors);
    if password != form.get("password2") {
        errors.add("password2", "the two passwords differ");
    }
    let result = match errors.into_result(()) {
        Ok(()) => auth::create_admin(state.store.as_ref(), &username, password).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(admin) => {
            state.ui.consume_setup_token();
            audit(&state, &format!("admin:{}", admin.username), "admin.create", &admin.username, "first admin, via the setup link").await;
            let cookie = auth::start_session(&state, &admin, form.https).await?;
            let mut response = redirect("/ui/");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(response)
        }
        Err(e) => {
            let (fields, message) = form_failure(e)?;
            let mut errors: Vec<String> = fields.iter().map(|f| format!("{}: {}", f.field.replace("password2", "repeated password"), f.message)).collect();
            if fields.is_empty() {
                errors.push(message);
            }
            let (pre, _) = pre_csrf(&headers)?;
            let page = SetupPage { l: Layout::public("First admin"), pre_csrf: pre, token, username, errors };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
    }
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    l: Layout,
    errors: Vec<String>,
}

pub async fn password_form(admin: Admin, Query(p): Params) -> Response {
    render(&PasswordPage { l: Layout::new(&admin, "", "Change password", &p), errors: Vec::new() })
}

pub async fn password(State(state): State<AppState>, headers: axum::http::HeaderMap, form: AdminForm) -> UiResult<Response> {
    let admin = form.admin.clone();
    let current = form.text("current").unwrap_or_default();
    let new = form.text("password").unwrap_or_default();
    let mut errors = Vec::new();
    let stored = state.store.get_admin_by_username(&admin.username).await?.ok_or_else(|| ApiError::NotFound("admin".into()))?;
    let hash = stored.password_hash.clone();
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&current, &hash)).await.unwrap_or(false);
    if !ok {
        errors.push("The current password is wrong.".to_string());
    }
    let mut v = ValidationErrors::new();
    auth::check_password("new password", &new, &mut v);
    errors.extend(v.errors.iter().map(|e| format!("{}: {}", e.field, e.message)));
    if form.get("password2") != Some(new.as_str()) {
        errors.push("The two new passwords differ.".into());
    }
    if !errors.is_empty() {
        let page = PasswordPage { l: Layout::new(&admin, "", "Change password", &HashMap::new()), errors };
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
    }
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&new)).await.map_err(|e| ApiError::Internal(e.into()))??;
    state.store.set_admin_password(&stored.id, &hash, now_millis()).await?;
    audit(&state, &admin.actor(), "admin.password", &admin.username, "password changed; other sessions ended").await;
    let cookie = auth::start_session(&state, &stored, auth::is_https(&headers)).await?;
    let mut response = redirect("/ui/?ok=password");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

// ---------------------------------------------------------------- dashboard

pub struct RetrievalRow {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub failing: bool,
    pub last_run: String,
    pub last_success: String,
    pub stored: i64,
    pub last_error: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    l: Layout,
    status: crate::api::status::Status,
    queued: i64,
    failed_total: i64,
    sent_24h: i64,
    failed_24h: i64,
    received_24h: i64,
    retrieval: Vec<RetrievalRow>,
    no_accounts: bool,
}

pub async fn dashboard(State(state): State<AppState>, admin: Admin, Query(p): Params) -> UiResult<Response> {
    let status = crate::api::status::gather(&state).await?;
    let count = |s: &str| status.mails.get(s).copied().unwrap_or(0);
    let since = now_millis() - 86_400_000;
    let traffic = |direction| TrafficFilter { direction: Some(direction), since: Some(since), limit: 1, ..TrafficFilter::default() };
    let sent_24h = state.store.list_traffic(&traffic(Direction::Out)).await?.total;
    let received_24h = state.store.list_traffic(&traffic(Direction::In)).await?.total;
    let failed_24h = state
        .store
        .list_mails(&MailFilter { status: Some(MailStatus::Failed), since: Some(since), limit: 1, ..MailFilter::default() })
        .await?
        .total;
    let accounts = state.store.list_accounts().await?;
    let mut retrieval = Vec::new();
    for a in accounts.iter().filter(|a| a.protocol == Protocol::Imap) {
        let r = state.store.get_retrieval_state(&a.id).await?.unwrap_or_default();
        retrieval.push(RetrievalRow {
            id: a.id.clone(),
            name: a.name.clone(),
            enabled: a.enabled,
            failing: r.last_error_at.is_some_and(|e| r.last_success_at.is_none_or(|s| e > s)),
            last_run: opt_ts(r.last_run_at),
            last_success: opt_ts(r.last_success_at),
            stored: r.stored_total,
            last_error: r.last_error.unwrap_or_default(),
        });
    }
    let page = DashboardPage {
        l: Layout::new(&admin, "dashboard", "Dashboard", &p),
        queued: count("queued") + count("sending"),
        failed_total: count("failed"),
        status,
        sent_24h,
        failed_24h,
        received_24h,
        retrieval,
        no_accounts: accounts.is_empty(),
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------- OAuth clients

#[derive(Template)]
#[template(path = "clients.html")]
struct ClientsPage {
    l: Layout,
    clients: Vec<OAuthClientView>,
}

pub async fn clients(State(state): State<AppState>, admin: Admin, Query(p): Params) -> UiResult<Response> {
    let clients = state.store.list_oauth_clients().await?.iter().map(OAuthClientView::from).collect();
    Ok(render(&ClientsPage { l: Layout::new(&admin, "clients", "OAuth clients", &p), clients }))
}

/// What the client form shows (never the secret).
#[derive(Default)]
pub struct ClientValues {
    pub name: String,
    pub template: String,
    pub credential_kind: String,
    pub tenant: String,
    pub client_id: String,
    pub expires_on: String,
    pub scopes: String,
    pub token_url: String,
    pub comment: String,
}

impl ClientValues {
    fn from_template(id: &str) -> ClientValues {
        let t = template::find(id);
        ClientValues {
            template: id.to_string(),
            credential_kind: if id == "google" { "google_service_account" } else { "secret" }.into(),
            scopes: t.map(|t| t.scopes.join("\n")).unwrap_or_default(),
            token_url: t.map(|t| t.token_url.to_string()).unwrap_or_default(),
            ..ClientValues::default()
        }
    }

    fn from_form(f: &AdminForm) -> ClientValues {
        let g = |k: &str| f.text(k).unwrap_or_default();
        ClientValues {
            name: g("name"),
            template: g("template"),
            credential_kind: g("credential_kind"),
            tenant: g("tenant"),
            client_id: g("client_id"),
            expires_on: g("expires_on"),
            scopes: g("scopes"),
            token_url: g("token_url"),
            comment: g("comment"),
        }
    }
}

fn template_hint(id: &str) -> String {
    match template::find(id) {
        Some(t) if t.needs_tenant => format!("{}: {{tenant}} in the token URL is replaced by the tenant.", t.label),
        Some(t) => t.label.to_string(),
        None => String::new(),
    }
}

fn template_opts(current: &str) -> Vec<Opt> {
    template::TEMPLATES.iter().map(|t| opt(t.id, t.label, current)).collect()
}

#[derive(Template)]
#[template(path = "client_form.html")]
struct ClientForm {
    l: Layout,
    client: Option<OAuthClientView>,
    v: ClientValues,
    templates: Vec<Opt>,
    kinds: Vec<Opt>,
    tpl_hint: String,
    secret_set: bool,
    secret_changed: String,
    form_error: String,
    field_errors: Vec<FieldError>,
}

#[derive(Template)]
#[template(path = "template_fields.html")]
struct TemplateFields {
    v: ClientValues,
    tpl_hint: String,
    field_errors: Vec<FieldError>,
}

field_errors!(ClientForm, TemplateFields);

fn client_form(admin: &Admin, p: &HashMap<String, String>, client: Option<OAuthClientView>, v: ClientValues) -> ClientForm {
    let title = client.as_ref().map(|c| format!("OAuth client {}", c.name)).unwrap_or_else(|| "New OAuth client".into());
    ClientForm {
        l: Layout::new(admin, "clients", title, p),
        secret_set: client.as_ref().is_some_and(|c| c.client_secret_set),
        secret_changed: client.as_ref().and_then(|c| c.client_secret_updated_at.clone()).map(|t| t.replace('T', " ")).unwrap_or_default(),
        templates: template_opts(&v.template),
        kinds: vec![
            opt("secret", "Client secret", &v.credential_kind),
            opt("certificate", "Certificate (signed client assertion)", &v.credential_kind),
            opt("google_service_account", "Google service account key", &v.credential_kind),
        ],
        tpl_hint: template_hint(&v.template),
        client,
        v,
        form_error: String::new(),
        field_errors: Vec::new(),
    }
}

pub async fn client_new(admin: Admin, Query(p): Params) -> Response {
    render(&client_form(&admin, &p, None, ClientValues::from_template("microsoft365")))
}

pub async fn client_template_fields(_admin: Admin, Query(p): Params) -> Response {
    let id = p.get("template").map(String::as_str).unwrap_or("custom");
    let v = ClientValues::from_template(id);
    render(&TemplateFields { tpl_hint: template_hint(id), v, field_errors: Vec::new() })
}

fn client_input(f: &AdminForm, creating: bool) -> OAuthClientInput {
    let nonempty = |k: &str| f.text(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    OAuthClientInput {
        name: f.text("name"),
        template: nonempty("template"),
        tenant: f.text("tenant"),
        client_id: if creating { nonempty("client_id") } else { f.text("client_id") },
        // Write-only: an empty field keeps the stored secret (key, key file).
        client_secret: f.text("client_secret").filter(|s| !s.is_empty()),
        // A pasted key file or certificate says what the credential is.
        credential_kind: if nonempty("service_account_json").is_some() {
            Some(CredentialKind::GoogleServiceAccount)
        } else if nonempty("certificate_pem").is_some() {
            Some(CredentialKind::Certificate)
        } else {
            nonempty("credential_kind").and_then(|k| CredentialKind::parse(&k))
        },
        certificate_pem: nonempty("certificate_pem"),
        private_key_pem: nonempty("private_key_pem"),
        service_account_json: nonempty("service_account_json"),
        expires_on: if creating { nonempty("expires_on") } else { f.text("expires_on") },
        scopes: f.text("scopes").map(|s| s.split_whitespace().map(str::to_string).collect()),
        token_url: f.text("token_url"),
        comment: f.text("comment"),
        ..OAuthClientInput::default()
    }
}

fn client_summary(c: &mailgate_core::model::OAuthClient, secret_changed: bool) -> String {
    let mut s = format!("template {}, tenant {}, client ID {}", c.template, c.tenant.as_deref().unwrap_or("-"), c.client_id);
    if let Some(e) = &c.expires_on {
        s.push_str(&format!(", expires {e}"));
    }
    if secret_changed {
        s.push_str(", secret replaced");
    }
    s
}

async fn client_save(state: AppState, id: Option<String>, form: AdminForm) -> UiResult<Response> {
    let input = client_input(&form, id.is_none());
    let secret_given = input.client_secret.is_some();
    let result = match &id {
        None => service::oauth_clients::create(&state, input).await,
        Some(id) => service::oauth_clients::update(&state, id, input).await,
    };
    match result {
        Ok(c) => {
            let action = if id.is_none() { "oauth_client.create" } else { "oauth_client.update" };
            audit(&state, &form.admin.actor(), action, &c.name, &client_summary(&c, secret_given)).await;
            Ok(redirect(&format!("/ui/oauth-clients/{}?ok=saved", c.id)))
        }
        Err(e) => {
            let (field_errors, message) = form_failure(e)?;
            let client = match &id {
                Some(id) => Some(OAuthClientView::from(&state.store.get_oauth_client(id).await?)),
                None => None,
            };
            let mut page = client_form(&form.admin, &HashMap::new(), client, ClientValues::from_form(&form));
            page.form_error = message;
            page.field_errors = field_errors;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
    }
}

pub async fn client_create(State(state): State<AppState>, form: AdminForm) -> UiResult<Response> {
    client_save(state, None, form).await
}

pub async fn client_update(State(state): State<AppState>, Path(id): Path<String>, form: AdminForm) -> UiResult<Response> {
    client_save(state, Some(id), form).await
}

pub async fn client_edit(State(state): State<AppState>, admin: Admin, Path(id): Path<String>, Query(p): Params) -> UiResult<Response> {
    let c = state.store.get_oauth_client(&id).await?;
    let v = ClientValues {
        name: c.name.clone(),
        template: c.template.clone(),
        credential_kind: c.credential_kind.to_string(),
        tenant: c.tenant.clone().unwrap_or_default(),
        client_id: c.client_id.clone(),
        expires_on: c.expires_on.clone().unwrap_or_default(),
        scopes: c.scopes.join("\n"),
        token_url: c.token_url.clone(),
        comment: c.comment.clone(),
    };
    Ok(render(&client_form(&admin, &p, Some(OAuthClientView::from(&c)), v)))
}

pub async fn client_delete(State(state): State<AppState>, Path(id): Path<String>, form: AdminForm) -> UiResult<Response> {
    let c = state.store.get_oauth_client(&id).await?;
    service::oauth_clients::delete(&state, &id).await?;
    audit(&state, &form.admin.actor(), "oauth_client.delete", &c.name, "").await;
    Ok(redirect("/ui/oauth-clients?ok=deleted"))
}

#[derive(Template)]
#[template(path = "token_test.html")]
struct TokenTestFragment {
    t: service::oauth_clients::TokenTest,
}

pub async fn client_token_test(State(state): State<AppState>, Path(id): Path<String>, _form: AdminForm) -> UiResult<Response> {
    let t = service::oauth_clients::token_test(&state, &id, None).await?;
    Ok(render(&TokenTestFragment { t }))
}

// ---------------------------------------------------------------- accounts

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    l: Layout,
    accounts: Vec<AccountView>,
    has_clients: bool,
}

pub async fn accounts(State(state): State<AppState>, admin: Admin, Query(p): Params) -> UiResult<Response> {
    let accounts = state.store.list_accounts().await?.iter().map(AccountView::from).collect();
    let has_clients = !state.store.list_oauth_clients().await?.is_empty();
    Ok(render(&AccountsPage { l: Layout::new(&admin, "accounts", "Accounts", &p), accounts, has_clients }))
}

pub struct AccountValues {
    pub name: String,
    pub protocol: String,
    pub auth: String,
    pub oauth_client: String,
    pub username: String,
    pub send_address: String,
    pub host: String,
    pub connection: String,
    pub port: String,
    pub imap_folder: String,
    pub after_retrieval: String,
    pub move_folder: String,
    pub poll_interval_secs: String,
    pub enabled: bool,
    pub comment: String,
}

impl AccountValues {
    fn new(protocol: &str) -> AccountValues {
        let imap = protocol == "imap";
        AccountValues {
            name: String::new(),
            protocol: if imap { "imap" } else { "smtp" }.into(),
            auth: "xoauth2".into(),
            oauth_client: String::new(),
            username: String::new(),
            send_address: String::new(),
            host: String::new(),
            connection: if imap { "tls" } else { "starttls" }.into(),
            port: String::new(),
            imap_folder: "INBOX".into(),
            after_retrieval: "delete".into(),
            move_folder: String::new(),
            poll_interval_secs: "60".into(),
            enabled: true,
            comment: String::new(),
        }
    }

    fn from_form(f: &AdminForm) -> AccountValues {
        let g = |k: &str| f.text(k).unwrap_or_default();
        AccountValues {
            name: g("name"),
            protocol: g("protocol"),
            auth: g("auth"),
            oauth_client: g("oauth_client"),
            username: g("username"),
            send_address: g("send_address"),
            host: g("host"),
            connection: g("connection"),
            port: g("port"),
            imap_folder: g("imap_folder"),
            after_retrieval: g("after_retrieval"),
            move_folder: g("move_folder"),
            poll_interval_secs: g("poll_interval_secs"),
            enabled: f.get("enabled") == Some("true"),
            comment: g("comment"),
        }
    }
}

#[derive(Template)]
#[template(path = "account_form.html")]
struct AccountForm {
    l: Layout,
    account: Option<AccountView>,
    v: AccountValues,
    auths: Vec<Opt>,
    connections: Vec<Opt>,
    clients: Vec<Opt>,
    password_set: bool,
    password_changed: String,
    form_error: String,
    field_errors: Vec<FieldError>,
}

field_errors!(AccountForm);

async fn account_form(state: &AppState, admin: &Admin, p: &HashMap<String, String>, account: Option<AccountView>, v: AccountValues) -> UiResult<AccountForm> {
    let clients = state.store.list_oauth_clients().await?.iter().map(|c| opt(&c.id, &c.name, &v.oauth_client)).collect();
    let auths = [
        ("xoauth2", "OAuth 2.0 (XOAUTH2 / OAUTHBEARER) — Microsoft 365, Google"),
        ("plain", "Password (PLAIN)"),
        ("login", "Password (LOGIN)"),
        ("none", "None (SMTP relay that needs no login)"),
    ]
    .iter()
    .map(|(val, label)| opt(val, label, &v.auth))
    .collect();
    let connections = [("tls", "TLS (implicit)"), ("starttls", "STARTTLS"), ("none", "none (unencrypted)")]
        .iter()
        .map(|(val, label)| opt(val, label, &v.connection))
        .collect();
    let title = account.as_ref().map(|a| format!("Account {}", a.name)).unwrap_or_else(|| "New account".into());
    Ok(AccountForm {
        l: Layout::new(admin, "accounts", title, p),
        password_set: account.as_ref().is_some_and(|a| a.password_set),
        password_changed: account.as_ref().and_then(|a| a.password_updated_at.clone()).map(|t| t.replace('T', " ")).unwrap_or_default(),
        account,
        v,
        auths,
        connections,
        clients,
        form_error: String::new(),
        field_errors: Vec::new(),
    })
}

pub async fn account_new(State(state): State<AppState>, admin: Admin, Query(p): Params) -> UiResult<Response> {
    let v = AccountValues::new(p.get("protocol").map(String::as_str).unwrap_or("smtp"));
    Ok(render(&account_form(&state, &admin, &p, None, v).await?))
}

pub async fn account_edit(State(state): State<AppState>, admin: Admin, Path(id): Path<String>, Query(p): Params) -> UiResult<Response> {
    let a = state.store.get_account(&id).await?;
    let view = AccountView::from(&a);
    let v = AccountValues {
        name: a.name.clone(),
        protocol: a.protocol.to_string(),
        auth: a.auth.to_string(),
        oauth_client: a.oauth_client_id.clone().unwrap_or_default(),
        username: a.username.clone(),
        send_address: view.send_address.clone().unwrap_or_default(),
        host: a.host.clone(),
        connection: a.connection.to_string(),
        port: a.port.to_string(),
        imap_folder: a.imap_folder.clone(),
        after_retrieval: a.after_retrieval.to_string(),
        move_folder: a.move_folder.clone().unwrap_or_default(),
        poll_interval_secs: a.poll_interval_secs.to_string(),
        enabled: a.enabled,
        comment: a.comment.clone(),
    };
    Ok(render(&account_form(&state, &admin, &p, Some(view), v).await?))
}

/// The service's input from the form; values that do not parse become field errors.
fn account_input(f: &AdminForm, creating: bool) -> Result<AccountInput, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let text = |k: &str| f.text(k).map(|v| v.trim().to_string());
    let protocol = text("protocol").and_then(|p| Protocol::parse(&p));
    if protocol.is_none() {
        errors.add("protocol", "choose smtp or imap");
    }
    let imap = protocol == Some(Protocol::Imap);
    let auth = text("auth").and_then(|a| AuthMethod::parse(&a));
    let connection = text("connection").and_then(|c| Connection::parse(&c));
    let port = match text("port").filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.add("port", "must be 1 to 65535");
                None
            }
        },
    };
    let poll = match text("poll_interval_secs").filter(|p| imap && !p.is_empty()) {
        None => None,
        Some(p) => match p.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.add("poll_interval_secs", "must be a number of seconds");
                None
            }
        },
    };
    let auth_is_oauth = auth == Some(AuthMethod::Xoauth2);
    let input = AccountInput {
        name: f.text("name"),
        protocol,
        auth,
        username: text("username"),
        password: f.text("password").filter(|p| !p.is_empty()),
        oauth_client: if auth_is_oauth { text("oauth_client").filter(|c| !creating || !c.is_empty()) } else { None },
        send_address: if imap { None } else { f.text("send_address") },
        connection,
        host: text("host").filter(|h| !creating || !h.is_empty()),
        port,
        imap_folder: if imap { text("imap_folder").filter(|x| !x.is_empty()) } else { None },
        after_retrieval: if imap { text("after_retrieval").and_then(|a| AfterRetrieval::parse(&a)) } else { None },
        move_folder: if imap { f.text("move_folder") } else { None },
        poll_interval_secs: poll,
        enabled: Some(f.get("enabled") == Some("true")),
        comment: f.text("comment"),
        ..AccountInput::default()
    };
    errors.into_result(input)
}

async fn account_save(state: AppState, id: Option<String>, form: AdminForm) -> UiResult<Response> {
    let mut input = account_input(&form, id.is_none());
    // A changed connection type with the old type's default port left in the field: the new
    // type's default port (as when the port is left empty).
    if let (Ok(i), Some(id)) = (&mut input, &id) {
        let old = state.store.get_account(id).await?;
        if let (Some(c), Some(p)) = (i.connection, i.port)
            && c != old.connection
            && p == old.connection.default_port(old.protocol)
        {
            i.port = None;
        }
    }
    let password_given = input.as_ref().is_ok_and(|i| i.password.is_some());
    let result = match (input, &id) {
        (Err(v), _) => Err(ApiError::Validation(v)),
        (Ok(input), None) => service::accounts::create(&state, input).await,
        (Ok(input), Some(id)) => service::accounts::update(&state, id, input).await,
    };
    match result {
        Ok(a) => {
            let action = if id.is_none() { "account.create" } else { "account.update" };
            let mut detail = format!("{} {}:{} ({}), auth {}", a.protocol, a.host, a.port, a.connection, a.auth);
            if password_given {
                detail.push_str(", password replaced");
            }
            audit(&state, &form.admin.actor(), action, &a.name, &detail).await;
            Ok(redirect(&format!("/ui/accounts/{}?ok=saved", a.id)))
        }
        Err(e) => {
            let (field_errors, message) = form_failure(e)?;
            let account = match &id {
                Some(id) => Some(AccountView::from(&state.store.get_account(id).await?)),
                None => None,
            };
            let mut page = account_form(&state, &form.admin, &HashMap::new(), account, AccountValues::from_form(&form)).await?;
            page.form_error = message;
            page.field_errors = field_errors;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
    }
}

pub async fn account_create(State(state): State<AppState>, form: AdminForm) -> UiResult<Response> {
    account_save(state, None, form).await
}

pub async fn account_update(State(state): State<AppState>, Path(id): Path<String>, form: AdminForm) -> UiResult<Response> {
    account_save(state, Some(id), form).await
}

pub async fn account_delete(State(state): State<AppState>, Path(id): Path<String>, form: AdminForm) -> UiResult<Response> {
    let a = state.store.get_account(&id).await?;
    service::accounts::delete(&state, &id).await?;
    audit(&state, &form.admin.actor(), "account.delete", &a.name, "").await;
    Ok(redirect("/ui/accounts?ok=deleted"))
}

#[derive(Template)]
#[template(path = "check_report.html")]
struct CheckFragment {
    r: mailgate_check::CheckReport,
}

impl CheckFragment {
    fn step_status(&self, s: &mailgate_check::Step) -> String {
        serde_json::to_value(s.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    }

    fn step_class(&self, s: &mailgate_check::Step) -> &'static str {
        match self.step_status(s).as_str() {
            "ok" => "ok",
            "warning" => "warn",
            "failed" => "bad",
            _ => "",
        }
    }
}

/// The same diagnosis as `POST /api/v1/accounts/{id}/test`.
pub async fn account_test(State(state): State<AppState>, Path(id): Path<String>, form: AdminForm) -> UiResult<Response> {
    let account = state.store.get_account(&id).await?;
    let send_to = form.text("send_to").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let options = mailgate_check::CheckOptions { send_to };
    let r = state.checker.check_account(&account, &options).await;
    Ok(render(&CheckFragment { r }))
}

// ---------------------------------------------------------------- spool

pub struct SpoolRow {
    pub id: String,
    pub date: String,
    pub status: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub account: String,
    pub attempts: String,
    pub last_error: String,
    pub size: i64,
    pub flagged: bool,
    pub attachments: usize,
}

#[derive(Template)]
#[template(path = "spool.html")]
struct SpoolPage {
    l: Layout,
    dir: String,
    q: String,
    status_opts: Vec<Opt>,
    limit_opts: Vec<Opt>,
    rows: Vec<SpoolRow>,
    filtered: bool,
    back: String,
    first: u64,
    last: u64,
    total: i64,
    prev: Option<String>,
    next: Option<String>,
}

/// Page size (10 to 1000, default 50) and offset from the query.
fn paging(p: &HashMap<String, String>) -> (u32, u64) {
    let limit = p.get("limit").and_then(|l| l.parse::<u32>().ok()).unwrap_or(50).clamp(10, 1000);
    let offset = p.get("offset").and_then(|o| o.parse::<u64>().ok()).unwrap_or(0);
    (limit, offset)
}

fn limit_opts(limit: u32) -> Vec<Opt> {
    [10u32, 25, 50, 100, 250, 500, 1000].iter().map(|n| opt(&n.to_string(), &format!("{n} a page"), &limit.to_string())).collect()
}

/// Links to the previous and next page: the same query with another offset.
fn pager(path: &str, p: &HashMap<String, String>, limit: u32, offset: u64, total: i64) -> (u64, u64, Option<String>, Option<String>) {
    let link = |o: u64| {
        let mut q: Vec<(String, String)> = p.iter().filter(|(k, _)| *k != "offset" && *k != "ok").map(|(k, v)| (k.clone(), v.clone())).collect();
        q.sort();
        q.push(("offset".into(), o.to_string()));
        format!("{path}?{}", serde_urlencoded::to_string(&q).unwrap_or_default())
    };
    let total = total.max(0) as u64;
    let first = if total == 0 { 0 } else { offset + 1 };
    let last = (offset + u64::from(limit)).min(total);
    let prev = (offset > 0).then(|| link(offset.saturating_sub(u64::from(limit))));
    let next = (last < total).then(|| link(offset + u64::from(limit)));
    (first, last, prev, next)
}

pub async fn spool(State(state): State<AppState>, admin: Admin, Query(p): Params) -> UiResult<Response> {
    let dir = if p.get("dir").map(String::as_str) == Some("in") { "in" } else { "out" };
    let q = p.get("q").map(|s| s.trim().to_string()).unwrap_or_default();
    let status = p.get("status").cloned().unwrap_or_default();
    let (limit, offset) = paging(&p);
    let query = (!q.is_empty()).then(|| q.clone());
    let (rows, total, status_opts) = if dir == "out" {
        let filter = MailFilter { status: MailStatus::parse(&status), query, limit, offset, ..MailFilter::default() };
        let page = state.store.list_mails(&filter).await?;
        let rows = page
            .items
            .iter()
            .map(|m| SpoolRow {
                id: m.id.clone(),
                date: ts(m.created_at),
                status: m.status.to_string(),
                from: m.header_from.clone(),
                to: m.to_display.clone(),
                subject: m.subject.clone(),
                account: m.account_name.clone(),
                attempts: if m.attempts == 0 { "0".into() } else { format!("{} ({})", m.attempts, ts(m.updated_at)) },
                last_error: m.last_error.clone().unwrap_or_default(),
                size: m.size,
                flagged: false,
                attachments: m.attachments.len(),
            })
            .collect();
        let opts = ["queued", "sending", "sent", "failed"].iter().map(|s| opt(s, s, &status)).collect();
        (rows, page.total, opts)
    } else {
        let consumed = match status.as_str() {
            "new" => Some(false),
            "consumed" => Some(true),
            _ => None,
        };
        let page = state.store.list_inbox(&InboxFilter { consumed, query, limit, offset, ..InboxFilter::default() }).await?;
        let rows = page
            .items
            .iter()
            .map(|m| SpoolRow {
                id: m.id.clone(),
                date: ts(m.date.unwrap_or(m.received_at)),
                status: if m.consumed_at.is_some() { "consumed".into() } else { "new".into() },
                from: m.from.clone(),
                to: m.to.clone(),
                subject: m.subject.clone(),
                account: m.account_name.clone(),
                attempts: String::new(),
                last_error: String::new(),
                size: m.size,
                flagged: !m.problems.is_empty(),
                attachments: 0,
            })
            .collect();
        let opts = vec![opt("new", "not consumed", &status), opt("consumed", "consumed", &status)];
        (rows, page.total, opts)
    };
    let (first, last, prev, next) = pager("/ui/spool", &p, limit, offset, total);
    let mut back_q: Vec<(String, String)> = p.iter().filter(|(k, _)| *k != "ok").map(|(k, v)| (k.clone(), v.clone())).collect();
    back_q.sort();
    let page = SpoolPage {
        l: Layout::new(&admin, "spool", "Spool", &p),
        dir: dir.into(),
        filtered: !q.is_empty() || !status.is_empty(),
        q,
        status_opts,
        limit_opts: limit_opts(limit),
        rows,
        back: format!("/ui/spool?{}", serde_urlencoded::to_string(&back_q).unwrap_or_default()),
        first,
        last,
        total,
        prev,
        next,
    };
    Ok(render(&page))
}

/// Retry (reset attempts) or delete the selected outgoing mails; mark incoming ones consumed.
pub async fn spool_bulk(State(state): State<AppState>, form: AdminForm) -> UiResult<Response> {
    let ids = form.all("id");
    let action = form.get("action").unwrap_or("");
    let incoming = form.get("dir") == Some("in");
    let back = auth::safe_next(form.get("back"));
    let mut done = 0;
    let mut failed = 0;
    for id in &ids {
        let r = match (incoming, action) {
            (false, "retry") => service::mails::retry(&state, id, None).await.map(|_| ()),
            (false, "delete") => service::mails::delete(&state, id, None).await,
            (true, "delete") => state.store.consume_inbox_message(id, now_millis()).await.map_err(ApiError::from),
            _ => Err(ApiError::BadRequest("unknown action".into())),
        };
        match r {
            Ok(()) => done += 1,
            Err(ApiError::Internal(e)) => return Err(UiError(ApiError::Internal(e))),
            Err(_) => failed += 1,
        }
    }
    if done > 0 {
        let what = match (incoming, action) {
            (false, "retry") => "mail.retry",
            (false, _) => "mail.delete",
            (true, _) => "inbox.consume",
        };
        let mut listed: Vec<&str> = ids.iter().map(String::as_str).take(20).collect();
        if ids.len() > 20 {
            listed.push("…");
        }
        audit(&state, &form.admin.actor(), what, &format!("{done} mail(s)"), &listed.join(", ")).await;
    }
    let code = if failed > 0 { "partial" } else if action == "retry" { "retried" } else { "removed" };
    let back = if action == "delete" && back.starts_with("/ui/spool/") && !incoming { "/ui/spool".to_string() } else { back };
    Ok(redirect(&with_ok(&back, code)))
}

pub struct MailShown {
    pub subject: String,
    pub status: Option<String>,
    pub last_error: Option<String>,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub date: String,
    pub account: String,
    pub message_id: String,
    pub size: i64,
    pub problems: Vec<String>,
    pub attachments: Vec<mailgate_imap::parse::PartInfo>,
    pub has_html: bool,
    pub text: Option<String>,
    pub attempts: Vec<AttemptView>,
    /// The header section as stored (outgoing: as built and signed off for sending).
    pub raw_headers: String,
}

/// The header block of a message (up to the first empty line), at most 64 KiB.
fn header_block(raw: &[u8]) -> String {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| raw.windows(2).position(|w| w == b"\n\n")).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end.min(65_536)]).into_owned()
}

#[derive(Template)]
#[template(path = "mail.html")]
struct MailPage {
    l: Layout,
    dir: String,
    id: String,
    m: MailShown,
}

async fn raw_of(state: &AppState, dir: &str, id: &str) -> UiResult<Vec<u8>> {
    Ok(match dir {
        "out" => state.store.get_mail_raw(id).await?,
        "in" => state.store.get_inbox_raw(id).await?,
        _ => return Err(UiError(ApiError::NotFound("no such spool".into()))),
    })
}

pub async fn mail_view(State(state): State<AppState>, admin: Admin, Path((dir, id)): Path<(String, String)>, Query(p): Params) -> UiResult<Response> {
    let raw = raw_of(&state, &dir, &id).await?;
    let parsed = mailgate_imap::parse::parse(&raw);
    let raw_headers = header_block(&raw);
    let m = if dir == "out" {
        let mail = service::mails::visible_mail(&state, &id, None).await?;
        let attempts = state.store.list_attempts(&mail.id).await?;
        MailShown {
            subject: mail.subject.clone(),
            status: Some(mail.status.to_string()),
            last_error: mail.last_error.clone(),
            from: mail.header_from.clone(),
            to: mail.to_display.clone(),
            cc: mail.cc_display.clone(),
            date: ts(mail.created_at),
            account: mail.account_name.clone(),
            message_id: mail.message_id.clone(),
            size: mail.size,
            problems: Vec::new(),
            attachments: parsed.attachments,
            has_html: parsed.html.is_some(),
            text: parsed.text,
            attempts: attempts.iter().map(|a| AttemptView { at: ts(a.at), ..AttemptView::from(a) }).collect(),
            raw_headers,
        }
    } else {
        let msg = state.store.get_inbox_message(&id).await?;
        MailShown {
            subject: msg.subject.clone(),
            status: Some(if msg.consumed_at.is_some() { "consumed".into() } else { "new".into() }),
            last_error: None,
            from: msg.from.clone(),
            to: msg.to.clone(),
            cc: msg.cc.clone(),
            date: ts(msg.date.unwrap_or(msg.received_at)),
            account: msg.account_name.clone(),
            message_id: msg.message_id.clone().unwrap_or_default(),
            size: msg.size,
            problems: msg.problems.clone(),
            attachments: parsed.attachments,
            has_html: parsed.html.is_some(),
            text: parsed.text,
            attempts: Vec::new(),
            raw_headers,
        }
    };
    let title = if m.subject.is_empty() { "(no subject)".to_string() } else { m.subject.clone() };
    Ok(render(&MailPage { l: Layout::new(&admin, "spool", title, &p), dir, id, m }))
}

/// A mail's HTML body for the sandboxed frame: no script runs, nothing loads from elsewhere.
pub async fn mail_html(State(state): State<AppState>, _admin: Admin, Path((dir, id)): Path<(String, String)>) -> UiResult<Response> {
    let raw = raw_of(&state, &dir, &id).await?;
    let html = mailgate_imap::parse::parse(&raw).html.unwrap_or_default();
    let mut response = Html(html).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(super::MAIL_CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    Ok(response)
}

pub async fn mail_attachment(
    State(state): State<AppState>,
    _admin: Admin,
    Path((dir, id, n)): Path<(String, String, usize)>,
) -> UiResult<Response> {
    let raw = raw_of(&state, &dir, &id).await?;
    let (filename, content_type, bytes) = mailgate_imap::parse::attachment(&raw, n)
        .ok_or_else(|| ApiError::NotFound(format!("the mail has no attachment {n}")))?;
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type.parse().unwrap_or(HeaderValue::from_static("application/octet-stream")));
    if let Ok(v) = crate::api::inbox::content_disposition(&filename).parse() {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    Ok(response)
}

// ---------------------------------------------------------------- traffic

#[derive(Template)]
#[template(path = "traffic.html")]
struct TrafficPage {
    l: Layout,
    q: String,
    since: String,
    until: String,
    direction_opts: Vec<Opt>,
    account_opts: Vec<Opt>,
    limit_opts: Vec<Opt>,
    errors: Vec<String>,
    rows: Vec<TrafficView>,
    filtered: bool,
    retention_days: u32,
    first: u64,
    last: u64,
    total: i64,
    prev: Option<String>,
    next: Option<String>,
}

/// `YYYY-MM-DD` → the start of that day (UTC), plus `extra_days`.
fn day_millis(date: &str, extra_days: i64) -> Option<i64> {
    let d = time::Date::parse(date, &time::format_description::well_known::Iso8601::DATE).ok()?;
    Some((d.midnight().assume_utc().unix_timestamp() + extra_days * 86_400) * 1000)
}

pub async fn traffic(State(state): State<AppState>, admin: Admin, Query(p): Params) -> UiResult<Response> {
    let get = |k: &str| p.get(k).map(|s| s.trim().to_string()).unwrap_or_default();
    let (q, direction, account, since, until) = (get("q"), get("direction"), get("account"), get("since"), get("until"));
    let (limit, offset) = paging(&p);
    let mut errors = Vec::new();
    let mut date = |field: &str, v: &str, extra: i64| {
        if v.is_empty() {
            return None;
        }
        let t = day_millis(v, extra);
        if t.is_none() {
            errors.push(format!("{field}: must be a date like 2026-11-29"));
        }
        t
    };
    let since_ms = date("from", &since, 0);
    let until_ms = date("to", &until, 1);
    let filter = TrafficFilter {
        direction: Direction::parse(&direction),
        account_name: (!account.is_empty()).then(|| account.clone()),
        query: (!q.is_empty()).then(|| q.clone()),
        since: since_ms,
        until: until_ms,
        limit,
        offset,
    };
    let page = state.store.list_traffic(&filter).await?;
    let rows = page.items.iter().map(|t| TrafficView { at: ts(t.at), ..TrafficView::from(t) }).collect();
    let mut account_opts = vec![opt("", "all accounts", &account)];
    account_opts.extend(state.store.list_accounts().await?.iter().map(|a| opt(&a.name, &a.name, &account)));
    let (first, last, prev, next) = pager("/ui/traffic", &p, limit, offset, page.total);
    let settings = service::settings::get(&state).await?;
    let page = TrafficPage {
        l: Layout::new(&admin, "traffic", "Traffic", &p),
        filtered: !(q.is_empty() && direction.is_empty() && account.is_empty() && since.is_empty() && until.is_empty()),
        direction_opts: vec![opt("", "both directions", &direction), opt("out", "sent (out)", &direction), opt("in", "received (in)", &direction)],
        account_opts,
        limit_opts: limit_opts(limit),
        q,
        since,
        until,
        errors,
        rows,
        retention_days: settings.traffic_retention_days,
        first,
        last,
        total: page.total,
        prev,
        next,
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------- settings

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    l: Layout,
    s: service::settings::Settings,
    default_opts: Vec<Opt>,
    notice_opts: Vec<Opt>,
    admin_contacts: String,
    expiry_notice_days: String,
    form_error: String,
    field_errors: Vec<FieldError>,
}

field_errors!(SettingsPage);

async fn settings_page(state: &AppState, admin: &Admin, p: &HashMap<String, String>, s: service::settings::Settings) -> UiResult<SettingsPage> {
    let smtp: Vec<String> = state.store.list_accounts().await?.into_iter().filter(|a| a.protocol == Protocol::Smtp).map(|a| a.name).collect();
    let current = |c: &Option<String>| c.clone().unwrap_or_default();
    Ok(SettingsPage {
        l: Layout::new(admin, "settings", "Settings", p),
        default_opts: smtp.iter().map(|n| opt(n, n, &current(&s.default_account))).collect(),
        notice_opts: smtp.iter().map(|n| opt(n, n, &current(&s.notice_account))).collect(),
        admin_contacts: s.admin_contacts.join("\n"),
        expiry_notice_days: s.expiry_notice_days.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
        s,
        form_error: String::new(),
        field_errors: Vec::new(),
    })
}

pub async fn settings(State(state): State<AppState>, admin: Admin, Query(p): Params) -> UiResult<Response> {
    let s = service::settings::get(&state).await?;
    Ok(render(&settings_page(&state, &admin, &p, s).await?))
}

pub async fn settings_update(State(state): State<AppState>, form: AdminForm) -> UiResult<Response> {
    let mut errors = ValidationErrors::new();
    let mut number = |field: &str| -> Option<u32> {
        let v = form.get(field)?.trim();
        match v.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.add(field, "must be a whole number");
                None
            }
        }
    };
    let traffic_retention_days = number("traffic_retention_days");
    let inbox_retention_days = number("inbox_retention_days");
    let days: Option<Vec<u32>> = form.get("expiry_notice_days").map(|v| {
        v.split([',', ' ']).filter(|d| !d.trim().is_empty()).filter_map(|d| d.trim().parse().ok()).collect()
    });
    if let Some(v) = form.get("expiry_notice_days")
        && v.split([',', ' ']).filter(|d| !d.trim().is_empty()).any(|d| d.trim().parse::<u32>().is_err())
    {
        errors.add("expiry_notice_days", "numbers of days separated by commas");
    }
    let choice = |k: &str| form.text(k).map(|v| Some(v).filter(|v| !v.trim().is_empty()));
    let input = SettingsInput {
        default_account: choice("default_account"),
        notice_account: choice("notice_account"),
        traffic_retention_days,
        inbox_retention_days,
        admin_contacts: form.text("admin_contacts").map(|v| v.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()),
        expiry_notice_days: days,
    };
    let result = match errors.into_result(()) {
        Ok(()) => service::settings::update(&state, input).await,
        Err(v) => Err(ApiError::Validation(v)),
    };
    match result {
        Ok(s) => {
            let detail = format!(
                "default account {}, notice account {}, traffic kept {} days, inbox kept {} days, {} admin contact(s), notices at {:?} days",
                s.default_account.as_deref().unwrap_or("-"),
                s.notice_account.as_deref().unwrap_or("-"),
                s.traffic_retention_days,
                s.inbox_retention_days,
                s.admin_contacts.len(),
                s.expiry_notice_days
            );
            audit(&state, &form.admin.actor(), "settings.update", "settings", &detail).await;
            Ok(redirect("/ui/settings?ok=saved"))
        }
        Err(e) => {
            let (field_errors, message) = form_failure(e)?;
            let current = service::settings::get(&state).await?;
            let mut page = settings_page(&state, &form.admin, &HashMap::new(), current).await?;
            page.admin_contacts = form.text("admin_contacts").unwrap_or_default();
            page.expiry_notice_days = form.text("expiry_notice_days").unwrap_or_default();
            page.form_error = message;
            page.field_errors = field_errors;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
    }
}

// ---------------------------------------------------------------- API keys

#[derive(Template)]
#[template(path = "api_keys.html")]
struct KeysPage {
    l: Layout,
    keys: Vec<ApiKeyView>,
    created: Option<(String, String)>,
    form_error: String,
}

async fn keys_page(state: &AppState, admin: &Admin, p: &HashMap<String, String>) -> UiResult<KeysPage> {
    let keys = state.store.list_api_keys().await?.iter().map(|k| {
        let mut v = ApiKeyView::from(k);
        v.created_at = ts(k.created_at);
        v.last_used_at = k.last_used_at.map(ts);
        v.revoked_at = k.revoked_at.map(ts);
        v
    }).collect();
    Ok(KeysPage { l: Layout::new(admin, "keys", "API keys", p), keys, created: None, form_error: String::new() })
}

pub async fn api_keys(State(state): State<AppState>, admin: Admin, Query(p): Params) -> UiResult<Response> {
    Ok(render(&keys_page(&state, &admin, &p).await?))
}

/// The new key is shown in this answer only (no redirect: it is never stored).
pub async fn api_key_create(State(state): State<AppState>, form: AdminForm) -> UiResult<Response> {
    let name = form.text("name").unwrap_or_default();
    let admin_key = form.get("admin") == Some("true");
    match service::api_keys::create(state.store.as_ref(), &name, admin_key).await {
        Ok((record, key)) => {
            audit(&state, &form.admin.actor(), "api_key.create", &record.name, if admin_key { "admin key" } else { "sending key" }).await;
            let mut page = keys_page(&state, &form.admin, &HashMap::new()).await?;
            page.created = Some((record.name, key));
            let mut response = render(&page);
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        }
        Err(e) => {
            let mut page = keys_page(&state, &form.admin, &HashMap::new()).await?;
            page.form_error = e.to_string();
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
    }
}

pub async fn api_key_revoke(State(state): State<AppState>, Path(id): Path<String>, form: AdminForm) -> UiResult<Response> {
    let name = state.store.list_api_keys().await?.into_iter().find(|k| k.id == id).map(|k| k.name).unwrap_or_else(|| id.clone());
    state.store.revoke_api_key(&id, now_millis()).await?;
    audit(&state, &form.admin.actor(), "api_key.revoke", &name, "").await;
    Ok(redirect("/ui/api-keys?ok=revoked"))
}

// ---------------------------------------------------------------- audit log

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    l: Layout,
    rows: Vec<AuditRow>,
    first: u64,
    last: u64,
    total: i64,
    prev: Option<String>,
    next: Option<String>,
}

pub async fn audit_log(State(state): State<AppState>, admin: Admin, Query(p): Params) -> UiResult<Response> {
    let (limit, offset) = paging(&p);
    let page = state.store.list_audit(limit, offset).await?;
    let rows = page
        .items
        .into_iter()
        .map(|e| AuditRow { at: ts(e.at), actor: e.actor, action: e.action, target: e.target, detail: e.detail })
        .collect();
    let (first, last, prev, next) = pager("/ui/audit", &p, limit, offset, page.total);
    Ok(render(&AuditPage { l: Layout::new(&admin, "audit", "Audit log", &p), rows, first, last, total: page.total, prev, next }))
}

#[derive(Template)]
#[template(path = "retrieve_result.html")]
struct RetrieveFragment {
    ok: bool,
    stored: u64,
    removed: u64,
    oversize: u64,
    error: String,
}

/// One retrieval pass now, as `POST /api/v1/accounts/{id}/retrieve`.
pub async fn account_retrieve(State(state): State<AppState>, Path(id): Path<String>, _form: AdminForm) -> UiResult<Response> {
    let account = state.store.get_account(&id).await?;
    if account.protocol != Protocol::Imap {
        return Err(UiError(ApiError::Conflict(format!("'{}' is an SMTP account; only IMAP accounts retrieve mail", account.name))));
    }
    let page = match state.retriever.retrieve_once(&account).await {
        Ok(r) => RetrieveFragment { ok: true, stored: r.stored as u64, removed: r.removed as u64, oversize: r.oversize as u64, error: String::new() },
        Err(e) => RetrieveFragment { ok: false, stored: 0, removed: 0, oversize: 0, error: e.message },
    };
    Ok(render(&page))
}
