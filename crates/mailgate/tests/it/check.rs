//! Diagnosis: every known setup mistake gets its named cause, a good account passes every
//! step; expiry notices go out once per threshold.

use std::time::Duration;

use mailgate_testkit::{ClientPatch, ClientSpec, ROLE_IMAP, ROLE_SMTP, TenantSpec};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{MsClient, TestApp};

const DEADLINE: Duration = Duration::from_secs(30);

async fn test_account(app: &TestApp, account: &Value, body: Value) -> Value {
    let (status, report) = app.post(&format!("/api/v1/accounts/{}/test", account["id"].as_str().expect("id")), body).await;
    assert_eq!(status, 200, "{report}");
    report
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"].as_array().and_then(|s| s.iter().find(|x| x["name"] == name)).unwrap_or(&Value::Null)
}

/// The failed step: its name and "detail cause fix" text.
fn failure(report: &Value) -> (String, String) {
    let failed = report["steps"].as_array().and_then(|s| s.iter().find(|x| x["status"] == "failed")).cloned().unwrap_or(Value::Null);
    assert_eq!(report["ok"], false, "expected a failure: {report}");
    (
        failed["name"].as_str().unwrap_or("").to_string(),
        format!("{} | {} | {}", failed["detail"].as_str().unwrap_or(""), failed["cause"].as_str().unwrap_or(""), failed["fix"].as_str().unwrap_or("")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_accounts_pass_every_step_and_the_test_mail_arrives() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_SMTP, ROLE_IMAP]).await;
    let smtp = app.oauth_account(&client).await;
    let rcpt = app.env.unique_address("check");
    let report = test_account(&app, &smtp, json!({"send_to": rcpt})).await;
    assert_eq!(report["ok"], true, "{report}");
    let names: Vec<&str> = report["steps"].as_array().expect("steps").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["dns", "tcp", "tls", "greeting", "token", "claims", "auth", "test_mail"]);
    assert!(step(&report, "tls")["detail"].as_str().unwrap_or("").contains("valid until"), "{report}");
    assert!(step(&report, "greeting")["detail"].as_str().unwrap_or("").contains("XOAUTH2"), "{report}");
    assert!(step(&report, "test_mail")["detail"].as_str().unwrap_or("").contains("queued as"), "the queue id is shown: {report}");
    assert!(!report.to_string().contains("eyJ"), "no token in the report");
    app.env.wait_for_messages(&rcpt, 1, DEADLINE).await;

    let user = app.env.unique_address("check-imap");
    app.env.deliver_lmtp(&user, &[b"Subject: one\r\n\r\nx\r\n".to_vec()]).await.expect("lmtp");
    let imap = app.imap_account(&client, &user, json!({})).await;
    let report = test_account(&app, &imap, json!({})).await;
    assert_eq!(report["ok"], true, "{report}");
    assert!(step(&report, "select")["detail"].as_str().unwrap_or("").contains("holds 1 messages"), "{report}");
}

