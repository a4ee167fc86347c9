//! `TestApp`: a mailgate started in-process on port 0 with its own data directory, an admin
//! API key, and helpers for the API and for setting up OAuth clients and accounts.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use mailgate::app::{RunningApp, open_store};
use mailgate::config::Config;
use mailgate_testkit::{ClientSpec, TenantSpec, TestEnv, eventually};
use reqwest::Method;
use serde_json::{Value, json};

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

/// Where scripts/test.sh collects every test process's logs and the secrets the tests used,
/// to check after the run that no secret reached any log.
pub fn log_dir() -> Option<PathBuf> {
    std::env::var_os("MAILGATE_TEST_LOG_DIR").map(PathBuf::from)
}

fn append(file: &str, bytes: &[u8]) {
    if let Some(dir) = log_dir() {
        use std::io::Write as _;
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(file)) {
            let _ = f.write_all(bytes);
        }
    }
}

/// Remembers a secret the test used, for the suite-wide check that logs never contain one.
pub fn record_secret(secret: &str) {
    if !secret.is_empty() {
        append(&format!("secrets-{}.txt", std::process::id()), format!("{secret}\n").as_bytes());
    }
}

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        append(&format!("test-{}.log", std::process::id()), buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every log line of this test process (at debug level for mailgate's crates).
fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug,sqlx=warn,hyper=info,reqwest=info,rustls=info"))
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Everything logged so far in this test process.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mailgate-{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Settings for tests: fast retries, the test CA trusted, a port of its own.
pub fn test_config(env: &TestEnv, data_dir: &std::path::Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        extra_ca_file: Some(env.ca.clone()),
        node_id: Some(format!("test-{}", uuid::Uuid::new_v4().simple())),
        ..Config::default()
    };
    config.spool.retry_base_secs = 1;
    config.spool.retry_max_secs = 2;
    config.spool.poll_interval_secs = 1;
    config.spool.max_attempts = 3;
    config.spool.connect_timeout_secs = 5;
    config.spool.command_timeout_secs = 10;
    config.spool.helo_name = Some("mailgate.test".into());
    config
}

/// A Microsoft-style OAuth client registered both with the stand-in and with mailgate.
pub struct MsClient {
    pub tenant: String,
    pub client_id: String,
    pub secret: String,
    /// The OAuth client's name in mailgate.
    pub name: String,
}

pub struct TestApp {
    /// Kept so the app lives as long as the test.
    _app: RunningApp,
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
    pub env: TestEnv,
    pub dir: TempDir,
    responses: Mutex<Vec<String>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(change: impl FnOnce(&mut Config)) -> TestApp {
        init_logs();
        let env = TestEnv::load();
        let dir = TempDir::new("it");
        let mut config = test_config(&env, &dir.0);
        change(&mut config);
        let store = open_store(&config).await.expect("open store");
        let (_, key) = mailgate_web::service::api_keys::create(store.as_ref(), "test admin", true).await.expect("create key");
        record_secret(&key);
        for secret in [&env.pass_sender, &env.pass_reader] {
            record_secret(secret);
        }
        let app = RunningApp::start(&config).await.expect("start mailgate");
        let base = format!("http://{}", app.addr);
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().expect("http client");
        TestApp { _app: app, base, key, http, env, dir, responses: Mutex::new(Vec::new()) }
    }

    /// The one-time token of the first-admin setup link (while no admin exists).
    pub fn setup_token(&self) -> Option<String> {
        let token = self._app.setup_token.clone();
        if let Some(t) = &token {
            record_secret(t);
        }
        token
    }

    /// Stops the app (workers finish the mail in hand and give back the rest).
    pub async fn stop(self) {
        self._app.stop(Duration::from_secs(10)).await;
    }

    /// The running app's shared state (for driving jobs directly).
    pub fn state(&self) -> &mailgate_web::AppState {
        &self._app.state
    }

    /// The data directory and configuration file of this app (for running the CLI on it).
    pub fn config_file(&self) -> std::path::PathBuf {
        let file = self.dir.0.join("cli.toml");
        let text = format!(
            "data_dir = \"{}\"\nextra_ca_file = \"{}\"\n[spool]\nconnect_timeout_secs = 5\n",
            self.dir.0.display(),
            self.env.ca.display()
        );
        std::fs::write(&file, text).expect("write cli config");
        file
    }

    /// Sends a request with the admin key; returns status and JSON (Null when not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with_key(&self.key, method, path, body).await
    }

    pub async fn call_with_key(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        self.responses.lock().unwrap_or_else(|p| p.into_inner()).push(text.clone());
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Every response body this app has answered in the test.
    pub fn responses(&self) -> String {
        self.responses.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }

    /// Registers a tenant and a client with the stand-in and creates the matching OAuth
    /// client in mailgate (Microsoft 365 template, token URL pointing at the stand-in).
    pub async fn microsoft_client(&self, roles: &[&str]) -> MsClient {
        let c = self.register_microsoft_client(roles).await;
        let (status, body) = self
            .post(
                "/api/v1/oauth-clients",
                json!({
                    "name": c.name, "template": "microsoft365", "tenant": c.tenant, "client_id": c.client_id,
                    "client_secret": c.secret, "expires_on": "2027-06-30",
                    "token_url": format!("{}/{{tenant}}/oauth2/v2.0/token", self.env.idp_url),
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        c
    }

    /// Registers a tenant and a client with the stand-in only (to enter it in mailgate by hand).
    pub async fn register_microsoft_client(&self, roles: &[&str]) -> MsClient {
        let tenant = uuid::Uuid::new_v4().to_string();
        let client_id = uuid::Uuid::new_v4().to_string();
        let secret = format!("Xy8Q~{}", uuid::Uuid::new_v4().simple());
        record_secret(&secret);
        self.env
            .idp
            .register_tenant(TenantSpec::new(tenant.clone(), self.env.domain.clone()))
            .await
            .expect("register tenant");
        let mut spec = ClientSpec::new(tenant.clone(), client_id.clone(), secret.clone());
        spec.roles = roles.iter().map(|r| r.to_string()).collect();
        self.env.idp.register_client(spec).await.expect("register client");
        let name = format!("entra-{}", &client_id[..8]);
        MsClient { tenant, client_id, secret, name }
    }

    /// Creates an SMTP account; `fields` are merged over sensible test defaults.
    pub async fn smtp_account(&self, fields: Value) -> Value {
        let mut body = json!({
            "name": format!("smtp-{}", uuid::Uuid::new_v4().simple()),
            "protocol": "smtp",
            "host": "127.0.0.1",
            "connection": "starttls",
            "port": self.env.smtp_starttls_port,
            "username": self.env.user_sender,
            "send_address": format!("Mailgate Test <{}>", self.env.user_sender),
        });
        for (k, v) in fields.as_object().expect("object").clone() {
            body[k] = v;
        }
        let (status, account) = self.post("/api/v1/accounts", body).await;
        assert_eq!(status, 201, "{account}");
        account
    }

    /// An XOAUTH2 account sending through the STARTTLS submission port.
    pub async fn oauth_account(&self, client: &MsClient) -> Value {
        self.smtp_account(json!({"auth": "xoauth2", "oauth_client": client.name})).await
    }

    /// Creates an IMAP account reading `user`'s mailbox with XOAUTH2 over implicit TLS
    /// (disabled, so tests drive retrieval with `retrieve`); `fields` override the defaults.
    pub async fn imap_account(&self, client: &MsClient, user: &str, fields: Value) -> Value {
        let mut body = json!({
            "name": format!("imap-{}", uuid::Uuid::new_v4().simple()),
            "protocol": "imap", "auth": "xoauth2", "oauth_client": client.name, "username": user,
            "host": "localhost", "connection": "tls", "port": self.env.imap_tls_port, "enabled": false,
        });
        for (k, v) in fields.as_object().expect("object").clone() {
            body[k] = v;
        }
        let (status, account) = self.post("/api/v1/accounts", body).await;
        assert_eq!(status, 201, "{account}");
        account
    }

    /// Runs one retrieval pass now; returns the report.
    pub async fn retrieve(&self, account: &Value) -> Value {
        let (status, report) = self.post(&format!("/api/v1/accounts/{}/retrieve", account["id"].as_str().expect("id")), json!({})).await;
        assert_eq!(status, 200, "{report}");
        report
    }

    /// Submits a mail and returns its id.
    pub async fn submit(&self, body: Value) -> String {
        let (status, answer) = self.post("/api/v1/mails", body).await;
        assert_eq!(status, 202, "{answer}");
        answer["id"].as_str().expect("id").to_string()
    }

    /// Polls the mail until its status is `status`.
    pub async fn wait_status(&self, id: &str, status: &str, deadline: Duration) -> Value {
        eventually(deadline, &format!("mail {id} to become {status}"), || async {
            let (_, mail) = self.get(&format!("/api/v1/mails/{id}")).await;
            (mail["status"] == status).then_some(mail)
        })
        .await
    }

    /// The bytes of the SQLite files.
    pub fn database_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for name in ["mailgate.db", "mailgate.db-wal"] {
            if let Ok(b) = std::fs::read(self.dir.0.join(name)) {
                all.extend(b);
            }
        }
        all
    }
}

