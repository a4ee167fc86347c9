//! The store test suite: every case runs against SQLite (a temporary file) and PostgreSQL (a
//! fresh database per test, created through `MAILGATE_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, and dropped afterwards).
//!
//! `store_tests! { name, … }` turns each `async fn name(s: Arc<dyn Store>)` below into
//! `sqlite::name` and `postgres::name`.

// The cases are plain functions the generated `#[test]`s call, so clippy's allowance for
// unwrap in tests does not reach them.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate_core::Millis;
use mailgate_core::model::*;
use mailgate_store::{
    AdminSession, AdminUser, AttemptRecord, AuditEntry, InboxFilter, Inserted, MailFilter, NewInboxMessage, NewMail, PgStore, SqliteStore, Store, StoreError,
    TrafficFilter,
};

const T0: Millis = 1_800_000_000_000;

// ---------------------------------------------------------------------------------------------
// Backends

fn pg_admin_url() -> String {
    std::env::var("MAILGATE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

/// A fresh PostgreSQL database for one test; dropped by [`PgDb::drop_now`].
struct PgDb {
    admin: sqlx::PgPool,
    name: String,
    url: String,
}

impl PgDb {
    async fn create() -> PgDb {
        let admin_url = pg_admin_url();
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} (MAILGATE_TEST_PG_URL): {e}"));
        let name = format!("mg_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("creating a test database");
        let url = with_database(&admin_url, &name);
        PgDb { admin, name, url }
    }

    async fn drop_now(self) {
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&self.admin).await;
    }
}

async fn run_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = std::env::temp_dir().join(format!("mg-store-{}", uuid::Uuid::new_v4().simple()));
    let store = SqliteStore::open(&format!("sqlite://{}/mailgate.db", dir.display())).await.expect("opening SQLite");
    case(Arc::new(store)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn run_postgres<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = PgDb::create().await;
    let store = PgStore::open(&db.url).await.expect("opening PostgreSQL");
    let pool = store.pool().clone();
    // Run the case as a task so that its database is dropped even when it fails.
    let outcome = tokio::spawn(case(Arc::new(store))).await;
    pool.close().await;
    db.drop_now().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::run_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::run_postgres(super::$name).await;
                }
            )*
        }
    };
}

store_tests!(
    oauth_clients_crud,
    accounts_crud,
    api_keys,
    settings,
    insert_mail_idempotency,
    list_mails_filters_and_paging,
    claim_one_account_at_a_time_and_only_due_mails,
    lease_lapses_and_another_owner_takes_over,
    finish_attempts_outcomes,
    release_claims_of_owner_and_node,
    next_due_at,
    retry_and_delete,
    inbox_insert_dedup_list_consume,
    claim_inbox_message,
    retrieval_state,
    expiry_notices,
    traffic_list_and_purge,
    concurrent_claims_each_mail_once,
    mailbox_leases,
    job_runs_once_per_period,
    admins_sessions_and_audit_log,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

fn oauth_client(id: &str, name: &str) -> OAuthClient {
    OAuthClient {
        id: id.into(),
        name: name.into(),
        template: "microsoft365".into(),
        tenant: Some("contoso.onmicrosoft.com".into()),
        client_id: "2d33f7e8-0000-4000-8000-000000000000".into(),
        credential_kind: CredentialKind::Secret,
        secret: Some(Sealed("v1:sealed-secret".into())),
        secret_updated_at: Some(T0),
        certificate: None,
        signing_alg: "RS256".into(),
        scopes: vec!["https://outlook.office365.com/.default".into()],
        token_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token".into(),
        expires_on: Some("2027-05-31".into()),
        comment: "ünïcode comment".into(),
        created_at: T0,
        updated_at: T0,
    }
}

fn account(id: &str, name: &str, protocol: Protocol, client: Option<&str>) -> Account {
    Account {
        id: id.into(),
        name: name.into(),
        protocol,
        auth: if client.is_some() { AuthMethod::Xoauth2 } else { AuthMethod::Plain },
        username: format!("{name}@example.com"),
        password: client.is_none().then(|| Sealed("v1:sealed-password".into())),
        password_updated_at: client.is_none().then_some(T0),
        oauth_client_id: client.map(Into::into),
        oauth_mechanism: OAuthMechanism::Auto,
        send_address: Some(format!("{name}@example.com")),
        send_name: Some("Billing".into()),
        connection: Connection::Starttls,
        host: "smtp.example.com".into(),
        port: 587,
        imap_folder: "INBOX".into(),
        after_retrieval: AfterRetrieval::Delete,
        move_folder: None,
        poll_interval_secs: 60,
        idle: true,
        max_sessions: 4,
        enabled: true,
        comment: String::new(),
        last_success_at: None,
        last_error: None,
        last_error_at: None,
        created_at: T0,
        updated_at: T0,
    }
}

fn new_mail(id: &str, account_id: &str, now: Millis) -> NewMail {
    NewMail {
        id: id.into(),
        account_id: account_id.into(),
        api_key_id: None,
        message_id: format!("<{id}@mailgate.test>"),
        envelope_from: "billing@example.com".into(),
        recipients: vec!["customer@example.org".into()],
        header_from: "Billing <billing@example.com>".into(),
        to_display: "customer@example.org".into(),
        cc_display: String::new(),
        subject: format!("Invoice {id}"),
        attachments: vec![AttachmentSummary { filename: "invoice.pdf".into(), size: 1234 }],
        raw: format!("Subject: Invoice {id}\r\n\r\nbody\r\n").into_bytes(),
        body_text: format!("Dear customer, your invoice number {id} is attached."),
        idempotency_key: None,
        now,
    }
}

fn new_inbox(id: &str, account_id: &str, uid: i64, now: Millis) -> NewInboxMessage {
    NewInboxMessage {
        id: id.into(),
        account_id: account_id.into(),
        folder: "INBOX".into(),
        uidvalidity: 7,
        uid,
        message_id: Some(format!("<in-{id}@example.org>")),
        subject: format!("Order {id}"),
        from: "Customer <customer@example.org>".into(),
        to: "billing@example.com".into(),
        cc: String::new(),
        date: Some(now - 1000),
        parsed: "{}".into(),
        problems: vec![],
        attachments: vec![],
        raw: vec![0, 1, 2, 0xff, b'\r', b'\n'],
        body_text: format!("Please ship order {id} by Friday."),
        now,
    }
}

fn record(mail_id: &str, at: Millis, outcome: AttemptOutcome, new_status: MailStatus, next: Millis) -> AttemptRecord {
    AttemptRecord {
        mail_id: mail_id.into(),
        at,
        outcome,
        error: (outcome != AttemptOutcome::Sent).then(|| "451 try later".into()),
        reply: Some("250 2.0.0 OK".into()),
        duration_ms: 12,
        new_status,
        next_attempt_at: next,
        remaining_recipients: None,
        counts: true,
    }
}

/// One SMTP account `acc1` (name `billing`) without OAuth.
async fn with_account(s: &dyn Store) -> Account {
    let a = account("acc1", "billing", Protocol::Smtp, None);
    s.insert_account(&a).await.expect("inserting an account");
    a
}

fn ids(mails: &[Mail]) -> Vec<&str> {
    mails.iter().map(|m| m.id.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Cases

async fn oauth_clients_crud(s: Arc<dyn Store>) {
    let c = oauth_client("c1", "entra");
    s.insert_oauth_client(&c).await.unwrap();
    assert_eq!(s.get_oauth_client("c1").await.unwrap(), c);
    assert_eq!(s.get_oauth_client("entra").await.unwrap(), c);
    assert!(matches!(s.insert_oauth_client(&oauth_client("c2", "entra")).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.get_oauth_client("nope").await, Err(StoreError::NotFound(_))));

    let mut c2 = oauth_client("c2", "another");
    c2.credential_kind = CredentialKind::Certificate;
    c2.certificate = Some("-----BEGIN CERTIFICATE-----".into());
    c2.signing_alg = "PS256".into();
    c2.tenant = None;
    c2.expires_on = None;
    c2.secret = None;
    s.insert_oauth_client(&c2).await.unwrap();
    let names: Vec<String> = s.list_oauth_clients().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["another", "entra"]);
    assert_eq!(s.get_oauth_client("c2").await.unwrap(), c2);

    let mut changed = c.clone();
    changed.scopes = vec!["a".into(), "b".into()];
    changed.updated_at = T0 + 5;
    s.update_oauth_client(&changed).await.unwrap();
    assert_eq!(s.get_oauth_client("c1").await.unwrap(), changed);
    changed.name = "another".into();
    assert!(matches!(s.update_oauth_client(&changed).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.update_oauth_client(&oauth_client("zz", "zz")).await, Err(StoreError::NotFound(_))));

    s.insert_account(&account("a1", "billing", Protocol::Smtp, Some("c1"))).await.unwrap();
    match s.delete_oauth_client("c1").await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("billing"), "{m}"),
        other => panic!("deleting a used client: {other:?}"),
    }
    s.delete_oauth_client("c2").await.unwrap();
    assert!(matches!(s.delete_oauth_client("c2").await, Err(StoreError::NotFound(_))));
}

