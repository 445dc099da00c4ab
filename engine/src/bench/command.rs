//! The `gloam bench` command line.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::http::{parse_url, LoadSpec, Pace};
use super::{http, idle, internal, report};

/// Arguments of `gloam bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub what: BenchCommand,
    /// The deployment file whose `engine.listen` names the engine (when no URL is given;
    /// else GLOAM_ADDR, ./gloam.toml, 127.0.0.1:8080).
    #[arg(long, global = true)]
    pub config: Option<std::path::PathBuf>,
}

/// The kinds of benchmark.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// HTTP load on a URL: open loop at a fixed rate (`--rate`) or closed loop (no `--rate`).
    Http(HttpArgs),
    /// Internal calls timed inside a `BenchInternal` handler, triggered by one HTTP call.
    Internal(InternalArgs),
    /// CPU of an idle engine and its workers, and the engine's peak RSS.
    Idle(IdleArgs),
}

/// Arguments of `gloam bench http`.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// The URL to POST to, e.g. http://127.0.0.1:8080/function/Nop, or a function's name
    /// (on the engine named by --config, GLOAM_ADDR or ./gloam.toml).
    pub url: String,
    /// Open loop: total requests per second, sent on schedule whatever the answers do; latency
    /// is measured from the scheduled time. Without it: closed loop, as fast as answers come.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 1)]
    pub connections: usize,
    /// Client threads the connections are spread over (default: as many as the machine has
    /// CPUs, at most one per connection).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Measured period (`5s`, `500ms`, or seconds).
    #[arg(long, short = 'd', default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured period before it.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The request body, as text.
    #[arg(long, conflicts_with = "size")]
    pub data: Option<String>,
    /// A request body of this many bytes.
    #[arg(long)]
    pub size: Option<usize>,
    /// Charge CPU time to the calls: this pid (repeatable), its descendants and, when the URL
    /// is a Gloam gateway, the workers its `GET /_/status` lists.
    #[arg(long = "engine-pid")]
    pub engine_pid: Vec<u32>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `gloam bench internal`.
#[derive(Debug, Args)]
pub struct InternalArgs {
    /// The language's handler: `rust` posts to `BenchInternal`, others to `<Lang>BenchInternal`
    /// (`CBenchInternal`, `GoBenchInternal`, `PyBenchInternal`, `NodeBenchInternal`).
    #[arg(long, default_value = "rust")]
    pub lang: String,
    /// The gateway (default: from --config, GLOAM_ADDR, ./gloam.toml, or 127.0.0.1:8080).
    #[arg(long)]
    pub url: Option<String>,
    /// Internal calls to make.
    #[arg(long, default_value_t = 10_000)]
    pub n: u64,
    /// The function called internally.
    #[arg(long, default_value = "Nop")]
    pub target: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `gloam bench idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// The engine's pid (`gloam up`'s).
    #[arg(long = "engine-pid")]
    pub engine_pid: u32,
    /// The gateway, for the worker list (default: as for `internal`).
    #[arg(long)]
    pub url: Option<String>,
    /// How long to watch.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Parses `5s`, `250ms`, `2.5` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 5s or 250ms"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{s:?}: must be a non-negative duration"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

fn print<T: serde::Serialize>(json: bool, value: &T, table: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        println!("{}", table());
    }
    Ok(())
}

/// The gateway's URL: `url` if given, else the engine found from `config` (see
/// [`crate::find`]).
fn gateway(url: Option<String>, config: Option<&std::path::Path>) -> Result<String> {
    match url {
        Some(u) => Ok(u),
        None => Ok(crate::find::find(None, config)?.url()),
    }
}

/// Runs `gloam bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let config = args.config.as_deref();
    match args.what {
        BenchCommand::Http(mut a) => {
            if !a.url.contains("://") {
                // A function's name.
                let base = gateway(None, config)?;
                a.url = format!("{base}/function/{}", a.url.trim_start_matches('/'));
            }
            let body = match (a.data, a.size) {
                (Some(d), _) => d.into_bytes(),
                (None, Some(n)) => vec![b'x'; n],
                (None, None) => Vec::new(),
            };
            let pace = match a.rate {
                Some(r) if r.is_finite() && r > 0.0 => Pace::Open(r),
                Some(r) => bail!("--rate {r}: must be a positive number"),
                None => Pace::Closed,
            };
            let spec = LoadSpec {
                target: parse_url(&a.url)?,
                pace,
                connections: a.connections,
                threads: a
                    .threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                duration: a.duration,
                warmup: a.warmup,
                body,
                cpu_pids: a.engine_pid,
            };
            let r = http::run(&spec).with_context(|| format!("benchmarking {}", a.url))?;
            print(a.json, &r, || report::load_table(&r))
        }
        BenchCommand::Internal(a) => {
            let url = gateway(a.url, config)?;
            let r = internal::run(&url, &a.lang, &a.target, a.n)?;
            print(a.json, &r, || report::internal_table(&r))
        }
        BenchCommand::Idle(a) => {
            let addr = parse_url(&gateway(a.url, config)?)?.addr;
            let r = idle::run(&addr, a.engine_pid, a.duration)?;
            print(a.json, &r, || report::idle_table(&r))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
