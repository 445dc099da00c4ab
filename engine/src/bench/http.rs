//! `gloam bench http`: an HTTP/1.1 keep-alive load generator, open loop (fixed rate) or closed
//! loop (each connection sends as soon as its previous answer arrived).
//!
//! `threads` OS threads, each running a single-threaded runtime with its share of the
//! connections (hyper's client, see [`super::conn`]); in open loop each connection has its
//! share of the [`Schedule`] and waits for its send times on a microsecond timer. Latency goes
//! into HDR histograms: from the *scheduled* send time in open loop (late sends count), and
//! from the actual send time in closed loop.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::conn::{get_blocking, Conn, PreciseTimer};
use super::histogram::{Histogram, LatencySummary};
use super::procstat;
use super::schedule::Schedule;
use crate::status::Status;

/// Where requests go: `host:port` and the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// The path, starting with `/`.
    pub path: String,
}

/// Parses `http://host:port/path` (the scheme is optional; the path defaults to `/`).
pub fn parse_url(url: &str) -> Result<Target> {
    if url.starts_with("https://") {
        bail!("{url}: https is not supported");
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if addr.is_empty() || !addr.contains(':') {
        bail!("{url}: expected http://HOST:PORT/PATH");
    }
    Ok(Target {
        addr: addr.to_string(),
        path: path.to_string(),
    })
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// A fixed total rate, in requests per second, whatever the answers do.
    Open(f64),
    /// Each connection sends its next request when the previous answer has arrived.
    Closed,
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where to.
    pub target: Target,
    /// How paced.
    pub pace: Pace,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Client threads the connections are spread over.
    pub threads: usize,
    /// Measured period.
    pub duration: Duration,
    /// Unmeasured period before it.
    pub warmup: Duration,
    /// The request body (POST).
    pub body: Vec<u8>,
    /// Whose CPU time to charge to the calls: these pids and their descendants.
    pub cpu_pids: Vec<u32>,
}

/// CPU time spent by the server side over the measured period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    /// Processes counted (the given pids, their descendants, the engine's workers).
    pub processes: usize,
    /// CPU seconds (user + system).
    pub cpu_s: f64,
    /// CPU seconds per wall second.
    pub cores: f64,
    /// CPU microseconds per completed call.
    pub us_per_call: f64,
}

/// What one load run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadResult {
    /// The URL.
    pub url: String,
    /// `open` or `closed`.
    pub mode: String,
    /// The target rate (open loop), requests per second.
    pub target_per_s: Option<f64>,
    /// Connections.
    pub connections: usize,
    /// Client threads.
    #[serde(default)]
    pub threads: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Request body bytes.
    pub body_bytes: usize,
    /// Latency of the successful calls of the measured period (open loop: from the scheduled
    /// send time; requests never sent before the hard stop count with a lower bound).
    pub latency: LatencySummary,
    /// Successful calls in the measured period.
    pub completed: u64,
    /// Calls answered with a status other than 2xx, or failed on the connection.
    pub errors: u64,
    /// Open loop: scheduled requests not sent before the hard stop (the server fell behind).
    pub unsent: u64,
    /// Successful calls per second.
    pub achieved_per_s: f64,
    /// Server CPU, when pids were given.
    pub cpu: Option<CpuReport>,
    /// CPU seconds of this load generator over the measured period.
    pub client_cpu_s: f64,
}

/// What one connection measured.
#[derive(Default)]
struct ConnOutcome {
    hist: Histogram,
    completed: u64,
    errors: u64,
    unsent: u64,
    last_done: Option<Duration>,
}

/// How long open-loop connections may keep sending late requests after the measured period.
fn grace(duration: Duration) -> Duration {
    duration.min(Duration::from_secs(2))
}

async fn run_connection(spec: &LoadSpec, conn: usize, start: Instant) -> Result<ConnOutcome> {
    let mut client = Conn::connect(&spec.target.addr).await?;
    let body = Bytes::from(spec.body.clone());
    let mut out = ConnOutcome::default();
    let ws = spec.warmup;
    let we = spec.warmup + spec.duration;
    let path = spec.target.path.as_str();
    match spec.pace {
        Pace::Open(rate) => {
            let timer = PreciseTimer::new()?;
            let sched = Schedule::new(rate, conn, spec.connections)
                .ok_or_else(|| anyhow::anyhow!("the rate must be a positive number"))?;
            let hard = we + grace(spec.duration);
            let n = sched.count_before(we);
            for k in 0..n {
                let due = sched.due(k);
                let now = start.elapsed();
                if now < due {
                    timer.sleep_until(start + due).await?;
                } else if now > hard {
                    // The server fell this far behind: the rest is never sent. Count each with
                    // the latency it has at least accumulated, so the tail is not flattered.
                    for j in k..n {
                        let due = sched.due(j);
                        if due >= ws {
                            out.unsent += 1;
                            out.hist
                                .record_ns((hard.saturating_sub(due)).as_nanos() as u64);
                        }
                    }
                    break;
                }
                let ok = matches!(
                    client.request("POST", path, body.clone()).await,
                    Ok((200..=299, _))
                );
                let done = start.elapsed();
                if due >= ws {
                    if ok {
                        out.completed += 1;
                        out.hist.record_ns((done - due).as_nanos() as u64);
                        out.last_done = Some(done);
                    } else {
                        out.errors += 1;
                    }
                }
            }
        }
        Pace::Closed => loop {
            let sent = start.elapsed();
            if sent >= we {
                break;
            }
            let ok = matches!(
                client.request("POST", path, body.clone()).await,
                Ok((200..=299, _))
            );
            let done = start.elapsed();
            if sent >= ws {
                if ok {
                    out.completed += 1;
                    out.hist.record_ns((done - sent).as_nanos() as u64);
                    out.last_done = Some(done);
                } else {
                    out.errors += 1;
                }
            }
        },
    }
    Ok(out)
}

