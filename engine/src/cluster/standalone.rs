//! The `gloam gateway` process: the HTTP front door for clients, the engine port engines
//! dial, until SIGINT or SIGTERM; then it stops taking requests, lets the calls it sent finish
//! (bounded) and closes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use super::gateway::{Cluster, GatewayOptions};
use super::DEFAULT_HEARTBEAT;
use crate::descriptors::{self, RESERVE_BASE};
use crate::gateway::server::{Gateway, Limits};

/// Environment variable holding the join token (engines and gateway).
pub const ENV_JOIN_TOKEN: &str = "GLOAM_JOIN_TOKEN";

/// How long HTTP connections get, after the drain, to write their last answers.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Arguments of `gloam gateway`.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// HTTP address for clients.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address engines dial (their `[engine] join` or `--join`).
    #[arg(long)]
    pub engines: SocketAddr,
    /// File holding the join token engines must present (default: $GLOAM_JOIN_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain: engines then join over TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Heartbeat interval in ms; an engine silent for three is lost.
    #[arg(long, default_value_t = DEFAULT_HEARTBEAT.as_millis() as u64)]
    pub heartbeat_ms: u64,
    /// Most HTTP connections at once (default: from the descriptor limit).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// How long a request head may take, ms.
    #[arg(long, default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// How long a connection may idle (and a body stall), ms.
    #[arg(long, default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// How long calls in flight may finish after SIGTERM, ms.
    #[arg(long, default_value_t = 30_000)]
    pub drain_timeout_ms: u64,
    /// Tokio I/O threads.
    #[arg(long, default_value_t = 2)]
    pub io_threads: usize,
}

/// The join token: `$GLOAM_JOIN_TOKEN`, else the contents of `file` (trailing newline
/// dropped). `None` when neither is set.
pub fn join_token(file: Option<&std::path::Path>) -> Result<Option<Vec<u8>>> {
    if let Ok(t) = std::env::var(ENV_JOIN_TOKEN) {
        if !t.is_empty() {
            return Ok(Some(t.into_bytes()));
        }
    }
    let Some(file) = file else { return Ok(None) };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the join token from {}", file.display()))?;
    let t = text.trim_end_matches(['\n', '\r']);
    if t.is_empty() {
        bail!("{}: the join token is empty", file.display());
    }
    Ok(Some(t.as_bytes().to_vec()))
}

/// Runs `gloam gateway`.
pub fn run(args: GatewayArgs) -> Result<()> {
    let Some(token) = join_token(args.token_file.as_deref())? else {
        bail!(
            "the gateway needs a join token for its engines: set {ENV_JOIN_TOKEN} or --token-file"
        );
    };
    if token.len() > super::wire::MAX_TOKEN {
        bail!(
            "the join token is longer than {} bytes",
            super::wire::MAX_TOKEN
        );
    }
    if !(1..=crate::config::MAX_IO_THREADS).contains(&args.io_threads) || args.heartbeat_ms == 0 {
        bail!("--io-threads must be 1..=64 and --heartbeat-ms at least 1");
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(super::tls::acceptor(c, k)?),
        _ => None,
    };
    let nofile = descriptors::raise_nofile_limit().context("reading RLIMIT_NOFILE")?;
    let cap = descriptors::connection_cap(args.max_connections, nofile.soft, RESERVE_BASE);
    let limits = Limits {
        max_connections: cap.max,
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms.max(1)),
        idle_timeout: Duration::from_millis(args.idle_timeout_ms.max(1)),
    };
    let opts = GatewayOptions {
        token,
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        tls,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.io_threads)
        .thread_name("gloam-gw")
        .enable_all()
        .build()
        .context("starting the I/O threads")?;
    runtime.block_on(serve(args, opts, limits))
}

async fn serve(args: GatewayArgs, opts: GatewayOptions, limits: Limits) -> Result<()> {
    let tls = opts.tls.is_some();
    let cluster = Cluster::new(opts);
    let engines = TcpListener::bind(args.engines)
        .await
        .with_context(|| format!("listening for engines on {}", args.engines))?;
    let engines_addr = engines.local_addr()?;
    let http = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = http.local_addr()?;
    let accept = tokio::spawn(cluster.clone().serve_engines(engines));
    let front = Gateway::start(cluster.clone(), http, limits);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    println!("gloam: engines {engines_addr}");
    println!("gloam: ready http://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, engines = %engines_addr, tls, max_connections = limits.max_connections, "gateway ready");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down: letting calls in flight finish");
    cluster.stop();
    front.drain();
    let limit = Duration::from_millis(args.drain_timeout_ms);
    let start = tokio::time::Instant::now();
    while cluster.outstanding() > 0 && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    front.close(CLOSE_GRACE).await;
    accept.abort();
    let _ = Arc::strong_count(&cluster);
    tracing::info!("stopped");
    Ok(())
}
