//! The groups the engine creates — its own, one per function, one leaf per process slot with
//! the limits — their removal, and the OOM kills counted in them (see the
//! [parent module](super)).

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::find::distinct;
use super::{Controller, Place, Version};
use crate::config::Limits;

/// The period of a CPU quota (100 ms, the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;
/// How long removing a group waits for the processes it killed in it to exit.
const REMOVE_WAIT: Duration = Duration::from_millis(500);

/// The engine's groups, `<parent>/gloam-<pid>-<start>` in each parent of a [`Place`]; removed
/// (with whatever still runs in them) by [`remove`](Self::remove) or when dropped.
#[derive(Debug)]
pub struct EngineGroups {
    place: Place,
    name: String,
}

impl EngineGroups {
    /// Creates the engine's groups, after removing those of engines that are gone.
    pub fn create(place: Place) -> io::Result<EngineGroups> {
        let name = format!("gloam-{}", own_identity()?);
        let groups = EngineGroups { place, name };
        for parent in groups.parent_dirs() {
            remove_stale(parent);
            if groups.place.version == Version::V2 {
                enable(parent, &groups.controllers())?;
            }
            let dir = parent.join(&groups.name);
            make_dir(&dir)?;
            if groups.place.version == Version::V2 {
                enable(&dir, &groups.controllers())?;
            }
        }
        Ok(groups)
    }

    fn parent_dirs(&self) -> Vec<&Path> {
        distinct(self.place.parents.iter().map(|(_, d)| d.as_path()))
    }

    fn controllers(&self) -> Vec<Controller> {
        self.place.parents.iter().map(|(c, _)| *c).collect()
    }

    /// The group of function `name` (id `id`) for its `limits`; `None` without limits.
    pub fn function(
        &self,
        name: &str,
        id: u16,
        limits: &Limits,
    ) -> io::Result<Option<FunctionGroup>> {
        let needed = Controller::for_limits(limits);
        if needed.is_empty() {
            return Ok(None);
        }
        let leaf = dir_name(name, id);
        let mut dirs: Vec<(Vec<Controller>, PathBuf)> = Vec::new();
        for c in needed {
            let Some((_, parent)) = self.place.parents.iter().find(|(p, _)| *p == c) else {
                return Err(io::Error::other(format!(
                    "no {} hierarchy was prepared",
                    c.name()
                )));
            };
            let dir = parent.join(&self.name).join(&leaf);
            match dirs.iter_mut().find(|(_, d)| *d == dir) {
                Some((cs, _)) => cs.push(c),
                None => dirs.push((vec![c], dir)),
            }
        }
        for (cs, dir) in &dirs {
            make_dir(dir)?;
            if self.place.version == Version::V2 {
                enable(dir, cs)?;
            }
        }
        Ok(Some(FunctionGroup {
            version: self.place.version,
            dirs,
            limits: *limits,
        }))
    }

    /// Kills what is left in the engine's groups and removes them.
    pub fn remove(&self) {
        for parent in self.parent_dirs() {
            remove_tree(&parent.join(&self.name));
        }
    }
}

impl Drop for EngineGroups {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `<pid>-<start time in clock ticks>`: names this engine's group, and no later process's.
fn own_identity() -> io::Result<String> {
    let pid = std::process::id();
    let start = start_time(pid).ok_or_else(|| io::Error::other("cannot read /proc/self/stat"))?;
    Ok(format!("{pid}-{start}"))
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// A function's group as a directory name: its name when that is a plain file name, else the
/// plain characters of it and its id.
fn dir_name(name: &str, id: u16) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if !name.is_empty() && !name.starts_with('.') && name.chars().all(plain) {
        return name.to_string();
    }
    let kept: String = name
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    format!("{}.{id}", kept.trim_start_matches('.'))
}

fn make_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io::Error::new(
            e.kind(),
            format!("cannot create cgroup {}: {e}", dir.display()),
        )),
        _ => Ok(()),
    }
}

/// Enables `controllers` for the children of v2 group `dir`.
fn enable(dir: &Path, controllers: &[Controller]) -> io::Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&file).unwrap_or_default();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == c.name()))
        .map(|c| format!("+{}", c.name()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::write(&file, missing.join(" ")).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EBUSY) {
            " (the group holds processes itself: make engine.cgroup_parent an empty group)"
        } else {
            ""
        };
        io::Error::new(
            e.kind(),
            format!(
                "cannot write {} to {}: {e}{hint}",
                missing.join(" "),
                file.display()
            ),
        )
    })
}

/// Removes the groups of engines that are gone from `parent`.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_prefix("gloam-")) else {
            continue;
        };
        let Some((pid, start)) = id.split_once('-') else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            continue;
        };
        if start_time(pid) != Some(start) {
            tracing::info!(group = %e.path().display(), "removing the cgroup of an engine that is gone");
            remove_tree(&e.path());
        }
    }
}

