//! Opening an authenticated IMAP session: TCP, TLS or STARTTLS, greeting, AUTHENTICATE.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::{Authenticator, Client, Session};
use mailgate_core::model::{Connection, OAuthMechanism, Secret};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The transport under an IMAP session.
pub enum ImapIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl fmt::Debug for ImapIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImapIo::Plain(_) => "ImapIo::Plain",
            ImapIo::Tls(_) => "ImapIo::Tls",
        })
    }
}

impl AsyncRead for ImapIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapIo::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ImapIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapIo::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapIo::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapIo::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

pub type ImapSession = Session<ImapIo>;

/// How the session authenticates.
#[derive(Debug, Clone)]
pub enum ImapCredentials {
    Plain { user: String, password: Secret },
    Login { user: String, password: Secret },
    /// An OAuth access token: XOAUTH2, or OAUTHBEARER (RFC 7628) when chosen explicitly.
    OAuth { user: String, token: Secret, mechanism: OAuthMechanism },
}

/// Why an IMAP step failed, and whether trying later may help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ImapError {
    pub message: String,
    pub temporary: bool,
    /// Set when the server asked us to slow down (`Suggested Backoff Time`).
    pub backoff: Option<Duration>,
}

impl ImapError {
    pub fn temporary(message: impl Into<String>) -> ImapError {
        ImapError { message: message.into(), temporary: true, backoff: None }
    }
    pub fn permanent(message: impl Into<String>) -> ImapError {
        ImapError { message: message.into(), temporary: false, backoff: None }
    }

    /// Classifies an async-imap error that happened during `what`.
    pub fn from_imap(what: &str, e: &async_imap::error::Error) -> ImapError {
        use async_imap::error::Error as E;
        match e {
            E::Io(io) => ImapError::temporary(format!("{what}: connection error: {io}")),
            E::ConnectionLost => ImapError::temporary(format!("{what}: the server closed the connection")),
            E::Bad(text) | E::No(text) => {
                let text = &server_text(text);
                let kind = if matches!(e, E::Bad(_)) { "BAD" } else { "NO" };
                let mut error = ImapError::permanent(format!("{what}: server answered {kind} {text}"));
                if let Some(ms) = suggested_backoff(text) {
                    error.temporary = true;
                    error.backoff = Some(Duration::from_millis(ms));
                } else if text.contains("[UNAVAILABLE]") || text.contains("[INUSE]") || text.contains("[LIMIT]") {
                    error.temporary = true;
                } else if text.contains("User is authenticated but not connected") {
                    error.message.push_str(
                        " — likely cause: the app has no permission on this mailbox, or its service principal was \
                         created with the app registration's object ID instead of the Enterprise application's; fix: \
                         New-ServicePrincipal with the Enterprise app's object ID and Add-MailboxPermission … FullAccess \
                         (setup steps 6, 7)",
                    );
                } else if text.contains("AccessTokenExpired") {
                    error.temporary = true;
                }
                error
            }
            other => ImapError::temporary(format!("{what}: {other}")),
        }
    }
}

/// async-imap renders NO/BAD as `code: …, info: Some("text")`: keep what the server said.
fn server_text(rendered: &str) -> String {
    match rendered.find("info: Some(\"") {
        Some(start) => {
            let rest = &rendered[start + "info: Some(\"".len()..];
            rest.rsplit_once("\")").map(|(t, _)| t).unwrap_or(rest).replace("\\\"", "\"")
        }
        None => rendered.to_string(),
    }
}

/// `Suggested Backoff Time: N milliseconds` (Exchange throttling).
fn suggested_backoff(text: &str) -> Option<u64> {
    let start = text.find("Suggested Backoff Time:")? + "Suggested Backoff Time:".len();
    text[start..].split_whitespace().next()?.parse().ok()
}

struct OAuthAuth {
    initial: Vec<u8>,
    sent: bool,
    /// What to answer an error challenge with: nothing (XOAUTH2) or %x01 (OAUTHBEARER).
    error_answer: Vec<u8>,
    challenge: Arc<Mutex<Option<String>>>,
}

