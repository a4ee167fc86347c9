//! One SMTP session with a server: connect, secure, authenticate, send, reuse.
//!
//! Every network step has a timeout. Replies are read with limits ([`crate::reply`]). With
//! PIPELINING, MAIL, RCPT and DATA go out in one write. A STARTTLS reply followed by extra
//! bytes is refused (those bytes could be an attacker's injected commands).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use mailgate_core::model::{Connection, OAuthMechanism, Secret};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::reply::{ReadError, Reply, read_reply};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How long each kind of step may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
    /// Sending the message body and waiting for the final reply.
    pub data: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(10), command: Duration::from_secs(30), data: Duration::from_secs(120) }
    }
}

/// How the session authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    None,
    Plain { user: String, password: Secret },
    Login { user: String, password: Secret },
    /// An OAuth access token, sent with XOAUTH2 or OAUTHBEARER (RFC 7628).
    OAuth { user: String, token: Secret, mechanism: OAuthMechanism },
}

/// The protocol step an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Tls,
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Message,
    Reset,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Tls => "TLS handshake",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Message => "message transfer",
            Stage::Reset => "RSET",
        })
    }
}

/// Why a session step failed.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("cannot connect to {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("timed out during {stage}")]
    Timeout { stage: Stage },
    #[error("TLS handshake with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    #[error("connection lost during {stage}: {detail}")]
    Io { stage: Stage, detail: String },
    #[error("server answered nonsense during {stage}: {detail}")]
    Protocol { stage: Stage, detail: String },
    #[error("{stage} refused by the server: {reply}{}", challenge_text(.challenge))]
    Rejected { stage: Stage, reply: Reply, challenge: Option<String> },
    #[error("{0}")]
    Unsupported(String),
}

fn challenge_text(challenge: &Option<String>) -> String {
    challenge.as_ref().map(|c| format!(" (server's challenge: {c})")).unwrap_or_default()
}

impl SmtpError {
    /// True when trying again later may succeed without anyone changing anything.
    pub fn is_temporary(&self) -> bool {
        match self {
            SmtpError::Rejected { reply, .. } => !reply.is_permanent(),
            SmtpError::Unsupported(_) => false,
            _ => true,
        }
    }

    /// True when the connection can no longer be used.
    pub fn breaks_session(&self) -> bool {
        !matches!(self, SmtpError::Rejected { stage: Stage::MailFrom | Stage::RcptTo | Stage::Message | Stage::Data, .. })
    }

    /// The server's reply, when the error is a refusal.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            SmtpError::Rejected { reply, .. } => Some(reply),
            _ => None,
        }
    }

    fn from_read(stage: Stage, e: ReadError) -> SmtpError {
        match e {
            ReadError::Closed => SmtpError::Io { stage, detail: "the server closed the connection".into() },
            ReadError::Io(e) => SmtpError::Io { stage, detail: e.to_string() },
            ReadError::Malformed(detail) => SmtpError::Protocol { stage, detail },
        }
    }
}

/// What the server offered in its EHLO reply.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub pipelining: bool,
    pub starttls: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub size: Option<u64>,
    /// AUTH mechanisms, upper case.
    pub auth: Vec<String>,
    pub lines: Vec<String>,
}

impl Capabilities {
    fn parse(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "SIZE" => caps.size = words.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0),
                "AUTH" => caps.auth.extend(words.map(|w| w.to_ascii_uppercase())),
                _ => {}
            }
            caps.lines.push(line.clone());
        }
        caps
    }

    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m == mechanism)
    }
}

/// The negotiated TLS parameters, for diagnosis.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
    /// The server's certificate (DER), for showing subject, issuer and expiry.
    pub peer_certificate: Option<Vec<u8>>,
}

/// The result of sending one message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub accepted: Vec<String>,
    pub rejected: Vec<(String, Reply)>,
    /// The server's reply to the end of data.
    pub reply: Reply,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open, greeted (and possibly authenticated) SMTP session.
pub struct SmtpSession {
    io: BufReader<Box<dyn Io>>,
    pub greeting: Reply,
    pub capabilities: Capabilities,
    pub tls: Option<TlsInfo>,
    timeouts: Timeouts,
    pub opened_at: Instant,
    pub messages_sent: u64,
}

impl fmt::Debug for SmtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSession").field("greeting", &self.greeting).field("tls", &self.tls).finish_non_exhaustive()
    }
}

