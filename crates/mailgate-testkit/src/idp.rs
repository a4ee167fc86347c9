//! A stand-in for the Microsoft identity platform v2.0 token endpoint and Google's token
//! endpoint for service accounts, and the OAuth2 introspection endpoint the test Dovecot asks
//! about XOAUTH2 tokens.
//!
//! [`FakeIdp`] is an axum server with in-memory state: tenants, app registrations ("clients") and
//! per-client counters. Tests register what they need through the admin endpoints
//! ([`IdpAdmin`]), then point the code under test at [`FakeIdp::token_url`].
//!
//! Endpoints:
//! - `POST /{tenant}/oauth2/v2.0/token` — client-credentials grant, Microsoft's error bodies
//!   (`AADSTS` codes, trace and correlation ids), real RS256 JWTs shaped like Entra app-only
//!   tokens for Exchange Online (about 2 KB). Clients authenticate with their secret or, when a
//!   certificate is registered ([`ClientSpec::certificate_pem`]), with a signed
//!   `client_assertion` (checks and error texts: the `assertion` module's docs).
//! - `POST /google/token` — Google's JWT bearer grant for service accounts with domain-wide
//!   delegation, Google's error bodies, opaque `ya29.` tokens (checks and error texts: the
//!   `google` module's docs).
//! - `POST /introspect/imap`, `POST /introspect/smtp` — RFC 7662-style answers for Dovecot:
//!   always HTTP 200, `{"active":true,"username":"app@<mail domain>"}` for a Microsoft token
//!   with the service's role, `{"active":true,"username":"<sub>"}` for a Google token (both
//!   services), or `{"active":false}`.
//! - `POST /_admin/tenants`, `POST /_admin/clients`, `PATCH /_admin/clients/{client_id}`,
//!   `POST /_admin/google/service-accounts`, `POST /_admin/clients/{client_id}/revoke`,
//!   `GET /_admin/clients/{client_id}/stats` (a Google service account's `client_email` works as
//!   `client_id` for these two), `GET /_admin/health`.
//!
//! Every request is logged (method, path, status, outcome) with `tracing`; never a secret or a
//! token.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{self, KeyPair as _, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

mod assertion;
mod google;
mod jose;

pub use google::GoogleServiceAccountSpec;

/// The role an app needs for IMAP (`/introspect/imap`).
pub const ROLE_IMAP: &str = "IMAP.AccessAsApp";
/// The role an app needs for SMTP (`/introspect/smtp`).
pub const ROLE_SMTP: &str = "SMTP.SendAsApp";

/// Resources a scope may name (`<resource>/.default`); the token's `aud` is the one asked for.
const RESOURCES: [&str; 2] = [
    "https://outlook.office365.com",
    "https://outlook.office.com",
];
/// `wids` of an app-only token: the "Global Reader"-like template id Entra puts in app tokens.
const APP_WIDS: &str = "0997a1d0-0d1d-4acb-b408-d5ca73121e90";
/// Entra back-dates `iat`/`nbf` by five minutes (clock skew allowance).
const BACKDATE_SECS: i64 = 300;
/// How long a client with [`Behaviour::Hang`] keeps a token request open.
const HANG: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Public types shared by the server and the admin client

/// How the token endpoint treats a client's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behaviour {
    /// Validate and issue tokens like Microsoft.
    #[default]
    Normal,
    /// HTTP 503 with a Microsoft-shaped `temporarily_unavailable` body.
    Unavailable,
    /// Hold the request open for about 120 s (other requests are served meanwhile).
    Hang,
    /// HTTP 200 with a body that is not JSON (an HTML page).
    Garbage,
}

/// A tenant (directory). `POST /_admin/tenants` upserts it by `tenant_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSpec {
    /// The tenant id (normally a GUID; any string works). It becomes the tokens' `tid`.
    pub tenant_id: String,
    /// Verified domain names the token URL may use instead of the id
    /// (`contoso.onmicrosoft.com`).
    #[serde(default)]
    pub domains: Vec<String>,
    /// The mail domain introspection answers with: `username` is `app@<mail_domain>`.
    pub mail_domain: String,
}

impl TenantSpec {
    /// A tenant with no domain names.
    pub fn new(tenant_id: impl Into<String>, mail_domain: impl Into<String>) -> TenantSpec {
        TenantSpec {
            tenant_id: tenant_id.into(),
            domains: Vec::new(),
            mail_domain: mail_domain.into(),
        }
    }

    /// Adds a domain name the token URL may use for this tenant.
    pub fn with_domain(mut self, domain: impl Into<String>) -> TenantSpec {
        self.domains.push(domain.into());
        self
    }
}

/// An app registration with one client secret and optionally a certificate credential.
/// `POST /_admin/clients` upserts it by `client_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSpec {
    /// The tenant's id or one of its domain names (stored as the id).
    pub tenant_id: String,
    /// The application (client) id, unique across tenants here.
    pub client_id: String,
    /// The secret's value.
    pub secret: String,
    /// The secret is past its expiry date (AADSTS7000222 when it is sent).
    #[serde(default)]
    pub secret_expired: bool,
    /// Application permissions granted with admin consent; they become the token's `roles`.
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
    /// `expires_in` of issued tokens; `exp` = now + this. 0 gives tokens that are already expired.
    #[serde(default = "default_lifetime")]
    pub lifetime_secs: u64,
    /// The token's `app_displayname`.
    #[serde(default = "default_display_name")]
    pub display_name: String,
    /// How the token endpoint treats this client.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// A PEM X.509 certificate (or several) whose RSA key verifies the client's
    /// `client_assertion`s (Microsoft's certificate credentials). With an empty `secret` the
    /// client has only the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
}

fn default_roles() -> Vec<String> {
    vec![ROLE_SMTP.to_owned(), ROLE_IMAP.to_owned()]
}

fn default_lifetime() -> u64 {
    3599
}

fn default_display_name() -> String {
    "mailgate test app".to_owned()
}

impl ClientSpec {
    /// A client with both mail roles, a 3599 s token lifetime and normal behaviour.
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> ClientSpec {
        ClientSpec {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            secret: secret.into(),
            secret_expired: false,
            roles: default_roles(),
            lifetime_secs: default_lifetime(),
            display_name: default_display_name(),
            behaviour: Behaviour::Normal,
            certificate_pem: None,
        }
    }

    /// Adds a certificate credential (PEM); the secret stays valid too.
    pub fn with_certificate(mut self, certificate_pem: impl Into<String>) -> ClientSpec {
        self.certificate_pem = Some(certificate_pem.into());
        self
    }
}

/// A change to a registered client (`PATCH /_admin/clients/{client_id}`); `None` keeps the value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_expired: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<Behaviour>,
    /// Replaces the certificate credential; an empty string removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
}

/// Per-client counters (`GET /_admin/clients/{client_id}/stats`). Counted by client id (a Google
/// service account's `client_email`) whether or not the client is registered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpStats {
    /// Requests to the token endpoint naming this client id, whatever their outcome.
    pub token_requests: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Introspections of this client's tokens answered `active: true`.
    pub introspections_active: u64,
    /// Introspections of this client's tokens answered `active: false`.
    pub introspections_rejected: u64,
}

// ---------------------------------------------------------------------------------------------
// The server

/// A running fake identity provider. Dropping it stops the server (hanging requests end too).
#[derive(Debug)]
pub struct FakeIdp {
    addr: SocketAddr,
    shutdown: Option<watch::Sender<bool>>,
}

