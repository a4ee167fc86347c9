//! Parsing a retrieved message into the fields applications want, without ever refusing one:
//! a message that does not parse cleanly is still stored, with its problems listed.

use mail_parser::{Address, MessageParser, MimeHeaders as _, PartType};
use mailgate_core::Mailbox;
use serde::{Deserialize, Serialize};

/// A non-body part: attachment, inline image, attached message, report part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartInfo {
    /// Position in the attachment list (what `/attachments/{n}` takes).
    pub index: usize,
    pub filename: String,
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: u64,
    pub inline: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
}

/// The parsed view of a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParsedMessage {
    pub message_id: Option<String>,
    /// The Date header in milliseconds since the epoch.
    pub date: Option<i64>,
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<PartInfo>,
    /// What is wrong with the message; empty when it parsed cleanly.
    pub problems: Vec<String>,
}

fn mailboxes(addr: Option<&Address<'_>>) -> Vec<Mailbox> {
    addr.map(|a| {
        a.iter()
            .filter_map(|x| {
                x.address().map(|ad| Mailbox { name: x.name().map(str::to_string).filter(|n| !n.is_empty()), address: ad.to_string() })
            })
            .collect()
    })
    .unwrap_or_default()
}

fn extension_for(content_type: &str) -> &'static str {
    match content_type {
        "message/rfc822" => "eml",
        "message/delivery-status" | "message/global-delivery-status" => "txt",
        "text/rfc822-headers" => "txt",
        "text/plain" => "txt",
        "text/html" => "html",
        "text/calendar" => "ics",
        "application/pdf" => "pdf",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        _ => "bin",
    }
}

/// A file name safe on every system: no path separators or control characters.
fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') { '_' } else { c })
        .collect();
    let trimmed = cleaned.trim().trim_matches('.').to_string();
    trimmed.chars().take(200).collect()
}

fn part_content_type(part: &mail_parser::MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None if matches!(part.body, PartType::Message(_)) => "message/rfc822".into(),
        None => "text/plain".into(),
    }
}

fn part_filename(part: &mail_parser::MessagePart<'_>, content_type: &str, index: usize) -> String {
    if let Some(name) = part.attachment_name().map(sanitize).filter(|n| !n.is_empty()) {
        return name;
    }
    if let PartType::Message(inner) = &part.body {
        if let Some(subject) = inner.subject().map(sanitize).filter(|s| !s.is_empty()) {
            return format!("{subject}.eml");
        }
        return "forwarded-message.eml".into();
    }
    let stem = match content_type {
        "message/delivery-status" | "message/global-delivery-status" => "delivery-status".to_string(),
        "text/rfc822-headers" => "returned-headers".to_string(),
        _ => format!("part-{}", index + 1),
    };
    format!("{stem}.{}", extension_for(content_type))
}

/// The header block of a raw message (up to the first empty line).
fn header_block(raw: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < raw.len() {
        let end = raw[i..].iter().position(|&b| b == b'\n').map(|p| i + p + 1).unwrap_or(raw.len());
        let line = &raw[i..end];
        if line == b"\r\n" || line == b"\n" {
            return &raw[..i];
        }
        i = end;
    }
    raw
}

/// Structural problems mail-parser forgives silently.
fn header_problems(raw: &[u8], problems: &mut Vec<String>) {
    let header = header_block(raw);
    if std::str::from_utf8(header).is_err() {
        problems.push("the header contains 8-bit bytes that are not UTF-8 (not encoded as RFC 2047)".into());
    }
    for (n, line) in header.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        if !line.contains(&b':') {
            let shown: String = String::from_utf8_lossy(line).chars().take(60).collect();
            problems.push(format!("header line {} has no field name: '{shown}'", n + 1));
        }
    }
}

