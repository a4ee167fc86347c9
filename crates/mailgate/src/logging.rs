//! Structured logs: human-readable on a terminal, JSON lines otherwise.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `format` is `auto`, `text` or `json`.
pub fn init(format: &str, level: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // sqlx logs every slow statement at warn; those are ours to judge.
        .add_directive("sqlx=error".parse().expect("static directive"));
    let json = match format {
        "json" => true,
        "text" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if json { builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init() } else { builder.try_init() };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