impl FakeIdp {
    /// Starts the server on `listen` (port 0 picks a free port) in the current tokio runtime.
    ///
    /// `key_pem` is a PKCS#8 RSA private key (`-----BEGIN PRIVATE KEY-----`); `None` generates
    /// a 2048-bit key with `openssl genpkey` (ring cannot generate RSA keys), which takes a
    /// moment: tests should share one instance ([`FakeIdp::shared`]).
    pub async fn start(listen: SocketAddr, key_pem: Option<&Path>) -> anyhow::Result<FakeIdp> {
        let signer = match key_pem {
            Some(path) => Signer::from_pem_file(path)?,
            None => {
                let path = std::env::temp_dir().join(format!(
                    "mailgate-fake-idp-{}.pem",
                    uuid::Uuid::new_v4().simple()
                ));
                let generated = generate_key_pem(&path).await;
                let signer = generated.and_then(|()| Signer::from_pem_file(&path));
                // Best effort: the key is a throwaway test key either way.
                let _ = std::fs::remove_file(&path);
                signer?
            }
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("fake IdP: listen on {listen}"))?;
        let addr = listener.local_addr().context("fake IdP: local address")?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = Arc::new(AppState {
            signer,
            inner: Mutex::new(Inner::default()),
            shutdown: shutdown_rx.clone(),
        });
        let app = router(state);
        let mut stop = shutdown_rx;
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                // An error means the sender is gone, which also means: stop.
                let _ = stop.wait_for(|stopped| *stopped).await;
            });
            if let Err(e) = serve.await {
                tracing::error!("fake IdP on {addr} stopped: {e}");
            }
        });
        Ok(FakeIdp {
            addr,
            shutdown: Some(shutdown_tx),
        })
    }

    /// A process-wide instance on 127.0.0.1 with a generated key, running on its own thread so
    /// that it outlives each `#[tokio::test]` runtime. Started on first use.
    pub fn shared() -> &'static FakeIdp {
        static SHARED: OnceLock<FakeIdp> = OnceLock::new();
        SHARED.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("shared-fake-idp".to_owned())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = tx.send(Err(anyhow!("build a tokio runtime: {e}")));
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        match FakeIdp::start(SocketAddr::from(([127, 0, 0, 1], 0)), None).await {
                            Ok(idp) => {
                                let _ = tx.send(Ok(idp.addr));
                                // Serve for the rest of the process.
                                std::future::pending::<()>().await;
                                drop(idp);
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e));
                            }
                        }
                    });
                })
                .expect("spawn the shared fake IdP's thread");
            let addr = rx
                .recv()
                .expect("the shared fake IdP's thread ended before it started")
                .unwrap_or_else(|e| panic!("start the shared fake IdP: {e:#}"));
            FakeIdp {
                addr,
                shutdown: None,
            }
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// The token endpoint for `tenant` (an id or a domain name, as in Microsoft's URL).
    pub fn token_url(&self, tenant: &str) -> String {
        token_url(&self.url(), tenant)
    }

    /// Google's token endpoint (`http://127.0.0.1:PORT/google/token`), also the `aud` service
    /// account assertions must carry (the key file's `token_uri`).
    pub fn google_token_url(&self) -> String {
        format!("{}{}", self.url(), google::TOKEN_PATH)
    }

    /// An admin client for this server.
    pub fn admin(&self) -> IdpAdmin {
        IdpAdmin::new(self.url())
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        if let Some(shutdown) = &self.shutdown {
            let _ = shutdown.send(true);
        }
    }
}

fn token_url(base: &str, tenant: &str) -> String {
    format!(
        "{}/{}/oauth2/v2.0/token",
        base.trim_end_matches('/'),
        encode_path_segment(tenant)
    )
}

/// Writes a new 2048-bit RSA key (PKCS#8 PEM) to `path` with
/// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`.
pub async fn generate_key_pem(path: &Path) -> anyhow::Result<()> {
    let output = tokio::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(path)
        .output()
        .await
        .context("run openssl to generate the fake IdP's RSA key (is openssl installed?)")?;
    if !output.status.success() {
        bail!(
            "openssl genpkey failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The signing key and what is derived from it.
struct Signer {
    key: RsaKeyPair,
    /// DER `RSAPublicKey`, for verifying.
    public: Vec<u8>,
    /// `kid` and `x5t` of the header: base64url SHA-1 of the public key (a certificate thumbprint
    /// in real tokens).
    kid: String,
    rng: SystemRandom,
}

impl Signer {
    fn from_pem_file(path: &Path) -> anyhow::Result<Signer> {
        let der = PrivatePkcs8KeyDer::from_pem_file(path)
            .map_err(|e| anyhow!("read a PKCS#8 private key from {}: {e:?}", path.display()))?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| anyhow!("{} is not a usable RSA key: {e}", path.display()))?;
        let public = key.public_key().as_ref().to_vec();
        let thumbprint = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &public);
        let kid = URL_SAFE_NO_PAD.encode(thumbprint.as_ref());
        Ok(Signer {
            key,
            public,
            kid,
            rng: SystemRandom::new(),
        })
    }

    fn random(&self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        self.rng
            .fill(&mut bytes)
            .expect("the system's random generator failed");
        bytes
    }

    /// `header.claims.signature`, RS256.
    fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "RS256",
            "x5t": self.kid,
            "kid": self.kid,
        });
        let mut jwt = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &self.rng,
                jwt.as_bytes(),
                &mut sig,
            )
            .map_err(|_| anyhow!("RS256 signing failed"))?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(&sig));
        Ok(jwt)
    }

    /// The claims of a token this signer issued, or `None` when it is malformed or its signature
    /// does not verify.
    fn verify(&self, token: &str) -> Option<Claims> {
        let (signed, sig) = token.rsplit_once('.')?;
        let (header, payload) = signed.split_once('.')?;
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")?.as_str()? != "RS256" {
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.public)
            .verify(signed.as_bytes(), &sig)
            .ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// The claims of an Entra v1.0 app-only access token for Exchange Online, in Entra's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    aud: String,
    iss: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    aio: String,
    app_displayname: String,
    appid: String,
    appidacr: String,
    idp: String,
    idtyp: String,
    oid: String,
    rh: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
    sid: String,
    sub: String,
    tid: String,
    uti: String,
    ver: String,
    wids: Vec<String>,
    xms_ftd: String,
    xms_idrel: String,
    xms_rd: String,
    xms_tdbr: String,
}

/// The `appid` of a token's payload without checking anything (to attribute rejections).
fn claimed_appid(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let value: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some(value.get("appid")?.as_str()?.to_owned())
}

struct AppState {
    signer: Signer,
    inner: Mutex<Inner>,
    shutdown: watch::Receiver<bool>,
}

impl AppState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent-enough test state; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct Tenant {
    id: String,
    domains: Vec<String>,
    mail_domain: String,
}

struct Client {
    spec: ClientSpec,
    /// The service principal's object id (`oid`, `sub`).
    oid: String,
    /// `uti` of tokens issued since the last revocation.
    issued: Vec<String>,
    /// Parsed from `spec.certificate_pem`.
    certificates: Vec<jose::Certificate>,
    /// `jti` of client assertions accepted so far (replays are refused).
    used_jti: HashSet<String>,
}

#[derive(Default)]
struct Inner {
    /// By lower-case tenant id.
    tenants: HashMap<String, Tenant>,
    clients: HashMap<String, Client>,
    stats: HashMap<String, IdpStats>,
    /// `uti` of revoked tokens.
    revoked: HashSet<String>,
    /// Google service accounts by `client_email`.
    google_accounts: HashMap<String, google::ServiceAccount>,
    /// Google access tokens issued, by token.
    google_tokens: HashMap<String, google::GoogleToken>,
}

impl Inner {
    /// The tenant named by id or domain (case-insensitive).
    fn tenant(&self, name: &str) -> Option<&Tenant> {
        let lower = name.to_ascii_lowercase();
        self.tenants.get(&lower).or_else(|| {
            self.tenants
                .values()
                .find(|t| t.domains.iter().any(|d| d.eq_ignore_ascii_case(name)))
        })
    }

    fn stats(&mut self, client_id: &str) -> &mut IdpStats {
        self.stats.entry(client_id.to_owned()).or_default()
    }
}

/// Extra text for the request's log line (never secrets or tokens).
#[derive(Clone)]
struct LogNote(String);

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token_endpoint))
        .route(google::TOKEN_PATH, post(google::token_endpoint))
        .route("/introspect/{service}", post(introspect))
        .route(
            "/_admin/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/_admin/tenants", post(admin_tenant))
        .route("/_admin/clients", post(admin_register_client))
        .route("/_admin/clients/{client_id}", patch(admin_patch_client))
        .route("/_admin/clients/{client_id}/revoke", post(admin_revoke))
        .route("/_admin/clients/{client_id}/stats", get(admin_stats))
        .route(
            "/_admin/google/service-accounts",
            post(admin_register_google_account),
        )
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let note = response
        .extensions()
        .get::<LogNote>()
        .map(|n| n.0.as_str())
        .unwrap_or("");
    tracing::info!(
        "{method} {path} -> {} in {} ms{}{note}",
        response.status().as_u16(),
        started.elapsed().as_millis(),
        if note.is_empty() { "" } else { ": " },
    );
    response
}

