//! Readable tables for the bench results.

use super::http::LoadResult;
use super::idle::IdleResult;
use super::internal::InternalResult;

/// The header line of [`load_row`].
pub fn load_header() -> String {
    format!(
        "{:<7} {:>9} {:>5} {:>3} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>9}",
        "mode",
        "target/s",
        "conns",
        "thr",
        "achieved/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "errors",
        "cores",
        "cpu us/call"
    )
}

/// One load run as a table row.
pub fn load_row(r: &LoadResult) -> String {
    let target = r
        .target_per_s
        .map_or_else(|| "max".to_string(), |t| format!("{t:.0}"));
    let (cores, per_call) = r.cpu.map_or_else(
        || ("-".to_string(), "-".to_string()),
        |c| (format!("{:.2}", c.cores), format!("{:.1}", c.us_per_call)),
    );
    let l = &r.latency;
    format!(
        "{:<7} {:>9} {:>5} {:>3} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7} {:>8} {:>9}",
        r.mode,
        target,
        r.connections,
        r.threads,
        r.achieved_per_s,
        l.p50_us,
        l.p90_us,
        l.p99_us,
        l.p999_us,
        l.max_us,
        r.errors + r.unsent,
        cores,
        per_call
    )
}

/// A whole load run: URL, table, notes.
pub fn load_table(r: &LoadResult) -> String {
    let mut s = format!(
        "{} ({} B body, {:.1} s measured, {} calls)\n{}\n{}",
        r.url,
        r.body_bytes,
        r.duration_s,
        r.latency.count,
        load_header(),
        load_row(r)
    );
    if r.unsent > 0 {
        s.push_str(&format!(
            "\nnote: {} scheduled requests were never sent (the server fell behind); they count \
             in the latency with the delay they had at least accumulated",
            r.unsent
        ));
    }
    s
}

/// An internal-call result as a table.
pub fn internal_table(r: &InternalResult) -> String {
    let l = &r.latency;
    format!(
        "{} ({}) -> {}: {} internal calls measured inside the handler\n\
         {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}\n\
         {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.0}",
        r.function,
        r.lang,
        r.target,
        l.count,
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "calls/s",
        l.p50_us,
        l.p90_us,
        l.p99_us,
        l.p999_us,
        l.max_us,
        r.per_s
    )
}

/// An idle measurement as text.
pub fn idle_table(r: &IdleResult) -> String {
    format!(
        "idle engine (pid {}) with {} workers, {} processes over {:.1} s: {:.3} CPU s \
         ({:.2} % of a core); engine peak RSS {:.1} MiB",
        r.engine_pid,
        r.workers,
        r.processes,
        r.secs,
        r.cpu_s,
        r.cores * 100.0,
        r.engine_peak_rss_kib as f64 / 1024.0
    )
}
