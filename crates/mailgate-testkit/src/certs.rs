//! Certificates and keys for tests of the OAuth providers, made with the `openssl` command
//! (ring cannot generate RSA keys): a self-signed certificate credential for Microsoft
//! ([`self_signed_certificate`]) and a Google service account key file
//! ([`google_service_account_key`]).
//!
//! Each call makes a new 2048-bit RSA key (tens of milliseconds); share results across the tests
//! of a binary when there are many. The functions block: call them from `spawn_blocking` when
//! that matters.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use x509_parser::pem::Pem;

use crate::idp::GoogleServiceAccountSpec;

/// The password of [`TestCertificate::pkcs12_der`].
pub const PKCS12_PASSWORD: &str = "test-pass";

/// A self-signed certificate with its RSA key, in the forms a user uploads or configures.
#[derive(Debug, Clone)]
pub struct TestCertificate {
    /// The certificate, `-----BEGIN CERTIFICATE-----` (what is uploaded to the app registration).
    pub cert_pem: String,
    /// The RSA private key, PKCS#8 `-----BEGIN PRIVATE KEY-----`.
    pub key_pem: String,
    /// Certificate and key as PKCS#12 (`openssl pkcs12 -export`, OpenSSL 3 defaults:
    /// AES-256-CBC, PBKDF2, SHA-256 MAC), password [`PKCS12_PASSWORD`].
    pub pkcs12_der: Vec<u8>,
    /// base64url (no padding) SHA-256 of the DER certificate: the assertion header's `x5t#S256`.
    pub sha256_thumbprint_b64url: String,
    /// base64url (no padding) SHA-1 of the DER certificate: the legacy `x5t`.
    pub sha1_thumbprint_b64url: String,
}

