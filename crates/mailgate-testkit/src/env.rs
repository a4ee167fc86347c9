//! The environment of the real test servers (Postfix + Dovecot on loopback) started by
//! `scripts/test-env.sh start DIR IDP_PORT`, read from the `DIR/env` file that script writes.
//!
//! [`TestEnv::load`] finds the file through `$MAILGATE_TEST_ENV`, else at
//! `<workspace>/target/test-env/env`, and gives typed ports and paths, an admin client for the
//! fake IdP that Dovecot asks about tokens, and helpers to read delivered mail from the Maildirs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};

use crate::idp::IdpAdmin;
use crate::poll::eventually;

/// The variable naming the env file.
pub const ENV_FILE_VAR: &str = "MAILGATE_TEST_ENV";

/// The test servers' environment: one field per key of the env file.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// `MG_TEST_DIR`: the run directory.
    pub dir: PathBuf,
    /// `MG_TEST_HOST`: where the servers listen (127.0.0.1).
    pub host: String,
    /// `MG_TEST_CA`: the CA certificate (PEM) the servers' certificates chain to.
    pub ca: PathBuf,
    /// `MG_TLS_DIR`: all TLS material (also `expired.pem`, `untrusted-ca.pem`, …).
    pub tls_dir: PathBuf,
    /// `MG_SMTP_RELAY_PORT`: Postfix smtpd, no auth.
    pub smtp_relay_port: u16,
    /// `MG_SMTP_STARTTLS_PORT`: Postfix submission, STARTTLS, AUTH only after TLS.
    pub smtp_starttls_port: u16,
    /// `MG_SMTP_TLS_PORT`: Postfix submission, implicit TLS.
    pub smtp_tls_port: u16,
    /// `MG_SMTP_PLAIN_PORT`: Postfix submission, no TLS, AUTH in clear.
    pub smtp_plain_port: u16,
    /// `MG_IMAP_STARTTLS_PORT`: Dovecot IMAP, STARTTLS offered.
    pub imap_starttls_port: u16,
    /// `MG_IMAP_TLS_PORT`: Dovecot IMAPS.
    pub imap_tls_port: u16,
    /// `MG_LMTP_PORT`: Dovecot LMTP (tests may inject mail here).
    pub lmtp_port: u16,
    /// `MG_DOVECOT_AUTH_PORT`: Dovecot auth (client protocol), used by Postfix SASL.
    pub dovecot_auth_port: u16,
    /// `MG_IMAP_EXPIRED_PORT`: IMAPS with an expired certificate.
    pub imap_expired_port: u16,
    /// `MG_IMAP_UNTRUSTED_PORT`: IMAPS with a certificate from an unknown CA.
    pub imap_untrusted_port: u16,
    /// `MG_IDP_PORT`: the fake IdP Dovecot introspects tokens with.
    pub idp_port: u16,
    /// `MG_IDP_INTROSPECT_IMAP_URL`.
    pub idp_introspect_imap_url: String,
    /// `MG_IDP_INTROSPECT_SMTP_URL`.
    pub idp_introspect_smtp_url: String,
    /// `MG_MAIL_ROOT`: Maildirs are `<mail_root>/<domain>/<local part>/Maildir`.
    pub mail_root: PathBuf,
    /// `MG_DOVECOT_CONFIG`: dovecot.conf of the main instance.
    pub dovecot_config: PathBuf,
    /// `MG_POSTFIX_CONFIG`: Postfix's config directory.
    pub postfix_config: PathBuf,
    /// `MG_USER_SENDER`: a password user (AUTH PLAIN/LOGIN).
    pub user_sender: String,
    /// `MG_PASS_SENDER`.
    pub pass_sender: String,
    /// `MG_USER_READER`: a password user for IMAP.
    pub user_reader: String,
    /// `MG_PASS_READER`.
    pub pass_reader: String,
    /// `MG_DOMAIN`: the mail domain every address is delivered in (example.test).
    pub domain: String,
    /// `http://127.0.0.1:<idp_port>`.
    pub idp_url: String,
    /// Admin client for the fake IdP at `idp_url`.
    pub idp: IdpAdmin,
}

