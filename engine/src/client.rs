//! A minimal blocking HTTP/1.1 client for tests, `gloam invoke` and latency measurement.
//!
//! One [`HttpClient`] holds at most one keep-alive connection and sends one request at a time.
//! It is deliberately small: no TLS, no redirects, no proxies.
//!
//! ```no_run
//! use gloam_engine::client::HttpClient;
//!
//! let mut client = HttpClient::new("127.0.0.1:8080")?;
//! let response = client.post("/function/Echo", b"hello")?;
//! assert_eq!(response.status, 200);
//! println!("{}", response.text());
//! # Ok::<(), std::io::Error>(())
//! ```

use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Longest accepted status line or header line, in bytes.
const MAX_LINE: u64 = 16 * 1024;
/// Most header lines accepted in one response.
const MAX_HEADERS: usize = 256;
/// Bodies up to this size are sent in the same write as the request head.
const COALESCE_BODY: usize = 64 * 1024;

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

/// A blocking HTTP/1.1 client with one keep-alive connection; see the [module docs](self).
#[derive(Debug)]
pub struct HttpClient {
    addrs: Vec<SocketAddr>,
    host: String,
    conn: Option<BufReader<TcpStream>>,
    read_timeout: Option<Duration>,
    connections: u64,
}

/// How an attempt on a connection failed.
enum Failure {
    /// Nothing of a response arrived and the connection was a reused one that the server may
    /// have closed meanwhile: safe to retry once on a fresh connection.
    Stale(io::Error),
    /// Anything else.
    Fatal(io::Error),
}

