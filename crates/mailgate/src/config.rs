//! Configuration: defaults → `mailgate.toml` → `MAILGATE_*` environment → command-line flags.
//!
//! Nested keys use a double underscore in the environment: `MAILGATE_SPOOL__WORKERS=16`.

use std::path::PathBuf;

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server (API and UI) listens on.
    pub listen: String,
    /// Where the SQLite database and the master key live.
    pub data_dir: PathBuf,
    /// `sqlite://path` (default: `<data_dir>/mailgate.db`).
    pub database_url: String,
    /// PEM bundle of extra CAs trusted for SMTP, IMAP and token endpoints.
    pub extra_ca_file: Option<PathBuf>,
    /// Base64 of 32 bytes; default: `<data_dir>/master.key`, created on first start.
    pub master_key: Option<String>,
    /// This node's name in leases and logs (default: the host name). Unique per running
    /// node and stable across its restarts.
    pub node_id: Option<String>,
    /// `auto` (text on a terminal, JSON otherwise), `text` or `json`.
    pub log_format: String,
    /// A tracing filter such as `info` or `mailgate=debug,info`.
    pub log_level: String,
    pub limits: Limits,
    pub spool: Spool,
    pub oauth: OAuth,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_attachments: usize,
    pub max_recipients: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Spool {
    pub workers: usize,
    pub batch_size: u32,
    pub lease_secs: u64,
    pub poll_interval_secs: u64,
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    pub max_attempts: u32,
    pub max_age_hours: u64,
    pub idle_session_secs: u64,
    /// Name sent with EHLO (default: the system's host name).
    pub helo_name: Option<String>,
    pub connect_timeout_secs: u64,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OAuth {
    /// Renew tokens this long before they expire (Microsoft's SMTP needs ≥ 600).
    pub renew_margin_secs: u64,
    pub request_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: String::new(),
            extra_ca_file: None,
            master_key: None,
            node_id: None,
            log_format: "auto".into(),
            log_level: "info".into(),
            limits: Limits::default(),
            spool: Spool::default(),
            oauth: OAuth::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let d = mailgate_core::submission::Limits::default();
        Limits { max_message_bytes: d.max_message_bytes, max_attachments: d.max_attachments, max_recipients: d.max_recipients }
    }
}

impl Default for Spool {
    fn default() -> Self {
        Spool {
            workers: 8,
            batch_size: 50,
            lease_secs: 300,
            poll_interval_secs: 5,
            retry_base_secs: 30,
            retry_max_secs: 3600,
            max_attempts: 10,
            max_age_hours: 72,
            idle_session_secs: 30,
            helo_name: None,
            connect_timeout_secs: 10,
            command_timeout_secs: 30,
            data_timeout_secs: 120,
        }
    }
}

impl Default for OAuth {
    fn default() -> Self {
        OAuth { renew_margin_secs: 600, request_timeout_secs: 30 }
    }
}

/// Values given on the command line (they win over everything else).
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_ca_file: Option<PathBuf>,
}

/// Environment variables that are not configuration keys but are still ours.
const OTHER_VARIABLES: &[&str] = &["MAILGATE_CONFIG", "MAILGATE_URL", "MAILGATE_API_KEY", "MAILGATE_TEST_ENV"];

