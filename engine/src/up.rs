//! `gloam up` / `gloam engine`: the engine, its embedded gateway and (for `up`) the launchers
//! of every function, until SIGINT or SIGTERM.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use gloam_core::ipc_root::IpcRoot;

use crate::cluster::join::{JoinSpec, Joiner};
use crate::config::Config;
use crate::console;
use crate::descriptors::{self, CapSource, NofileLimit};
use crate::engine::Engine;
use crate::gateway::server::{Gateway, Limits, Listener};
use crate::launcher::{self, LaunchEvent, LaunchHooks, LaunchSpec, Launcher};
use crate::worker_link;

/// How long `up` waits for every function's first worker (or its failure to start) before
/// announcing readiness anyway.
const READY_WAIT: Duration = Duration::from_secs(60);

/// How `gloam up` runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpOptions {
    /// Start every function's worker processes (`up`); else the engine alone (`engine`).
    pub launch: bool,
    /// Do not echo worker output on the console (it still goes to the log files).
    pub quiet: bool,
    /// Rebuild and replace a function's workers when its sources change.
    pub watch: bool,
}
/// How long worker processes get to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long HTTP connections get, once the drain is over, to write their last responses.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Runs the engine for `config`; with `opts.launch`, starts every function's worker processes
/// too. Prints `gloam: ready http://ADDR` on stdout once calls can be served: every launched
/// function has a ready worker or has failed to start (then the console says why, and its
/// calls answer 503 `FUNCTION_UNAVAILABLE`).
///
/// First raises the soft descriptor limit (`RLIMIT_NOFILE`) to the hard limit: the gateway's
/// connection cap is derived from it (see [`crate::descriptors`]).
pub fn run(config: Config, opts: UpOptions) -> Result<()> {
    let nofile = descriptors::raise_nofile_limit().context("reading RLIMIT_NOFILE")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.engine.io_threads)
        .thread_name("gloam-io")
        .enable_all()
        .build()
        .context("starting the I/O threads")?;
    runtime.block_on(run_async(Arc::new(config), opts, nofile))
}

/// The gateway's limits for `config` under the descriptor limit `nofile`, logged.
fn gateway_limits(config: &Config, nofile: NofileLimit) -> Limits {
    if let Some(from) = nofile.raised_from {
        tracing::info!(
            from,
            to = nofile.soft,
            "raised the descriptor limit (RLIMIT_NOFILE)"
        );
    }
    let reserve = descriptors::reserve(config);
    let cap = descriptors::connection_cap(config.engine.max_connections, nofile.soft, reserve);
    match cap.source {
        CapSource::Lowered { configured } => tracing::warn!(
            configured,
            using = cap.max,
            nofile = nofile.soft,
            reserve,
            "engine.max_connections would leave the engine too few descriptors for its workers; lowered"
        ),
        CapSource::Derived | CapSource::Configured => tracing::info!(
            max_connections = cap.max,
            nofile = nofile.soft,
            reserve,
            "HTTP connection cap"
        ),
    }
    Limits {
        max_connections: cap.max,
        header_read_timeout: config.engine.header_read_timeout,
        idle_timeout: config.engine.idle_timeout,
    }
}

/// Hands every process end a launcher reports to the engine, and tells the console.
async fn report_ends(
    engine: Arc<Engine>,
    mut events: mpsc::UnboundedReceiver<LaunchEvent>,
    echoed: bool,
) {
    // The last failure to start told per function: the same again is one short line.
    let mut told: std::collections::HashMap<u16, String> = std::collections::HashMap::new();
    while let Some(LaunchEvent::Ended(exit)) = events.recv().await {
        let news = engine.process_ended(&exit);
        tracing::debug!(function = %exit.function, slot = exit.slot, "{}", exit.summary());
        let again = news.unavailable && told.get(&exit.function_id) == Some(&news.what);
        if again {
            if console::worth_repeating(news.restarts) {
                console::say(&[console::still_failing(&exit, &news)]);
            }
            continue;
        }
        if news.unavailable {
            told.insert(exit.function_id, news.what.clone());
        } else {
            told.remove(&exit.function_id);
        }
        console::say(&console::process_ended(&exit, &news, echoed));
    }
}

