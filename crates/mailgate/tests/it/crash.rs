//! kill -9 of a real mailgate process with mails queued and in flight; after a restart every
//! mail is delivered.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mailgate_testkit::{TestEnv, eventually};
use serde_json::{Value, json};

use crate::helpers::{TempDir, test_config};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    /// A failing test must not leave a server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path, port: u16, node: &str) -> Server {
    start_with_env(dir, port, node, &[])
}

fn start_with_env(dir: &std::path::Path, port: u16, node: &str, env_vars: &[(&str, &str)]) -> Server {
    let env = TestEnv::load();
    let mut config = test_config(&env, dir);
    config.listen = format!("127.0.0.1:{port}");
    config.node_id = Some(node.to_string());
    config.log_format = "json".into();
    config.spool.workers = 2;
    config.spool.batch_size = 10;
    let file = dir.join("mailgate.toml");
    std::fs::write(&file, toml_of(&config)).expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .args(["--config", file.to_str().expect("path"), "serve"])
        .envs(env_vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(crate::helpers::log_dir().unwrap_or_else(|| dir.to_path_buf()).join(format!("serve-{}.log", uuid::Uuid::new_v4().simple()))).expect("log"))
        .spawn()
        .expect("spawn mailgate");
    Server { child, base: format!("http://127.0.0.1:{port}") }
}