async fn accounts_crud(s: Arc<dyn Store>) {
    assert!(matches!(
        s.insert_account(&account("a0", "x", Protocol::Smtp, Some("missing"))).await,
        Err(StoreError::Conflict(_))
    ));
    s.insert_oauth_client(&oauth_client("c1", "entra")).await.unwrap();
    let a = account("a1", "billing", Protocol::Smtp, Some("c1"));
    s.insert_account(&a).await.unwrap();
    let mut imap = account("a2", "billing-in", Protocol::Imap, None);
    imap.after_retrieval = AfterRetrieval::Move;
    imap.move_folder = Some("Processed".into());
    imap.idle = false;
    imap.enabled = false;
    imap.port = 993;
    s.insert_account(&imap).await.unwrap();
    assert_eq!(s.get_account("a1").await.unwrap(), a);
    assert_eq!(s.get_account("billing-in").await.unwrap(), imap);
    assert!(matches!(s.insert_account(&account("a3", "billing", Protocol::Smtp, None)).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.list_accounts().await.unwrap().len(), 2);

    let mut edited = a.clone();
    edited.host = "smtp2.example.com".into();
    edited.max_sessions = 9;
    edited.oauth_mechanism = OAuthMechanism::Oauthbearer;
    s.update_account(&edited).await.unwrap();
    assert_eq!(s.get_account("a1").await.unwrap(), edited);
    edited.oauth_client_id = Some("missing".into());
    assert!(matches!(s.update_account(&edited).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.update_account(&account("zz", "zz", Protocol::Smtp, None)).await, Err(StoreError::NotFound(_))));

    s.record_account_health("a1", T0 + 10, None).await.unwrap();
    s.record_account_health("a1", T0 + 20, Some("535 auth failed")).await.unwrap();
    let got = s.get_account("a1").await.unwrap();
    assert_eq!((got.last_success_at, got.last_error.as_deref(), got.last_error_at), (Some(T0 + 10), Some("535 auth failed"), Some(T0 + 20)));

    s.insert_mail(&new_mail("m1", "a1", T0)).await.unwrap();
    assert!(matches!(s.delete_account("a1").await, Err(StoreError::Conflict(_))));
    let claimed = s.claim_mails("n/w", T0, 60_000, 10).await.unwrap();
    assert_eq!(ids(&claimed), ["m1"]);
    s.finish_attempts("n/w", &[record("m1", T0 + 1, AttemptOutcome::Sent, MailStatus::Sent, T0)]).await.unwrap();
    s.delete_account("a1").await.unwrap();
    assert!(matches!(s.get_mail("m1").await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.delete_account("a1").await, Err(StoreError::NotFound(_))));
}

async fn api_keys(s: Arc<dyn Store>) {
    let k = ApiKey {
        id: "k1".into(),
        name: "admin".into(),
        prefix: "mgk_abcd".into(),
        admin: true,
        created_at: T0,
        last_used_at: None,
        revoked_at: None,
    };
    s.insert_api_key(&k, "hash1").await.unwrap();
    s.insert_api_key(&ApiKey { id: "k2".into(), admin: false, created_at: T0 + 1, ..k.clone() }, "hash2").await.unwrap();
    assert!(s.authenticate_api_key("wrong", T0).await.unwrap().is_none());
    assert_eq!(s.authenticate_api_key("hash1", T0 + 100).await.unwrap(), Some(k.clone()));
    let listed = s.list_api_keys().await.unwrap();
    assert_eq!(listed.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["k1", "k2"]);
    assert_eq!(listed[0].last_used_at, Some(T0 + 100));
    assert!(!listed[1].admin);
    s.revoke_api_key("k1", T0 + 200).await.unwrap();
    assert!(s.authenticate_api_key("hash1", T0 + 300).await.unwrap().is_none());
    assert!(matches!(s.revoke_api_key("k1", T0 + 300).await, Err(StoreError::NotFound(_))));
    assert_eq!(s.list_api_keys().await.unwrap()[0].revoked_at, Some(T0 + 200));
}

async fn settings(s: Arc<dyn Store>) {
    assert!(s.get_settings().await.unwrap().is_empty());
    s.put_setting("retention_days", Some("30")).await.unwrap();
    s.put_setting("admin_contacts", Some("a@example.com")).await.unwrap();
    s.put_setting("retention_days", Some("7")).await.unwrap();
    let got = s.get_settings().await.unwrap();
    assert_eq!(got.get("retention_days").map(String::as_str), Some("7"));
    assert_eq!(got.len(), 2);
    s.put_setting("admin_contacts", None).await.unwrap();
    s.put_setting("never_set", None).await.unwrap();
    assert_eq!(s.get_settings().await.unwrap().into_iter().collect::<Vec<_>>(), [("retention_days".into(), "7".into())]);
}

async fn insert_mail_idempotency(s: Arc<dyn Store>) {
    with_account(&*s).await;
    let mut m = new_mail("m1", "acc1", T0);
    m.api_key_id = Some("k1".into());
    m.idempotency_key = Some("order-1".into());
    m.raw = (0..=255u8).cycle().take(70_000).collect();
    let Inserted::Created(first) = s.insert_mail(&m).await.unwrap() else { panic!("first insert") };
    assert_eq!((first.status, first.attempts, first.size), (MailStatus::Queued, 0, 70_000));
    assert_eq!(first.account_name, "billing");
    assert_eq!(s.get_mail_raw("m1").await.unwrap(), m.raw);

    // Same key, same API key: the first mail comes back, nothing new is stored.
    let again = NewMail { id: "m2".into(), ..m.clone() };
    match s.insert_mail(&again).await.unwrap() {
        Inserted::Existing(e) => assert_eq!(e, first),
        Inserted::Created(_) => panic!("a second mail with the same idempotency key"),
    }
    assert!(matches!(s.get_mail("m2").await, Err(StoreError::NotFound(_))));
    // The same key under another API key is another mail.
    let other = NewMail { id: "m3".into(), api_key_id: Some("k2".into()), ..m.clone() };
    assert!(matches!(s.insert_mail(&other).await.unwrap(), Inserted::Created(_)));
    // Without an API key (CLI submission), keys do not deduplicate (NULLs are distinct).
    for id in ["m4", "m5"] {
        let anon = NewMail { id: id.into(), api_key_id: None, ..m.clone() };
        assert!(matches!(s.insert_mail(&anon).await.unwrap(), Inserted::Created(_)));
    }
    // No key: never deduplicated.
    for id in ["m6", "m7"] {
        assert!(matches!(s.insert_mail(&new_mail(id, "acc1", T0)).await.unwrap(), Inserted::Created(_)));
    }
    assert!(matches!(s.insert_mail(&new_mail("m8", "nope", T0)).await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.get_mail_raw("nope").await, Err(StoreError::NotFound(_))));
    assert_eq!(s.list_mails(&MailFilter { limit: 100, ..Default::default() }).await.unwrap().total, 6);
}

async fn list_mails_filters_and_paging(s: Arc<dyn Store>) {
    with_account(&*s).await;
    s.insert_account(&account("acc2", "support", Protocol::Smtp, None)).await.unwrap();
    for i in 0..25 {
        let mut m = new_mail(&format!("m{i:02}"), if i % 5 == 0 { "acc2" } else { "acc1" }, T0 + i);
        m.api_key_id = Some(if i % 2 == 0 { "even" } else { "odd" }.into());
        if i == 7 {
            m.subject = "Special 100% OFFER_now".into();
        }
        s.insert_mail(&m).await.unwrap();
    }
    let list = |f: MailFilter| {
        let s = s.clone();
        async move { s.list_mails(&MailFilter { limit: if f.limit == 0 { 50 } else { f.limit }, ..f }).await.unwrap() }
    };
    let all = list(MailFilter::default()).await;
    assert_eq!(all.total, 25);
    assert_eq!(all.items.first().map(|m| m.id.as_str()), Some("m24"), "newest first");

    let page = list(MailFilter { limit: 10, offset: 20, ..Default::default() }).await;
    assert_eq!((page.total, ids(&page.items)), (25, vec!["m04", "m03", "m02", "m01", "m00"]));
    assert_eq!(list(MailFilter { account_id: Some("acc2".into()), ..Default::default() }).await.total, 5);
    assert_eq!(list(MailFilter { api_key_id: Some("odd".into()), ..Default::default() }).await.total, 12);
    let range = list(MailFilter { since: Some(T0 + 10), until: Some(T0 + 13), ..Default::default() }).await;
    assert_eq!(ids(&range.items), ["m12", "m11", "m10"]);
    // Case-insensitive substring search; % and _ are literal.
    assert_eq!(ids(&list(MailFilter { query: Some("special 100%".into()), ..Default::default() }).await.items), ["m07"]);
    assert_eq!(list(MailFilter { query: Some("%".into()), ..Default::default() }).await.total, 1);
    assert_eq!(list(MailFilter { query: Some("offer_".into()), ..Default::default() }).await.total, 1);
    assert_eq!(list(MailFilter { query: Some("CUSTOMER@".into()), ..Default::default() }).await.total, 25);
    assert_eq!(list(MailFilter { query: Some("<m13@".into()), ..Default::default() }).await.total, 1);
    assert_eq!(list(MailFilter { query: Some(String::new()), ..Default::default() }).await.total, 25);
    // The body is searched too.
    assert_eq!(ids(&list(MailFilter { query: Some("INVOICE NUMBER m17 is".into()), ..Default::default() }).await.items), ["m17"]);

    s.claim_mails("n/w", T0 + 100, 60_000, 3).await.unwrap();
    let sending = list(MailFilter { status: Some(MailStatus::Sending), ..Default::default() }).await;
    assert_eq!(sending.total, 3);
    let combined =
        list(MailFilter { status: Some(MailStatus::Queued), account_id: Some("acc1".into()), api_key_id: Some("even".into()), ..Default::default() })
            .await;
    assert!(combined.items.iter().all(|m| m.status == MailStatus::Queued && m.account_id == "acc1" && m.api_key_id.as_deref() == Some("even")));
    let counts: HashMap<MailStatus, i64> = s.count_mails_by_status().await.unwrap().into_iter().collect();
    assert_eq!((counts.get(&MailStatus::Queued), counts.get(&MailStatus::Sending)), (Some(&22), Some(&3)));
}

async fn claim_one_account_at_a_time_and_only_due_mails(s: Arc<dyn Store>) {
    with_account(&*s).await;
    s.insert_account(&account("acc2", "support", Protocol::Smtp, None)).await.unwrap();
    s.insert_mail(&new_mail("b1", "acc2", T0)).await.unwrap();
    s.insert_mail(&new_mail("a1", "acc1", T0 + 1)).await.unwrap();
    s.insert_mail(&new_mail("b2", "acc2", T0 + 2)).await.unwrap();
    s.insert_mail(&new_mail("later", "acc1", T0 + 10_000)).await.unwrap();

    assert!(s.claim_mails("n/w1", T0 - 1, 60_000, 10).await.unwrap().is_empty(), "nothing due yet");
    let first = s.claim_mails("n/w1", T0 + 5, 60_000, 10).await.unwrap();
    assert_eq!(ids(&first), ["b1", "b2"], "the account of the most overdue mail");
    assert!(first.iter().all(|m| m.status == MailStatus::Sending && m.account_name == "support"));
    let second = s.claim_mails("n/w2", T0 + 5, 60_000, 10).await.unwrap();
    assert_eq!(ids(&second), ["a1"]);
    assert!(s.claim_mails("n/w3", T0 + 5, 60_000, 10).await.unwrap().is_empty());
    assert_eq!(ids(&s.claim_mails("n/w3", T0 + 10_000, 60_000, 10).await.unwrap()), ["later"]);

    // The limit holds.
    for i in 0..5 {
        s.insert_mail(&new_mail(&format!("x{i}"), "acc1", T0 + 20_000 + i)).await.unwrap();
    }
    assert_eq!(ids(&s.claim_mails("n/w4", T0 + 30_000, 60_000, 2).await.unwrap()), ["x0", "x1"]);
}

async fn lease_lapses_and_another_owner_takes_over(s: Arc<dyn Store>) {
    with_account(&*s).await;
    s.insert_mail(&new_mail("m1", "acc1", T0)).await.unwrap();
    assert_eq!(ids(&s.claim_mails("a/w", T0, 1_000, 10).await.unwrap()), ["m1"]);
    assert!(s.claim_mails("b/w", T0 + 999, 1_000, 10).await.unwrap().is_empty(), "lease still held");
    assert_eq!(s.next_due_at().await.unwrap(), Some(T0 + 1_000));
    let taken = s.claim_mails("b/w", T0 + 1_001, 1_000, 10).await.unwrap();
    assert_eq!(ids(&taken), ["m1"], "lapsed lease taken over");
    // The first owner's late result is ignored: it lost the lease.
    s.finish_attempts("a/w", &[record("m1", T0 + 1_100, AttemptOutcome::Sent, MailStatus::Sent, T0)]).await.unwrap();
    let m = s.get_mail("m1").await.unwrap();
    assert_eq!(m.status, MailStatus::Sending);
    assert!(s.list_attempts("m1").await.unwrap().is_empty());
    assert_eq!(s.release_claims("a/w").await.unwrap(), 0);
    // The new owner's result counts.
    s.finish_attempts("b/w", &[record("m1", T0 + 1_200, AttemptOutcome::Sent, MailStatus::Sent, T0)]).await.unwrap();
    let m = s.get_mail("m1").await.unwrap();
    assert_eq!((m.status, m.sent_at, m.attempts), (MailStatus::Sent, Some(T0 + 1_200), 1));
    assert!(s.claim_mails("c/w", T0 + 100_000, 1_000, 10).await.unwrap().is_empty(), "sent mails are never claimed");
}

async fn finish_attempts_outcomes(s: Arc<dyn Store>) {
    with_account(&*s).await;
    for id in ["t", "p", "ok", "part", "crash"] {
        let mut m = new_mail(id, "acc1", T0);
        if id == "part" {
            m.recipients = vec!["a@x.org".into(), "b@x.org".into()];
        }
        s.insert_mail(&m).await.unwrap();
    }
    let claimed = s.claim_mails("n/w", T0, 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 5);
    let mut part = record("part", T0 + 3, AttemptOutcome::Temporary, MailStatus::Queued, T0 + 60_000);
    part.remaining_recipients = Some(vec!["b@x.org".into()]);
    let mut crash = record("crash", T0 + 4, AttemptOutcome::Temporary, MailStatus::Queued, T0 + 5);
    crash.counts = false;
    s.finish_attempts(
        "n/w",
        &[
            record("t", T0 + 1, AttemptOutcome::Temporary, MailStatus::Queued, T0 + 30_000),
            record("p", T0 + 2, AttemptOutcome::Permanent, MailStatus::Failed, T0 + 2),
            record("ok", T0 + 3, AttemptOutcome::Sent, MailStatus::Sent, T0 + 3),
            part,
            crash,
        ],
    )
    .await
    .unwrap();
    let t = s.get_mail("t").await.unwrap();
    assert_eq!((t.status, t.attempts, t.next_attempt_at, t.last_error.as_deref()), (MailStatus::Queued, 1, T0 + 30_000, Some("451 try later")));
    assert_eq!(t.server_reply.as_deref(), Some("250 2.0.0 OK"));
    let p = s.get_mail("p").await.unwrap();
    assert_eq!((p.status, p.attempts, p.sent_at), (MailStatus::Failed, 1, None));
    let ok = s.get_mail("ok").await.unwrap();
    assert_eq!((ok.status, ok.sent_at, ok.last_error), (MailStatus::Sent, Some(T0 + 3), None));
    assert_eq!(s.get_mail("part").await.unwrap().recipients, ["b@x.org"]);
    assert_eq!(s.get_mail("crash").await.unwrap().attempts, 0, "a crash-recovered attempt does not count");

    let attempts = s.list_attempts("t").await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].outcome, attempts[0].at, attempts[0].duration_ms), (AttemptOutcome::Temporary, T0 + 1, 12));
    // A second attempt is listed after the first.
    assert_eq!(ids(&s.claim_mails("n/w", T0 + 30_000, 60_000, 10).await.unwrap()), ["crash", "t"]);
    s.finish_attempts("n/w", &[record("t", T0 + 30_001, AttemptOutcome::Sent, MailStatus::Sent, T0)]).await.unwrap();
    let outcomes: Vec<AttemptOutcome> = s.list_attempts("t").await.unwrap().into_iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::Temporary, AttemptOutcome::Sent]);
    // Sent mails are in the traffic log, the others are not.
    let traffic = s.list_traffic(&TrafficFilter { limit: 50, ..Default::default() }).await.unwrap();
    let mut sent: Vec<_> = traffic.items.iter().map(|t| (t.mail_id.clone().unwrap_or_default(), t.direction.as_str())).collect();
    sent.sort();
    assert_eq!(sent, [("ok".to_string(), "out"), ("t".to_string(), "out")]);
    assert_eq!(traffic.items[0].account_name, "billing");
    assert_eq!(traffic.items[0].attachments, vec![AttachmentSummary { filename: "invoice.pdf".into(), size: 1234 }]);
}

