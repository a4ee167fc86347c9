//! Secrets at rest: AES-256-GCM under a 32-byte master key.
//!
//! The master key is read from configuration (base64) or from `master.key` in the data
//! directory, which is created with mode 0600 on first start. Whoever holds the database
//! without the key sees only ciphertext; lose the key and the stored secrets must be entered
//! again (back it up with the database).

use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use mailgate_core::model::{Sealed, Secret};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "v1:";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Seals and opens secrets with the master key.
pub struct Vault {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

impl Vault {
    /// A vault from 32 raw key bytes.
    pub fn from_key(bytes: &[u8]) -> anyhow::Result<Vault> {
        if bytes.len() != 32 {
            bail!("the master key must be 32 bytes (base64 of 32 random bytes), got {}", bytes.len());
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| anyhow::anyhow!("invalid master key"))?;
        Ok(Vault { key: LessSafeKey::new(key), rng: SystemRandom::new() })
    }

    /// A vault from a base64 key (configuration), or from `data_dir/master.key`, created
    /// with fresh random bytes and mode 0600 when missing.
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vault> {
        if let Some(b64) = configured.map(str::trim).filter(|s| !s.is_empty()) {
            let bytes = B64.decode(b64).context("the configured master key is not valid base64")?;
            return Vault::from_key(&bytes);
        }
        let path = data_dir.join("master.key");
        if path.exists() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let bytes = B64.decode(text.trim()).with_context(|| format!("{} is not valid base64", path.display()))?;
            return Vault::from_key(&bytes);
        }
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("no random numbers available"))?;
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        write_private(&path, B64.encode(bytes).as_bytes())?;
        tracing::info!(path = %path.display(), "created a new master key; back it up together with the database");
        Vault::from_key(&bytes)
    }

    /// Encrypts a secret.
    pub fn seal(&self, secret: &Secret) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        // SystemRandom only fails when the OS has no entropy source at all.
        self.rng.fill(&mut nonce).expect("the operating system's random source failed");
        let mut buf = secret.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .expect("AES-GCM sealing cannot fail for inputs under 64 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Sealed(format!("{PREFIX}{}", B64.encode(out)))
    }

    /// Decrypts a sealed secret; fails when it was sealed under another key or altered.
    pub fn open(&self, sealed: &Sealed) -> anyhow::Result<Secret> {
        let body = sealed.0.strip_prefix(PREFIX).context("unknown secret format")?;
        let bytes = B64.decode(body).context("sealed secret is not valid base64")?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            bail!("sealed secret is too short");
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| anyhow::anyhow!("a stored secret cannot be decrypted: was the master key changed?"))?;
        Ok(Secret::new(String::from_utf8(plain.to_vec()).context("secret is not UTF-8")?))
    }
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_hides_the_plaintext() {
        let vault = Vault::from_key(&[7u8; 32]).unwrap();
        let sealed = vault.seal(&Secret::new("s3cret-value"));
        assert!(!sealed.0.contains("s3cret"));
        assert_eq!(vault.open(&sealed).unwrap().expose(), "s3cret-value");
        assert_ne!(vault.seal(&Secret::new("x")).0, vault.seal(&Secret::new("x")).0, "nonces must differ");
        let other = Vault::from_key(&[8u8; 32]).unwrap();
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn creates_a_private_key_file_once() {
        let dir = std::env::temp_dir().join(format!("mailgate-vault-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = Vault::load_or_create(None, &dir).unwrap();
        let sealed = a.seal(&Secret::new("v"));
        let b = Vault::load_or_create(None, &dir).unwrap();
        assert_eq!(b.open(&sealed).unwrap().expose(), "v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("master.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
