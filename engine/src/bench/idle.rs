//! `gloam bench idle`: CPU used by an engine and its workers while nothing calls them, and the
//! engine's peak resident memory.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::http::{engine_status, server_pids};
use super::procstat;

/// What an idle period measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdleResult {
    /// The engine's pid.
    pub engine_pid: u32,
    /// Processes counted (engine, its descendants, the workers listed by its status).
    pub processes: usize,
    /// Logical workers the engine lists.
    pub workers: usize,
    /// Seconds watched.
    pub secs: f64,
    /// CPU seconds used by all of them over the period.
    pub cpu_s: f64,
    /// CPU seconds per wall second (0.01 = 1 % of one core).
    pub cores: f64,
    /// The engine's peak resident set size so far (`VmHWM`), KiB.
    pub engine_peak_rss_kib: u64,
}

/// Watches `engine_pid` (and what it runs) for `period`; `addr` is its gateway.
pub fn run(addr: &str, engine_pid: u32, period: Duration) -> Result<IdleResult> {
    let pids = server_pids(addr, &[engine_pid]);
    let workers = engine_status(addr).map_or(0, |s| s.workers.len());
    let t0 = Instant::now();
    let before = procstat::cpu_ticks(&pids);
    std::thread::sleep(period);
    let after = procstat::cpu_ticks(&pids);
    let secs = t0.elapsed().as_secs_f64();
    let cpu_s = procstat::cpu_seconds_between(&before, &after);
    Ok(IdleResult {
        engine_pid,
        processes: pids.len(),
        workers,
        secs,
        cpu_s,
        cores: cpu_s / secs,
        engine_peak_rss_kib: procstat::peak_rss_kib(engine_pid)?,
    })
}
