//! The operations behind the API (and the admin UI): input types, validation, and the rules
//! that must hold whichever interface is used.

pub mod accounts;
pub mod api_keys;
pub mod expiry;
pub mod mails;
pub mod oauth_clients;
pub mod settings;

use mailgate_core::ValidationErrors;

/// Checks a name used to refer to a record: 1–100 characters, no control characters.
pub(crate) fn check_name(field: &str, name: &str, errors: &mut ValidationErrors) {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 100 {
        errors.add(field, "must be 1 to 100 characters");
    } else if trimmed.chars().any(char::is_control) {
        errors.add(field, "must not contain control characters");
    }
}

/// Checks a host name or IP address.
pub(crate) fn check_host(field: &str, host: &str, errors: &mut ValidationErrors) {
    let ok = !host.is_empty()
        && host.len() <= 253
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host.split('.').all(|l| {
                !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }));
    if !ok {
        errors.add(field, "must be a host name or an IP address");
    }
}
