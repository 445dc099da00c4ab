//! Per-function metrics, kept inside the engine state and rendered as Prometheus text.
//!
//! Recording happens where the state already holds its lock for the call's own bookkeeping, into
//! fixed-size arrays: no extra lock, no allocation per call. Rendering (a scrape) copies
//! the numbers under the lock and formats them outside it.

use std::fmt::Write;

use gloam_core::tally::TallyHistogram;
use gloam_core::ErrorKind;

/// Histogram bucket upper bounds, in nanoseconds (1 µs … 30 s, roughly 1-2-5 steps).
pub use gloam_core::tally::LATENCY_BUCKETS_NS as BUCKETS_NS;

/// A histogram with fixed buckets (plus an overflow bucket), a count and a sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; BUCKETS_NS.len() + 1],
    /// Samples recorded.
    pub count: u64,
    /// Sum of the samples, ns.
    pub sum_ns: u64,
}

impl Histogram {
    /// Records one sample.
    pub fn record(&mut self, ns: u64) {
        let i = BUCKETS_NS.partition_point(|&b| b < ns);
        self.counts[i] += 1;
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Adds another histogram's samples.
    /// Adds the samples of a direct-lane tally.
    pub fn add_tally(&mut self, t: &TallyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(t.counts.iter()) {
            *a += u64::from(*b);
        }
        self.count += t.counts.iter().map(|&c| u64::from(c)).sum::<u64>();
        self.sum_ns = self.sum_ns.saturating_add(t.sum_ns);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// The upper bound of the bucket holding quantile `q` (ns), if any sample.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(BUCKETS_NS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }

    /// Cumulative counts per bucket bound (Prometheus `le`), ending with `+Inf`.
    fn cumulative(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        let mut acc = 0;
        self.counts.iter().enumerate().map(move |(i, c)| {
            acc += c;
            (BUCKETS_NS.get(i).copied(), acc)
        })
    }
}

/// Two alternating windows, so "the last minute" is always one to two windows of data.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    current: Histogram,
    previous: Histogram,
    window_start: u64,
}

/// Length of one window of [`Recent`].
const WINDOW_NS: u64 = 30_000_000_000;

impl Recent {
    /// Records a sample at `now`.
    pub fn record(&mut self, now: u64, ns: u64) {
        self.rotate(now);
        self.current.record(ns);
    }

    /// Adds a direct-lane tally's samples at `now`.
    pub fn add_tally(&mut self, now: u64, t: &TallyHistogram) {
        self.rotate(now);
        self.current.add_tally(t);
    }

    fn rotate(&mut self, now: u64) {
        if now.saturating_sub(self.window_start) >= WINDOW_NS {
            self.previous = if now.saturating_sub(self.window_start) >= 2 * WINDOW_NS {
                Histogram::default()
            } else {
                std::mem::take(&mut self.current)
            };
            self.current = Histogram::default();
            self.window_start = now;
        }
    }

    /// Samples of the last 30–60 s.
    pub fn last_minute(&self, now: u64) -> Histogram {
        let age = now.saturating_sub(self.window_start);
        let mut h = Histogram::default();
        if age < 2 * WINDOW_NS {
            h.merge(&self.current);
        }
        if age < WINDOW_NS {
            h.merge(&self.previous);
        }
        h
    }
}

/// What one function's calls did.
#[derive(Debug, Clone, Default)]
pub struct FunctionMetrics {
    /// Ended calls by outcome: index 0 = success, else the [`ErrorKind`] code.
    pub outcomes: [u64; ErrorKind::ALL.len() + 1],
    /// Receive → end, every admitted call.
    pub duration: Histogram,
    /// Receive → dispatch.
    pub queueing: Histogram,
    /// Handler time reported by the worker.
    pub processing: Histogram,
    /// Dispatch → completion minus handler time: the engine's and the channel's share.
    pub overhead: Histogram,
    /// Worker process start → worker ready.
    pub cold_start: Histogram,
    /// Durations of the last minute, for `gloam status`.
    pub recent: Recent,
}

impl FunctionMetrics {
    /// A call ended with `outcome` (`None` = success) after `duration_ns`.
    pub fn ended(&mut self, now: u64, outcome: Option<ErrorKind>, duration_ns: u64) {
        self.count(outcome);
        self.duration.record(duration_ns);
        self.recent.record(now, duration_ns);
    }