impl Authenticator for OAuthAuth {
    type Response = Vec<u8>;

    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        if !self.sent {
            self.sent = true;
            return self.initial.clone();
        }
        // A second continuation carries the provider's JSON error; the protocol wants an empty
        // answer, after which the server sends the final NO.
        *self.challenge.lock().unwrap_or_else(|p| p.into_inner()) = Some(String::from_utf8_lossy(challenge).into_owned());
        self.error_answer.clone()
    }
}

struct PlainAuth(Vec<u8>);

impl Authenticator for PlainAuth {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        self.0.clone()
    }
}

async fn tls(tcp: TcpStream, host: &str, config: &Arc<rustls::ClientConfig>, limit: Duration) -> Result<ImapIo, ImapError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| ImapError::permanent(format!("'{host}' is not a valid host name for TLS")))?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    match timeout(limit, connector.connect(name, tcp)).await {
        Err(_) => Err(ImapError::temporary("TLS handshake timed out (does the port speak TLS?)")),
        Ok(Err(e)) => {
            let detail = e.get_ref().map(|i| i.to_string()).unwrap_or_else(|| e.to_string());
            Err(ImapError::temporary(format!("TLS handshake with {host} failed: {detail}")))
        }
        Ok(Ok(s)) => Ok(ImapIo::Tls(Box::new(s))),
    }
}

