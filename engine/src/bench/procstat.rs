//! CPU time and memory of processes, from `/proc`.

use std::collections::BTreeSet;
use std::fs;

use anyhow::{bail, Context, Result};

/// What `/proc/<pid>/stat` says about CPU use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatTimes {
    /// Parent pid.
    pub ppid: u32,
    /// User-mode CPU time, in clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time, in clock ticks.
    pub stime: u64,
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Result<StatTimes> {
    let close = text
        .rfind(')')
        .context("/proc stat: no `)` after the command name")?;
    // After ")": state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9) minflt(10)
    // cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15).
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    if fields.len() < 13 {
        bail!(
            "/proc stat: {} fields after the command name, expected at least 13",
            fields.len()
        );
    }
    let num = |i: usize, name: &str| -> Result<u64> {
        fields[i]
            .parse()
            .with_context(|| format!("/proc stat: field {name}: {:?} is not a number", fields[i]))
    };
    Ok(StatTimes {
        ppid: u32::try_from(num(1, "ppid")?).context("/proc stat: field ppid: out of range")?,
        utime: num(11, "utime")?,
        stime: num(12, "stime")?,
    })
}

/// Reads `/proc/<pid>/stat`.
pub fn read_stat(pid: u32) -> Result<StatTimes> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text).with_context(|| format!("parsing {path}"))
}

/// Clock ticks per second (`_SC_CLK_TCK`, 100 on Linux).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Parses a `kB` line such as `VmHWM:     1234 kB` out of `/proc/<pid>/status` text.
pub fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Peak resident set size (`VmHWM`) of `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_kib(&text, "VmHWM").with_context(|| format!("{path}: no VmHWM line"))
}

/// `root` and every live descendant of it (by scanning `/proc` for parent pids).
pub fn with_descendants(root: u32) -> BTreeSet<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Ok(st) = read_stat(pid) {
                parent_of.push((pid, st.ppid));
            }
        }
    }
    let mut set = BTreeSet::from([root]);
    loop {
        let before = set.len();
        for (pid, ppid) in &parent_of {
            if set.contains(ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// CPU ticks (user + system) of each pid; processes that are gone are left out.
pub fn cpu_ticks(pids: &BTreeSet<u32>) -> Vec<(u32, u64)> {
    pids.iter()
        .filter_map(|&pid| read_stat(pid).ok().map(|s| (pid, s.utime + s.stime)))
        .collect()
}

/// CPU seconds used between two [`cpu_ticks`] snapshots, counting only pids present in both
/// (a pid that appears later started during the run and is counted from 0).
pub fn cpu_seconds_between(before: &[(u32, u64)], after: &[(u32, u64)]) -> f64 {
    let ticks: u64 = after
        .iter()
        .map(|(pid, t)| {
            let t0 = before
                .iter()
                .find(|(p, _)| p == pid)
                .map_or(0, |(_, t0)| *t0);
            t.saturating_sub(t0)
        })
        .sum();
    ticks as f64 / ticks_per_second() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let text = "1234 (gloam (io) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 3 0 \
                    100 1000 200 18446744073709551615\n";
        let st = parse_stat(text).expect("parses");
        assert_eq!(
            st,
            StatTimes {
                ppid: 1,
                utime: 250,
                stime: 37
            }
        );
    }

    #[test]
    fn rejects_malformed_stat() {
        assert!(parse_stat("no parens at all").is_err());
        assert!(parse_stat("1 (x) S 1 2").is_err());
        assert!(parse_stat("1 (x) S one 1 1 0 -1 0 0 0 0 0 5 6").is_err());
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(read_stat(me).is_ok());
        assert!(peak_rss_kib(me).expect("VmHWM") > 0);
        assert!(with_descendants(me).contains(&me));
    }

    #[test]
    fn parses_status_lines() {
        let text = "Name:\tgloam\nVmPeak:\t  9000 kB\nVmHWM:\t    4242 kB\n";
        assert_eq!(parse_status_kib(text, "VmHWM"), Some(4242));
        assert_eq!(parse_status_kib(text, "VmRSS"), None);
    }

    #[test]
    fn cpu_delta_counts_new_pids_from_zero() {
        let tps = ticks_per_second() as f64;
        let d = cpu_seconds_between(&[(1, 10), (2, 5)], &[(1, 30), (3, 7)]);
        assert!((d - 27.0 / tps).abs() < 1e-9);
    }
}
