//! Running a diagnosis.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate_core::model::{Account, AuthMethod, Connection, Protocol, Secret};
use mailgate_core::{Mailbox, template};
use mailgate_imap::session::{self as imap, ImapCredentials, ImapIo};
use mailgate_oauth::account::{self as login, Login, LoginError};
use mailgate_oauth::{TokenCache, TokenError};
use mailgate_smtp::client::{Credentials, SmtpError, SmtpSession, Stage, Timeouts};
use mailgate_smtp::explain;
use mailgate_store::{Store, Vault};
use tokio::net::TcpStream;

use crate::report::{CheckReport, Status, Timer};
use crate::{certificate, claims};

/// What to do beyond the checks.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// SMTP: send a test mail to this address.
    pub send_to: Option<String>,
}

/// Runs diagnoses with the same TLS setup, vault and token cache as the workers.
pub struct Checker {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    tokens: Arc<TokenCache>,
    tls: Arc<rustls::ClientConfig>,
    helo_name: String,
    step_timeout: Duration,
}

/// Credentials resolved for the AUTH step; `None` when a step before failed.
enum Resolved {
    None,
    Password(Secret),
    Token(Secret),
}

impl Checker {
    pub fn new(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        tokens: Arc<TokenCache>,
        tls: Arc<rustls::ClientConfig>,
        helo_name: String,
        step_timeout: Duration,
    ) -> Checker {
        Checker { store, vault, tokens, tls, helo_name, step_timeout }
    }

