//! Several mailgate nodes on one PostgreSQL database (issue 6): shared sending with a node
//! killed mid-run, one retriever per mailbox, settings changes seen by every node, and a
//! database restart. Each test has a database of its own, created through
//! `MAILGATE_TEST_PG_URL` (scripts/test.sh exports it) and dropped at the end.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate::config::Config;
use mailgate_testkit::{TestEnv, eventually};
use serde_json::json;

use crate::crash::{free_port, toml_of, wait_ready};
use crate::helpers::{TempDir, TestApp, record_secret, test_config};

/// The master key every node of a test shares (as `MAILGATE_MASTER_KEY` would be).
const MASTER_KEY: &str = "bWFpbGdhdGUtbXVsdGlub2RlLXRlc3Qta2V5LTMyYnk=";

fn pg_admin_url() -> String {
    std::env::var("MAILGATE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, String::new()), |(b, q)| (b, format!("?{q}")));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host = base[scheme_end..].find('/').map_or(base, |i| &base[..scheme_end + i]);
    format!("{host}/{db}{query}")
}

/// A database of its own for one test, dropped when the test ends (also when it fails).
struct PgDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create() -> PgDb {
        let admin_url = pg_admin_url();
        let name = format!("mg_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&admin_url).await.unwrap_or_else(|e| panic!("PostgreSQL at {admin_url}: {e}"));
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create database");
        admin.close().await;
        let url = with_database(&admin_url, &name);
        PgDb { admin_url, name, url }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: do it on a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                    let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await;
                }
            });
        })
        .join();
    }
}

fn node_config(env: &TestEnv, dir: &std::path::Path, database_url: &str, node: &str) -> Config {
    let mut config = test_config(env, dir);
    config.database_url = database_url.to_string();
    config.master_key = Some(MASTER_KEY.into());
    config.node_id = Some(node.to_string());
    config.spool.workers = 2;
    config.spool.batch_size = 10;
    // A dead node's claims are taken over after this long.
    config.spool.lease_secs = 15;
    config
}