/// A Microsoft client whose token request fails as `patch` makes it.
async fn broken_client(app: &TestApp, token_url: Option<String>, scopes: Option<Value>, patch: Option<ClientPatch>, secret: Option<&str>) -> MsClient {
    let client = app.microsoft_client(&[ROLE_SMTP]).await;
    if let Some(p) = patch {
        app.env.idp.update_client(&client.client_id, p).await.expect("patch");
    }
    let mut change = json!({});
    if let Some(url) = token_url {
        change["token_url"] = json!(url);
    }
    if let Some(s) = scopes {
        change["scopes"] = s;
    }
    if let Some(s) = secret {
        change["client_secret"] = json!(s);
    }
    let (status, body) = app.call(Method::PATCH, &format!("/api/v1/oauth-clients/{}", client.name), Some(change)).await;
    assert_eq!(status, 200, "{body}");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_error_is_named_with_its_cause_and_fix() {
    let app = TestApp::spawn().await;
    let idp = app.env.idp_url.clone();
    let cases: Vec<(&str, MsClient, &str)> = vec![
        ("7000215", broken_client(&app, None, None, None, Some("the-secret-id")).await, "Secret ID"),
        ("7000222", broken_client(&app, None, None, Some(ClientPatch { secret_expired: Some(true), ..Default::default() }), None).await, "expired"),
        ("700016", broken_client(&app, Some(format!("{idp}/{{tenant}}/oauth2/v2.0/token")), None, None, None).await, "client ID"),
        ("90002", broken_client(&app, Some(format!("{idp}/no-such-tenant.example/oauth2/v2.0/token")), None, None, None).await, "tenant"),
        ("70011", broken_client(&app, None, Some(json!(["https://graph.example/.default"])), None, None).await, "scope"),
        ("9001023", broken_client(&app, Some(format!("{idp}/common/oauth2/v2.0/token")), None, None, None).await, "common"),
    ];
    for (code, client, words) in cases {
        if code == "700016" {
            // A client ID the tenant does not know.
            let (status, _) = app
                .call(Method::PATCH, &format!("/api/v1/oauth-clients/{}", client.name), Some(json!({"client_id": "00000000-dead-beef-0000-000000000000"})))
                .await;
            assert_eq!(status, 200);
        }
        let account = app.oauth_account(&client).await;
        let report = test_account(&app, &account, json!({})).await;
        let (name, text) = failure(&report);
        assert_eq!(name, "token", "{code}: {report}");
        assert!(text.contains(&format!("AADSTS{code}")), "{code}: {text}");
        assert!(text.contains(words), "{code}: cause/fix should mention '{words}': {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_claims_are_caught_before_auth() {
    let app = TestApp::spawn().await;
    // The IMAP role only, on an SMTP account.
    let client = app.microsoft_client(&[ROLE_IMAP]).await;
    let account = app.oauth_account(&client).await;
    let report = test_account(&app, &account, json!({})).await;
    let (name, text) = failure(&report);
    assert_eq!(name, "claims", "{report}");
    assert!(text.contains("SMTP.SendAsApp") && text.contains("admin consent"), "{text}");
    assert_eq!(step(&report, "auth")["status"], "skipped");

    // A token from another tenant than the one configured.
    let other = uuid::Uuid::new_v4().to_string();
    let client_id = uuid::Uuid::new_v4().to_string();
    app.env.idp.register_tenant(TenantSpec::new(other.clone(), app.env.domain.clone())).await.expect("tenant");
    app.env.idp.register_client(ClientSpec::new(other.clone(), client_id.clone(), "s3cret-value".to_string())).await.expect("client");
    let configured = uuid::Uuid::new_v4().to_string();
    let (status, _) = app
        .post("/api/v1/oauth-clients", json!({"name": "wrong-tenant", "tenant": configured, "client_id": client_id, "client_secret": "s3cret-value",
            "token_url": format!("{}/{other}/oauth2/v2.0/token", app.env.idp_url)}))
        .await;
    assert_eq!(status, 201);
    let account = app.smtp_account(json!({"auth": "xoauth2", "oauth_client": "wrong-tenant"})).await;
    let (name, text) = failure(&test_account(&app, &account, json!({})).await);
    assert_eq!(name, "claims");
    assert!(text.contains(&other) && text.contains(&configured) && text.contains("tenant"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_mistakes_are_named() {
    let app = TestApp::spawn().await;
    let env = &app.env;
    let client = app.microsoft_client(&[ROLE_SMTP, ROLE_IMAP]).await;
    let password = json!({"auth": "plain", "password": env.pass_sender});

    // Implicit TLS against a STARTTLS port.
    let a = app.smtp_account(json!({"auth": "plain", "password": env.pass_sender, "connection": "tls", "port": env.smtp_starttls_port})).await;
    let (name, text) = failure(&test_account(&app, &a, json!({})).await);
    assert_eq!(name, "tls", "{text}");
    assert!(text.contains("starttls"), "{text}");
    // Nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let a = app.smtp_account(json!({"auth": "plain", "password": env.pass_sender, "port": closed})).await;
    let (name, text) = failure(&test_account(&app, &a, json!({})).await);
    assert_eq!(name, "tcp");
    assert!(text.contains("nothing listens"), "{text}");
    // A server that offers no AUTH XOAUTH2 (the relay port offers no AUTH at all).
    let a = app.smtp_account(json!({"auth": "xoauth2", "oauth_client": client.name, "port": env.smtp_relay_port})).await;
    let (name, text) = failure(&test_account(&app, &a, json!({})).await);
    assert_eq!(name, "auth");
    assert!(text.contains("does not offer AUTH XOAUTH2"), "{text}");
    // A wrong password.
    let mut wrong = password.clone();
    wrong["password"] = json!("not-the-password");
    let a = app.smtp_account(wrong).await;
    let (name, text) = failure(&test_account(&app, &a, json!({})).await);
    assert_eq!(name, "auth");
    assert!(text.contains("535") && text.contains("username or password is wrong"), "{text}");
    // A token the server refuses: the mailbox is in another domain than the app's tenant.
    let a = app.smtp_account(json!({"auth": "xoauth2", "oauth_client": client.name, "username": "someone@other.test"})).await;
    let (name, text) = failure(&test_account(&app, &a, json!({})).await);
    assert_eq!(name, "auth");
    assert!(text.contains("535") && text.contains("SMTP.SendAsApp") && text.contains("FullAccess"), "{text}");

    // IMAP: expired and untrusted certificates, an unknown folder.
    for (port, words) in [(env.imap_expired_port, "expired"), (env.imap_untrusted_port, "trusted CA")] {
        let a = app.imap_account(&client, &env.unique_address("cert"), json!({"port": port})).await;
        let (name, text) = failure(&test_account(&app, &a, json!({})).await);
        assert_eq!(name, "tls", "{text}");
        assert!(text.contains(words), "{text}");
    }
    let user = env.unique_address("folders");
    env.create_folder(&user, "Invoices").expect("folder");
    let a = app.imap_account(&client, &user, json!({"imap_folder": "Invoice"})).await;
    let (name, text) = failure(&test_account(&app, &a, json!({})).await);
    assert_eq!(name, "select");
    assert!(text.contains("'Invoice' does not exist") && text.contains("Invoices"), "the fix names the folders: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailgate_check_prints_a_report_and_its_exit_code_says_how_it_went() {
    let app = TestApp::spawn().await;
    let good = app.smtp_account(json!({"name": "good", "auth": "plain", "password": app.env.pass_sender})).await;
    let bad = app.smtp_account(json!({"name": "bad", "auth": "plain", "password": "nope"})).await;
    let config = app.config_file();
    let run = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mailgate"))
            .args(["--config", config.to_str().expect("path"), "check", name])
            .output()
            .expect("run mailgate check")
    };
    let out = run(good["name"].as_str().expect("name"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("[ok  ] auth") && text.contains("all checks passed"), "{text}");
    let out = run(bad["name"].as_str().expect("name"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[FAIL] auth") && text.contains("likely cause: the username or password is wrong"), "{text}");
    assert!(!text.contains(&app.env.pass_sender));
}

fn date(s: &str) -> time::Date {
    time::Date::parse(s, &time::format_description::well_known::Iso8601::DATE).expect("date")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_notices_go_out_once_per_threshold_and_name_the_client() {
    let app = TestApp::spawn().await;
    let state = app.state();
    let client = app.microsoft_client(&[ROLE_SMTP]).await; // expires on 2027-06-30
    let run = |today: &'static str| async move { mailgate_web::service::expiry::run(state, date(today)).await.expect("run") };

    // No contacts: nothing is sent, and the status shows why.
    let notices = run("2027-06-25").await;
    assert!(notices.iter().all(|n| n.mail_id.is_none()), "{notices:?}");
    let (_, status) = app.get("/api/v1/status").await;
    assert!(status["warnings"].to_string().contains("no admin contacts"), "{status}");

    let account = app.smtp_account(json!({"auth": "plain", "password": app.env.pass_sender})).await;
    let contact = app.env.unique_address("admin");
    let (code, _) = app
        .call(Method::PUT, "/api/v1/settings", Some(json!({"admin_contacts": [contact], "notice_account": account["name"]})))
        .await;
    assert_eq!(code, 200);
    let mut sent = 0;
    for (today, threshold) in [("2027-03-31", 90), ("2027-03-31", 90), ("2027-04-02", 90), ("2027-05-31", 30), ("2027-06-20", 10), ("2027-06-29", 1), ("2027-07-01", -1), ("2027-07-02", -1)] {
        let notices = run(today).await;
        let mine: Vec<_> = notices.iter().filter(|n| n.client == client.name).collect();
        if let Some(n) = mine.first() {
            assert_eq!(n.threshold, threshold, "{today}: {notices:?}");
            assert!(n.mail_id.is_some(), "{today}: {notices:?}");
            sent += 1;
        }
    }
    assert_eq!(sent, 5, "one notice per threshold (90, 30, 10, 1, expired), none repeated");
    let messages = app.env.wait_for_messages(&contact, 5, DEADLINE).await;
    let texts: Vec<String> = messages.iter().map(|m| String::from_utf8_lossy(m).to_string()).collect();
    assert!(texts.iter().all(|t| t.contains(&client.name) && t.contains(&client.tenant) && t.contains("2027-06-30")), "name, tenant and date");
    assert!(texts.iter().any(|t| t.contains("EXPIRED")), "an expired notice");

    // A renewed credential starts over.
    let (code, _) = app.call(Method::PATCH, &format!("/api/v1/oauth-clients/{}", client.name), Some(json!({"expires_on": "2028-06-30"}))).await;
    assert_eq!(code, 200);
    assert!(run("2027-07-03").await.iter().all(|n| n.client != client.name), "nothing due for the new date yet");
    let notices = run("2028-06-25").await;
    assert_eq!(notices.iter().find(|n| n.client == client.name).map(|n| n.threshold), Some(10));

    // The status lists credentials expiring within the notice horizon (real clock).
    let soon = (time::OffsetDateTime::now_utc().date() + time::Duration::days(20)).to_string();
    app.call(Method::PATCH, &format!("/api/v1/oauth-clients/{}", client.name), Some(json!({"expires_on": soon}))).await;
    let (_, status) = app.get("/api/v1/status").await;
    assert_eq!(status["expiring_clients"][0]["name"], client.name.as_str(), "{status}");
    assert_eq!(status["expiring_clients"][0]["days_until_expiry"], 20);
    assert!(!status["warnings"].to_string().contains("no admin contacts"), "{status}");
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&format!("mailgate_oauth_credential_expiry_seconds{{client=\"{}\"}}", client.name)))
        .unwrap_or_else(|| panic!("no expiry gauge: {metrics}"));
    let seconds: i64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("value");
    assert!((19 * 86_400..=20 * 86_400).contains(&seconds), "{line}");
}