async fn release_claims_of_owner_and_node(s: Arc<dyn Store>) {
    with_account(&*s).await;
    for i in 0..8 {
        s.insert_mail(&new_mail(&format!("m{i}"), "acc1", T0 + i)).await.unwrap();
    }
    for owner in ["node1/w1", "node1/w2", "node10/w1", "node2/w1"] {
        assert_eq!(s.claim_mails(owner, T0 + 100, 60_000, 2).await.unwrap().len(), 2);
    }
    assert_eq!(s.release_node_claims("node1").await.unwrap(), 4, "node1/… only, not node10/…");
    assert_eq!(s.release_claims("node2/w1").await.unwrap(), 2);
    assert_eq!(s.release_claims("node2/w1").await.unwrap(), 0);
    let sending = s.list_mails(&MailFilter { status: Some(MailStatus::Sending), limit: 50, ..Default::default() }).await.unwrap();
    assert_eq!(sending.total, 2);
    let released = s.get_mail("m0").await.unwrap();
    assert_eq!((released.status, released.attempts), (MailStatus::Queued, 0));
    assert_eq!(s.claim_mails("node3/w1", T0 + 100, 60_000, 10).await.unwrap().len(), 6);
}

async fn next_due_at(s: Arc<dyn Store>) {
    assert_eq!(s.next_due_at().await.unwrap(), None);
    with_account(&*s).await;
    s.insert_mail(&new_mail("m1", "acc1", T0 + 5_000)).await.unwrap();
    s.insert_mail(&new_mail("m2", "acc1", T0 + 9_000)).await.unwrap();
    assert_eq!(s.next_due_at().await.unwrap(), Some(T0 + 5_000));
    s.claim_mails("n/w", T0 + 5_000, 1_000, 1).await.unwrap();
    assert_eq!(s.next_due_at().await.unwrap(), Some(T0 + 6_000), "the lease lapses before m2 is due");
    s.finish_attempts("n/w", &[record("m1", T0 + 5_500, AttemptOutcome::Sent, MailStatus::Sent, T0)]).await.unwrap();
    assert_eq!(s.next_due_at().await.unwrap(), Some(T0 + 9_000));
}

