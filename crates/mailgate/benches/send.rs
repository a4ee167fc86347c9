//! Send benchmark: 5 000 small mails through a real mailgate process (release build), from the
//! first submission until the sink has accepted the last one, beside Postfix relaying the same
//! number of mails through its queue to the same sink.
//!
//! Paths measured (sink = Postfix's `smtp-sink`):
//! 1. mailgate → Dovecot submission with real XOAUTH2 (token checked by introspection) → sink
//! 2. mailgate → sink directly (no TLS, no AUTH): mailgate's own ceiling
//! 3. `smtp-source` → Postfix (queue on disk) → sink: the anchor a user would pick instead
//!
//! Run with scripts/bench.sh (it starts the servers). Prints a table; nothing is asserted.
//!
//! `MG_BENCH_PG_URL` (a PostgreSQL admin URL): mailgate runs on a fresh PostgreSQL database
//! instead of SQLite, with `MG_BENCH_NODES` nodes (default 1) sharing it; submissions go to the
//! nodes in turn.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Mailgate, env_file_values, start_mailgate, start_node, wait_port};

use mailgate_testkit::{ROLE_SMTP, TestEnv, eventually};
use serde_json::json;

struct RunResult {
    mails: usize,
    seconds: f64,
    submit_seconds: f64,
}

/// Submits `n` mails with 16 concurrent clients (to the nodes in turn); waits until all are sent.
async fn run(nodes: &[Arc<Mailgate>], account: &str, n: usize, already_sent: i64) -> RunResult {
    let mg = &nodes[0];
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..16 {
        let mg = nodes[c % nodes.len()].clone();
        let next = next.clone();
        let account = account.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                mg.post(
                    "/api/v1/mails",
                    json!({"account": account, "to": format!("rcpt{i}@sink.test"), "subject": format!("bench {i}"), "text": "A small benchmark mail.\n"}),
                )
                .await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("submitter");
    }
    let submit_seconds = started.elapsed().as_secs_f64();
    let target = already_sent + n as i64;
    eventually(Duration::from_secs(600), "all mails sent", || async {
        (mg.sent_count().await >= target).then_some(())
    })
    .await;
    RunResult { mails: n, seconds: started.elapsed().as_secs_f64(), submit_seconds }
}

/// Server-side latency (accepted → the sink's 250) of single mails to an idle mailgate.
async fn idle_latencies(mg: &Mailgate, account: &str, samples: usize) -> Vec<i64> {
    let mut out = Vec::new();
    for i in 0..samples {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let id = mg.post("/api/v1/mails", json!({"account": account, "to": format!("idle{i}@sink.test"), "text": "idle"})).await["id"]
            .as_str()
            .expect("id")
            .to_string();
        let mail = eventually(Duration::from_secs(10), "idle mail sent", || async {
            let m = mg.get(&format!("/api/v1/mails/{id}")).await;
            (m["status"] == "sent").then_some(m)
        })
        .await;
        let created = mailgate_core_ms(mail["created_at"].as_str().expect("created"));
        let sent = mailgate_core_ms(mail["sent_at"].as_str().expect("sent"));
        out.push(sent - created);
    }
    out
}

fn mailgate_core_ms(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).expect("time");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn postfix_sent_to_sink(log: &Path, sink_port: &str) -> usize {
    let needle = format!(":{sink_port}, ");
    std::fs::read_to_string(log).unwrap_or_default().lines().filter(|l| l.contains(&needle) && l.contains("status=sent")).count()
}