/// One client thread: its connections (`conn % threads == thread`) on a single-threaded
/// runtime.
fn run_thread(spec: &LoadSpec, thread: usize, start: Instant) -> Result<Vec<ConnOutcome>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let conns: Vec<usize> = (0..spec.connections)
            .filter(|c| c % spec.threads == thread)
            .collect();
        let mut tasks = Vec::new();
        for c in conns {
            let spec = spec.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let now = Instant::now();
                if now < start {
                    tokio::time::sleep(start - now).await;
                }
                run_connection(&spec, c, start).await
            }));
        }
        let mut outs = Vec::new();
        for t in tasks {
            outs.push(
                t.await
                    .map_err(|e| anyhow::anyhow!("a connection task failed: {e}"))??,
            );
        }
        Ok(outs)
    })
}

/// The pids to charge: each given pid with its descendants, plus the workers the engine at
/// `addr` lists in `GET /_/status` (if it answers; a baseline server does not).
pub fn server_pids(addr: &str, given: &[u32]) -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    for &p in given {
        pids.extend(procstat::with_descendants(p));
    }
    if !given.is_empty() {
        if let Some(status) = engine_status(addr) {
            pids.extend(status.workers.iter().map(|w| w.pid));
        }
    }
    pids
}

/// The engine's `GET /_/status`, if `addr` answers it.
pub fn engine_status(addr: &str) -> Option<Status> {
    match get_blocking(addr, "/_/status") {
        Ok((200, body)) => serde_json::from_slice(&body).ok(),
        _ => None,
    }
}

/// Runs one load run.
pub fn run(spec: &LoadSpec) -> Result<LoadResult> {
    if spec.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if spec.duration.is_zero() {
        bail!("--duration must be positive");
    }
    if spec.threads == 0 {
        bail!("--threads must be at least 1");
    }
    let spec = &LoadSpec {
        threads: spec.threads.min(spec.connections),
        ..spec.clone()
    };
    let pids = server_pids(&spec.target.addr, &spec.cpu_pids);
    let me = std::process::id();
    let barrier = Arc::new(Barrier::new(spec.threads + 1));
    // Threads are started and wait on the barrier; the clock starts a little later so every
    // connection is established and waiting for its first send, not still being created.
    let start = Instant::now() + Duration::from_millis(50);
    let (outcomes, server_cpu_s, client_cpu_s, cpu_wall) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    run_thread(spec, t, start)
                })
            })
            .collect();
        barrier.wait();
        // Snapshot CPU at the start of the measured period and after the last answer.
        let ws = start + spec.warmup;
        let now = Instant::now();
        if now < ws {
            std::thread::sleep(ws - now);
        }
        let cpu0 = procstat::cpu_ticks(&pids);
        let client0 = procstat::cpu_ticks(&BTreeSet::from([me]));
        let results: Vec<Result<Vec<ConnOutcome>>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a load thread panicked")))
            })
            .collect();
        let cpu1 = procstat::cpu_ticks(&pids);
        let client1 = procstat::cpu_ticks(&BTreeSet::from([me]));
        let wall = Instant::now().saturating_duration_since(ws).as_secs_f64();
        (
            results,
            procstat::cpu_seconds_between(&cpu0, &cpu1),
            procstat::cpu_seconds_between(&client0, &client1),
            wall,
        )
    });
    let outcomes: Vec<ConnOutcome> = outcomes
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();

    let mut hist = Histogram::default();
    let (mut completed, mut errors, mut unsent) = (0, 0, 0);
    let mut last_done = spec.warmup + spec.duration;
    for o in outcomes {
        completed += o.completed;
        errors += o.errors;
        unsent += o.unsent;
        if let Some(d) = o.last_done {
            last_done = last_done.max(d);
        }
        hist.merge(&o.hist);
    }
    let window = match spec.pace {
        Pace::Open(_) => last_done.saturating_sub(spec.warmup),
        Pace::Closed => spec.duration,
    }
    .as_secs_f64();
    let achieved = completed as f64 / window;
    let cpu = (!pids.is_empty()).then(|| CpuReport {
        processes: pids.len(),
        cpu_s: server_cpu_s,
        cores: server_cpu_s / cpu_wall.max(1e-9),
        us_per_call: if completed > 0 {
            server_cpu_s * 1e6 / completed as f64
        } else {
            0.0
        },
    });
    Ok(LoadResult {
        url: format!("http://{}{}", spec.target.addr, spec.target.path),
        mode: match spec.pace {
            Pace::Open(_) => "open".into(),
            Pace::Closed => "closed".into(),
        },
        target_per_s: match spec.pace {
            Pace::Open(r) => Some(r),
            Pace::Closed => None,
        },
        connections: spec.connections,
        threads: spec.threads,
        duration_s: spec.duration.as_secs_f64(),
        body_bytes: spec.body.len(),
        latency: hist.summary(),
        completed,
        errors,
        unsent,
        achieved_per_s: achieved,
        cpu,
        client_cpu_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = parse_url("http://127.0.0.1:8080/function/Nop").expect("valid");
        assert_eq!(t.addr, "127.0.0.1:8080");
        assert_eq!(t.path, "/function/Nop");
        assert_eq!(parse_url("localhost:1").expect("valid").path, "/");
        assert!(parse_url("https://x:1/").is_err());
        assert!(parse_url("http:///x").is_err());
        assert!(parse_url("http://nohost/x").is_err());
    }
}