async fn retry_and_delete(s: Arc<dyn Store>) {
    with_account(&*s).await;
    for id in ["f", "ok", "busy", "q"] {
        s.insert_mail(&new_mail(id, "acc1", T0)).await.unwrap();
    }
    s.claim_mails("n/w", T0, 60_000, 10).await.unwrap();
    s.finish_attempts(
        "n/w",
        &[
            record("f", T0 + 1, AttemptOutcome::Permanent, MailStatus::Failed, T0 + 1),
            record("ok", T0 + 1, AttemptOutcome::Sent, MailStatus::Sent, T0 + 1),
            record("q", T0 + 1, AttemptOutcome::Temporary, MailStatus::Queued, T0 + 99_000),
        ],
    )
    .await
    .unwrap();
    let retried = s.retry_mail("f", T0 + 50).await.unwrap();
    assert_eq!((retried.status, retried.attempts, retried.next_attempt_at), (MailStatus::Queued, 0, T0 + 50));
    assert_eq!(s.retry_mail("q", T0 + 60).await.unwrap().next_attempt_at, T0 + 60, "a waiting mail goes now");
    assert!(matches!(s.retry_mail("ok", T0).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.retry_mail("busy", T0).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.retry_mail("nope", T0).await, Err(StoreError::NotFound(_))));

    assert!(matches!(s.delete_mail("busy").await, Err(StoreError::Conflict(_))));
    s.delete_mail("ok").await.unwrap();
    s.delete_mail("f").await.unwrap();
    assert!(matches!(s.delete_mail("ok").await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.get_mail("f").await, Err(StoreError::NotFound(_))));
    let left: Vec<_> = s.list_mails(&MailFilter { limit: 50, ..Default::default() }).await.unwrap().items.into_iter().map(|m| m.id).collect();
    assert_eq!(left.len(), 2);
}

