//! The `gloam` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::find::Target;
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
    /// Build (each function's `build`), then start the engine, its HTTP gateway and every
    /// function's workers; worker output is echoed as `<function>.<slot> | <line>`.
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
        #[command(flatten)]
        target: TargetArgs,
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
    /// Show functions, workers and calls of a running engine (restarts and why a function
    /// cannot start included), or the engines of a `gloam gateway` (--addr GATEWAY).
    Status {
        #[command(flatten)]
        target: TargetArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a function's worker output (stdout and stderr of every process, from its log
    /// files); `-f` follows it.
    Logs(crate::logs::LogsArgs),
    /// Check a deployment file: keys, paths, commands, handlers' programs; says what it found.
    Validate {
        /// The deployment file (default: ./gloam.toml).
        #[arg(default_value = "gloam.toml")]
        config: PathBuf,
        /// Read it as Nightcore's func_config.json.
        #[arg(long)]
        nightcore: bool,
        /// With --nightcore: the function library serving a function (`NAME=PATH.so`).
        #[arg(long = "so", value_name = "NAME=PATH")]
        libraries: Vec<String>,
        /// Check it as `gloam up --isolation` would run it (every function sandboxed, or every
        /// function a plain process).
        #[arg(long, value_name = "process|sandbox")]
        isolation: Option<crate::config::Isolation>,
    },
    /// Run the `build` commands of a deployment file (what `gloam up` runs before starting).
    Build {
        /// The deployment file (default: ./gloam.toml).
        #[arg(default_value = "gloam.toml")]
        config: PathBuf,
    },
    /// Create a function project: handler, build file, gloam.toml and a test.
    New(crate::scaffold::NewArgs),
}

/// Which engine a client command talks to (see [`crate::find`]).
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The gateway (`HOST:PORT`); default: from --config, GLOAM_ADDR, ./gloam.toml, or
    /// 127.0.0.1:8080.
    #[arg(long)]
    pub addr: Option<String>,
    /// The deployment file whose `engine.listen` to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl TargetArgs {
    /// The engine these arguments name.
    pub fn find(&self) -> Result<Target> {
        crate::find::find(self.addr.as_deref(), self.config.as_deref())
    }
}

/// Arguments of `up` and `engine`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The deployment file (`gloam.toml`, the default), or Nightcore's `func_config.json` with
    /// --nightcore.
    #[arg(default_value = "gloam.toml")]
    pub config: PathBuf,
    /// Read the file as Nightcore's func_config.json. Functions are served by `gloam-cworker`
    /// with the library named by --so, else `lib<name in lower case>.so` beside the file.
    #[arg(long)]
    pub nightcore: bool,
    /// With --nightcore: the function library serving a function (`NAME=PATH.so`, repeatable).
    #[arg(long = "so", value_name = "NAME=PATH")]
    pub libraries: Vec<String>,
    /// Override the HTTP listen address.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Override the IPC root.
    #[arg(long)]
    pub ipc_root: Option<PathBuf>,
    /// Do not echo worker output on the console (it still goes to the log directory).
    #[arg(long, short)]
    pub quiet: bool,
    /// Watch each function's sources (its `watch` paths, default its `dir`): on a change,
    /// rebuild and replace its workers; calls in flight finish on the old ones.
    #[arg(long)]
    pub watch: bool,
    /// Do not run the `build` commands before starting.
    #[arg(long)]
    pub no_build: bool,
    /// Join the gateway at this address (`host:port` of its engine port), as
    /// `[engine] join` does.
    #[arg(long)]
    pub join: Option<String>,
    /// Run every function's workers this way (`sandbox`: each under bubblewrap, whatever the
    /// file says; `process` is refused when the file sandboxes a function).
    #[arg(long, value_name = "process|sandbox")]
    pub isolation: Option<crate::config::Isolation>,
}

