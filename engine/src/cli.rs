//! The `gloam` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::client::HttpClient;
use crate::config::Config;
use crate::status::Status;

/// Gloam: a function-as-a-service runtime with microsecond overheads.
#[derive(Debug, Parser)]
#[command(name = "gloam", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the engine, its HTTP gateway and every function's workers.
    Up(UpArgs),
    /// Start the engine and gateway only (workers are started elsewhere).
    Engine(UpArgs),
    /// Run the gateway alone, in front of the engines that join it (`gloam up --join`).
    Gateway(crate::cluster::standalone::GatewayArgs),
    /// Start and supervise the worker processes of a config's functions only.
    Launcher {
        /// The deployment file.
        config: PathBuf,
        /// Only this function.
        #[arg(long)]
        function: Option<String>,
    },
    /// Call a function over HTTP and print its output.
    Invoke {
        /// The function.
        name: String,
        /// The input, as text.
        #[arg(long, conflicts_with = "file")]
        data: Option<String>,
        /// The input, from a file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The gateway.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Deadline in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Call this many times over one keep-alive connection and report the latency
        /// distribution (p50/p99/p99.9/max) on stderr.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
    },
    /// Measure latency, throughput and CPU cost of a running stack.
    Bench(crate::bench::BenchArgs),
    /// Show functions, workers and calls of a running engine, or a gateway's engines.
    Status {
        /// The engine's HTTP address, or a `gloam gateway`'s.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `up` and `engine`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The deployment file (`gloam.toml`), or Nightcore's `func_config.json` with --nightcore.
    pub config: PathBuf,
    /// Read the file as Nightcore's func_config.json.
    #[arg(long)]
    pub nightcore: bool,
    /// Override the HTTP listen address.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Override the IPC root.
    #[arg(long)]
    pub ipc_root: Option<PathBuf>,
    /// Join the gateway at this address (`host:port` of its engine port), as
    /// `[engine] join` does.
    #[arg(long)]
    pub join: Option<String>,
}

fn load(args: &UpArgs) -> Result<Config> {
    let mut config = if args.nightcore {
        let (config, warnings) = Config::from_nightcore_json(&args.config)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        config
    } else {
        Config::load(&args.config)?
    };
    if let Some(listen) = args.listen {
        config.engine.listen = listen;
    }
    if let Some(join) = &args.join {
        config.engine.join = Some(crate::config::check_join(join, &args.config, || {
            "--join".to_string()
        })?);
    }
    if let Some(root) = &args.ipc_root {
        // Workers run in their own directories: hand them an absolute path.
        config.engine.ipc_root = std::path::absolute(root)
            .with_context(|| format!("resolving --ipc-root {}", root.display()))?;
    }
    Ok(config)
}

/// Runs the command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up(args) => crate::up::run(load(&args)?, true),
        Command::Engine(args) => crate::up::run(load(&args)?, false),
        Command::Gateway(args) => crate::cluster::standalone::run(args),
        Command::Launcher { config, function } => launcher_only(&config, function.as_deref()),
        Command::Invoke {
            name,
            data,
            file,
            addr,
            timeout_ms,
            repeat,
        } => {
            let input = match (data, file) {
                (Some(d), _) => d.into_bytes(),
                (None, Some(f)) => {
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?
                }
                (None, None) => Vec::new(),
            };
            let mut client = HttpClient::new(addr.as_str())?;
            let timeout = timeout_ms.map(|t| t.to_string());
            let headers: Vec<(&str, &str)> = timeout
                .as_deref()
                .map(|t| vec![("X-Gloam-Timeout", t)])
                .unwrap_or_default();
            let path = format!("/function/{name}");
            let mut times = Vec::with_capacity(repeat as usize);
            let mut r = client.request("POST", &path, &headers, &input)?;
            for _ in 1..repeat {
                let t0 = std::time::Instant::now();
                r = client.request("POST", &path, &headers, &input)?;
                times.push(t0.elapsed());
                if r.status != 200 {
                    break;
                }
            }
            if r.status != 200 {
                bail!("HTTP {}: {}", r.status, r.text());
            }
            use std::io::Write;
            std::io::stdout().write_all(&r.body)?;
            if !r.body.ends_with(b"\n") {
                println!();
            }
            if !times.is_empty() {
                eprintln!("{}", latency_line(&mut times));
            }
            Ok(())
        }
        Command::Bench(args) => crate::bench::run(args),
        Command::Status { addr, json } => {
            let mut client = HttpClient::new(addr.as_str())?;
            let r = client.get("/_/status")?;
            if r.status != 200 {
                bail!("HTTP {}: {}", r.status, r.text());
            }
            if json {
                println!("{}", r.text());
                return Ok(());
            }
            let status: Status = serde_json::from_slice(&r.body)?;
            print_status(&status);
            Ok(())
        }
    }
}

