//! The isolation keys of a function (`isolation`, `network`, `rootfs`, `tmp_size`,
//! `sandbox_paths`) and its resource limits (`memory_limit`, `cpu_limit`, `pids_limit`).
//!
//! What they mean at run time is in `launcher/sandbox.rs` (the bubblewrap command and the
//! checks at start), `launcher/cgroup/` (the limits as cgroups) and `launcher/supervise.rs`
//! (joining the cgroup, or the rlimits without one); this module only reads and checks them,
//! and `engine.cgroup_parent`, naming the key.

use std::path::{Path, PathBuf};

use super::model::ConfigError;
use super::resolve::{absolute, engine_key, function_key};

/// How a function's worker processes are isolated from the rest of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// A plain process of the engine's user (the default).
    #[default]
    Process,
    /// Its own namespaces under bubblewrap: see `docs/architecture.md`, "Isolation".
    Sandbox,
}

impl Isolation {
    /// `process` or `sandbox`, as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::Sandbox => "sandbox",
        }
    }
}

/// Default size of a sandbox's private `/tmp`.
pub const DEFAULT_TMP_SIZE: u64 = 64 << 20;

/// Smallest accepted `memory_limit`: below it no language runtime starts.
pub const MIN_MEMORY_LIMIT: u64 = 4 << 20;

/// Resource limits of each worker process of a function (see `docs/architecture.md`,
/// "Isolation", for how each is enforced).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// Most memory in bytes (a cgroup's memory limit, without swap; without cgroups the
    /// address-space limit, `RLIMIT_AS`).
    pub memory: Option<u64>,
    /// CPU quota, in CPUs (0.5 = half of one CPU's time); needs a cgroup (`gloam up` refuses
    /// it without one).
    pub cpu: Option<f64>,
    /// Most processes and threads (a cgroup's `pids.max`; without cgroups, sandbox only:
    /// `RLIMIT_NPROC` in its user namespace).
    pub pids: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.cpu.is_some() || self.pids.is_some()
    }

    /// `memory 64 MiB, cpu 0.5, pids 64`, or `none`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory {
            parts.push(format!("memory {}", size_text(m)));
        }
        if let Some(c) = self.cpu {
            parts.push(format!("cpu {c}"));
        }
        if let Some(p) = self.pids {
            parts.push(format!("pids {p}"));
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// `64 MiB`, `1.5 GiB`, `4096 B`.
pub fn size_text(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB && bytes % (GIB / 10) == 0 {
        format!("{} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} B")
    }
}

/// A function's isolation, resolved.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IsolationConfig {
    /// Process or sandbox.
    pub mode: Isolation,
    /// Sandbox only: keep the host's network (default: a network namespace of its own, with
    /// only a loopback interface).
    pub network: bool,
    /// Sandbox only: a directory shown read-only as `/` instead of the host's root (absolute).
    pub rootfs: Option<PathBuf>,
    /// Sandbox only: the size of the private `/tmp` in bytes.
    pub tmp_size: u64,
    /// More host paths a sandbox shows read-only at the same place (absolute; written
    /// relative to the function's `dir` or absolute), e.g. a Node.js addon required by a
    /// relative path. Without effect on plain processes, which see every path.
    pub sandbox_paths: Vec<PathBuf>,
    /// Limits of each worker process (in both modes).
    pub limits: Limits,
}

/// The isolation keys of a `[functions.<Name>]` table, as written.
#[derive(Debug, Default)]
pub(super) struct RawIsolation {
    pub(super) isolation: Option<String>,
    pub(super) network: Option<bool>,
    pub(super) rootfs: Option<PathBuf>,
    pub(super) tmp_size: Option<toml::Value>,
    pub(super) sandbox_paths: Option<Vec<PathBuf>>,
    pub(super) memory_limit: Option<toml::Value>,
    pub(super) cpu_limit: Option<toml::Value>,
    pub(super) pids_limit: Option<u64>,
}

impl std::str::FromStr for Isolation {
    type Err = String;

    /// `process` or `sandbox`.
    fn from_str(text: &str) -> Result<Isolation, String> {
        mode(text)
    }
}

