//! Managed concurrency: the control law of DESIGN §5, on an explicit clock.
//!
//! Per function the engine estimates the arrival rate λ and the running time t, and lets at most
//! τ = ⌈h·λ·t⌉ calls run at once (Little's law: λ·t is the concurrency the load actually needs;
//! the headroom h, default 2, keeps bursts from queueing at full utilisation), clamped to
//! `[max(1, min_workers), max_workers]`. Running fewer calls at once than there are workers
//! keeps the machine's cores on the calls that are running instead of spreading them thin.
//!
//! * λ is an exponentially decaying count of arrivals: each arrival adds `1/window`, and the
//!   sum decays by `e^(−Δt/window)`. It reads as "arrivals per second over the last window",
//!   follows a step within about one window whatever came before (an average of gaps would let
//!   one long idle gap dominate for many windows), decays to zero when arrivals stop, and does
//!   not over-estimate an irregular rate as Nightcore's mean of instantaneous rates 1/gap does.
//! * t is an exponentially weighted mean of dispatch → completion times, per sample.
//! * Until the first completion there is no t: τ is `max_workers` (no limit while warming up).
//! * τ is never below 1, so a queued call can always run once a worker is free: the queue
//!   cannot stall (Nightcore's τ could round to 0 and stall for good).

use std::time::Duration;

/// A queue is meant to drain within this long: see [`Limiter::tau_queued`].
pub const QUEUE_DRAIN: Duration = Duration::from_millis(50);

/// λ·t within this much above an integer n counts as n (estimates are noisy).
const TAU_TOLERANCE: f64 = 0.05;

/// The knobs of one function's limiter (from `gloam.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterConfig {
    /// Limit concurrency to τ (`false`: up to `max_workers` run at once).
    pub enabled: bool,
    /// The time window of the arrival-rate average.
    pub rate_window: Duration,
    /// The weight of each new running-time sample, in (0, 1].
    pub service_alpha: f64,
    /// τ = ⌈headroom · λ · t⌉ (Nightcore's `concurrency_limit_coef`). At exactly λ·t the
    /// function runs at full utilisation and any burst queues without bound; the default 2
    /// keeps the queue short while still bounding concurrency.
    pub headroom: f64,
    /// At most one pool-growth request per this interval.
    pub growth_interval: Duration,
    /// Retire workers beyond 2τ that stayed idle this long (`None`: never shrink).
    pub shrink_grace: Option<Duration>,
    /// Shed an internal call that waited longer than this many times t (0: never).
    pub max_relative_queueing_delay: f64,
    /// Lower bound of the pool and of τ.
    pub min_workers: usize,
    /// Upper bound of the pool and of τ.
    pub max_workers: usize,
}

impl Default for LimiterConfig {
    fn default() -> LimiterConfig {
        LimiterConfig {
            enabled: true,
            rate_window: Duration::from_millis(50),
            service_alpha: 0.05,
            headroom: 2.0,
            growth_interval: Duration::from_millis(100),
            shrink_grace: Some(Duration::from_secs(10)),
            max_relative_queueing_delay: 0.0,
            min_workers: 1,
            max_workers: 16,
        }
    }
}

/// One function's estimates. Times are monotonic nanoseconds supplied by the caller.
#[derive(Debug, Clone)]
pub struct Limiter {
    config: LimiterConfig,
    last_arrival: Option<u64>,
    /// Decayed arrival count per second, as of `last_arrival`.
    rate_at_last: f64,
    mean_service_ns: Option<f64>,
    last_growth: Option<u64>,
}

