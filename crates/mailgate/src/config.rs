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
    /// When set, `/metrics` requires `Authorization: Bearer <this token>`.
    pub metrics_token: Option<String>,
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
            metrics_token: None,
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
        for optional in ["extra_ca_file", "master_key", "node_id", "metrics_token", "spool.helo_name"] {
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

/// One setting's documentation. The defaults come from `Config::default()`, the environment
/// name from the key, so `default-config` and docs/configuration.md cannot drift from the code.
pub struct SettingDoc {
    pub key: &'static str,
    pub help: &'static str,
}

/// Every setting, in the order the example shows them (tests check that none is missing).
pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc { key: "listen", help: "HTTP (API and UI) listen address. Flag --listen." },
    SettingDoc { key: "data_dir", help: "Holds the SQLite database and the master key. Flag --data-dir." },
    SettingDoc { key: "database_url", help: "Empty: sqlite://<data_dir>/mailgate.db. postgres://user:password@host/db for PostgreSQL (several nodes: docs/multi-node.md). Flag --database-url." },
    SettingDoc { key: "extra_ca_file", help: "PEM bundle of extra CAs trusted for SMTP, IMAP and token endpoints. Flag --extra-ca-file." },
    SettingDoc {
        key: "master_key",
        help: "Base64 of 32 random bytes encrypting stored secrets; unset: <data_dir>/master.key, created on first start (mode 0600). Back it up with the database.",
    },
    SettingDoc {
        key: "node_id",
        help: "This node's name in leases and logs (default: the host name). Unique among running nodes and stable across restarts: mails a killed run held are taken back at start.",
    },
    SettingDoc { key: "log_format", help: "auto (text on a terminal, JSON otherwise), text or json." },
    SettingDoc { key: "metrics_token", help: "When set, /metrics requires 'Authorization: Bearer <token>' (otherwise it is open: keep the listen address private)." },
    SettingDoc { key: "log_level", help: "A tracing filter, e.g. \"info\" or \"mailgate_smtp=debug,info\"." },
    SettingDoc { key: "limits.max_message_bytes", help: "Largest message accepted (bytes, after MIME encoding); larger retrieved messages stay on the server." },
    SettingDoc { key: "limits.max_attachments", help: "Most attachments a submitted mail may have." },
    SettingDoc { key: "limits.max_recipients", help: "Most recipients (to + cc + bcc) a submitted mail may have." },
    SettingDoc { key: "spool.workers", help: "Parallel sending workers (each holds at most one SMTP session)." },
    SettingDoc { key: "spool.batch_size", help: "Mails one worker claims at a time (all of one account)." },
    SettingDoc { key: "spool.lease_secs", help: "How long a claim holds before another worker may take the mail over." },
    SettingDoc { key: "spool.poll_interval_secs", help: "Longest sleep of an idle worker (new mails wake workers at once)." },
    SettingDoc { key: "spool.retry_base_secs", help: "First backoff after a temporary failure; it doubles per attempt, with jitter." },
    SettingDoc { key: "spool.retry_max_secs", help: "Longest backoff." },
    SettingDoc { key: "spool.max_attempts", help: "A mail fails after this many attempts…" },
    SettingDoc { key: "spool.max_age_hours", help: "…or at this age." },
    SettingDoc { key: "spool.idle_session_secs", help: "Keep an idle SMTP session this long for the next mail of the same account." },
    SettingDoc { key: "spool.helo_name", help: "Name sent with EHLO (default: the system's host name)." },
    SettingDoc { key: "spool.connect_timeout_secs", help: "TCP connect timeout (also the diagnosis' per-step timeout)." },
    SettingDoc { key: "spool.command_timeout_secs", help: "Timeout of each SMTP command; IMAP steps get twice this (at least 10 s)." },
    SettingDoc { key: "spool.data_timeout_secs", help: "Timeout for sending a message's content and its final reply." },
    SettingDoc { key: "oauth.renew_margin_secs", help: "Renew access tokens this long before they expire (Microsoft's SMTP needs >= 600)." },
    SettingDoc { key: "oauth.request_timeout_secs", help: "Timeout of a token request." },
];

/// `MAILGATE_SPOOL__WORKERS` for `spool.workers`.
pub fn env_name(key: &str) -> String {
    format!("MAILGATE_{}", key.replace('.', "__").to_ascii_uppercase())
}

/// The default value of `key` as TOML, or `None` when it has no default.
fn default_toml(key: &str) -> Option<String> {
    let mut value = serde_json::to_value(Config::default()).ok()?;
    for part in key.split('.') {
        value = value.get(part)?.clone();
    }
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(toml::Value::String(s).to_string()),
        other => Some(other.to_string()),
    }
}

/// A commented example configuration with every setting at its default.
pub fn default_config() -> String {
    let mut out = String::from(
        "# mailgate configuration. Every key is optional; shown are the defaults.\n\
         # Precedence: defaults < this file (mailgate.toml, or --config) < MAILGATE_* environment < flags.\n\
         # Environment names: MAILGATE_<KEY>, nested with a double underscore (MAILGATE_SPOOL__WORKERS).\n",
    );
    let mut section = "";
    for s in SETTINGS {
        let (table, name) = s.key.split_once('.').unwrap_or(("", s.key));
        if table != section {
            out.push_str(&format!("\n[{table}]\n"));
            section = table;
        }
        out.push_str(&format!("\n# {}\n# {}\n", s.help, env_name(s.key)));
        match default_toml(s.key) {
            Some(v) => out.push_str(&format!("{name} = {v}\n")),
            None => out.push_str(&format!("# {name} = \"\"\n")),
        }
    }
    out
}

/// docs/configuration.md (a test keeps the committed file equal to this).
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the settings type (`crates/mailgate/src/config.rs`); `mailgate default-config` prints\n\
         the same as a commented `mailgate.toml`. Precedence: defaults < `mailgate.toml` (or `--config FILE`)\n\
         < environment < flags.\n\n| setting | environment | default | meaning |\n|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let default = default_toml(s.key).unwrap_or_else(|| "(unset)".into());
        out.push_str(&format!("| `{}` | `{}` | `{}` | {} |\n", s.key, env_name(s.key), default.replace('|', "\\|"), s.help.replace('|', "\\|")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_text_matches_the_defaults() {
        let parsed: Config = toml::from_str(&default_config()).expect("default-config parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn every_setting_is_documented_and_every_documented_key_exists() {
        let mut keys = Config::known_keys();
        keys.sort();
        keys.dedup();
        let mut documented: Vec<String> = SETTINGS.iter().map(|s| s.key.to_string()).collect();
        documented.sort();
        assert_eq!(keys, documented);
    }

    #[test]
    fn the_committed_configuration_reference_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(committed == reference_markdown(), "docs/configuration.md is stale: run `mailgate config-reference > docs/configuration.md`");
    }
}
