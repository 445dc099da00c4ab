//! Resolution of one `[functions.<Name>]` table: its defaults (some from `[engine]`), paths,
//! environment, pool bounds and managed-concurrency settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gloam_core::protocol::CallId;
use gloam_core::worker::{ENV_FUNCTION, ENV_HANDLER, ENV_IPC_ROOT, ENV_WORKERS, ENV_WORKER_SECRET};

use super::isolation::{resolve_isolation, RawIsolation};
use super::model::{
    ConfigError, EngineConfig, FunctionConfig, DEFAULT_MAX_WORKERS, DEFAULT_START_TIMEOUT,
    ENV_PROCESS_INDEX, GRPC_PREFIX, MAX_GRPC_METHODS,
};
use super::read::{toml_key, RawFunction};
use super::resolve::{absolute, check_payload, check_timeout, function_key, no_nul, to_usize};
use crate::launcher::ENV_DEBUG;
use crate::limiter::LimiterConfig;

pub(super) fn resolve_function(
    name: String,
    id: u16,
    raw: RawFunction,
    engine: &EngineConfig,
    source: &Path,
    base: &Path,
) -> Result<FunctionConfig, ConfigError> {
    let key = |k: &str| function_key(&name, k);

    let dir = match &raw.dir {
        None => base.to_path_buf(),
        Some(p) if p.as_os_str().is_empty() => {
            return Err(ConfigError::at(source, key("dir"), "is empty"))
        }
        Some(p) => absolute(base, p),
    };
    let command = match raw.command {
        None => None,
        Some(c) if c.trim().is_empty() => {
            return Err(ConfigError::at(source, key("command"), "is empty"))
        }
        Some(c) => {
            no_nul(source, || key("command"), &c)?;
            if c.contains('/') {
                Some(absolute(&dir, Path::new(&c)))
            } else {
                Some(PathBuf::from(c))
            }
        }
    };
    for (i, arg) in raw.args.iter().enumerate() {
        no_nul(source, || format!("{}[{i}]", key("args")), arg)?;
    }
    let reserved = [
        ENV_FUNCTION,
        ENV_IPC_ROOT,
        ENV_WORKERS,
        ENV_PROCESS_INDEX,
        ENV_DEBUG,
        ENV_WORKER_SECRET,
    ];
    let mut env = raw.env;
    if let Some(handler) = raw.handler {
        if handler.trim().is_empty() {
            return Err(ConfigError::at(source, key("handler"), "is empty"));
        }
        no_nul(source, || key("handler"), &handler)?;
        if env.contains_key(ENV_HANDLER) {
            return Err(ConfigError::at(
                source,
                key("handler"),
                format!("env.{ENV_HANDLER} says the same: keep one"),
            ));
        }
        env.insert(ENV_HANDLER.to_string(), handler);
    }
    let build = match raw.build {
        None => None,
        Some(b) if b.trim().is_empty() => {
            return Err(ConfigError::at(source, key("build"), "is empty"))
        }
        Some(b) => {
            no_nul(source, || key("build"), &b)?;
            Some(b)
        }
    };
    let watch = match raw.watch {
        None => vec![dir.clone()],
        Some(paths) => paths.iter().map(|p| absolute(&dir, p)).collect(),
    };
    for (var, value) in &env {
        let var_key = || format!("{}.{}", key("env"), toml_key(var));
        if var.is_empty() || var.contains('=') || var.contains('\0') {
            return Err(ConfigError::at(
                source,
                var_key(),
                "is not a valid environment variable name",
            ));
        }
        if reserved.contains(&var.as_str()) {
            return Err(ConfigError::at(
                source,
                var_key(),
                "is set by the launcher and cannot be configured",
            ));
        }
        no_nul(source, var_key, value)?;
    }

    let min_workers = raw.min_workers.map_or(1, |n| to_usize(u64::from(n)));
    let max_workers = match raw.max_workers {
        None => min_workers.max(DEFAULT_MAX_WORKERS),
        Some(0) => {
            return Err(ConfigError::at(
                source,
                key("max_workers"),
                "must be at least 1",
            ))
        }
        Some(n) => {
            let n = to_usize(u64::from(n));
            if n < min_workers {
                return Err(ConfigError::at(
                    source,
                    key("max_workers"),
                    format!("{n} is less than min_workers ({min_workers})"),
                ));
            }
            n
        }
    };
    let max_logical = usize::try_from(CallId::MAX_CALLER).unwrap_or(usize::MAX);
    if max_workers > max_logical {
        let which = if raw.max_workers.is_some() {
            "max_workers"
        } else {
            "min_workers"
        };
        return Err(ConfigError::at(
            source,
            key(which),
            format!("{max_workers} is more than the {max_logical} workers a node can address"),
        ));
    }
    let workers_per_process = match raw.workers_per_process {
        None => 1,
        Some(0) => {
            return Err(ConfigError::at(
                source,
                key("workers_per_process"),
                "must be at least 1",
            ))
        }
        Some(n) => to_usize(u64::from(n)),
    };
    // The pool counts whole processes: never more logical workers than max_workers (a default
    // max_workers grows to hold min_workers' processes).
    let processes = min_workers.div_ceil(workers_per_process);
    let max_workers = match raw.max_workers {
        None => max_workers.max(processes * workers_per_process),
        Some(_) => max_workers,
    };
    if workers_per_process > max_workers || processes > max_workers / workers_per_process {
        return Err(ConfigError::at(
            source,
            key("workers_per_process"),
            format!(
                "{workers_per_process} workers per process: min_workers ({min_workers}) needs {} \
                 processes, more than max_workers ({max_workers}) allows; make max_workers at \
                 least {}",
                processes.max(1),
                processes.max(1) * workers_per_process
            ),
        ));
    }
    let timeout = match raw.timeout_ms {
        None => engine.default_timeout,
        Some(ms) => check_timeout(ms, source, || key("timeout_ms"))?,
    };
    let max_payload = match raw.max_payload {
        None => engine.max_payload,
        Some(n) => {
            let n = check_payload(n, source, || key("max_payload"))?;
            if n > engine.max_payload {
                return Err(ConfigError::at(
                    source,
                    key("max_payload"),
                    format!(
                        "{n} is above engine.max_payload ({}); raise that first",
                        engine.max_payload
                    ),
                ));
            }
            n
        }
    };
    let start_timeout = match raw.start_timeout_ms {
        None => DEFAULT_START_TIMEOUT,
        Some(ms) => check_timeout(ms, source, || key("start_timeout_ms"))?,
    };
    let queue_target = match raw.queue_target_ms {
        None => engine.queue_target,
        Some(0) => None,
        Some(ms) => Some(check_timeout(ms, source, || key("queue_target_ms"))?),
    };
    let queue_bound = match raw.queue_bound {
        None => engine.queue_bound,
        Some(0) => {
            return Err(ConfigError::at(
                source,
                key("queue_bound"),
                "must be at least 1",
            ))
        }
        Some(n) => to_usize(n),
    };

    let defaults = LimiterConfig::default();
    let millis = |v: Option<u64>, name: &str, default: Duration| -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(0) => Err(ConfigError::at(source, key(name), "must be at least 1")),
            Some(ms) => Ok(Duration::from_millis(ms)),
        }
    };
    let service_alpha = match raw.service_alpha {
        None => defaults.service_alpha,
        Some(a) if a > 0.0 && a <= 1.0 => a,
        Some(a) => {
            return Err(ConfigError::at(
                source,
                key("service_alpha"),
                format!("{a} is not in (0, 1]"),
            ))
        }
    };
    let max_relative_queueing_delay = match raw.max_relative_queueing_delay {
        None => defaults.max_relative_queueing_delay,
        Some(k) if k >= 0.0 && k.is_finite() => k,
        Some(k) => {
            return Err(ConfigError::at(
                source,
                key("max_relative_queueing_delay"),
                format!("{k} must be a number >= 0 (0 = never shed)"),
            ))
        }
    };
    let headroom = match raw.limiter_headroom {
        None => defaults.headroom,
        Some(h) if h.is_finite() && h >= 1.0 => h,
        Some(h) => {
            return Err(ConfigError::at(
                source,
                key("limiter_headroom"),
                format!("{h} must be a number >= 1"),
            ))
        }
    };
    let shrink_grace = millis(
        raw.shrink_grace_ms,
        "shrink_grace_ms",
        defaults.shrink_grace.unwrap_or(Duration::from_secs(10)),
    )?;
    let concurrency = LimiterConfig {
        enabled: raw.limiter.unwrap_or(defaults.enabled),
        rate_window: millis(raw.rate_window_ms, "rate_window_ms", defaults.rate_window)?,
        service_alpha,
        headroom,
        growth_interval: millis(
            raw.growth_interval_ms,
            "growth_interval_ms",
            defaults.growth_interval,
        )?,
        shrink_grace: raw.shrink.unwrap_or(true).then_some(shrink_grace),
        max_relative_queueing_delay,
        min_workers,
        max_workers,
    };

    let grpc_methods = grpc_methods(&name, raw.grpc_methods, source)?;
    let isolation = resolve_isolation(
        &name,
        RawIsolation {
            isolation: raw.isolation,
            network: raw.network,
            rootfs: raw.rootfs,
            tmp_size: raw.tmp_size,
            sandbox_paths: raw.sandbox_paths,
            memory_limit: raw.memory_limit,
            cpu_limit: raw.cpu_limit,
            pids_limit: raw.pids_limit,
        },
        engine.isolation,
        &dir,
        source,
    )?;
    Ok(FunctionConfig {
        grpc_methods,
        concurrency,
        name,
        id,
        command,
        args: raw.args,
        env,
        build,
        watch,
        debug: raw.debug,
        program: raw.program,
        dir,
        min_workers,
        max_workers,
        workers_per_process,
        timeout,
        max_payload,
        allow_get: raw.allow_get,
        queue_bound,
        queue_target,
        idempotent: raw.idempotent,
        start_timeout,
        isolation,
    })
}