    /// Diagnoses `account` step by step; stops at the first step that makes the next ones
    /// meaningless.
    pub async fn check_account(&self, account: &Account, options: &CheckOptions) -> CheckReport {
        let started = Instant::now();
        let mut report = CheckReport::new(account);
        if let Some(tcp) = self.connect(account, &mut report).await {
            match account.protocol {
                Protocol::Smtp => self.smtp(account, tcp, options, &mut report).await,
                Protocol::Imap => self.imap(account, tcp, &mut report).await,
            }
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    async fn connect(&self, account: &Account, report: &mut CheckReport) -> Option<TcpStream> {
        let t = Timer::start();
        let addrs: Vec<SocketAddr> = match tokio::time::timeout(self.step_timeout, tokio::net::lookup_host((account.host.as_str(), account.port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                report.push(t.failed("dns", format!("{}: {e}", account.host), "the host name does not resolve", "check the host name (Microsoft 365: smtp.office365.com, outlook.office365.com)"));
                return None;
            }
            Err(_) => {
                report.push(t.failed("dns", "no answer", "the DNS server does not answer", "check the machine's DNS configuration"));
                return None;
            }
        };
        let list = addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
        report.push(t.step("dns", Status::Ok, format!("{} → {list}", account.host)));
        let t = Timer::start();
        let mut last_error = String::new();
        for addr in &addrs {
            match tokio::time::timeout(self.step_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    report.push(t.step("tcp", Status::Ok, format!("connected to {addr}")));
                    return Some(tcp);
                }
                Ok(Err(e)) => last_error = format!("{addr}: {e}"),
                Err(_) => last_error = format!("{addr}: no answer within {} s", self.step_timeout.as_secs()),
            }
        }
        let (cause, fix) = if last_error.contains("refused") {
            ("nothing listens on that port", port_hint(account))
        } else {
            ("no answer: a firewall drops the connection, or the host is wrong", "check host, port and firewalls".to_string())
        };
        report.push(t.failed("tcp", last_error, cause, fix));
        None
    }

    /// Token and claims steps (XOAUTH2), or the password; `None` when a step failed.
    async fn credentials(&self, account: &Account, report: &mut CheckReport) -> Option<Resolved> {
        let t = Timer::start();
        let login = login::resolve(self.store.as_ref(), &self.vault, &self.tokens, account, true).await;
        let (token, client) = match login {
            Ok(Login::None) => return Some(Resolved::None),
            Ok(Login::Password(p)) => return Some(Resolved::Password(p)),
            Ok(Login::Token { token, client }) => (token, client),
            Err(LoginError::Token { error, .. }) => {
                let (cause, fix) = match &error {
                    TokenError::Provider(p) => match &p.explanation {
                        Some(x) => (x.cause.to_string(), x.fix.to_string()),
                        None => (format!("the provider refused: {}", p.error), "check the OAuth client's settings".to_string()),
                    },
                    TokenError::Network(_) | TokenError::InvalidResponse(_) => (
                        "the token endpoint cannot be reached or answers nonsense".to_string(),
                        "check the token URL, the network and proxies; mailgate retries on its own".to_string(),
                    ),
                    TokenError::Config(m) => (m.clone(), "complete the OAuth client".to_string()),
                };
                report.push(t.failed("token", error.to_string(), cause, fix));
                return None;
            }
            Err(e) => {
                let step = if account.auth == AuthMethod::Xoauth2 { "token" } else { "password" };
                report.push(t.failed(step, e.to_string(), e.to_string(), "complete the account and its OAuth client"));
                return None;
            }
        };
        report.push(t.step("token", Status::Ok, format!("token from {} valid for {} s", client.resolved_token_url(), token.lifetime.as_secs())));
        let t = Timer::start();
        match (&token.claims, template::is_microsoft(&client.template)) {
            (Some(c), true) => match claims::check(&client, account.protocol, c) {
                Ok(detail) => report.push(t.step("claims", Status::Ok, detail)),
                Err((detail, cause, fix)) => {
                    report.push(t.failed("claims", detail, cause, fix));
                    report.push(Timer::start().step("auth", Status::Skipped, "not tried: the server would refuse this token"));
                    return None;
                }
            },
            (Some(c), false) => report.push(t.step("claims", Status::Ok, format!("roles: {}", c.roles.join(", ")))),
            (None, _) => report.push(t.step("claims", Status::Skipped, "the token is opaque (not a JWT)")),
        }
        Some(Resolved::Token(token.secret))
    }

    fn tls_step(&self, report: &mut CheckReport, t: &Timer, connection: Connection, version: &str, certificate: Option<&[u8]>) {
        if connection == Connection::None {
            report.push(Step::warning(t, "tls", "no TLS: credentials and mail travel in clear text", "use 'starttls' or 'tls' with servers outside this machine"));
            return;
        }
        let cert = certificate.and_then(certificate::describe);
        let (detail, days) = match cert {
            Some((text, days)) => (format!("{version}; {text}"), days),
            None => (version.to_string(), i64::MAX),
        };
        if days < 14 {
            report.push(Step::warning(t, "tls", detail, "renew the server's certificate soon"));
        } else {
            report.push(t.step("tls", Status::Ok, detail));
        }
    }

    async fn smtp(&self, account: &Account, tcp: TcpStream, options: &CheckOptions, report: &mut CheckReport) {
        let oauth = account.auth == AuthMethod::Xoauth2;
        let t = Timer::start();
        let timeouts = Timeouts { connect: self.step_timeout, command: self.step_timeout, data: self.step_timeout * 3 };
        let mut session = match SmtpSession::over(tcp, &account.host, account.connection, &self.tls, &self.helo_name, timeouts).await {
            Ok(s) => s,
            Err(e) => {
                let step = match &e {
                    SmtpError::Tls { .. } | SmtpError::Unsupported(_) => "tls",
                    SmtpError::Timeout { stage: Stage::Tls | Stage::StartTls } | SmtpError::Rejected { stage: Stage::StartTls, .. } => "tls",
                    _ => "greeting",
                };
                let (cause, fix) = match explain::explain_error(&e, oauth) {
                    Some(h) => (h.cause.to_string(), h.fix.to_string()),
                    None => ("the server did not complete the greeting".into(), port_hint(account)),
                };
                report.push(t.failed(step, e.to_string(), cause, fix));
                return;
            }
        };
        let version = session.tls.as_ref().map(|i| format!("{} {}", i.version, i.cipher)).unwrap_or_default();
        let cert = session.tls.as_ref().and_then(|i| i.peer_certificate.clone());
        self.tls_step(report, &t, account.connection, &version, cert.as_deref());
        let caps = &session.capabilities;
        let offered = if caps.auth.is_empty() { "no AUTH".to_string() } else { format!("AUTH {}", caps.auth.join(" ")) };
        report.push(t.step("greeting", Status::Ok, format!("{}; offers {offered}{}", session.greeting.text(), if caps.pipelining { ", PIPELINING" } else { "" })));
        let needed = match account.auth {
            AuthMethod::Plain => Some("PLAIN"),
            AuthMethod::Login => Some("LOGIN"),
            AuthMethod::Xoauth2 => match account.oauth_mechanism {
                mailgate_core::model::OAuthMechanism::Oauthbearer => Some("OAUTHBEARER"),
                mailgate_core::model::OAuthMechanism::Xoauth2 => Some("XOAUTH2"),
                mailgate_core::model::OAuthMechanism::Auto if caps.offers_auth("OAUTHBEARER") && !caps.offers_auth("XOAUTH2") => Some("OAUTHBEARER"),
                mailgate_core::model::OAuthMechanism::Auto => Some("XOAUTH2"),
            },
            AuthMethod::None => None,
        };
        if let Some(m) = needed
            && !caps.offers_auth(m) {
                let fix = if session.tls.is_none() {
                    "servers often offer AUTH only after TLS: use connection 'starttls' (port 587) or 'tls' (465)".to_string()
                } else {
                    format!("this server cannot authenticate with {m}: choose an auth method it offers ({offered})")
                };
                report.push(Timer::start().failed("auth", format!("the server does not offer AUTH {m}"), format!("AUTH {m} is not offered"), fix));
                return;
            }
        let Some(resolved) = self.credentials(account, report).await else { return };
        let t = Timer::start();
        let user = account.username.clone();
        let credentials = match resolved {
            Resolved::None => Credentials::None,
            Resolved::Password(password) if account.auth == AuthMethod::Login => Credentials::Login { user, password },
            Resolved::Password(password) => Credentials::Plain { user, password },
            Resolved::Token(token) => Credentials::OAuth { user, token, mechanism: account.oauth_mechanism },
        };
        if account.auth != AuthMethod::None {
            match session.authenticate(&credentials).await {
                Ok(()) => report.push(t.step("auth", Status::Ok, format!("authenticated as {}", account.username))),
                Err(e) => {
                    let (cause, fix) = explain::explain_error(&e, oauth)
                        .map(|h| (h.cause.to_string(), h.fix.to_string()))
                        .unwrap_or_else(|| ("the server refused the login".into(), "check the credentials".into()));
                    report.push(t.failed("auth", e.to_string(), cause, fix));
                    return;
                }
            }
        }
        match &options.send_to {
            None => report.push(Timer::start().step("test_mail", Status::Skipped, "no recipient given")),
            Some(to) => {
                let t = Timer::start();
                let from = account.send_address.clone().unwrap_or_else(|| account.username.clone());
                let subject = format!("mailgate test mail from account '{}'", account.name);
                let raw = format!(
                    "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{}>\r\nDate: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThis test mail was sent by mailgate's account check.\r\n",
                    mailgate_core::submission::new_message_id(Mailbox::parse(&from).map(|m| m.domain().to_string()).unwrap_or_default().as_str()),
                    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc2822).unwrap_or_default()
                );
                match Mailbox::parse(to) {
                    Err(e) => report.push(t.failed("test_mail", format!("'{to}': {e}"), "the test recipient is not a valid address", "enter a valid address")),
                    Ok(rcpt) => match session.send(&from, &[rcpt.address], raw.as_bytes()).await {
                        Ok(d) => report.push(t.step("test_mail", Status::Ok, format!("accepted: {}", d.reply))),
                        Err(e) => {
                            let (cause, fix) = explain::explain_error(&e, oauth)
                                .map(|h| (h.cause.to_string(), h.fix.to_string()))
                                .unwrap_or_else(|| ("the server refused the test mail".into(), "see the server's reply".into()));
                            report.push(t.failed("test_mail", e.to_string(), cause, fix));
                        }
                    },
                }
            }
        }
        session.quit().await;
    }

    async fn imap(&self, account: &Account, tcp: TcpStream, report: &mut CheckReport) {
        let t = Timer::start();
        let client = match imap::greet(tcp, &account.host, account.connection, &self.tls, self.step_timeout).await {
            Ok(c) => c,
            Err(e) => {
                let step = if e.message.contains("TLS") || e.message.contains("STARTTLS") { "tls" } else { "greeting" };
                let (cause, fix) = tls_hint(&e.message).unwrap_or_else(|| ("the server did not greet".into(), port_hint(account)));
                report.push(t.failed(step, e.message, cause, fix));
                return;
            }
        };
        let (version, cert) = match client.get_ref() {
            ImapIo::Tls(s) => {
                let conn = s.get_ref().1;
                (
                    conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
                    conn.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec()),
                )
            }
            ImapIo::Plain(_) => (String::new(), None),
        };
        self.tls_step(report, &t, account.connection, &version, cert.as_deref());
        report.push(t.step("greeting", Status::Ok, "IMAP server greeted"));
        let Some(resolved) = self.credentials(account, report).await else { return };
        let t = Timer::start();
        let user = account.username.clone();
        let credentials = match resolved {
            Resolved::None => {
                report.push(t.failed("auth", "no credentials", "IMAP accounts must authenticate", "choose plain, login or xoauth2"));
                return;
            }
            Resolved::Password(password) if account.auth == AuthMethod::Login => ImapCredentials::Login { user, password },
            Resolved::Password(password) => ImapCredentials::Plain { user, password },
            Resolved::Token(token) => ImapCredentials::OAuth { user, token, mechanism: account.oauth_mechanism },
        };
        let mut session = match imap::authenticate(client, &credentials, self.step_timeout).await {
            Ok(s) => {
                report.push(t.step("auth", Status::Ok, format!("authenticated as {}", account.username)));
                s
            }
            Err(e) => {
                let cause = if e.message.contains("likely cause") { "see the server's answer".to_string() } else { "the server refused the login".to_string() };
                let fix = if account.auth == AuthMethod::Xoauth2 {
                    "grant IMAP.AccessAsApp with admin consent, register the service principal with the Enterprise app's object ID and give it FullAccess to the mailbox (setup steps 4.3–7)".to_string()
                } else {
                    "check username and password".to_string()
                };
                report.push(t.failed("auth", e.message, cause, fix));
                return;
            }
        };
        let t = Timer::start();
        match tokio::time::timeout(self.step_timeout, session.select(&account.imap_folder)).await {
            Ok(Ok(mailbox)) => report.push(t.step("select", Status::Ok, format!("folder '{}' holds {} messages", account.imap_folder, mailbox.exists))),
            Ok(Err(e)) => {
                let folders = list_folders(&mut session, self.step_timeout).await;
                report.push(t.failed(
                    "select",
                    format!("SELECT {}: {e}", account.imap_folder),
                    format!("the folder '{}' does not exist or cannot be opened", account.imap_folder),
                    format!("choose one of the mailbox's folders: {folders}"),
                ));
            }
            Err(_) => report.push(t.failed("select", "SELECT timed out", "the server did not answer", "try again later")),
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), session.logout()).await;
    }
}

