//! Reading a `gloam.toml`: the file as written (serde structs that refuse unknown keys) and
//! TOML and type errors turned into `<file>: <key path>: <reason>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::model::{Config, ConfigError};
use super::resolve::resolve;

impl Config {
    /// Reads and resolves a `gloam.toml`. Relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, None, format!("cannot read the file: {e}")))?;
        Config::parse(&text, path)
    }

    /// Parses and resolves the text of a `gloam.toml`. `source` names the file in messages and
    /// anchors relative paths (its directory; made absolute against the current directory).
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
        let raw: RawFile = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| toml_error(source, text, e))?;
        resolve(raw, source)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) engine: RawEngine,
    #[serde(default)]
    pub(super) functions: BTreeMap<String, RawFunction>,
    #[serde(default, rename = "async")]
    pub(super) async_calls: super::async_calls::RawAsync,
    #[serde(default)]
    pub(super) programs: Vec<RawProgram>,
}

/// A `[[programs]]` entry: one program serving several functions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProgram {
    pub(super) name: Option<String>,
    pub(super) command: Option<String>,
    #[serde(default)]
    pub(super) args: Vec<String>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) dir: Option<PathBuf>,
    pub(super) build: Option<String>,
    pub(super) watch: Option<Vec<PathBuf>>,
    #[serde(default)]
    pub(super) functions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEngine {
    pub(super) ipc_root: Option<PathBuf>,
    pub(super) io_threads: Option<u32>,
    pub(super) listen: Option<String>,
    pub(super) queue_bound: Option<u64>,
    pub(super) queue_target_ms: Option<u64>,
    pub(super) max_payload: Option<u64>,
    pub(super) default_timeout_ms: Option<u64>,
    pub(super) drain_timeout_ms: Option<u64>,
    pub(super) log_dir: Option<PathBuf>,
    pub(super) transport: Option<String>,
    pub(super) direct_calls: Option<bool>,
    pub(super) max_connections: Option<u64>,
    pub(super) header_read_timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) hung_grace_ms: Option<u64>,
    pub(super) pipeline_below_us: Option<u64>,
    pub(super) grpc_listen: Option<String>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) join: Option<String>,
    pub(super) join_token: Option<String>,
    pub(super) join_ca: Option<PathBuf>,
    pub(super) node_name: Option<String>,
    pub(super) isolation: Option<String>,
    pub(super) cgroup_parent: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFunction {
    pub(super) id: Option<u32>,
    pub(super) command: Option<String>,
    #[serde(default)]
    pub(super) args: Vec<String>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) dir: Option<PathBuf>,
    pub(super) min_workers: Option<u32>,
    pub(super) max_workers: Option<u32>,
    pub(super) workers_per_process: Option<u32>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) start_timeout_ms: Option<u64>,
    pub(super) max_payload: Option<u64>,
    #[serde(default)]
    pub(super) allow_get: bool,
    pub(super) queue_bound: Option<u64>,
    pub(super) queue_target_ms: Option<u64>,
    pub(super) limiter: Option<bool>,
    pub(super) rate_window_ms: Option<u64>,
    pub(super) service_alpha: Option<f64>,
    pub(super) limiter_headroom: Option<f64>,
    pub(super) growth_interval_ms: Option<u64>,
    pub(super) shrink: Option<bool>,
    pub(super) shrink_grace_ms: Option<u64>,
    pub(super) max_relative_queueing_delay: Option<f64>,
    pub(super) grpc_methods: Option<Vec<String>>,
    pub(super) handler: Option<String>,
    pub(super) build: Option<String>,
    pub(super) watch: Option<Vec<PathBuf>>,
    #[serde(default)]
    pub(super) debug: bool,
    /// Set when a `[[programs]]` entry supplied the command (its name, for messages).
    #[serde(skip)]
    pub(super) program: Option<String>,
    #[serde(default)]
    pub(super) idempotent: bool,
    pub(super) isolation: Option<String>,
    pub(super) network: Option<bool>,
    pub(super) rootfs: Option<PathBuf>,
    pub(super) tmp_size: Option<toml::Value>,
    pub(super) sandbox_paths: Option<Vec<PathBuf>>,
    pub(super) memory_limit: Option<toml::Value>,
    pub(super) cpu_limit: Option<toml::Value>,
    pub(super) pids_limit: Option<u64>,
}