async fn write_all<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8], stage: Stage, limit: Duration) -> Result<(), SmtpError> {
    match timeout(limit, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await
    {
        Err(_) => Err(SmtpError::Timeout { stage }),
        Ok(Err(e)) => Err(SmtpError::Io { stage, detail: e.to_string() }),
        Ok(Ok(())) => Ok(()),
    }
}

async fn read<S: AsyncRead + Unpin>(io: &mut BufReader<S>, stage: Stage, limit: Duration) -> Result<Reply, SmtpError> {
    match timeout(limit, read_reply(io)).await {
        Err(_) => Err(SmtpError::Timeout { stage }),
        Ok(r) => r.map_err(|e| SmtpError::from_read(stage, e)),
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    line: &str,
    stage: Stage,
    limit: Duration,
) -> Result<Reply, SmtpError> {
    write_all(io.get_mut(), format!("{line}\r\n").as_bytes(), stage, limit).await?;
    read(io, stage, limit).await
}

fn expect(reply: Reply, stage: Stage, code: u16) -> Result<Reply, SmtpError> {
    if reply.code == code { Ok(reply) } else { Err(SmtpError::Rejected { stage, reply, challenge: None }) }
}

async fn greet_and_ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    helo_name: &str,
    timeouts: &Timeouts,
) -> Result<(Reply, Capabilities), SmtpError> {
    let greeting = expect(read(io, Stage::Greeting, timeouts.command).await?, Stage::Greeting, 220)?;
    let caps = ehlo(io, helo_name, timeouts).await?;
    Ok((greeting, caps))
}

async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    helo_name: &str,
    timeouts: &Timeouts,
) -> Result<Capabilities, SmtpError> {
    let reply = command(io, &format!("EHLO {helo_name}"), Stage::Ehlo, timeouts.command).await?;
    if reply.code == 250 {
        return Ok(Capabilities::parse(&reply));
    }
    if reply.is_permanent() {
        // A very old server: HELO still lets us send, without extensions.
        let reply = command(io, &format!("HELO {helo_name}"), Stage::Ehlo, timeouts.command).await?;
        expect(reply, Stage::Ehlo, 250)?;
        return Ok(Capabilities::default());
    }
    Err(SmtpError::Rejected { stage: Stage::Ehlo, reply, challenge: None })
}

async fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    config: &Arc<rustls::ClientConfig>,
    limit: Duration,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, TlsInfo), SmtpError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| SmtpError::Unsupported(format!("'{host}' is not a valid host name for TLS")))?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let stream = match timeout(limit, connector.connect(name, tcp)).await {
        Err(_) => return Err(SmtpError::Timeout { stage: Stage::Tls }),
        Ok(Err(e)) => return Err(SmtpError::Tls { host: host.to_string(), detail: describe_tls_error(&e) }),
        Ok(Ok(s)) => s,
    };
    let (_, conn) = stream.get_ref();
    let info = TlsInfo {
        version: conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
        cipher: conn.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default(),
        peer_certificate: conn.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec()),
    };
    Ok((stream, info))
}

fn describe_tls_error(e: &std::io::Error) -> String {
    let text = e.get_ref().map(|inner| inner.to_string()).unwrap_or_else(|| e.to_string());
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        format!("{text} (the port probably does not speak TLS: try connection 'starttls' or 'none')")
    } else {
        text
    }
}

impl SmtpSession {
    /// Connects to `host:port`, secures the connection as `connection` says, reads the
    /// greeting and sends EHLO.
    pub async fn connect(
        host: &str,
        port: u16,
        connection: Connection,
        tls: &Arc<rustls::ClientConfig>,
        helo_name: &str,
        timeouts: Timeouts,
    ) -> Result<SmtpSession, SmtpError> {
        let addr = format!("{host}:{port}");
        let tcp = match timeout(timeouts.connect, TcpStream::connect((host, port))).await {
            Err(_) => return Err(SmtpError::Timeout { stage: Stage::Connect }),
            Ok(Err(e)) => return Err(SmtpError::Connect { addr, detail: e.to_string() }),
            Ok(Ok(tcp)) => tcp,
        };
        SmtpSession::over(tcp, host, connection, tls, helo_name, timeouts).await
    }

