//! Shared by the channel benches: percentiles of round-trip times, printed as a table and as
//! one JSON line.

use std::time::Duration;

/// Prints `times` (sorted here) as p50/p99/p99.9/max and round trips per second.
pub fn print(bench: &str, title: &str, times: &mut [Duration], total: Duration) {
    times.sort_unstable();
    let n = times.len();
    let q = |p: f64| times[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1e6;
    let rate = n as f64 / total.as_secs_f64();
    println!("{title} ({n} round trips)");
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>14}",
        "p50 us", "p99 us", "p99.9 us", "max us", "round trips/s"
    );
    println!(
        "{:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>14.0}",
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0),
        rate
    );
    println!(
        "{{\"bench\":\"{bench}\",\"n\":{n},\"p50_us\":{:.2},\"p99_us\":{:.2},\"p999_us\":{:.2},\"max_us\":{:.2},\"per_s\":{rate:.0}}}",
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0)
    );
}
