//! A snapshot of the engine for `GET /_/status` and `gloam status`.

use serde::{Deserialize, Serialize};

use crate::engine::Engine;

/// One function's view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionStatus {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: u16,
    /// Ready logical workers.
    pub workers: usize,
    /// Of which idle.
    pub idle: usize,
    /// Calls running.
    pub running: usize,
    /// Calls queued.
    pub queued: usize,
    /// Calls completed.
    pub completed: u64,
    /// Calls failed.
    pub failed: u64,
    /// λ: estimated arrival rate, calls/s.
    #[serde(default)]
    pub rate: f64,
    /// t: estimated running time, ms (0 until known).
    #[serde(default)]
    pub service_ms: f64,
    /// τ: calls allowed to run at once.
    #[serde(default)]
    pub tau: usize,
    /// Median call duration over the last minute, ms (upper bucket bound).
    #[serde(default)]
    pub p50_ms: Option<f64>,
    /// 99th percentile over the last minute, ms (upper bucket bound).
    #[serde(default)]
    pub p99_ms: Option<f64>,
    /// Workers leased to a frequent caller (direct lanes).
    #[serde(default)]
    pub leased: usize,
    /// Calls that ran on a direct lane (included in `completed`/`failed`).
    #[serde(default)]
    pub direct_calls: u64,
    /// Worker processes started again after they exited or could not be started.
    #[serde(default)]
    pub restarts: u64,
    /// How the last of them ended (`its worker process exited (exit code 1): ...`).
    #[serde(default)]
    pub last_exit: Option<String>,
    /// Why calls fail at once with `FUNCTION_UNAVAILABLE`, while that is so.
    #[serde(default)]
    pub unavailable: Option<String>,
    /// `process`, `sandbox`, or `sandbox, network` (its workers keep the host's network).
    #[serde(default)]
    pub isolation: String,
    /// The limits of each worker process and what enforces them: `memory 64 MiB, pids 32
    /// (cgroup v1)`, `memory 64 MiB (rlimit)`, or `none`.
    #[serde(default)]
    pub limits: String,
}

/// One worker's view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerStatus {
    /// Its id.
    pub id: u32,
    /// The function it serves.
    pub function: String,
    /// Its process.
    pub pid: u32,
    /// Its language runtime.
    pub language: String,
    /// Whether it runs a call now.
    pub busy: bool,
    /// The worker it is leased to (direct lane), if any.
    #[serde(default)]
    pub leased_to: Option<u32>,
}

/// The whole engine's view (or, from `gloam gateway`, the gateway's: its engines, and per
/// function the calls it sent).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// Functions, by id (from a gateway: by name, with the counts it has).
    pub functions: Vec<FunctionStatus>,
    /// Workers, by id (none from a gateway).
    pub workers: Vec<WorkerStatus>,
    /// Calls in flight.
    pub calls_in_flight: usize,
    /// Where worker output goes (`<function>.<slot>.stdout|stderr`), for `gloam logs`.
    #[serde(default)]
    pub log_dir: Option<std::path::PathBuf>,
    /// `engine` or `gateway`.
    #[serde(default = "engine_role")]
    pub role: String,
    /// From a gateway: the engines that joined it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engines: Vec<EngineStatus>,
}

fn engine_role() -> String {
    "engine".into()
}

/// One engine as the gateway sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineStatus {
    /// The id the gateway gave it.
    pub id: u32,
    /// Its node name.
    pub node: String,
    /// Its address as the gateway sees it.
    pub addr: String,
    /// `serving` or `draining`.
    pub state: String,
    /// Calls sent to it and not answered yet.
    pub outstanding: u32,
    /// Calls sent to it.
    pub calls: u64,
    /// Of which failed (error answers, or lost with it).
    pub failures: u64,
    /// Last heartbeat round trip, µs.
    pub rtt_us: f64,
    /// Seconds since it joined.
    pub joined_s: f64,
    /// Its functions.
    pub functions: Vec<EngineFunctionStatus>,
}

/// One function on one engine, as the gateway sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineFunctionStatus {
    /// Its name.
    pub name: String,
    /// Calls of it the engine holds at once.
    pub capacity: u32,
    /// Calls outstanding.
    pub outstanding: u32,
    /// Calls sent.
    pub calls: u64,
    /// Of which failed.
    pub failures: u64,
    /// Retried once elsewhere when its engine is lost.
    pub idempotent: bool,
}

