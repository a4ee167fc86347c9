//! Servers that hang, answer garbage or send endless lines: mailgate times out, names the
//! problem, keeps the mail queued and stays ready.

use std::time::Duration;

use mailgate_testkit::{HostileServer, Misbehaviour, ROLE_IMAP, eventually};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_smtp_and_imap_servers_lose_nothing_and_are_named() {
    let app = TestApp::spawn_with(|c| {
        c.spool.command_timeout_secs = 1;
        c.spool.connect_timeout_secs = 1;
        c.spool.max_attempts = 50;
    })
    .await;
    let cases = [
        (Misbehaviour::Hang, "timed out during greeting"),
        (Misbehaviour::Garbage, "server answered nonsense"),
        (Misbehaviour::EndlessLine, "longer than"),
    ];
    let mut servers = Vec::new();
    for (misbehaviour, words) in cases {
        let server = HostileServer::start(misbehaviour).await.expect("hostile server");
        let account = app
            .smtp_account(json!({"auth": "plain", "password": app.env.pass_sender, "connection": "none", "port": server.port()}))
            .await;
        let id = app.submit(json!({"account": account["name"], "to": "someone@example.test", "text": "keep me"})).await;
        let mail = eventually(Duration::from_secs(20), &format!("an attempt against the {misbehaviour:?} server"), || async {
            let (_, m) = app.get(&format!("/api/v1/mails/{id}")).await;
            (m["attempts"].as_u64() >= Some(1)).then_some(m)
        })
        .await;
        assert_eq!(mail["status"], "queued", "{misbehaviour:?}: the mail waits for a retry: {mail}");
        assert!(mail["last_error"].as_str().unwrap_or("").contains(words), "{misbehaviour:?}: {mail}");
        servers.push(server);
    }

    // IMAP against the same kinds of server: an error per pass, no crash.
    let client = app.microsoft_client(&[ROLE_IMAP]).await;
    for (n, server) in servers.iter().enumerate() {
        let account = app
            .imap_account(&client, &app.env.unique_address("hostile"), json!({"connection": "none", "host": "127.0.0.1", "port": server.port()}))
            .await;
        let report = app.retrieve(&account).await;
        assert_eq!(report["ok"], false, "case {n}: {report}");
        assert!(report["error"].as_str().is_some_and(|e| !e.is_empty()), "case {n}: {report}");
    }
    let (status, ready) = app.get("/readyz").await;
    assert_eq!((status, &ready["ready"]), (200, &json!(true)), "still ready: {ready}");
}
