//! Retrieval from the real Dovecot: the corpus byte-exact and parsed, deletion only after the
//! commit, move mode, oversize messages, claims, IDLE.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mailgate_testkit::{ROLE_IMAP, ROLE_SMTP, eventually};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const DEADLINE: Duration = Duration::from_secs(30);

fn corpus() -> Vec<(Value, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let expected: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"))
        .expect("expected.json parses");
    expected
        .into_iter()
        .map(|e| {
            let raw = std::fs::read(dir.join(e["file"].as_str().expect("file"))).expect("corpus file");
            (e, raw)
        })
        .collect()
}

async fn inbox(app: &TestApp, account: &Value) -> Vec<Value> {
    let (_, page) = app.get(&format!("/api/v1/inbox?account={}&limit=1000&consumed=all", account["name"].as_str().unwrap_or(""))).await;
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_is_retrieved_byte_exact_parsed_and_removed_from_the_server() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_IMAP]).await;
    let user = app.env.unique_address("corpus");
    let corpus = corpus();
    for (_, raw) in &corpus {
        app.env.save_message(&user, "INBOX", raw).expect("save");
    }
    let account = app.imap_account(&client, &user, json!({})).await;
    let report = app.retrieve(&account).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["stored"], corpus.len(), "{report}");
    assert_eq!(app.env.folder_count(&user, "INBOX").expect("count"), 0, "the mailbox is empty afterwards");

    let items = inbox(&app, &account).await;
    assert_eq!(items.len(), corpus.len());
    for (expected, raw) in &corpus {
        let file = expected["file"].as_str().unwrap_or("");
        // Match stored and expected messages by their bytes.
        let mut found = None;
        for item in &items {
            let id = item["id"].as_str().unwrap_or("");
            let stored = app.http.get(format!("{}/api/v1/inbox/{id}/raw", app.base)).bearer_auth(&app.key).send().await.expect("raw");
            assert_eq!(stored.headers()["content-type"], "message/rfc822");
            if stored.bytes().await.expect("bytes").as_ref() == raw.as_slice() {
                found = Some(id.to_string());
                break;
            }
        }
        let id = found.unwrap_or_else(|| panic!("{file}: no stored message has the delivered bytes"));
        let (_, m) = app.get(&format!("/api/v1/inbox/{id}")).await;
        let p = &m["parsed"];
        let broken = expected["broken"].as_bool().unwrap_or(false);
        assert_eq!(m["flagged"], broken, "{file}: flagged should be {broken}: {:?}", m["problems"]);
        if let Some(mid) = expected.get("message_id") {
            assert_eq!(&p["message_id"], mid, "{file}");
        }
        if let Some(subject) = expected.get("subject") {
            assert_eq!(&p["subject"], subject, "{file}");
        }
        if let Some(addr) = expected.get("from_address").filter(|v| !v.is_null()) {
            assert_eq!(&p["from"]["address"], addr, "{file}");
        }
        if let Some(name) = expected.get("from_name").filter(|v| !v.is_null()) {
            assert_eq!(&p["from"]["name"], name, "{file}");
        }
        for (field, key) in [("to", "to"), ("cc", "cc")] {
            if let Some(list) = expected.get(key).and_then(Value::as_array) {
                let got: Vec<&str> = p[field].as_array().map(|a| a.iter().filter_map(|x| x["address"].as_str()).collect()).unwrap_or_default();
                let want: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
                assert_eq!(got, want, "{file}: {field}");
            }
        }
        if let Some(date) = expected.get("date") {
            assert_eq!(&p["date"], date, "{file}: date");
        }
        for snippet in expected["text_contains"].as_array().into_iter().flatten() {
            let text = p["text"].as_str().unwrap_or("");
            assert!(text.contains(snippet.as_str().unwrap_or("")), "{file}: text lacks {snippet}: {text:.300}");
        }
        for snippet in expected["html_contains"].as_array().into_iter().flatten() {
            let html = p["html"].as_str().unwrap_or("");
            assert!(html.contains(snippet.as_str().unwrap_or("")), "{file}: html lacks {snippet}");
        }
        if let Some(want) = expected["attachments"].as_array() {
            let got = p["attachments"].as_array().cloned().unwrap_or_default();
            assert_eq!(got.len(), want.len(), "{file}: attachments {got:?}");
            for (n, (g, w)) in got.iter().zip(want).enumerate() {
                if !w["filename"].is_null() {
                    assert_eq!(g["filename"], w["filename"], "{file}: attachment {n}");
                } else {
                    assert!(g["filename"].as_str().is_some_and(|f| f.ends_with(".eml") || f.contains('.')), "{file}: {g}");
                }
                assert_eq!(g["content_type"], w["content_type"], "{file}: attachment {n}");
                if !w["size"].is_null() {
                    assert_eq!(g["size"], w["size"], "{file}: attachment {n} size");
                }
                if let Some(inline) = w.get("inline") {
                    assert_eq!(&g["inline"], inline, "{file}: attachment {n} inline");
                }
                if let Some(cid) = w.get("content_id").filter(|v| !v.is_null()) {
                    assert_eq!(&g["content_id"], cid, "{file}: attachment {n} content id");
                }
                let download = app
                    .http
                    .get(format!("{}/api/v1/inbox/{id}/attachments/{n}", app.base))
                    .bearer_auth(&app.key)
                    .send()
                    .await
                    .expect("download");
                assert_eq!(download.status(), 200);
                assert_eq!(download.bytes().await.expect("bytes").len() as u64, g["size"].as_u64().unwrap_or(0), "{file}: download {n}");
            }
        }
    }
    let (_, traffic) = app.get("/api/v1/traffic?direction=in&limit=100").await;
    assert_eq!(traffic["total"], corpus.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_are_retrieved_once_each() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_IMAP]).await;
    let user = app.env.unique_address("thousand");
    let messages: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("From: a@example.test\r\nTo: {user}\r\nSubject: n{i}\r\nMessage-ID: <n{i}@example.test>\r\n\r\nbody {i}\r\n").into_bytes())
        .collect();
    app.env.deliver_lmtp(&user, &messages).await.expect("lmtp");
    let account = app.imap_account(&client, &user, json!({})).await;
    let report = app.retrieve(&account).await;
    assert_eq!(report["stored"], 1000, "{report}");
    let again = app.retrieve(&account).await;
    assert_eq!((again["stored"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(0)), "{again}");
    let items = inbox(&app, &account).await;
    let subjects: HashSet<&str> = items.iter().filter_map(|i| i["subject"].as_str()).collect();
    assert_eq!((items.len(), subjects.len()), (1000, 1000), "each message stored exactly once");
    assert_eq!(app.env.folder_count(&user, "INBOX").expect("count"), 0);
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
    let expected = format!("mailgate_messages_retrieved_total{{account=\"{}\"}} 1000", account["name"].as_str().unwrap_or(""));
    assert!(metrics.lines().any(|l| l == expected), "missing '{expected}' in\n{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_committed_but_not_removed_are_not_stored_twice() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_IMAP]).await;
    let user = app.env.unique_address("commit");
    let messages: Vec<Vec<u8>> =
        (0..30).map(|i| format!("From: a@example.test\r\nSubject: c{i}\r\n\r\nbody {i}\r\n").into_bytes()).collect();
    app.env.deliver_lmtp(&user, &messages).await.expect("lmtp");
    // Moving to a folder that does not exist fails after the commit: the state a crash
    // between commit and expunge leaves behind.
    let account = app.imap_account(&client, &user, json!({"after_retrieval": "move", "move_folder": "Does-Not-Exist"})).await;
    let report = app.retrieve(&account).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(app.env.folder_count(&user, "INBOX").expect("count"), 30, "nothing removed");
    assert_eq!(inbox(&app, &account).await.len(), 25, "the first batch was committed");
    let (status, _) = app
        .call(Method::PATCH, &format!("/api/v1/accounts/{}", account["id"].as_str().unwrap_or("")), Some(json!({"after_retrieval": "delete"})))
        .await;
    assert_eq!(status, 200);
    let report = app.retrieve(&account).await;
    assert_eq!((report["stored"].as_u64(), report["duplicates"].as_u64()), (Some(5), Some(25)), "{report}");
    assert_eq!(inbox(&app, &account).await.len(), 30, "no duplicate record");
    assert_eq!(app.env.folder_count(&user, "INBOX").expect("count"), 0, "nothing left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_mode_leaves_the_messages_in_the_target_folder() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_IMAP]).await;
    let user = app.env.unique_address("move");
    app.env.create_folder(&user, "Processed").expect("folder");
    let messages: Vec<Vec<u8>> = (0..3).map(|i| format!("Subject: m{i}\r\n\r\nx\r\n").into_bytes()).collect();
    app.env.deliver_lmtp(&user, &messages).await.expect("lmtp");
    let account = app.imap_account(&client, &user, json!({"after_retrieval": "move", "move_folder": "Processed"})).await;
    let report = app.retrieve(&account).await;
    assert_eq!(report["stored"], 3, "{report}");
    assert_eq!(app.env.folder_count(&user, "INBOX").expect("count"), 0);
    assert_eq!(app.env.folder_count(&user, "Processed").expect("count"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_stays_on_the_server_and_the_account_says_why() {
    let app = TestApp::spawn_with(|c| c.limits.max_message_bytes = 50_000).await;
    let client = app.microsoft_client(&[ROLE_IMAP]).await;
    let user = app.env.unique_address("big");
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(200_000)).into_bytes();
    app.env.deliver_lmtp(&user, &[b"Subject: small\r\n\r\nsmall\r\n".to_vec(), big]).await.expect("lmtp");
    let account = app.imap_account(&client, &user, json!({})).await;
    let report = app.retrieve(&account).await;
    assert_eq!((report["stored"].as_u64(), report["oversize"].as_u64()), (Some(1), Some(1)), "{report}");
    assert_eq!(app.env.folder_count(&user, "INBOX").expect("count"), 1, "the big one stays");
    let (_, view) = app.get(&format!("/api/v1/accounts/{}", account["id"].as_str().unwrap_or(""))).await;
    let oversize = &view["retrieval"]["oversize"];
    assert_eq!(oversize.as_array().map(Vec::len), Some(1), "{view}");
    assert!(oversize[0]["size"].as_u64().is_some_and(|s| s > 200_000), "{view}");
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
    let gauge = format!("mailgate_retrieval_oversize_messages{{account=\"{}\"}} 1", account["name"].as_str().unwrap_or(""));
    assert!(metrics.contains(&gauge), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_never_get_the_same_message_and_a_lapsed_claim_returns() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_IMAP]).await;
    let user = app.env.unique_address("claim");
    let messages: Vec<Vec<u8>> = (0..40).map(|i| format!("Subject: q{i}\r\n\r\nx\r\n").into_bytes()).collect();
    app.env.deliver_lmtp(&user, &messages).await.expect("lmtp");
    let account = app.imap_account(&client, &user, json!({})).await;
    app.retrieve(&account).await;
    let app = std::sync::Arc::new(app);
    let mut consumers = Vec::new();
    for _ in 0..4 {
        let app = app.clone();
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let (status, m) = app.post("/api/v1/inbox/claim", json!({"lease_secs": 60})).await;
                if status == 204 {
                    return got;
                }
                assert_eq!(status, 200, "{m}");
                let id = m["id"].as_str().expect("id").to_string();
                let (status, _) = app.call(Method::DELETE, &format!("/api/v1/inbox/{id}"), None).await;
                assert_eq!(status, 204);
                got.push(id);
            }
        }));
    }
    let mut all = Vec::new();
    for c in consumers {
        all.extend(c.await.expect("consumer"));
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (40, 40), "every message handed out exactly once");

    app.env.deliver_lmtp(&user, &[b"Subject: lapse\r\n\r\nx\r\n".to_vec()]).await.expect("lmtp");
    app.retrieve(&account).await;
    let (_, first) = app.post("/api/v1/inbox/claim", json!({"lease_secs": 5})).await;
    let (status, _) = app.post("/api/v1/inbox/claim", json!({"lease_secs": 5})).await;
    assert_eq!(status, 204, "a claimed message is not handed out again while the lease holds");
    let again = eventually(Duration::from_secs(10), "the lapsed claim to be handed out again", || async {
        let (status, m) = app.post("/api/v1/inbox/claim", json!({"lease_secs": 5})).await;
        (status == 200).then_some(m)
    })
    .await;
    assert_eq!(again["id"], first["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_idle_a_delivered_message_is_stored_within_two_seconds() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_IMAP]).await;
    let user = app.env.unique_address("idle");
    let account = app.imap_account(&client, &user, json!({"enabled": true, "idle": true})).await;
    let account_path = format!("/api/v1/accounts/{}", account["id"].as_str().unwrap_or(""));
    eventually(DEADLINE, "the first pass of the account task", || async {
        let (_, view) = app.get(&account_path).await;
        view["retrieval"]["last_success_at"].is_string().then_some(())
    })
    .await;
    // The task is in IDLE now (or about to be): deliver and time it.
    for round in 0..2 {
        let started = Instant::now();
        app.env.deliver_lmtp(&user, &[format!("Subject: idle {round}\r\n\r\nx\r\n").into_bytes()]).await.expect("lmtp");
        eventually(Duration::from_secs(2), "the message to be stored within 2 s", || async {
            (inbox(&app, &account).await.len() == round + 1).then_some(())
        })
        .await;
        eprintln!("IDLE round {round}: stored after {} ms", started.elapsed().as_millis());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_failures_are_named_password_login_works() {
    let app = TestApp::spawn().await;
    // A token without IMAP.AccessAsApp: the server refuses it, the challenge is kept.
    let smtp_only = app.microsoft_client(&[ROLE_SMTP]).await;
    let account = app.imap_account(&smtp_only, &app.env.unique_address("role"), json!({})).await;
    let report = app.retrieve(&account).await;
    assert_eq!(report["ok"], false);
    let error = report["error"].as_str().unwrap_or("");
    assert!(error.contains("AUTHENTICATE XOAUTH2") && error.contains("challenge") && error.contains("IMAP.AccessAsApp"), "{error}");
    let (_, view) = app.get(&format!("/api/v1/accounts/{}", account["id"].as_str().unwrap_or(""))).await;
    assert_eq!(view["retrieval"]["last_error"].as_str(), Some(error), "the account shows why");

    let client = app.microsoft_client(&[ROLE_IMAP]).await;
    let account = app.imap_account(&client, &app.env.unique_address("folder"), json!({"imap_folder": "No/Such/Folder"})).await;
    let report = app.retrieve(&account).await;
    assert!(report["error"].as_str().unwrap_or("").contains("'No/Such/Folder' cannot be selected"), "{report}");

    // PLAIN over STARTTLS on the shared reader mailbox.
    app.env.deliver_lmtp(&app.env.user_reader, &[b"Subject: for the reader\r\n\r\nx\r\n".to_vec()]).await.expect("lmtp");
    let (status, account) = app
        .post("/api/v1/accounts", json!({"name": "reader", "protocol": "imap", "auth": "plain", "username": app.env.user_reader,
            "password": app.env.pass_reader, "host": "localhost", "connection": "starttls", "port": app.env.imap_starttls_port, "enabled": false}))
        .await;
    assert_eq!(status, 201, "{account}");
    let report = app.retrieve(&account).await;
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["stored"].as_u64() >= Some(1), "{report}");
}