/// Takes a snapshot.
pub fn snapshot(engine: &Engine) -> Status {
    engine.sync_direct_calls();
    let now = gloam_core::clock::now_ns();
    // Before the state's lock: the launchers have their own.
    let mechanisms = engine.limits_mechanisms();
    let st = engine.lock();
    let mut functions: Vec<FunctionStatus> = st
        .functions()
        .map(|f| {
            let recent = f.metrics.recent.last_minute(now);
            let ms = |q: f64| recent.quantile(q).map(|ns| ns as f64 / 1e6);
            FunctionStatus {
                name: f.config.name.clone(),
                id: f.config.id,
                workers: f.ready_workers,
                idle: f.idle.len(),
                running: f.running,
                queued: f.queued(),
                completed: f.completed,
                failed: f.failed,
                rate: f.limiter.rate(now),
                service_ms: f.limiter.service_ns().unwrap_or(0.0) / 1e6,
                tau: f.limiter.tau(now),
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
                leased: f.leased,
                direct_calls: f.direct_calls,
                restarts: f.restarts,
                last_exit: f.last_exit.clone(),
                unavailable: f.refuses_calls().then(|| f.unavailable.clone()).flatten(),
                isolation: isolation_text(&f.config.isolation),
                limits: limits_text(&f.config.isolation.limits, mechanisms.get(&f.config.id)),
            }
        })
        .collect();
    functions.sort_by_key(|f| f.id);
    let leases = st.lease_list();
    let mut workers: Vec<WorkerStatus> = st
        .workers()
        .map(|w| WorkerStatus {
            id: w.id.raw(),
            function: st
                .function(w.function_id)
                .map_or(String::new(), |f| f.config.name.clone()),
            pid: w.pid,
            language: w.language.clone(),
            busy: matches!(w.phase, crate::state::Phase::Busy { .. }),
            leased_to: match w.phase {
                crate::state::Phase::Leased { lease } => leases
                    .iter()
                    .find(|(id, _)| *id == lease)
                    .map(|(_, l)| l.holder.raw()),
                _ => None,
            },
        })
        .collect();
    workers.sort_by_key(|w| w.id);
    Status {
        functions,
        workers,
        calls_in_flight: st.calls_in_flight(),
        log_dir: Some(engine.config().engine.log_dir.clone()),
        role: engine_role(),
        engines: Vec::new(),
    }
}

/// `memory 64 MiB, pids 32 (cgroup v1)`: the limits and what enforces them (nothing is said
/// of a function without a launcher: its workers are started by hand, unlimited).
fn limits_text(limits: &crate::config::Limits, mechanism: Option<&&'static str>) -> String {
    match mechanism {
        Some(m) => format!("{} ({m})", limits.describe()),
        None => limits.describe(),
    }
}

fn isolation_text(iso: &crate::config::IsolationConfig) -> String {
    match (iso.mode, iso.network) {
        (crate::config::Isolation::Sandbox, true) => "sandbox, network".to_string(),
        (mode, _) => mode.as_str().to_string(),
    }
}

/// `gloam status`'s table: one line per function, then what is wrong with those whose
/// workers cannot start or crashed.
pub fn table(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>4} {:>7} {:>5} {:>6} {:>7} {:>6} {:>9} {:>6} {:>9} {:>8} {:>9} {:>7} {:>4} {:>9} {:>9}",
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
        "RESTARTS",
        "λ/s",
        "t ms",
        "τ",
        "p50 ms",
        "p99 ms"
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("≤{v}"));
    for f in &s.functions {
        let _ = writeln!(
            out,
            "{:<20} {:>4} {:>7} {:>5} {:>6} {:>7} {:>6} {:>9} {:>6} {:>9} {:>8} {:>9.1} {:>7.3} {:>4} {:>9} {:>9}",
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
            f.restarts,
            f.rate,
            f.service_ms,
            f.tau,
            ms(f.p50_ms),
            ms(f.p99_ms)
        );
    }
    let _ = writeln!(out, "calls in flight: {}", s.calls_in_flight);
    for f in &s.functions {
        let _ = writeln!(
            out,
            "{}: isolation {}, limits {}",
            f.name,
            if f.isolation.is_empty() {
                "-"
            } else {
                &f.isolation
            },
            if f.limits.is_empty() { "-" } else { &f.limits }
        );
    }
    for f in &s.functions {
        if let Some(why) = &f.unavailable {
            let _ = writeln!(
                out,
                "{} cannot start (calls answer 503 FUNCTION_UNAVAILABLE): {}",
                f.name,
                why.strip_prefix(&format!("function {} has no worker: ", f.name))
                    .unwrap_or(why)
            );
        } else if let (Some(last), true) = (&f.last_exit, f.restarts > 0) {
            let _ = writeln!(out, "{}: last exit: {last}", f.name);
        }
    }
    out
}

/// Copies what `/metrics` renders.
pub fn metrics_snapshot(engine: &Engine) -> crate::metrics::Snapshot {
    engine.sync_direct_calls();
    let now = gloam_core::clock::now_ns();
    let st = engine.lock();
    let mut functions: Vec<_> = st
        .functions()
        .map(|f| {
            let gauges = crate::metrics::FunctionGauges {
                workers: f.ready_workers,
                idle: f.idle.len(),
                retiring: f.retiring,
                requested: f
                    .pool
                    .capacity()
                    .saturating_sub(f.ready_workers.saturating_sub(f.retiring) + f.connecting),
                running: f.running,
                pipelined: f.pipelined,
                queued: f.queued(),
                rate: f.limiter.rate(now),
                service_s: f.limiter.service_ns().unwrap_or(0.0) / 1e9,
                tau: f.limiter.tau(now),
                leased: f.leased,
                direct_calls: f.direct_calls,
            };
            (f.config.name.clone(), f.metrics.clone(), gauges)
        })
        .collect();
    functions.sort_by(|a, b| a.0.cmp(&b.0));
    crate::metrics::Snapshot {
        functions,
        calls_in_flight: st.calls_in_flight(),
        state_locks: st.locks(),
        killed_workers: st.killed(),
        poller_spins: engine.poller().map(|p| p.spins()).unwrap_or_default(),
        payloads_held: engine.payloads().count(),
    }
}