fn with_note(mut response: Response, note: impl Into<String>) -> Response {
    response.extensions_mut().insert(LogNote(note.into()));
    response
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

/// A Microsoft error answer.
struct AadError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    text: String,
}

impl AadError {
    fn new(
        status: StatusCode,
        error: &'static str,
        code: u32,
        text: impl Into<String>,
    ) -> AadError {
        AadError {
            status,
            error,
            code,
            text: text.into(),
        }
    }

    fn body_required(parameter: &str) -> AadError {
        AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{parameter}'."),
        )
    }

    fn temporarily_unavailable() -> AadError {
        AadError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        )
    }

    fn into_response(self, correlation_id: &str) -> Response {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let timestamp = aad_timestamp();
        let body = AadErrorBody {
            error: self.error,
            error_description: format!(
                "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
                self.code, self.text
            ),
            error_codes: [self.code],
            timestamp: &timestamp,
            trace_id: &trace_id,
            correlation_id,
            error_uri: format!("https://login.microsoftonline.com/error?code={}", self.code),
        };
        let mut response = json_response(self.status, &body);
        if let Ok(value) = HeaderValue::from_str(&trace_id) {
            response.headers_mut().insert("x-ms-request-id", value);
        }
        with_note(response, format!("{} AADSTS{}", self.error, self.code))
    }
}

/// Microsoft's error body, fields in Microsoft's order.
#[derive(Serialize)]
struct AadErrorBody<'a> {
    error: &'a str,
    error_description: String,
    error_codes: [u32; 1],
    timestamp: &'a str,
    trace_id: &'a str,
    correlation_id: &'a str,
    error_uri: String,
}

/// The success body, fields in Microsoft's order.
#[derive(Serialize)]
struct TokenBody<'a> {
    token_type: &'a str,
    expires_in: u64,
    ext_expires_in: u64,
    access_token: &'a str,
}

/// `2026-11-29 16:00:00Z`, the form of Microsoft's `timestamp`.
fn aad_timestamp() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01 00:00:00Z".to_owned())
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let text = match serde_json::to_string(body) {
        Ok(text) => text,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("serialise the answer: {e}"),
            )
                .into_response();
        }
    };
    let mut response = (status, text).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// What the token endpoint decided under the state lock.
enum Decision {
    Fail(AadError),
    Hang,
    Garbage,
    Issue(Box<Claims>, u64),
}

/// `http://<Host header><path>`: the URL the client sent the request to, as it saw it.
fn request_url(headers: &HeaderMap, path: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    format!("http://{host}{path}")
}

/// The parameters of a token request that [`decide`] looks at.
struct TokenRequest<'a> {
    tenant: &'a str,
    grant_type: Option<&'a str>,
    client_id: Option<&'a str>,
    secret: Option<&'a str>,
    assertion_type: Option<&'a str>,
    assertion: Option<&'a str>,
    /// The token URL as the client saw it (a client assertion's `aud`).
    url: String,
}

async fn token_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(tenant): UrlPath<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Microsoft echoes a client-request-id as the correlation id.
    let correlation_id = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
        .to_string();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let param = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let basic = basic_credentials(&headers);
    let client_id = match &basic {
        Some((id, _)) => Some(id.as_str()).filter(|id| !id.is_empty()),
        None => param("client_id"),
    };
    let secret = match &basic {
        Some((_, secret)) => Some(secret.as_str()).filter(|s| !s.is_empty()),
        None => param("client_secret"),
    };

    let request = TokenRequest {
        tenant: &tenant,
        grant_type: param("grant_type"),
        client_id,
        secret,
        assertion_type: param("client_assertion_type"),
        assertion: param("client_assertion"),
        url: request_url(&headers, uri.path()),
    };
    let decision = decide(&state, &request, param("scope"));
    let note_client = client_id.unwrap_or("-").to_owned();
    match decision {
        Decision::Fail(error) => {
            let response = error.into_response(&correlation_id);
            let note = response
                .extensions()
                .get::<LogNote>()
                .map(|n| n.0.clone())
                .unwrap_or_default();
            with_note(response, format!("client {note_client}: {note}"))
        }
        Decision::Hang => {
            tracing::info!(
                "token request for client {note_client}: hanging for {} s",
                HANG.as_secs()
            );
            let mut shutdown = state.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(HANG) => {}
                _ = shutdown.wait_for(|stopped| *stopped) => {}
            }
            let response = AadError::temporarily_unavailable().into_response(&correlation_id);
            with_note(
                response,
                format!("client {note_client}: hung, then temporarily_unavailable"),
            )
        }
        Decision::Garbage => {
            let html = "<!DOCTYPE html>\r\n<html><head><title>Sign in to your account</title></head>\
                        <body><p>Please wait while we redirect you.</p></body></html>\r\n";
            let mut response = (StatusCode::OK, html).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            with_note(response, format!("client {note_client}: garbage body"))
        }
        Decision::Issue(claims, lifetime) => match state.signer.sign(&claims) {
            Ok(jwt) => {
                let body = TokenBody {
                    token_type: "Bearer",
                    expires_in: lifetime,
                    ext_expires_in: lifetime,
                    access_token: &jwt,
                };
                let note = format!(
                    "client {note_client}: issued token uti {} ({} s)",
                    claims.uti, lifetime
                );
                with_note(json_response(StatusCode::OK, &body), note)
            }
            Err(e) => {
                tracing::error!("signing a token failed: {e:#}");
                AadError::temporarily_unavailable().into_response(&correlation_id)
            }
        },
    }
}

/// The checks of Microsoft's token endpoint, in order; counts the request.
fn decide(state: &AppState, request: &TokenRequest<'_>, scope: Option<&str>) -> Decision {
    use Decision::Fail;
    let TokenRequest {
        tenant: tenant_name,
        grant_type,
        client_id,
        secret,
        ..
    } = *request;
    let mut inner = state.lock();
    if let Some(id) = client_id {
        inner.stats(id).token_requests += 1;
    }
    if let Some(client) = client_id.and_then(|id| inner.clients.get(id)) {
        match client.spec.behaviour {
            Behaviour::Normal => {}
            Behaviour::Unavailable => return Fail(AadError::temporarily_unavailable()),
            Behaviour::Hang => return Decision::Hang,
            Behaviour::Garbage => return Decision::Garbage,
        }
    }

    if ["common", "consumers", "organizations"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tenant_name))
    {
        return Fail(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            9001023,
            "The grant type is not supported over the /common or /consumers endpoints. \
             Please use the /organizations or tenant-specific endpoint.",
        ));
    }
    let Some(tenant) = inner.tenant(tenant_name) else {
        return Fail(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant_name}' not found. Check to make sure you have the correct tenant ID \
                 and are signing into the correct cloud. Check with your subscription administrator, \
                 this may happen if there are no active subscriptions for the tenant."
            ),
        ));
    };
    let tenant_id = tenant.id.clone();
    // Microsoft names the directory by its display name; the first domain stands in for it.
    let tenant_label = tenant.domains.first().unwrap_or(&tenant.id).clone();

    match grant_type {
        None => return Fail(AadError::body_required("grant_type")),
        Some("client_credentials") => {}
        Some(other) => {
            return Fail(AadError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{other}'."),
            ));
        }
    }
    let Some(client_id) = client_id else {
        return Fail(AadError::body_required("client_id"));
    };
    let Some(client) = inner
        .clients
        .get(client_id)
        .filter(|c| c.spec.tenant_id == tenant_id)
    else {
        return Fail(AadError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory \
                 '{tenant_label}'. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You may have \
                 sent your authentication request to the wrong tenant."
            ),
        ));
    };
    let now = unix_now();
    // A client assertion, when one is sent, is the credential (a client_secret beside it is
    // ignored).
    if request.assertion_type.is_some() || request.assertion.is_some() {
        if request.assertion_type != Some(assertion::JWT_BEARER) {
            return Fail(AadError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                90011,
                "Unexpected client assertion type.",
            ));
        }
        let Some(jwt) = request.assertion else {
            return Fail(AadError::body_required("client_assertion"));
        };
        let jti = match assertion::verify(
            jwt,
            client_id,
            &client.certificates,
            &client.used_jti,
            &request.url,
            now,
        ) {
            Ok(jti) => jti,
            Err(error) => return Fail(error),
        };
        if let Some(client) = inner.clients.get_mut(client_id) {
            client.used_jti.insert(jti);
        }
        return issue(state, &mut inner, tenant_id, client_id, scope, now);
    }
    let Some(secret) = secret else {
        return Fail(AadError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    if !constant_time_eq(secret.as_bytes(), client.spec.secret.as_bytes()) {
        return Fail(AadError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the \
                 client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ));
    }
    if client.spec.secret_expired {
        return Fail(AadError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{client_id}' are expired. Visit the Azure \
                 portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider \
                 using certificate credentials for added security: https://aka.ms/certCreds."
            ),
        ));
    }
    issue(state, &mut inner, tenant_id, client_id, scope, now)
}