/// Turns a deserialization error into `<file>: <key path>: <reason>`, or `<file>: line L,
/// column C: <reason>` when there is no key (a syntax error).
fn toml_error(
    source: &Path,
    text: &str,
    err: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let segments: Vec<String> = err
        .path()
        .iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => toml_key(key),
            serde_path_to_error::Segment::Seq { index } => format!("[{index}]"),
            serde_path_to_error::Segment::Enum { variant } => toml_key(variant),
            serde_path_to_error::Segment::Unknown => "?".to_string(),
        })
        .collect();
    let inner = err.inner();
    let message = inner.message().trim().replace('\n', "; ");
    // serde_path_to_error already records the unknown key as the last path segment.
    if message.starts_with("unknown field `") {
        let reason = match message.split_once(", expected ") {
            Some((_, expected)) => format!("unknown key; expected {expected}"),
            None => "unknown key".to_string(),
        };
        return ConfigError::at(source, join_path(&segments), reason);
    }
    if segments.is_empty() {
        let location = inner.span().map(|span| line_column(text, span.start));
        return ConfigError::new(source, location, format!("invalid TOML: {message}"));
    }
    ConfigError::at(source, join_path(&segments), message)
}

fn join_path(segments: &[String]) -> String {
    segments.join(".").replace(".[", "[")
}

/// A key as TOML would write it: bare when it can be, quoted otherwise (`functions."a.b"`).
pub(super) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn line_column(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::error;

    #[test]
    fn type_errors_name_file_function_and_key() {
        assert_eq!(
            error("[functions.Foo]\nmax_workers = \"x\"\n"),
            "/etc/gloam/gloam.toml: functions.Foo.max_workers: invalid type: string \"x\", expected u32"
        );
        assert_eq!(
            error("[engine]\nio_threads = -1\n[functions.Foo]\n"),
            "/etc/gloam/gloam.toml: engine.io_threads: invalid value: integer `-1`, expected u32"
        );
        assert_eq!(
            error("[functions.Foo]\nenv = { A = 1 }\n"),
            "/etc/gloam/gloam.toml: functions.Foo.env.A: invalid type: integer `1`, expected a string"
        );
        let e = error("[functions.\"a.b\"]\nargs = [1]\n");
        assert!(
            e.starts_with("/etc/gloam/gloam.toml: functions.\"a.b\".args[0]: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = error("[functions.Foo]\ncolour = \"red\"\n");
        assert!(
            e.starts_with(
                "/etc/gloam/gloam.toml: functions.Foo.colour: unknown key; expected one of `id`"
            ),
            "{e}"
        );
        let e = error("[engine]\nthreads = 2\n[functions.Foo]\n");
        assert!(
            e.starts_with("/etc/gloam/gloam.toml: engine.threads: unknown key"),
            "{e}"
        );
        let e = error("[engin]\n[functions.Foo]\n");
        assert!(
            e.starts_with("/etc/gloam/gloam.toml: engin: unknown key"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = error("[functions.Foo]\nid = 1\nmin_workers = = 2\n");
        assert!(
            e.starts_with("/etc/gloam/gloam.toml: line 3, column "),
            "{e}"
        );
        let e = error("[functions.Foo]\nid = 1\nid = 2\n");
        assert!(
            e.starts_with("/etc/gloam/gloam.toml: line 3, column "),
            "{e}"
        );
        assert!(e.contains(": invalid TOML: duplicate key `id`"), "{e}");
    }

    #[test]
    fn load_names_a_missing_file() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let path = dir.path().join("missing.toml");
        let Err(e) = Config::load(&path) else {
            panic!("expected an error");
        };
        assert!(e
            .to_string()
            .starts_with(&format!("{}: cannot read the file", path.display())));
    }
}
