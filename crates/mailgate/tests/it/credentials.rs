//! More credentials: certificate client assertions, Google service accounts acting as each
//! mailbox, OAUTHBEARER — against the real servers, with the stand-in verifying signatures.

use std::time::Duration;

use base64::Engine as _;
use mailgate_testkit::{ClientSpec, ROLE_IMAP, ROLE_SMTP, TenantSpec};
use serde_json::{Value, json};

use crate::helpers::TestApp;

const DEADLINE: Duration = Duration::from_secs(30);

/// Registers a tenant and a certificate client with the stand-in; returns (tenant, client id).
async fn register_certificate_client(app: &TestApp, cert_pem: &str) -> (String, String) {
    let tenant = uuid::Uuid::new_v4().to_string();
    let client_id = uuid::Uuid::new_v4().to_string();
    app.env.idp.register_tenant(TenantSpec::new(tenant.clone(), app.env.domain.clone())).await.expect("tenant");
    let mut spec = ClientSpec::new(tenant.clone(), client_id.clone(), String::new());
    spec.certificate_pem = Some(cert_pem.to_string());
    spec.roles = vec![ROLE_SMTP.into(), ROLE_IMAP.into()];
    app.env.idp.register_client(spec).await.expect("client");
    (tenant, client_id)
}

async fn certificate_client(app: &TestApp, name: &str, tenant: &str, client_id: &str, cert_pem: &str, key_pem: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({
        "name": name, "template": "microsoft365", "tenant": tenant, "client_id": client_id,
        "credential_kind": "certificate", "certificate_pem": cert_pem, "private_key_pem": key_pem,
        "token_url": format!("{}/{{tenant}}/oauth2/v2.0/token", app.env.idp_url),
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    app.post("/api/v1/oauth-clients", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_credential_sends_and_retrieves_mail() {
    let app = TestApp::spawn().await;
    let cert = mailgate_testkit::self_signed_certificate("mailgate test app", 365).expect("certificate");
    // A line from the middle of the private key stands for the whole key.
    crate::helpers::record_secret(cert.key_pem.lines().nth(3).unwrap_or(""));
    let (tenant, client_id) = register_certificate_client(&app, &cert.cert_pem).await;
    let (status, client) = certificate_client(&app, "cert", &tenant, &client_id, &cert.cert_pem, &cert.key_pem, json!({"signing_alg": "PS256"})).await;
    assert_eq!(status, 201, "{client}");
    assert_eq!(client["credential_kind"], "certificate");
    assert_eq!(client["certificate"]["thumbprint_sha256"], cert.sha256_thumbprint_b64url.as_str());
    assert_eq!(client["certificate"]["thumbprint"].as_str().map(str::len), Some(40), "the SHA-1 thumbprint Entra shows: {client}");
    let expected = (time::OffsetDateTime::now_utc().date() + time::Duration::days(365)).to_string();
    let days = client["days_until_expiry"].as_i64().unwrap_or(0);
    assert!((364..=366).contains(&days), "the expiry comes from the certificate ({expected}): {client}");
    assert!(!client.to_string().contains("PRIVATE KEY"), "the key is never shown");

    let account = app.smtp_account(json!({"auth": "xoauth2", "oauth_client": "cert"})).await;
    let rcpt = app.env.unique_address("cert");
    let id = app.submit(json!({"account": account["name"], "to": rcpt, "text": "signed"})).await;
    app.wait_status(&id, "sent", DEADLINE).await;
    app.env.wait_for_messages(&rcpt, 1, DEADLINE).await;

    let user = app.env.unique_address("cert-imap");
    app.env.deliver_lmtp(&user, &[b"Subject: via certificate\r\n\r\nx\r\n".to_vec()]).await.expect("lmtp");
    let (status, imap) = app
        .post("/api/v1/accounts", json!({"name": "cert-imap", "protocol": "imap", "auth": "xoauth2", "oauth_client": "cert", "username": user,
            "host": "localhost", "connection": "tls", "port": app.env.imap_tls_port, "enabled": false}))
        .await;
    assert_eq!(status, 201, "{imap}");
    let report = app.retrieve(&imap).await;
    assert_eq!(report["stored"], 1, "{report}");
    assert!(app.env.idp.stats(&client_id).await.expect("stats").token_requests >= 1);

    // The same certificate as a PKCS#12 file gives the same credential.
    let (status, from_p12) = app
        .post("/api/v1/oauth-clients", json!({
            "name": "cert-p12", "tenant": tenant, "client_id": client_id, "credential_kind": "certificate",
            "pkcs12_base64": base64::engine::general_purpose::STANDARD.encode(&cert.pkcs12_der), "pkcs12_password": "test-pass",
            "token_url": format!("{}/{{tenant}}/oauth2/v2.0/token", app.env.idp_url)}))
        .await;
    assert_eq!(status, 201, "{from_p12}");
    assert_eq!(from_p12["certificate"]["thumbprint_sha256"], cert.sha256_thumbprint_b64url.as_str());
    let (_, test) = app.post("/api/v1/oauth-clients/cert-p12/token-test", json!({})).await;
    assert_eq!(test["ok"], true, "{test}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificate_setups_are_refused_and_diagnosed() {
    let app = TestApp::spawn().await;
    let a = mailgate_testkit::self_signed_certificate("app a", 365).expect("certificate");
    let b = mailgate_testkit::self_signed_certificate("app b", 365).expect("certificate");
    // A key that does not belong to the certificate is refused at once.
    let (tenant, client_id) = register_certificate_client(&app, &a.cert_pem).await;
    let (status, problem) = certificate_client(&app, "mismatch", &tenant, &client_id, &a.cert_pem, &b.key_pem, json!({})).await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem.to_string().contains("does not belong to the certificate"), "{problem}");

    // A certificate Entra does not know (another one was uploaded there).
    let (status, _) = certificate_client(&app, "unknown-cert", &tenant, &client_id, &b.cert_pem, &b.key_pem, json!({})).await;
    assert_eq!(status, 201);
    let account = app.smtp_account(json!({"auth": "xoauth2", "oauth_client": "unknown-cert"})).await;
    let (_, report) = app.post(&format!("/api/v1/accounts/{}/test", account["id"].as_str().unwrap_or("")), json!({})).await;
    let token = report["steps"].as_array().and_then(|s| s.iter().find(|x| x["name"] == "token")).cloned().unwrap_or(Value::Null);
    assert_eq!(token["status"], "failed", "{report}");
    assert!(token["detail"].as_str().unwrap_or("").contains("AADSTS700027"), "{token}");
    assert!(token["fix"].as_str().unwrap_or("").contains("certificate"), "{token}");

    // An expired certificate: the stand-in refuses it; mailgate shows the date it expired.
    let old = mailgate_testkit::self_signed_certificate("expired app", -1).expect("expired certificate");
    let (tenant, client_id) = register_certificate_client(&app, &old.cert_pem).await;
    let (status, client) = certificate_client(&app, "expired", &tenant, &client_id, &old.cert_pem, &old.key_pem, json!({})).await;
    assert_eq!(status, 201, "{client}");
    assert!(client["days_until_expiry"].as_i64().is_some_and(|d| d < 0), "{client}");
    let (_, test) = app.post("/api/v1/oauth-clients/expired/token-test", json!({})).await;
    assert_eq!(test["ok"], false);
    assert!(test["error"]["message"].as_str().unwrap_or("").contains("expired"), "{test}");

    // A wrong audience: a token URL with a query the endpoint does not see as its own URL.
    let (tenant, client_id) = register_certificate_client(&app, &a.cert_pem).await;
    let (status, _) = certificate_client(&app, "wrong-aud", &tenant, &client_id, &a.cert_pem, &a.key_pem,
        json!({"token_url": format!("{}/{{tenant}}/oauth2/v2.0/token?tenant-hint=1", app.env.idp_url)})).await;
    assert_eq!(status, 201);
    let (_, test) = app.post("/api/v1/oauth-clients/wrong-aud/token-test", json!({})).await;
    assert_eq!(test["error"]["provider"]["error_codes"], json!([700023]), "{test}");
    assert!(test["error"]["message"].as_str().unwrap_or("").contains("audience"), "{test}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_service_account_acts_as_each_mailbox_with_its_own_token() {
    let app = TestApp::spawn().await;
    let email = format!("mailgate-{}@project.iam.gserviceaccount.example", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let token_url = format!("{}/google/token", app.env.idp_url);
    let (key_json, spec) = mailgate_testkit::google_service_account_key(&email, &token_url, &app.env.domain).expect("key");
    let key_line: String = serde_json::from_str::<Value>(&key_json).ok().and_then(|k| k["private_key"].as_str().map(str::to_string)).unwrap_or_default();
    crate::helpers::record_secret(key_line.lines().nth(3).unwrap_or(""));
    app.env.idp.register_google_service_account(spec).await.expect("register");
    let (status, client) = app
        .post("/api/v1/oauth-clients", json!({"name": "google", "template": "google", "service_account_json": key_json, "token_url": token_url}))
        .await;
    assert_eq!(status, 201, "{client}");
    assert_eq!(client["credential_kind"], "google_service_account");
    assert_eq!(client["client_id"], email.as_str());
    assert_eq!(client["scopes"], json!(["https://mail.google.com/"]));
    assert!(!client.to_string().contains("PRIVATE KEY"));

    let rcpt = app.env.unique_address("google");
    let mailboxes = [app.env.unique_address("alice"), app.env.unique_address("bob")];
    let mut accounts = Vec::new();
    for mailbox in &mailboxes {
        let account = app.smtp_account(json!({"auth": "xoauth2", "oauth_client": "google", "username": mailbox, "send_address": mailbox})).await;
        for i in 0..2 {
            let id = app.submit(json!({"account": account["name"], "to": rcpt, "subject": format!("{mailbox} {i}"), "text": "x"})).await;
            app.wait_status(&id, "sent", DEADLINE).await;
        }
        accounts.push(account);
    }
    app.env.wait_for_messages(&rcpt, 4, DEADLINE).await;
    assert_eq!(app.env.idp.stats(&email).await.expect("stats").token_requests, 2, "one token per mailbox, reused");
    // Retrieval acts as the mailbox too, with the mailbox's token from the cache.
    app.env.deliver_lmtp(&mailboxes[0], &[b"Subject: for alice\r\n\r\nx\r\n".to_vec()]).await.expect("lmtp");
    let (status, imap) = app
        .post("/api/v1/accounts", json!({"name": "google-imap", "protocol": "imap", "auth": "xoauth2", "oauth_client": "google",
            "username": mailboxes[0], "host": "localhost", "connection": "tls", "port": app.env.imap_tls_port, "enabled": false}))
        .await;
    assert_eq!(status, 201, "{imap}");
    let report = app.retrieve(&imap).await;
    assert_eq!(report["stored"], 1, "{report}");
    assert_eq!(app.env.idp.stats(&email).await.expect("stats").token_requests, 2, "the mailbox's cached token served IMAP as well");

    let (_, test) = app.post("/api/v1/oauth-clients/google/token-test", json!({"subject": format!("carol@{}", app.env.domain)})).await;
    assert_eq!(test["ok"], true, "{test}");
    assert!(test["claims"].is_null(), "Google tokens are opaque");
    let (_, test) = app.post("/api/v1/oauth-clients/google/token-test", json!({"subject": "mallory@elsewhere.example"})).await;
    assert_eq!(test["ok"], false, "{test}");
    assert!(test["error"]["message"].as_str().unwrap_or("").contains("delegation"), "the fix names domain-wide delegation: {test}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_works_for_smtp_and_imap() {
    let app = TestApp::spawn().await;
    let client = app.microsoft_client(&[ROLE_SMTP, ROLE_IMAP]).await;
    let account = app.smtp_account(json!({"auth": "xoauth2", "oauth_client": client.name, "oauth_mechanism": "oauthbearer"})).await;
    assert_eq!(account["oauth_mechanism"], "oauthbearer");
    let rcpt = app.env.unique_address("bearer");
    let id = app.submit(json!({"account": account["name"], "to": rcpt, "text": "x"})).await;
    app.wait_status(&id, "sent", DEADLINE).await;
    app.env.wait_for_messages(&rcpt, 1, DEADLINE).await;
    let user = app.env.unique_address("bearer-imap");
    app.env.deliver_lmtp(&user, &[b"Subject: bearer\r\n\r\nx\r\n".to_vec()]).await.expect("lmtp");
    let imap = app.imap_account(&client, &user, json!({"oauth_mechanism": "oauthbearer"})).await;
    let report = app.retrieve(&imap).await;
    assert_eq!(report["stored"], 1, "{report}");
    // A refused token over OAUTHBEARER is explained like one over XOAUTH2.
    let smtp_only = app.microsoft_client(&[ROLE_SMTP]).await;
    let imap = app.imap_account(&smtp_only, &user, json!({"oauth_mechanism": "oauthbearer"})).await;
    let report = app.retrieve(&imap).await;
    assert!(report["error"].as_str().unwrap_or("").contains("AUTHENTICATE OAUTHBEARER"), "{report}");
}