    /// Like [`SmtpSession::connect`] over a TCP connection made by the caller (the diagnosis
    /// makes its own, to time DNS and TCP as steps of their own).
    pub async fn over(
        tcp: TcpStream,
        host: &str,
        connection: Connection,
        tls: &Arc<rustls::ClientConfig>,
        helo_name: &str,
        timeouts: Timeouts,
    ) -> Result<SmtpSession, SmtpError> {
        // Without it, split writes stall on delayed ACKs (40 ms per command).
        let _ = tcp.set_nodelay(true);
        let (io, greeting, capabilities, tls_info): (Box<dyn Io>, _, _, _) = match connection {
            Connection::None => {
                let mut io = BufReader::new(tcp);
                let (greeting, caps) = greet_and_ehlo(&mut io, helo_name, &timeouts).await?;
                return Ok(SmtpSession::new(io.into_inner(), greeting, caps, None, timeouts));
            }
            Connection::Tls => {
                let (stream, info) = tls_handshake(tcp, host, tls, timeouts.command).await?;
                let mut io = BufReader::new(stream);
                let (greeting, caps) = greet_and_ehlo(&mut io, helo_name, &timeouts).await?;
                (Box::new(io.into_inner()), greeting, caps, Some(info))
            }
            Connection::Starttls => {
                let mut io = BufReader::new(tcp);
                let (greeting, caps) = greet_and_ehlo(&mut io, helo_name, &timeouts).await?;
                if !caps.starttls {
                    return Err(SmtpError::Unsupported(
                        "the server does not offer STARTTLS (for implicit TLS, usually port 465, choose connection 'tls')".into(),
                    ));
                }
                expect(command(&mut io, "STARTTLS", Stage::StartTls, timeouts.command).await?, Stage::StartTls, 220)?;
                if !io.buffer().is_empty() {
                    return Err(SmtpError::Protocol {
                        stage: Stage::StartTls,
                        detail: "the server sent data after its STARTTLS reply (possible command injection)".into(),
                    });
                }
                let (stream, info) = tls_handshake(io.into_inner(), host, tls, timeouts.command).await?;
                let mut io = BufReader::new(stream);
                // RFC 3207: forget what was learnt before TLS and ask again.
                let caps = ehlo(&mut io, helo_name, &timeouts).await?;
                (Box::new(io.into_inner()), greeting, caps, Some(info))
            }
        };
        Ok(SmtpSession::new(io, greeting, capabilities, tls_info, timeouts))
    }