impl super::Config {
    /// `gloam up --isolation MODE`: every function's workers run in `mode`, whatever the
    /// file says (`engine.isolation` and each function's `isolation`). `process` is refused
    /// when the file sandboxes a function: gloam never runs a function less isolated than its
    /// file says. `flag` names the switch in errors.
    ///
    /// ```
    /// use gloam_engine::config::{Config, Isolation};
    /// use std::path::Path;
    ///
    /// let text = "[functions.A]\ncommand = \"./a\"\n[functions.B]\nisolation = \"process\"\n";
    /// let mut config = Config::parse(text, Path::new("/srv/gloam.toml")).unwrap();
    /// config.override_isolation(Isolation::Sandbox, "--isolation").unwrap();
    /// assert!(config.functions.iter().all(|f| f.isolation.mode == Isolation::Sandbox));
    /// ```
    pub fn override_isolation(&mut self, mode: Isolation, flag: &str) -> Result<(), String> {
        if mode == Isolation::Process {
            let sandboxed: Vec<&str> = self
                .functions
                .iter()
                .filter(|f| f.isolation.mode == Isolation::Sandbox)
                .map(|f| f.name.as_str())
                .collect();
            if !sandboxed.is_empty() {
                return Err(format!(
                    "{flag} process: {} sandboxes {} (isolation = \"sandbox\"); gloam never \
                     runs a function less isolated than its file says: change the file instead",
                    self.source.display(),
                    sandboxed.join(", ")
                ));
            }
        }
        self.engine.isolation = mode;
        for f in &mut self.functions {
            f.isolation.mode = mode;
        }
        Ok(())
    }
}

/// `engine.isolation`: the default of every function.
pub(super) fn resolve_engine_isolation(
    raw: Option<&str>,
    source: &Path,
) -> Result<Isolation, ConfigError> {
    match raw {
        None => Ok(Isolation::default()),
        Some(text) => mode(text).map_err(|r| ConfigError::at(source, engine_key("isolation"), r)),
    }
}

/// `engine.cgroup_parent`: a cgroup path, relative to each hierarchy's root (a leading `/` is
/// allowed and means the same), made of plain names: no `.`, `..` or empty path.
pub(super) fn resolve_cgroup_parent(
    raw: Option<PathBuf>,
    source: &Path,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = raw else {
        return Ok(None);
    };
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::RootDir => {}
            std::path::Component::Normal(name) => clean.push(name),
            _ => {
                return Err(ConfigError::at(
                    source,
                    engine_key("cgroup_parent"),
                    format!(
                        "{} is not a cgroup path like \"gloam\" or \"/system.slice/gloam\" (plain names, no . or ..)",
                        path.display()
                    ),
                ))
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(ConfigError::at(
            source,
            engine_key("cgroup_parent"),
            "is empty or the root; name a group delegated to the engine's user, e.g. \"gloam\"",
        ));
    }
    Ok(Some(clean))
}

fn mode(text: &str) -> Result<Isolation, String> {
    match text {
        "process" => Ok(Isolation::Process),
        "sandbox" => Ok(Isolation::Sandbox),
        other => Err(format!(
            "{other:?} is not an isolation; use \"process\" or \"sandbox\""
        )),
    }
}