async fn inbox_insert_dedup_list_consume(s: Arc<dyn Store>) {
    with_account(&*s).await;
    s.insert_account(&account("in2", "other-in", Protocol::Imap, None)).await.unwrap();
    assert!(s.insert_inbox_message(&new_inbox("i1", "acc1", 1, T0)).await.unwrap());
    assert!(!s.insert_inbox_message(&new_inbox("i1-again", "acc1", 1, T0 + 1)).await.unwrap(), "same folder/UIDVALIDITY/UID");
    assert!(s.insert_inbox_message(&NewInboxMessage { uidvalidity: 8, ..new_inbox("i1-newvalidity", "acc1", 1, T0 + 2) }).await.unwrap());
    assert!(s.insert_inbox_message(&new_inbox("i2", "acc1", 2, T0 + 3)).await.unwrap());
    let mut flagged = new_inbox("i3", "in2", 1, T0 + 4);
    flagged.problems = vec!["missing boundary".into()];
    flagged.message_id = None;
    flagged.subject = "Ärger mit 100% Rabatt".into();
    assert!(s.insert_inbox_message(&flagged).await.unwrap());
    assert!(matches!(s.get_inbox_message("i1-again").await, Err(StoreError::NotFound(_))));

    let m = s.get_inbox_message("i3").await.unwrap();
    assert_eq!((m.account_name.as_str(), m.problems.clone(), m.message_id.clone(), m.size), ("other-in", vec!["missing boundary".to_string()], None, 6));
    assert_eq!(s.get_inbox_raw("i3").await.unwrap(), vec![0, 1, 2, 0xff, b'\r', b'\n']);
    assert!(matches!(s.get_inbox_raw("nope").await, Err(StoreError::NotFound(_))));

    let list = |f: InboxFilter| {
        let s = s.clone();
        async move { s.list_inbox(&InboxFilter { limit: 50, ..f }).await.unwrap() }
    };
    let all = list(InboxFilter::default()).await;
    assert_eq!(all.items.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["i3", "i2", "i1-newvalidity", "i1"]);
    assert_eq!(list(InboxFilter { account_id: Some("in2".into()), ..Default::default() }).await.total, 1);
    assert_eq!(list(InboxFilter { query: Some("100%".into()), ..Default::default() }).await.total, 1);
    assert_eq!(list(InboxFilter { query: Some("<IN-I2@".into()), ..Default::default() }).await.total, 1);
    assert_eq!(list(InboxFilter { query: Some("ship order i2 by".into()), ..Default::default() }).await.total, 1, "the body is searched");
    assert_eq!(list(InboxFilter { since: Some(T0 + 2), until: Some(T0 + 4), ..Default::default() }).await.total, 2);
    let paged = s.list_inbox(&InboxFilter { limit: 1, offset: 1, ..Default::default() }).await.unwrap();
    assert_eq!((paged.total, paged.items[0].id.as_str()), (4, "i2"));

    s.consume_inbox_message("i2", T0 + 100).await.unwrap();
    s.consume_inbox_message("i2", T0 + 200).await.unwrap();
    assert_eq!(s.get_inbox_message("i2").await.unwrap().consumed_at, Some(T0 + 100), "consuming is idempotent");
    assert!(matches!(s.consume_inbox_message("nope", T0).await, Err(StoreError::NotFound(_))));
    assert_eq!(list(InboxFilter { consumed: Some(false), ..Default::default() }).await.total, 3);
    assert_eq!(list(InboxFilter { consumed: Some(true), ..Default::default() }).await.total, 1);

    let traffic = s.list_traffic(&TrafficFilter { direction: Some(Direction::In), limit: 50, ..Default::default() }).await.unwrap();
    assert_eq!(traffic.total, 4, "one traffic row per stored message, none for the duplicate");
    assert_eq!(traffic.items[0].message_id, "", "no Message-ID");

    assert_eq!(s.purge_consumed_inbox(T0 + 100).await.unwrap(), 0);
    assert_eq!(s.purge_consumed_inbox(T0 + 101).await.unwrap(), 1);
    assert!(matches!(s.get_inbox_message("i2").await, Err(StoreError::NotFound(_))));
}

