//! Sending through the real test servers: XOAUTH2 checked by Dovecot against the stand-in,
//! PLAIN and LOGIN over STARTTLS, implicit TLS and plain connections, and every failure path.

use std::time::Duration;

use base64::Engine as _;
use mail_parser::{MessageParser, MimeHeaders as _};
use mailgate_testkit::{Behaviour, ClientPatch, ROLE_SMTP, TcpProxy, eventually};
use serde_json::json;

use crate::helpers::TestApp;

const DEADLINE: Duration = Duration::from_secs(30);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_xoauth2_mails_arrive_intact_with_one_token_request() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_SMTP]).await;
    let account = app.oauth_account(&client).await;
    let rcpt = app.env.unique_address("hundred");
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(
            app.submit(json!({
                "account": account["name"],
                "to": [{"name": "Zoë Empfänger", "address": rcpt}],
                "reply_to": "Antworten <replies@example.test>",
                "subject": format!("Grüße Nr. {i} — ünïcödé ✓"),
                "text": format!("Plain text {i}: äöü"),
                "html": format!("<p>HTML {i}: <b>äöü</b></p>"),
                "attachments": [
                    {"filename": "daten-ü.bin", "content_type": "application/octet-stream", "content_base64": b64(&binary)},
                    {"filename": "notes.txt", "content_type": "text/plain", "content_base64": b64(format!("note {i}").as_bytes())}
                ],
                "headers": {"X-Mailgate-Test": format!("n{i}")}
            }))
            .await,
        );
    }
    let messages = app.env.wait_for_messages(&rcpt, 100, Duration::from_secs(60)).await;
    assert_eq!(messages.len(), 100);
    for raw in &messages {
        let m = MessageParser::default().parse(raw).expect("delivered message parses");
        let n: usize = m.header_raw("X-Mailgate-Test").expect("custom header").trim()[1..].parse().expect("number");
        assert_eq!(m.subject(), Some(format!("Grüße Nr. {n} — ünïcödé ✓").as_str()));
        let from = m.from().and_then(|f| f.first()).expect("from");
        assert_eq!(from.name(), Some("Mailgate Test"));
        assert_eq!(from.address(), Some(app.env.user_sender.as_str()));
        assert_eq!(m.to().and_then(|t| t.first()).and_then(|t| t.name()), Some("Zoë Empfänger"));
        assert_eq!(m.reply_to().and_then(|t| t.first()).and_then(|t| t.address()), Some("replies@example.test"));
        assert_eq!(m.body_text(0).as_deref().map(str::trim), Some(format!("Plain text {n}: äöü").as_str()));
        assert!(m.body_html(0).expect("html part").contains(&format!("HTML {n}: <b>äöü</b>")));
        let attachments: Vec<_> = m.attachments().collect();
        assert_eq!(attachments.len(), 2);
        assert_eq!(attachments[0].attachment_name(), Some("daten-ü.bin"));
        assert_eq!(attachments[0].contents(), &binary[..], "attachment bytes changed");
        assert_eq!(attachments[1].contents(), format!("note {n}").as_bytes());
        assert!(m.message_id().is_some_and(|id| id.ends_with("@example.test")));
    }
    for id in &ids {
        let (_, mail) = app.get(&format!("/api/v1/mails/{id}")).await;
        assert_eq!(mail["status"], "sent", "{mail}");
        assert!(mail["server_reply"].as_str().unwrap_or("").starts_with("250"), "{mail}");
    }
    let stats = app.env.idp.stats(&client.client_id).await.expect("stats");
    assert_eq!(stats.token_requests, 1, "one token serves every mail");
    let (_, traffic) = app.get("/api/v1/traffic?direction=out&limit=1000").await;
    assert_eq!(traffic["total"], 100);

    // The counters moved by exactly the right amounts.
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
    let name = account["name"].as_str().unwrap_or("");
    for expected in [
        format!("mailgate_mails_submitted_total{{account=\"{name}\"}} 100"),
        format!("mailgate_mails_sent_total{{account=\"{name}\"}} 100"),
        "mailgate_send_latency_seconds_count 100".to_string(),
        "mailgate_http_requests_total{route=\"/api/v1/mails\",method=\"POST\",status=\"202\"} 100".to_string(),
        "mailgate_token_requests_total 1".to_string(),
    ] {
        assert!(metrics.lines().any(|l| l == expected), "missing '{expected}' in\n{metrics}");
    }
    assert!(!metrics.contains(&rcpt), "no addresses in metric labels");
    assert!(!metrics.contains("mailgate_mails_failed_total{"), "nothing failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_login_work_over_starttls_implicit_tls_and_plain_connections() {
    let app = TestApp::spawn().await;
    let env = &app.env;
    let cases = [
        ("plain", "starttls", env.smtp_starttls_port),
        ("login", "starttls", env.smtp_starttls_port),
        ("plain", "tls", env.smtp_tls_port),
        ("login", "tls", env.smtp_tls_port),
        ("plain", "none", env.smtp_plain_port),
    ];
    let rcpt = env.unique_address("pw");
    for (auth, connection, port) in cases {
        let account = app
            .smtp_account(json!({"auth": auth, "connection": connection, "port": port, "password": env.pass_sender}))
            .await;
        let id = app
            .submit(json!({"account": account["name"], "to": rcpt, "subject": format!("{auth} over {connection}"), "text": "x"}))
            .await;
        let mail = app.wait_status(&id, "sent", DEADLINE).await;
        assert_eq!(mail["attempts"], 1, "{mail}");
    }
    let messages = env.wait_for_messages(&rcpt, cases.len(), DEADLINE).await;
    let subjects: Vec<String> = messages
        .iter()
        .map(|m| MessageParser::default().parse(m).and_then(|p| p.subject().map(str::to_string)).unwrap_or_default())
        .collect();
    for (auth, connection, _) in cases {
        assert!(subjects.contains(&format!("{auth} over {connection}")), "{subjects:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_the_mail_at_once_with_the_aadsts_explanation() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_SMTP]).await;
    let (status, _) = app
        .call(reqwest::Method::PATCH, &format!("/api/v1/oauth-clients/{}", client.name), Some(json!({"client_secret": "the-secret-id-not-its-value"})))
        .await;
    assert_eq!(status, 200);
    let account = app.oauth_account(&client).await;
    let id = app.submit(json!({"account": account["name"], "to": app.env.unique_address("nope"), "text": "x"})).await;
    let mail = app.wait_status(&id, "failed", DEADLINE).await;
    let error = mail["last_error"].as_str().expect("error");
    assert!(error.contains("AADSTS7000215"), "{error}");
    assert!(error.contains("Value, not its Secret ID"), "the fix is named: {error}");
    assert!(error.contains("trace ID"), "{error}");
    assert_eq!(mail["attempts"], 1, "no retries for a permanent failure");
    assert_eq!(app.env.idp.stats(&client.client_id).await.expect("stats").token_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_secret_is_named_as_such() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_SMTP]).await;
    app.env
        .idp
        .update_client(&client.client_id, ClientPatch { secret_expired: Some(true), ..Default::default() })
        .await
        .expect("patch");
    let account = app.oauth_account(&client).await;
    let id = app.submit(json!({"account": account["name"], "to": app.env.unique_address("exp"), "text": "x"})).await;
    let mail = app.wait_status(&id, "failed", DEADLINE).await;
    let error = mail["last_error"].as_str().expect("error");
    assert!(error.contains("AADSTS7000222") && error.contains("expired"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_outage_is_retried_until_it_recovers() {
    let app = TestApp::spawn_with(|c| c.spool.max_attempts = 10).await;
    let client = app.microsoft_client(&[ROLE_SMTP]).await;
    app.env
        .idp
        .update_client(&client.client_id, ClientPatch { behaviour: Some(Behaviour::Unavailable), ..Default::default() })
        .await
        .expect("patch");
    let account = app.oauth_account(&client).await;
    let rcpt = app.env.unique_address("outage");
    let id = app.submit(json!({"account": account["name"], "to": rcpt, "text": "x"})).await;
    let mail = eventually(DEADLINE, "a failed attempt", || async {
        let (_, m) = app.get(&format!("/api/v1/mails/{id}")).await;
        (m["attempts"].as_u64() >= Some(1)).then_some(m)
    })
    .await;
    assert_eq!(mail["status"], "queued", "a token outage is temporary: {mail}");
    assert!(mail["last_error"].as_str().unwrap_or("").contains("503"), "{mail}");
    app.env
        .idp
        .update_client(&client.client_id, ClientPatch { behaviour: Some(Behaviour::Normal), ..Default::default() })
        .await
        .expect("patch");
    app.wait_status(&id, "sent", DEADLINE).await;
    app.env.wait_for_messages(&rcpt, 1, DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_replaced_after_the_server_refuses_it() {
    // No idle sessions kept: every mail authenticates anew.
    let app = TestApp::spawn_with(|c| c.spool.idle_session_secs = 0).await;
    let client = app.microsoft_client(&[ROLE_SMTP]).await;
    let account = app.oauth_account(&client).await;
    let rcpt = app.env.unique_address("revoked");
    let first = app.submit(json!({"account": account["name"], "to": rcpt, "text": "1"})).await;
    app.wait_status(&first, "sent", DEADLINE).await;
    app.env.idp.revoke(&client.client_id).await.expect("revoke");
    let second = app.submit(json!({"account": account["name"], "to": rcpt, "text": "2"})).await;
    let mail = app.wait_status(&second, "sent", DEADLINE).await;
    assert_eq!(mail["attempts"], 1, "the refusal was handled inside one attempt: {mail}");
    assert_eq!(app.env.idp.stats(&client.client_id).await.expect("stats").token_requests, 2);
    app.env.wait_for_messages(&rcpt, 2, DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_the_smtp_role_is_refused_by_the_server_and_explained() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&["IMAP.AccessAsApp"]).await;
    let account = app.oauth_account(&client).await;
    let id = app.submit(json!({"account": account["name"], "to": app.env.unique_address("role"), "text": "x"})).await;
    let mail = app.wait_status(&id, "failed", DEADLINE).await;
    let error = mail["last_error"].as_str().expect("error");
    assert!(error.contains("AUTH refused") && error.contains("535"), "{error}");
    assert!(error.contains("SMTP.SendAsApp"), "the likely cause is named: {error}");
    assert!(error.contains("server's challenge"), "the decoded XOAUTH2 challenge is kept: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_makes_mails_wait_and_they_go_out_once_it_is_back() {
    let app = TestApp::spawn_with(|c| c.spool.max_attempts = 20).await;
    let proxy = TcpProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], app.env.smtp_starttls_port)));
    proxy.set_down().await;
    let account = app
        .smtp_account(json!({"auth": "plain", "password": app.env.pass_sender, "port": proxy.port(), "host": "localhost"}))
        .await;
    let rcpt = app.env.unique_address("down");
    let ids = [
        app.submit(json!({"account": account["name"], "to": rcpt, "text": "1"})).await,
        app.submit(json!({"account": account["name"], "to": rcpt, "text": "2"})).await,
    ];
    for id in &ids {
        let mail = eventually(DEADLINE, "an attempt against the closed port", || async {
            let (_, m) = app.get(&format!("/api/v1/mails/{id}")).await;
            (m["attempts"].as_u64() >= Some(1)).then_some(m)
        })
        .await;
        assert_eq!(mail["status"], "queued", "{mail}");
        assert!(mail["last_error"].as_str().unwrap_or("").contains("cannot connect"), "{mail}");
    }
    let (_, account_view) = app.get(&format!("/api/v1/accounts/{}", account["id"].as_str().unwrap_or(""))).await;
    assert!(account_view["last_error"].as_str().is_some_and(|e| e.contains("cannot connect")), "{account_view}");
    proxy.set_up().await;
    for id in &ids {
        app.wait_status(id, "sent", DEADLINE).await;
    }
    app.env.wait_for_messages(&rcpt, 2, DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_fails_at_once_and_keeps_the_reply() {
    let app = TestApp::spawn().await;
    let account = app.smtp_account(json!({"auth": "plain", "password": app.env.pass_sender})).await;
    let id = app.submit(json!({"account": account["name"], "to": "reject-me@example.test", "text": "x"})).await;
    let mail = app.wait_status(&id, "failed", DEADLINE).await;
    assert_eq!(mail["attempts"], 1, "{mail}");
    assert!(mail["server_reply"].as_str().unwrap_or("").starts_with("550 5.1.1"), "{mail}");
    assert!(mail["last_error"].as_str().unwrap_or("").contains("test reject"), "{mail}");
    assert_eq!(mail["attempt_history"][0]["outcome"], "permanent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_refusals_are_retried_with_backoff_then_fail_visibly() {
    let app = TestApp::spawn().await; // max_attempts = 3, retry base 1 s
    let account = app.smtp_account(json!({"auth": "plain", "password": app.env.pass_sender})).await;
    let good = app.env.unique_address("partial");
    let id = app.submit(json!({"account": account["name"], "to": ["tempfail-x@example.test", good], "text": "x"})).await;
    let mail = app.wait_status(&id, "failed", DEADLINE).await;
    assert_eq!(mail["attempts"], 3, "{mail}");
    let history = mail["attempt_history"].as_array().expect("history");
    assert_eq!(history.len(), 3);
    assert!(history.iter().all(|a| a["outcome"] == "temporary"), "{mail}");
    let error = mail["last_error"].as_str().unwrap_or("");
    assert!(error.starts_with("gave up after 3 attempts"), "{error}");
    assert!(error.contains("451 4.3.0"), "{error}");
    assert_eq!(mail["recipients"], json!(["tempfail-x@example.test"]), "only the deferred recipient is retried");
    // The accepted recipient got the mail exactly once, though three attempts were made.
    let delivered = app.env.wait_for_messages(&good, 1, DEADLINE).await;
    assert_eq!(delivered.len(), 1);
}
