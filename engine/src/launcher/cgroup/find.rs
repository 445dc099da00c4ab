//! Where the engine may create cgroups: its own groups, the mounted hierarchies, and the
//! choice between cgroup v2 and v1 (see the [parent module](super)).

use std::path::{Path, PathBuf};

use crate::config::{Config, Limits};

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

pub(super) fn distinct<'a>(dirs: impl Iterator<Item = &'a Path>) -> Vec<&'a Path> {
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
        // v2 enables controllers for the children of a group only while it holds no process
        // (the root aside): the engine's own group usually holds the engine.
        let enabled = view
            .read(&dir.join("cgroup.subtree_control"))
            .unwrap_or_default();
        let all_enabled = needed
            .iter()
            .all(|c| enabled.split_whitespace().any(|e| e == c.name()));
        let occupied = view
            .read(&dir.join("cgroup.procs"))
            .is_some_and(|p| !p.trim().is_empty());
        if !all_enabled && occupied && !group.trim_matches('/').is_empty() {
            return Err(format!(
                "{} holds processes, so its controllers cannot be enabled for groups under it \
                 (cgroup v2 wants an empty parent)",
                dir.display()
            ));
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

#[cfg(test)]
#[path = "find_tests.rs"]
mod tests;
