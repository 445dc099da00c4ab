//! gRPC clients for the tests: grpcurl (installed by `ci/install-grpcurl.sh`), and a raw
//! HTTP/2 client that sends exactly the bytes and headers a case needs (bad frames too).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The example's `.proto` directory.
pub fn proto_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/grpc")
}

/// grpcurl: `$GRPCURL`, else `target/tools/bin/grpcurl` as `ci/install-grpcurl.sh` leaves it.
pub fn grpcurl_bin() -> PathBuf {
    if let Ok(p) = std::env::var("GRPCURL") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/bin/grpcurl");
    assert!(
        p.exists(),
        "{} is missing: run ci/install-grpcurl.sh (ci/test.sh does)",
        p.display()
    );
    p
}

/// What grpcurl printed and whether it succeeded.
#[derive(Debug)]
pub struct GrpcurlRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Calls `method` (`demo.RustGreeter/SayHello`) at `addr` with the JSON `data`, plus `extra`
/// arguments (e.g. `-max-time`), through the example's `.proto`.
pub fn grpcurl(addr: &str, method: &str, data: &str, extra: &[&str]) -> GrpcurlRun {
    grpcurl_with(&["-plaintext"], addr, method, data, extra)
}

/// [`grpcurl`] with `transport` arguments instead of `-plaintext` (e.g. `-cacert FILE`).
pub fn grpcurl_with(
    transport: &[&str],
    addr: &str,
    method: &str,
    data: &str,
    extra: &[&str],
) -> GrpcurlRun {
    let out = Command::new(grpcurl_bin())
        .args(transport)
        .arg("-import-path")
        .arg(proto_dir())
        .args(["-proto", "greeter.proto", "-d", data])
        .args(extra)
        .arg(addr)
        .arg(method)
        .output()
        .expect("run grpcurl");
    GrpcurlRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `HelloRequest` as protoc encodes it.
pub fn hello_request(name: &str, sleep_ms: u32) -> Vec<u8> {
    let mut out = Vec::new();
    if !name.is_empty() {
        out.push(0x0a);
        let mut n = name.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(name.as_bytes());
    }
    if sleep_ms > 0 {
        out.push(0x10);
        let mut n = sleep_ms;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    out
}

/// `msg` with the 5-byte gRPC prefix (not compressed).
pub fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// A gRPC answer as the raw client saw it.
#[derive(Debug)]
pub struct Answer {
    pub http: u16,
    /// `grpc-status`, from the trailers (or the headers of a trailers-only answer).
    pub status: Option<u32>,
    pub message: String,
    pub body: Vec<u8>,
}

/// POSTs `body` to `path` over prior-knowledge HTTP/2 with `headers` (content-type
/// `application/grpc` unless given), within 20 s.
pub fn raw_call(addr: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), raw(addr, path, headers, body))
            .await
            .expect("the gRPC answer within 20 s")
    })
}

async fn raw(addr: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::post(format!("http://{addr}{path}")).header("te", "trailers");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/grpc");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = send.send_request(req).await.expect("response");
    let http = resp.status().as_u16();
    let head = resp.headers().clone();
    let collected = resp.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let get = |k: &str| {
        trailers
            .get(k)
            .or_else(|| head.get(k))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Answer {
        http,
        status: get("grpc-status").and_then(|s| s.parse().ok()),
        message: get("grpc-message").unwrap_or_default(),
        body: collected.to_bytes().to_vec(),
    }
}

/// `text` as it reads in a `grpc-message` (percent-encoded).
pub fn percent(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