/// The mailbox's folder names, for a fix that names the choices.
async fn list_folders(session: &mut imap::ImapSession, limit: Duration) -> String {
    use futures_util::TryStreamExt as _;
    let names: Vec<String> = tokio::time::timeout(limit, async {
        match session.list(Some(""), Some("*")).await {
            Ok(stream) => stream.try_collect::<Vec<_>>().await.map(|n| n.iter().map(|x| x.name().to_string()).collect()).unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    })
    .await
    .unwrap_or_default();
    if names.is_empty() { "(none listed)".into() } else { names.join(", ") }
}

/// The usual ports, to suggest when the port seems wrong.
fn port_hint(account: &Account) -> String {
    match account.protocol {
        Protocol::Smtp => "SMTP submission is 587 with connection 'starttls' or 465 with 'tls'".into(),
        Protocol::Imap => "IMAP is 993 with connection 'tls' or 143 with 'starttls'".into(),
    }
}

/// Cause and fix for TLS failures seen in an error text.
fn tls_hint(text: &str) -> Option<(String, String)> {
    let pair = |c: &str, f: &str| Some((c.to_string(), f.to_string()));
    if text.contains("Expired") || text.contains("expired") {
        pair("the server's certificate has expired", "ask the server's operator to renew it")
    } else if text.contains("UnknownIssuer") {
        pair("the server's certificate is not signed by a trusted CA", "add the CA to extra_ca_file (MAILGATE_EXTRA_CA_FILE)")
    } else if text.contains("NotValidForName") {
        pair("the server's certificate does not name this host", "use the host name the certificate was issued for")
    } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
        pair("the port speaks plain text, not TLS", "use connection 'starttls' (IMAP 143, SMTP 587) or the TLS port (993, 465)")
    } else if text.contains("expect TLS") || text.contains("implicit-TLS") {
        pair("the port expects TLS from the start", "use connection 'tls' for this port (IMAP 993, SMTP 465)")
    } else {
        None
    }
}

impl crate::report::Step {
    fn warning(t: &Timer, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> crate::report::Step {
        crate::report::Step { fix: Some(fix.into()), ..t.step(name, Status::Warning, detail) }
    }
}

use crate::report::Step;
