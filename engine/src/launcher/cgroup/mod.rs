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

mod find;
mod groups;

pub use find::{
    choose, parse_mountinfo, parse_proc_cgroup, Controller, Host, Membership, Mount, Place, Plan,
    Version, View,
};
pub use groups::{EngineGroups, FunctionGroup, OomWatch, SlotGroup};