async fn read_line(reader: &mut BufReader<TcpStream>, line: &mut String, limit: Duration) -> Result<(), ImapError> {
    line.clear();
    match timeout(limit, reader.read_line(line)).await {
        Err(_) => Err(ImapError::temporary("the server did not answer in time (is this an implicit-TLS port?)")),
        Ok(Err(e)) => Err(ImapError::temporary(format!("connection error: {e}"))),
        Ok(Ok(0)) => Err(ImapError::temporary("the server closed the connection")),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Does STARTTLS by hand (async-imap has no STARTTLS), returning the TLS transport.
async fn starttls(tcp: TcpStream, host: &str, config: &Arc<rustls::ClientConfig>, limit: Duration) -> Result<ImapIo, ImapError> {
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    read_line(&mut reader, &mut line, limit).await?;
    if !line.starts_with("* OK") {
        return Err(ImapError::permanent(format!("unexpected IMAP greeting: {}", line.trim())));
    }
    reader
        .get_mut()
        .write_all(b"a0 STARTTLS\r\n")
        .await
        .map_err(|e| ImapError::temporary(format!("connection error: {e}")))?;
    loop {
        read_line(&mut reader, &mut line, limit).await?;
        if line.starts_with("a0 OK") {
            break;
        }
        if line.starts_with("a0 ") {
            return Err(ImapError::permanent(format!(
                "the server refused STARTTLS ({}); for port 993 choose connection 'tls'",
                line.trim()
            )));
        }
    }
    if !reader.buffer().is_empty() {
        return Err(ImapError::permanent("the server sent data after its STARTTLS reply (possible command injection)"));
    }
    tls(reader.into_inner(), host, config, limit).await
}

/// Connects and authenticates.
pub async fn open(
    host: &str,
    port: u16,
    connection: Connection,
    credentials: &ImapCredentials,
    config: &Arc<rustls::ClientConfig>,
    limit: Duration,
) -> Result<ImapSession, ImapError> {
    let tcp = match timeout(limit, TcpStream::connect((host, port))).await {
        Err(_) => return Err(ImapError::temporary(format!("connecting to {host}:{port} timed out"))),
        Ok(Err(e)) => return Err(ImapError::temporary(format!("cannot connect to {host}:{port}: {e}"))),
        Ok(Ok(t)) => t,
    };
    let client = greet(tcp, host, connection, config, limit).await?;
    authenticate(client, credentials, limit).await
}

/// Secures a connection as `connection` says and reads the server's greeting.
pub async fn greet(
    tcp: TcpStream,
    host: &str,
    connection: Connection,
    config: &Arc<rustls::ClientConfig>,
    limit: Duration,
) -> Result<Client<ImapIo>, ImapError> {
    let _ = tcp.set_nodelay(true);
    let (io, greeted) = match connection {
        Connection::None => (ImapIo::Plain(tcp), false),
        Connection::Tls => (tls(tcp, host, config, limit).await?, false),
        Connection::Starttls => (starttls(tcp, host, config, limit).await?, true),
    };
    let mut client = Client::new(io);
    if !greeted {
        match timeout(limit, client.read_response()).await {
            Err(_) => {
                return Err(ImapError::temporary(
                    "no IMAP greeting in time (the port may expect TLS from the start: use connection 'tls' for port 993)",
                ));
            }
            Ok(Err(e)) => return Err(ImapError::temporary(format!("reading the greeting: {e}"))),
            Ok(Ok(None)) => return Err(ImapError::temporary("the server closed the connection before greeting")),
            Ok(Ok(Some(_))) => {}
        }
    }
    Ok(client)
}

/// Authenticates a greeted connection.
pub async fn authenticate(
    client: Client<ImapIo>,
    credentials: &ImapCredentials,
    limit: Duration,
) -> Result<ImapSession, ImapError> {
    let b64 = |s: String| s.into_bytes();
    match credentials {
        ImapCredentials::OAuth { user, token, mechanism } => {
            let challenge = Arc::new(Mutex::new(None));
            // IMAP servers that speak OAuth all offer XOAUTH2 (Microsoft only it): automatic
            // means XOAUTH2; OAUTHBEARER when chosen.
            let bearer = *mechanism == OAuthMechanism::Oauthbearer;
            let (name, initial) = if bearer {
                ("OAUTHBEARER", format!("n,a={},\x01auth=Bearer {}\x01\x01", user.replace('=', "=3D").replace(',', "=2C"), token.expose()))
            } else {
                ("XOAUTH2", format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose()))
            };
            let auth = OAuthAuth {
                initial: b64(initial),
                sent: false,
                error_answer: if bearer { vec![1] } else { Vec::new() },
                challenge: challenge.clone(),
            };
            match timeout(limit, client.authenticate(name, auth)).await {
                Err(_) => Err(ImapError::temporary("AUTHENTICATE timed out")),
                Ok(Ok(s)) => Ok(s),
                Ok(Err((e, _))) => {
                    let mut error = ImapError::from_imap(&format!("AUTHENTICATE {name}"), &e);
                    if let Some(c) = challenge.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        error.message.push_str(&format!(" (server's challenge: {c})"));
                        if !error.temporary {
                            error.message.push_str(
                                " — likely cause: the token was refused: the app lacks IMAP.AccessAsApp or admin consent, \
                                 or has no permission on this mailbox (setup steps 4.3–7)",
                            );
                        }
                    }
                    Err(error)
                }
            }
        }
        ImapCredentials::Plain { user, password } => {
            let auth = PlainAuth(b64(format!("\0{user}\0{}", password.expose())));
            match timeout(limit, client.authenticate("PLAIN", auth)).await {
                Err(_) => Err(ImapError::temporary("AUTHENTICATE timed out")),
                Ok(r) => r.map_err(|(e, _)| ImapError::from_imap("AUTHENTICATE PLAIN", &e)),
            }
        }
        ImapCredentials::Login { user, password } => match timeout(limit, client.login(user, password.expose())).await {
            Err(_) => Err(ImapError::temporary("LOGIN timed out")),
            Ok(r) => r.map_err(|(e, _)| ImapError::from_imap("LOGIN", &e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_servers_words() {
        assert_eq!(
            server_text("code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")"),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(server_text("plain"), "plain");
    }

    #[test]
    fn reads_exchange_throttling() {
        assert_eq!(suggested_backoff("Request is throttled. Suggested Backoff Time: 1500 milliseconds"), Some(1500));
        let e = ImapError::from_imap(
            "FETCH",
            &async_imap::error::Error::Bad("Request is throttled. Suggested Backoff Time: 250 milliseconds".into()),
        );
        assert!(e.temporary);
        assert_eq!(e.backoff, Some(Duration::from_millis(250)));
    }
}
