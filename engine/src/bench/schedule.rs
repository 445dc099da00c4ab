//! The open-loop send schedule.
//!
//! At a fixed total rate `R` over `C` connections, connection `c` sends its `k`-th request at
//! `(c + k·C) / R` seconds after the start: the connections interleave evenly, and each one's
//! schedule does not depend on how fast the server answers. Latency is measured from the
//! scheduled time, so a slow answer that delays the next sends shows up in their latency
//! (no coordinated omission).

use std::time::Duration;

/// One connection's share of a fixed-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Gap between two sends on this connection, in nanoseconds.
    period_ns: f64,
    /// Offset of this connection's first send, in nanoseconds.
    offset_ns: f64,
}

impl Schedule {
    /// Connection `conn` of `conns` at `rate` requests per second in total. `None` when the
    /// rate is not positive or `conn` is out of range.
    pub fn new(rate: f64, conn: usize, conns: usize) -> Option<Schedule> {
        if !(rate.is_finite() && rate > 0.0) || conn >= conns {
            return None;
        }
        let gap = 1e9 / rate;
        Some(Schedule {
            period_ns: gap * conns as f64,
            offset_ns: gap * conn as f64,
        })
    }

    /// When request `k` (from 0) of this connection is due, after the start.
    pub fn due(&self, k: u64) -> Duration {
        Duration::from_nanos((self.offset_ns + k as f64 * self.period_ns) as u64)
    }

    /// How many requests of this connection are due strictly before `end` after the start.
    pub fn count_before(&self, end: Duration) -> u64 {
        let end = end.as_nanos() as f64;
        if end <= self.offset_ns {
            return 0;
        }
        ((end - self.offset_ns) / self.period_ns).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_interleave_evenly() {
        // 1000/s over 4 connections: one send every 1 ms in total, every 4 ms per connection.
        let s: Vec<Schedule> = (0..4)
            .map(|c| Schedule::new(1000.0, c, 4).expect("valid"))
            .collect();
        let mut all: Vec<Duration> = s.iter().flat_map(|s| (0..5).map(|k| s.due(k))).collect();
        all.sort();
        for (i, t) in all.iter().enumerate() {
            assert_eq!(*t, Duration::from_millis(i as u64));
        }
        assert_eq!(s[1].due(2), Duration::from_millis(9));
    }

    #[test]
    fn counts_sends_in_a_window() {
        let s = Schedule::new(1000.0, 0, 1).expect("valid");
        assert_eq!(s.count_before(Duration::from_secs(1)), 1000);
        assert_eq!(s.count_before(Duration::ZERO), 0);
        let s = Schedule::new(1000.0, 3, 4).expect("valid");
        // due at 3, 7, 11, ... ms
        assert_eq!(s.count_before(Duration::from_millis(3)), 0);
        assert_eq!(s.count_before(Duration::from_millis(4)), 1);
        assert_eq!(s.count_before(Duration::from_millis(8)), 2);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(Schedule::new(0.0, 0, 1).is_none());
        assert!(Schedule::new(f64::NAN, 0, 1).is_none());
        assert!(Schedule::new(100.0, 2, 2).is_none());
    }
}
