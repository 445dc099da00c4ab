//! `gloam bench internal`: one HTTP call to a `BenchInternal` handler, which makes N internal
//! calls to a target function (default `Nop`) and answers with the latency distribution it
//! measured inside the handler.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::histogram::LatencySummary;
use super::http::parse_url;
use crate::client::HttpClient;

/// What a `BenchInternal` handler answers (every language's handler uses this JSON shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InternalResult {
    /// The language of the handler (`rust`, `c`, `go`, `python`, `node`).
    #[serde(default)]
    pub lang: String,
    /// The function called (`BenchInternal`, `GoBenchInternal`, ...).
    #[serde(default)]
    pub function: String,
    /// The function it called internally.
    pub target: String,
    /// The distribution of the measured calls (`count` of them), inside the handler.
    #[serde(flatten)]
    pub latency: LatencySummary,
    /// Internal calls per second over the measured calls.
    pub per_s: f64,
}

/// The benchmark function of a language: `BenchInternal` for Rust, `<Lang>BenchInternal`
/// otherwise (`CBenchInternal`, `GoBenchInternal`, `PyBenchInternal`, `NodeBenchInternal`).
pub fn function_for(lang: &str) -> Result<&'static str> {
    Ok(match lang.to_ascii_lowercase().as_str() {
        "rust" | "rs" => "BenchInternal",
        "c" | "cpp" | "c++" => "CBenchInternal",
        "go" => "GoBenchInternal",
        "python" | "py" => "PyBenchInternal",
        "node" | "js" | "nodejs" => "NodeBenchInternal",
        other => bail!("unknown language {other:?} (rust, c, go, python, node)"),
    })
}

/// The handler's input: `N`, or `Target:N` when the target is not `Nop`.
pub fn input_for(target: &str, n: u64) -> String {
    if target == "Nop" {
        n.to_string()
    } else {
        format!("{target}:{n}")
    }
}

/// Calls `<url>/function/<lang's BenchInternal>` once and parses its answer.
pub fn run(url: &str, lang: &str, target: &str, n: u64) -> Result<InternalResult> {
    let base = parse_url(url)?;
    let function = function_for(lang)?;
    let mut client =
        HttpClient::new(base.addr.as_str()).with_context(|| format!("resolving {}", base.addr))?;
    client.set_read_timeout(Some(Duration::from_secs(300)))?;
    let path = format!("/function/{function}");
    let timeout = "300000";
    let r = client
        .request(
            "POST",
            &path,
            &[("X-Gloam-Timeout", timeout)],
            input_for(target, n).as_bytes(),
        )
        .with_context(|| format!("POST {path}"))?;
    if r.status != 200 {
        bail!("POST {path}: HTTP {}: {}", r.status, r.text());
    }
    let mut result: InternalResult = serde_json::from_slice(&r.body).with_context(|| {
        format!(
            "{function} answered something else than its JSON: {}",
            r.text()
        )
    })?;
    result.lang = lang.to_ascii_lowercase();
    result.function = function.to_string();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_inputs() {
        assert_eq!(function_for("rust").expect("known"), "BenchInternal");
        assert_eq!(function_for("Python").expect("known"), "PyBenchInternal");
        assert!(function_for("cobol").is_err());
        assert_eq!(input_for("Nop", 10), "10");
        assert_eq!(input_for("Echo", 10), "Echo:10");
    }

    #[test]
    fn parses_handler_json() {
        let j = r#"{"target":"Nop","count":3,"p50_us":1.5,"p90_us":2,"p99_us":3,"p999_us":3,
                    "max_us":3,"mean_us":2,"per_s":500000}"#;
        let r: InternalResult = serde_json::from_str(j).expect("parses");
        assert_eq!(r.latency.count, 3);
        assert_eq!(r.latency.p50_us, 1.5);
        assert_eq!(r.per_s, 500000.0);
    }
}
