//! The `[async]` table: asynchronous calls (`POST /async-function/NAME`), their durable store,
//! bounds, result lifetime and the hosts callbacks may go to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::model::ConfigError;
use super::resolve::{absolute, check_timeout, to_usize};

/// Default path of the store of accepted asynchronous calls (beside the configuration file).
pub const DEFAULT_ASYNC_STORE: &str = "gloam-async.redb";
/// Default bound of asynchronous calls accepted and not yet ended.
pub const DEFAULT_ASYNC_QUEUE_BOUND: usize = 10_000;
/// Default time a result stays readable with `GET /calls/ID`.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(3600);
/// Default number of attempts to deliver a callback.
pub const DEFAULT_CALLBACK_ATTEMPTS: u32 = 5;
/// Default pause before the second attempt (doubling after each failure, at most 30 s).
pub const DEFAULT_CALLBACK_BACKOFF: Duration = Duration::from_millis(200);
/// Default time one callback attempt may take.
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The `[async]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAsync {
    store: Option<PathBuf>,
    queue_bound: Option<u64>,
    result_ttl_ms: Option<u64>,
    #[serde(default)]
    callback_hosts: Vec<String>,
    callback_attempts: Option<u32>,
    callback_backoff_ms: Option<u64>,
    callback_timeout_ms: Option<u64>,
}

/// The `[async]` table, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncConfig {
    /// The redb file holding accepted calls until they end, and their results (absolute).
    pub store: PathBuf,
    /// Most asynchronous calls accepted and not ended; beyond it `POST /async-function` is
    /// answered 503 `OVERLOADED`.
    pub queue_bound: usize,
    /// How long a result stays readable after the call ended.
    pub result_ttl: Duration,
    /// Hosts (`host` or `host:port`, lower case) a callback URL may name; empty: callbacks
    /// are refused.
    pub callback_hosts: Vec<String>,
    /// Attempts to deliver a callback (at least 1).
    pub callback_attempts: u32,
    /// Pause before the second attempt; it doubles after each failure (at most 30 s).
    pub callback_backoff: Duration,
    /// Time one attempt may take.
    pub callback_timeout: Duration,
}

fn key(k: &str) -> String {
    format!("async.{k}")
}

pub(super) fn resolve_async(
    raw: RawAsync,
    source: &Path,
    base: &Path,
) -> Result<AsyncConfig, ConfigError> {
    let store = match raw.store {
        None => base.join(DEFAULT_ASYNC_STORE),
        Some(p) if p.as_os_str().is_empty() => {
            return Err(ConfigError::at(source, key("store"), "is empty"))
        }
        Some(p) => absolute(base, &p),
    };
    let queue_bound = match raw.queue_bound {
        None => DEFAULT_ASYNC_QUEUE_BOUND,
        Some(0) => {
            return Err(ConfigError::at(
                source,
                key("queue_bound"),
                "must be at least 1",
            ))
        }
        Some(n) => to_usize(n),
    };
    let result_ttl = match raw.result_ttl_ms {
        None => DEFAULT_RESULT_TTL,
        Some(ms) => check_timeout(ms, source, || key("result_ttl_ms"))?,
    };
    let mut callback_hosts = Vec::new();
    for (i, h) in raw.callback_hosts.iter().enumerate() {
        let h = h.trim().to_ascii_lowercase();
        if h.is_empty() || h.contains(['/', '@', ' ', '?', '#']) {
            return Err(ConfigError::at(
                source,
                format!("{}[{i}]", key("callback_hosts")),
                format!("{h:?} is not a host or host:port"),
            ));
        }
        callback_hosts.push(h);
    }
    let callback_attempts = match raw.callback_attempts {
        None => DEFAULT_CALLBACK_ATTEMPTS,
        Some(0) => {
            return Err(ConfigError::at(
                source,
                key("callback_attempts"),
                "must be at least 1",
            ))
        }
        Some(n) => n,
    };
    let callback_backoff = match raw.callback_backoff_ms {
        None => DEFAULT_CALLBACK_BACKOFF,
        Some(ms) => check_timeout(ms, source, || key("callback_backoff_ms"))?,
    };
    let callback_timeout = match raw.callback_timeout_ms {
        None => DEFAULT_CALLBACK_TIMEOUT,
        Some(ms) => check_timeout(ms, source, || key("callback_timeout_ms"))?,
    };
    Ok(AsyncConfig {
        store,
        queue_bound,
        result_ttl,
        callback_hosts,
        callback_attempts,
        callback_backoff,
        callback_timeout,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::testing::{error, parse};

    #[test]
    fn defaults_and_values() {
        let c = parse("[functions.A]\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.async_calls.store,
            Path::new("/etc/gloam/gloam-async.redb")
        );
        assert_eq!(c.async_calls.queue_bound, DEFAULT_ASYNC_QUEUE_BOUND);
        assert!(c.async_calls.callback_hosts.is_empty());
        let c = parse(
            "[async]\nstore = \"s/a.redb\"\nqueue_bound = 5\nresult_ttl_ms = 1000\n\
             callback_hosts = [\"LocalHost:9000\"]\ncallback_attempts = 2\n[functions.A]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let a = &c.async_calls;
        assert_eq!(a.store, Path::new("/etc/gloam/s/a.redb"));
        assert_eq!((a.queue_bound, a.callback_attempts), (5, 2));
        assert_eq!(a.result_ttl, Duration::from_secs(1));
        assert_eq!(a.callback_hosts, ["localhost:9000"]);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, want) in [
            (
                "[async]\nqueue_bound = 0\n",
                "async.queue_bound: must be at least 1",
            ),
            (
                "[async]\ncallback_hosts = [\"http://x/\"]\n",
                "async.callback_hosts[0]: \"http://x/\" is not a host",
            ),
            (
                "[async]\ncallback_attempts = 0\n",
                "async.callback_attempts: must be at least 1",
            ),
            ("[async]\nnope = 1\n", "async.nope: unknown key"),
        ] {
            let e = error(&format!("{text}[functions.A]\n"));
            assert!(e.contains(want), "for {text:?}: {e}");
        }
    }
}
