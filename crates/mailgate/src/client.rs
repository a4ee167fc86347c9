//! `mailgate send`: a command-line client of a running mailgate's API, for scripts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde_json::{Value, json};

/// What to send, as given on the command line.
/// No `Debug`: it holds the API key.
#[derive(Clone, clap::Args)]
pub struct SendArgs {
    /// Base URL of the mailgate server.
    #[arg(long, env = "MAILGATE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key (prefer the environment variable: command lines are visible to other users).
    #[arg(long, env = "MAILGATE_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Sending account (default: the server's default account).
    #[arg(long)]
    pub account: Option<String>,
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Vec<String>,
    #[arg(long)]
    pub cc: Vec<String>,
    #[arg(long)]
    pub bcc: Vec<String>,
    #[arg(long)]
    pub reply_to: Vec<String>,
    #[arg(long)]
    pub subject: Option<String>,
    /// Plain-text body.
    #[arg(long, conflicts_with = "text_file")]
    pub text: Option<String>,
    #[arg(long)]
    pub text_file: Option<PathBuf>,
    /// HTML body (with a text body, the mail becomes multipart/alternative).
    #[arg(long, conflicts_with = "html_file")]
    pub html: Option<String>,
    #[arg(long)]
    pub html_file: Option<PathBuf>,
    /// A file to attach (repeatable).
    #[arg(long)]
    pub attach: Vec<PathBuf>,
    /// An extra header, `Name: value` (repeatable).
    #[arg(long)]
    pub header: Vec<String>,
    /// Send this complete RFC 5322 message instead (`-` reads standard input).
    #[arg(long, conflicts_with_all = ["text", "text_file", "html", "html_file", "attach", "subject", "from", "header"])]
    pub raw: Option<PathBuf>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Wait until the mail is sent or failed (at most this many seconds); exit 1 if it failed.
    #[arg(long, num_args = 0..=1, default_missing_value = "120")]
    pub wait: Option<u64>,
}

fn content_type_for(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "zip" => "application/zip",
        "json" => "application/json",
        "xml" => "application/xml",
        "ics" => "text/calendar",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn json_body(args: &SendArgs) -> anyhow::Result<Value> {
    let mut body = json!({ "to": args.to, "cc": args.cc, "bcc": args.bcc, "reply_to": args.reply_to });
    let map = body.as_object_mut().context("json object")?;
    if let Some(a) = &args.account {
        map.insert("account".into(), json!(a));
    }
    if let Some(f) = &args.from {
        map.insert("from".into(), json!(f));
    }
    if let Some(s) = &args.subject {
        map.insert("subject".into(), json!(s));
    }
    let text = match (&args.text, &args.text_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(p)) => Some(read_text(p)?),
        _ => None,
    };
    let html = match (&args.html, &args.html_file) {
        (Some(h), _) => Some(h.clone()),
        (None, Some(p)) => Some(read_text(p)?),
        _ => None,
    };
    if let Some(t) = text {
        map.insert("text".into(), json!(t));
    }
    if let Some(h) = html {
        map.insert("html".into(), json!(h));
    }
    let mut attachments = Vec::new();
    for path in &args.attach {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let filename = path.file_name().and_then(|n| n.to_str()).unwrap_or("attachment").to_string();
        attachments.push(json!({
            "filename": filename,
            "content_type": content_type_for(path),
            "content_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
        }));
    }
    map.insert("attachments".into(), Value::Array(attachments));
    let mut headers = serde_json::Map::new();
    for h in &args.header {
        let (name, value) = h.split_once(':').with_context(|| format!("--header '{h}' is not 'Name: value'"))?;
        headers.insert(name.trim().to_string(), json!(value.trim()));
    }
    map.insert("headers".into(), Value::Object(headers));
    Ok(body)
}

fn describe_problem(status: reqwest::StatusCode, body: &Value) -> String {
    let mut text = format!("{} {}", status.as_u16(), body.get("detail").and_then(Value::as_str).unwrap_or(""));
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        for e in errors {
            let field = e.get("field").and_then(Value::as_str).unwrap_or("");
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            text.push_str(&format!("\n  {field}: {message}"));
        }
    }
    text
}

/// Submits the mail; prints its id; with `--wait`, follows it to `sent` or `failed`.
pub async fn send(args: SendArgs) -> anyhow::Result<bool> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let base = args.url.trim_end_matches('/');
    let mut request = http.post(format!("{base}/api/v1/mails")).bearer_auth(&args.api_key);
    if let Some(k) = &args.idempotency_key {
        request = request.header("Idempotency-Key", k);
    }
    request = match &args.raw {
        Some(path) => {
            let raw = if path.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading standard input")?;
                buf
            } else {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
            };
            let mut query = Vec::new();
            if let Some(a) = &args.account {
                query.push(("account", a.clone()));
            }
            let envelope: Vec<String> = args.to.iter().chain(&args.cc).chain(&args.bcc).cloned().collect();
            if !envelope.is_empty() {
                query.push(("to", envelope.join(",")));
            }
            request.query(&query).header("content-type", "message/rfc822").body(raw)
        }
        None => request.json(&json_body(&args)?),
    };
    let response = request.send().await.with_context(|| format!("connecting to {base}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("the server refused the mail: {}", describe_problem(status, &body));
    }
    let id = body.get("id").and_then(Value::as_str).context("the answer has no id")?.to_string();
    println!("{id}");
    let Some(wait) = args.wait else { return Ok(true) };
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        let mail: Value = http
            .get(format!("{base}/api/v1/mails/{id}"))
            .bearer_auth(&args.api_key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match mail.get("status").and_then(Value::as_str) {
            Some("sent") => {
                println!("sent: {}", mail.get("server_reply").and_then(Value::as_str).unwrap_or(""));
                return Ok(true);
            }
            Some("failed") => {
                eprintln!("failed: {}", mail.get("last_error").and_then(Value::as_str).unwrap_or("unknown error"));
                return Ok(false);
            }
            _ if Instant::now() > deadline => bail!("still not sent after {wait} s (status {})", mail["status"]),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
