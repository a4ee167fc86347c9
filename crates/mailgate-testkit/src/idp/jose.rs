//! The JWTs clients send (Microsoft client assertions, Google service-account grants) and the
//! RSA keys that verify them: parsing, RS256/PS256 signature checks, certificates and
//! SubjectPublicKeyInfo PEM.

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature;
use serde_json::{Map, Value};
use x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

/// A JWT split into its parts; nothing is checked but its form.
pub(super) struct Jwt {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    /// `header.payload`, the signed bytes.
    signed: String,
    signature: Vec<u8>,
}

impl Jwt {
    /// Three base64url parts, the first two JSON objects; `None` otherwise.
    pub(super) fn parse(token: &str) -> Option<Jwt> {
        let mut parts = token.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let object = |part: &str| match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?)
        {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        };
        Some(Jwt {
            header: object(header)?,
            claims: object(payload)?,
            signed: format!("{header}.{payload}"),
            signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        })
    }

    /// A string member of the header.
    pub(super) fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name)?.as_str()
    }

    /// A claim, whatever its type.
    pub(super) fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// A string claim.
    pub(super) fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name)?.as_str()
    }

    /// A NumericDate claim (seconds; a fraction is cut off).
    pub(super) fn claim_time(&self, name: &str) -> Option<i64> {
        let value = self.claims.get(name)?;
        value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                // In range: checked just above.
                .map(|f| f.floor() as i64)
        })
    }

    /// Whether the signature verifies with `alg` and the PKCS#1 `RSAPublicKey` DER.
    pub(super) fn verify(&self, alg: RsaAlg, rsa_public_key: &[u8]) -> bool {
        let algorithm: &dyn signature::VerificationAlgorithm = match alg {
            RsaAlg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            RsaAlg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
        };
        signature::UnparsedPublicKey::new(algorithm, rsa_public_key)
            .verify(self.signed.as_bytes(), &self.signature)
            .is_ok()
    }
}

/// The JWS algorithms accepted here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RsaAlg {
    Rs256,
    Ps256,
}

impl RsaAlg {
    pub(super) fn from_name(name: &str) -> Option<RsaAlg> {
        match name {
            "RS256" => Some(RsaAlg::Rs256),
            "PS256" => Some(RsaAlg::Ps256),
            _ => None,
        }
    }
}

/// Decodes a thumbprint from a JWT header leniently: base64url or standard base64, padded or
/// not (old ADAL libraries sent padded standard base64 in `x5t`).
pub(super) fn decode_thumbprint(text: &str) -> Option<Vec<u8>> {
    let normalised: String = text
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(normalised).ok()
}

/// Upper-case hex, the way the Azure portal shows thumbprints.
pub(super) fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A registered X.509 certificate credential.
#[derive(Debug, Clone)]
pub(super) struct Certificate {
    /// The subject's PKCS#1 `RSAPublicKey` DER.
    pub(super) rsa_public_key: Vec<u8>,
    /// SHA-1 of the DER certificate (`x5t`).
    pub(super) sha1: Vec<u8>,
    /// SHA-256 of the DER certificate (`x5t#S256`).
    pub(super) sha256: Vec<u8>,
    /// Validity, Unix seconds.
    pub(super) not_before: i64,
    pub(super) not_after: i64,
}

impl Certificate {
    /// Every `CERTIFICATE` block of `pem` (at least one), each with an RSA key.
    pub(super) fn parse_pem_bundle(pem: &str) -> anyhow::Result<Vec<Certificate>> {
        let mut certificates = Vec::new();
        for block in Pem::iter_from_buffer(pem.as_bytes()) {
            let block = block.map_err(|e| anyhow!("certificate_pem is not valid PEM: {e}"))?;
            if block.label == "CERTIFICATE" {
                certificates.push(Certificate::from_der(&block.contents)?);
            }
        }
        if certificates.is_empty() {
            bail!("certificate_pem holds no 'BEGIN CERTIFICATE' block");
        }
        Ok(certificates)
    }

