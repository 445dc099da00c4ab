//! Latency distributions: an HDR histogram (`hdrhistogram`) of nanoseconds, 3 significant
//! digits from 1 µs to an hour, and its summary in microseconds.
//!
//! Open-loop runs measure from each request's scheduled time, which already counts the time a
//! slow answer kept later requests waiting. Closed-loop runs can ask for coordinated-omission
//! correction ([`Histogram::record_corrected`]): a call that took longer than the expected
//! interval also counts the calls that would have been sent meanwhile.

use serde::{Deserialize, Serialize};

/// Lowest discernible value (ns).
const LOW_NS: u64 = 1_000;
/// Highest trackable value (ns): an hour.
const HIGH_NS: u64 = 3_600_000_000_000;

/// Latencies in nanoseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: hdrhistogram::Histogram<u64>,
}

impl Default for Histogram {
    fn default() -> Histogram {
        // Valid bounds (low ≥ 1, high ≥ 2·low, 3 digits): construction cannot fail.
        let inner = hdrhistogram::Histogram::new_with_bounds(LOW_NS, HIGH_NS, 3)
            .unwrap_or_else(|_| unreachable!("constant, valid histogram bounds"));
        Histogram { inner }
    }
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
    /// Adds one sample (clamped into the histogram's range).
    pub fn record_ns(&mut self, ns: u64) {
        self.inner.saturating_record(ns.clamp(LOW_NS, HIGH_NS));
    }

    /// Adds one sample of a closed loop that meant to send every `expected_ns`, with
    /// coordinated-omission correction: when `ns` exceeds the interval, the requests that were
    /// not sent meanwhile are counted too, at the latencies they would have had.
    pub fn record_corrected(&mut self, ns: u64, expected_ns: u64) {
        let ns = ns.clamp(LOW_NS, HIGH_NS);
        if self.inner.record_correct(ns, expected_ns).is_err() {
            self.inner.saturating_record(ns);
        }
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        // Same bounds on both sides: adding cannot fail; if it ever did, count what is known.
        if self.inner.add(&other.inner).is_err() {
            for v in other.inner.iter_recorded() {
                self.inner
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The distribution (all zero when empty).
    pub fn summary(&self) -> LatencySummary {
        if self.inner.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1e3;
        let h = &self.inner;
        LatencySummary {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1e3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_three_digits_and_in_microseconds() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record_ns(us * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1e-9;
        assert!(near(s.p50_us, 500.0), "{}", s.p50_us);
        assert!(near(s.p99_us, 990.0), "{}", s.p99_us);
        assert!(near(s.max_us, 1000.0), "{}", s.max_us);
        assert!(near(s.mean_us, 500.5), "{}", s.mean_us);
        assert_eq!(Histogram::default().summary(), LatencySummary::default());
    }

    #[test]
    fn coordinated_omission_is_corrected_in_closed_loops() {
        // Meant every 1 ms; one call stalled 10 ms: the 9 calls it held back count too.
        let mut h = Histogram::default();
        for _ in 0..90 {
            h.record_corrected(100_000, 1_000_000);
        }
        h.record_corrected(10_000_000, 1_000_000);
        assert_eq!(h.len(), 100);
        assert!(h.summary().p99_us > 1000.0, "{:?}", h.summary());
        let mut merged = Histogram::default();
        merged.merge(&h);
        merged.merge(&h);
        assert_eq!(merged.len(), 200);
    }
}