/// Checks `grpc_methods`: required (non-empty) for a `grpc:<Service>` function, refused for
/// any other; names valid and unique.
fn grpc_methods(
    name: &str,
    methods: Option<Vec<String>>,
    source: &Path,
) -> Result<Vec<String>, ConfigError> {
    let key = || function_key(name, "grpc_methods");
    let grpc = name.starts_with(GRPC_PREFIX);
    let methods = match (grpc, methods) {
        (false, None) => return Ok(Vec::new()),
        (false, Some(_)) => {
            return Err(ConfigError::at(
                source,
                key(),
                format!("only a function named {GRPC_PREFIX}<Service> has gRPC methods"),
            ))
        }
        (true, None) => {
            return Err(ConfigError::at(
                source,
                key(),
                "is missing: a gRPC service lists its methods (the index is the method id)",
            ))
        }
        (true, Some(m)) => m,
    };
    if name.len() == GRPC_PREFIX.len() {
        return Err(ConfigError::at(
            source,
            function_key(name, ""),
            "names no service after grpc:",
        ));
    }
    if methods.is_empty() || methods.len() > MAX_GRPC_METHODS {
        return Err(ConfigError::at(
            source,
            key(),
            format!("must list 1 to {MAX_GRPC_METHODS} methods"),
        ));
    }
    for (i, m) in methods.iter().enumerate() {
        gloam_core::table::validate_method_name(m)
            .map_err(|reason| ConfigError::at(source, format!("{}[{i}]", key()), reason))?;
        if methods[..i].contains(m) {
            return Err(ConfigError::at(
                source,
                format!("{}[{i}]", key()),
                format!("method {m} is listed twice"),
            ));
        }
    }
    Ok(methods)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{error, parse};

    #[test]
    fn grpc_methods_are_checked() {
        let c = parse("[functions.\"grpc:shop.Cart\"]\ngrpc_methods = [\"Add\", \"Get\"]\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.functions[0].grpc_methods, ["Add", "Get"]);
        let cases = [
            (
                "[functions.A]\ngrpc_methods = [\"X\"]\n",
                "functions.A.grpc_methods: only a function named grpc:<Service>",
            ),
            (
                "[functions.\"grpc:S\"]\n",
                "functions.\"grpc:S\".grpc_methods: is missing",
            ),
            (
                "[functions.\"grpc:S\"]\ngrpc_methods = []\n",
                "must list 1 to 1024 methods",
            ),
            (
                "[functions.\"grpc:S\"]\ngrpc_methods = [\"A\", \"A\"]\n",
                "grpc_methods[1]: method A is listed twice",
            ),
            (
                "[functions.\"grpc:S\"]\ngrpc_methods = [\"a b\"]\n",
                "grpc_methods[0]: method name \"a b\" has the character ' '",
            ),
        ];
        for (text, want) in cases {
            let e = error(text);
            assert!(e.contains(want), "for {text:?}:\n got {e}\nwant {want}");
        }
    }

    #[test]
    fn function_semantic_errors() {
        let cases = [
            (
                "[functions.A]\nmin_workers = 5\nmax_workers = 2\n",
                "/etc/gloam/gloam.toml: functions.A.max_workers: 2 is less than min_workers (5)",
            ),
            (
                "[functions.A]\nmax_workers = 0\n",
                "/etc/gloam/gloam.toml: functions.A.max_workers: must be at least 1",
            ),
            (
                "[functions.A]\nworkers_per_process = 0\n",
                "/etc/gloam/gloam.toml: functions.A.workers_per_process: must be at least 1",
            ),
            (
                "[functions.A]\nmin_workers = 3\nmax_workers = 3\nworkers_per_process = 2\n",
                "/etc/gloam/gloam.toml: functions.A.workers_per_process: 2 workers per process: \
                 min_workers (3) needs 2 processes, more than max_workers (3) allows; make \
                 max_workers at least 4",
            ),
            (
                "[engine]\nmax_payload = 100\n[functions.A]\nmax_payload = 101\n",
                "/etc/gloam/gloam.toml: functions.A.max_payload: 101 is above engine.max_payload (100)",
            ),
            (
                "[functions.A]\nqueue_bound = 0\n",
                "/etc/gloam/gloam.toml: functions.A.queue_bound: must be at least 1",
            ),
            (
                "[functions.A]\ntimeout_ms = 0\n",
                "/etc/gloam/gloam.toml: functions.A.timeout_ms: must be at least 1 ms",
            ),
            (
                "[functions.A]\ncommand = \"\"\n",
                "/etc/gloam/gloam.toml: functions.A.command: is empty",
            ),
            (
                "[functions.A]\nenv = { GLOAM_FUNCTION = \"x\" }\n",
                "/etc/gloam/gloam.toml: functions.A.env.GLOAM_FUNCTION: is set by the launcher",
            ),
        ];
        for (text, expected) in cases {
            let e = error(text);
            assert!(
                e.starts_with(expected),
                "for {text:?}:\n got {e}\nwant {expected}"
            );
        }
    }
}