impl TestEnv {
    /// Reads the env file written by `scripts/test-env.sh start`.
    ///
    /// # Panics
    /// When the file is missing (the servers are not running) or malformed.
    pub fn load() -> TestEnv {
        let path = TestEnv::env_file();
        if !path.is_file() {
            panic!(
                "no test server environment at {}: start the test servers: scripts/test.sh runs \
                 everything, or scripts/test-env.sh start DIR IDP_PORT (with mailgate-fake-idp \
                 listening on IDP_PORT) and {ENV_FILE_VAR}=DIR/env",
                path.display()
            );
        }
        TestEnv::from_file(&path).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `$MAILGATE_TEST_ENV`, else `<workspace root>/target/test-env/env`.
    pub fn env_file() -> PathBuf {
        match std::env::var_os(ENV_FILE_VAR) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-env/env"),
        }
    }

    /// Reads an env file.
    pub fn from_file(path: &Path) -> anyhow::Result<TestEnv> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the test server environment {}", path.display()))?;
        TestEnv::parse(&text).with_context(|| format!("test server environment {}", path.display()))
    }

    /// Parses `KEY=VALUE` lines (blank lines and `#` comments skipped, unknown keys ignored).
    pub fn parse(text: &str) -> anyhow::Result<TestEnv> {
        let mut vars = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| anyhow!("line {}: not KEY=VALUE: {line}", number + 1))?;
            vars.insert(key.trim(), value.trim());
        }
        let get = |key: &str| -> anyhow::Result<String> {
            vars.get(key)
                .map(|v| (*v).to_owned())
                .ok_or_else(|| anyhow!("{key} is missing"))
        };
        let port = |key: &str| -> anyhow::Result<u16> {
            let value = get(key)?;
            value
                .parse()
                .with_context(|| format!("{key}={value} is not a port number"))
        };
        let path = |key: &str| get(key).map(PathBuf::from);
        let idp_port = port("MG_IDP_PORT")?;
        let idp_url = format!("http://127.0.0.1:{idp_port}");
        Ok(TestEnv {
            dir: path("MG_TEST_DIR")?,
            host: get("MG_TEST_HOST")?,
            ca: path("MG_TEST_CA")?,
            tls_dir: path("MG_TLS_DIR")?,
            smtp_relay_port: port("MG_SMTP_RELAY_PORT")?,
            smtp_starttls_port: port("MG_SMTP_STARTTLS_PORT")?,
            smtp_tls_port: port("MG_SMTP_TLS_PORT")?,
            smtp_plain_port: port("MG_SMTP_PLAIN_PORT")?,
            imap_starttls_port: port("MG_IMAP_STARTTLS_PORT")?,
            imap_tls_port: port("MG_IMAP_TLS_PORT")?,
            lmtp_port: port("MG_LMTP_PORT")?,
            dovecot_auth_port: port("MG_DOVECOT_AUTH_PORT")?,
            imap_expired_port: port("MG_IMAP_EXPIRED_PORT")?,
            imap_untrusted_port: port("MG_IMAP_UNTRUSTED_PORT")?,
            idp_port,
            idp_introspect_imap_url: get("MG_IDP_INTROSPECT_IMAP_URL")?,
            idp_introspect_smtp_url: get("MG_IDP_INTROSPECT_SMTP_URL")?,
            mail_root: path("MG_MAIL_ROOT")?,
            dovecot_config: path("MG_DOVECOT_CONFIG")?,
            postfix_config: path("MG_POSTFIX_CONFIG")?,
            user_sender: get("MG_USER_SENDER")?,
            pass_sender: get("MG_PASS_SENDER")?,
            user_reader: get("MG_USER_READER")?,
            pass_reader: get("MG_PASS_READER")?,
            domain: get("MG_DOMAIN")?,
            idp: IdpAdmin::new(idp_url.clone()),
            idp_url,
        })
    }

    /// The Maildir of `address`: `<mail_root>/<domain>/<local part>/Maildir`.
    ///
    /// # Panics
    /// When `address` has no `@`.
    pub fn maildir(&self, address: &str) -> PathBuf {
        let (local, domain) = address
            .rsplit_once('@')
            .unwrap_or_else(|| panic!("'{address}' is not an address (local@domain)"));
        self.mail_root.join(domain).join(local).join("Maildir")
    }

    /// The raw messages delivered to `address` (files in `new/` and `cur/` of its Maildir),
    /// sorted by file name (delivery order). Empty when nothing was delivered yet.
    ///
    /// # Panics
    /// When the Maildir cannot be read.
    pub fn maildir_messages(&self, address: &str) -> Vec<Vec<u8>> {
        read_maildir(&self.maildir(address))
            .unwrap_or_else(|e| panic!("read the Maildir of {address}: {e:#}"))
    }

    /// Waits until at least `count` messages were delivered to `address` and returns them all
    /// (polling every 20 ms).
    ///
    /// # Panics
    /// When they have not arrived within `deadline`, saying how many did.
    pub async fn wait_for_messages(
        &self,
        address: &str,
        count: usize,
        deadline: Duration,
    ) -> Vec<Vec<u8>> {
        let started = tokio::time::Instant::now();
        let give_up = started + deadline;
        let messages = eventually(deadline + Duration::from_secs(1), "the Maildir", || {
            let messages = self.maildir_messages(address);
            let done = messages.len() >= count || tokio::time::Instant::now() >= give_up;
            async move { done.then_some(messages) }
        })
        .await;
        if messages.len() < count {
            panic!(
                "{} of {count} message(s) arrived for {address} within {deadline:?} (Maildir {})",
                messages.len(),
                self.maildir(address).display()
            );
        }
        messages
    }

    /// A fresh address in the test domain: `prefix-<12 hex digits>@example.test`.
    pub fn unique_address(&self, prefix: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("{prefix}-{}@{}", &id[..12], self.domain)
    }
}

