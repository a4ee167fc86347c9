//! Retrieval benchmark: 2 000 messages of mixed sizes retrieved from Dovecot by a real mailgate
//! process (release build) — once with XOAUTH2, once with PLAIN on the same mailbox fetchmail
//! then drains — beside Debian's fetchmail delivering the same 2 000 messages to a file.
//!
//! Run with scripts/bench.sh. Prints a table; nothing is asserted.

mod common;

use std::process::Command;
use std::time::Instant;

use common::start_mailgate;
use mailgate_testkit::{ROLE_IMAP, TestEnv};
use serde_json::json;

/// 2 000 messages: 70 % of 2 KB, 25 % of 20 KB, 5 % of 200 KB (bodies in base64 lines).
fn messages(n: usize) -> (Vec<Vec<u8>>, u64) {
    let mut total = 0u64;
    let out: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let size = match i % 20 {
                0 => 200_000,
                1..=5 => 20_000,
                _ => 2_000,
            };
            let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\r\n";
            let body: String = line.repeat(size / line.len() + 1);
            let m = format!(
                "From: Bench <bench@example.test>\r\nTo: user@example.test\r\nSubject: bench {i}\r\nMessage-ID: <bench-{i}@example.test>\r\n\
                 MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nmessage {i}\r\n\
                 --b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"data-{i}.bin\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{body}--b--\r\n"
            )
            .into_bytes();
            total += m.len() as u64;
            m
        })
        .collect();
    (out, total)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("MG_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let env = TestEnv::load();
    let (batch, bytes) = messages(n);
    let dir = std::env::temp_dir().join(format!("mailgate-bench-retrieve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mg = start_mailgate(&env, &dir).await;

    mg.oauth_client(&env, ROLE_IMAP).await;

    // 1. XOAUTH2 over implicit TLS, a fresh mailbox.
    let user = env.unique_address("bench-imap");
    env.deliver_lmtp(&user, &batch).await.expect("deliver");
    let xoauth2 = mg
        .post(
            "/api/v1/accounts",
            json!({"name": "xoauth2", "protocol": "imap", "auth": "xoauth2", "oauth_client": "bench", "username": user,
                   "host": "localhost", "connection": "tls", "port": env.imap_tls_port, "enabled": false}),
        )
        .await;
    let started = Instant::now();
    let report = mg.post(&format!("/api/v1/accounts/{}/retrieve", xoauth2["id"].as_str().expect("id")), json!({})).await;
    let xoauth2_secs = started.elapsed().as_secs_f64();
    assert_eq!(report["stored"], n, "{report}");

    // 2. PLAIN over implicit TLS on the reader mailbox (the one fetchmail drains next).
    let reader = env.user_reader.clone();
    while env.folder_count(&reader, "INBOX").unwrap_or(0) > 0 {
        env.doveadm(&["expunge", "-u", &reader, "mailbox", "INBOX", "all"], None).expect("empty reader");
    }
    env.deliver_lmtp(&reader, &batch).await.expect("deliver");
    let plain = mg
        .post(
            "/api/v1/accounts",
            json!({"name": "plain", "protocol": "imap", "auth": "plain", "username": reader, "password": env.pass_reader,
                   "host": "localhost", "connection": "tls", "port": env.imap_tls_port, "enabled": false}),
        )
        .await;
    let started = Instant::now();
    let report = mg.post(&format!("/api/v1/accounts/{}/retrieve", plain["id"].as_str().expect("id")), json!({})).await;
    let plain_secs = started.elapsed().as_secs_f64();
    assert_eq!(report["stored"], n, "{report}");
    let peak_kib = mg.peak_rss_kib();
    drop(mg);

    // 3. fetchmail, same mailbox, same messages, BSMTP to a file.
    env.deliver_lmtp(&reader, &batch).await.expect("deliver");
    let rc = dir.join("fetchmailrc");
    let out = dir.join("fetched.bsmtp");
    std::fs::write(
        &rc,
        format!(
            "poll localhost port {} protocol IMAP auth password\n  user \"{reader}\" password \"{}\" ssl sslcertck sslcertfile \"{}\"\n",
            env.imap_tls_port,
            env.pass_reader,
            env.ca.display()
        ),
    )
    .expect("rc");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let started = Instant::now();
    let status = Command::new("fetchmail")
        .args(["-f", rc.to_str().expect("path"), "--nokeep", "--fetchall", "--batchlimit", "0", "--fetchsizelimit", "0", "--silent"])
        .arg("--bsmtp")
        .arg(&out)
        .env("FETCHMAILHOME", &dir)
        .status()
        .expect("fetchmail (apt-get install fetchmail)");
    let fetchmail_secs = started.elapsed().as_secs_f64();
    assert!(status.success() || status.code() == Some(1), "fetchmail failed: {status}");
    let left = env.folder_count(&reader, "INBOX").unwrap_or(usize::MAX);
    let _ = std::fs::remove_dir_all(&dir);

    let mib = bytes as f64 / 1_048_576.0;
    println!();
    println!("retrieval benchmark: {n} messages, {mib:.1} MiB, mixed sizes (70 % 2 KB, 25 % 20 KB, 5 % 200 KB)");
    println!("| client | messages/s | MiB/s | seconds |");
    println!("|---|---|---|---|");
    println!("| mailgate, XOAUTH2, IMAPS | {:.0} | {:.1} | {xoauth2_secs:.2} |", n as f64 / xoauth2_secs, mib / xoauth2_secs);
    println!("| mailgate, PLAIN, IMAPS | {:.0} | {:.1} | {plain_secs:.2} |", n as f64 / plain_secs, mib / plain_secs);
    println!("| fetchmail, PLAIN, IMAPS → BSMTP file | {:.0} | {:.1} | {fetchmail_secs:.2} |", n as f64 / fetchmail_secs, mib / fetchmail_secs);
    println!();
    println!("mailgate peak RSS over both runs: {:.1} MiB; fetchmail left {left} messages", peak_kib as f64 / 1024.0);
}
