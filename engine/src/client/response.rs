//! An HTTP/1.1 response as [`super::HttpClient`] reads it: status line, headers (bounded),
//! a body by `Content-Length`, chunks or the end of the connection.

use std::borrow::Cow;
use std::io::{self, BufRead, Read};

/// Longest accepted status line or header line, in bytes.
const MAX_LINE: u64 = 16 * 1024;
/// Most header lines accepted in one response.
const MAX_HEADERS: usize = 256;

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// Header fields in the order received (names as sent by the server).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced with U+FFFD).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

pub(super) fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Reads one CRLF- (or LF-) terminated line without the terminator.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed in the middle of a response",
        ));
    }
    if line.last() != Some(&b'\n') {
        if n as u64 >= MAX_LINE {
            return Err(bad(format!(
                "a response line is longer than {MAX_LINE} bytes"
            )));
        }
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed in the middle of a response line",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("a response line is not valid UTF-8"))
}

/// Parses `HTTP/1.x NNN reason`; returns the status and whether the version is 1.0.
fn parse_status_line(line: &str) -> io::Result<(u16, bool)> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(bad(format!("not an HTTP/1.x status line: {line:?}"))),
    };
    let code = parts.next().unwrap_or_default();
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|s| code.len() == 3 && (100..=999).contains(s))
        .ok_or_else(|| bad(format!("invalid status code in {line:?}")))?;
    Ok((status, http10))
}

fn read_headers(reader: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() >= MAX_HEADERS {
            return Err(bad(format!("more than {MAX_HEADERS} response headers")));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("malformed header line {line:?}")))?;
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(bad(format!("malformed header name in {line:?}")));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
}

/// Whether a comma-separated header (e.g. `Connection`) has `token`.
fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Reads a response; the flag says whether the connection may be reused.
pub(super) fn read_response(
    reader: &mut impl BufRead,
    head_only: bool,
) -> io::Result<(Response, bool)> {
    let (status, http10, headers) = loop {
        let (status, http10) = parse_status_line(&read_line(reader)?)?;
        let headers = read_headers(reader)?;
        // Interim responses (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        break (status, http10, headers);
    };
    let mut keep = if http10 {
        has_token(&headers, "connection", "keep-alive")
    } else {
        !has_token(&headers, "connection", "close")
    };

    let no_body = head_only || (100..200).contains(&status) || status == 204 || status == 304;
    let transfer_encoding = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
    let body = if no_body {
        Vec::new()
    } else if transfer_encoding {
        if !has_token(&headers, "transfer-encoding", "chunked") {
            return Err(bad("unsupported Transfer-Encoding (only chunked is)"));
        }
        read_chunked(reader)?
    } else if let Some(length) = content_length(&headers)? {
        read_exact_body(reader, length)?
    } else {
        // Delimited by the end of the connection.
        keep = false;
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        body
    };
    Ok((
        Response {
            status,
            headers,
            body,
        },
        keep,
    ))
}

fn content_length(headers: &[(String, String)]) -> io::Result<Option<u64>> {
    let mut length = None;
    for (_, value) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        let n = value
            .parse::<u64>()
            .map_err(|_| bad(format!("invalid Content-Length {value:?}")))?;
        if length.is_some_and(|l| l != n) {
            return Err(bad("conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    Ok(length)
}

fn read_exact_body(reader: &mut impl BufRead, length: u64) -> io::Result<Vec<u8>> {
    // Grow as bytes arrive rather than trusting the header with a huge allocation.
    let mut body = Vec::with_capacity(usize::try_from(length.min(1 << 20)).unwrap_or(0));
    reader.by_ref().take(length).read_to_end(&mut body)?;
    if (body.len() as u64) < length {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the connection closed after {} of {length} body bytes",
                body.len()
            ),
        ));
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| bad(format!("invalid chunk size line {line:?}")))?;
        if size == 0 {
            // Trailer fields, up to an empty line; ignored.
            read_headers(reader)?;
            return Ok(body);
        }
        body.extend_from_slice(&read_exact_body(reader, size)?);
        if !read_line(reader)?.is_empty() {
            return Err(bad("a chunk is longer than its size line says"));
        }
    }
}

/// Whether `b` may appear in a header name (an RFC 9110 token).
pub(super) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