    /// A call ended (or was refused) with `outcome`; counts only.
    pub fn count(&mut self, outcome: Option<ErrorKind>) {
        let i = outcome.map_or(0, |k| usize::from(k.code()));
        if let Some(slot) = self.outcomes.get_mut(i) {
            *slot += 1;
        }
    }
}

/// The `status` label of an outcome index.
fn status_label(i: usize) -> String {
    match i {
        0 => "ok".to_string(),
        code => ErrorKind::from_code(code as u8).map_or_else(
            || "unknown".to_string(),
            |k| k.as_str().to_ascii_lowercase(),
        ),
    }
}

/// Gauges of one function at scrape time.
#[derive(Debug, Clone, Default)]
pub struct FunctionGauges {
    /// Ready workers.
    pub workers: usize,
    /// Idle workers.
    pub idle: usize,
    /// Workers asked to retire.
    pub retiring: usize,
    /// Workers requested, not connected yet.
    pub requested: usize,
    /// Calls running.
    pub running: usize,
    /// Calls sent behind a running call (pipelined), not started yet.
    pub pipelined: usize,
    /// Calls queued.
    pub queued: usize,
    /// λ, calls/s.
    pub rate: f64,
    /// t, seconds (0 until known).
    pub service_s: f64,
    /// τ.
    pub tau: usize,
    /// Workers leased to a caller (direct lanes).
    pub leased: usize,
    /// Calls that ran on a direct lane.
    pub direct_calls: u64,
}

/// Everything a scrape renders, copied out of the state.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per function: name, metrics, gauges.
    pub functions: Vec<(String, FunctionMetrics, FunctionGauges)>,
    /// Calls in flight on the engine.
    pub calls_in_flight: usize,
    /// Times the engine took its state lock (one per event: an external call takes two).
    pub state_locks: u64,
    /// Hung workers the engine killed.
    pub killed_workers: u64,
    /// The ring poller's polling periods that found a message, and those that ran out.
    pub poller_spins: (u64, u64),
    /// Payload descriptors the engine holds.
    pub payloads_held: usize,
}

