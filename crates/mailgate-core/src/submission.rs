//! A mail as an application submits it, and the checks that turn it into a message ready to
//! spool: addresses parsed, header values free of line breaks, sizes within the limits, MIME
//! built (text + HTML → multipart/alternative, attachments), Message-ID fixed at acceptance.
//!
//! Raw RFC 5322 submissions go through [`prepare_raw`]: line endings normalised to CRLF,
//! `Bcc` removed from the stored copy, a Message-ID and Date added when missing.

use std::collections::BTreeMap;

use base64::Engine as _;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use serde::Deserialize;

use crate::model::AttachmentSummary;
use crate::validation::{ValidationErrors, has_line_break};
use crate::{Mailbox, Millis};

/// Limits enforced on every submission.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_attachments: usize,
    pub max_recipients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_bytes: 25 * 1024 * 1024, max_attachments: 100, max_recipients: 100 }
    }
}

/// An address as JSON may carry it: a string (`"Name <a@b>"`) or `{name, address}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum AddressInput {
    Text(String),
    Parts { name: Option<String>, address: String },
}

impl AddressInput {
    fn parse(&self) -> Result<Mailbox, String> {
        match self {
            AddressInput::Text(s) => Mailbox::parse(s),
            AddressInput::Parts { name, address } => Mailbox::new(name.as_deref(), address),
        }
    }
}

/// One address or a list of them.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

/// An attachment in a JSON submission.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentInput {
    pub filename: String,
    pub content_type: Option<String>,
    pub content_base64: String,
    /// When set, the part is inline (for `cid:` references in the HTML).
    pub content_id: Option<String>,
}

/// A mail submitted as JSON (`POST /api/v1/mails`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "account": "invoices",
    "to": ["Jane Doe <jane@example.com>"],
    "subject": "Invoice 2026-0042",
    "text": "Dear Jane,\n\nplease find the invoice attached.",
    "attachments": [{"filename": "invoice.pdf", "content_type": "application/pdf", "content_base64": "JVBERi0xLjQK"}]
}))]
pub struct MailSubmission {
    pub account: Option<String>,
    pub from: Option<AddressInput>,
    #[serde(default)]
    pub to: OneOrMany<AddressInput>,
    #[serde(default)]
    pub cc: OneOrMany<AddressInput>,
    #[serde(default)]
    pub bcc: OneOrMany<AddressInput>,
    #[serde(default)]
    pub reply_to: OneOrMany<AddressInput>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentInput>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// A message ready to be spooled.
#[derive(Debug, Clone)]
pub struct PreparedMail {
    /// Without angle brackets.
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub header_from: String,
    pub to_display: String,
    pub cc_display: String,
    pub subject: String,
    pub attachments: Vec<AttachmentSummary>,
    pub raw: Vec<u8>,
    /// What the list search looks in besides addresses and subject (see [`searchable_text`]).
    pub body_text: String,
}

/// Headers the caller may not set: mailgate writes them itself.
const RESERVED_HEADERS: &[&str] = &[
    "from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version",
    "content-type", "content-transfer-encoding", "sender", "return-path", "received",
];

fn parse_list(field: &str, inputs: &[AddressInput], errors: &mut ValidationErrors) -> Vec<Mailbox> {
    let mut out = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        match input.parse() {
            Ok(m) => out.push(m),
            Err(e) => errors.add(format!("{field}[{i}]"), e),
        }
    }
    out
}

fn address_list(list: &[Mailbox]) -> Address<'static> {
    Address::new_list(
        list.iter().map(|m| Address::new_address(m.name.clone(), m.address.clone())).collect(),
    )
}

fn display_list(list: &[Mailbox]) -> String {
    list.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
}

/// A Message-ID (without brackets) in the sender's domain.
pub fn new_message_id(domain: &str) -> String {
    let domain = if domain.is_empty() { "mailgate.invalid" } else { domain };
    format!("{}@{}", uuid::Uuid::new_v4().simple(), domain)
}

fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 76 && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

fn is_valid_content_type(ct: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(ct.split_once('/'), Some((t, s)) if token(t) && token(s))
}