/// A self-signed certificate for `common_name` with a new 2048-bit RSA key.
///
/// `days > 0`: valid from an hour ago for `days` days. `days <= 0`: EXPIRED — valid for 30 days
/// that ended `-days` days (and an hour) ago; `0` ended an hour ago.
pub fn self_signed_certificate(common_name: &str, days: i64) -> anyhow::Result<TestCertificate> {
    if common_name.is_empty() || common_name.chars().any(char::is_control) {
        bail!("the common name must be non-empty text without control characters");
    }
    const DAY: i64 = 86_400;
    const HOUR: i64 = 3_600;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (start, end) = if days > 0 {
        (now - HOUR, now.saturating_add(days.saturating_mul(DAY)))
    } else {
        let end = now.saturating_add(days.saturating_mul(DAY)) - HOUR;
        (end - 30 * DAY, end)
    };

    let dir = TempDir::new("cert")?;
    let key = dir.path("key.pem");
    let csr = dir.path("req.csr");
    let cert = dir.path("cert.pem");
    let p12 = dir.path("cert.p12");
    let subject = format!("/CN={}", escape_subject_value(common_name));
    openssl(
        Command::new("openssl")
            .args([
                "req", "-new", "-newkey", "rsa:2048", "-nodes", "-utf8", "-subj",
            ])
            .arg(&subject)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    )?;
    // `openssl ca -selfsign` is what sets arbitrary dates with OpenSSL 3.0 (`x509 -not_before`
    // came with 3.4); it needs a small CA database.
    std::fs::write(dir.path("index.txt"), "").context("write the CA database")?;
    std::fs::write(
        dir.path("serial"),
        format!("{}\n", uuid::Uuid::new_v4().simple()),
    )
    .context("write the CA serial")?;
    let config = dir.path("ca.cnf");
    std::fs::write(
        &config,
        format!(
            "[ ca ]\ndefault_ca = test_ca\n[ test_ca ]\ndatabase = {db}\nnew_certs_dir = {dir}\n\
             serial = {serial}\ndefault_md = sha256\npolicy = policy_any\nunique_subject = no\n\
             [ policy_any ]\ncommonName = supplied\n[ ext ]\nbasicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\nsubjectKeyIdentifier = hash\n",
            db = dir.path("index.txt").display(),
            dir = dir.root.display(),
            serial = dir.path("serial").display(),
        ),
    )
    .context("write the CA configuration")?;
    openssl(
        Command::new("openssl")
            .args(["ca", "-batch", "-notext", "-utf8", "-selfsign", "-config"])
            .arg(&config)
            .arg("-keyfile")
            .arg(&key)
            .args(["-extensions", "ext", "-startdate"])
            .arg(openssl_time(start)?)
            .arg("-enddate")
            .arg(openssl_time(end)?)
            .arg("-in")
            .arg(&csr)
            .arg("-out")
            .arg(&cert),
    )?;
    openssl(
        Command::new("openssl")
            .args(["pkcs12", "-export", "-passout"])
            .arg(format!("pass:{PKCS12_PASSWORD}"))
            .arg("-in")
            .arg(&cert)
            .arg("-inkey")
            .arg(&key)
            .arg("-out")
            .arg(&p12),
    )?;

    let cert_pem = read_text(&cert)?;
    let key_pem = read_text(&key)?;
    if !key_pem.contains("-----BEGIN PRIVATE KEY-----") {
        bail!("openssl did not write a PKCS#8 key");
    }
    let der = Pem::iter_from_buffer(cert_pem.as_bytes())
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .ok_or_else(|| anyhow!("openssl wrote no certificate"))?;
    let thumbprint = |algorithm| URL_SAFE_NO_PAD.encode(ring::digest::digest(algorithm, &der));
    Ok(TestCertificate {
        pkcs12_der: std::fs::read(&p12).context("read the PKCS#12 file")?,
        sha256_thumbprint_b64url: thumbprint(&ring::digest::SHA256),
        sha1_thumbprint_b64url: thumbprint(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
        cert_pem,
        key_pem,
    })
}

/// A new Google service account key for `client_email` with a new 2048-bit RSA key.
///
/// Returns the JSON key file Google gives (`type`, `project_id`, `private_key_id`,
/// `private_key` (PKCS#8 PEM), `client_email`, `client_id`, `auth_uri`, `token_uri`, … in
/// Google's order), with `token_uri` as given (the stand-in's
/// [`FakeIdp::google_token_url`](crate::FakeIdp::google_token_url); `""` leaves it to the
/// caller), and the matching registration for
/// [`IdpAdmin::register_google_service_account`](crate::IdpAdmin::register_google_service_account):
/// public key filled in, domain-wide delegation for `mail_domain`, lifetime 3599 s.
pub fn google_service_account_key(
    client_email: &str,
    token_uri: &str,
    mail_domain: &str,
) -> anyhow::Result<(String, GoogleServiceAccountSpec)> {
    if client_email.is_empty() {
        bail!("the client_email must not be empty");
    }
    let dir = TempDir::new("google")?;
    let key = dir.path("key.pem");
    let public = dir.path("public.pem");
    openssl(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&key),
    )?;
    openssl(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public),
    )?;
    let private_key = read_text(&key)?;
    let public_key_pem = read_text(&public)?;

    let random = uuid::Uuid::new_v4();
    // 40 hex digits, like Google's key ids.
    let private_key_id: String = format!(
        "{}{}",
        random.simple(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // 21 digits, like Google's numeric client ids.
    let client_id = format!("1{:020}", random.as_u128() % 100_000_000_000_000_000_000);
    let project_id = client_email
        .split_once('@')
        .and_then(|(_, domain)| domain.strip_suffix(".iam.gserviceaccount.com"))
        .filter(|p| !p.is_empty())
        .unwrap_or("mailgate-test")
        .to_owned();
    let file = KeyFile {
        kind: "service_account",
        project_id: &project_id,
        private_key_id: &private_key_id,
        private_key: &private_key,
        client_email,
        client_id: &client_id,
        auth_uri: "https://accounts.google.com/o/oauth2/auth",
        token_uri,
        auth_provider_x509_cert_url: "https://www.googleapis.com/oauth2/v1/certs",
        client_x509_cert_url: &format!(
            "https://www.googleapis.com/robot/v1/metadata/x509/{}",
            client_email.replace('@', "%40")
        ),
        universe_domain: "googleapis.com",
    };
    let json = serde_json::to_string_pretty(&file).context("serialise the key file")?;
    let spec =
        GoogleServiceAccountSpec::new(client_email, private_key_id, public_key_pem, mail_domain);
    Ok((json, spec))
}

/// Google's service account key file, fields in Google's order.
#[derive(Serialize)]
struct KeyFile<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    project_id: &'a str,
    private_key_id: &'a str,
    private_key: &'a str,
    client_email: &'a str,
    client_id: &'a str,
    auth_uri: &'a str,
    token_uri: &'a str,
    auth_provider_x509_cert_url: &'a str,
    client_x509_cert_url: &'a str,
    universe_domain: &'a str,
}