pub(crate) fn toml_of(config: &mailgate::config::Config) -> String {
    let value = serde_json::to_value(config).expect("json");
    let mut out = String::new();
    let mut tables = String::new();
    for (k, v) in value.as_object().expect("object") {
        match v {
            Value::Null => {}
            Value::Object(inner) => {
                tables.push_str(&format!("[{k}]\n"));
                for (ik, iv) in inner {
                    if !iv.is_null() {
                        tables.push_str(&format!("{ik} = {iv}\n"));
                    }
                }
            }
            other => out.push_str(&format!("{k} = {other}\n")),
        }
    }
    out + &tables
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_mails_queued_and_in_flight_then_restart_delivers_every_mail() {
    let env = TestEnv::load();
    let dir = TempDir::new("crash");
    let key = {
        let config = test_config(&env, &dir.0);
        let store = mailgate::app::open_store(&config).await.expect("store");
        mailgate_web::service::api_keys::create(store.as_ref(), "crash", true).await.expect("key").1
    };
    crate::helpers::record_secret(&key);
    let port = free_port();
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let mut server = start(&dir.0, port, "crash-node");
    let base = server.base.clone();
    eventually(Duration::from_secs(20), "mailgate to start", || async {
        http.get(format!("{base}/readyz")).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    let account: Value = http
        .post(format!("{base}/api/v1/accounts"))
        .bearer_auth(&key)
        .json(&json!({"name": "crash", "protocol": "smtp", "auth": "plain", "username": env.user_sender,
                      "password": env.pass_sender, "host": "127.0.0.1", "connection": "starttls",
                      "port": env.smtp_starttls_port, "send_address": env.user_sender}))
        .send()
        .await
        .expect("create account")
        .json()
        .await
        .expect("json");
    assert!(account["id"].is_string(), "{account}");
    let rcpt = env.unique_address("crash");
    let total = 300;
    for i in 0..total {
        let r = http
            .post(format!("{base}/api/v1/mails"))
            .bearer_auth(&key)
            .json(&json!({"account": "crash", "to": rcpt, "subject": format!("crash {i}"), "text": "x"}))
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 202);
    }
    // Kill while some mails went out and others wait or are in flight.
    env.wait_for_messages(&rcpt, 20, Duration::from_secs(30)).await;
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reap");
    drop(server);
    let before_restart = env.maildir_messages(&rcpt).len();
    assert!(before_restart < total, "the kill came too late to test anything ({before_restart} delivered)");

    let server = start(&dir.0, port, "crash-node");
    let subjects = |messages: &[Vec<u8>]| -> HashSet<String> {
        messages
            .iter()
            .filter_map(|m| mail_parser::MessageParser::default().parse(m).and_then(|p| p.subject().map(str::to_string)))
            .collect()
    };
    let messages = eventually(Duration::from_secs(90), "every mail to arrive", || async {
        let messages = env.maildir_messages(&rcpt);
        (subjects(&messages).len() == total).then_some(messages)
    })
    .await;
    // At-least-once: the mail each worker had in hand (its 250 came, its bookkeeping did not)
    // may arrive twice; nothing else.
    let duplicates = messages.len() - total;
    assert!(duplicates <= 2, "{duplicates} duplicates; at most one per worker (2) may be resent");
    let page: Value = http
        .get(format!("{}/api/v1/mails?status=sent&limit=1", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    eventually(Duration::from_secs(30), "all mails marked sent", || async {
        let page: Value = http
            .get(format!("{}/api/v1/mails?status=sent&limit=1", server.base))
            .bearer_auth(&key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (page["total"] == total).then_some(())
    })
    .await;
    let _ = page;
    drop(server);
    eprintln!("crash test: {before_restart} delivered before the kill, {duplicates} delivered twice");
}

pub(crate) async fn wait_ready(http: &reqwest::Client, base: &str) {
    eventually(Duration::from_secs(20), "mailgate to start", || async {
        http.get(format!("{base}/readyz")).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_expunge_leaves_no_duplicate_and_nothing_behind() {
    let env = TestEnv::load();
    let dir = TempDir::new("crash-imap");
    let key = {
        let config = test_config(&env, &dir.0);
        let store = mailgate::app::open_store(&config).await.expect("store");
        mailgate_web::service::api_keys::create(store.as_ref(), "crash", true).await.expect("key").1
    };
    let user = env.unique_address("crash-imap");
    let messages: Vec<Vec<u8>> = (0..10).map(|i| format!("Subject: crash {i}\r\n\r\nx\r\n").into_bytes()).collect();
    env.deliver_lmtp(&user, &messages).await.expect("lmtp");
    let port = free_port();
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let server = start_with_env(&dir.0, port, "crash-imap", &[("MAILGATE_TEST_ABORT_AFTER_COMMIT", "1")]);
    let base = server.base.clone();
    wait_ready(&http, &base).await;
    // XOAUTH2 reaches any mailbox of the test domain (PLAIN only the passwd-file users).
    let tenant = uuid::Uuid::new_v4().to_string();
    let client_id = uuid::Uuid::new_v4().to_string();
    env.idp.register_tenant(mailgate_testkit::TenantSpec::new(tenant.clone(), env.domain.clone())).await.expect("tenant");
    env.idp.register_client(mailgate_testkit::ClientSpec::new(tenant.clone(), client_id.clone(), "crash-secret".to_string())).await.expect("client");
    let post = |path: String, body: Value| {
        let http = http.clone();
        let key = key.clone();
        async move { http.post(path).bearer_auth(key).json(&body).send().await }
    };
    let r = post(format!("{base}/api/v1/oauth-clients"), json!({"name": "crash", "tenant": tenant, "client_id": client_id,
        "client_secret": "crash-secret", "token_url": format!("{}/{{tenant}}/oauth2/v2.0/token", env.idp_url)})).await.expect("client");
    assert_eq!(r.status(), 201);
    let account = json!({"name": "crash-imap", "protocol": "imap", "auth": "xoauth2", "oauth_client": "crash", "username": user,
        "host": "localhost", "connection": "tls", "port": env.imap_tls_port, "enabled": false});
    let created: Value = post(format!("{base}/api/v1/accounts"), account).await.expect("account").json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    // The pass commits the batch, then the process aborts before removing anything.
    let _ = post(format!("{base}/api/v1/accounts/{id}/retrieve"), json!({})).await;
    let mut server = server;
    let status = server.child.wait().expect("wait");
    assert!(!status.success(), "the process died at the hook: {status}");
    assert_eq!(env.folder_count(&user, "INBOX").expect("count"), 10, "nothing was removed from the server");
    drop(server);

    let server = start(&dir.0, port, "crash-imap");
    wait_ready(&http, &base).await;
    let report: Value = post(format!("{base}/api/v1/accounts/{id}/retrieve"), json!({})).await.expect("retrieve").json().await.expect("json");
    assert_eq!((report["stored"].as_u64(), report["duplicates"].as_u64()), (Some(0), Some(10)), "{report}");
    assert_eq!(env.folder_count(&user, "INBOX").expect("count"), 0, "nothing left behind");
    let page: Value = http.get(format!("{base}/api/v1/inbox?limit=100")).bearer_auth(&key).send().await.expect("inbox").json().await.expect("json");
    assert_eq!(page["total"], 10, "no duplicate record");
    drop(server);
}