/// Validates a JSON submission and builds its MIME message.
///
/// `default_from` is the account's send address, used when the submission names no `from`.
pub fn prepare_json(
    sub: &MailSubmission,
    default_from: Option<&Mailbox>,
    limits: &Limits,
    now: Millis,
) -> Result<PreparedMail, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let from = match &sub.from {
        Some(input) => match input.parse() {
            Ok(m) => Some(m),
            Err(e) => {
                errors.add("from", e);
                None
            }
        },
        None => {
            if default_from.is_none() {
                errors.add("from", "required: the account has no send address");
            }
            default_from.cloned()
        }
    };
    let to = parse_list("to", sub.to.as_slice(), &mut errors);
    let cc = parse_list("cc", sub.cc.as_slice(), &mut errors);
    let bcc = parse_list("bcc", sub.bcc.as_slice(), &mut errors);
    let reply_to = parse_list("reply_to", sub.reply_to.as_slice(), &mut errors);
    let recipient_count = to.len() + cc.len() + bcc.len();
    if sub.to.as_slice().is_empty() && sub.cc.as_slice().is_empty() && sub.bcc.as_slice().is_empty() {
        errors.add("to", "at least one recipient (to, cc or bcc) is required");
    }
    if recipient_count > limits.max_recipients {
        errors.add("to", format!("{recipient_count} recipients, over the limit of {}", limits.max_recipients));
    }
    let subject = sub.subject.clone().unwrap_or_default();
    if has_line_break(&subject) {
        errors.add("subject", "must not contain line breaks");
    }
    if subject.chars().count() > 998 {
        errors.add("subject", "longer than 998 characters");
    }
    for (name, value) in &sub.headers {
        let field = format!("headers.{name}");
        if !is_valid_header_name(name) {
            errors.add(field, "invalid header name (printable ASCII without ':', at most 76 characters)");
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            errors.add(field, "set by mailgate; use the dedicated field");
        } else if has_line_break(value) {
            errors.add(field, "must not contain line breaks");
        } else if value.len() > 998 {
            errors.add(field, "longer than 998 characters");
        }
    }
    if sub.attachments.len() > limits.max_attachments {
        errors.add(
            "attachments",
            format!("{} attachments, over the limit of {}", sub.attachments.len(), limits.max_attachments),
        );
    }
    let mut total = sub.text.as_ref().map_or(0, String::len) + sub.html.as_ref().map_or(0, String::len);
    let mut decoded = Vec::with_capacity(sub.attachments.len());
    for (i, a) in sub.attachments.iter().enumerate() {
        let field = format!("attachments[{i}]");
        if a.filename.trim().is_empty() || has_line_break(&a.filename) || a.filename.len() > 255 {
            errors.add(format!("{field}.filename"), "must be 1 to 255 characters without line breaks");
        }
        let ct = a.content_type.as_deref().unwrap_or("application/octet-stream");
        if !is_valid_content_type(ct) {
            errors.add(format!("{field}.content_type"), "must look like type/subtype");
        }
        if let Some(cid) = &a.content_id
            && (cid.is_empty() || has_line_break(cid) || cid.contains(['<', '>', ' '])) {
                errors.add(format!("{field}.content_id"), "must be a bare id without spaces or brackets");
            }
        // Estimate before decoding so a huge body fails fast without a copy.
        if total + a.content_base64.len() / 4 * 3 > limits.max_message_bytes + 4 {
            total += a.content_base64.len() / 4 * 3;
            continue;
        }
        let cleaned: String = a.content_base64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        match base64::engine::general_purpose::STANDARD.decode(cleaned.as_bytes()) {
            Ok(bytes) => {
                total += bytes.len();
                decoded.push((a, ct.to_string(), bytes));
            }
            Err(e) => errors.add(format!("{field}.content_base64"), format!("not valid base64: {e}")),
        }
    }
    if total > limits.max_message_bytes {
        errors.add("", format!("message content is {total} bytes, over the limit of {}", limits.max_message_bytes));
    }
    let from = match (errors.is_empty(), from) {
        (true, Some(from)) => from,
        _ => return Err(errors),
    };

    let message_id = new_message_id(from.domain());
    let mut builder = MessageBuilder::new()
        .from(Address::new_address(from.name.clone(), from.address.clone()))
        .subject(Text::new(subject.clone()))
        .message_id(message_id.clone())
        .date(mail_builder::headers::date::Date::new(now / 1000));
    if !to.is_empty() {
        builder = builder.to(address_list(&to));
    }
    if !cc.is_empty() {
        builder = builder.cc(address_list(&cc));
    }
    if !reply_to.is_empty() {
        builder = builder.reply_to(address_list(&reply_to));
    }
    for (name, value) in &sub.headers {
        builder = if value.is_ascii() {
            builder.header(name.clone(), Raw::new(value.clone()))
        } else {
            builder.header(name.clone(), Text::new(value.clone()))
        };
    }
    match (&sub.text, &sub.html) {
        (None, None) => builder = builder.text_body(String::new()),
        (text, html) => {
            if let Some(text) = text {
                builder = builder.text_body(text.clone());
            }
            if let Some(html) = html {
                builder = builder.html_body(html.clone());
            }
        }
    }
    let mut attachments = Vec::with_capacity(decoded.len());
    for (input, ct, bytes) in decoded {
        attachments.push(AttachmentSummary { filename: input.filename.clone(), size: bytes.len() as u64 });
        builder = match &input.content_id {
            Some(cid) => builder.inline(ct, cid.clone(), bytes),
            None => builder.attachment(ct, input.filename.clone(), bytes),
        };
    }
    let raw = builder.write_to_vec().map_err(|e| ValidationErrors::single("", format!("could not build the message: {e}")))?;
    if raw.len() > limits.max_message_bytes {
        return Err(ValidationErrors::single(
            "",
            format!("message is {} bytes, over the limit of {}", raw.len(), limits.max_message_bytes),
        ));
    }
    let mut recipients: Vec<String> = Vec::with_capacity(recipient_count);
    for m in to.iter().chain(&cc).chain(&bcc) {
        if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&m.address)) {
            recipients.push(m.address.clone());
        }
    }
    Ok(PreparedMail {
        message_id,
        envelope_from: from.address.clone(),
        recipients,
        header_from: from.to_string(),
        to_display: display_list(&to),
        cc_display: display_list(&cc),
        subject,
        attachments,
        body_text: match (&sub.text, &sub.html) {
            (Some(text), _) => truncated(text),
            (None, Some(html)) => truncated(&mail_parser::decoders::html::html_to_text(html)),
            (None, None) => String::new(),
        },
        raw,
    })
}