async fn claim_inbox_message(s: Arc<dyn Store>) {
    with_account(&*s).await;
    s.insert_account(&account("in2", "other-in", Protocol::Imap, None)).await.unwrap();
    for (i, acc) in [(1, "acc1"), (2, "in2"), (3, "acc1")] {
        s.insert_inbox_message(&new_inbox(&format!("i{i}"), acc, i, T0 + i)).await.unwrap();
    }
    let a = s.claim_inbox_message("alice", T0 + 10, 1_000, None).await.unwrap().expect("a message");
    assert_eq!((a.id.as_str(), a.claimed_until), ("i1", Some(T0 + 1_010)), "oldest first");
    let b = s.claim_inbox_message("bob", T0 + 10, 1_000, Some("acc1")).await.unwrap().expect("a message");
    assert_eq!(b.id, "i3", "only that account's, not the claimed one");
    assert!(s.claim_inbox_message("carol", T0 + 10, 1_000, Some("acc1")).await.unwrap().is_none());
    s.consume_inbox_message("i3", T0 + 20).await.unwrap();
    assert_eq!(s.claim_inbox_message("carol", T0 + 10, 1_000, None).await.unwrap().map(|m| m.id), Some("i2".into()));
    assert!(s.claim_inbox_message("dave", T0 + 10, 1_000, None).await.unwrap().is_none());
    // alice's lease lapses: dave gets i1; the consumed i3 never comes back.
    let d = s.claim_inbox_message("dave", T0 + 1_011, 1_000, Some("acc1")).await.unwrap().expect("the lapsed message");
    assert_eq!((d.id.as_str(), d.claimed_until), ("i1", Some(T0 + 2_011)));
    assert!(s.claim_inbox_message("erin", T0 + 1_011, 1_000, Some("acc1")).await.unwrap().is_none());
}

async fn retrieval_state(s: Arc<dyn Store>) {
    s.insert_account(&account("in1", "billing-in", Protocol::Imap, None)).await.unwrap();
    assert_eq!(s.get_retrieval_state("in1").await.unwrap(), None);
    let mut st = RetrievalState { account_id: "in1".into(), uidvalidity: Some(42), last_run_at: Some(T0), ..Default::default() };
    s.put_retrieval_state(&st).await.unwrap();
    assert_eq!(s.get_retrieval_state("in1").await.unwrap(), Some(st.clone()));
    st.last_error = Some("LOGIN failed".into());
    st.last_error_at = Some(T0 + 5);
    st.last_success_at = Some(T0 + 1);
    st.stored_total = 17;
    st.oversize = vec![OversizeMessage { uid: 9, size: 80_000_000 }];
    s.put_retrieval_state(&st).await.unwrap();
    assert_eq!(s.get_retrieval_state("in1").await.unwrap(), Some(st));
    s.delete_account("in1").await.unwrap();
    assert_eq!(s.get_retrieval_state("in1").await.unwrap(), None, "removed with its account");
}