/// A mailgate process (killed when dropped).
struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_node(env: &TestEnv, dir: &std::path::Path, database_url: &str, node: &str) -> Node {
    let port = free_port();
    let mut config = node_config(env, dir, database_url, node);
    config.listen = format!("127.0.0.1:{port}");
    config.log_format = "json".into();
    let file = dir.join(format!("{node}.toml"));
    std::fs::write(&file, toml_of(&config)).expect("write config");
    let log = crate::helpers::log_dir()
        .unwrap_or_else(|| dir.to_path_buf())
        .join(format!("serve-{node}-{}.log", uuid::Uuid::new_v4().simple()));
    let child = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .args(["--config", file.to_str().expect("path"), "serve"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("spawn mailgate");
    Node { child, base: format!("http://127.0.0.1:{port}") }
}

fn subjects(messages: &[Vec<u8>]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| mail_parser::MessageParser::default().parse(m).and_then(|p| p.subject().map(str::to_string)))
        .collect()
}

/// 3 nodes, 3 000 mails submitted through all of them, one node killed with -9 while they are
/// sent: every accepted mail is delivered, and a mail arrives twice only if the killed node
/// had it in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_one_killed_every_mail_delivered_duplicates_only_from_the_killed_node() {
    const TOTAL: usize = 3000;
    let env = TestEnv::load();
    let db = PgDb::create().await;
    let dir = TempDir::new("multinode-send");
    record_secret(MASTER_KEY);
    let store = mailgate::app::open_store(&node_config(&env, &dir.0, &db.url, "setup")).await.expect("store");
    let key = mailgate_web::service::api_keys::create(store.as_ref(), "multinode", true).await.expect("key").1;
    record_secret(&key);
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("client");
    let mut nodes: Vec<Node> = (0..3).map(|i| spawn_node(&env, &dir.0, &db.url, &format!("mn-{i}"))).collect();
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    for base in &bases {
        wait_ready(&http, base).await;
    }
    // XOAUTH2, so that the token requests of the nodes can be counted (each node caches its own).
    let tenant = uuid::Uuid::new_v4().to_string();
    let client_id = uuid::Uuid::new_v4().to_string();
    let secret = format!("Xy8Q~{}", uuid::Uuid::new_v4().simple());
    record_secret(&secret);
    env.idp.register_tenant(mailgate_testkit::TenantSpec::new(tenant.clone(), env.domain.clone())).await.expect("tenant");
    let mut spec = mailgate_testkit::ClientSpec::new(tenant.clone(), client_id.clone(), secret.clone());
    spec.roles = vec![mailgate_testkit::ROLE_SMTP.to_string()];
    env.idp.register_client(spec).await.expect("client");
    let r = http
        .post(format!("{}/api/v1/oauth-clients", bases[2]))
        .bearer_auth(&key)
        .json(&json!({"name": "multi", "tenant": tenant, "client_id": client_id, "client_secret": secret,
                      "token_url": format!("{}/{{tenant}}/oauth2/v2.0/token", env.idp_url)}))
        .send()
        .await
        .expect("create client");
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{}/api/v1/accounts", bases[0]))
        .bearer_auth(&key)
        .json(&json!({"name": "multi", "protocol": "smtp", "auth": "xoauth2", "oauth_client": "multi",
                      "username": env.user_sender, "host": "127.0.0.1", "connection": "starttls",
                      "port": env.smtp_starttls_port, "send_address": env.user_sender, "max_sessions": 8}))
        .send()
        .await
        .expect("create account");
    assert_eq!(r.status(), 201);
    let rcpt = env.unique_address("multinode");

    // Three submitters, one per node, at the same time. When its node is killed, a submitter
    // goes on through node 0 (as a load balancer would); the request without an answer may or
    // may not have been stored ("unknown"), every 202 must be delivered.
    let submitters: Vec<_> = (0..3)
        .map(|n| {
            let (http, key, rcpt) = (http.clone(), key.clone(), rcpt.clone());
            let (mut base, fallback) = (bases[n].clone(), bases[0].clone());
            tokio::spawn(async move {
                let (mut accepted, mut unknown) = (Vec::new(), Vec::new());
                for i in (n..TOTAL).step_by(3) {
                    let subject = format!("multinode {i}");
                    let r = http
                        .post(format!("{base}/api/v1/mails"))
                        .bearer_auth(&key)
                        .json(&json!({"account": "multi", "to": rcpt, "subject": subject, "text": "x"}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 202 => accepted.push(subject),
                        Ok(r) => panic!("submitting through node {n}: {}", r.status()),
                        Err(_) if base != fallback => {
                            unknown.push(subject);
                            base = fallback.clone();
                        }
                        Err(e) => panic!("submitting through node 0: {e}"),
                    }
                }
                (accepted, unknown)
            })
        })
        .collect();

    // Kill node 1 once sending is well under way.
    env.wait_for_messages(&rcpt, 300, Duration::from_secs(120)).await;
    nodes[1].child.kill().expect("kill -9");
    nodes[1].child.wait().expect("reap");
    let killed_at = Instant::now();
    // What the killed node had in flight: claimed by one of its workers, not finished.
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let in_flight: HashSet<String> =
        sqlx::query_scalar("SELECT subject FROM mails WHERE status = 'sending' AND locked_by LIKE 'mn-1/%'")
            .fetch_all(&pool)
            .await
            .expect("in flight")
            .into_iter()
            .collect();
    let delivered_before_kill = env.maildir_messages(&rcpt).len();

    let mut accepted = HashSet::new();
    let mut unknown = HashSet::new();
    for s in submitters {
        let (a, u) = s.await.expect("submitter");
        accepted.extend(a);
        unknown.extend(u);
    }
    assert_eq!(accepted.len() + unknown.len(), TOTAL);
    assert!(unknown.len() <= 1, "{} requests unanswered", unknown.len());
    assert!(delivered_before_kill < accepted.len(), "the kill came too late to test anything");

    let messages = eventually(Duration::from_secs(300), "every accepted mail to arrive", || async {
        let messages = env.maildir_messages(&rcpt);
        let got: HashSet<String> = subjects(&messages).into_iter().collect();
        accepted.is_subset(&got).then_some(messages)
    })
    .await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for s in subjects(&messages) {
        *count.entry(s).or_default() += 1;
    }
    let strangers: Vec<_> = count.keys().filter(|s| !accepted.contains(*s) && !unknown.contains(*s)).collect();
    assert!(strangers.is_empty(), "delivered but never submitted: {strangers:?}");
    let twice: Vec<&String> = count.iter().filter(|(_, n)| **n > 1).map(|(s, _)| s).collect();
    let not_in_flight: Vec<_> = twice.iter().filter(|s| !in_flight.contains(**s)).collect();
    assert!(not_in_flight.is_empty(), "delivered twice without being in flight on the killed node: {not_in_flight:?}");
    assert!(count.values().all(|n| *n <= 2), "a mail arrived more than twice");
    let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mails WHERE status = 'sent'").fetch_one(&pool).await.expect("count");
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mails").fetch_one(&pool).await.expect("count");
    eventually(Duration::from_secs(30), "every stored mail marked sent", || async {
        let sent: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM mails WHERE status = 'sent'").fetch_one(&pool).await.ok()?;
        (sent == stored).then_some(())
    })
    .await;
    // The token cache is per node: one token request per node that sent, not per mail.
    let tokens = env.idp.stats(&client_id).await.expect("idp stats").token_requests;
    assert!((1..=3).contains(&tokens), "{tokens} token requests for 3 nodes");
    eprintln!(
        "multinode send: {} accepted ({} unknown), {stored} stored, {delivered_before_kill} delivered before the kill, \
         {} in flight on the killed node, {} delivered twice, all delivered {:?} after the kill ({sent} marked sent then), \
         {tokens} token requests",
        accepted.len(),
        unknown.len(),
        in_flight.len(),
        twice.len(),
        killed_at.elapsed()
    );
    pool.close().await;
    drop(nodes);
}

/// Three in-process nodes on the test's database.
async fn three_apps(db: &PgDb, change: impl Fn(&mut Config) + Clone) -> Vec<TestApp> {
    let mut apps = Vec::new();
    for i in 0..3 {
        let url = db.url.clone();
        let change = change.clone();
        apps.push(
            TestApp::spawn_with(move |c| {
                c.database_url = url;
                c.master_key = Some(MASTER_KEY.into());
                c.node_id = Some(format!("node-{i}-{}", uuid::Uuid::new_v4().simple()));
                change(c);
            })
            .await,
        );
    }
    apps
}

/// 3 nodes retrieving one mailbox of 1 000 messages: each message stored exactly once, by the
/// one node holding the mailbox's lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_retrieving_one_mailbox_store_each_message_once() {
    const TOTAL: usize = 1000;
    let db = PgDb::create().await;
    record_secret(MASTER_KEY);
    let apps = three_apps(&db, |_| {}).await;
    let env = &apps[0].env;
    let user = env.unique_address("multinode-in");
    let messages: Vec<Vec<u8>> = (0..TOTAL)
        .map(|i| format!("Message-ID: <mn-{i}@example.test>\r\nSubject: retrieve {i}\r\n\r\nbody {i}\r\n").into_bytes())
        .collect();
    for chunk in messages.chunks(100) {
        env.deliver_lmtp(&user, chunk).await.expect("lmtp");
    }
    assert_eq!(env.folder_count(&user, "INBOX").expect("count"), TOTAL);
    let client = apps[0].microsoft_client(&[mailgate_testkit::ROLE_IMAP]).await;
    let account = apps[0]
        .imap_account(&client, &user, json!({"enabled": true, "idle": false, "poll_interval_secs": 5}))
        .await;
    let id = account["id"].as_str().expect("id").to_string();

    let started = Instant::now();
    eventually(Duration::from_secs(240), "the mailbox to be emptied", || async {
        let left = env.folder_count(&user, "INBOX").ok()?;
        let (_, page) = apps[1].get(&format!("/api/v1/inbox?account={id}&limit=1")).await;
        (left == 0 && page["total"].as_u64() == Some(TOTAL as u64)).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    let mut ids = HashSet::new();
    let mut rows = 0;
    for offset in (0..TOTAL).step_by(500) {
        let (_, page) = apps[2].get(&format!("/api/v1/inbox?account={id}&limit=500&offset={offset}")).await;
        for m in page["items"].as_array().expect("items") {
            rows += 1;
            ids.insert(m["message_id"].as_str().expect("message id").to_string());
        }
    }
    assert_eq!((rows, ids.len()), (TOTAL, TOTAL), "each message stored exactly once");
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let holders: Vec<String> = sqlx::query_scalar("SELECT owner FROM mailbox_leases WHERE account_id = $1")
        .bind(&id)
        .fetch_all(&pool)
        .await
        .expect("leases");
    assert_eq!(holders.len(), 1, "one node holds the mailbox");
    pool.close().await;
    eprintln!("multinode retrieve: {TOTAL} messages stored once each in {elapsed:?}, by {}", holders[0]);
    for app in apps {
        app.stop().await;
    }
}

/// An account edited through node A is used with its new settings by node B within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_edited_on_one_node_is_used_by_another_within_5_s() {
    let db = PgDb::create().await;
    record_secret(MASTER_KEY);
    let mut apps = three_apps(&db, |_| {}).await;
    let c = apps.pop().expect("node");
    let b = apps.pop().expect("node");
    let a = apps.pop().expect("node");
    let env = a.env.clone();
    let rcpt = env.unique_address("multinode-edit");
    // The account starts out pointing at a port where nothing listens.
    let account = a
        .smtp_account(json!({"name": "edited", "auth": "plain", "password": env.pass_sender, "port": free_port()}))
        .await;
    let id = account["id"].as_str().expect("id").to_string();
    let before = b.submit(json!({"account": "edited", "to": rcpt, "subject": "before the edit", "text": "x"})).await;
    eventually(Duration::from_secs(30), "the first attempt to fail", || async {
        let (_, mail) = b.get(&format!("/api/v1/mails/{before}")).await;
        mail["last_error"].is_string().then_some(())
    })
    .await;
    // Only B sends from now on: A and C stop (their workers give back what they hold).
    let (status, edited) = a.call(reqwest::Method::PATCH, &format!("/api/v1/accounts/{id}"), Some(json!({"port": env.smtp_starttls_port}))).await;
    assert_eq!(status, 200, "{edited}");
    let edited_at = Instant::now();
    a.stop().await;
    c.stop().await;
    let after = b.submit(json!({"account": "edited", "to": rcpt, "subject": "after the edit", "text": "x"})).await;
    b.wait_status(&after, "sent", Duration::from_secs(5).saturating_sub(edited_at.elapsed())).await;
    let took = edited_at.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    env.wait_for_messages(&rcpt, 1, Duration::from_secs(10)).await;
    eprintln!("multinode edit: node B sent with the edited account {took:?} after the edit");
    b.stop().await;
}

/// PostgreSQL restarted (a private instance, so other tests are not disturbed) while mails are
/// queued: nothing is lost, sending resumes, `/readyz` reports the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_with_mails_queued_loses_nothing_and_sending_resumes() {
    const TOTAL: usize = 1000;
    let pg = PrivatePg::start();
    record_secret(MASTER_KEY);
    let url = pg.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.database_url = url;
        c.master_key = Some(MASTER_KEY.into());
        c.spool.workers = 2;
        c.spool.batch_size = 10;
        c.spool.lease_secs = 10;
    })
    .await;
    let env = app.env.clone();
    app.smtp_account(json!({"name": "pgrestart", "auth": "plain", "password": env.pass_sender})).await;
    let rcpt = env.unique_address("pg-restart");
    // Submitted by 8 clients at once, faster than 2 workers send; the database goes away
    // right after the last 202, with most mails still queued.
    let app = Arc::new(app);
    let submitters: Vec<_> = (0..8)
        .map(|k| {
            let (app, rcpt) = (app.clone(), rcpt.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (k..TOTAL).step_by(8) {
                    let mail = json!({"account": "pgrestart", "to": rcpt, "subject": format!("restart {i}"), "text": "x"});
                    ids.push(app.submit(mail).await);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for s in submitters {
        ids.extend(s.await.expect("submitter"));
    }
    pg.stop();
    let down_at = Instant::now();
    let readyz = app.http.get(format!("{}/readyz", app.base)).send().await.expect("readyz");
    assert_ne!(readyz.status().as_u16(), 200, "/readyz while the database is down");
    let during = env.maildir_messages(&rcpt).len();
    pg.start_again();
    let messages = eventually(Duration::from_secs(120), "every mail to arrive", || async {
        let messages = env.maildir_messages(&rcpt);
        let got: HashSet<String> = subjects(&messages).into_iter().collect();
        (got.len() == TOTAL).then_some(messages)
    })
    .await;
    for id in &ids {
        app.wait_status(id, "sent", Duration::from_secs(60)).await;
    }
    let duplicates = messages.len() - TOTAL;
    // At most what the workers held when the database went away (2 workers × 10).
    assert!(duplicates <= 20, "{duplicates} duplicates");
    assert!(during < TOTAL, "every mail was sent before the database went down: nothing tested");
    eprintln!(
        "postgres restart: {during} of {TOTAL} delivered when it went down, all delivered {:?} later, {duplicates} twice",
        down_at.elapsed()
    );
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
}

/// A PostgreSQL server of its own (initdb in a temporary directory, run as the `postgres`
/// OS user), for tests that stop and start it.
struct PrivatePg {
    dir: std::path::PathBuf,
    port: u16,
    url: String,
    bin: std::path::PathBuf,
}

impl PrivatePg {
    fn start() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql (scripts/pg-env.sh installs them)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("pg_ctl").exists())
            .max()
            .expect("pg_ctl");
        let dir = std::env::temp_dir().join(format!("mailgate-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        as_postgres(&["chown", "-R", "postgres:postgres", dir.to_str().expect("path")], true);
        let data = dir.join("data");
        as_postgres(&[bin.join("initdb").to_str().expect("path"), "-D", data.to_str().expect("path"), "-U", "postgres", "--auth=trust", "-E", "UTF8"], false);
        let port = free_port();
        let pg = PrivatePg { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), dir, port, bin };
        pg.start_again();
        pg
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.join("data");
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let log = self.dir.join("log");
        let mut all = vec![self.bin.join("pg_ctl").to_str().expect("path").to_string(), "-D".into(), data.to_str().expect("path").into()];
        all.extend(["-o".into(), opts, "-l".into(), log.to_str().expect("path").into(), "-w".into()]);
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        as_postgres(&refs, false);
    }

    fn start_again(&self) {
        self.pg_ctl(&["start"]);
    }

    fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .current_dir("/")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap_or_default(), "stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a command as the `postgres` OS user (or, with `as_root`, as this user: root).
fn as_postgres(args: &[&str], as_root: bool) {
    let mut cmd = if as_root || !is_root() {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    } else {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(args);
        c
    };
    // The checkout may sit in a directory the postgres user cannot enter.
    cmd.current_dir("/");
    let out = cmd.output().unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}
