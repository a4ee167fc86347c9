//! `mailgate-fake-idp`: runs the test kit's stand-in for the Microsoft identity platform and
//! Google's token endpoint (token endpoints, Dovecot introspection, admin endpoints) until it is
//! killed.
//!
//! ```text
//! mailgate-fake-idp [--listen 127.0.0.1:PORT] [--key PATH]
//! ```
//! `--listen` defaults to `127.0.0.1:0` (a free port). `--key` is a PKCS#8 RSA key in PEM; when
//! the file does not exist, a new key is generated there with openssl (so restarts keep the key).
//! Without `--key` a throwaway key is generated. One log line per request goes to stderr
//! (filter with `MAILGATE_FAKE_IDP_LOG`, default `info`); secrets and tokens are never logged.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use mailgate_testkit::idp::{FakeIdp, generate_key_pem};

const USAGE: &str = "usage: mailgate-fake-idp [--listen 127.0.0.1:PORT] [--key PATH]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILGATE_FAKE_IDP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();

    let (listen, key) = parse_args(std::env::args().skip(1))?;
    if let Some(key) = &key
        && !key.exists()
    {
        generate_key_pem(key)
            .await
            .with_context(|| format!("generate a key at {}", key.display()))?;
        tracing::info!("generated a new RSA key at {}", key.display());
    }
    let idp = FakeIdp::start(listen, key.as_deref()).await?;
    tracing::info!("mailgate-fake-idp listening on {}", idp.url());
    std::future::pending::<()>().await;
    Ok(())
}

fn parse_args(
    mut args: impl Iterator<Item = String>,
) -> anyhow::Result<(SocketAddr, Option<PathBuf>)> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut key = None;
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match name.as_str() {
            "--listen" => {
                let value = value()?;
                listen = value.parse().with_context(|| {
                    format!("--listen {value}: not an address like 127.0.0.1:8080")
                })?;
            }
            "--key" => key = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument '{other}'\n{USAGE}"),
        }
    }
    Ok((listen, key))
}
