//! TLS client configuration shared by every outgoing connection.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// A rustls client configuration trusting the system's CAs and those in `extra_ca_file`.
pub fn client_config(extra_ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A broken system certificate is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca_file {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).with_context(|| format!("reading CA file {}", path.display()))? {
            let cert = cert.with_context(|| format!("parsing CA file {}", path.display()))?;
            roots.add(cert).with_context(|| format!("adding a CA from {}", path.display()))?;
            added += 1;
        }
        anyhow::ensure!(added > 0, "CA file {} holds no certificate", path.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
