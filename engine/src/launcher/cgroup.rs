//! Resource limits through cgroups: where the engine may create groups, the groups it creates
//! and what it reads back from them (OOM kills).
//!
//! [`Plan::find`] looks at the engine's own cgroups (`/proc/self/cgroup`) and the mounted
//! hierarchies (`/proc/self/mountinfo`) and picks, for the controllers the configured limits
//! need (`memory`, `pids`, `cpu`), cgroup v2 when the parent group (`engine.cgroup_parent`,
//! default: the engine's own v2 group) offers them all in `cgroup.controllers` and is writable,
//! else the cgroup v1 hierarchies of those controllers under the same parent path, writable.
//! A parent is the admin's delegation: the engine never changes the permissions of a group it
//! did not create. When neither works, [`Plan`] says why and the launcher falls back to rlimits
//! (see `docs/architecture.md`, "Isolation").
//!
//! The tree, in each hierarchy used: `<parent>/gloam-<pid>-<start>/<function>/<slot>`. The
//! engine's group is named after its pid and start time (so the groups of a dead engine are
//! recognised and removed by the next one), a function's group holds one leaf per process slot,
//! and the limits are set on the leaves: like the rlimits they replace, they bound *each*
//! worker process, and a leaf's OOM counter names the process that was killed.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, Limits};

/// The period of a CPU quota (100 ms, the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;
/// How long removing a group waits for the processes it killed in it to exit.
const REMOVE_WAIT: Duration = Duration::from_millis(500);

/// Which cgroup interface enforces the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller (`/sys/fs/cgroup/<controller>`).
    V1,
    /// The unified hierarchy.
    V2,
}

impl Version {
    /// `cgroup v1` or `cgroup v2`, as the status and messages say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        }
    }
}

/// A controller one of the limits needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    /// `memory_limit`.
    Memory,
    /// `pids_limit`.
    Pids,
    /// `cpu_limit`.
    Cpu,
}

impl Controller {
    /// The kernel's name of the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }

    /// The controllers `limits` need, in a fixed order.
    pub fn for_limits(limits: &Limits) -> Vec<Controller> {
        let mut v = Vec::new();
        if limits.memory.is_some() {
            v.push(Controller::Memory);
        }
        if limits.pids.is_some() {
            v.push(Controller::Pids);
        }
        if limits.cpu.is_some() {
            v.push(Controller::Cpu);
        }
        v
    }
}

/// One line of `/proc/self/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The hierarchy's id (0: cgroup v2).
    pub hierarchy: u32,
    /// Its v1 controllers (empty for v2).
    pub controllers: Vec<String>,
    /// The group, relative to the hierarchy's root.
    pub path: String,
}

/// Parses `/proc/<pid>/cgroup`; malformed lines are skipped.
pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let hierarchy = parts.next()?.parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                hierarchy,
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// A mounted cgroup file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `cgroup2` rather than `cgroup`.
    pub v2: bool,
    /// A v1 mount's options, among which its controllers.
    pub options: Vec<String>,
    /// The group of the hierarchy shown at the mount point (`/` unless in a namespace).
    pub root: String,
    /// Where it is mounted.
    pub point: PathBuf,
}

