//! The engine's descriptor limit (`RLIMIT_NOFILE`) and how much of it HTTP clients may take.
//!
//! Every HTTP connection holds a descriptor, and so do the engine's own files: each worker's
//! socket (and pipes), the log files a restarted worker process is given, shared-memory payload
//! files, the runtime's own. If clients could take every descriptor, the engine could no longer
//! restart a crashed worker or accept a new one. So at start the engine raises its soft limit
//! to the hard limit ([`raise_nofile_limit`]), and the gateway's connection cap
//! (`engine.max_connections`) stays below the limit by a [`reserve`] sized from the deployment
//! ([`connection_cap`]).
//!
//! ```
//! use gloam_engine::descriptors::{connection_cap, CapSource};
//!
//! // 20000 descriptors, 448 kept for the engine: the default cap is the rest.
//! let cap = connection_cap(None, 20_000, 448);
//! assert_eq!((cap.max, cap.source), (19_552, CapSource::Derived));
//! // A configured cap that would eat into the reserve is lowered.
//! let cap = connection_cap(Some(50_000), 20_000, 448);
//! assert_eq!(cap.source, CapSource::Lowered { configured: 50_000 });
//! ```

use std::io;

use crate::config::Config;

/// Descriptors kept for the engine whatever the deployment: the runtime (epoll, signal pipes,
/// timers), the listening sockets, the IPC root, stdio, transient payload and log files.
pub const RESERVE_BASE: usize = 256;
/// Descriptors kept per logical worker a deployment may run (`max_workers` summed over the
/// functions): its socket, its two pipe ends or ring region, its process's output pipes and log
/// files (held while it runs: the launcher copies the output), and those of a restart.
pub const RESERVE_PER_WORKER: usize = 8;
/// Largest default cap, however high the limit: each open connection costs memory too.
pub const MAX_DERIVED_CONNECTIONS: usize = 65_536;
/// Smallest cap the gateway runs with, even when the limit leaves less beside the reserve.
pub const MIN_CONNECTIONS: usize = 16;
/// Soft limit aimed at when the hard limit is unlimited (Linux never allows more open files
/// than `fs.nr_open`, 1048576 by default).
const UNLIMITED_TARGET: u64 = 1 << 20;

/// The process's descriptor limit after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit now in force: the most descriptors the process may hold.
    pub soft: u64,
    /// The soft limit before, when it was raised.
    pub raised_from: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (worker processes inherit it). Returns the
/// limit in force; an error when it cannot even be read.
pub fn raise_nofile_limit() -> io::Result<NofileLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        UNLIMITED_TARGET
    } else {
        lim.rlim_max
    };
    if before != libc::RLIM_INFINITY && before < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one `rlimit` through a pointer to a live local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(NofileLimit {
                soft: target,
                raised_from: Some(before),
            });
        }
        tracing::warn!(
            soft = before,
            hard = lim.rlim_max,
            error = %io::Error::last_os_error(),
            "cannot raise the descriptor limit (RLIMIT_NOFILE) to the hard limit"
        );
    }
    Ok(NofileLimit {
        soft: before,
        raised_from: None,
    })
}

/// Descriptors the engine keeps for itself: [`RESERVE_BASE`] plus [`RESERVE_PER_WORKER`] per
/// logical worker the deployment may run.
pub fn reserve(config: &Config) -> usize {
    let workers: usize = config.functions.iter().map(|f| f.max_workers).sum();
    RESERVE_BASE.saturating_add(workers.saturating_mul(RESERVE_PER_WORKER))
}

/// How the connection cap was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapSource {
    /// `engine.max_connections` as configured.
    Configured,
    /// No `engine.max_connections`: the limit minus the reserve (within
    /// [`MIN_CONNECTIONS`]..=[`MAX_DERIVED_CONNECTIONS`]).
    Derived,
    /// `engine.max_connections` would have left less than the reserve: lowered.
    Lowered {
        /// The configured value.
        configured: usize,
    },
}

/// The gateway's connection cap and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCap {
    /// Most connections open at once.
    pub max: usize,
    /// How it was chosen.
    pub source: CapSource,
}

/// The connection cap for a configured `max_connections` (if any), a descriptor `limit` and a
/// `reserve`: never more than `limit - reserve` (but at least [`MIN_CONNECTIONS`]).
pub fn connection_cap(configured: Option<usize>, limit: u64, reserve: usize) -> ConnectionCap {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let room = limit.saturating_sub(reserve).max(MIN_CONNECTIONS);
    match configured {
        None => ConnectionCap {
            max: room.min(MAX_DERIVED_CONNECTIONS),
            source: CapSource::Derived,
        },
        Some(n) if n <= room => ConnectionCap {
            max: n,
            source: CapSource::Configured,
        },
        Some(n) => ConnectionCap {
            max: room,
            source: CapSource::Lowered { configured: n },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_cap_keeps_the_reserve() {
        let derived = |limit| connection_cap(None, limit, 300);
        assert_eq!(derived(1024).max, 724);
        assert_eq!(derived(1 << 20).max, MAX_DERIVED_CONNECTIONS);
        // A limit below the reserve still lets a few clients in.
        assert_eq!(derived(100).max, MIN_CONNECTIONS);
        assert_eq!(
            connection_cap(Some(50), 1024, 300),
            ConnectionCap {
                max: 50,
                source: CapSource::Configured
            }
        );
        assert_eq!(
            connection_cap(Some(5000), 1024, 300),
            ConnectionCap {
                max: 724,
                source: CapSource::Lowered { configured: 5000 }
            }
        );
    }

    #[test]
    fn the_reserve_grows_with_the_workers() -> anyhow::Result<()> {
        let config = Config::parse(
            "[functions.A]\nmax_workers = 10\n[functions.B]\nmax_workers = 2\n",
            Path::new("/t/gloam.toml"),
        )?;
        assert_eq!(reserve(&config), RESERVE_BASE + 12 * RESERVE_PER_WORKER);
        Ok(())
    }

    #[test]
    fn raising_the_limit_reaches_the_hard_limit() -> anyhow::Result<()> {
        let limit = raise_nofile_limit()?;
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_nofile_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, limit.soft);
        assert!(lim.rlim_cur == lim.rlim_max || lim.rlim_max == libc::RLIM_INFINITY);
        Ok(())
    }
}