fn load(args: &UpArgs) -> Result<Config> {
    let mut config = if args.nightcore {
        let (mut config, warnings) = Config::from_nightcore_json(&args.config)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        let notes = crate::config::serve_nightcore_libraries(
            &mut config,
            &args.libraries,
            crate::config::cworker_path().as_deref(),
        )?;
        crate::console::say(&notes);
        config
    } else {
        if !args.libraries.is_empty() {
            bail!("--so names the libraries of a Nightcore func_config.json: add --nightcore");
        }
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
    if let Some(mode) = args.isolation {
        config
            .override_isolation(mode, "--isolation")
            .map_err(anyhow::Error::msg)?;
        crate::console::say(&[format!(
            "--isolation {}: every function's workers run {} ({} functions)",
            mode.as_str(),
            match mode {
                crate::config::Isolation::Sandbox => "sandboxed",
                crate::config::Isolation::Process => "as plain processes",
            },
            config.functions.len()
        )]);
    }
    if let Some(root) = &args.ipc_root {
        // Workers run in their own directories: hand them an absolute path.
        config.engine.ipc_root = std::path::absolute(root)
            .with_context(|| format!("resolving --ipc-root {}", root.display()))?;
    }
    Ok(config)
}

fn up(args: &UpArgs, launch: bool) -> Result<()> {
    let config = load(args)?;
    if launch && !args.no_build {
        crate::builds::run_all(&config, args.quiet)?;
    }
    crate::up::run(
        config,
        crate::up::UpOptions {
            launch,
            quiet: args.quiet,
            watch: args.watch && launch,
        },
    )
}

/// Runs the command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up(args) => up(&args, true),
        Command::Engine(args) => up(&args, false),
        Command::Gateway(args) => crate::cluster::standalone::run(args),
        Command::Launcher { config, function } => launcher_only(&config, function.as_deref()),
        Command::Invoke {
            name,
            data,
            file,
            target,
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
            let target = target.find()?;
            let mut client = target.client()?;
            let timeout = timeout_ms.map(|t| t.to_string());
            let headers: Vec<(&str, &str)> = timeout
                .as_deref()
                .map(|t| vec![("X-Gloam-Timeout", t)])
                .unwrap_or_default();
            let path = format!("/function/{name}");
            let mut times = Vec::with_capacity(repeat as usize);
            let mut r = client
                .request("POST", &path, &headers, &input)
                .map_err(|e| target.unreachable(&e))?;
            for _ in 1..repeat {
                let t0 = std::time::Instant::now();
                r = client
                    .request("POST", &path, &headers, &input)
                    .map_err(|e| target.unreachable(&e))?;
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
        Command::Status { target, json } => {
            let target = target.find()?;
            let r = target.get("/_/status")?;
            if r.status != 200 {
                bail!("HTTP {}: {}", r.status, r.text());
            }
            if json {
                println!("{}", r.text());
                return Ok(());
            }
            let status: Status = serde_json::from_slice(&r.body)?;
            if status.role == "gateway" {
                print!("{}", crate::cluster::front::table(&status));
            } else {
                print!("{}", crate::status::table(&status));
            }
            Ok(())
        }
        Command::Logs(args) => crate::logs::run(&args),
        Command::Validate {
            config,
            nightcore,
            libraries,
            isolation,
        } => crate::validate::run(&config, nightcore, &libraries, isolation),
        Command::Build { config } => {
            let config = Config::load(&config)?;
            let ran = crate::builds::run_all(&config, false)?;
            if ran == 0 {
                crate::console::say(&[format!(
                    "{}: no function has a `build` command",
                    config.source.display()
                )]);
            }
            Ok(())
        }
        Command::New(args) => crate::scaffold::run(&args),
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
            if let Some(spec) = crate::launcher::LaunchSpec::from_config(f, &config) {
                let hooks = crate::launcher::LaunchHooks {
                    events: None,
                    echo: true,
                };
                launchers.push(crate::launcher::Launcher::start_with(spec, hooks));
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