/// The non-body parts in document order. mail-parser also lists the alternatives of a
/// multipart/alternative it could not use as body (text/calendar in an invitation): those are
/// a form of the body, not attachments.
fn attachment_parts<'a>(message: &'a mail_parser::Message<'a>) -> Vec<&'a mail_parser::MessagePart<'a>> {
    let alternatives: Vec<u32> = message
        .parts
        .iter()
        .filter(|p| p.content_type().is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart") && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("alternative"))))
        .flat_map(|p| p.sub_parts().unwrap_or_default().iter().copied())
        .collect();
    message
        .attachments
        .iter()
        .filter(|id| !alternatives.contains(id))
        .filter_map(|id| message.parts.get(*id as usize))
        .collect()
}

/// Parses a raw message; never fails.
pub fn parse(raw: &[u8]) -> ParsedMessage {
    let mut problems = Vec::new();
    header_problems(raw, &mut problems);
    let Some(message) = MessageParser::default().parse(raw) else {
        problems.push("the message could not be parsed at all".into());
        return ParsedMessage { problems, ..Default::default() };
    };
    for part in &message.parts {
        if let Some(ct) = part.content_type()
            && ct.ctype().eq_ignore_ascii_case("multipart")
                && let Some(boundary) = ct.attribute("boundary") {
                    let marker = format!("--{boundary}");
                    if !raw.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                        problems.push(format!("the multipart boundary '{boundary}' never appears in the body"));
                    }
                }
    }
    let mut attachments = Vec::new();
    for (index, part) in attachment_parts(&message).into_iter().enumerate() {
        if part.is_encoding_problem {
            problems.push(format!("attachment {} could not be decoded (truncated or invalid transfer encoding)", index + 1));
        }
        let content_type = part_content_type(part);
        let inline = part.content_disposition().is_some_and(|d| d.is_inline())
            || (part.content_disposition().is_none() && part.content_id().is_some());
        attachments.push(PartInfo {
            index,
            filename: part_filename(part, &content_type, index),
            size: part.contents().len() as u64,
            content_type,
            inline,
            content_id: part.content_id().map(|c| c.trim_matches(['<', '>']).to_string()),
        });
    }
    for part in message.text_bodies().chain(message.html_bodies()) {
        if part.is_encoding_problem && !problems.iter().any(|p| p.starts_with("a body part")) {
            problems.push("a body part could not be decoded (invalid transfer encoding)".into());
        }
    }
    ParsedMessage {
        message_id: message.message_id().map(str::to_string),
        date: message.date().map(|d| d.to_timestamp() * 1000),
        from: mailboxes(message.from()).into_iter().next(),
        to: mailboxes(message.to()),
        cc: mailboxes(message.cc()),
        reply_to: mailboxes(message.reply_to()),
        subject: message.subject().map(str::to_string),
        // mail-parser renders an HTML-only body as text too; only a real text/plain part counts.
        text: message.text_part(0).filter(|p| !p.is_text_html()).and_then(|p| p.text_contents()).map(str::to_string),
        html: if message.html_body_count() > 0 && message.html_part(0).is_some_and(|p| p.is_text_html()) {
            message.body_html(0).map(|t| t.into_owned())
        } else {
            None
        },
        attachments,
        problems,
    }
}

/// The attachment at `index`: its file name, content type and decoded bytes.
pub fn attachment(raw: &[u8], index: usize) -> Option<(String, String, Vec<u8>)> {
    let message = MessageParser::default().parse(raw)?;
    let part = *attachment_parts(&message).get(index)?;
    let content_type = part_content_type(part);
    Some((part_filename(part, &content_type, index), content_type, part.contents().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unnamed_parts_and_flags_broken_ones() {
        let raw = b"From: a@example.com\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner one\r\nFrom: x@example.com\r\n\r\ninner\r\n--b--\r\n";
        let p = parse(raw);
        assert_eq!(p.text.as_deref().map(str::trim), Some("hello"));
        assert_eq!(p.attachments.len(), 1);
        assert_eq!(p.attachments[0].filename, "inner one.eml");
        assert_eq!(p.attachments[0].content_type, "message/rfc822");
        assert!(p.problems.is_empty(), "{:?}", p.problems);

        let broken = b"From: a@example.com\r\nthis is no header\r\nSubject: \xe4\xf6\r\n\r\nbody\r\n";
        let p = parse(broken);
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    }
}