impl Config {
    /// Loads the configuration; `file` is the TOML file (missing is fine for the default path).
    pub fn load(file: Option<&std::path::Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                anyhow::ensure!(path.exists(), "config file {} does not exist", path.display());
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("mailgate.toml")),
        }
        // Unknown variables are left out here (and warned about at start), so a typo in the
        // environment cannot stop the service.
        let known = Self::known_keys();
        figment = figment
            .merge(Env::prefixed("MAILGATE_").split("__").filter(move |k| known.contains(&k.as_str().to_ascii_lowercase())))
            .merge(Serialized::defaults(overrides));
        figment.extract().context("invalid configuration")
    }

    /// `MAILGATE_*` variables that match no setting (typos), to warn about.
    pub fn unknown_variables() -> Vec<String> {
        let known = Self::known_keys();
        std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("MAILGATE_") && !OTHER_VARIABLES.contains(&k.as_str()))
            .filter(|k| !known.contains(&k["MAILGATE_".len()..].to_ascii_lowercase().replace("__", ".")))
            .collect()
    }

    fn known_keys() -> Vec<String> {
        let value = serde_json::to_value(Config::default()).unwrap_or_default();
        let mut keys = Vec::new();
        if let serde_json::Value::Object(map) = value {
            for (k, v) in map {
                match v {
                    serde_json::Value::Object(inner) => keys.extend(inner.keys().map(|ik| format!("{k}.{ik}"))),
                    _ => keys.push(k),
                }
            }
        }
        for optional in ["extra_ca_file", "master_key", "node_id", "spool.helo_name"] {
            keys.push(optional.to_string());
        }
        keys
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        if self.database_url.trim().is_empty() {
            format!("sqlite://{}", self.data_dir.join("mailgate.db").display())
        } else {
            self.database_url.clone()
        }
    }
}

/// A commented example configuration with every setting at its default.
pub const DEFAULT_CONFIG: &str = r#"# mailgate configuration. Every key is optional; shown are the defaults.
# Precedence: defaults < this file (mailgate.toml, or --config) < MAILGATE_* environment < flags.
# Environment names: MAILGATE_<KEY>, nested with a double underscore (MAILGATE_SPOOL__WORKERS).

# HTTP (API and UI) listen address.                          MAILGATE_LISTEN / --listen
listen = "127.0.0.1:8080"
# Holds the SQLite database and the master key.              MAILGATE_DATA_DIR / --data-dir
data_dir = "./data"
# Empty: sqlite://<data_dir>/mailgate.db.                    MAILGATE_DATABASE_URL / --database-url
database_url = ""
# PEM bundle of extra CAs for SMTP, IMAP and token endpoints. MAILGATE_EXTRA_CA_FILE / --extra-ca-file
# extra_ca_file = "/etc/mailgate/ca.pem"
# Base64 of 32 random bytes encrypting stored secrets; when unset, <data_dir>/master.key
# (created on first start, mode 0600). Back it up with the database.   MAILGATE_MASTER_KEY
# master_key = ""
# This node's name in leases and logs (default: the host name). Must be unique among running
# nodes and stay the same across restarts (mails a killed run held are taken back at start).  MAILGATE_NODE_ID
# node_id = "mail-1"
# auto (text on a terminal, JSON otherwise), text or json.   MAILGATE_LOG_FORMAT
log_format = "auto"
# A tracing filter, e.g. "info" or "mailgate_smtp=debug,info".   MAILGATE_LOG_LEVEL
log_level = "info"

[limits]
# Largest message accepted (bytes, after MIME encoding).     MAILGATE_LIMITS__MAX_MESSAGE_BYTES
max_message_bytes = 26214400
max_attachments = 100
max_recipients = 100

[spool]
# Parallel sending workers (each holds at most one SMTP session).
workers = 8
# Mails one worker claims at a time (all of one account).
batch_size = 50
# How long a claim holds before another worker may take the mail over.
lease_secs = 300
# Longest sleep of an idle worker (new mails wake workers at once).
poll_interval_secs = 5
# Backoff after a temporary failure: base, 2x, 4x, ... up to the maximum, with jitter.
retry_base_secs = 30
retry_max_secs = 3600
# A mail fails after this many attempts or this age.
max_attempts = 10
max_age_hours = 72
# Keep an idle SMTP session this long for the next mail of the same account.
idle_session_secs = 30
# Name sent with EHLO (default: the system's host name).
# helo_name = "mailgate.example.com"
connect_timeout_secs = 10
command_timeout_secs = 30
data_timeout_secs = 120

[oauth]
# Renew access tokens this long before they expire (Microsoft's SMTP needs >= 600).
renew_margin_secs = 600
request_timeout_secs = 30
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_text_matches_the_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_CONFIG).expect("DEFAULT_CONFIG parses");
        assert_eq!(parsed, Config::default());
    }
}