/// SIGKILLs every process in group `dir` and below, then removes the groups, deepest first.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let deadline = std::time::Instant::now() + REMOVE_WAIT;
    loop {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(group = %dir.display(), "cannot remove cgroup: {e}");
                return;
            }
            _ => return,
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(group = %dir.display(), "cannot remove cgroup: processes are still in it");
            return;
        }
        kill_all(dir);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill_all(dir: &Path) {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// A function's group in each hierarchy its limits need; each process slot gets a leaf with
/// the limits ([`slot`](Self::slot)).
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionGroup {
    version: Version,
    /// Each directory and the controllers it is for.
    dirs: Vec<(Vec<Controller>, PathBuf)>,
    limits: Limits,
}

impl FunctionGroup {
    /// The interface its limits go through.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The function's group directories (one per hierarchy).
    pub fn dirs(&self) -> Vec<&Path> {
        self.dirs.iter().map(|(_, d)| d.as_path()).collect()
    }

    /// Creates (or finds) process slot `slot`'s leaf and sets the limits on it.
    pub fn slot(&self, slot: usize) -> io::Result<SlotGroup> {
        let mut dirs = Vec::new();
        let mut memory = None;
        for (cs, dir) in &self.dirs {
            let leaf = dir.join(slot.to_string());
            make_dir(&leaf)?;
            for c in cs {
                self.set_limit(&leaf, *c)?;
                if *c == Controller::Memory {
                    memory = Some(leaf.clone());
                }
            }
            dirs.push(leaf);
        }
        Ok(SlotGroup {
            version: self.version,
            dirs,
            memory,
        })
    }

    fn set_limit(&self, dir: &Path, c: Controller) -> io::Result<()> {
        let l = &self.limits;
        let write = |file: &str, value: String| {
            std::fs::write(dir.join(file), &value).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot write {value} to {}: {e}", dir.join(file).display()),
                )
            })
        };
        let optional = |file: &str| dir.join(file).exists();
        match (c, self.version) {
            (Controller::Memory, v) => {
                let Some(bytes) = l.memory else { return Ok(()) };
                let (limit, swap, swap_value) = match v {
                    Version::V2 => ("memory.max", "memory.swap.max", "0".to_string()),
                    // memsw bounds memory + swap: equal to the limit, no swap.
                    Version::V1 => (
                        "memory.limit_in_bytes",
                        "memory.memsw.limit_in_bytes",
                        bytes.to_string(),
                    ),
                };
                write(limit, bytes.to_string())?;
                if optional(swap) {
                    write(swap, swap_value)?;
                }
            }
            (Controller::Pids, _) => {
                if let Some(n) = l.pids {
                    write("pids.max", n.to_string())?;
                }
            }
            (Controller::Cpu, v) => {
                let Some(cpus) = l.cpu else { return Ok(()) };
                let quota = ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000);
                match v {
                    Version::V2 => write("cpu.max", format!("{quota} {CPU_PERIOD_US}"))?,
                    Version::V1 => {
                        write("cpu.cfs_period_us", CPU_PERIOD_US.to_string())?;
                        write("cpu.cfs_quota_us", quota.to_string())?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One process slot's leaf group (one directory per hierarchy).
#[derive(Debug, Clone, PartialEq)]
pub struct SlotGroup {
    version: Version,
    dirs: Vec<PathBuf>,
    memory: Option<PathBuf>,
}

impl SlotGroup {
    /// Each hierarchy's `cgroup.procs`, opened for writing (close-on-exec): a process about to
    /// be spawned writes `0` (itself) into each, see `supervise.rs`.
    pub fn open_procs(&self) -> io::Result<Vec<OwnedFd>> {
        self.dirs
            .iter()
            .map(|d| {
                let file = d.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .map(OwnedFd::from)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot open {}: {e}", file.display()))
                    })
            })
            .collect()
    }

    /// How many processes of the group the kernel's OOM killer killed so far (v2
    /// `memory.events`, v1 `memory.oom_control`: `oom_kill`); `None` without a memory limit or
    /// when unreadable.
    pub fn oom_kills(&self) -> Option<u64> {
        let dir = self.memory.as_ref()?;
        let file = match self.version {
            Version::V2 => "memory.events",
            Version::V1 => "memory.oom_control",
        };
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    }

    /// Removes the leaf (best effort: the slot's last process has been reaped).
    pub fn remove(&self) {
        for d in &self.dirs {
            remove_tree(d);
        }
    }
}

/// Whether a process of a slot group was killed by the OOM killer since the group's counter
/// read `baseline` (at spawn).
#[derive(Debug, Clone, PartialEq)]
pub struct OomWatch {
    /// The slot's group.
    pub group: SlotGroup,
    /// Its OOM kills when the process was spawned.
    pub baseline: u64,
}

impl OomWatch {
    /// `Some(true)`: the OOM killer killed one of the group's processes since the spawn;
    /// `None`: unknown.
    pub fn killed(&self) -> Option<bool> {
        self.group.oom_kills().map(|n| n > self.baseline)
    }
}

#[cfg(test)]
mod tests {
    use super::dir_name;

    #[test]
    fn function_names_become_plain_directory_names() {
        assert_eq!(dir_name("Echo", 3), "Echo");
        assert_eq!(dir_name("grpc:demo.Greeter", 4), "grpc_demo.Greeter.4");
        assert_eq!(dir_name("../x", 5), "_x.5");
        assert_eq!(dir_name("..", 6), ".6");
    }
}
