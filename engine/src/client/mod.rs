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

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Bodies up to this size are sent in the same write as the request head.
const COALESCE_BODY: usize = 64 * 1024;

mod response;
#[cfg(test)]
mod tests;

pub use response::Response;
use response::{is_token, read_response};

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