/// Resolves one function's isolation keys; `default` is `engine.isolation`, `dir` anchors
/// relative paths.
pub(super) fn resolve_isolation(
    name: &str,
    raw: RawIsolation,
    default: Isolation,
    dir: &Path,
    source: &Path,
) -> Result<IsolationConfig, ConfigError> {
    let key = |k: &str| function_key(name, k);
    let err = |k: &str, reason: String| ConfigError::at(source, key(k), reason);
    let mode = match raw.isolation.as_deref() {
        None => default,
        Some(text) => mode(text).map_err(|r| err("isolation", r))?,
    };
    let sandbox_only = |k: &str, set: bool| -> Result<(), ConfigError> {
        if set && mode != Isolation::Sandbox {
            return Err(err(
                k,
                "applies to sandboxed workers only; set isolation = \"sandbox\" too".to_string(),
            ));
        }
        Ok(())
    };
    sandbox_only("network", raw.network.is_some())?;
    sandbox_only("rootfs", raw.rootfs.is_some())?;
    sandbox_only("tmp_size", raw.tmp_size.is_some())?;
    // `sandbox_paths` only widens what a sandbox shows; a plain process sees everything
    // anyway, so a file may list them for `gloam up --isolation sandbox`.

    let rootfs = match raw.rootfs {
        None => None,
        Some(p) if p.as_os_str().is_empty() => return Err(err("rootfs", "is empty".into())),
        Some(p) => Some(absolute(dir, &p)),
    };
    let tmp_size = match &raw.tmp_size {
        None => DEFAULT_TMP_SIZE,
        Some(v) => match size(v) {
            Ok(0) => return Err(err("tmp_size", "must be more than 0".into())),
            Ok(n) => n,
            Err(r) => return Err(err("tmp_size", r)),
        },
    };
    let mut sandbox_paths = Vec::new();
    for (i, p) in raw.sandbox_paths.unwrap_or_default().iter().enumerate() {
        if p.as_os_str().is_empty() {
            return Err(err(&format!("sandbox_paths[{i}]"), "is empty".into()));
        }
        sandbox_paths.push(absolute(dir, p));
    }
    let memory = match &raw.memory_limit {
        None => None,
        Some(v) => match size(v) {
            Ok(n) if n < MIN_MEMORY_LIMIT => {
                return Err(err(
                    "memory_limit",
                    format!(
                        "{} is below the {} a worker needs",
                        size_text(n),
                        size_text(MIN_MEMORY_LIMIT)
                    ),
                ))
            }
            Ok(n) => Some(n),
            Err(r) => return Err(err("memory_limit", r)),
        },
    };
    let cpu = match &raw.cpu_limit {
        None => None,
        Some(v) => {
            let c = match v {
                toml::Value::Integer(i) => *i as f64,
                toml::Value::Float(f) => *f,
                other => {
                    return Err(err(
                        "cpu_limit",
                        format!("{other} is not a number of CPUs (e.g. 0.5 or 2)"),
                    ))
                }
            };
            if !(c.is_finite() && (0.01..=1024.0).contains(&c)) {
                return Err(err(
                    "cpu_limit",
                    format!("{c} is out of range; a number of CPUs from 0.01 to 1024"),
                ));
            }
            Some(c)
        }
    };
    let pids = match raw.pids_limit {
        None => None,
        Some(0) => return Err(err("pids_limit", "must be at least 1".into())),
        Some(n) => Some(n),
    };
    Ok(IsolationConfig {
        mode,
        network: raw.network.unwrap_or(false),
        rootfs,
        tmp_size,
        sandbox_paths,
        limits: Limits { memory, cpu, pids },
    })
}

