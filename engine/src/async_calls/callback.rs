//! Callbacks: a result POSTed to the URL given at submit (`X-Callback-Url`), only to hosts
//! the configuration allows (`async.callback_hosts`), with retries and exponential backoff.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use gloam_core::ErrorKind;

use crate::config::AsyncConfig;
use crate::state::Refusal;

fn callback_error(message: String) -> Refusal {
    Refusal::new(ErrorKind::InvalidArgument, message)
}

/// Longest pause between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Checks a callback URL at submit: `http://host[:port]/path` with `host` or `host:port` in
/// `allowed` (lower case). Returns the URL parsed.
pub fn check_url(url: &str, allowed: &[String]) -> Result<Uri, Refusal> {
    let bad = |why: String| callback_error(why);
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|_| bad(format!("X-Callback-Url {url:?} is not a URL")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(format!(
            "X-Callback-Url {url:?}: only http:// callbacks are supported"
        )));
    }
    let Some(auth) = uri.authority() else {
        return Err(bad(format!("X-Callback-Url {url:?} names no host")));
    };
    if auth.as_str().contains('@') {
        return Err(bad(format!(
            "X-Callback-Url {url:?}: credentials in the URL are not allowed"
        )));
    }
    let host = auth.host().to_ascii_lowercase();
    let port = auth.port_u16().unwrap_or(80);
    let with_port = format!("{host}:{port}");
    if !allowed.iter().any(|a| *a == host || *a == with_port) {
        return Err(bad(format!(
            "callback host {with_port} is not allowed (async.callback_hosts: {})",
            if allowed.is_empty() {
                "empty, so no callback is allowed".to_string()
            } else {
                allowed.join(", ")
            }
        )));
    }
    Ok(uri)
}

/// What a callback carries.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The call's id (`X-Call-Id`).
    pub call_id: String,
    /// The HTTP status `GET /calls/ID` answers (`X-Call-Status`).
    pub status: u16,
    /// The output, or the error JSON.
    pub body: Bytes,
}

/// Posts callbacks.
#[derive(Debug, Clone)]
pub struct Poster {
    client: Client<HttpConnector, Full<Bytes>>,
    attempts: u32,
    backoff: Duration,
    timeout: Duration,
}

impl Poster {
    /// A poster with the configured attempts, backoff and timeout.
    pub fn new(config: &AsyncConfig) -> Poster {
        Poster {
            client: Client::builder(TokioExecutor::new()).build_http(),
            attempts: config.callback_attempts,
            backoff: config.callback_backoff,
            timeout: config.callback_timeout,
        }
    }

    /// Delivers `d` to `url`: up to the configured attempts, pausing `backoff`, doubling, in
    /// between; a 2xx answer is a delivery. Calls `retried` before each retry. Returns whether
    /// it was delivered.
    pub async fn deliver(&self, url: &Uri, d: &Delivery, mut retried: impl FnMut()) -> bool {
        let mut pause = self.backoff;
        for attempt in 1..=self.attempts {
            match self.attempt(url, d).await {
                Ok(()) => return true,
                Err(why) => {
                    tracing::debug!(call = %d.call_id, %url, attempt, "callback failed: {why}");
                }
            }
            if attempt < self.attempts {
                retried();
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BACKOFF_MAX);
            }
        }
        tracing::warn!(call = %d.call_id, %url, attempts = self.attempts, "callback given up");
        false
    }

    async fn attempt(&self, url: &Uri, d: &Delivery) -> Result<(), String> {
        let mut req = hyper::Request::post(url.clone())
            .header("x-call-id", d.call_id.as_str())
            .header("x-call-status", d.status)
            .body(Full::new(d.body.clone()))
            .map_err(|e| e.to_string())?;
        if d.status != 200 {
            req.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(r)) if r.status().is_success() => Ok(()),
            Ok(Ok(r)) => Err(format!("answered {}", r.status())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_hosts_and_plain_http() {
        let allowed = vec!["localhost".to_string(), "127.0.0.1:9000".to_string()];
        assert!(check_url("http://localhost:1234/cb", &allowed).is_ok());
        assert!(check_url("http://LOCALHOST/cb", &allowed).is_ok());
        assert!(check_url("http://127.0.0.1:9000/", &allowed).is_ok());
        for bad in [
            "http://127.0.0.1:9001/",
            "http://169.254.169.254/latest",
            "https://localhost/cb",
            "http://user@localhost/cb",
            "localhost/cb",
            "not a url",
        ] {
            assert!(check_url(bad, &allowed).is_err(), "{bad}");
        }
        let e = check_url("http://x/", &[]).err().map(|e| e.message);
        assert!(e.unwrap_or_default().contains("no callback is allowed"));
    }
}