fn postfix_anchor(env: &TestEnv, sink_port: &str, n: usize) -> f64 {
    let log = env.dir.join("postfix.log");
    let _ = Command::new("postsuper").args(["-c", env.postfix_config.to_str().expect("path"), "-d", "ALL"]).output();
    let before = postfix_sent_to_sink(&log, sink_port);
    let started = Instant::now();
    let status = Command::new("/usr/sbin/smtp-source")
        .args(["-s", "16", "-m", &n.to_string(), "-f", "bench@example.test", "-t", "rcpt@sink.test"])
        .arg(format!("127.0.0.1:{}", env.smtp_relay_port))
        .status()
        .expect("smtp-source");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(600);
    while postfix_sent_to_sink(&log, sink_port) < before + n {
        assert!(Instant::now() < deadline, "postfix did not deliver everything");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("MG_BENCH_MAILS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    // Parallel SMTP sessions of the benchmark's accounts (the default for new accounts is 4;
    // a local sink takes more than Microsoft 365 allows per mailbox).
    let sessions: u32 = std::env::var("MG_BENCH_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let env = TestEnv::load();
    let values = env_file_values(&TestEnv::env_file());
    let sink_port = values.get("MG_SINK_PORT").expect("MG_SINK_PORT in the env file").clone();
    let submission_port: u16 = values.get("MG_SUBMISSION_SINK_PORT").and_then(|p| p.parse().ok()).expect("MG_SUBMISSION_SINK_PORT");
    let mut sink = Command::new("/usr/sbin/smtp-sink")
        .args(["-u", "nobody", &format!("127.0.0.1:{sink_port}"), "2000"])
        .stdout(Stdio::null())
        .spawn()
        .expect("smtp-sink (from Debian's postfix package)");
    wait_port(sink_port.parse().expect("port"));

    let dir: PathBuf = std::env::temp_dir().join(format!("mailgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pg = match std::env::var("MG_BENCH_PG_URL") {
        Ok(admin) if !admin.is_empty() => Some(BenchDb::create(&admin).await),
        _ => None,
    };
    let node_count: usize = std::env::var("MG_BENCH_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let mut nodes: Vec<Arc<Mailgate>> = Vec::new();
    match &pg {
        None => nodes.push(Arc::new(start_mailgate(&env, &dir).await)),
        Some(db) => {
            for i in 0..node_count {
                let key = nodes.first().map(|n| n.key.clone());
                nodes.push(Arc::new(start_node(&env, &dir.join(format!("bench-node-{i}")), Some(&db.url), key).await));
            }
        }
    }
    let mg = nodes[0].clone();

    let client_id = mg.oauth_client(&env, ROLE_SMTP).await;
    mg.post(
        "/api/v1/accounts",
        json!({"name": "xoauth2", "protocol": "smtp", "auth": "xoauth2", "oauth_client": "bench", "username": env.user_sender,
               "send_address": env.user_sender, "host": "127.0.0.1", "connection": "starttls", "port": submission_port,
               "max_sessions": sessions}),
    )
    .await;
    mg.post(
        "/api/v1/accounts",
        json!({"name": "direct", "protocol": "smtp", "auth": "none", "send_address": env.user_sender,
               "host": "127.0.0.1", "connection": "none", "port": sink_port.parse::<u16>().expect("port"), "max_sessions": sessions}),
    )
    .await;

    let xoauth2 = run(&nodes, "xoauth2", n, 0).await;
    let tokens = env.idp.stats(&client_id).await.expect("stats").token_requests;
    let latencies = {
        let mut l = idle_latencies(&mg, "xoauth2", 20).await;
        l.sort_unstable();
        l
    };
    let sent_so_far = mg.sent_count().await;
    let direct = run(&nodes, "direct", n, sent_so_far).await;
    let peak_kib = nodes.iter().map(|n| n.peak_rss_kib()).max().unwrap_or(0);
    let postfix_seconds = postfix_anchor(&env, &sink_port, n);
    let _ = sink.kill();
    let _ = sink.wait();
    drop(mg);
    drop(nodes);
    let on_pg = pg.is_some();
    if let Some(db) = pg {
        db.drop_now().await;
    }
    let _ = std::fs::remove_dir_all(&dir);

    let rate = |r: &RunResult| r.mails as f64 / r.seconds;
    println!();
    let store = if on_pg { format!("PostgreSQL, {node_count} node(s)") } else { "SQLite, 1 node".to_string() };
    println!("send benchmark, {n} mails, {sessions} SMTP sessions per account and node, {store}, {} cores", std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0));
    println!("| path | mails/s | total s | submit s |");
    println!("|---|---|---|---|");
    println!("| mailgate → Dovecot submission (STARTTLS, XOAUTH2) → smtp-sink | {:.0} | {:.2} | {:.2} |", rate(&xoauth2), xoauth2.seconds, xoauth2.submit_seconds);
    println!("| mailgate → smtp-sink (plain, no AUTH) | {:.0} | {:.2} | {:.2} |", rate(&direct), direct.seconds, direct.submit_seconds);
    println!("| smtp-source → Postfix (queue) → smtp-sink | {:.0} | {:.2} | – |", n as f64 / postfix_seconds, postfix_seconds);
    println!();
    println!("token requests for the XOAUTH2 run: {tokens}");
    println!("mailgate peak RSS over both runs (largest node): {:.1} MiB", peak_kib as f64 / 1024.0);
    println!(
        "idle mail, accepted → sink's 250 (20 samples): min {} ms, median {} ms, p95 {} ms, max {} ms",
        latencies[0],
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies[latencies.len() - 1]
    );
}

/// A fresh PostgreSQL database for one benchmark run.
struct BenchDb {
    admin: sqlx::PgPool,
    name: String,
    url: String,
}

impl BenchDb {
    async fn create(admin_url: &str) -> BenchDb {
        let admin = sqlx::PgPool::connect(admin_url).await.expect("PostgreSQL (MG_BENCH_PG_URL)");
        let name = format!("mg_bench_{}", std::process::id());
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name}")).execute(&admin).await.expect("drop");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create");
        let (base, query) = admin_url.split_once('?').map_or((admin_url, String::new()), |(b, q)| (b, format!("?{q}")));
        let host_end = base.find("://").map_or(0, |i| i + 3);
        let host = base[host_end..].find('/').map_or(base, |i| &base[..host_end + i]);
        BenchDb { url: format!("{host}/{name}{query}"), admin, name }
    }

    async fn drop_now(self) {
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&self.admin).await;
    }
}
