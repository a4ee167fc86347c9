//! Wiring: opens the store, builds the TLS and HTTP clients, the token cache and the spool,
//! starts the workers and the HTTP server, and shuts all of it down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use mailgate_core::now_millis;
use mailgate_check::Checker;
use mailgate_imap::{Retriever, RetrieverConfig};
use mailgate_oauth::TokenCache;
use mailgate_smtp::{Spool, SpoolConfig, Timeouts};
use mailgate_store::{Store, Vault};
use mailgate_web::AppState;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;

/// A running mailgate: HTTP server and workers.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub state: AppState,
    /// While no admin login exists: the one-time token of the setup link (`/ui/setup?token=`).
    pub setup_token: Option<String>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    http: JoinHandle<std::io::Result<()>>,
}

fn system_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .unwrap_or_else(|| "localhost".into())
}

/// Opens the configured store (applying migrations).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    mailgate_store::connect(&config.database_url()).await
}

/// The parts every command that talks to servers needs: store, vault, TLS, tokens.
pub struct Components {
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
    pub tls: Arc<rustls::ClientConfig>,
    pub tokens: Arc<TokenCache>,
    pub helo_name: String,
}

impl Components {
    pub async fn build(config: &Config) -> anyhow::Result<Components> {
        let store = open_store(config).await?;
        let vault = Arc::new(Vault::load_or_create(config.master_key.as_deref(), &config.data_dir)?);
        let tls = mailgate_smtp::tls::client_config(config.extra_ca_file.as_deref())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(Duration::from_secs(config.oauth.request_timeout_secs))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("mailgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let tokens = Arc::new(TokenCache::new(http, Duration::from_secs(config.oauth.renew_margin_secs)));
        let helo_name = config.spool.helo_name.clone().unwrap_or_else(system_host_name);
        Ok(Components { store, vault, tls, tokens, helo_name })
    }

    /// The check engine over these parts.
    pub fn checker(&self, config: &Config) -> Checker {
        Checker::new(
            self.store.clone(),
            self.vault.clone(),
            self.tokens.clone(),
            self.tls.clone(),
            self.helo_name.clone(),
            Duration::from_secs(config.spool.connect_timeout_secs.max(2)),
        )
    }
}

impl RunningApp {
    /// Starts everything; the HTTP server listens on `config.listen` (port 0 picks one).
    pub async fn start(config: &Config) -> anyhow::Result<RunningApp> {
        let parts = Components::build(config).await?;
        let checker = Arc::new(parts.checker(config));
        let Components { store, vault, tls, tokens, helo_name } = parts;
        let s = &config.spool;
        let spool_config = SpoolConfig {
            workers: s.workers,
            batch_size: s.batch_size.max(1),
            lease: Duration::from_secs(s.lease_secs.max(10)),
            poll_interval: Duration::from_secs(s.poll_interval_secs.max(1)),
            retry_base: Duration::from_secs(s.retry_base_secs),
            retry_max: Duration::from_secs(s.retry_max_secs),
            max_attempts: s.max_attempts.max(1),
            max_age: Duration::from_secs(s.max_age_hours * 3600),
            idle_session_ttl: Duration::from_secs(s.idle_session_secs),
            helo_name,
            timeouts: Timeouts {
                connect: Duration::from_secs(s.connect_timeout_secs),
                command: Duration::from_secs(s.command_timeout_secs),
                data: Duration::from_secs(s.data_timeout_secs),
            },
        };
        // The node id must be unique among running nodes and stable across restarts: at start
        // the claims a killed earlier run left behind are taken back at once.
        let node_id = config.node_id.clone().unwrap_or_else(system_host_name);
        let released = store.release_node_claims(&node_id).await?;
        if released > 0 {
            tracing::warn!(mails = released, node = %node_id, "took back mails an earlier run of this node held when it stopped; they are sent again");
        }
        let metrics = Arc::new(mailgate_core::metrics::Metrics::default());
        let spool =
            Spool::new(store.clone(), vault.clone(), tokens.clone(), tls.clone(), spool_config, node_id.clone(), metrics.clone());
        let retriever_config = RetrieverConfig {
            max_message_bytes: config.limits.max_message_bytes as u64,
            timeout: Duration::from_secs(s.command_timeout_secs.max(5) * 2),
            node: node_id.clone(),
            ..RetrieverConfig::default()
        };
        let retriever = Retriever::new(store.clone(), vault.clone(), tokens.clone(), tls, retriever_config, metrics.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let workers_running = Arc::new(AtomicBool::new(false));
        let state = AppState {
            store: store.clone(),
            vault,
            tokens,
            spool: spool.clone(),
            retriever: retriever.clone(),
            checker,
            metrics,
            metrics_token: config.metrics_token.clone().filter(|t| !t.is_empty()).map(Arc::from),
            limits: mailgate_core::submission::Limits {
                max_message_bytes: config.limits.max_message_bytes,
                max_attachments: config.limits.max_attachments,
                max_recipients: config.limits.max_recipients,
            },
            workers_running: workers_running.clone(),
            ui: Default::default(),
        };
        let listener =
            TcpListener::bind(&config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let mut tasks = spool.spawn_workers(shutdown_rx.clone());
        tasks.push(retriever.spawn(shutdown_rx.clone()));
        tasks.push(tokio::spawn(retention(store, node_id.clone(), shutdown_rx.clone())));
        workers_running.store(true, Ordering::Relaxed);
        tasks.push(tokio::spawn(expiry_notices(state.clone(), node_id.clone(), shutdown_rx.clone())));
        let mut http_shutdown = shutdown_rx;
        let http = tokio::spawn(mailgate_web::serve(listener, state.clone(), async move {
            let _ = http_shutdown.wait_for(|stop| *stop).await;
        }));
        let setup_token = state.ui.issue_setup_token(state.store.as_ref()).await?;
        tracing::info!(%addr, node = %node_id, workers = config.spool.workers, "mailgate is running");
        Ok(RunningApp { addr, state, setup_token, shutdown, tasks, http })
    }

    /// Stops accepting requests and work, lets workers finish the mail in hand and give back
    /// the rest, and waits (at most `grace`) for all of it.
    pub async fn stop(self, grace: Duration) {
        self.state.workers_running.store(false, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
            let _ = self.http.await;
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("shutdown took longer than {grace:?}; leases of unfinished mails lapse on their own");
        }
    }
}

const HOUR_MS: i64 = 3_600_000;

/// Whether this node runs periodic job `name` for the current hour: with several nodes on one
/// database, exactly one of them does (the first to claim the hour); the others skip it.
async fn claim_this_hour(store: &dyn Store, name: &str, node: &str) -> bool {
    let now = now_millis();
    match store.claim_job_run(name, now - now.rem_euclid(HOUR_MS), node, now).await {
        Ok(mine) => mine,
        Err(e) => {
            tracing::warn!(job = name, error = %e, "cannot claim the periodic job; skipped this time");
            false
        }
    }
}

/// Hourly (from the start): credential expiry notices (each goes out once; see the service),
/// by one node of the cluster per hour.
async fn expiry_notices(state: AppState, node: String, mut shutdown: watch::Receiver<bool>) {
    loop {
        if claim_this_hour(state.store.as_ref(), "expiry_notices", &node).await
            && let Err(e) = mailgate_web::service::expiry::run(&state, mailgate_web::service::expiry::today()).await
        {
            tracing::warn!(error = %format!("{e:#}"), "expiry notice run failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Hourly: deletes traffic rows older than `traffic_retention_days` (default 90) and consumed
/// inbox messages older than `inbox_retention_days` (default 7); by one node per hour.
async fn retention(store: Arc<dyn Store>, node: String, mut shutdown: watch::Receiver<bool>) {
    loop {
        if claim_this_hour(store.as_ref(), "retention", &node).await {
            purge(store.as_ref()).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

async fn purge(store: &dyn Store) {
    let settings = store.get_settings().await.unwrap_or_default();
    let setting = |key: &str, default: i64| settings.get(key).and_then(|v| v.parse().ok()).unwrap_or(default);
    let inbox_days = setting("inbox_retention_days", 7);
    match store.purge_consumed_inbox(now_millis() - inbox_days * 86_400_000).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(messages = n, days = inbox_days, "purged consumed inbox messages"),
        Err(e) => tracing::warn!(error = %e, "could not purge consumed inbox messages"),
    }
    let days = setting("traffic_retention_days", 90);
    if days > 0 {
        match store.purge_traffic(now_millis() - days * 86_400_000).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, days, "purged old traffic log rows"),
            Err(e) => tracing::warn!(error = %e, "could not purge the traffic log"),
        }
    }
}