    fn new<S: Io + 'static>(
        stream: S,
        greeting: Reply,
        capabilities: Capabilities,
        tls: Option<TlsInfo>,
        timeouts: Timeouts,
    ) -> SmtpSession {
        let boxed: Box<dyn Io> = Box::new(stream);
        SmtpSession {
            io: BufReader::with_capacity(16 * 1024, boxed),
            greeting,
            capabilities,
            tls,
            timeouts,
            opened_at: Instant::now(),
            messages_sent: 0,
        }
    }

    async fn command(&mut self, line: &str, stage: Stage) -> Result<Reply, SmtpError> {
        command(&mut self.io, line, stage, self.timeouts.command).await
    }

    fn require_mechanism(&self, mechanism: &str) -> Result<(), SmtpError> {
        if self.capabilities.offers_auth(mechanism) {
            return Ok(());
        }
        if self.capabilities.auth.is_empty() {
            let hint = if self.tls.is_none() { " before TLS; choose connection 'starttls' or 'tls'" } else { "" };
            return Err(SmtpError::Unsupported(format!("the server offers no AUTH{hint}")));
        }
        Err(SmtpError::Unsupported(format!(
            "the server does not offer AUTH {mechanism} (it offers {})",
            self.capabilities.auth.join(", ")
        )))
    }

    /// Authenticates with `credentials`.
    pub async fn authenticate(&mut self, credentials: &Credentials) -> Result<(), SmtpError> {
        match credentials {
            Credentials::None => Ok(()),
            Credentials::Plain { user, password } => {
                self.require_mechanism("PLAIN")?;
                let ir = B64.encode(format!("\0{user}\0{}", password.expose()));
                let reply = self.command(&format!("AUTH PLAIN {ir}"), Stage::Auth).await?;
                expect(reply, Stage::Auth, 235).map(|_| ())
            }
            Credentials::Login { user, password } => {
                self.require_mechanism("LOGIN")?;
                expect(self.command("AUTH LOGIN", Stage::Auth).await?, Stage::Auth, 334)?;
                expect(self.command(&B64.encode(user), Stage::Auth).await?, Stage::Auth, 334)?;
                let reply = self.command(&B64.encode(password.expose()), Stage::Auth).await?;
                expect(reply, Stage::Auth, 235).map(|_| ())
            }
            Credentials::OAuth { user, token, mechanism } => {
                let bearer = match mechanism {
                    OAuthMechanism::Xoauth2 => false,
                    OAuthMechanism::Oauthbearer => true,
                    // XOAUTH2 where offered (Microsoft offers only it), else the standard one.
                    OAuthMechanism::Auto => !self.capabilities.offers_auth("XOAUTH2") && self.capabilities.offers_auth("OAUTHBEARER"),
                };
                let (name, payload) = if bearer {
                    ("OAUTHBEARER", format!("n,a={},\x01auth=Bearer {}\x01\x01", user.replace('=', "=3D").replace(',', "=2C"), token.expose()))
                } else {
                    ("XOAUTH2", format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose()))
                };
                self.require_mechanism(name)?;
                let ir = B64.encode(payload);
                let mut reply = self.command(&format!("AUTH {name} {ir}"), Stage::Auth).await?;
                if reply.code == 500 && reply.text().to_ascii_lowercase().contains("too long") {
                    // Some servers cap the command line near 1 KB; real tokens are ~2 KB.
                    // Without an initial response the token goes out after the 334 prompt.
                    expect(self.command(&format!("AUTH {name}"), Stage::Auth).await?, Stage::Auth, 334)?;
                    reply = self.command(&ir, Stage::Auth).await?;
                }
                // After an error challenge XOAUTH2 wants an empty line, OAUTHBEARER %x01.
                self.finish_oauth(reply, if bearer { "AQ==" } else { "" }).await
            }
        }
    }

    /// A 334 after the token carries the provider's JSON error: answer it as the mechanism
    /// wants, and report the decoded JSON with the final refusal.
    async fn finish_oauth(&mut self, reply: Reply, answer: &str) -> Result<(), SmtpError> {
        match reply.code {
            235 => Ok(()),
            334 => {
                let challenge = B64
                    .decode(reply.text().trim())
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .filter(|s| !s.is_empty());
                let last = self.command(answer, Stage::Auth).await?;
                Err(SmtpError::Rejected { stage: Stage::Auth, reply: last, challenge })
            }
            _ => Err(SmtpError::Rejected { stage: Stage::Auth, reply, challenge: None }),
        }
    }

    /// Sends one message to `recipients`. Recipients the server refuses are listed in the
    /// result; the message goes to the others. Fails when no recipient was accepted.
    pub async fn send(&mut self, from: &str, recipients: &[String], message: &[u8]) -> Result<Delivery, SmtpError> {
        if let Some(max) = self.capabilities.size
            && message.len() as u64 > max {
                return Err(SmtpError::Unsupported(format!(
                    "the message is {} bytes; the server accepts at most {max}",
                    message.len()
                )));
            }
        let mut mail_from = format!("MAIL FROM:<{from}>");
        if self.capabilities.size.is_some() {
            mail_from.push_str(&format!(" SIZE={}", message.len()));
        }
        if self.capabilities.eight_bit_mime && message.iter().any(|b| *b >= 0x80) {
            mail_from.push_str(" BODY=8BITMIME");
        }
        let rcpt_lines: Vec<String> = recipients.iter().map(|r| format!("RCPT TO:<{r}>")).collect();
        let limit = self.timeouts.command;

        let (mail_reply, rcpt_replies, data_reply) = if self.capabilities.pipelining {
            let mut batch = String::with_capacity(64 + rcpt_lines.iter().map(|l| l.len() + 2).sum::<usize>());
            for line in std::iter::once(&mail_from).chain(&rcpt_lines) {
                batch.push_str(line);
                batch.push_str("\r\n");
            }
            batch.push_str("DATA\r\n");
            write_all(self.io.get_mut(), batch.as_bytes(), Stage::MailFrom, limit).await?;
            let mail_reply = read(&mut self.io, Stage::MailFrom, limit).await?;
            let mut rcpt_replies = Vec::with_capacity(recipients.len());
            for _ in recipients {
                rcpt_replies.push(read(&mut self.io, Stage::RcptTo, limit).await?);
            }
            let data_reply = read(&mut self.io, Stage::Data, limit).await?;
            (mail_reply, rcpt_replies, Some(data_reply))
        } else {
            let mail_reply = self.command(&mail_from, Stage::MailFrom).await?;
            let mut rcpt_replies = Vec::with_capacity(recipients.len());
            if mail_reply.is_positive() {
                for line in &rcpt_lines {
                    rcpt_replies.push(self.command(line, Stage::RcptTo).await?);
                }
            }
            (mail_reply, rcpt_replies, None)
        };

        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for (r, reply) in recipients.iter().zip(rcpt_replies) {
            if reply.is_positive() { accepted.push(r.clone()) } else { rejected.push((r.clone(), reply)) }
        }
        let data_reply = match data_reply {
            Some(reply) => reply,
            None if mail_reply.is_positive() && !accepted.is_empty() => self.command("DATA", Stage::Data).await?,
            None => Reply { code: 503, lines: vec!["DATA not sent".into()] },
        };
        if !mail_reply.is_positive() {
            if data_reply.code == 354 {
                self.abort_data().await?;
            }
            self.reset().await?;
            return Err(SmtpError::Rejected { stage: Stage::MailFrom, reply: mail_reply, challenge: None });
        }
        if accepted.is_empty() {
            if data_reply.code == 354 {
                self.abort_data().await?;
            }
            self.reset().await?;
            // Report the "best" refusal: a temporary one means a retry can still work.
            let (_, reply) = rejected
                .iter()
                .find(|(_, r)| r.is_transient())
                .or_else(|| rejected.first())
                .cloned()
                .unwrap_or_else(|| (String::new(), Reply { code: 554, lines: vec!["no recipients".into()] }));
            return Err(SmtpError::Rejected { stage: Stage::RcptTo, reply, challenge: None });
        }
        if data_reply.code != 354 {
            self.reset().await?;
            return Err(SmtpError::Rejected { stage: Stage::Data, reply: data_reply, challenge: None });
        }
        let encoded = encode_data(message);
        write_all(self.io.get_mut(), &encoded, Stage::Message, self.timeouts.data).await?;
        let reply = read(&mut self.io, Stage::Message, self.timeouts.data).await?;
        if !reply.is_positive() {
            return Err(SmtpError::Rejected { stage: Stage::Message, reply, challenge: None });
        }
        self.messages_sent += 1;
        Ok(Delivery { accepted, rejected, reply })
    }

    /// Ends a DATA phase the server opened although no recipient was accepted.
    async fn abort_data(&mut self) -> Result<(), SmtpError> {
        write_all(self.io.get_mut(), b".\r\n", Stage::Data, self.timeouts.command).await?;
        read(&mut self.io, Stage::Data, self.timeouts.command).await.map(|_| ())
    }

    /// RSET, so the session can carry the next mail.
    pub async fn reset(&mut self) -> Result<(), SmtpError> {
        let reply = self.command("RSET", Stage::Reset).await?;
        expect(reply, Stage::Reset, 250).map(|_| ())
    }

    /// Checks that the session still answers.
    pub async fn noop(&mut self) -> Result<(), SmtpError> {
        let reply = self.command("NOOP", Stage::Reset).await?;
        expect(reply, Stage::Reset, 250).map(|_| ())
    }

    /// Ends the session politely (errors are irrelevant at this point).
    pub async fn quit(mut self) {
        let _ = timeout(Duration::from_secs(2), self.command("QUIT", Stage::Reset)).await;
    }
}

/// The message as DATA content: CRLF line endings, leading dots doubled, ending in
/// `CRLF.CRLF`.
pub fn encode_data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !message.is_empty() && !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffs_and_terminates() {
        assert_eq!(encode_data(b"a\r\n.b\r\n..c"), b"a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(encode_data(b".\nx\n"), b"..\r\nx\r\n.\r\n");
        assert_eq!(encode_data(b""), b".\r\n");
    }

    #[test]
    fn parses_capabilities() {
        let reply = Reply {
            code: 250,
            lines: vec!["mx".into(), "PIPELINING".into(), "SIZE 1000".into(), "AUTH PLAIN login XOAUTH2".into(), "STARTTLS".into()],
        };
        let caps = Capabilities::parse(&reply);
        assert!(caps.pipelining && caps.starttls);
        assert_eq!(caps.size, Some(1000));
        assert!(caps.offers_auth("LOGIN") && caps.offers_auth("XOAUTH2"));
    }
}
