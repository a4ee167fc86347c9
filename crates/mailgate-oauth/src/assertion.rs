//! Signed JWTs a client presents instead of a secret: Microsoft client assertions
//! (certificate credentials) and Google's JWT bearer grant (service accounts).

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::RsaKeyPair;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Reads an RSA private key from PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
pub fn rsa_key(pem: &str) -> Result<RsaKeyPair, String> {
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("the private key is not valid PEM: {e}"))?;
    let pair = match &der {
        PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
        _ => return Err("the private key must be an RSA key (PKCS#8 or PKCS#1)".into()),
    };
    pair.map_err(|e| format!("the private key cannot be used for RS256: {e}"))
}

/// The DER of the first certificate in a PEM text.
pub fn certificate_der(pem: &str) -> Result<Vec<u8>, String> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| format!("the certificate is not valid PEM: {e}"))
}

/// `x5t#S256`: base64url of the SHA-256 of the certificate's DER.
pub fn thumbprint_sha256(der: &[u8]) -> String {
    B64URL.encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// The SHA-1 thumbprint in hex, as the Entra portal displays it.
pub fn thumbprint_sha1_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

/// Signs `claims` with `key` as a compact JWT (`RS256` or `PS256`).
pub fn sign(key: &RsaKeyPair, alg: &str, mut header: Value, claims: &Value) -> Result<String, String> {
    let encoding: &'static dyn ring::signature::RsaEncoding = match alg {
        "PS256" => &ring::signature::RSA_PSS_SHA256,
        "RS256" | "" => &ring::signature::RSA_PKCS1_SHA256,
        other => return Err(format!("unsupported signing algorithm {other} (RS256 or PS256)")),
    };
    header["alg"] = Value::String(if alg.is_empty() { "RS256".into() } else { alg.into() });
    header["typ"] = Value::String("JWT".into());
    let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(encoding, &SystemRandom::new(), input.as_bytes(), &mut signature).map_err(|_| "signing failed".to_string())?;
    Ok(format!("{input}.{}", B64URL.encode(signature)))
}

/// Whether `key` is the private half of the certificate's public key (a signature made with
/// the key verifies against the certificate).
pub fn key_matches_certificate(key: &RsaKeyPair, certificate_public_key: &[u8]) -> bool {
    let message = b"mailgate key check";
    let mut signature = vec![0u8; key.public().modulus_len()];
    if key.sign(&ring::signature::RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature).is_err() {
        return false;
    }
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, certificate_public_key)
        .verify(message, &signature)
        .is_ok()
}

/// A Google service-account key file (the JSON the Cloud console gives).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: String,
    #[serde(default)]
    pub token_uri: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
}

impl ServiceAccountKey {
    pub fn parse(json: &str) -> Result<ServiceAccountKey, String> {
        let key: ServiceAccountKey =
            serde_json::from_str(json).map_err(|e| format!("not a service-account key file (JSON with client_email and private_key): {e}"))?;
        rsa_key(&key.private_key)?;
        Ok(key)
    }
}