    fn from_der(der: &[u8]) -> anyhow::Result<Certificate> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| anyhow!("certificate_pem: not an X.509 certificate: {e}"))?;
        let validity = cert.validity();
        Ok(Certificate {
            rsa_public_key: rsa_public_key(cert.public_key()).context("certificate_pem")?,
            sha1: ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
                .as_ref()
                .to_vec(),
            sha256: ring::digest::digest(&ring::digest::SHA256, der)
                .as_ref()
                .to_vec(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }
}

/// The PKCS#1 `RSAPublicKey` DER of a `BEGIN PUBLIC KEY` (SubjectPublicKeyInfo) PEM or of the
/// first certificate of a `BEGIN CERTIFICATE` PEM.
pub(super) fn rsa_public_key_from_pem(pem: &str) -> anyhow::Result<Vec<u8>> {
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| anyhow!("public_key_pem is not valid PEM: {e}"))?;
        match block.label.as_str() {
            "PUBLIC KEY" => {
                let (_, spki) = SubjectPublicKeyInfo::from_der(&block.contents)
                    .map_err(|e| anyhow!("public_key_pem: not a SubjectPublicKeyInfo: {e}"))?;
                return rsa_public_key(&spki).context("public_key_pem");
            }
            "CERTIFICATE" => {
                return Certificate::from_der(&block.contents).map(|c| c.rsa_public_key);
            }
            _ => {}
        }
    }
    bail!("public_key_pem holds no 'BEGIN PUBLIC KEY' or 'BEGIN CERTIFICATE' block")
}

fn rsa_public_key(spki: &SubjectPublicKeyInfo<'_>) -> anyhow::Result<Vec<u8>> {
    if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
        bail!(
            "the key is not an RSA key (algorithm {})",
            spki.algorithm.algorithm
        );
    }
    Ok(spki.subject_public_key.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_form_and_lenient_thumbprints() {
        let part = |v: Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).expect("JSON"));
        let header = part(serde_json::json!({"alg": "RS256"}));
        let claims = part(serde_json::json!({"exp": 1.9e9, "nbf": 5, "aud": "x"}));
        let jwt = Jwt::parse(&format!("{header}.{claims}.AAEC")).expect("a JWT");
        assert_eq!(jwt.header_str("alg"), Some("RS256"));
        assert_eq!(jwt.claim_time("exp"), Some(1_900_000_000));
        assert_eq!(jwt.claim_time("nbf"), Some(5));
        assert_eq!(jwt.claim_time("aud"), None);
        assert_eq!(jwt.claim_str("aud"), Some("x"));
        assert!(Jwt::parse(&format!("{header}.{claims}")).is_none());
        assert!(Jwt::parse(&format!("{header}.{claims}.AA.AA")).is_none());
        assert!(Jwt::parse(&format!("{header}.bm90IGpzb24.AA")).is_none());
        assert!(Jwt::parse(&format!("{header}.{}.AA", part(serde_json::json!([1])))).is_none());

        assert_eq!(
            decode_thumbprint("rWHKnQ53WQH79JiMnyGFarbTnSs="),
            decode_thumbprint("rWHKnQ53WQH79JiMnyGFarbTnSs")
        );
        assert_eq!(decode_thumbprint("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_thumbprint("+/8="), Some(vec![0xfb, 0xff]));
        assert_eq!(hex_upper(&[0x0a, 0xbc]), "0ABC");
    }

    #[test]
    fn keys_that_are_not_rsa_or_not_pem_are_refused() {
        assert!(rsa_public_key_from_pem("no PEM here").is_err());
        assert!(
            Certificate::parse_pem_bundle(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
            )
            .is_err()
        );
        // An EC P-256 SubjectPublicKeyInfo.
        let ec = "-----BEGIN PUBLIC KEY-----\n\
                  MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAED9uOfqZo1j6PXkPDNNF6e+Ag8Wcf\n\
                  nTB299e20bGQcyOF1m8YTOoQAUg+lJ0u6EuA2AqgcGdHkUnSAO2v/KhPFA==\n\
                  -----END PUBLIC KEY-----\n";
        let error = rsa_public_key_from_pem(ec).expect_err("EC is refused");
        assert!(format!("{error:#}").contains("not an RSA key"), "{error:#}");
    }
}
