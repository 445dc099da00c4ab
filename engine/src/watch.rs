//! `gloam up --watch`: watches each function's sources (its `watch` paths, default its `dir`)
//! and, when they change, runs its build and replaces its workers.
//!
//! Sources are polled (modification times and sizes, every half second), skipping what builds
//! and tools write (`target/`, `node_modules/`, `.git/`, `__pycache__/`, virtualenvs, the log
//! directory). After a build the sources are read again, so what the build wrote does not
//! count as a change. A failed build leaves the running workers alone (the console shows the
//! failure). A replacement goes through the engine ([`crate::state::State::roll`]): the old
//! processes finish the calls they run and leave; calls that arrive meanwhile wait for the
//! new ones — none is dropped.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::builds::{self, Build};
use crate::config::Config;
use crate::console;
use crate::engine::Engine;

/// How often sources are read.
const POLL: Duration = Duration::from_millis(500);
/// A change is acted on once the sources stayed the same this long (editors write in steps).
const SETTLE: Duration = Duration::from_millis(300);
/// Files read per watched unit at most (a huge tree is watched in part).
const MAX_FILES: usize = 50_000;
/// Directory names never watched.
const SKIP_DIRS: &[&str] = &[
    ".git",
    "target",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "logs",
];

/// Functions rebuilt and replaced together: those of one build command, or one function
/// without a build.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The build, if any.
    pub build: Option<Build>,
    /// The functions.
    pub functions: Vec<(u16, String)>,
    /// What is watched.
    pub paths: Vec<PathBuf>,
}

/// The units of `config` whose functions have a launch command.
pub fn units(config: &Config) -> Vec<Unit> {
    let mut units: Vec<Unit> = builds::plan(config)
        .into_iter()
        .map(|b| Unit {
            functions: b
                .function_ids
                .iter()
                .copied()
                .zip(b.functions.iter().cloned())
                .collect(),
            paths: Vec::new(),
            build: Some(b),
        })
        .collect();
    for f in config.functions.iter().filter(|f| f.command.is_some()) {
        let unit = match units
            .iter_mut()
            .position(|u| u.functions.iter().any(|(id, _)| *id == f.id))
        {
            Some(i) => &mut units[i],
            None => {
                units.push(Unit {
                    build: None,
                    functions: vec![(f.id, f.name.clone())],
                    paths: Vec::new(),
                });
                let last = units.len() - 1;
                &mut units[last]
            }
        };
        for p in &f.watch {
            if !unit.paths.contains(p) {
                unit.paths.push(p.clone());
            }
        }
    }
    units.retain(|u| !u.paths.is_empty());
    units
}

/// A fingerprint of the files under `paths` (names, sizes, modification times), skipping
/// `skip` and the [`SKIP_DIRS`].
pub fn fingerprint(paths: &[PathBuf], skip: &[PathBuf]) -> u64 {
    let mut hasher = DefaultHasher::new();
    let mut seen = 0usize;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        if seen >= MAX_FILES || skip.iter().any(|s| p.starts_with(s)) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            let Ok(entries) = std::fs::read_dir(&p) else {
                continue;
            };
            let mut children: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    !SKIP_DIRS.contains(&name.as_ref()) && !name.ends_with('~')
                })
                .map(|e| e.path())
                .collect();
            children.sort();
            stack.extend(children);
        } else if meta.is_file() {
            seen += 1;
            p.hash(&mut hasher);
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// Starts the watcher thread; it ends when `stop` is set.
pub fn spawn(
    engine: Arc<Engine>,
    config: Arc<Config>,
    quiet: bool,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let skip = vec![
        config.engine.log_dir.clone(),
        config.engine.ipc_root.clone(),
    ];
    let units = units(&config);
    std::thread::Builder::new()
        .name("gloam-watch".into())
        .spawn(move || watch(&engine, units, &skip, quiet, &stop))
}

fn watch(engine: &Engine, units: Vec<Unit>, skip: &[PathBuf], quiet: bool, stop: &AtomicBool) {
    let mut seen: Vec<u64> = units.iter().map(|u| fingerprint(&u.paths, skip)).collect();
    let mut names: Vec<String> = Vec::new();
    for p in units.iter().flat_map(|u| u.paths.iter()) {
        let name = p.display().to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    console::say(&[format!("watching {} for changes", names.join(", "))]);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        for (unit, last) in units.iter().zip(seen.iter_mut()) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if fingerprint(&unit.paths, skip) == *last {
                continue;
            }
            settle(&unit.paths, skip);
            *last = rebuild(engine, unit, quiet, skip);
        }
    }
}

/// Waits until the files stop changing (bounded).
fn settle(paths: &[PathBuf], skip: &[PathBuf]) {
    let start = Instant::now();
    let mut prev = fingerprint(paths, skip);
    while start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(SETTLE);
        let now = fingerprint(paths, skip);
        if now == prev {
            return;
        }
        prev = now;
    }
}

/// Builds and replaces one unit's workers; returns the fingerprint to compare against next.
fn rebuild(engine: &Engine, unit: &Unit, quiet: bool, skip: &[PathBuf]) -> u64 {
    let names: Vec<&str> = unit.functions.iter().map(|(_, n)| n.as_str()).collect();
    console::say(&[format!("sources of {} changed", names.join(", "))]);
    if let Some(build) = &unit.build {
        if let Err(e) = builds::run(build, quiet) {
            let mut lines = vec![format!("{e:#}")];
            lines.push(format!(
                "{} keep their running workers; fix the error and save again",
                names.join(", ")
            ));
            console::say(&lines);
            return fingerprint(&unit.paths, skip);
        }
    }
    for (id, name) in &unit.functions {
        engine.roll(*id);
        console::say(&[format!(
            "{name}: replacing its workers (calls in flight finish on the old ones)"
        )]);
    }
    fingerprint(&unit.paths, skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_see_sources_and_skip_build_output() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src)?;
        std::fs::create_dir_all(dir.path().join("target"))?;
        std::fs::write(src.join("main.rs"), "fn main() {}")?;
        let paths = vec![dir.path().to_path_buf()];
        let logs = dir.path().join("mylogs");
        let a = fingerprint(&paths, std::slice::from_ref(&logs));
        std::fs::write(dir.path().join("target/out"), "binary")?;
        std::fs::create_dir_all(&logs)?;
        std::fs::write(logs.join("F.0.stderr"), "x")?;
        assert_eq!(fingerprint(&paths, std::slice::from_ref(&logs)), a);
        std::fs::write(src.join("main.rs"), "fn main() { panic!() }")?;
        assert_ne!(fingerprint(&paths, std::slice::from_ref(&logs)), a);
        Ok(())
    }

    #[test]
    fn units_group_functions_by_build() -> anyhow::Result<()> {
        let config = crate::config::Config::parse(
            r#"
            [[programs]]
            command = "./app"
            build = "make"
            functions = ["A", "B"]
            [functions.C]
            command = "node"
            args = ["main.js"]
            watch = ["main.js"]
            [functions.D]
            "#,
            std::path::Path::new("/srv/gloam.toml"),
        )?;
        let u = units(&config);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].functions.len(), 2);
        assert_eq!(u[0].paths, [PathBuf::from("/srv")]);
        assert_eq!(u[1].functions, [(3, "C".to_string())]);
        assert_eq!(u[1].paths, [PathBuf::from("/srv/main.js")]);
        Ok(())
    }
}
