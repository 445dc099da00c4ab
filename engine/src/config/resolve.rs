//! Resolution of a file as written into a [`Config`]: defaults, absolute paths, function ids,
//! and the checks of the `[engine]` table (each error names its key).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gloam_core::ipc_root::IpcPaths;
use gloam_core::protocol::{validate_function_name, CallId, DEFAULT_MAX_PAYLOAD};

use super::function::resolve_function;
use super::model::{
    Config, ConfigError, EngineConfig, Transport, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_HUNG_GRACE, DEFAULT_IDLE_TIMEOUT, DEFAULT_IO_THREADS,
    DEFAULT_LISTEN, DEFAULT_PIPELINE_BELOW, DEFAULT_QUEUE_BOUND, DEFAULT_QUEUE_TARGET,
    DEFAULT_TIMEOUT, MAX_IO_THREADS, MAX_PIPELINE_BELOW,
};
use super::programs::expand_programs;
use super::read::{toml_key, RawEngine, RawFile};
use crate::cluster::wire::MAX_TOKEN;

pub(super) fn engine_key(key: &str) -> String {
    format!("engine.{key}")
}

pub(super) fn function_key(name: &str, key: &str) -> String {
    format!("functions.{}.{key}", toml_key(name))
}

/// Makes `path` absolute against `base` and drops `.` components (`..` is kept: resolving it
/// lexically would be wrong across symlinks).
pub(super) fn absolute(base: &Path, path: &Path) -> PathBuf {
    base.join(path).components().collect()
}

/// The directory of `source`, absolute.
pub(super) fn config_dir(source: &Path) -> Result<PathBuf, ConfigError> {
    let parent = source.parent().unwrap_or(Path::new(""));
    if parent.is_absolute() {
        return Ok(parent.components().collect());
    }
    let cwd = std::env::current_dir().map_err(|e| {
        ConfigError::new(
            source,
            None,
            format!("cannot resolve relative paths: the current directory is unavailable: {e}"),
        )
    })?;
    Ok(absolute(&cwd, parent))
}

pub(super) fn no_nul(
    source: &Path,
    key: impl FnOnce() -> String,
    value: &str,
) -> Result<(), ConfigError> {
    if value.contains('\0') {
        return Err(ConfigError::at(source, key(), "contains a NUL byte"));
    }
    Ok(())
}

pub(super) fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

pub(super) fn resolve(mut raw: RawFile, source: &Path) -> Result<Config, ConfigError> {
    let base = config_dir(source)?;
    expand_programs(
        std::mem::take(&mut raw.programs),
        &mut raw.functions,
        source,
    )?;
    let engine = resolve_engine(raw.engine, source, &base)?;
    let async_calls = super::async_calls::resolve_async(raw.async_calls, source, &base)?;
    if raw.functions.is_empty() {
        return Err(ConfigError::new(
            source,
            None,
            "no functions: add at least one [functions.<Name>] table (or a [[programs]] entry)",
        ));
    }

    // Explicit ids first, in sorted-name order, so the duplicate is reported on the later name.
    let mut taken: BTreeMap<u16, &str> = BTreeMap::new();
    for (name, function) in &raw.functions {
        validate_function_name(name).map_err(|reason| {
            ConfigError::at(source, format!("functions.{}", toml_key(name)), reason)
        })?;
        let Some(id) = function.id else { continue };
        let id = u16::try_from(id)
            .ok()
            .filter(|id| (1..=CallId::MAX_FUNCTION).contains(id))
            .ok_or_else(|| {
                ConfigError::at(
                    source,
                    function_key(name, "id"),
                    format!("{id} is out of range; ids are 1..={}", CallId::MAX_FUNCTION),
                )
            })?;
        if let Some(other) = taken.insert(id, name) {
            return Err(ConfigError::at(
                source,
                function_key(name, "id"),
                format!("id {id} is already used by function {other}"),
            ));
        }
    }
    let explicit: BTreeSet<u16> = taken.keys().copied().collect();
    let mut free = (1..=CallId::MAX_FUNCTION).filter(|id| !explicit.contains(id));

    let mut functions = Vec::with_capacity(raw.functions.len());
    for (name, function) in raw.functions {
        let id = match function.id {
            // Checked above.
            Some(id) => u16::try_from(id).unwrap_or(0),
            None => free.next().ok_or_else(|| {
                ConfigError::at(
                    source,
                    format!("functions.{}", toml_key(&name)),
                    format!(
                        "no free function id left (at most {})",
                        CallId::MAX_FUNCTION
                    ),
                )
            })?,
        };
        functions.push(resolve_function(
            name, id, function, &engine, source, &base,
        )?);
    }
    functions.sort_by_key(|f| f.id);
    Ok(Config {
        engine,
        functions,
        async_calls,
        source: source.to_path_buf(),
    })
}

