//! SMTP replies (RFC 5321 §4.2), read with limits so a hostile server cannot make us buffer
//! without end.

use std::fmt;

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _};

/// The longest reply line we accept (RFC 5321 allows 512; servers are generous).
const MAX_LINE: usize = 8 * 1024;
/// The most lines one reply may have.
const MAX_LINES: usize = 200;

/// A complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
    /// All text lines joined with spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
    /// The enhanced status code (`5.7.3`), when the server sent one.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?.split_whitespace().next()?;
        let mut parts = first.split('.');
        let ok = parts.next().is_some_and(|c| matches!(c, "2" | "4" | "5"))
            && parts.next().is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && parts.next().is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && parts.next().is_none();
        ok.then_some(first)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed by the server")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed reply: {0}")]
    Malformed(String),
}

/// Reads one line (without CRLF) of at most [`MAX_LINE`] bytes.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<String, ReadError> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Err(ReadError::Closed);
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        if line.len() + chunk.len() > MAX_LINE {
            return Err(ReadError::Malformed(format!("a reply line is longer than {MAX_LINE} bytes")));
        }
        line.extend_from_slice(chunk);
        let used = chunk.len();
        reader.consume(used);
        if done {
            break;
        }
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Reads a complete (possibly multi-line) reply.
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, ReadError> {
    let mut lines = Vec::new();
    let mut code = None;
    loop {
        let line = read_line(reader).await?;
        let bytes = line.as_bytes();
        if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
            let shown: String = line.chars().take(80).collect();
            return Err(ReadError::Malformed(format!("expected a reply code, got '{shown}'")));
        }
        let this: u16 = line[..3].parse().map_err(|_| ReadError::Malformed("bad reply code".into()))?;
        if !(200..600).contains(&this) {
            return Err(ReadError::Malformed(format!("reply code {this} is out of range")));
        }
        if *code.get_or_insert(this) != this {
            return Err(ReadError::Malformed("reply lines carry different codes".into()));
        }
        let sep = bytes.get(3).copied();
        lines.push(line.get(4..).unwrap_or("").to_string());
        match sep {
            None | Some(b' ') => break,
            Some(b'-') => {}
            Some(_) => return Err(ReadError::Malformed("invalid separator after the reply code".into())),
        }
        if lines.len() >= MAX_LINES {
            return Err(ReadError::Malformed(format!("reply has more than {MAX_LINES} lines")));
        }
    }
    Ok(Reply { code: code.unwrap_or(0), lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(input: &[u8]) -> Result<Reply, ReadError> {
        let mut r = tokio::io::BufReader::new(input);
        read_reply(&mut r).await
    }

    #[tokio::test]
    async fn reads_multiline_and_enhanced_codes() {
        let r = parse(b"250-mail.example\r\n250-PIPELINING\r\n250 AUTH PLAIN XOAUTH2\r\n").await.unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines.len(), 3);
        let r = parse(b"535 5.7.3 Authentication unsuccessful\r\n").await.unwrap();
        assert_eq!(r.enhanced(), Some("5.7.3"));
        assert!(r.is_permanent());
    }

    #[tokio::test]
    async fn refuses_garbage_and_endless_lines() {
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\n").await, Err(ReadError::Malformed(_))));
        assert!(matches!(parse(b"250-a\r\n251 b\r\n").await, Err(ReadError::Malformed(_))));
        assert!(matches!(parse(b"").await, Err(ReadError::Closed)));
        let long = vec![b'2'; 20_000];
        assert!(matches!(parse(&long).await, Err(ReadError::Malformed(_))));
    }
}