/// The scope check and the token, once the client is authenticated.
fn issue(
    state: &AppState,
    inner: &mut Inner,
    tenant_id: String,
    client_id: &str,
    scope: Option<&str>,
    now: i64,
) -> Decision {
    use Decision::Fail;
    let Some(client) = inner.clients.get(client_id) else {
        return Fail(AadError::temporarily_unavailable());
    };
    let aud = match scope.map(str::trim) {
        None | Some("") => {
            return Fail(AadError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70011,
                "The provided request must include a 'scope' input parameter.",
            ));
        }
        Some(scope) => match scope_resource(scope) {
            Some(aud) => aud,
            None => {
                return Fail(AadError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    70011,
                    format!(
                        "The provided value for the input parameter 'scope' is not valid. The scope \
                         {scope} is not valid."
                    ),
                ));
            }
        },
    };

    let lifetime = client.spec.lifetime_secs;
    let issuer = format!("https://sts.windows.net/{tenant_id}/");
    let signer = &state.signer;
    let claims = Claims {
        aud: aud.to_owned(),
        iss: issuer.clone(),
        iat: now - BACKDATE_SECS,
        nbf: now - BACKDATE_SECS,
        exp: now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX / 2)),
        aio: format!(
            "{}==",
            STANDARD.encode(signer.random(70)).trim_end_matches('=')
        ),
        app_displayname: client.spec.display_name.clone(),
        appid: client_id.to_owned(),
        appidacr: "1".to_owned(),
        idp: issuer,
        idtyp: "app".to_owned(),
        oid: client.oid.clone(),
        rh: format!("0.A{}.", URL_SAFE_NO_PAD.encode(signer.random(48))),
        roles: client.spec.roles.clone(),
        sid: uuid::Uuid::new_v4().to_string(),
        sub: client.oid.clone(),
        tid: tenant_id,
        uti: URL_SAFE_NO_PAD.encode(signer.random(16)),
        ver: "1.0".to_owned(),
        wids: vec![APP_WIDS.to_owned()],
        xms_ftd: format!(
            "{}-ZXVyb3Blbm9ydGgtZHNtcw",
            URL_SAFE_NO_PAD.encode(signer.random(30))
        ),
        xms_idrel: "7 18".to_owned(),
        xms_rd: format!("0.42Ll{}", URL_SAFE_NO_PAD.encode(signer.random(60))),
        xms_tdbr: "EU".to_owned(),
    };
    let uti = claims.uti.clone();
    if let Some(client) = inner.clients.get_mut(client_id) {
        client.issued.push(uti);
    }
    inner.stats(client_id).tokens_issued += 1;
    Decision::Issue(Box::new(claims), lifetime)
}

/// The `aud` for a client-credentials scope (`<resource>/.default`), if the resource is
/// Exchange Online.
fn scope_resource(scope: &str) -> Option<&'static str> {
    let resource = scope.strip_suffix("/.default")?;
    let resource = resource.strip_suffix('/').unwrap_or(resource);
    RESOURCES
        .into_iter()
        .find(|r| r.eq_ignore_ascii_case(resource))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Client id and secret from `Authorization: Basic`, each form-urlencoded as RFC 6749 §2.3.1
/// asks. A malformed header counts as absent.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space; bad escapes stay as they
/// are).
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Introspection (for Dovecot)

async fn introspect(
    State(state): State<Arc<AppState>>,
    UrlPath(service): UrlPath<String>,
    body: Bytes,
) -> Response {
    let role = match service.as_str() {
        "imap" => ROLE_IMAP,
        "smtp" => ROLE_SMTP,
        _ => {
            return with_note(
                StatusCode::NOT_FOUND.into_response(),
                "no such introspection service",
            );
        }
    };
    let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return with_note(
            json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "invalid_request"}),
            ),
            "body is not a form",
        );
    };
    let Some(token) = form
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
    else {
        return with_note(
            json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "invalid_request"}),
            ),
            "no token parameter",
        );
    };

    if let Some((verdict, client_email)) = google::introspect(&state, token) {
        return introspection_answer(&service, "service account", &client_email, verdict);
    }

    let verified = state.signer.verify(token);
    let now = unix_now();
    let mut inner = state.lock();
    let verdict: Result<String, String> = match &verified {
        None => Err("malformed token or bad signature".to_owned()),
        Some(claims) => {
            if claims.exp <= now {
                Err(format!("expired {} s ago", now - claims.exp))
            } else if claims.nbf > now {
                Err("not yet valid".to_owned())
            } else if !RESOURCES.contains(&claims.aud.as_str()) {
                Err(format!("audience {}", claims.aud))
            } else if inner.revoked.contains(&claims.uti) {
                Err("revoked".to_owned())
            } else if !claims.roles.iter().any(|r| r == role) {
                Err(format!("no role {role}"))
            } else {
                match inner.tenants.get(&claims.tid.to_ascii_lowercase()) {
                    Some(tenant) => Ok(format!("app@{}", tenant.mail_domain)),
                    None => Err(format!("tenant {} no longer registered", claims.tid)),
                }
            }
        }
    };
    let appid = verified.map(|c| c.appid).or_else(|| claimed_appid(token));
    if let Some(appid) = &appid {
        let stats = inner.stats(appid);
        match verdict {
            Ok(_) => stats.introspections_active += 1,
            Err(_) => stats.introspections_rejected += 1,
        }
    }
    drop(inner);

    let who = appid.as_deref().unwrap_or("-");
    introspection_answer(&service, "client", who, verdict)
}