async fn expiry_notices(s: Arc<dyn Store>) {
    s.insert_oauth_client(&oauth_client("c1", "entra")).await.unwrap();
    assert!(s.expiry_notices_sent("c1", "2027-05-31").await.unwrap().is_empty());
    s.record_expiry_notices("c1", "2027-05-31", &[90, 30], T0, Some("m1")).await.unwrap();
    s.record_expiry_notices("c1", "2027-05-31", &[30, 10], T0 + 1, None).await.unwrap();
    let mut sent = s.expiry_notices_sent("c1", "2027-05-31").await.unwrap();
    sent.sort();
    assert_eq!(sent, [10, 30, 90]);
    assert!(s.expiry_notices_sent("c1", "2028-05-31").await.unwrap().is_empty(), "a new date starts over");
    s.record_expiry_notices("c1", "2028-05-31", &[-1], T0, None).await.unwrap();
    assert_eq!(s.expiry_notices_sent("c1", "2028-05-31").await.unwrap(), [-1]);
}

async fn traffic_list_and_purge(s: Arc<dyn Store>) {
    with_account(&*s).await;
    for i in 0..6 {
        s.insert_mail(&new_mail(&format!("m{i}"), "acc1", T0)).await.unwrap();
        s.insert_inbox_message(&new_inbox(&format!("i{i}"), "acc1", i, T0 + i * 1_000)).await.unwrap();
    }
    s.claim_mails("n/w", T0, 60_000, 10).await.unwrap();
    let recs: Vec<_> =
        (0..6).map(|i| record(&format!("m{i}"), T0 + i * 1_000 + 500, AttemptOutcome::Sent, MailStatus::Sent, T0)).collect();
    s.finish_attempts("n/w", &recs).await.unwrap();
    let f = |f: TrafficFilter| {
        let s = s.clone();
        async move { s.list_traffic(&TrafficFilter { limit: 50, ..f }).await.unwrap() }
    };
    let all = f(TrafficFilter::default()).await;
    assert_eq!(all.total, 12);
    assert!(all.items.windows(2).all(|w| w[0].at >= w[1].at), "newest first");
    assert_eq!(f(TrafficFilter { direction: Some(Direction::Out), ..Default::default() }).await.total, 6);
    assert_eq!(f(TrafficFilter { account_name: Some("billing".into()), ..Default::default() }).await.total, 12);
    assert_eq!(f(TrafficFilter { account_name: Some("nobody".into()), ..Default::default() }).await.total, 0);
    assert_eq!(f(TrafficFilter { query: Some("invoice M3".into()), ..Default::default() }).await.total, 1);
    assert_eq!(f(TrafficFilter { since: Some(T0 + 2_000), until: Some(T0 + 4_000), ..Default::default() }).await.total, 4);
    let page = s.list_traffic(&TrafficFilter { limit: 5, offset: 10, ..Default::default() }).await.unwrap();
    assert_eq!((page.total, page.items.len()), (12, 2));

    assert_eq!(s.purge_traffic(T0 + 3_000).await.unwrap(), 6);
    assert_eq!(f(TrafficFilter::default()).await.total, 6);
    assert_eq!(s.purge_traffic(T0 + 3_000).await.unwrap(), 0);
}

/// Four workers claim (and finish) concurrently until 500 mails are gone: each mail is claimed
/// exactly once.
async fn concurrent_claims_each_mail_once(s: Arc<dyn Store>) {
    with_account(&*s).await;
    for i in 0..500 {
        s.insert_mail(&new_mail(&format!("m{i:03}"), "acc1", T0)).await.unwrap();
    }
    let now = mailgate_core::now_millis().max(T0 + 1);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("node{w}/w");
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                assert!(Instant::now() < deadline, "claiming took over a minute");
                let claimed = s.claim_mails(&owner, now, 600_000, 7).await.expect("claiming");
                if claimed.is_empty() {
                    break;
                }
                let recs: Vec<_> =
                    claimed.iter().map(|m| record(&m.id, now, AttemptOutcome::Sent, MailStatus::Sent, now)).collect();
                s.finish_attempts(&owner, &recs).await.expect("finishing");
                got.extend(claimed.into_iter().map(|m| m.id));
            }
            got
        }));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_worker = Vec::new();
    for t in tasks {
        let got = t.await.expect("worker");
        per_worker.push(got.len());
        for id in got {
            *seen.entry(id).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "claimed more than once: {twice:?}");
    assert_eq!(seen.len(), 500, "per worker: {per_worker:?}");
    let counts: HashMap<MailStatus, i64> = s.count_mails_by_status().await.unwrap().into_iter().collect();
    assert_eq!(counts.get(&MailStatus::Sent), Some(&500));
    let attempts: usize = {
        let mut n = 0;
        for id in seen.keys().take(20) {
            n += s.list_attempts(id).await.unwrap().len();
        }
        n
    };
    assert_eq!(attempts, 20, "one attempt per mail");
}

async fn mailbox_leases(s: Arc<dyn Store>) {
    s.insert_account(&account("in1", "billing-in", Protocol::Imap, None)).await.unwrap();
    assert!(s.acquire_mailbox_lease("in1", "node-a", T0, 30_000).await.unwrap());
    assert!(!s.acquire_mailbox_lease("in1", "node-b", T0 + 1_000, 30_000).await.unwrap(), "held by node-a");
    assert!(s.acquire_mailbox_lease("in1", "node-a", T0 + 10_000, 30_000).await.unwrap(), "renewed by its holder");
    assert!(!s.acquire_mailbox_lease("in1", "node-b", T0 + 39_999, 30_000).await.unwrap(), "the renewal counts");
    assert!(s.acquire_mailbox_lease("in1", "node-b", T0 + 40_001, 30_000).await.unwrap(), "lapsed: taken over");
    assert!(!s.acquire_mailbox_lease("in1", "node-a", T0 + 40_002, 30_000).await.unwrap(), "the old holder lost it");
    s.release_mailbox_lease("in1", "node-a").await.unwrap();
    assert!(!s.acquire_mailbox_lease("in1", "node-c", T0 + 40_003, 30_000).await.unwrap(), "only the holder releases");
    s.release_mailbox_lease("in1", "node-b").await.unwrap();
    assert!(s.acquire_mailbox_lease("in1", "node-c", T0 + 40_004, 30_000).await.unwrap(), "released: free at once");
    assert!(!s.acquire_mailbox_lease("missing", "node-c", T0, 30_000).await.unwrap(), "no such account");
    s.delete_account("in1").await.unwrap();

    // Many nodes racing for one mailbox: exactly one wins.
    s.insert_account(&account("in2", "other-in", Protocol::Imap, None)).await.unwrap();
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.acquire_mailbox_lease("in2", &format!("node-{i}"), T0, 30_000).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.unwrap());
    }
    assert_eq!(winners, 1);
}