/// Files of `new/` and `cur/`, sorted by file name. A file that Dovecot moves from `new/` to
/// `cur/` while this reads makes it start over.
fn read_maildir(maildir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut attempts = 0;
    'again: loop {
        attempts += 1;
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            let dir = maildir.join(sub);
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("list {}", dir.display())),
            };
            for entry in entries {
                let entry = entry.with_context(|| format!("list {}", dir.display()))?;
                if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    files.push((entry.file_name(), entry.path()));
                }
            }
        }
        files.sort();
        let mut messages = Vec::with_capacity(files.len());
        for (_, path) in files {
            match std::fs::read(&path) {
                Ok(bytes) => messages.push(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 10 => {
                    continue 'again;
                }
                Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
            }
        }
        return Ok(messages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
MG_TEST_DIR=/tmp/run
MG_TEST_HOST=127.0.0.1
MG_TEST_CA=/tmp/run/tls/ca.pem
MG_TLS_DIR=/tmp/run/tls
MG_SMTP_RELAY_PORT=24000
MG_SMTP_STARTTLS_PORT=24001
MG_SMTP_TLS_PORT=24002
MG_SMTP_PLAIN_PORT=24003
MG_IMAP_STARTTLS_PORT=24004
MG_IMAP_TLS_PORT=24005
MG_LMTP_PORT=24006
MG_DOVECOT_AUTH_PORT=24007
MG_IMAP_EXPIRED_PORT=24008
MG_IMAP_UNTRUSTED_PORT=24009
MG_IDP_PORT=24100
MG_IDP_INTROSPECT_IMAP_URL=http://127.0.0.1:24100/introspect/imap
MG_IDP_INTROSPECT_SMTP_URL=http://127.0.0.1:24100/introspect/smtp
MG_MAIL_ROOT=/tmp/run/mail
MG_DOVECOT_CONFIG=/tmp/run/dovecot/dovecot.conf
MG_POSTFIX_CONFIG=/tmp/run/postfix
MG_USER_SENDER=sender@example.test
MG_PASS_SENDER=sender-pass-1
MG_USER_READER=reader@example.test
MG_PASS_READER=reader-pass-1
MG_DOMAIN=example.test
";

    fn env_with_mail_root(root: &Path) -> TestEnv {
        let mut env = TestEnv::parse(SAMPLE).expect("the sample parses");
        env.mail_root = root.to_owned();
        env
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mailgate-testkit-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        dir
    }

    #[test]
    fn parse_reads_every_key_the_script_writes() {
        let env = TestEnv::parse(SAMPLE).expect("the sample parses");
        assert_eq!(env.smtp_relay_port, 24000);
        assert_eq!(env.imap_untrusted_port, 24009);
        assert_eq!(env.dovecot_auth_port, 24007);
        assert_eq!(env.ca, PathBuf::from("/tmp/run/tls/ca.pem"));
        assert_eq!(env.idp_url, "http://127.0.0.1:24100");
        assert_eq!(env.idp.base_url(), "http://127.0.0.1:24100");
        assert_eq!(env.user_reader, "reader@example.test");
        assert_eq!(env.domain, "example.test");
    }

    #[test]
    fn parse_names_a_missing_key_and_a_bad_port() {
        let missing = SAMPLE.replace("MG_LMTP_PORT=24006\n", "");
        let error = TestEnv::parse(&missing).expect_err("a key is missing");
        assert!(format!("{error:#}").contains("MG_LMTP_PORT"), "{error:#}");
        let bad = SAMPLE.replace("MG_LMTP_PORT=24006", "MG_LMTP_PORT=lmtp");
        let error = TestEnv::parse(&bad).expect_err("a port is not a number");
        assert!(
            format!("{error:#}").contains("MG_LMTP_PORT=lmtp"),
            "{error:#}"
        );
    }

    #[test]
    fn unique_addresses_are_unique_and_in_the_test_domain() {
        let env = TestEnv::parse(SAMPLE).expect("the sample parses");
        let a = env.unique_address("retrieval");
        let b = env.unique_address("retrieval");
        assert_ne!(a, b);
        assert!(
            a.starts_with("retrieval-") && a.ends_with("@example.test"),
            "{a}"
        );
        assert_eq!(a.len(), "retrieval-".len() + 12 + "@example.test".len());
    }

    #[tokio::test]
    async fn maildir_messages_reads_new_and_cur_sorted_by_name() {
        let root = temp_dir();
        let env = env_with_mail_root(&root);
        let address = "someone@example.test";
        assert!(env.maildir_messages(address).is_empty());

        let maildir = root.join("example.test/someone/Maildir");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("create the Maildir");
        }
        std::fs::write(maildir.join("cur/1700000002.M1P1.host:2,S"), b"second").expect("write");
        std::fs::write(maildir.join("new/1700000001.M1P1.host"), b"first").expect("write");
        std::fs::write(maildir.join("tmp/1700000003.M1P1.host"), b"in delivery").expect("write");

        assert_eq!(
            env.maildir_messages(address),
            vec![b"first".to_vec(), b"second".to_vec()]
        );
        let messages = env
            .wait_for_messages(address, 2, Duration::from_secs(1))
            .await;
        assert_eq!(messages.len(), 2);
        std::fs::remove_dir_all(&root).expect("remove the temp dir");
    }

    #[tokio::test]
    #[should_panic(expected = "0 of 1 message(s) arrived for nobody@example.test")]
    async fn wait_for_messages_says_how_many_arrived() {
        let root = std::env::temp_dir().join(format!(
            "mailgate-testkit-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let env = env_with_mail_root(&root);
        env.wait_for_messages("nobody@example.test", 1, Duration::from_millis(60))
            .await;
    }
}
