//! Mailboxes: an address with an optional display name.
//!
//! Accepted forms are what people paste: `user@example.com`, `Name <user@example.com>`,
//! `"Last, First" <user@example.com>`. Addresses must be ASCII (no SMTPUTF8 yet), at most 254
//! characters, with a dot-atom local part and a domain of LDH labels or an address literal.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An e-mail address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    /// Parses `addr`, `Name <addr>` or `"Name" <addr>`; the message says what is wrong.
    pub fn parse(input: &str) -> Result<Mailbox, String> {
        if crate::validation::has_line_break(input) {
            return Err("must not contain line breaks".into());
        }
        let input = input.trim();
        if input.is_empty() {
            return Err("must not be empty".into());
        }
        let (name, address) = match (input.rfind('<'), input.ends_with('>')) {
            (Some(open), true) => {
                let name = unquote(input[..open].trim());
                let addr = input[open + 1..input.len() - 1].trim();
                (if name.is_empty() { None } else { Some(name) }, addr)
            }
            (None, false) => (None, input),
            _ => return Err("unbalanced angle brackets".into()),
        };
        validate_address(address)?;
        if let Some(name) = &name
            && name.chars().any(|c| c.is_control()) {
                return Err("display name must not contain control characters".into());
            }
        Ok(Mailbox { name, address: address.to_string() })
    }

    /// Builds a mailbox from separate parts, validating both.
    pub fn new(name: Option<&str>, address: &str) -> Result<Mailbox, String> {
        let mut mailbox = Mailbox::parse(address)?;
        if let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) {
            if name.chars().any(|c| c.is_control()) {
                return Err("display name must not contain control characters".into());
            }
            mailbox.name = Some(name.to_string());
        }
        Ok(mailbox)
    }

    /// The domain part of the address.
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => {
                let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
                write!(f, "\"{escaped}\" <{}>", self.address)
            }
            None => f.write_str(&self.address),
        }
    }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        s[1..s.len() - 1].replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        s.to_string()
    }
}

const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

/// Validates a bare addr-spec (`local@domain`).
pub fn validate_address(address: &str) -> Result<(), String> {
    if !address.is_ascii() {
        return Err("non-ASCII addresses are not supported".into());
    }
    if address.len() > 254 {
        return Err("address is longer than 254 characters".into());
    }
    let (local, domain) = address.rsplit_once('@').ok_or("address has no '@'")?;
    if local.is_empty() || local.len() > 64 {
        return Err("local part must be 1 to 64 characters".into());
    }
    let atom_ok = |part: &str| {
        !part.is_empty()
            && part.chars().all(|c| c.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(c))
    };
    let quoted_ok = local.len() >= 2
        && local.starts_with('"')
        && local.ends_with('"')
        && local[1..local.len() - 1].chars().all(|c| c != '"' && c != '\\' && !c.is_control());
    if !quoted_ok && !local.split('.').all(atom_ok) {
        return Err(format!("invalid local part '{local}'"));
    }
    validate_domain(domain)
}

fn validate_domain(domain: &str) -> Result<(), String> {
    if domain.starts_with('[') && domain.ends_with(']') {
        let literal = &domain[1..domain.len() - 1];
        let ip = literal.strip_prefix("IPv6:").unwrap_or(literal);
        return ip.parse::<std::net::IpAddr>().map(|_| ()).map_err(|_| format!("invalid address literal '{domain}'"));
    }
    if domain.is_empty() || domain.len() > 253 {
        return Err("domain must be 1 to 253 characters".into());
    }
    for label in domain.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(format!("invalid domain '{domain}'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_named_and_quoted_mailboxes() {
        assert_eq!(Mailbox::parse("a@b.example").unwrap(), Mailbox { name: None, address: "a@b.example".into() });
        let m = Mailbox::parse("Jürgen Müller <j.m@example.com>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Jürgen Müller"));
        let m = Mailbox::parse("\"Last, First\" <lf@example.com>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Last, First"));
        assert_eq!(m.to_string(), "\"Last, First\" <lf@example.com>");
    }

    #[test]
    fn rejects_header_injection_and_bad_addresses() {
        for bad in [
            "a@b.example\r\nBcc: evil@x.example",
            "a@b.example\n",
            "no-at-sign",
            "a@@b",
            "a..b@example.com",
            "a@-bad.example",
            "a@exa mple.com",
            "Name <a@b.example",
            "ü@example.com",
            "",
        ] {
            assert!(Mailbox::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn accepts_address_literals_and_plus_addresses() {
        assert!(Mailbox::parse("x+tag@[127.0.0.1]").is_ok());
        assert!(Mailbox::parse("x@[IPv6:::1]").is_ok());
        assert!(Mailbox::parse("first.last+tag@sub.example.co.uk").is_ok());
    }
}