fn histogram(out: &mut String, name: &str, help: &str, rows: &[(&str, &Histogram)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (function, h) in rows {
        for (bound, count) in h.cumulative() {
            let le = bound.map_or_else(|| "+Inf".to_string(), |b| format!("{}", b as f64 / 1e9));
            let _ = writeln!(
                out,
                "{name}_bucket{{function=\"{function}\",le=\"{le}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_sum{{function=\"{function}\"}} {}",
            h.sum_ns as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{{function=\"{function}\"}} {}", h.count);
    }
}

fn gauge(out: &mut String, name: &str, help: &str, rows: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

/// Renders Prometheus text exposition format (names follow the OpenTelemetry FaaS
/// conventions where they fit: `faas_invocations_total`, `faas_invoke_duration_seconds`, ...).
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = writeln!(
        out,
        "# HELP faas_invocations_total Calls ended, by function and outcome."
    );
    let _ = writeln!(out, "# TYPE faas_invocations_total counter");
    for (name, m, _) in &s.functions {
        for (i, n) in m.outcomes.iter().enumerate() {
            if *n > 0 || i == 0 {
                let _ = writeln!(
                    out,
                    "faas_invocations_total{{function=\"{name}\",status=\"{}\"}} {n}",
                    status_label(i)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP gloam_direct_calls_total Internal calls that ran on a direct lane (caller to callee without the engine); also counted in faas_invocations_total."
    );
    let _ = writeln!(out, "# TYPE gloam_direct_calls_total counter");
    for (name, _, g) in &s.functions {
        let _ = writeln!(
            out,
            "gloam_direct_calls_total{{function=\"{name}\"}} {}",
            g.direct_calls
        );
    }
    let rows = |pick: fn(&FunctionMetrics) -> &Histogram| -> Vec<(&str, &Histogram)> {
        s.functions
            .iter()
            .map(|(n, m, _)| (n.as_str(), pick(m)))
            .collect()
    };
    histogram(
        &mut out,
        "faas_invoke_duration_seconds",
        "Receive to end of each admitted call, as the engine saw it.",
        &rows(|m| &m.duration),
    );
    histogram(
        &mut out,
        "faas_queueing_delay_seconds",
        "Receive to dispatch to a worker.",
        &rows(|m| &m.queueing),
    );
    histogram(
        &mut out,
        "gloam_processing_seconds",
        "Handler time reported by the worker.",
        &rows(|m| &m.processing),
    );
    histogram(
        &mut out,
        "gloam_dispatch_overhead_seconds",
        "Dispatch to completion minus handler time: engine and channel time of a call.",
        &rows(|m| &m.overhead),
    );
    histogram(
        &mut out,
        "faas_coldstart_duration_seconds",
        "Worker process start to worker ready.",
        &rows(|m| &m.cold_start),
    );
    let mut workers = Vec::new();
    let per = |f: fn(&FunctionGauges) -> f64| -> Vec<(String, f64)> {
        s.functions
            .iter()
            .map(|(n, _, g)| (format!("function=\"{n}\""), f(g)))
            .collect()
    };
    for (n, _, g) in &s.functions {
        for (state, v) in [
            ("idle", g.idle),
            ("leased", g.leased),
            (
                "busy",
                g.workers.saturating_sub(g.idle + g.retiring + g.leased),
            ),
            ("retiring", g.retiring),
            ("requested", g.requested),
        ] {
            workers.push((format!("function=\"{n}\",state=\"{state}\""), v as f64));
        }
    }
    gauge(
        &mut out,
        "gloam_workers",
        "Logical workers by state.",
        &workers,
    );
    let queued = per(|g| g.queued as f64);
    gauge(
        &mut out,
        "gloam_queue_depth",
        "Calls waiting for a worker.",
        &queued,
    );
    let running = per(|g| g.running as f64);
    gauge(
        &mut out,
        "gloam_running_calls",
        "Calls running now.",
        &running,
    );
    let pipelined = per(|g| g.pipelined as f64);
    gauge(
        &mut out,
        "gloam_pipelined_calls",
        "Calls sent to a busy worker behind the call it runs, not started yet.",
        &pipelined,
    );
    let rate = per(|g| g.rate);
    gauge(
        &mut out,
        "gloam_limiter_rate",
        "λ: estimated arrival rate, calls/s.",
        &rate,
    );
    let service = per(|g| g.service_s);
    gauge(
        &mut out,
        "gloam_limiter_service_seconds",
        "t: estimated running time.",
        &service,
    );
    let tau = per(|g| g.tau as f64);
    gauge(
        &mut out,
        "gloam_limiter_tau",
        "τ = ⌈λ·t⌉: calls allowed to run at once.",
        &tau,
    );
    gauge(
        &mut out,
        "gloam_calls_in_flight",
        "Calls the engine holds (queued or running).",
        &[(String::new(), s.calls_in_flight as f64)],
    );
    gauge(
        &mut out,
        "gloam_payloads_held",
        "Payloads past the inline area the engine holds (inputs waiting for their callee, outputs for their caller).",
        &[(String::new(), s.payloads_held as f64)],
    );
    for (name, help, v) in [
        (
            "gloam_state_locks_total",
            "Times the engine took its state lock (an external call takes it twice).",
            s.state_locks,
        ),
        (
            "gloam_workers_killed_total",
            "Hung workers killed (a call past its deadline by the grace, or a lane never given back).",
            s.killed_workers,
        ),
        (
            "gloam_poller_spins_paid_total",
            "Times the ring poller polled before sleeping and a message came (a wake-up saved).",
            s.poller_spins.0,
        ),
        (
            "gloam_poller_spins_wasted_total",
            "Times the ring poller polled before sleeping and nothing came (CPU spent for nothing; with one CPU it yields at every poll).",
            s.poller_spins.1,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_quantiles() {
        let mut h = Histogram::default();
        for ns in [500, 1_500, 3_000, 3_000, 40_000_000_000] {
            h.record(ns);
        }
        assert_eq!(h.count, 5);
        assert_eq!(h.quantile(0.2), Some(1_000));
        assert_eq!(h.quantile(0.5), Some(5_000));
        assert_eq!(h.quantile(1.0), Some(u64::MAX), "overflow bucket");
        let cum: Vec<_> = h.cumulative().collect();
        assert_eq!(cum.last(), Some(&(None, 5)));
    }

    #[test]
    fn recent_forgets_old_windows() {
        let mut r = Recent::default();
        r.record(0, 1_000);
        r.record(WINDOW_NS + 1, 2_000);
        assert_eq!(r.last_minute(WINDOW_NS + 2).count, 2);
        assert_eq!(r.last_minute(2 * WINDOW_NS + 2).count, 1);
        assert_eq!(r.last_minute(10 * WINDOW_NS).count, 0);
    }

    #[test]
    fn render_is_prometheus_text() {
        let mut m = FunctionMetrics::default();
        m.ended(0, None, 10_000);
        m.ended(0, Some(ErrorKind::Timeout), 10_000);
        let snap = Snapshot {
            functions: vec![("Foo".into(), m, FunctionGauges::default())],
            calls_in_flight: 0,
            payloads_held: 0,
            state_locks: 7,
            killed_workers: 1,
            poller_spins: (3, 4),
        };
        let text = render(&snap);
        assert!(text.contains("faas_invocations_total{function=\"Foo\",status=\"ok\"} 1"));
        assert!(text.contains("faas_invocations_total{function=\"Foo\",status=\"timeout\"} 1"));
        assert!(text.contains("faas_invoke_duration_seconds_count{function=\"Foo\"} 2"));
        assert!(text.contains("gloam_state_locks_total 7"));
        assert!(text.contains("gloam_workers_killed_total 1"));
        assert!(text.contains("gloam_poller_spins_paid_total 3"));
        assert!(text.contains("gloam_poller_spins_wasted_total 4"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "bad line {line}");
        }
    }
}
