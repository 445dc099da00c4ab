//! The gateway's connection counters, rendered into `/metrics` after the engine's series.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the gateway closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Idle between requests (or its client stopped reading) for longer than
    /// `engine.idle_timeout_ms`.
    IdleTimeout,
    /// A request head took longer than `engine.header_read_timeout_ms`.
    HeaderTimeout,
    /// Idle while the connection cap was reached and a new client was waiting.
    Evicted,
}

impl CloseReason {
    /// The `reason` label of `gloam_http_connections_closed_total`.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::Evicted => "evicted",
        }
    }
}

/// Counters shared by the accept loop and every connection task (relaxed atomics: each is an
/// independent tally read only by scrapes).
#[derive(Debug, Default)]
pub struct GatewayStats {
    open: AtomicU64,
    accepted: AtomicU64,
    idle_timeouts: AtomicU64,
    header_timeouts: AtomicU64,
    evicted: AtomicU64,
    cap_waits: AtomicU64,
    accept_errors: AtomicU64,
}

impl GatewayStats {
    /// A connection was accepted and is being served.
    pub fn opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A served connection ended (for any reason).
    pub fn ended(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// The gateway closed a connection itself.
    pub fn closed(&self, reason: CloseReason) {
        let counter = match reason {
            CloseReason::IdleTimeout => &self.idle_timeouts,
            CloseReason::HeaderTimeout => &self.header_timeouts,
            CloseReason::Evicted => &self.evicted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A new connection found the cap reached and no idle connection to close: it waits in
    /// the listen backlog until a connection ends or goes idle.
    pub fn cap_wait(&self) {
        self.cap_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// `accept` failed (other than for the one connection it was accepting).
    pub fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections the gateway closed for `reason` so far.
    pub fn closed_count(&self, reason: CloseReason) -> u64 {
        match reason {
            CloseReason::IdleTimeout => &self.idle_timeouts,
            CloseReason::HeaderTimeout => &self.header_timeouts,
            CloseReason::Evicted => &self.evicted,
        }
        .load(Ordering::Relaxed)
    }

    /// New connections that had to wait for a slot so far.
    pub fn cap_waits(&self) -> u64 {
        self.cap_waits.load(Ordering::Relaxed)
    }

    /// Appends the gateway's series in Prometheus text format; `max` is the connection cap.
    pub fn render(&self, max: usize, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut series = |name: &str, kind: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        series(
            "gloam_http_connections",
            "gauge",
            "HTTP connections open now.",
            &[("", get(&self.open))],
        );
        series(
            "gloam_http_connections_max",
            "gauge",
            "The gateway's connection cap (engine.max_connections, or derived from the descriptor limit).",
            &[("", max as u64)],
        );
        series(
            "gloam_http_connections_accepted_total",
            "counter",
            "HTTP connections accepted.",
            &[("", get(&self.accepted))],
        );
        series(
            "gloam_http_connections_closed_total",
            "counter",
            "HTTP connections the gateway closed itself: idle too long, request head too slow, or idle while the cap was reached and a new client waited.",
            &[
                ("{reason=\"idle_timeout\"}", get(&self.idle_timeouts)),
                ("{reason=\"header_timeout\"}", get(&self.header_timeouts)),
                ("{reason=\"evicted\"}", get(&self.evicted)),
            ],
        );
        series(
            "gloam_http_connection_cap_waits_total",
            "counter",
            "New connections that found the cap reached with no idle connection to close, and waited in the listen backlog.",
            &[("", get(&self.cap_waits))],
        );
        series(
            "gloam_http_accept_errors_total",
            "counter",
            "Failed accepts (e.g. out of descriptors); the gateway backs off while they last.",
            &[("", get(&self.accept_errors))],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series() {
        let s = GatewayStats::default();
        s.opened();
        s.opened();
        s.ended();
        s.closed(CloseReason::Evicted);
        s.cap_wait();
        let mut out = String::new();
        s.render(50, &mut out);
        for line in [
            "gloam_http_connections 1",
            "gloam_http_connections_max 50",
            "gloam_http_connections_accepted_total 2",
            "gloam_http_connections_closed_total{reason=\"evicted\"} 1",
            "gloam_http_connections_closed_total{reason=\"idle_timeout\"} 0",
            "gloam_http_connection_cap_waits_total 1",
            "gloam_http_accept_errors_total 0",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
    }
}