fn resolve_engine(raw: RawEngine, source: &Path, base: &Path) -> Result<EngineConfig, ConfigError> {
    let io_threads = match raw.io_threads {
        None => DEFAULT_IO_THREADS,
        Some(n) => {
            let n = to_usize(u64::from(n));
            if !(1..=MAX_IO_THREADS).contains(&n) {
                return Err(ConfigError::at(
                    source,
                    engine_key("io_threads"),
                    format!("{n} is out of range; must be 1..={MAX_IO_THREADS}"),
                ));
            }
            n
        }
    };
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        ConfigError::at(
            source,
            engine_key("listen"),
            format!("{listen_text:?} is not an address like \"127.0.0.1:8080\" or \"[::1]:8080\""),
        )
    })?;
    let queue_bound = match raw.queue_bound {
        None => DEFAULT_QUEUE_BOUND,
        Some(0) => {
            return Err(ConfigError::at(
                source,
                engine_key("queue_bound"),
                "must be at least 1",
            ))
        }
        Some(n) => to_usize(n),
    };
    let queue_target = match raw.queue_target_ms {
        None => Some(DEFAULT_QUEUE_TARGET),
        Some(0) => None,
        Some(ms) => Some(check_timeout(ms, source, || engine_key("queue_target_ms"))?),
    };
    let max_payload = match raw.max_payload {
        None => DEFAULT_MAX_PAYLOAD,
        Some(n) => check_payload(n, source, || engine_key("max_payload"))?,
    };
    let default_timeout = match raw.default_timeout_ms {
        None => DEFAULT_TIMEOUT,
        Some(ms) => check_timeout(ms, source, || engine_key("default_timeout_ms"))?,
    };
    let drain_timeout = raw
        .drain_timeout_ms
        .map_or(DEFAULT_DRAIN_TIMEOUT, Duration::from_millis);
    let ipc_root = match raw.ipc_root {
        None => IpcPaths::default_root(),
        Some(p) if p.as_os_str().is_empty() => {
            return Err(ConfigError::at(source, engine_key("ipc_root"), "is empty"))
        }
        Some(p) => absolute(base, &p),
    };
    let log_dir = match raw.log_dir {
        None => base.join("logs"),
        Some(p) if p.as_os_str().is_empty() => {
            return Err(ConfigError::at(source, engine_key("log_dir"), "is empty"))
        }
        Some(p) => absolute(base, &p),
    };
    let transport = match raw.transport.as_deref() {
        None => Transport::default(),
        Some("ring") => Transport::Ring,
        Some("fifo") => Transport::Fifo,
        Some(other) => {
            return Err(ConfigError::at(
                source,
                engine_key("transport"),
                format!("{other:?} is not a transport; use \"ring\" or \"fifo\""),
            ))
        }
    };
    let max_connections = match raw.max_connections {
        None => None,
        Some(0) => {
            return Err(ConfigError::at(
                source,
                engine_key("max_connections"),
                "must be at least 1",
            ))
        }
        Some(n) => Some(to_usize(n)),
    };
    let header_read_timeout = match raw.header_read_timeout_ms {
        None => DEFAULT_HEADER_READ_TIMEOUT,
        Some(ms) => check_timeout(ms, source, || engine_key("header_read_timeout_ms"))?,
    };
    let idle_timeout = match raw.idle_timeout_ms {
        None => DEFAULT_IDLE_TIMEOUT,
        Some(ms) => check_timeout(ms, source, || engine_key("idle_timeout_ms"))?,
    };
    let hung_grace = match raw.hung_grace_ms {
        None => DEFAULT_HUNG_GRACE,
        Some(ms) => check_timeout(ms, source, || engine_key("hung_grace_ms"))?,
    };
    let pipeline_below = match raw.pipeline_below_us {
        None => DEFAULT_PIPELINE_BELOW,
        Some(us) if Duration::from_micros(us) > MAX_PIPELINE_BELOW => {
            return Err(ConfigError::at(
                source,
                engine_key("pipeline_below_us"),
                format!(
                    "{us} is above the largest value, {} (0 turns pipelining off)",
                    MAX_PIPELINE_BELOW.as_micros()
                ),
            ))
        }
        Some(us) => Duration::from_micros(us),
    };
    let grpc_listen = match raw.grpc_listen.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
            ConfigError::at(
                source,
                engine_key("grpc_listen"),
                format!("{text:?} is not an address like \"127.0.0.1:50051\""),
            )
        })?),
    };
    let tls = match (raw.tls_cert, raw.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(super::model::TlsConfig {
            cert: absolute(base, &cert),
            key: absolute(base, &key),
        }),
        (Some(_), None) => {
            return Err(ConfigError::at(
                source,
                engine_key("tls_key"),
                "is missing: tls_cert needs its private key",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::at(
                source,
                engine_key("tls_cert"),
                "is missing: tls_key needs its certificate",
            ))
        }
    };
    let join = match raw.join {
        None => None,
        Some(j) => Some(check_join(&j, source, || engine_key("join"))?),
    };
    if let Some(t) = &raw.join_token {
        if t.is_empty() || t.len() > MAX_TOKEN {
            return Err(ConfigError::at(
                source,
                engine_key("join_token"),
                format!("must be 1..={MAX_TOKEN} bytes"),
            ));
        }
    }
    let join_ca = match raw.join_ca {
        None => None,
        Some(p) if p.as_os_str().is_empty() => {
            return Err(ConfigError::at(source, engine_key("join_ca"), "is empty"))
        }
        Some(p) => Some(absolute(base, &p)),
    };
    if let Some(n) = &raw.node_name {
        if n.is_empty() || n.len() > 255 {
            return Err(ConfigError::at(
                source,
                engine_key("node_name"),
                "must be 1..=255 bytes",
            ));
        }
    }
    Ok(EngineConfig {
        grpc_listen,
        tls,
        join,
        join_token: raw.join_token,
        join_ca,
        node_name: raw.node_name,
        hung_grace,
        pipeline_below,
        max_connections,
        header_read_timeout,
        idle_timeout,
        transport,
        direct_calls: raw.direct_calls.unwrap_or(true),
        isolation: super::isolation::resolve_engine_isolation(raw.isolation.as_deref(), source)?,
        cgroup_parent: super::isolation::resolve_cgroup_parent(raw.cgroup_parent, source)?,
        ipc_root,
        io_threads,
        listen,
        queue_bound,
        queue_target,
        max_payload,
        default_timeout,
        drain_timeout,
        log_dir,
    })
}

/// Checks a gateway address `host:port` (a name or an address, with a port).
pub(crate) fn check_join(
    text: &str,
    source: &Path,
    key: impl FnOnce() -> String,
) -> Result<String, ConfigError> {
    let ok = text
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        return Err(ConfigError::at(
            source,
            key(),
            format!("{text:?} is not a gateway address like \"gateway:7070\" or \"10.0.0.5:7070\""),
        ));
    }
    Ok(text.to_string())
}

pub(super) fn check_payload(
    n: u64,
    source: &Path,
    key: impl FnOnce() -> String,
) -> Result<u64, ConfigError> {
    if n == 0 || n > u64::from(u32::MAX) {
        return Err(ConfigError::at(
            source,
            key(),
            format!("{n} is out of range; must be 1..={}", u32::MAX),
        ));
    }
    Ok(n)
}

pub(super) fn check_timeout(
    ms: u64,
    source: &Path,
    key: impl FnOnce() -> String,
) -> Result<Duration, ConfigError> {
    if ms == 0 {
        return Err(ConfigError::at(source, key(), "must be at least 1 ms"));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