async fn job_runs_once_per_period(s: Arc<dyn Store>) {
    assert!(s.claim_job_run("expiry", T0, "node-a", T0 + 5).await.unwrap());
    assert!(!s.claim_job_run("expiry", T0, "node-b", T0 + 6).await.unwrap());
    assert!(!s.claim_job_run("expiry", T0, "node-a", T0 + 7).await.unwrap(), "once, even for the same node");
    assert!(s.claim_job_run("retention", T0, "node-b", T0 + 6).await.unwrap(), "another job");
    assert!(s.claim_job_run("expiry", T0 + 3_600_000, "node-b", T0 + 3_600_001).await.unwrap(), "next period");
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_job_run("race", T0, &format!("node-{i}"), T0).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.unwrap());
    }
    assert_eq!(winners, 1);
}

/// The admin UI's logins, sessions and audit log.
async fn admins_sessions_and_audit_log(s: Arc<dyn Store>) {
    assert_eq!(s.count_admins().await.unwrap(), 0);
    let admin = AdminUser {
        id: "a1".into(),
        username: "alice".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at: T0,
        password_changed_at: T0,
    };
    s.insert_admin(&admin).await.unwrap();
    let again = AdminUser { id: "a2".into(), ..admin.clone() };
    assert!(matches!(s.insert_admin(&again).await, Err(StoreError::Conflict(_))), "usernames are unique");
    assert_eq!(s.count_admins().await.unwrap(), 1);
    assert_eq!(s.get_admin_by_username("alice").await.unwrap().unwrap().password_hash, admin.password_hash);
    assert!(s.get_admin_by_username("bob").await.unwrap().is_none());

    let session = |id: &str, created: Millis, ttl: Millis| AdminSession {
        id_hash: id.into(),
        admin_id: "a1".into(),
        username: String::new(),
        csrf_token: format!("csrf-{id}"),
        created_at: created,
        expires_at: created + ttl,
    };
    s.insert_admin_session(&session("old", T0, 1_000)).await.unwrap();
    s.insert_admin_session(&session("s1", T0 + 5_000, 60_000)).await.unwrap();
    let found = s.get_admin_session("s1", T0 + 6_000).await.unwrap().expect("live session");
    assert_eq!((found.username.as_str(), found.csrf_token.as_str()), ("alice", "csrf-s1"));
    assert!(s.get_admin_session("s1", T0 + 65_000).await.unwrap().is_none(), "expired sessions are not found");
    assert!(s.get_admin_session("old", T0 + 500).await.unwrap().is_none(), "expired ones are deleted on the next insert");
    s.insert_admin_session(&session("s2", T0 + 7_000, 60_000)).await.unwrap();
    s.delete_admin_session("s2").await.unwrap();
    assert!(s.get_admin_session("s2", T0 + 8_000).await.unwrap().is_none());
    s.set_admin_password("a1", "new-hash", T0 + 9_000).await.unwrap();
    assert!(s.get_admin_session("s1", T0 + 9_500).await.unwrap().is_none(), "a new password ends the sessions");
    assert_eq!(s.get_admin_by_username("alice").await.unwrap().unwrap().password_changed_at, T0 + 9_000);
    assert!(matches!(s.set_admin_password("nobody", "h", T0).await, Err(StoreError::NotFound(_))));

    for i in 0..5 {
        let entry = AuditEntry { id: 0, at: T0 + i, actor: "admin:alice".into(), action: format!("action {i}"), target: "t".into(), detail: String::new() };
        s.insert_audit(&entry).await.unwrap();
    }
    let page = s.list_audit(2, 1).await.unwrap();
    assert_eq!(page.total, 5);
    let actions: Vec<_> = page.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["action 3", "action 2"], "newest first, paged");
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only

/// Several nodes starting at once on an empty database: the migrations run once (advisory lock)
/// and every node opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_start_migrates_once() {
    let db = PgDb::create().await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PgStore::open_with(&url, 2).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.expect("task").expect("opening"));
    }
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(stores[0].pool())
        .await
        .unwrap();
    assert_eq!(applied, mailgate_store::migrate::POSTGRES.iter().map(|m| m.version).collect::<Vec<_>>());
    assert!(stores[3].is_current().await);
    for s in stores {
        s.pool().close().await;
    }
    db.drop_now().await;
}

/// The database drops every connection (as in a restart): calls fail or succeed but never
/// panic, and the pool reconnects on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_reconnects_after_connections_are_killed() {
    let db = PgDb::create().await;
    let store = PgStore::open(&db.url).await.unwrap();
    with_account(&store).await;
    store.ping().await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert!(!killed.is_empty());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if store.ping().await.is_ok() && store.get_account("acc1").await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the pool did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.insert_mail(&new_mail("m1", "acc1", T0)).await.unwrap();
    store.pool().close().await;
    db.drop_now().await;
}

/// Unreachable database: `ping` fails (for `/readyz`) instead of hanging or panicking.
#[tokio::test]
async fn postgres_ping_reports_an_unreachable_database() {
    let db = PgDb::create().await;
    let store = PgStore::open(&db.url).await.unwrap();
    store.ping().await.unwrap();
    db.drop_now().await; // terminates the store's connections and removes the database
    let started = Instant::now();
    assert!(store.ping().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(15), "ping took {:?}", started.elapsed());
}

#[test]
fn database_url_rewriting() {
    assert_eq!(with_database("postgres://postgres@127.0.0.1:5432/test", "mg_x"), "postgres://postgres@127.0.0.1:5432/mg_x");
    assert_eq!(with_database("postgres://u:p@h/test?sslmode=disable", "mg_x"), "postgres://u:p@h/mg_x?sslmode=disable");
    assert_eq!(with_database("postgresql://h", "mg_x"), "postgresql://h/mg_x");
    assert_eq!(mailgate_store::postgres::redact("postgres://u:secret@h/db"), "postgres://u@h/db");
}