/// Converts every line ending to CRLF.
fn normalise_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        if prev == b'\r' && b != b'\n' {
            out.push(b'\n');
        }
        out.push(b);
        prev = b;
    }
    if prev == b'\r' {
        out.push(b'\n');
    }
    out
}

/// Splits a CRLF message into its header block (ending in CRLF) and the rest.
fn split_header(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    if raw.starts_with(b"\r\n") {
        return Some((&raw[..0], &raw[2..]));
    }
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (&raw[..i + 2], &raw[i + 4..]))
}

/// Header block without the named fields (and their folded continuation lines).
fn strip_header_fields(header: &[u8], names: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    let mut skipping = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
            skipping = names.contains(&name.as_str());
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out
}

fn mailboxes(addr: Option<&mail_parser::Address<'_>>) -> Vec<Mailbox> {
    addr.map(|a| {
        a.iter()
            .filter_map(|x| x.address().map(|ad| Mailbox { name: x.name().map(str::to_string), address: ad.to_string() }))
            .collect()
    })
    .unwrap_or_default()
}

/// Validates a raw RFC 5322 message and prepares it for the spool.
///
/// Recipients come from `envelope_to` when given, else from To, Cc and Bcc. The sender is the
/// first From address, or `default_from` when the message has none (a From header is added).
pub fn prepare_raw(
    raw: &[u8],
    default_from: Option<&Mailbox>,
    envelope_to: Option<&[String]>,
    limits: &Limits,
    now: Millis,
) -> Result<PreparedMail, ValidationErrors> {
    if raw.len() > limits.max_message_bytes {
        return Err(ValidationErrors::single(
            "",
            format!("message is {} bytes, over the limit of {}", raw.len(), limits.max_message_bytes),
        ));
    }
    let normalised = normalise_crlf(raw);
    let Some((header, body)) = split_header(&normalised) else {
        return Err(ValidationErrors::single("", "no blank line separates the header from the body"));
    };
    if header.is_empty() {
        return Err(ValidationErrors::single("", "the message has no header"));
    }
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(&normalised[..]) else {
        return Err(ValidationErrors::single("", "the header could not be parsed"));
    };
    let mut errors = ValidationErrors::new();
    let header_from = mailboxes(parsed.from()).into_iter().next();
    let from = match (&header_from, default_from) {
        (Some(f), _) => Some(f.clone()),
        (None, Some(d)) => Some(d.clone()),
        (None, None) => {
            errors.add("from", "the message has no From header and the account no send address");
            None
        }
    };
    if let Some(f) = &from
        && let Err(e) = crate::address::validate_address(&f.address) {
            errors.add("from", e);
        }
    let to = mailboxes(parsed.to());
    let cc = mailboxes(parsed.cc());
    let mut recipients: Vec<String> = Vec::new();
    let candidates: Vec<String> = match envelope_to {
        Some(list) => list.to_vec(),
        None => to.iter().chain(&cc).chain(&mailboxes(parsed.bcc())).map(|m| m.address.clone()).collect(),
    };
    for (i, r) in candidates.iter().enumerate() {
        match Mailbox::parse(r) {
            Ok(m) if !recipients.iter().any(|x| x.eq_ignore_ascii_case(&m.address)) => recipients.push(m.address),
            Ok(_) => {}
            Err(e) => errors.add(format!("to[{i}]"), e),
        }
    }
    if recipients.is_empty() {
        errors.add("to", "the message names no recipient");
    }
    if recipients.len() > limits.max_recipients {
        errors.add("to", format!("{} recipients, over the limit of {}", recipients.len(), limits.max_recipients));
    }
    let from = match (errors.is_empty(), from) {
        (true, Some(f)) => f,
        _ => return Err(errors),
    };
    let subject = parsed.subject().unwrap_or_default().to_string();
    let existing_id = parsed.message_id().map(str::to_string);
    let has_date = parsed.date().is_some() || parsed.header_raw("Date").is_some();

    let mut out = Vec::with_capacity(normalised.len() + 200);
    let message_id = existing_id.unwrap_or_else(|| {
        let id = new_message_id(from.domain());
        out.extend_from_slice(format!("Message-ID: <{id}>\r\n").as_bytes());
        id
    });
    if !has_date {
        let date = mail_builder::headers::date::Date::new(now / 1000).to_rfc822();
        out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    if header_from.is_none() {
        // A non-ASCII display name would need RFC 2047 encoding: use the bare address then.
        let shown = if from.name.as_deref().is_some_and(|n| !n.is_ascii()) { from.address.clone() } else { from.to_string() };
        out.extend_from_slice(format!("From: {shown}\r\n").as_bytes());
    }
    out.extend_from_slice(&strip_header_fields(header, &["bcc"]));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(PreparedMail {
        message_id,
        envelope_from: from.address.clone(),
        recipients,
        header_from: from.to_string(),
        to_display: display_list(&to),
        cc_display: display_list(&cc),
        subject,
        attachments: Vec::new(),
        body_text: searchable_text(&out),
        raw: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(json: serde_json::Value) -> MailSubmission {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn builds_alternative_with_attachment_and_hides_bcc() {
        let s = sub(serde_json::json!({
            "from": "Sender Name <s@example.com>",
            "to": ["a@example.com", {"name": "Bé", "address": "b@example.com"}],
            "bcc": "hidden@example.com",
            "subject": "Grüße",
            "text": "plain",
            "html": "<p>html</p>",
            "attachments": [{"filename": "a.bin", "content_base64": "AAEC"}],
            "headers": {"X-App": "42"}
        }));
        let p = prepare_json(&s, None, &Limits::default(), 1_700_000_000_000).unwrap();
        let raw = String::from_utf8(p.raw.clone()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        let header_end = raw.find("\r\n\r\n").expect("a header block");
        assert!(raw[..header_end].contains("X-App: 42\r\n"), "custom header inside the header block: {raw}");
        assert!(raw[..header_end].contains("MIME-Version: 1.0"), "{raw}");
        assert!(!raw.to_ascii_lowercase().contains("hidden@example.com"));
        assert_eq!(p.recipients, vec!["a@example.com", "b@example.com", "hidden@example.com"]);
        assert_eq!(p.attachments[0].size, 3);
        assert!(p.message_id.ends_with("@example.com"));
        assert_eq!(p.body_text, "plain", "the text body is what search looks in");
        let html_only = sub(serde_json::json!({"from": "s@example.com", "to": "a@example.com", "html": "<p>Order <b>4711</b></p>"}));
        let p = prepare_json(&html_only, None, &Limits::default(), 0).unwrap();
        assert!(p.body_text.contains("Order 4711") || p.body_text.contains("Order\n4711"), "{:?}", p.body_text);
        assert!(!p.body_text.contains('<'), "{:?}", p.body_text);
    }

    #[test]
    fn rejects_header_injection_everywhere() {
        let s = sub(serde_json::json!({
            "from": "s@example.com", "to": "a@example.com\r\nBcc: x@example.com",
            "subject": "hi\r\nBcc: x@example.com", "headers": {"X-A": "v\nBcc: y@example.com", "To": "z@example.com"}
        }));
        let e = prepare_json(&s, None, &Limits::default(), 0).unwrap_err();
        let fields: Vec<_> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"to[0]") && fields.contains(&"subject"), "{fields:?}");
        assert!(fields.contains(&"headers.X-A") && fields.contains(&"headers.To"), "{fields:?}");
    }

    #[test]
    fn enforces_size_and_count_limits() {
        let limits = Limits { max_message_bytes: 1000, max_attachments: 1, max_recipients: 2 };
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 5000]);
        let s = sub(serde_json::json!({
            "from": "s@example.com", "to": ["a@example.com", "b@example.com", "c@example.com"],
            "attachments": [{"filename": "x", "content_base64": big}, {"filename": "y", "content_base64": ""}]
        }));
        let e = prepare_json(&s, None, &limits, 0).unwrap_err();
        assert!(e.errors.len() >= 3, "{e}");
    }

    #[test]
    fn raw_submission_gets_crlf_message_id_and_loses_bcc() {
        let raw = b"From: a@example.com\nTo: b@example.com\nBcc: secret@example.com,\n  other@example.com\nSubject: t\n\nbody\n";
        let p = prepare_raw(raw, None, None, &Limits::default(), 0).unwrap();
        assert_eq!(p.body_text.trim_end(), "body");
        let text = String::from_utf8(p.raw).unwrap();
        assert!(text.starts_with("Message-ID: <"));
        assert!(!text.contains("secret@") && !text.contains("other@"), "{text}");
        assert!(text.contains("\r\n\r\nbody\r\n"));
        assert_eq!(p.recipients, vec!["b@example.com", "secret@example.com", "other@example.com"]);
    }

    #[test]
    fn raw_without_separator_is_refused() {
        assert!(prepare_raw(b"garbage without header", None, None, &Limits::default(), 0).is_err());
    }
}

/// The most of a body the list search keeps.
const SEARCHABLE_MAX: usize = 32 * 1024;

/// A message's first text body (an HTML-only body converted to text), at most 32 KiB, for the
/// spool's and inbox's search; empty when the message has none or does not parse.
pub fn searchable_text(raw: &[u8]) -> String {
    let Some(message) = mail_parser::MessageParser::default().parse(raw) else { return String::new() };
    message.body_text(0).map(|text| truncated(&text)).unwrap_or_default()
}

/// The first [`SEARCHABLE_MAX`] bytes of `text`, cut at a character boundary.
fn truncated(text: &str) -> String {
    let mut end = text.len().min(SEARCHABLE_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod searchable_tests {
    use super::searchable_text;

    #[test]
    fn text_is_decoded_html_converted_and_long_bodies_cut_at_a_character() {
        let qp = b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nInvoice f=C3=BCr Jane\r\n";
        assert!(searchable_text(qp).contains("Invoice f\u{fc}r Jane"));
        let html = b"Subject: x\r\nContent-Type: text/html\r\n\r\n<p>Order <b>4711</b> shipped</p>\r\n";
        let text = searchable_text(html);
        assert!(text.contains("4711") && !text.contains("<b>"), "{text}");
        let long = format!("Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n", "\u{e9}".repeat(40_000));
        let text = searchable_text(long.as_bytes());
        assert!(text.len() <= 32 * 1024 && text.chars().all(|c| c == '\u{e9}'), "{}", text.len());
        assert_eq!(searchable_text(b"\xff\xfe"), "");
    }
}