impl Limiter {
    /// A limiter with no history.
    pub fn new(config: LimiterConfig) -> Limiter {
        Limiter {
            config,
            last_arrival: None,
            rate_at_last: 0.0,
            mean_service_ns: None,
            last_growth: None,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    fn window_ns(&self) -> f64 {
        (self.config.rate_window.as_nanos() as f64).max(1.0)
    }

    /// Records an arrival at `now`.
    pub fn on_arrival(&mut self, now: u64) {
        self.on_arrivals(now, 1);
    }

    /// `n` calls arrived by `now` (a batch counted at once: direct-lane tallies).
    pub fn on_arrivals(&mut self, now: u64, n: u32) {
        let now = now.max(self.last_arrival.unwrap_or(0));
        let since = now.saturating_sub(self.last_arrival.unwrap_or(now)) as f64;
        self.rate_at_last = self.rate_at_last * (-since / self.window_ns()).exp()
            + f64::from(n) * 1e9 / self.window_ns();
        self.last_arrival = Some(now);
    }

    /// Records a completed call that ran `running_ns` (dispatch → completion).
    pub fn on_completion(&mut self, running_ns: u64) {
        let x = running_ns as f64;
        self.mean_service_ns = Some(match self.mean_service_ns {
            None => x,
            Some(mean) => mean + self.config.service_alpha * (x - mean),
        });
    }

    /// λ in calls per second at `now` (decays while no call arrives).
    pub fn rate(&self, now: u64) -> f64 {
        let Some(last) = self.last_arrival else {
            return 0.0;
        };
        let since = now.saturating_sub(last) as f64;
        // Right after an arrival the decayed count reads 1/gap + 1/(2·window) in steady state;
        // τ is computed at arrivals, so take that bias off.
        (self.rate_at_last * (-since / self.window_ns()).exp() - 0.5e9 / self.window_ns()).max(0.0)
    }

    /// t in nanoseconds, once known.
    pub fn service_ns(&self) -> Option<f64> {
        self.mean_service_ns
    }

    /// τ at `now` with `queued` calls waiting: the rate used is λ plus what would drain the
    /// queue within [`QUEUE_DRAIN`], so a burst that outruns the rate estimate (which lags by
    /// about one window) does not sit in the queue at full utilisation.
    pub fn tau_queued(&self, now: u64, queued: usize) -> usize {
        if queued == 0 {
            return self.tau(now);
        }
        self.tau_for_rate(self.rate(now) + queued as f64 / QUEUE_DRAIN.as_secs_f64())
    }

    /// τ at `now`: how many calls may run at once.
    pub fn tau(&self, now: u64) -> usize {
        self.tau_for_rate(self.rate(now))
    }

    fn tau_for_rate(&self, rate: f64) -> usize {
        let lo = self.config.min_workers.max(1);
        let hi = self.config.max_workers.max(lo);
        if !self.config.enabled {
            return hi;
        }
        let Some(t) = self.mean_service_ns else {
            return hi;
        };
        // A little tolerance so that λ·t = 10.0 plus estimation noise means 10, not 11.
        let want = (self.config.headroom * rate * t / 1e9 - TAU_TOLERANCE).ceil();
        if want.is_finite() && want >= 0.0 {
            (want as usize).clamp(lo, hi)
        } else {
            hi
        }
    }

    /// Whether a queued internal call that waited `waited_ns` should be shed.
    pub fn should_shed(&self, waited_ns: u64) -> bool {
        let k = self.config.max_relative_queueing_delay;
        match self.mean_service_ns {
            Some(t) if k > 0.0 => waited_ns as f64 > k * t,
            _ => false,
        }
    }

    /// Whether the pool may grow now (at most once per growth interval); records the request.
    pub fn try_grow(&mut self, now: u64) -> bool {
        let interval = u64::try_from(self.config.growth_interval.as_nanos()).unwrap_or(u64::MAX);
        let allowed = self
            .last_growth
            .is_none_or(|last| now.saturating_sub(last) >= interval);
        if allowed {
            self.last_growth = Some(now);
        }
        allowed
    }

    /// How many workers the pool should keep: max(2τ, min_workers), at most max_workers. A
    /// function never called yet has τ at its floor here (warm-up only lifts the limit).
    pub fn keep_workers(&self, now: u64) -> usize {
        let tau = match self.mean_service_ns {
            Some(_) => self.tau(now),
            None => self.config.min_workers.max(1),
        };
        (2 * tau)
            .max(self.config.min_workers)
            .min(self.config.max_workers.max(self.config.min_workers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    fn limiter(min: usize, max: usize) -> Limiter {
        Limiter::new(LimiterConfig {
            min_workers: min,
            max_workers: max,
            headroom: 1.0,
            ..LimiterConfig::default()
        })
    }

    #[test]
    fn a_queue_raises_tau_until_it_drains() {
        let mut l = limiter(1, 64);
        let now = drive(&mut l, 0, 1000, 4 * MS, 3);
        assert_eq!(l.tau(now), 4);
        // 100 queued calls want draining within 50 ms: +2000/s × 4 ms = +8.
        assert_eq!(l.tau_queued(now, 100), 12);
        assert_eq!(l.tau_queued(now, 0), 4);
    }

    #[test]
    fn headroom_scales_tau() {
        let mut l = Limiter::new(LimiterConfig {
            max_workers: 64,
            ..LimiterConfig::default()
        });
        let now = drive(&mut l, 0, 1000, 5 * MS, 3);
        assert_eq!(l.tau(now), 10, "2 × 1000/s × 5 ms");
    }

    /// Feeds `rate`/s arrivals each running `service` ns for `secs` seconds from `start`.
    fn drive(l: &mut Limiter, start: u64, rate: u64, service: u64, secs: u64) -> u64 {
        let gap = S / rate;
        let mut now = start;
        for _ in 0..rate * secs {
            now += gap;
            l.on_arrival(now);
            l.on_completion(service);
        }
        now
    }

    #[test]
    fn warm_up_does_not_limit() {
        let mut l = limiter(1, 16);
        assert_eq!(l.tau(0), 16);
        l.on_arrival(0);
        l.on_arrival(MS);
        assert_eq!(l.tau(MS), 16, "no running time known yet");
    }

    #[test]
    fn steady_rate_tracks_little_law() {
        let mut l = limiter(1, 64);
        // 1000 calls/s of 10 ms each need 10 at once.
        let now = drive(&mut l, 0, 1000, 10 * MS, 3);
        assert!((l.rate(now) - 1000.0).abs() < 20.0, "rate {}", l.rate(now));
        // Right after a long idle period, a new steady rate is tracked within about a window.
        let now = drive(&mut l, now + 60 * S, 1000, 10 * MS, 1);
        assert_eq!(l.tau(now), 10);
        assert_eq!(l.tau(now), 10);
    }

    #[test]
    fn step_up_and_step_down() {
        let mut l = limiter(1, 64);
        let now = drive(&mut l, 0, 500, 4 * MS, 3);
        assert_eq!(l.tau(now), 2);
        // The rate follows within a few windows (1 s each).
        let now = drive(&mut l, now, 5000, 4 * MS, 8);
        assert_eq!(l.tau(now), 20);
        let now = drive(&mut l, now, 250, 4 * MS, 8);
        assert_eq!(l.tau(now), 1);
    }

    #[test]
    fn zero_traffic_decays_to_the_floor_and_never_below_one() {
        let mut l = limiter(0, 64);
        let now = drive(&mut l, 0, 2000, 10 * MS, 2);
        assert_eq!(l.tau(now), 20);
        assert_eq!(l.tau(now + 30 * S), 1, "τ ≥ 1 even with min_workers = 0");
        assert!(l.rate(now + 30 * S) < 1.0);
        let mut with_min = limiter(3, 64);
        let now = drive(&mut with_min, 0, 2000, 10 * MS, 2);
        assert_eq!(with_min.tau(now + 30 * S), 3);
    }

    #[test]
    fn burst_is_clamped_to_max_workers() {
        let mut l = limiter(1, 8);
        let now = drive(&mut l, 0, 100_000, 10 * MS, 1);
        assert_eq!(l.tau(now), 8);
        assert_eq!(l.keep_workers(now), 8);
    }

    #[test]
    fn disabled_limiter_allows_max_workers() {
        let mut l = Limiter::new(LimiterConfig {
            enabled: false,
            max_workers: 5,
            ..LimiterConfig::default()
        });
        let now = drive(&mut l, 0, 10, MS, 1);
        assert_eq!(l.tau(now), 5);
    }

    #[test]
    fn growth_is_rate_limited_but_never_stops() {
        let mut l = limiter(1, 8);
        assert!(l.try_grow(0));
        assert!(!l.try_grow(50 * MS));
        assert!(l.try_grow(100 * MS));
        // A long quiet period does not stop growth for good (Nightcore's inverted check did).
        assert!(l.try_grow(100 * S));
        assert!(!l.try_grow(100 * S + MS));
    }

    #[test]
    fn keep_workers_is_twice_tau_within_bounds() {
        let mut l = limiter(2, 64);
        let now = drive(&mut l, 0, 1000, 5 * MS, 3);
        assert_eq!(l.tau(now), 5);
        assert_eq!(l.keep_workers(now), 10);
        // Idle: τ falls to its floor max(1, min_workers) = 2, so the pool keeps 2τ = 4.
        assert_eq!(l.keep_workers(now + 60 * S), 4);
    }

    #[test]
    fn shedding_compares_the_wait_with_t() {
        let mut l = Limiter::new(LimiterConfig {
            max_relative_queueing_delay: 3.0,
            ..LimiterConfig::default()
        });
        assert!(!l.should_shed(u64::MAX), "no t yet");
        l.on_completion(10 * MS);
        assert!(!l.should_shed(29 * MS));
        assert!(l.should_shed(31 * MS));
    }
}
