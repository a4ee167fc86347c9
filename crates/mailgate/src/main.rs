//! The `mailgate` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mailgate::app::{RunningApp, open_store};
use mailgate::config::{Config, Overrides, default_config, reference_markdown};

#[derive(Parser)]
#[command(name = "mailgate", version, about = "A self-hosted mail gateway for applications (Microsoft 365, Google, any SMTP/IMAP server)")]
struct Cli {
    /// Configuration file (default: ./mailgate.toml when present).
    #[arg(long, global = true, env = "MAILGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Default)]
struct ServerArgs {
    /// HTTP listen address [MAILGATE_LISTEN]
    #[arg(long)]
    listen: Option<String>,
    /// Data directory (SQLite database, master key) [MAILGATE_DATA_DIR]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite://…) [MAILGATE_DATABASE_URL]
    #[arg(long)]
    database_url: Option<String>,
    /// PEM bundle of extra trusted CAs [MAILGATE_EXTRA_CA_FILE]
    #[arg(long)]
    extra_ca_file: Option<PathBuf>,
}

impl ServerArgs {
    fn overrides(self) -> Overrides {
        Overrides { listen: self.listen, data_dir: self.data_dir, database_url: self.database_url, extra_ca_file: self.extra_ca_file }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (API) and the workers.
    Serve(ServerArgs),
    /// Apply database migrations and exit.
    Migrate(ServerArgs),
    /// Print a commented example configuration.
    DefaultConfig,
    /// Print the configuration reference (Markdown, as in docs/configuration.md).
    ConfigReference,
    /// Print the API's OpenAPI 3.1 document (as served at /api/openapi.json).
    Openapi,
    /// Manage API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Manage admin logins of the web UI.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Submit a mail to a running server.
    Send(Box<mailgate::client::SendArgs>),
    /// Probe a running server's /readyz (for container and systemd health checks); exit 0 when
    /// ready, 1 otherwise.
    Healthcheck {
        /// Base URL of the server.
        #[arg(long, env = "MAILGATE_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Seconds to wait for an answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Diagnose an account step by step (DNS, TCP, TLS, greeting, token, claims, AUTH, test
    /// mail or folder); exits 1 when a step fails.
    Check {
        /// Account name or id.
        account: String,
        /// SMTP accounts: send a test mail to this address.
        #[arg(long)]
        send_to: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin login; the password is read from the terminal (not echoed) or stdin.
    Create {
        #[arg(long)]
        username: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// One line from stdin; on a terminal, prompted and not echoed.
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty").arg(arg).stdin(std::process::Stdio::inherit()).status();
    };
    if tty {
        eprint!("Password (at least 12 characters): ");
        let _ = std::io::stderr().flush();
        stty("-echo");
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if tty {
        stty("echo");
        eprintln!();
    }
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key and print it (it is shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// May manage accounts, OAuth clients, settings and keys, and see every mail.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List keys (never the keys themselves).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a key by id.
    Revoke {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn load(config: Option<&std::path::Path>, server: ServerArgs) -> anyhow::Result<Config> {
    Config::load(config, &server.overrides())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = cli.config.as_deref();
    match cli.command {
        Command::Serve(args) => {
            let config = load(config_path, args)?;
            mailgate::logging::init(&config.log_format, &config.log_level);
            for var in Config::unknown_variables() {
                tracing::warn!(variable = %var, "unknown MAILGATE_ variable ignored (see `mailgate default-config`)");
            }
            let app = RunningApp::start(&config).await?;
            println!("mailgate listening on http://{}", app.addr);
            if let Some(token) = &app.setup_token {
                // To the terminal only, never to the log: whoever has the link creates the first admin.
                println!(
                    "No admin login exists yet. Open this link once to create the first one (valid until used or until restart):\n  \
                     http://{}/ui/setup?token={token}\n(or run `mailgate admin create --username NAME`)",
                    app.addr
                );
            }
            shutdown_signal().await;
            tracing::info!("shutting down: finishing mails in hand");
            app.stop(Duration::from_secs(30)).await;
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => {
            let config = load(config_path, args)?;
            mailgate::logging::init(&config.log_format, &config.log_level);
            open_store(&config).await?;
            println!("database {} is up to date", redact_url(&config.database_url()));
            Ok(ExitCode::SUCCESS)
        }
        Command::ConfigReference => {
            print!("{}", reference_markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            println!("{}", mailgate_web::api::openapi::document_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::DefaultConfig => {
            print!("{}", default_config());
            Ok(ExitCode::SUCCESS)
        }
        Command::ApiKey(cmd) => {
            let (server, action) = match cmd {
                ApiKeyCommand::Create { name, admin, server } => (server, KeyAction::Create(name, admin)),
                ApiKeyCommand::List { server } => (server, KeyAction::List),
                ApiKeyCommand::Revoke { id, server } => (server, KeyAction::Revoke(id)),
            };
            let config = load(config_path, server)?;
            let store = open_store(&config).await?;
            match action {
                KeyAction::Create(name, admin) => {
                    let (record, key) = mailgate_web::service::api_keys::create(store.as_ref(), &name, admin).await?;
                    eprintln!("created {} key '{}' ({}); it is shown only now:", if admin { "admin" } else { "sending" }, record.name, record.id);
                    println!("{key}");
                }
                KeyAction::List => {
                    for k in store.list_api_keys().await? {
                        let state = if k.revoked_at.is_some() { "revoked" } else if k.admin { "admin" } else { "sending" };
                        println!("{}\t{}…\t{}\t{}", k.id, k.prefix, state, k.name);
                    }
                }
                KeyAction::Revoke(id) => {
                    store.revoke_api_key(&id, mailgate_core::now_millis()).await.context("revoking the key")?;
                    println!("revoked {id}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::Create { username, server }) => {
            let config = load(config_path, server)?;
            let store = open_store(&config).await?;
            let password = read_password()?;
            let admin = mailgate_web::ui::auth::create_admin(store.as_ref(), &username, &password)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            mailgate_web::ui::auth::audit_store(store.as_ref(), "cli", "admin.create", &admin.username, "mailgate admin create").await;
            println!("created admin '{}'; sign in at /ui/login", admin.username);
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck { url, timeout } => {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(timeout)).build()?;
            let url = format!("{}/readyz", url.trim_end_matches('/'));
            match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    println!("ready");
                    Ok(ExitCode::SUCCESS)
                }
                Ok(r) => {
                    let status = r.status();
                    println!("not ready ({status}): {}", r.text().await.unwrap_or_default());
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => {
                    println!("no answer from {url}: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Check { account, send_to, json, server } => {
            let config = load(config_path, server)?;
            let parts = mailgate::app::Components::build(&config).await?;
            let account = parts.store.get_account(&account).await.context("finding the account")?;
            let report = parts.checker(&config).check_account(&account, &mailgate_check::CheckOptions { send_to }).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Send(args) => {
            let ok = mailgate::client::send(*args).await?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

enum KeyAction {
    Create(String, bool),
    List,
    Revoke(String),
}

/// A database URL without a password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