async fn run_async(config: Arc<Config>, opts: UpOptions, nofile: NofileLimit) -> Result<()> {
    let launch = opts.launch;
    let mut groups = None;
    if launch {
        // Refuse rather than run a function less isolated than its configuration says.
        let plan = launcher::Plan::find(&config);
        launcher::check_sandbox(&config, &plan)
            .and_then(|()| launcher::check_limits(&config, &plan))
            .map_err(anyhow::Error::msg)?;
        match &plan.place {
            Ok(place) => {
                tracing::info!(groups = %place.describe(), "limits are enforced by cgroups");
                groups = Some(
                    launcher::EngineGroups::create(place.clone())
                        .context("creating the engine's cgroups")?,
                );
            }
            Err(why) if !plan.needed.is_empty() => {
                tracing::info!("limits are rlimits: no usable cgroup ({why})");
            }
            Err(_) => {}
        }
        for f in config.functions.iter().filter(|f| f.command.is_some()) {
            tracing::info!(
                function = %f.name,
                isolation = f.isolation.mode.as_str(),
                limits = %f.isolation.limits.describe(),
                enforced_by = plan.mechanism(),
                "isolation"
            );
        }
    }
    let root = IpcRoot::create(&config.engine.ipc_root)
        .with_context(|| format!("preparing IPC root {}", config.engine.ipc_root.display()))?;
    let paths = root.paths().clone();
    let engine = Engine::new(config.clone(), paths.clone()).context("starting the engine")?;
    engine
        .open_async()
        .map_err(|r| anyhow::anyhow!("{}", r.message))
        .context("opening the store of asynchronous calls")?;

    let sock = UnixListener::bind(paths.socket())
        .with_context(|| format!("listening on {}", paths.socket().display()))?;
    std::fs::set_permissions(paths.socket(), std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", paths.socket().display()))?;
    tokio::spawn(worker_link::accept_workers(engine.clone(), sock));
    tokio::spawn(engine.clone().run_timer());
    tokio::spawn(engine.clone().run_housekeeping());

    let http = TcpListener::bind(config.engine.listen)
        .await
        .with_context(|| format!("listening on {}", config.engine.listen))?;
    let addr = http.local_addr()?;
    let mut listeners = vec![Listener {
        tcp: http,
        grpc_only: false,
    }];
    let mut grpc_addr = None;
    if let Some(at) = config.engine.grpc_listen {
        let grpc = TcpListener::bind(at)
            .await
            .with_context(|| format!("listening on {at} (engine.grpc_listen)"))?;
        grpc_addr = Some(grpc.local_addr()?);
        listeners.push(Listener {
            tcp: grpc,
            grpc_only: true,
        });
    }
    let tls = match &config.engine.tls {
        None => None,
        Some(t) => Some(crate::gateway::tls::acceptor(t).map_err(anyhow::Error::msg)?),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let gateway = Gateway::start_on(
        engine.clone(),
        listeners,
        gateway_limits(&config, nofile),
        tls,
    );

    let mut launched = Vec::new();
    if launch {
        let (events, ends) = mpsc::unbounded_channel();
        tokio::spawn(report_ends(engine.clone(), ends, !opts.quiet));
        let hooks = LaunchHooks {
            events: Some(events),
            echo: !opts.quiet,
        };
        for f in &config.functions {
            match LaunchSpec::from_config(f, &config) {
                Some(spec) => {
                    let cgroup = match &groups {
                        Some(g) => g
                            .function(&f.name, f.id, &f.isolation.limits)
                            .with_context(|| format!("creating the cgroup of {}", f.name))?,
                        None => None,
                    };
                    let spec = spec.with_cgroup(cgroup);
                    engine.add_launcher(f.id, Launcher::start_with(spec, hooks.clone()));
                    if f.min_workers > 0 {
                        launched.push(f.name.clone());
                    }
                }
                None => tracing::warn!(
                    function = %f.name,
                    "function has no `command`: start its workers yourself (GLOAM_FUNCTION={} GLOAM_IPC_ROOT={})",
                    f.name,
                    paths.root().display()
                ),
            }
        }
        tracing::info!(log_dir = %config.engine.log_dir.display(), "worker output goes to the log directory");
    }

    let joiner = match &config.engine.join {
        Some(gateway) => Some(start_joining(&engine, gateway)?),
        None => None,
    };

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let start = tokio::time::Instant::now();
    loop {
        // Launched functions neither ready nor known to fail.
        let failing: Vec<String> = engine
            .unavailable_functions()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let missing: Vec<String> = engine
            .functions_without_workers()
            .into_iter()
            .filter(|f| launched.contains(f) && !failing.contains(f))
            .collect();
        if missing.is_empty() {
            break;
        }
        if start.elapsed() > READY_WAIT {
            console::say(&[format!(
                "no ready worker yet after {} s for: {} (still starting; see their output above or in {})",
                READY_WAIT.as_secs(),
                missing.join(", "),
                config.engine.log_dir.display()
            )]);
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = term.recv() => return shutdown(&engine, gateway, joiner, root, groups).await,
            _ = int.recv() => return shutdown(&engine, gateway, joiner, root, groups).await,
        }
    }
    if let Some(grpc) = grpc_addr {
        println!("gloam: grpc {grpc}");
    }
    println!("gloam: ready {scheme}://{addr}");
    let _ = std::io::stdout().flush();
    let failing = engine.unavailable_functions();
    if !failing.is_empty() {
        let mut lines = vec![format!(
            "{} of {} functions cannot start; their calls answer 503 FUNCTION_UNAVAILABLE:",
            failing.len(),
            config.functions.len()
        )];
        lines.extend(failing.iter().map(|(_, why)| format!("  {why}")));
        console::say(&lines);
    }
    tracing::info!(%addr, ipc_root = %paths.root().display(), "engine ready");

    let stop_watching = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if opts.watch {
        crate::watch::spawn(
            engine.clone(),
            config.clone(),
            opts.quiet,
            stop_watching.clone(),
        )
        .context("starting the watcher")?;
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    stop_watching.store(true, std::sync::atomic::Ordering::Relaxed);
    shutdown(&engine, gateway, joiner, root, groups).await
}

/// Starts joining `gateway`: the token from `GLOAM_JOIN_TOKEN` or `engine.join_token`, the
/// node name from `engine.node_name`, `GLOAM_NODE_NAME`, `HOSTNAME` or `/etc/hostname`.
fn start_joining(engine: &Arc<Engine>, gateway: &str) -> Result<Joiner> {
    let e = &engine.config().engine;
    let token = crate::cluster::standalone::join_token(None)?
        .or_else(|| e.join_token.clone().map(String::into_bytes))
        .unwrap_or_default();
    if token.is_empty() {
        tracing::warn!("no join token (engine.join_token or GLOAM_JOIN_TOKEN): the gateway will refuse this engine");
    }
    let node = e
        .node_name
        .clone()
        .or_else(|| {
            std::env::var("GLOAM_NODE_NAME")
                .ok()
                .filter(|n| !n.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "engine".into());
    let node: String = node.chars().take(255).collect();
    tracing::info!(%gateway, %node, tls = e.join_ca.is_some(), "joining the gateway");
    let spec = JoinSpec {
        gateway: gateway.to_string(),
        token,
        node,
        ca: e.join_ca.clone(),
    };
    Joiner::start(engine.clone(), spec).context("joining the gateway")
}

/// Stops in order: no new connections, and requests on open ones answered 503 `SHUTDOWN`
/// (`Connection: close`); a joined engine tells its gateway, which sends it no more calls;
/// the calls in flight finish, for at most `drain_timeout`; then those still running end with
/// 503 `SHUTDOWN`, the gateway gets the last answers, connections close once their answers
/// are written, and the workers stop; then their cgroups are removed.
async fn shutdown(
    engine: &Arc<Engine>,
    gateway: Gateway,
    joiner: Option<Joiner>,
    root: IpcRoot,
    groups: Option<launcher::EngineGroups>,
) -> Result<()> {
    tracing::info!("shutting down: draining calls in flight");
    gateway.drain();
    if let Some(j) = &joiner {
        j.drain().await;
    }
    let cut = engine.drain(engine.config().engine.drain_timeout).await;
    if cut > 0 {
        tracing::warn!(
            calls = cut,
            "drain period over; calls still in flight ended with 503 SHUTDOWN"
        );
    }
    if let Some(j) = joiner {
        j.close(CLOSE_GRACE).await;
    }
    gateway.close(CLOSE_GRACE).await;
    // Stop every function's processes at once (SIGTERM, then SIGKILL after the grace).
    let stops: Vec<_> = engine
        .take_launchers()
        .into_iter()
        .map(|l| tokio::spawn(l.stop(STOP_GRACE)))
        .collect();
    for s in stops {
        let _ = s.await;
    }
    engine.stop_poller();
    // The workers are reaped: their cgroups go (and anything that escaped their process group).
    if let Some(g) = groups {
        let _ = tokio::task::spawn_blocking(move || drop(g)).await;
    }
    drop(root);
    tracing::info!("stopped");
    Ok(())
}
