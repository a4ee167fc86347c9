//! The REST API's contract: validation, idempotency, keys and scopes, secrets never shown.

use std::time::Duration;

use mail_parser::MessageParser;
use mailgate_testkit::ROLE_SMTP;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, logs};

const DEADLINE: Duration = Duration::from_secs(30);

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"].as_array().map(|a| a.iter().map(|e| e["field"].as_str().unwrap_or("").to_string()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_get_per_field_problems_and_nothing_is_spooled() {
    let app = TestApp::spawn().await;
    let account = app.smtp_account(json!({"auth": "plain", "password": app.env.pass_sender})).await;
    let name = account["name"].clone();

    let (status, problem) = app
        .post("/api/v1/mails", json!({
            "account": name, "to": ["ok@example.test", "bad address"], "cc": "x@example.test\r\nBcc: evil@example.test",
            "subject": "hi\r\nBcc: evil@example.test", "headers": {"X-Ok": "fine", "X-Evil": "a\nBcc: evil@example.test", "From": "spoof@example.test"},
            "attachments": [{"filename": "a.txt", "content_base64": "%%%"}]
        }))
        .await;
    assert_eq!(status, 422, "{problem}");
    let f = fields(&problem);
    for expected in ["to[1]", "cc[0]", "subject", "headers.X-Evil", "headers.From", "attachments[0].content_base64"] {
        assert!(f.contains(&expected.to_string()), "missing {expected} in {f:?}");
    }
    assert!(!f.contains(&"headers.X-Ok".to_string()));

    let (status, problem) = app.post("/api/v1/mails", json!({"account": name, "to": "a@example.test", "sender_name": "x"})).await;
    assert_eq!(status, 422, "unknown fields are refused: {problem}");
    let (status, problem) = app.post("/api/v1/mails", json!({"to": "a@example.test"})).await;
    assert_eq!(status, 422);
    assert_eq!(fields(&problem), vec!["account"], "no random account is picked: {problem}");
    let (status, problem) = app.post("/api/v1/mails", json!({"account": "no-such-account", "to": "a@example.test"})).await;
    assert_eq!((status, fields(&problem)), (422, vec!["account".to_string()]));

    let response = app
        .http
        .post(format!("{}/api/v1/mails", app.base))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body("{\"to\": [")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let response = app.http.post(format!("{}/api/v1/mails", app.base)).bearer_auth(&app.key).body("hello").send().await.expect("send");
    assert_eq!(response.status(), 415);

    let (_, page) = app.get("/api/v1/mails").await;
    assert_eq!(page["total"], 0, "nothing was spooled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_are_refused_with_the_limit_named() {
    let app = TestApp::spawn_with(|c| c.limits.max_message_bytes = 100_000).await;
    let account = app.smtp_account(json!({"auth": "plain", "password": app.env.pass_sender})).await;
    let big = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![7u8; 120_000]);
    let (status, problem) = app
        .post("/api/v1/mails", json!({"account": account["name"], "to": "a@example.test", "attachments": [{"filename": "big.bin", "content_base64": big}]}))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem.to_string().contains("over the limit of 100000"), "{problem}");
    let huge = "x".repeat(1_500_000);
    let response = app
        .http
        .post(format!("{}/api/v1/mails", app.base))
        .bearer_auth(&app.key)
        .header("content-type", "message/rfc822")
        .body(format!("From: a@example.test\r\nTo: b@example.test\r\n\r\n{huge}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413, "the body limit follows max_message_bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_twice_spools_one_mail() {
    let app = TestApp::spawn().await;
    let account = app.smtp_account(json!({"auth": "plain", "password": app.env.pass_sender})).await;
    let rcpt = app.env.unique_address("idem");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = app
            .http
            .post(format!("{}/api/v1/mails", app.base))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", "order-4711-confirmation")
            .json(&json!({"account": account["name"], "to": rcpt, "subject": "once", "text": "x"}))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.expect("json");
        ids.push(body["id"].as_str().expect("id").to_string());
    }
    assert_eq!(ids[0], ids[1]);
    app.wait_status(&ids[0], "sent", DEADLINE).await;
    let (_, page) = app.get("/api/v1/mails").await;
    assert_eq!(page["total"], 1);
    assert_eq!(app.env.wait_for_messages(&rcpt, 1, DEADLINE).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_message_is_sent_as_is_without_its_bcc_header() {
    let app = TestApp::spawn().await;
    let account = app.smtp_account(json!({"auth": "plain", "password": app.env.pass_sender})).await;
    let to = app.env.unique_address("raw-to");
    let hidden = app.env.unique_address("raw-bcc");
    let raw = format!(
        "From: Raw Sender <{}>\nTo: {to}\nBcc: {hidden}\nSubject: raw submission\nMessage-ID: <fixed-123@example.test>\n\n.leading dot line\nbody\n",
        app.env.user_sender
    );
    let response = app
        .http
        .post(format!("{}/api/v1/mails?account={}", app.base, account["name"].as_str().unwrap_or("")))
        .bearer_auth(&app.key)
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["message_id"], "fixed-123@example.test");
    for rcpt in [&to, &hidden] {
        let delivered = app.env.wait_for_messages(rcpt, 1, DEADLINE).await;
        let text = String::from_utf8_lossy(&delivered[0]).to_string();
        assert!(!text.contains(hidden.as_str()), "Bcc must not be visible: {text}");
        assert!(text.contains("\r\n.leading dot line\r\n") || text.contains("\n.leading dot line\n"), "{text}");
        let parsed = MessageParser::default().parse(&delivered[0]).expect("parse");
        assert_eq!(parsed.message_id(), Some("fixed-123@example.test"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_and_sending_keys_see_only_their_own_mail() {
    let app = TestApp::spawn().await;
    let account = app.smtp_account(json!({"auth": "plain", "password": app.env.pass_sender})).await;
    let (status, problem) = app.call_with_key("mgk_wrong", Method::GET, "/api/v1/mails", None).await;
    assert_eq!(status, 401, "{problem}");
    let response = app.http.get(format!("{}/api/v1/mails", app.base)).send().await.expect("send");
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    let (status, created) = app.post("/api/v1/api-keys", json!({"name": "billing app"})).await;
    assert_eq!(status, 201, "{created}");
    let sender_key = created["key"].as_str().expect("key shown once").to_string();
    let (_, keys) = app.get("/api/v1/api-keys").await;
    assert!(!keys.to_string().contains(&sender_key), "listing never shows keys");

    let (status, _) = app.call_with_key(&sender_key, Method::GET, "/api/v1/accounts", None).await;
    assert_eq!(status, 403, "sending keys cannot manage accounts");
    let (status, answer) = app
        .call_with_key(&sender_key, Method::POST, "/api/v1/mails", Some(json!({"account": account["name"], "to": "a@example.test", "text": "mine"})))
        .await;
    assert_eq!(status, 202);
    let admin_mail = app.submit(json!({"account": account["name"], "to": "b@example.test", "text": "admin's"})).await;
    let (_, own) = app.call_with_key(&sender_key, Method::GET, "/api/v1/mails", None).await;
    assert_eq!(own["total"], 1, "{own}");
    assert_eq!(own["items"][0]["id"], answer["id"]);
    let (status, _) = app.call_with_key(&sender_key, Method::GET, &format!("/api/v1/mails/{admin_mail}"), None).await;
    assert_eq!(status, 404);
    let (_, all) = app.get("/api/v1/mails").await;
    assert_eq!(all["total"], 2);

    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{}", created["id"].as_str().unwrap_or("")), None).await;
    assert_eq!(status, 204);
    let (status, _) = app.call_with_key(&sender_key, Method::GET, "/api/v1/mails", None).await;
    assert_eq!(status, 401, "a revoked key no longer works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_clients_and_accounts_are_validated_and_protected() {
    let app = TestApp::spawn().await;
    let (status, problem) = app
        .post("/api/v1/oauth-clients", json!({"name": "x", "template": "microsoft365", "tenant": "common", "client_id": "c"}))
        .await;
    assert_eq!(status, 422);
    assert!(fields(&problem).contains(&"tenant".to_string()), "{problem}");
    let (status, problem) = app.post("/api/v1/oauth-clients", json!({"name": "x", "template": "microsoft365", "client_id": "c"})).await;
    assert_eq!(status, 422, "the Microsoft token URL needs a tenant: {problem}");
    let (status, problem) = app.post("/api/v1/oauth-clients", json!({"name": "x", "template": "nope", "client_id": "c", "tenant": "t"})).await;
    assert_eq!(status, 422, "{problem}");
    let (status, problem) = app
        .post("/api/v1/oauth-clients", json!({"name": "x", "client_id": "c", "tenant": "t", "expires_on": "31.05.2027"}))
        .await;
    assert_eq!((status, fields(&problem)), (422, vec!["expires_on".to_string()]));

    let client = app.microsoft_client(&[ROLE_SMTP]).await;
    let (status, dup) = app
        .post("/api/v1/oauth-clients", json!({"name": client.name, "client_id": "c", "tenant": "t"}))
        .await;
    assert_eq!(status, 409, "{dup}");
    let (status, problem) = app.post("/api/v1/accounts", json!({"name": "a", "protocol": "smtp", "host": "bad host!", "auth": "xoauth2"})).await;
    assert_eq!(status, 422);
    let f = fields(&problem);
    assert!(f.contains(&"host".to_string()) && f.contains(&"oauth_client".to_string()) && f.contains(&"username".to_string()), "{f:?}");
    let account = app.oauth_account(&client).await;
    assert_eq!(account["port"], app.env.smtp_starttls_port);
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/oauth-clients/{}", client.name), None).await;
    assert_eq!(status, 409, "a client in use is not deleted");
    let (status, _) = app
        .call(Method::PATCH, &format!("/api/v1/accounts/{}", account["id"].as_str().unwrap_or("")), Some(json!({"protocol": "imap"})))
        .await;
    assert_eq!(status, 422, "the protocol is fixed");
    let (status, problem) = app.get("/api/v1/nothing-here").await;
    assert_eq!(status, 404, "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_test_shows_lifetime_and_claims_but_never_the_token() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_SMTP, "IMAP.AccessAsApp"]).await;
    let (status, test) = app.post(&format!("/api/v1/oauth-clients/{}/token-test", client.name), json!({})).await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["ok"], true, "{test}");
    assert_eq!(test["lifetime_secs"], 3599);
    assert_eq!(test["claims"]["tid"], client.tenant.as_str());
    assert_eq!(test["claims"]["appid"], client.client_id.as_str());
    assert_eq!(test["claims"]["idtyp"], "app");
    assert_eq!(test["claims"]["roles"], json!([ROLE_SMTP, "IMAP.AccessAsApp"]));
    assert!(test["claims"]["aud"].as_str().is_some_and(|a| a.starts_with("https://outlook.office")));
    assert!(!test.to_string().contains("eyJ"), "no JWT in the answer: {test}");

    let (_, bad) = app
        .call(Method::PATCH, &format!("/api/v1/oauth-clients/{}", client.name), Some(json!({"tenant": "unknown-tenant.example"})))
        .await;
    assert_eq!(bad["tenant"], "unknown-tenant.example");
    let (_, test) = app.post(&format!("/api/v1/oauth-clients/{}/token-test", client.name), json!({})).await;
    assert_eq!(test["ok"], false);
    assert_eq!(test["error"]["provider"]["error_codes"], json!([90002]), "{test}");
    assert!(test["error"]["provider"]["trace_id"].is_string(), "the trace id is kept for support cases");
    assert!(test["error"]["message"].as_str().unwrap_or("").contains("tenant"), "{test}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_responses_logs_or_the_database_file() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_SMTP]).await;
    let oauth = app.oauth_account(&client).await;
    let password_account = app.smtp_account(json!({"auth": "login", "password": app.env.pass_sender})).await;
    let rcpt = app.env.unique_address("secrets");
    let a = app.submit(json!({"account": oauth["name"], "to": rcpt, "text": "1"})).await;
    let b = app.submit(json!({"account": password_account["name"], "to": rcpt, "text": "2"})).await;
    app.wait_status(&a, "sent", DEADLINE).await;
    app.wait_status(&b, "sent", DEADLINE).await;
    app.post(&format!("/api/v1/oauth-clients/{}/token-test", client.name), json!({})).await;
    for path in ["/api/v1/oauth-clients", "/api/v1/accounts", "/api/v1/mails", "/api/v1/traffic", "/api/v1/settings", "/api/v1/api-keys"] {
        let (status, _) = app.get(path).await;
        assert_eq!(status, 200, "{path}");
    }
    let responses = app.responses();
    let logs = logs();
    let database = String::from_utf8_lossy(&app.database_bytes()).into_owned();
    assert!(logs.contains("mail sent"), "logs were captured");
    for (what, text) in [("responses", &responses), ("logs", &logs), ("database", &database)] {
        assert!(!text.contains(&client.secret), "client secret in {what}");
        assert!(!text.contains(&app.env.pass_sender), "password in {what}");
        assert!(!text.contains(&app.key), "API key in {what}");
        // Any JWT (the access tokens are ~1.8 KB JWTs starting with eyJ).
        assert!(!text.contains("eyJ0eXAi") && !text.contains("eyJhbGci"), "an access token in {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_account_is_used_only_when_configured_and_failed_mail_can_be_retried() {
    let app = TestApp::spawn().await;
    let account = app.smtp_account(json!({"auth": "plain", "password": "wrong-password"})).await;
    let (status, settings) = app.call(Method::PUT, "/api/v1/settings", Some(json!({"default_account": account["name"]}))).await;
    assert_eq!(status, 200, "{settings}");
    let rcpt = app.env.unique_address("default");
    let id = app.submit(json!({"to": rcpt, "text": "via default"})).await;
    let mail = app.wait_status(&id, "failed", DEADLINE).await;
    assert!(mail["last_error"].as_str().unwrap_or("").contains("535"), "{mail}");
    let (status, _) = app
        .call(Method::PATCH, &format!("/api/v1/accounts/{}", account["id"].as_str().unwrap_or("")), Some(json!({"password": app.env.pass_sender})))
        .await;
    assert_eq!(status, 200);
    let (status, retried) = app.post(&format!("/api/v1/mails/{id}/retry"), json!({})).await;
    assert_eq!(status, 200, "{retried}");
    app.wait_status(&id, "sent", DEADLINE).await;
    app.env.wait_for_messages(&rcpt, 1, DEADLINE).await;
    let (status, _) = app.post(&format!("/api/v1/mails/{id}/retry"), json!({})).await;
    assert_eq!(status, 409, "a sent mail is not sent again");
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/mails/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = app.get(&format!("/api/v1/mails/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailgate_send_submits_from_the_command_line_and_waits_for_the_result() {
    let app = TestApp::spawn().await;
    let account = app.smtp_account(json!({"auth": "plain", "password": app.env.pass_sender})).await;
    let rcpt = app.env.unique_address("cli");
    let attachment = app.dir.0.join("report.pdf");
    std::fs::write(&attachment, b"%PDF-1.4 test").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .args(["send", "--url", &app.base, "--account", account["name"].as_str().unwrap_or(""), "--to", &rcpt,
               "--subject", "from the CLI", "--text", "hello", "--header", "X-Job: nightly"])
        .arg("--attach")
        .arg(&attachment)
        .args(["--wait", "30"])
        .env("MAILGATE_API_KEY", &app.key)
        .output()
        .expect("run mailgate send");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("sent: 250"), "{stdout}");
    let delivered = app.env.wait_for_messages(&rcpt, 1, DEADLINE).await;
    let m = MessageParser::default().parse(&delivered[0]).expect("parse");
    assert_eq!(m.subject(), Some("from the CLI"));
    assert_eq!(m.header_raw("X-Job").map(str::trim), Some("nightly"));
    assert_eq!(m.attachments().next().map(|a| a.contents().to_vec()), Some(b"%PDF-1.4 test".to_vec()));

    // A refused submission: the problem's fields are printed, the exit code is 1.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .args(["send", "--url", &app.base, "--account", "nope", "--to", "not an address"])
        .env("MAILGATE_API_KEY", &app.key)
        .output()
        .expect("run mailgate send");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("422") && stderr.contains("account"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_reports_readiness_by_exit_code() {
    let app = TestApp::spawn().await;
    let run = |url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mailgate")).args(["healthcheck", "--url", url, "--timeout", "2"]).output().expect("run")
    };
    let out = run(&app.base);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("metrics");
    assert_eq!(metrics.status(), 200, "open when no metrics token is configured");
    let (_, ready) = app.get("/readyz").await;
    assert_eq!(ready, json!({"ready": true, "database": true, "workers": true}));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let out = run(&format!("http://127.0.0.1:{closed}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_search_and_page() {
    let app = TestApp::spawn().await;
    let account = app.smtp_account(json!({"auth": "plain", "password": app.env.pass_sender})).await;
    let rcpt = app.env.unique_address("list");
    let mut ids = Vec::new();
    for (subject, text) in [("Invoice 100% paid", "x"), ("Invoice 1000 due", "Reference K\u{f6}ln-7781"), ("Welcome aboard", "x")] {
        ids.push(app.submit(json!({"account": account["name"], "to": rcpt, "subject": subject, "text": text})).await);
    }
    for id in &ids {
        app.wait_status(id, "sent", DEADLINE).await;
    }
    let (_, page) = app.get("/api/v1/mails?q=invoice").await;
    assert_eq!(page["total"], 2, "case-insensitive substring: {page}");
    let (_, page) = app.get("/api/v1/mails?q=100%25").await;
    assert_eq!(page["total"], 1, "% is literal: {page}");
    assert_eq!(page["items"][0]["subject"], "Invoice 100% paid");
    let (_, page) = app.get("/api/v1/mails?q=k%C3%B6ln-7781").await;
    assert_eq!(page["total"], 1, "the body is searched (decoded): {page}");
    assert_eq!(page["items"][0]["subject"], "Invoice 1000 due");
    let (_, page) = app.get("/api/v1/mails?limit=2&offset=2").await;
    assert_eq!((page["total"].as_i64(), page["items"].as_array().map(Vec::len)), (Some(3), Some(1)), "{page}");
    assert_eq!(page["items"][0]["id"], ids[0].as_str(), "newest first");
    let (_, page) = app.get("/api/v1/mails?status=failed").await;
    assert_eq!(page["total"], 0);
    let (status, problem) = app.get("/api/v1/mails?status=lost&since=yesterday").await;
    assert_eq!(status, 422, "{problem}");
    let (_, traffic) = app.get("/api/v1/traffic?q=welcome&direction=out").await;
    assert_eq!(traffic["total"], 1, "{traffic}");
    let (_, traffic) = app.get("/api/v1/traffic?since=2999-01-01T00:00:00Z").await;
    assert_eq!(traffic["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_metrics_token_protects_metrics() {
    let app = TestApp::spawn_with(|c| c.metrics_token = Some("scrape-token-123456".into())).await;
    crate::helpers::record_secret("scrape-token-123456");
    let url = format!("{}/metrics", app.base);
    assert_eq!(app.http.get(&url).send().await.expect("get").status(), 401);
    assert_eq!(app.http.get(&url).bearer_auth("wrong").send().await.expect("get").status(), 401);
    let ok = app.http.get(&url).bearer_auth("scrape-token-123456").send().await.expect("get");
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.expect("text").contains("mailgate_spool_mails"));
}
