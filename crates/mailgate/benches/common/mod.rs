//! Helpers shared by the benchmarks: a mailgate process (release build) with its own data
//! directory and admin key, and small API and /proc helpers.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailgate_testkit::{ClientSpec, TenantSpec, TestEnv};
use serde_json::{Value, json};

pub struct Mailgate {
    pub child: Child,
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl Drop for Mailgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn env_file_values(path: &Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub async fn start_mailgate(env: &TestEnv, dir: &Path) -> Mailgate {
    start_node(env, dir, None, None).await
}

/// A benchmark master key shared by the nodes of a PostgreSQL run.
const BENCH_MASTER_KEY: &str = "bWFpbGdhdGUtYmVuY2htYXJrLW1hc3Rlci1rZXktMzI=";

/// Starts a mailgate process with its data in `dir`; with `database`, on that PostgreSQL
/// database (node id from `dir`'s name, the bench master key) and, with `key`, using that
/// API key instead of creating one.
pub async fn start_node(env: &TestEnv, dir: &Path, database: Option<&str>, key: Option<String>) -> Mailgate {
    let bin = env!("CARGO_BIN_EXE_mailgate");
    let port = free_port();
    std::fs::create_dir_all(dir).expect("dir");
    let mut config = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nextra_ca_file = \"{}\"\nlog_level = \"warn\"\nlog_format = \"json\"\n",
        dir.display(),
        env.ca.display()
    );
    if let Some(url) = database {
        let node = dir.file_name().and_then(|n| n.to_str()).unwrap_or("bench");
        config.push_str(&format!("database_url = \"{url}\"\nmaster_key = \"{BENCH_MASTER_KEY}\"\nnode_id = \"{node}\"\n"));
    }
    std::fs::write(dir.join("mailgate.toml"), config).expect("config");
    let conf = dir.join("mailgate.toml");
    let key = match key {
        Some(key) => key,
        None => {
            let out = Command::new(bin)
                .args(["--config", conf.to_str().expect("path"), "api-key", "create", "--name", "bench", "--admin"])
                .output()
                .expect("api-key create");
            String::from_utf8(out.stdout).expect("utf8").trim().to_string()
        }
    };
    let child = Command::new(bin)
        .args(["--config", conf.to_str().expect("path"), "serve"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).expect("log"))
        .spawn()
        .expect("spawn mailgate");
    wait_port(port);
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(64).build().expect("client");
    Mailgate { child, base: format!("http://127.0.0.1:{port}"), key, http }
}

impl Mailgate {
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.key).json(&body).send().await.expect("post");
        let status = r.status();
        let v: Value = r.json().await.expect("json");
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Registers a tenant and a client with `role` at the stand-in and creates the matching
    /// OAuth client "bench"; returns the client ID.
    pub async fn oauth_client(&self, env: &TestEnv, role: &str) -> String {
        let tenant = uuid::Uuid::new_v4().to_string();
        let client_id = uuid::Uuid::new_v4().to_string();
        env.idp.register_tenant(TenantSpec::new(tenant.clone(), env.domain.clone())).await.expect("tenant");
        let mut spec = ClientSpec::new(tenant.clone(), client_id.clone(), "bench-secret".to_string());
        spec.roles = vec![role.into()];
        env.idp.register_client(spec).await.expect("client");
        self.post(
            "/api/v1/oauth-clients",
            json!({"name": "bench", "tenant": tenant, "client_id": client_id, "client_secret": "bench-secret",
                   "token_url": format!("{}/{{tenant}}/oauth2/v2.0/token", env.idp_url)}),
        )
        .await;
        client_id
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.key).send().await.expect("get").json().await.expect("json")
    }

    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    pub async fn sent_count(&self) -> i64 {
        self.get("/api/v1/mails?status=sent&limit=1").await["total"].as_i64().unwrap_or(0)
    }
}

