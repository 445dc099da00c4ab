//! Latency samples and their percentiles.
//!
//! Every sample is kept (nanoseconds, 8 bytes each): a 5 s point at 20k calls/s is 100k samples,
//! 800 KB, and the percentiles are exact rather than bucketed.

use serde::{Deserialize, Serialize};

/// Latency samples in nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    samples: Vec<u64>,
}

/// The distribution of a set of samples, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

impl Histogram {
    /// An empty histogram with room for `n` samples.
    pub fn with_capacity(n: usize) -> Histogram {
        Histogram {
            samples: Vec::with_capacity(n),
        }
    }

    /// Adds one sample.
    pub fn record_ns(&mut self, ns: u64) {
        self.samples.push(ns);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Histogram) {
        self.samples.extend(other.samples);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The distribution (all zero when empty).
    pub fn summary(&mut self) -> LatencySummary {
        if self.samples.is_empty() {
            return LatencySummary::default();
        }
        self.samples.sort_unstable();
        let s = &self.samples;
        let us = |ns: u64| ns as f64 / 1e3;
        let sum: u128 = s.iter().map(|&x| u128::from(x)).sum();
        LatencySummary {
            count: s.len() as u64,
            p50_us: us(percentile_sorted(s, 0.50)),
            p90_us: us(percentile_sorted(s, 0.90)),
            p99_us: us(percentile_sorted(s, 0.99)),
            p999_us: us(percentile_sorted(s, 0.999)),
            max_us: us(percentile_sorted(s, 1.0)),
            mean_us: sum as f64 / s.len() as f64 / 1e3,
        }
    }
}

/// The nearest-rank `q`-quantile (0 < q ≤ 1) of ascending `sorted`: the smallest sample with at
/// least `q·n` samples at or below it. 0 for an empty slice.
pub fn percentile_sorted(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile_sorted(&v, 0.5), 500);
        assert_eq!(percentile_sorted(&v, 0.9), 900);
        assert_eq!(percentile_sorted(&v, 0.99), 990);
        assert_eq!(percentile_sorted(&v, 0.999), 999);
        assert_eq!(percentile_sorted(&v, 1.0), 1000);
        assert_eq!(percentile_sorted(&v, 0.0), 1);
        assert_eq!(percentile_sorted(&[], 0.5), 0);
        assert_eq!(percentile_sorted(&[7], 0.999), 7);
    }

    #[test]
    fn summary_sorts_and_converts_to_microseconds() {
        let mut h = Histogram::default();
        for ns in [5_000, 1_000, 3_000, 2_000, 4_000] {
            h.record_ns(ns);
        }
        let s = h.summary();
        assert_eq!(s.count, 5);
        assert_eq!(s.p50_us, 3.0);
        assert_eq!(s.max_us, 5.0);
        assert_eq!(s.mean_us, 3.0);
        assert_eq!(Histogram::default().summary(), LatencySummary::default());
    }
}