/// The introspection answer for a verdict on a token of `kind` `who`.
fn introspection_answer(
    service: &str,
    kind: &str,
    who: &str,
    verdict: Result<String, String>,
) -> Response {
    match verdict {
        Ok(username) => with_note(
            json_response(
                StatusCode::OK,
                &serde_json::json!({"active": true, "username": username}),
            ),
            format!("{service} token of {kind} {who}: active as {username}"),
        ),
        Err(reason) => with_note(
            json_response(StatusCode::OK, &serde_json::json!({"active": false})),
            format!("{service} token of {kind} {who}: inactive ({reason})"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Admin endpoints

fn admin_error(status: StatusCode, message: String) -> Response {
    with_note(
        json_response(status, &serde_json::json!({"error": message.clone()})),
        message,
    )
}

async fn admin_tenant(
    State(state): State<Arc<AppState>>,
    axum::Json(spec): axum::Json<TenantSpec>,
) -> Response {
    if spec.tenant_id.is_empty() || spec.tenant_id.contains('/') {
        return admin_error(
            StatusCode::BAD_REQUEST,
            "tenant_id must be non-empty, without '/'".to_owned(),
        );
    }
    let key = spec.tenant_id.to_ascii_lowercase();
    let mut inner = state.lock();
    // A domain belongs to one tenant: the newest registration wins.
    for tenant in inner.tenants.values_mut() {
        tenant
            .domains
            .retain(|d| !spec.domains.iter().any(|n| n.eq_ignore_ascii_case(d)));
    }
    inner.tenants.insert(
        key,
        Tenant {
            id: spec.tenant_id.clone(),
            domains: spec.domains.clone(),
            mail_domain: spec.mail_domain.clone(),
        },
    );
    drop(inner);
    with_note(
        json_response(
            StatusCode::OK,
            &serde_json::json!({"tenant_id": spec.tenant_id}),
        ),
        format!(
            "tenant {} (mail domain {})",
            spec.tenant_id, spec.mail_domain
        ),
    )
}

async fn admin_register_client(
    State(state): State<Arc<AppState>>,
    axum::Json(mut spec): axum::Json<ClientSpec>,
) -> Response {
    if spec.client_id.is_empty() {
        return admin_error(
            StatusCode::BAD_REQUEST,
            "client_id must not be empty".to_owned(),
        );
    }
    let mut inner = state.lock();
    let Some(tenant_id) = inner.tenant(&spec.tenant_id).map(|t| t.id.clone()) else {
        return admin_error(
            StatusCode::BAD_REQUEST,
            format!("unknown tenant '{}': register it first", spec.tenant_id),
        );
    };
    let certificates = match parse_certificates(spec.certificate_pem.as_deref()) {
        Ok(certificates) => certificates,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    };
    spec.tenant_id = tenant_id;
    let client_id = spec.client_id.clone();
    let tenant_id = spec.tenant_id.clone();
    match inner.clients.get_mut(&client_id) {
        Some(client) => {
            client.spec = spec;
            client.certificates = certificates;
        }
        None => {
            let oid = uuid::Uuid::new_v4().to_string();
            inner.clients.insert(
                client_id.clone(),
                Client {
                    spec,
                    oid,
                    issued: Vec::new(),
                    certificates,
                    used_jti: HashSet::new(),
                },
            );
        }
    }
    drop(inner);
    with_note(
        json_response(
            StatusCode::OK,
            &serde_json::json!({"client_id": client_id, "tenant_id": tenant_id}),
        ),
        format!("client {client_id} in tenant {tenant_id}"),
    )
}

/// The certificates of a `certificate_pem` (none for `None` or an empty string).
fn parse_certificates(pem: Option<&str>) -> anyhow::Result<Vec<jose::Certificate>> {
    match pem.filter(|p| !p.trim().is_empty()) {
        None => Ok(Vec::new()),
        Some(pem) => jose::Certificate::parse_pem_bundle(pem),
    }
}

async fn admin_patch_client(
    State(state): State<Arc<AppState>>,
    UrlPath(client_id): UrlPath<String>,
    axum::Json(change): axum::Json<ClientPatch>,
) -> Response {
    let certificates = match change
        .certificate_pem
        .as_deref()
        .map(|pem| parse_certificates(Some(pem)))
        .transpose()
    {
        Ok(certificates) => certificates,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    };
    let mut inner = state.lock();
    let tenant_id = match &change.tenant_id {
        Some(name) => match inner.tenant(name) {
            Some(tenant) => Some(tenant.id.clone()),
            None => {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown tenant '{name}': register it first"),
                );
            }
        },
        None => None,
    };
    let Some(client) = inner.clients.get_mut(&client_id) else {
        return admin_error(StatusCode::NOT_FOUND, format!("no client '{client_id}'"));
    };
    let spec = &mut client.spec;
    if let Some(v) = tenant_id {
        spec.tenant_id = v;
    }
    if let Some(v) = change.secret {
        spec.secret = v;
    }
    if let Some(v) = change.secret_expired {
        spec.secret_expired = v;
    }
    if let Some(v) = change.roles {
        spec.roles = v;
    }
    if let Some(v) = change.lifetime_secs {
        spec.lifetime_secs = v;
    }
    if let Some(v) = change.display_name {
        spec.display_name = v;
    }
    if let Some(v) = change.behaviour {
        spec.behaviour = v;
    }
    if let (Some(pem), Some(certificates)) = (change.certificate_pem, certificates) {
        spec.certificate_pem = Some(pem).filter(|p| !p.trim().is_empty());
        client.certificates = certificates;
    }
    let behaviour = client.spec.behaviour;
    drop(inner);
    with_note(
        json_response(StatusCode::OK, &serde_json::json!({"client_id": client_id})),
        format!("client {client_id} changed (behaviour {behaviour:?})"),
    )
}

async fn admin_revoke(
    State(state): State<Arc<AppState>>,
    UrlPath(client_id): UrlPath<String>,
) -> Response {
    let mut inner = state.lock();
    let count = if let Some(client) = inner.clients.get_mut(&client_id) {
        let issued = std::mem::take(&mut client.issued);
        let count = issued.len();
        inner.revoked.extend(issued);
        count
    } else if inner.google_accounts.contains_key(&client_id) {
        let mut count = 0;
        for token in inner.google_tokens.values_mut() {
            if token.client_email == client_id && !token.revoked {
                token.revoked = true;
                count += 1;
            }
        }
        count
    } else {
        return admin_error(StatusCode::NOT_FOUND, format!("no client '{client_id}'"));
    };
    drop(inner);
    with_note(
        json_response(
            StatusCode::OK,
            &serde_json::json!({"revoked_tokens": count}),
        ),
        format!("client {client_id}: {count} token(s) revoked"),
    )
}

async fn admin_register_google_account(
    State(state): State<Arc<AppState>>,
    axum::Json(spec): axum::Json<GoogleServiceAccountSpec>,
) -> Response {
    if spec.client_email.is_empty() || spec.private_key_id.is_empty() {
        return admin_error(
            StatusCode::BAD_REQUEST,
            "client_email and private_key_id must not be empty".to_owned(),
        );
    }
    let rsa_public_key = match jose::rsa_public_key_from_pem(&spec.public_key_pem) {
        Ok(key) => key,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    };
    let client_email = spec.client_email.clone();
    let note = format!(
        "google service account {client_email} (key {}, mail domain {})",
        spec.private_key_id, spec.mail_domain
    );
    state.lock().google_accounts.insert(
        client_email.clone(),
        google::ServiceAccount {
            spec,
            rsa_public_key,
        },
    );
    with_note(
        json_response(
            StatusCode::OK,
            &serde_json::json!({"client_email": client_email}),
        ),
        note,
    )
}

async fn admin_stats(
    State(state): State<Arc<AppState>>,
    UrlPath(client_id): UrlPath<String>,
) -> Response {
    let stats = state
        .lock()
        .stats
        .get(&client_id)
        .copied()
        .unwrap_or_default();
    match serde_json::to_value(stats) {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => admin_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("serialise stats: {e}"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Admin client

/// A client for the admin endpoints of a [`FakeIdp`] (in this process or another).
#[derive(Debug, Clone)]
pub struct IdpAdmin {
    base_url: String,
    http: reqwest::Client,
}

impl IdpAdmin {
    /// An admin client for the IdP at `base_url` (`http://127.0.0.1:PORT`).
    pub fn new(base_url: impl Into<String>) -> IdpAdmin {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build an HTTP client for the fake IdP's admin endpoints");
        IdpAdmin { base_url, http }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The token endpoint for `tenant` (an id or a domain name).
    pub fn token_url(&self, tenant: &str) -> String {
        token_url(&self.base_url, tenant)
    }

    /// Registers a tenant, or replaces the one with the same id.
    pub async fn register_tenant(&self, spec: TenantSpec) -> anyhow::Result<()> {
        self.send(
            self.http
                .post(format!("{}/_admin/tenants", self.base_url))
                .json(&spec),
        )
        .await?;
        Ok(())
    }

    /// Registers a client, or replaces the one with the same client id (its tokens stay valid).
    pub async fn register_client(&self, spec: ClientSpec) -> anyhow::Result<()> {
        self.send(
            self.http
                .post(format!("{}/_admin/clients", self.base_url))
                .json(&spec),
        )
        .await?;
        Ok(())
    }

    /// Google's token endpoint (`http://127.0.0.1:PORT/google/token`).
    pub fn google_token_url(&self) -> String {
        format!("{}{}", self.base_url, google::TOKEN_PATH)
    }

    /// Registers a Google service account, or replaces the one with the same `client_email`
    /// (and its key; tokens already issued stay valid). Its counters are
    /// [`IdpAdmin::stats`]`(client_email)`; [`IdpAdmin::revoke`]`(client_email)` revokes its
    /// tokens.
    pub async fn register_google_service_account(
        &self,
        spec: GoogleServiceAccountSpec,
    ) -> anyhow::Result<()> {
        self.send(
            self.http
                .post(format!("{}/_admin/google/service-accounts", self.base_url))
                .json(&spec),
        )
        .await?;
        Ok(())
    }

    /// Changes some fields of a registered client.
    pub async fn update_client(&self, client_id: &str, change: ClientPatch) -> anyhow::Result<()> {
        let url = format!(
            "{}/_admin/clients/{}",
            self.base_url,
            encode_path_segment(client_id)
        );
        self.send(self.http.patch(url).json(&change)).await?;
        Ok(())
    }

    /// Makes every token issued to the client (or Google service account) so far inactive.
    pub async fn revoke(&self, client_id: &str) -> anyhow::Result<()> {
        let url = format!(
            "{}/_admin/clients/{}/revoke",
            self.base_url,
            encode_path_segment(client_id)
        );
        self.send(self.http.post(url)).await?;
        Ok(())
    }

    /// The client's counters (zeros for a client id never seen).
    pub async fn stats(&self, client_id: &str) -> anyhow::Result<IdpStats> {
        let url = format!(
            "{}/_admin/clients/{}/stats",
            self.base_url,
            encode_path_segment(client_id)
        );
        let body = self.send(self.http.get(url)).await?;
        serde_json::from_slice(&body).context("fake IdP: parse the stats")
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Bytes> {
        let response = request
            .send()
            .await
            .with_context(|| format!("fake IdP at {}", self.base_url))?;
        let status = response.status();
        let url = response.url().path().to_owned();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("fake IdP: read the answer to {url}"))?;
        if !status.is_success() {
            bail!(
                "fake IdP: {url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod credential_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode as Status;
    use serde_json::Value;

    const SCOPE: &str = "https://outlook.office365.com/.default";

    pub(super) fn unique(prefix: &str) -> String {
        format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
    }

    pub(super) fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client")
    }

    /// A fresh tenant (GUID id, one domain, mail domain example.test) and client in the shared IdP.
    struct App {
        admin: IdpAdmin,
        tenant: String,
        domain: String,
        client: String,
        secret: String,
    }

    async fn new_app(change: impl FnOnce(&mut ClientSpec)) -> App {
        let idp = FakeIdp::shared();
        let admin = idp.admin();
        let tenant = uuid::Uuid::new_v4().to_string();
        let domain = format!("{}.onmicrosoft.com", unique("contoso"));
        admin
            .register_tenant(TenantSpec::new(&tenant, "example.test").with_domain(&domain))
            .await
            .expect("register the tenant");
        let client = uuid::Uuid::new_v4().to_string();
        let secret = format!("{}~{}", unique("Q8Q"), "aB.cD_eF-gH");
        let mut spec = ClientSpec::new(&tenant, &client, &secret);
        change(&mut spec);
        admin
            .register_client(spec)
            .await
            .expect("register the client");
        App {
            admin,
            tenant,
            domain,
            client,
            secret,
        }
    }

    impl App {
        fn form<'a>(&'a self, scope: &'a str) -> Vec<(&'a str, &'a str)> {
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &self.client),
                ("client_secret", &self.secret),
                ("scope", scope),
            ]
        }
    }

    async fn post_token(tenant: &str, form: &[(&str, &str)]) -> (Status, HeaderMap, String) {
        let response = http()
            .post(FakeIdp::shared().token_url(tenant))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).expect("encode the form"))
            .send()
            .await
            .expect("the token endpoint answers");
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.expect("a body"))
    }

    async fn get_token(app: &App) -> String {
        let (status, _, body) = post_token(&app.tenant, &app.form(SCOPE)).await;
        assert_eq!(status, Status::OK, "{body}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        body["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned()
    }

    pub(super) async fn introspect(service: &str, token: &str) -> Value {
        // Dovecot's exact shape: lower-case hex escapes, empty client credentials.
        let encoded = token.replace('.', "%2e");
        let response = http()
            .post(format!("{}/introspect/{service}", FakeIdp::shared().url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={encoded}&client_id=&client_secret="))
            .send()
            .await
            .expect("the introspection endpoint answers");
        assert_eq!(response.status(), Status::OK);
        response.json().await.expect("JSON")
    }

    pub(super) fn decode_part(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    }

    const KEYS_IN_MICROSOFTS_ORDER: [&str; 7] = [
        "\"error\":",
        "\"error_description\":",
        "\"error_codes\":",
        "\"timestamp\":",
        "\"trace_id\":",
        "\"correlation_id\":",
        "\"error_uri\":",
    ];

    #[track_caller]
    fn assert_in_order(text: &str, keys: &[&str]) {
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| text.find(k).unwrap_or_else(|| panic!("no {k} in {text}")))
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "keys not in Microsoft's order: {text}"
        );
    }

    /// Checks Microsoft's error shape and returns the body.
    #[track_caller]
    pub(super) fn assert_aad_error(
        status: Status,
        body: &str,
        want_status: u16,
        want_error: &str,
        want_code: u64,
    ) -> Value {
        assert_eq!(status.as_u16(), want_status, "{body}");
        assert_in_order(body, &KEYS_IN_MICROSOFTS_ORDER);
        let body: Value = serde_json::from_str(body).expect("an error body in JSON");
        assert_eq!(body["error"], want_error, "{body}");
        assert_eq!(
            body["error_codes"],
            serde_json::json!([want_code]),
            "{body}"
        );
        let trace_id = body["trace_id"].as_str().expect("trace_id");
        let correlation_id = body["correlation_id"].as_str().expect("correlation_id");
        let timestamp = body["timestamp"].as_str().expect("timestamp");
        assert!(uuid::Uuid::parse_str(trace_id).is_ok(), "{trace_id}");
        assert!(
            uuid::Uuid::parse_str(correlation_id).is_ok(),
            "{correlation_id}"
        );
        assert_eq!(timestamp.len(), "2026-11-29 16:00:00Z".len(), "{timestamp}");
        assert!(
            timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b' ',
            "{timestamp}"
        );
        let description = body["error_description"]
            .as_str()
            .expect("error_description");
        assert!(
            description.starts_with(&format!("AADSTS{want_code}: ")),
            "{description}"
        );
        assert!(
            description.ends_with(&format!(
                "\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
            )),
            "{description}"
        );
        assert_eq!(
            body["error_uri"],
            format!("https://login.microsoftonline.com/error?code={want_code}")
        );
        body
    }

    #[tokio::test]
    async fn issued_tokens_are_real_size_rs256_jwts_shaped_like_entra_app_tokens() {
        let app = new_app(|_| {}).await;
        let (status, headers, body) = post_token(&app.tenant, &app.form(SCOPE)).await;
        assert_eq!(status, Status::OK, "{body}");
        assert_eq!(headers["content-type"], "application/json; charset=utf-8");
        assert_in_order(
            &body,
            &[
                "\"token_type\":",
                "\"expires_in\":",
                "\"ext_expires_in\":",
                "\"access_token\":",
            ],
        );
        let body: Value = serde_json::from_str(&body).expect("JSON");
        let keys: Vec<&str> = body
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 4, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);
        assert_eq!(body["ext_expires_in"], 3599);
        let token = body["access_token"].as_str().expect("access_token");

        assert!(
            (1500..=2500).contains(&token.len()),
            "token is {} bytes",
            token.len()
        );
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = decode_part(parts[0]);
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["alg"], "RS256");
        assert!(header.get("nonce").is_none());
        assert_eq!(header["kid"], header["x5t"]);
        assert_eq!(header["kid"].as_str().expect("kid").len(), 27);

        let claims = decode_part(parts[1]);
        let now = unix_now();
        assert_eq!(claims["aud"], "https://outlook.office365.com");
        assert_eq!(
            claims["iss"],
            format!("https://sts.windows.net/{}/", app.tenant)
        );
        assert_eq!(claims["idp"], claims["iss"]);
        assert_eq!(claims["tid"], app.tenant);
        assert_eq!(claims["appid"], app.client);
        assert_eq!(claims["appidacr"], "1");
        assert_eq!(claims["idtyp"], "app");
        assert_eq!(claims["ver"], "1.0");
        assert_eq!(claims["app_displayname"], "mailgate test app");
        assert_eq!(claims["roles"], serde_json::json!([ROLE_SMTP, ROLE_IMAP]));
        assert_eq!(claims["wids"], serde_json::json!([APP_WIDS]));
        assert_eq!(claims["sub"], claims["oid"]);
        assert!(
            claims.get("scp").is_none(),
            "app tokens carry roles, not scp"
        );
        let exp = claims["exp"].as_i64().expect("exp");
        assert!(
            (now + 3599 - 5..=now + 3599).contains(&exp),
            "exp {exp}, now {now}"
        );
        assert!(claims["iat"].as_i64().expect("iat") < now);
        for claim in [
            "aio",
            "rh",
            "sid",
            "uti",
            "xms_ftd",
            "xms_idrel",
            "xms_rd",
            "xms_tdbr",
        ] {
            assert!(
                claims[claim].as_str().is_some_and(|v| !v.is_empty()),
                "{claim} in {claims}"
            );
        }
        let signature = URL_SAFE_NO_PAD
            .decode(parts[2])
            .expect("base64url signature");
        assert_eq!(signature.len(), 256, "a 2048-bit RSA signature");
    }

    #[tokio::test]
    async fn the_audience_follows_the_scope_and_the_tenant_may_be_a_domain() {
        let app = new_app(|spec| spec.lifetime_secs = 600).await;
        let (status, _, body) = post_token(
            &app.domain,
            &app.form("https://outlook.office.com/.default"),
        )
        .await;
        assert_eq!(status, Status::OK, "{body}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["expires_in"], 600);
        let token = body["access_token"].as_str().expect("access_token");
        let claims = decode_part(token.split('.').nth(1).expect("claims"));
        assert_eq!(claims["aud"], "https://outlook.office.com");
        assert_eq!(claims["tid"], app.tenant);
    }

    #[tokio::test]
    async fn each_error_has_microsofts_status_code_and_body() {
        let app = new_app(|_| {}).await;
        let expired = new_app(|spec| spec.secret_expired = true).await;
        let other = new_app(|_| {}).await;
        let base = |a: &App| -> Vec<(String, String)> {
            a.form(SCOPE)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        let replace = |a: &App, key: &str, value: Option<&str>| {
            let mut form: Vec<(String, String)> =
                base(a).into_iter().filter(|(k, _)| k != key).collect();
            if let Some(value) = value {
                form.push((key.to_owned(), value.to_owned()));
            }
            form
        };
        let unknown_client = uuid::Uuid::new_v4().to_string();
        type Form = Vec<(String, String)>;
        // (what, tenant in the URL, form, HTTP status, error, AADSTS code)
        let cases: Vec<(&str, String, Form, u16, &str, u64)> = vec![
            (
                "common",
                "common".into(),
                base(&app),
                400,
                "invalid_request",
                9001023,
            ),
            (
                "consumers",
                "consumers".into(),
                base(&app),
                400,
                "invalid_request",
                9001023,
            ),
            (
                "organizations",
                "organizations".into(),
                base(&app),
                400,
                "invalid_request",
                9001023,
            ),
            (
                "unknown tenant",
                "fabrikam.onmicrosoft.com".into(),
                base(&app),
                400,
                "invalid_request",
                90002,
            ),
            (
                "password grant",
                app.tenant.clone(),
                replace(&app, "grant_type", Some("password")),
                400,
                "unsupported_grant_type",
                70003,
            ),
            (
                "no grant_type",
                app.tenant.clone(),
                replace(&app, "grant_type", None),
                400,
                "invalid_request",
                900144,
            ),
            (
                "unknown client",
                app.tenant.clone(),
                replace(&app, "client_id", Some(&unknown_client)),
                400,
                "unauthorized_client",
                700016,
            ),
            (
                "client of another tenant",
                other.tenant.clone(),
                base(&app),
                400,
                "unauthorized_client",
                700016,
            ),
            (
                "no secret",
                app.tenant.clone(),
                replace(&app, "client_secret", None),
                401,
                "invalid_client",
                7000218,
            ),
            (
                "the secret's id instead of its value",
                app.tenant.clone(),
                replace(
                    &app,
                    "client_secret",
                    Some("5c0d6f4e-1111-2222-3333-444455556666"),
                ),
                401,
                "invalid_client",
                7000215,
            ),
            (
                "expired secret",
                expired.tenant.clone(),
                base(&expired),
                401,
                "invalid_client",
                7000222,
            ),
            (
                "no scope",
                app.tenant.clone(),
                replace(&app, "scope", None),
                400,
                "invalid_scope",
                70011,
            ),
            (
                "scope without /.default",
                app.tenant.clone(),
                replace(
                    &app,
                    "scope",
                    Some("https://outlook.office365.com/SMTP.Send"),
                ),
                400,
                "invalid_scope",
                70011,
            ),
            (
                "another resource",
                app.tenant.clone(),
                replace(&app, "scope", Some("https://graph.microsoft.com/.default")),
                400,
                "invalid_scope",
                70011,
            ),
        ];
        for (what, tenant, form, status, error, code) in cases {
            let form: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (got, headers, body) = post_token(&tenant, &form).await;
            assert_eq!(
                headers["content-type"], "application/json; charset=utf-8",
                "{what}"
            );
            let body = assert_aad_error(got, &body, status, error, code);
            let description = body["error_description"].as_str().expect("a description");
            match code {
                90002 => assert!(
                    description.contains("Tenant 'fabrikam.onmicrosoft.com' not found"),
                    "{description}"
                ),
                700016 => assert!(
                    description.contains(&format!(
                        "Application with identifier '{}' was not found",
                        form.iter()
                            .find(|(k, _)| *k == "client_id")
                            .expect("a client_id")
                            .1
                    )),
                    "{description}"
                ),
                7000215 => assert!(
                    description.contains("client secret value, not the client secret ID"),
                    "{description}"
                ),
                7000222 => assert!(description.contains("are expired"), "{description}"),
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn the_correlation_id_echoes_client_request_id() {
        let correlation = uuid::Uuid::new_v4().to_string();
        let response = http()
            .post(FakeIdp::shared().token_url("common"))
            .header("client-request-id", &correlation)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("an answer");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["correlation_id"], correlation);
    }

    #[tokio::test]
    async fn http_basic_client_authentication_is_accepted() {
        // A secret with characters that RFC 6749's form-encoding inside Basic must carry.
        let app = new_app(|spec| spec.secret = "Ab8Q~x+y/z:%=".to_owned()).await;
        let encode =
            |s: &str| serde_urlencoded::to_string([("", s)]).expect("encode")[1..].to_owned();
        let basic = STANDARD.encode(format!(
            "{}:{}",
            encode(&app.client),
            encode("Ab8Q~x+y/z:%=")
        ));
        let form = [("grant_type", "client_credentials"), ("scope", SCOPE)];
        let send = |authorization: String| {
            http()
                .post(FakeIdp::shared().token_url(&app.tenant))
                .header("authorization", authorization)
                .form(&form)
                .send()
        };
        let response = send(format!("Basic {basic}")).await.expect("an answer");
        assert_eq!(response.status(), Status::OK);
        let body: Value = response.json().await.expect("JSON");
        assert!(
            body["access_token"]
                .as_str()
                .is_some_and(|t| t.len() > 1500)
        );

        let wrong = STANDARD.encode(format!("{}:{}", app.client, "wrong"));
        let response = send(format!("Basic {wrong}")).await.expect("an answer");
        let status = response.status();
        assert_aad_error(
            status,
            &response.text().await.expect("a body"),
            401,
            "invalid_client",
            7000215,
        );
        assert_eq!(
            app.admin
                .stats(&app.client)
                .await
                .expect("stats")
                .token_requests,
            2
        );
    }

    #[tokio::test]
    async fn introspection_accepts_a_valid_token_with_the_role_of_the_service() {
        let app = new_app(|spec| spec.roles = vec![ROLE_SMTP.to_owned()]).await;
        let token = get_token(&app).await;
        assert_eq!(
            introspect("smtp", &token).await,
            serde_json::json!({"active": true, "username": "app@example.test"})
        );
        assert_eq!(
            introspect("imap", &token).await,
            serde_json::json!({"active": false})
        );
        let stats = app.admin.stats(&app.client).await.expect("stats");
        assert_eq!(
            stats,
            IdpStats {
                token_requests: 1,
                tokens_issued: 1,
                introspections_active: 1,
                introspections_rejected: 1
            }
        );
    }

    #[tokio::test]
    async fn introspection_rejects_expired_revoked_forged_and_garbage_tokens() {
        let app = new_app(|spec| spec.lifetime_secs = 0).await;
        let expired = get_token(&app).await;
        assert_eq!(
            introspect("imap", &expired).await,
            serde_json::json!({"active": false})
        );

        app.admin
            .update_client(
                &app.client,
                ClientPatch {
                    lifetime_secs: Some(3599),
                    ..ClientPatch::default()
                },
            )
            .await
            .expect("patch the client");
        let first = get_token(&app).await;
        assert_eq!(introspect("imap", &first).await["active"], true);
        app.admin.revoke(&app.client).await.expect("revoke");
        assert_eq!(introspect("imap", &first).await["active"], false);
        let second = get_token(&app).await;
        assert_eq!(
            introspect("imap", &second).await["active"],
            true,
            "tokens issued after a revocation work"
        );

        // Same header and signature, claims changed (more roles): the signature no longer fits.
        let parts: Vec<&str> = second.split('.').collect();
        let mut claims = decode_part(parts[1]);
        claims["exp"] = serde_json::json!(claims["exp"].as_i64().expect("exp") + 3600);
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("JSON")),
            parts[2]
        );
        assert_eq!(introspect("imap", &forged).await["active"], false);
        assert_eq!(introspect("imap", "not-a-token").await["active"], false);

        let stats = app.admin.stats(&app.client).await.expect("stats");
        assert_eq!(stats.tokens_issued, 3);
        assert_eq!(stats.introspections_active, 2);
        assert_eq!(
            stats.introspections_rejected, 3,
            "expired, revoked, forged (garbage has no appid)"
        );
    }

    #[tokio::test]
    async fn introspection_of_an_unknown_service_or_without_a_token_is_an_http_error() {
        let url = FakeIdp::shared().url();
        let response = http()
            .post(format!("{url}/introspect/pop3"))
            .body("token=x")
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), Status::NOT_FOUND);
        let response = http()
            .post(format!("{url}/introspect/imap"))
            .body("client_id=")
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), Status::BAD_REQUEST);
    }

    #[tokio::test]
    async fn stats_count_every_request_naming_the_client() {
        let app = new_app(|_| {}).await;
        get_token(&app).await;
        let mut wrong = app.form(SCOPE);
        wrong[2].1 = "wrong";
        post_token(&app.tenant, &wrong).await;
        post_token("common", &app.form(SCOPE)).await;
        post_token(&app.tenant, &app.form("openid")).await;
        let stats = app.admin.stats(&app.client).await.expect("stats");
        assert_eq!(
            stats,
            IdpStats {
                token_requests: 4,
                tokens_issued: 1,
                introspections_active: 0,
                introspections_rejected: 0
            }
        );
        let never = app.admin.stats("never-seen").await.expect("stats");
        assert_eq!(never, IdpStats::default());
    }

    #[tokio::test]
    async fn a_patched_secret_and_expiry_take_effect_at_once() {
        let app = new_app(|_| {}).await;
        get_token(&app).await;
        let change = ClientPatch {
            secret: Some("new-secret".to_owned()),
            ..ClientPatch::default()
        };
        app.admin
            .update_client(&app.client, change)
            .await
            .expect("patch");
        let (status, _, body) = post_token(&app.tenant, &app.form(SCOPE)).await;
        assert_aad_error(status, &body, 401, "invalid_client", 7000215);

        let change = ClientPatch {
            secret_expired: Some(true),
            ..ClientPatch::default()
        };
        app.admin
            .update_client(&app.client, change)
            .await
            .expect("patch");
        let mut form = app.form(SCOPE);
        form[2].1 = "new-secret";
        let (status, _, body) = post_token(&app.tenant, &form).await;
        assert_aad_error(status, &body, 401, "invalid_client", 7000222);
    }

    #[tokio::test]
    async fn unavailable_and_garbage_behaviours() {
        let app = new_app(|spec| spec.behaviour = Behaviour::Unavailable).await;
        let (status, _, body) = post_token(&app.tenant, &app.form(SCOPE)).await;
        assert_aad_error(status, &body, 503, "temporarily_unavailable", 90033);

        let change = ClientPatch {
            behaviour: Some(Behaviour::Garbage),
            ..ClientPatch::default()
        };
        app.admin
            .update_client(&app.client, change)
            .await
            .expect("patch");
        let (status, headers, body) = post_token(&app.tenant, &app.form(SCOPE)).await;
        assert_eq!(status, Status::OK);
        assert!(
            headers["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/html")
        );
        assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");

        let change = ClientPatch {
            behaviour: Some(Behaviour::Normal),
            ..ClientPatch::default()
        };
        app.admin
            .update_client(&app.client, change)
            .await
            .expect("patch");
        get_token(&app).await;
    }

    #[tokio::test]
    async fn a_hanging_client_does_not_block_other_requests() {
        let hanging = new_app(|spec| spec.behaviour = Behaviour::Hang).await;
        let normal = new_app(|_| {}).await;
        let request = http()
            .post(FakeIdp::shared().token_url(&hanging.tenant))
            .timeout(Duration::from_millis(300))
            .form(&hanging.form(SCOPE))
            .send();
        let (hung, token) = tokio::join!(request, get_token(&normal));
        let error = hung.expect_err("the hanging request times out");
        assert!(error.is_timeout(), "{error}");
        assert!(token.len() > 1500);
        assert_eq!(
            hanging
                .admin
                .stats(&hanging.client)
                .await
                .expect("stats")
                .token_requests,
            1
        );
    }

    #[tokio::test]
    async fn the_admin_endpoints_refuse_unknown_tenants_and_clients() {
        let admin = FakeIdp::shared().admin();
        let error = admin
            .register_client(ClientSpec::new(
                unique("no-such-tenant"),
                unique("client"),
                "s",
            ))
            .await
            .expect_err("the tenant is unknown");
        assert!(format!("{error:#}").contains("unknown tenant"), "{error:#}");
        let error = admin
            .update_client(&unique("client"), ClientPatch::default())
            .await
            .expect_err("unknown");
        assert!(format!("{error:#}").contains("404"), "{error:#}");
        assert!(admin.revoke(&unique("client")).await.is_err());
    }

    #[tokio::test]
    async fn a_started_idp_uses_the_given_key_and_stops_when_dropped() {
        let path = std::env::temp_dir().join(format!("{}.pem", unique("mailgate-testkit-key")));
        generate_key_pem(&path)
            .await
            .expect("openssl generates a key");
        let idp = FakeIdp::start(SocketAddr::from(([127, 0, 0, 1], 0)), Some(&path))
            .await
            .expect("start");
        std::fs::remove_file(&path).expect("remove the key");
        assert_eq!(idp.url(), format!("http://127.0.0.1:{}", idp.addr().port()));
        assert_eq!(
            idp.token_url("contoso.onmicrosoft.com"),
            format!("{}/contoso.onmicrosoft.com/oauth2/v2.0/token", idp.url())
        );
        let health = http()
            .get(format!("{}/_admin/health", idp.url()))
            .send()
            .await
            .expect("health");
        assert_eq!(health.status(), Status::OK);

        // A token of this IdP is not one of the shared IdP's (another key).
        let admin = idp.admin();
        admin
            .register_tenant(TenantSpec::new("t1", "example.test"))
            .await
            .expect("tenant");
        admin
            .register_client(ClientSpec::new("t1", "c1", "s1"))
            .await
            .expect("client");
        let response = http()
            .post(idp.token_url("t1"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "c1"),
                ("client_secret", "s1"),
                ("scope", SCOPE),
            ])
            .send()
            .await
            .expect("a token");
        let body: Value = response.json().await.expect("JSON");
        let token = body["access_token"].as_str().expect("access_token");
        assert_eq!(introspect("imap", token).await["active"], false);

        let addr = idp.addr();
        drop(idp);
        crate::poll::eventually(
            Duration::from_secs(5),
            "the dropped IdP to stop listening",
            || async move {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .is_err()
                    .then_some(())
            },
        )
        .await;
    }

    #[test]
    fn form_decoding_and_path_encoding() {
        assert_eq!(form_decode("a%2bb+c%3A%zz%"), "a+b c:%zz%");
        assert_eq!(encode_path_segment("a b/c~d"), "a%20b%2Fc~d");
        assert_eq!(
            scope_resource("https://OUTLOOK.office365.com//.default"),
            Some(RESOURCES[0])
        );
        assert_eq!(
            scope_resource("https://outlook.office365.com/.default/"),
            None
        );
    }
}
