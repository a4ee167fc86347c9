//! What an admin wants to know about a server's certificate.

use x509_parser::prelude::{FromDer as _, X509Certificate};

/// Subject, issuer and expiry of a DER certificate, and the days left.
pub fn describe(der: &[u8]) -> Option<(String, i64)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let days = (not_after - now) / 86_400;
    let expires = time::OffsetDateTime::from_unix_timestamp(not_after).ok()?.date();
    Some((format!("certificate {} issued by {}, valid until {expires} ({days} days)", cert.subject(), cert.issuer()), days))
}