/// "N calls: p50 … µs, p99 … µs, p99.9 … µs, max … µs".
fn latency_line(times: &mut [Duration]) -> String {
    times.sort_unstable();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1e6
    };
    format!(
        "{} sequential calls: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        times.len(),
        at(0.50),
        at(0.99),
        at(0.999),
        at(1.0)
    )
}

fn print_status(s: &Status) {
    if s.role == "gateway" {
        println!(
            "{:<20} {:>11} {:>9} {:>6}",
            "FUNCTION", "OUTSTANDING", "COMPLETED", "FAILED"
        );
        for f in &s.functions {
            println!(
                "{:<20} {:>11} {:>9} {:>6}",
                f.name, f.running, f.completed, f.failed
            );
        }
        println!("calls in flight: {}", s.calls_in_flight);
        print_engines(s);
        return;
    }
    println!(
        "{:<20} {:>4} {:>7} {:>5} {:>6} {:>7} {:>6} {:>9} {:>6} {:>9} {:>9} {:>7} {:>4} {:>9} {:>9}",
        "FUNCTION",
        "ID",
        "WORKERS",
        "IDLE",
        "LEASED",
        "RUNNING",
        "QUEUED",
        "COMPLETED",
        "FAILED",
        "DIRECT",
        "λ/s",
        "t ms",
        "τ",
        "p50 ms",
        "p99 ms"
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("≤{v}"));
    for f in &s.functions {
        println!(
            "{:<20} {:>4} {:>7} {:>5} {:>6} {:>7} {:>6} {:>9} {:>6} {:>9} {:>9.1} {:>7.3} {:>4} {:>9} {:>9}",
            f.name,
            f.id,
            f.workers,
            f.idle,
            f.leased,
            f.running,
            f.queued,
            f.completed,
            f.failed,
            f.direct_calls,
            f.rate,
            f.service_ms,
            f.tau,
            ms(f.p50_ms),
            ms(f.p99_ms)
        );
    }
    println!("calls in flight: {}", s.calls_in_flight);
}

fn print_engines(s: &Status) {
    println!();
    println!(
        "{:<4} {:<24} {:<22} {:<9} {:>11} {:>9} {:>8} {:>9}  FUNCTIONS",
        "ID", "ENGINE", "ADDRESS", "STATE", "OUTSTANDING", "CALLS", "FAILED", "RTT us"
    );
    for e in &s.engines {
        let fns: Vec<String> = e
            .functions
            .iter()
            .map(|f| format!("{}({}/{})", f.name, f.outstanding, f.capacity))
            .collect();
        println!(
            "{:<4} {:<24} {:<22} {:<9} {:>11} {:>9} {:>8} {:>9.0}  {}",
            e.id,
            e.node,
            e.addr,
            e.state,
            e.outstanding,
            e.calls,
            e.failures,
            e.rtt_us,
            fns.join(" ")
        );
    }
    if s.engines.is_empty() {
        println!("no engine has joined");
    }
}

fn launcher_only(path: &std::path::Path, only: Option<&str>) -> Result<()> {
    let config = Config::load(path)?;
    if let Some(name) = only {
        if config.function(name).is_none() {
            bail!("{}: no function {name:?}", path.display());
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut launchers = Vec::new();
        for f in &config.functions {
            if only.is_some_and(|n| n != f.name) {
                continue;
            }
            if let Some(spec) = crate::launcher::LaunchSpec::from_config(f, &config.engine) {
                launchers.push(crate::launcher::Launcher::start(spec));
            }
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        for l in launchers {
            l.stop(Duration::from_secs(3)).await;
        }
        Ok(())
    })
}
