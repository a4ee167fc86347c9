//! Putting messages into the test servers' mailboxes and looking at them: `doveadm save` for
//! exact bytes, LMTP for many messages at once, folder creation and message counts.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::TestEnv;

impl TestEnv {
    /// Runs `doveadm` against the test Dovecot; returns its standard output.
    pub fn doveadm(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<String> {
        let mut child = Command::new("doveadm")
            .arg("-c")
            .arg(&self.dovecot_config)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running doveadm")?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input).context("writing to doveadm")?;
        }
        let out = child.wait_with_output().context("waiting for doveadm")?;
        if !out.status.success() {
            bail!("doveadm {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stores `raw` unchanged in `folder` of `user` (`doveadm save`).
    pub fn save_message(&self, user: &str, folder: &str, raw: &[u8]) -> anyhow::Result<()> {
        self.doveadm(&["save", "-u", user, "-m", folder], Some(raw)).map(|_| ())
    }

    /// Creates `folder` for `user` (ignores "exists already").
    pub fn create_folder(&self, user: &str, folder: &str) -> anyhow::Result<()> {
        match self.doveadm(&["mailbox", "create", "-u", user, folder], None) {
            Err(e) if e.to_string().contains("exists") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// How many messages `folder` of `user` holds.
    pub fn folder_count(&self, user: &str, folder: &str) -> anyhow::Result<usize> {
        let out = self.doveadm(&["-f", "flow", "mailbox", "status", "-u", user, "messages", folder], None)?;
        out.split_whitespace()
            .find_map(|w| w.strip_prefix("messages="))
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("unexpected doveadm output: {out}"))
    }

    /// Delivers messages to `rcpt` over one LMTP session (Dovecot adds Return-Path and
    /// Delivered-To headers, as for any delivered mail).
    pub async fn deliver_lmtp(&self, rcpt: &str, messages: &[Vec<u8>]) -> anyhow::Result<()> {
        let stream = TcpStream::connect(("127.0.0.1", self.lmtp_port)).await.context("connecting to LMTP")?;
        stream.set_nodelay(true)?;
        let mut io = BufReader::new(stream);
        async fn reply(io: &mut BufReader<TcpStream>) -> anyhow::Result<String> {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                if io.read_line(&mut line).await? == 0 {
                    bail!("LMTP server closed the connection");
                }
                all.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    break;
                }
            }
            if !(all.starts_with('2') || all.starts_with('3')) {
                bail!("LMTP refused: {all}");
            }
            Ok(all)
        }
        reply(&mut io).await?;
        io.get_mut().write_all(b"LHLO mailgate.test\r\n").await?;
        reply(&mut io).await?;
        for raw in messages {
            io.get_mut().write_all(format!("MAIL FROM:<test@example.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes()).await?;
            reply(&mut io).await?;
            reply(&mut io).await?;
            reply(&mut io).await?;
            let mut data = Vec::with_capacity(raw.len() + 8);
            let mut at_line_start = true;
            for &b in raw {
                if at_line_start && b == b'.' {
                    data.push(b'.');
                }
                data.push(b);
                at_line_start = b == b'\n';
            }
            if !at_line_start {
                data.extend_from_slice(b"\r\n");
            }
            data.extend_from_slice(b".\r\n");
            io.get_mut().write_all(&data).await?;
            reply(&mut io).await?;
        }
        io.get_mut().write_all(b"QUIT\r\n").await?;
        Ok(())
    }
}