/// The cgroup mounts of `/proc/<pid>/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            let v2 = match after.next()? {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let options = after.nth(1).unwrap_or("");
            Some(Mount {
                v2,
                options: options.split(',').map(str::to_string).collect(),
                root: unescape(fields.get(3)?),
                point: PathBuf::from(unescape(fields.get(4)?)),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The directory of group `path` (relative to its hierarchy's root) in `mount`, when the
/// mount shows it.
fn dir_in(mount: &Mount, path: &str) -> Option<PathBuf> {
    let path = format!("/{}", path.trim_start_matches('/'));
    let root = mount.root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    match rest.trim_start_matches('/') {
        "" => Some(mount.point.clone()),
        rest => Some(mount.point.join(rest)),
    }
}

/// What [`choose`] needs of the file system: the host's ([`Host`]), or a test's.
pub trait View {
    /// A file's text; `None` when it cannot be read.
    fn read(&self, path: &Path) -> Option<String>;
    /// Whether the engine's user may write `path`.
    fn writable(&self, path: &Path) -> bool;
}

/// The machine's file system.
pub struct Host;

impl View for Host {
    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }
    fn writable(&self, path: &Path) -> bool {
        nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
    }
}

/// Where the engine creates its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The interface.
    pub version: Version,
    /// The parent directory of each controller (with v2, one directory for all).
    pub parents: Vec<(Controller, PathBuf)>,
}

impl Place {
    /// `cgroup v1 (/sys/fs/cgroup/memory/gloam, /sys/fs/cgroup/pids/gloam)`.
    pub fn describe(&self) -> String {
        let dirs: Vec<String> = distinct(self.parents.iter().map(|(_, d)| d.as_path()))
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        format!("{} ({})", self.version.as_str(), dirs.join(", "))
    }
}

fn distinct<'a>(dirs: impl Iterator<Item = &'a Path>) -> Vec<&'a Path> {
    let mut out: Vec<&Path> = Vec::new();
    for d in dirs {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// Picks cgroup v2 or v1 for `needed` (see the [module docs](self)); the error says, for each
/// version, why not.
pub fn choose(
    needed: &[Controller],
    parent: Option<&Path>,
    memberships: &[Membership],
    mounts: &[Mount],
    view: &dyn View,
) -> Result<Place, String> {
    let parent_of = |m: Option<&Membership>| -> Option<String> {
        match parent {
            Some(p) => Some(p.display().to_string()),
            None => m.map(|m| m.path.clone()),
        }
    };
    let v2 = (|| {
        let mount = mounts.iter().find(|m| m.v2).ok_or("not mounted")?;
        let own = memberships.iter().find(|m| m.hierarchy == 0);
        let group = parent_of(own).ok_or("the engine is in no v2 group")?;
        let dir = dir_in(mount, &group).ok_or(format!("{group} is not visible"))?;
        let offered = view
            .read(&dir.join("cgroup.controllers"))
            .ok_or_else(|| format!("{} does not exist", dir.display()))?;
        let offered: Vec<&str> = offered.split_whitespace().collect();
        let missing: Vec<&str> = needed
            .iter()
            .map(|c| c.name())
            .filter(|c| !offered.contains(c))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{} offers {} but not {}",
                dir.display(),
                if offered.is_empty() {
                    "no controller".to_string()
                } else {
                    offered.join(" ")
                },
                missing.join(", ")
            ));
        }
        for p in [dir.clone(), dir.join("cgroup.subtree_control")] {
            if !view.writable(&p) {
                return Err(format!("{} is not writable by this user", p.display()));
            }
        }
        let parents = needed.iter().map(|c| (*c, dir.clone())).collect();
        Ok(Place {
            version: Version::V2,
            parents,
        })
    })();
    let v2_why = match v2 {
        Ok(place) => return Ok(place),
        Err(why) => why,
    };
    let v1 = (|| {
        let mut parents = Vec::new();
        for c in needed {
            let has = |opts: &[String]| opts.iter().any(|o| o == c.name());
            let mount = mounts
                .iter()
                .find(|m| !m.v2 && has(&m.options))
                .ok_or(format!("no {} hierarchy", c.name()))?;
            let own = memberships.iter().find(|m| has(&m.controllers));
            let group = parent_of(own).ok_or(format!("the engine is in no {} group", c.name()))?;
            let dir = dir_in(mount, &group).ok_or(format!("{group} is not visible"))?;
            if view.read(&dir.join("cgroup.procs")).is_none() {
                return Err(format!("{} does not exist", dir.display()));
            }
            if !view.writable(&dir) {
                return Err(format!("{} is not writable by this user", dir.display()));
            }
            parents.push((*c, dir));
        }
        Ok::<_, String>(Place {
            version: Version::V1,
            parents,
        })
    })();
    v1.map_err(|v1_why| format!("cgroup v2: {v2_why}; cgroup v1: {v1_why}"))
}

/// What the configured limits need and where (or why not) cgroups can enforce them.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The controllers the limits of the launched functions need (empty: no limit is set).
    pub needed: Vec<Controller>,
    /// Where the groups go, or why no cgroup can be used.
    pub place: Result<Place, String>,
}

impl Plan {
    /// Looks at this machine for `config`; creates nothing.
    pub fn find(config: &Config) -> Plan {
        let mut needed: Vec<Controller> = config
            .functions
            .iter()
            .filter(|f| f.command.is_some())
            .flat_map(|f| Controller::for_limits(&f.isolation.limits))
            .collect();
        needed.sort();
        needed.dedup();
        if needed.is_empty() {
            let place = Err("no function sets a limit".to_string());
            return Plan { needed, place };
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let place = choose(
            &needed,
            config.engine.cgroup_parent.as_deref(),
            &parse_proc_cgroup(&own),
            &parse_mountinfo(&mounts),
            &Host,
        );
        Plan { needed, place }
    }

    /// `cgroup v1`, `cgroup v2`, or `rlimit` (cgroups unusable).
    pub fn mechanism(&self) -> &'static str {
        match &self.place {
            Ok(p) => p.version.as_str(),
            Err(_) => "rlimit",
        }
    }
}

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
#[path = "cgroup_tests.rs"]
mod tests;