/// A size: a number of bytes, or a string with a unit (`"64M"`, `"64MiB"`, `"1G"`, `"512k"`;
/// units are powers of 1024).
fn size(value: &toml::Value) -> Result<u64, String> {
    let text = match value {
        toml::Value::Integer(n) => {
            return u64::try_from(*n).map_err(|_| format!("{n} is negative"));
        }
        toml::Value::String(s) => s.trim(),
        other => return Err(format!("{other} is not a size (bytes, or e.g. \"64M\")")),
    };
    let bad = || format!("{text:?} is not a size like 67108864, \"64M\" or \"1GiB\"");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{error, parse};

    use super::*;

    #[test]
    fn defaults_are_process_without_limits() {
        let c = parse("[functions.A]\n").unwrap();
        let iso = &c.functions[0].isolation;
        assert_eq!(iso.mode, Isolation::Process);
        assert!(!iso.limits.any());
        assert_eq!(iso.tmp_size, DEFAULT_TMP_SIZE);
    }

    #[test]
    fn sandbox_keys_and_limits_resolve() {
        let c = parse(
            "[engine]\nisolation = \"sandbox\"\n[functions.A]\nnetwork = true\nrootfs = \"root\"\n\
             tmp_size = \"16M\"\nsandbox_paths = [\"/opt/./py\"]\nmemory_limit = \"64MiB\"\n\
             cpu_limit = 0.5\npids_limit = 32\n[functions.B]\nisolation = \"process\"\n\
             memory_limit = 8388608\n",
        )
        .unwrap();
        let a = &c.function("A").unwrap().isolation;
        assert_eq!(a.mode, Isolation::Sandbox);
        assert!(a.network);
        assert_eq!(a.rootfs.as_deref(), Some(Path::new("/etc/gloam/root")));
        assert_eq!(a.tmp_size, 16 << 20);
        assert_eq!(a.sandbox_paths, vec![PathBuf::from("/opt/py")]);
        assert_eq!(a.limits.memory, Some(64 << 20));
        assert_eq!(a.limits.cpu, Some(0.5));
        assert_eq!(a.limits.pids, Some(32));
        assert_eq!(a.limits.describe(), "memory 64 MiB, cpu 0.5, pids 32");
        let b = &c.function("B").unwrap().isolation;
        assert_eq!(b.mode, Isolation::Process);
        assert_eq!(b.limits.memory, Some(8 << 20));
    }

    #[test]
    fn cgroup_parent_is_a_relative_cgroup_path() {
        let c = parse("[engine]\ncgroup_parent = \"/gloam/engines\"\n[functions.A]\n").unwrap();
        assert_eq!(
            c.engine.cgroup_parent.as_deref(),
            Some(Path::new("gloam/engines"))
        );
        assert_eq!(parse("[functions.A]\n").unwrap().engine.cgroup_parent, None);
        let e = error("[engine]\ncgroup_parent = \"../escape\"\n[functions.A]\n");
        assert!(
            e.contains("engine.cgroup_parent: ../escape is not a cgroup path"),
            "{e}"
        );
        let e = error("[engine]\ncgroup_parent = \"/\"\n[functions.A]\n");
        assert!(
            e.contains("engine.cgroup_parent: is empty or the root"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = error("[functions.A]\nisolation = \"vm\"\n");
        assert_eq!(
            e,
            "/etc/gloam/gloam.toml: functions.A.isolation: \"vm\" is not an isolation; use \"process\" or \"sandbox\""
        );
        let e = error("[engine]\nisolation = \"jail\"\n[functions.A]\n");
        assert!(e.contains("engine.isolation: \"jail\""), "{e}");
        let e = error("[functions.A]\nnetwork = false\n");
        assert!(
            e.contains("functions.A.network: applies to sandboxed workers only"),
            "{e}"
        );
        let e = error("[functions.A]\nmemory_limit = \"lots\"\n");
        assert!(
            e.contains("functions.A.memory_limit: \"lots\" is not a size"),
            "{e}"
        );
        let e = error("[functions.A]\nmemory_limit = 1000\n");
        assert!(
            e.contains("functions.A.memory_limit: 1000 B is below"),
            "{e}"
        );
        let e = error("[functions.A]\ncpu_limit = 0\n");
        assert!(
            e.contains("functions.A.cpu_limit: 0 is out of range"),
            "{e}"
        );
        let e = error("[functions.A]\npids_limit = 0\n");
        assert!(
            e.contains("functions.A.pids_limit: must be at least 1"),
            "{e}"
        );
        let e = error("[functions.A]\nisolation = \"sandbox\"\nsandbox_paths = [\"\"]\n");
        assert!(e.contains("functions.A.sandbox_paths[0]: is empty"), "{e}");
    }

    #[test]
    fn sandbox_paths_are_relative_to_dir_and_allowed_in_process_mode() {
        let c = parse("[functions.A]\ndir = \"app\"\nsandbox_paths = [\"../lib\", \"/opt/x\"]\n")
            .unwrap();
        let a = &c.function("A").unwrap().isolation;
        assert_eq!(a.mode, Isolation::Process);
        assert_eq!(
            a.sandbox_paths,
            vec![
                PathBuf::from("/etc/gloam/app/../lib"),
                PathBuf::from("/opt/x")
            ]
        );
    }

    #[test]
    fn the_override_sandboxes_every_function_and_never_lowers_isolation() {
        let text = "[functions.A]\n[functions.B]\nisolation = \"process\"\n";
        let mut c = parse(text).unwrap();
        c.override_isolation(Isolation::Sandbox, "--isolation")
            .unwrap();
        assert_eq!(c.engine.isolation, Isolation::Sandbox);
        assert!(c
            .functions
            .iter()
            .all(|f| f.isolation.mode == Isolation::Sandbox));

        let mut c = parse(text).unwrap();
        c.override_isolation(Isolation::Process, "--isolation")
            .unwrap();
        let mut c = parse("[functions.A]\n[functions.S]\nisolation = \"sandbox\"\n").unwrap();
        let e = c
            .override_isolation(Isolation::Process, "--isolation")
            .unwrap_err();
        assert_eq!(
            e,
            "--isolation process: /etc/gloam/gloam.toml sandboxes S (isolation = \"sandbox\"); \
             gloam never runs a function less isolated than its file says: change the file instead"
        );
        assert_eq!("sandbox".parse::<Isolation>(), Ok(Isolation::Sandbox));
        assert!("vm"
            .parse::<Isolation>()
            .unwrap_err()
            .contains("\"vm\" is not an isolation"));
    }
}