/// Runs an openssl command; an error carries its stderr.
fn openssl(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output().context("run openssl (is it installed?)")?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            command,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

/// `YYYYMMDDHHMMSSZ` (GeneralizedTime), the form `openssl ca -startdate/-enddate` takes.
fn openssl_time(unix: i64) -> anyhow::Result<String> {
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .context("certificate date out of range")?
        .format(&format)
        .context("format a certificate date")
}

/// Escapes the characters `openssl -subj` treats specially.
fn escape_subject_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '/' | '+' | '\\' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A private temporary directory, removed when dropped.
struct TempDir {
    root: PathBuf,
}

impl TempDir {
    fn new(what: &str) -> anyhow::Result<TempDir> {
        let root = std::env::temp_dir().join(format!(
            "mailgate-testkit-{what}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&root).with_context(|| format!("create {}", root.display()))?;
        Ok(TempDir { root })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: throwaway test keys either way.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer as _, X509Certificate};

    fn parse(pem: &str) -> (String, i64, i64) {
        let der = Pem::iter_from_buffer(pem.as_bytes())
            .next()
            .expect("a PEM block")
            .expect("valid PEM")
            .contents;
        let (_, cert) = X509Certificate::from_der(&der).expect("a certificate");
        let validity = cert.validity();
        (
            cert.subject().to_string(),
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        )
    }

    #[test]
    fn a_valid_and_an_expired_self_signed_certificate() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let valid = self_signed_certificate("mailgate app/1 + co", 30).expect("a certificate");
        let (subject, not_before, not_after) = parse(&valid.cert_pem);
        assert_eq!(subject, "CN=mailgate app/1 + co");
        assert!(
            not_before < now && not_after > now + 29 * 86_400,
            "{not_before} {not_after}"
        );
        assert!(valid.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(valid.pkcs12_der.len() > 1000);
        assert_eq!(valid.sha256_thumbprint_b64url.len(), 43);
        assert_eq!(valid.sha1_thumbprint_b64url.len(), 27);
        // The key is ring-usable (the code under test signs with it).
        let der = Pem::iter_from_buffer(valid.key_pem.as_bytes())
            .next()
            .expect("a block")
            .expect("PEM")
            .contents;
        ring::signature::RsaKeyPair::from_pkcs8(&der).expect("an RSA PKCS#8 key");

        let expired = self_signed_certificate("expired app", -1).expect("a certificate");
        let (_, _, not_after) = parse(&expired.cert_pem);
        assert!(not_after < now - 86_400, "{not_after} vs {now}");
        assert_ne!(
            expired.sha256_thumbprint_b64url,
            valid.sha256_thumbprint_b64url
        );
    }

    #[test]
    fn a_google_key_file_in_googles_shape() {
        let email = "mailer@my-project.iam.gserviceaccount.com";
        let (json, spec) =
            google_service_account_key(email, "http://127.0.0.1:1/google/token", "example.test")
                .expect("a key");
        let keys: Vec<&str> = [
            "type",
            "project_id",
            "private_key_id",
            "private_key",
            "client_email",
            "client_id",
            "auth_uri",
            "token_uri",
        ]
        .into_iter()
        .collect();
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| json.find(&format!("\"{k}\":")).expect("the key is there"))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
        let file: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(file["type"], "service_account");
        assert_eq!(file["project_id"], "my-project");
        assert_eq!(file["client_email"], email);
        assert_eq!(file["token_uri"], "http://127.0.0.1:1/google/token");
        assert_eq!(file["private_key_id"], spec.private_key_id);
        assert_eq!(spec.private_key_id.len(), 40);
        assert_eq!(file["client_id"].as_str().expect("client_id").len(), 21);
        assert!(
            file["private_key"]
                .as_str()
                .expect("private_key")
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert!(
            spec.public_key_pem
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert_eq!(spec.client_email, email);
        assert_eq!(spec.mail_domain, "example.test");
        assert_eq!(spec.lifetime_secs, 3599);

        let (json, _) =
            google_service_account_key("x@example.test", "", "example.test").expect("a key");
        let file: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(file["token_uri"], "");
        assert_eq!(file["project_id"], "mailgate-test");
    }
}