impl HttpClient {
    /// A client for `addr` (resolved now; the connection is opened by the first request).
    pub fn new(addr: impl ToSocketAddrs) -> io::Result<HttpClient> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let first = addrs.first().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            )
        })?;
        Ok(HttpClient {
            host: first.to_string(),
            addrs,
            conn: None,
            read_timeout: None,
            connections: 0,
        })
    }

    /// Sets how long a read (and a write) may block; `None` waits forever. Applies to the open
    /// connection and later ones. A timed-out request drops its connection.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a zero read timeout is not allowed; use None to wait forever",
            ));
        }
        self.read_timeout = timeout;
        if let Some(conn) = &self.conn {
            conn.get_ref().set_read_timeout(timeout)?;
            conn.get_ref().set_write_timeout(timeout)?;
        }
        Ok(())
    }

    /// How many TCP connections this client has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.connections
    }

    /// `POST path` with `body`.
    pub fn post(&mut self, path: &str, body: &[u8]) -> io::Result<Response> {
        self.request("POST", path, &[], body)
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], &[])
    }

    /// Sends one request and reads the whole response. `Host` and `Content-Length` are added
    /// (a `Host` in `headers` replaces the default; `Content-Length` and `Transfer-Encoding`
    /// in `headers` are rejected). A reused connection that fails before any response byte
    /// arrives is replaced and the request sent once more.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let head = self.head(method, path, headers, body.len())?;
        let head_only = method.eq_ignore_ascii_case("HEAD");
        let reused = self.conn.is_some();
        match self.attempt(&head, body, head_only, reused) {
            Ok(response) => Ok(response),
            Err(Failure::Stale(_)) => {
                self.conn = None;
                match self.attempt(&head, body, head_only, false) {
                    Ok(response) => Ok(response),
                    Err(Failure::Stale(e) | Failure::Fatal(e)) => Err(e),
                }
            }
            Err(Failure::Fatal(e)) => Err(e),
        }
    }

    fn head(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body_len: usize,
    ) -> io::Result<Vec<u8>> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(invalid(format!("invalid HTTP method {method:?}")));
        }
        if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20) {
            return Err(invalid(format!(
                "invalid request path {path:?}: must start with '/' and have no spaces"
            )));
        }
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        let mut has_host = false;
        for (name, value) in headers {
            if name.is_empty() || !name.bytes().all(is_token) {
                return Err(invalid(format!("invalid header name {name:?}")));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(invalid(format!(
                    "header {name} has a line break in its value"
                )));
            }
            if name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
            {
                return Err(invalid(format!(
                    "header {name} is set by the client from the body"
                )));
            }
            has_host |= name.eq_ignore_ascii_case("host");
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !has_host {
            head.push_str(&format!("Host: {}\r\n", self.host));
        }
        head.push_str(&format!("Content-Length: {body_len}\r\n\r\n"));
        Ok(head.into_bytes())
    }

    fn connect(&mut self) -> io::Result<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let stream = loop {
                match TcpStream::connect(&self.addrs[..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            stream.set_nodelay(true)?;
            stream.set_read_timeout(self.read_timeout)?;
            stream.set_write_timeout(self.read_timeout)?;
            self.connections += 1;
            self.conn = Some(BufReader::new(stream));
        }
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no connection"))
    }

    fn attempt(
        &mut self,
        head: &[u8],
        body: &[u8],
        head_only: bool,
        reused: bool,
    ) -> Result<Response, Failure> {
        let result = self.exchange(head, body, head_only);
        let failure = match result {
            Ok((response, keep)) => {
                if !keep {
                    self.conn = None;
                }
                return Ok(response);
            }
            Err((e, got_bytes)) => {
                self.conn = None;
                if reused && !got_bytes && is_disconnect(&e) {
                    Failure::Stale(e)
                } else {
                    Failure::Fatal(e)
                }
            }
        };
        Err(failure)
    }

    /// Writes the request and reads the response. On error, also says whether any response
    /// byte had arrived.
    fn exchange(
        &mut self,
        head: &[u8],
        body: &[u8],
        head_only: bool,
    ) -> Result<(Response, bool), (io::Error, bool)> {
        let conn = self.connect().map_err(|e| (e, false))?;
        if let Err(e) = write_request(conn.get_mut(), head, body) {
            // A server may answer early (e.g. 413 for a body over its limit) and close while
            // the body is still being written: read that answer if there is one.
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) {
                if let Ok(response) = read_response(conn, head_only) {
                    return Ok((response.0, false));
                }
            }
            return Err((e, false));
        }
        // Distinguish "closed before answering" from a broken response. `fill_buf` does not
        // retry a read a signal interrupted (the rest of the reading does).
        let mut filled = conn.fill_buf().map(|b| b.is_empty());
        while matches!(&filled, Err(e) if e.kind() == io::ErrorKind::Interrupted) {
            filled = conn.fill_buf().map(|b| b.is_empty());
        }
        match filled {
            Ok(true) => {
                return Err((
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection without a response",
                    ),
                    false,
                ))
            }
            Ok(false) => {}
            Err(e) => return Err((e, false)),
        }
        read_response(conn, head_only).map_err(|e| (e, true))
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn write_request(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> io::Result<()> {
    if body.len() <= COALESCE_BODY {
        let mut message = Vec::with_capacity(head.len() + body.len());
        message.extend_from_slice(head);
        message.extend_from_slice(body);
        stream.write_all(&message)?;
    } else {
        stream.write_all(head)?;
        stream.write_all(body)?;
    }
    stream.flush()
}

fn bad(message: impl Into<String>) -> io::Error {
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
fn read_response(reader: &mut impl BufRead, head_only: bool) -> io::Result<(Response, bool)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    /// A request as the test server saw it.
    #[derive(Debug)]
    struct Seen {
        connection: usize,
        head: String,
        body: Vec<u8>,
    }

    /// Serves `replies` in order, one per request. `close_after[i]` closes the connection
    /// after the i-th reply. Reports each request with the index of its connection.
    fn server(
        replies: Vec<Vec<u8>>,
        close_after: Vec<bool>,
    ) -> io::Result<(SocketAddr, mpsc::Receiver<Seen>, thread::JoinHandle<()>)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            let mut replies = replies.into_iter().zip(close_after).peekable();
            let mut connection = 0;
            while replies.peek().is_some() {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap_or_default();
                connection += 1;
                let mut reader = BufReader::new(stream);
                for (reply, close) in replies.by_ref() {
                    let Ok(head) = read_request_head(&mut reader) else {
                        return;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send(Seen {
                        connection,
                        head,
                        body,
                    });
                    if reader.get_mut().write_all(&reply).is_err() {
                        return;
                    }
                    if close {
                        break;
                    }
                }
            }
        });
        Ok((addr, rx, handle))
    }

    fn read_request_head(reader: &mut impl BufRead) -> io::Result<String> {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                return Ok(head);
            }
            head.push_str(&line);
        }
    }

    fn client(addr: SocketAddr) -> io::Result<HttpClient> {
        let mut client = HttpClient::new(addr)?;
        client.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(client)
    }

    #[test]
    fn content_length_body() -> anyhow::Result<()> {
        let reply =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
        let (addr, seen, server) = server(vec![reply.to_vec()], vec![false])?;
        let mut client = client(addr)?;
        let response = client.request(
            "POST",
            "/function/Echo",
            &[("X-Gloam-Timeout", "100")],
            b"input",
        )?;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("text/plain"));
        assert_eq!(response.header("CONTENT-LENGTH"), Some("5"));
        assert_eq!(response.header("missing"), None);
        assert_eq!(response.text(), "hello");

        let request = seen.recv_timeout(Duration::from_secs(10))?;
        assert!(request.head.starts_with("POST /function/Echo HTTP/1.1\r\n"));
        assert!(request.head.contains("\r\nX-Gloam-Timeout: 100\r\n"));
        assert!(request.head.contains(&format!("\r\nHost: {addr}\r\n")));
        assert!(request.head.contains("\r\nContent-Length: 5\r\n"));
        assert_eq!(request.body, b"input");
        drop(client);
        server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))?;
        Ok(())
    }

    #[test]
    fn chunked_body() -> anyhow::Result<()> {
        let reply = b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";
        let next = b"HTTP/1.1 204 No Content\r\n\r\n";
        let (addr, seen, server) = server(vec![reply.to_vec(), next.to_vec()], vec![false; 2])?;
        let mut client = client(addr)?;
        let response = client.get("/status")?;
        assert_eq!(response.status, 502);
        assert_eq!(response.text(), "hello, world");
        // The chunked body was consumed exactly: the next response parses on the same stream.
        let response = client.get("/status")?;
        assert_eq!(response.status, 204);
        assert!(response.body.is_empty());
        assert_eq!(client.connections_opened(), 1);
        let request = seen.recv_timeout(Duration::from_secs(10))?;
        assert!(request.head.starts_with("GET /status HTTP/1.1\r\n"));
        drop(client);
        server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))?;
        Ok(())
    }

    #[test]
    fn keep_alive_reuses_one_connection() -> anyhow::Result<()> {
        let replies = (0..3)
            .map(|i| format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{i}").into_bytes())
            .collect();
        let (addr, seen, server) = server(replies, vec![false; 3])?;
        let mut client = client(addr)?;
        for i in 0..3 {
            let response = client.post("/function/Echo", format!("call {i}").as_bytes())?;
            assert_eq!(response.text(), i.to_string());
        }
        assert_eq!(client.connections_opened(), 1);
        for i in 0..3 {
            let request = seen.recv_timeout(Duration::from_secs(10))?;
            assert_eq!(request.connection, 1);
            assert_eq!(request.body, format!("call {i}").as_bytes());
        }
        drop(client);
        server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))?;
        Ok(())
    }

    #[test]
    fn reconnects_when_the_server_closed_the_connection() -> anyhow::Result<()> {
        // The server closes after each reply without saying so: the client only finds out
        // when it reuses the connection.
        let replies = (0..3)
            .map(|i| format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{i}").into_bytes())
            .collect();
        let (addr, seen, server) = server(replies, vec![true; 3])?;
        let mut client = client(addr)?;
        for i in 0..3 {
            let response = client.post("/p", b"x")?;
            assert_eq!(response.text(), i.to_string());
        }
        assert_eq!(client.connections_opened(), 3);
        let connections: Vec<usize> = (0..3)
            .map(|_| {
                seen.recv_timeout(Duration::from_secs(10))
                    .map(|s| s.connection)
            })
            .collect::<Result<_, _>>()?;
        assert_eq!(connections, [1, 2, 3]);
        drop(client);
        server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))?;
        Ok(())
    }

    #[test]
    fn connection_close_drops_the_connection() -> anyhow::Result<()> {
        let replies = vec![
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb".to_vec(),
        ];
        let (addr, _seen, server) = server(replies, vec![true, false])?;
        let mut client = client(addr)?;
        assert_eq!(client.get("/")?.text(), "a");
        assert_eq!(client.get("/")?.text(), "b");
        assert_eq!(client.connections_opened(), 2);
        drop(client);
        server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))?;
        Ok(())
    }

    #[test]
    fn malformed_responses_and_requests_are_errors() -> anyhow::Result<()> {
        let (addr, _seen, server) = server(vec![b"SMTP ready\r\n\r\n".to_vec()], vec![true])?;
        let mut client = client(addr)?;
        let e = client
            .get("/")
            .err()
            .ok_or(anyhow::anyhow!("expected an error"))?;
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("not an HTTP/1.x status line"), "{e}");
        server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))?;

        let e = client.request("GET", "/a b", &[], b"").err();
        assert!(e.is_some_and(|e| e.kind() == io::ErrorKind::InvalidInput));
        let e = client.request("GET", "/", &[("X", "a\r\nB: c")], b"").err();
        assert!(e.is_some_and(|e| e.kind() == io::ErrorKind::InvalidInput));
        let e = client
            .request("GET", "/", &[("Content-Length", "3")], b"")
            .err();
        assert!(e.is_some_and(|e| e.kind() == io::ErrorKind::InvalidInput));
        Ok(())
    }

    #[test]
    fn truncated_body_is_an_error_not_a_retry() -> anyhow::Result<()> {
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec();
        let (addr, _seen, server) = server(vec![reply], vec![true])?;
        let mut client = client(addr)?;
        let e = client
            .get("/")
            .err()
            .ok_or(anyhow::anyhow!("expected an error"))?;
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("3 of 10 body bytes"), "{e}");
        assert_eq!(client.connections_opened(), 1);
        server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))?;
        Ok(())
    }
}
