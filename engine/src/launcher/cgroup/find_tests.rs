//! `cgroup/find.rs`: parsing `/proc/self/cgroup` and mountinfo, and the v1/v2 choice over a
//! made-up file system.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// A hybrid machine's `/proc/self/cgroup` (this is what CI's VMs show).
const HYBRID: &str =
    "9:name=systemd:/\n8:pids:/\n4:memory:/session/42\n2:cpuacct:/\n1:cpu:/\n0::/\n";

const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /sys/fs/cgroup/my\\040dir rw - cgroup cgroup rw,freezer
";

/// Files (path → text) and the writable paths.
#[derive(Default)]
struct Fake {
    files: BTreeMap<PathBuf, String>,
    writable: BTreeSet<PathBuf>,
}

impl Fake {
    fn file(mut self, path: &str, text: &str) -> Fake {
        self.files.insert(PathBuf::from(path), text.to_string());
        self
    }
    fn writable(mut self, paths: &[&str]) -> Fake {
        self.writable.extend(paths.iter().map(PathBuf::from));
        self
    }
}

impl View for Fake {
    fn read(&self, path: &Path) -> Option<String> {
        self.files.get(path).cloned()
    }
    fn writable(&self, path: &Path) -> bool {
        self.writable.contains(path)
    }
}

fn pick(needed: &[Controller], parent: Option<&str>, fs: &Fake) -> Result<Place, String> {
    choose(
        needed,
        parent.map(Path::new),
        &parse_proc_cgroup(HYBRID),
        &parse_mountinfo(MOUNTINFO),
        fs,
    )
}

const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

#[test]
fn proc_self_cgroup_parses() {
    let m = parse_proc_cgroup(HYBRID);
    assert_eq!(m.len(), 6);
    assert_eq!(
        m[2],
        Membership {
            hierarchy: 4,
            controllers: vec!["memory".into()],
            path: "/session/42".into()
        }
    );
    assert_eq!(m[5].hierarchy, 0);
    assert!(m[5].controllers.is_empty());
    assert_eq!(m[5].path, "/");
    // A path holding ':' stays whole; garbage lines are skipped.
    let m = parse_proc_cgroup("0::/a:b\nnonsense\nx:memory:/\n");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].path, "/a:b");
}

#[test]
fn mountinfo_parses_cgroup_mounts_only() {
    let mounts = parse_mountinfo(MOUNTINFO);
    assert_eq!(mounts.len(), 6, "{mounts:?}");
    assert!(mounts[0].options.contains(&"cpu".to_string()));
    assert!(!mounts[0].v2);
    assert!(mounts[4].v2);
    assert_eq!(mounts[4].point, Path::new("/sys/fs/cgroup/unified"));
    assert_eq!(mounts[5].point, Path::new("/sys/fs/cgroup/my dir"));
}

#[test]
fn a_group_is_found_below_the_mount_root() {
    let mount = Mount {
        v2: true,
        options: vec![],
        root: "/user.slice".into(),
        point: "/sys/fs/cgroup".into(),
    };
    assert_eq!(
        dir_in(&mount, "/user.slice/gloam"),
        Some(PathBuf::from("/sys/fs/cgroup/gloam"))
    );
    assert_eq!(
        dir_in(&mount, "/user.slice"),
        Some(PathBuf::from("/sys/fs/cgroup"))
    );
    assert_eq!(dir_in(&mount, "/user.slice2/x"), None);
    assert_eq!(dir_in(&mount, "/system.slice"), None);
}

#[test]
fn v2_is_chosen_when_it_offers_the_controllers_and_is_writable() {
    let fs = Fake::default()
        .file(
            "/sys/fs/cgroup/unified/gloam/cgroup.controllers",
            "cpu memory pids\n",
        )
        .writable(&[
            "/sys/fs/cgroup/unified/gloam",
            "/sys/fs/cgroup/unified/gloam/cgroup.subtree_control",
        ])
        // v1 would work too: v2 wins.
        .file("/sys/fs/cgroup/memory/gloam/cgroup.procs", "")
        .writable(&["/sys/fs/cgroup/memory/gloam"]);
    let place = pick(&ALL, Some("gloam"), &fs).unwrap();
    assert_eq!(place.version, Version::V2);
    assert_eq!(place.describe(), "cgroup v2 (/sys/fs/cgroup/unified/gloam)");
    assert_eq!(place.parents.len(), 3);
}

#[test]
fn a_v2_parent_holding_processes_is_refused() {
    let dir = "/sys/fs/cgroup/unified/session/42";
    let own = "0::/session/42\n";
    let fs = Fake::default()
        .file(&format!("{dir}/cgroup.controllers"), "memory pids\n")
        .file(&format!("{dir}/cgroup.procs"), "1234\n")
        .writable(&[dir, &format!("{dir}/cgroup.subtree_control")]);
    let why = choose(
        &[Controller::Memory],
        None,
        &parse_proc_cgroup(own),
        &parse_mountinfo(MOUNTINFO),
        &fs,
    )
    .unwrap_err();
    assert!(
        why.starts_with(&format!("cgroup v2: {dir} holds processes")),
        "{why}"
    );
    // Already enabled (a delegated parent set up so): fine.
    let fs = fs.file(&format!("{dir}/cgroup.subtree_control"), "memory\n");
    let place = choose(
        &[Controller::Memory],
        None,
        &parse_proc_cgroup(own),
        &parse_mountinfo(MOUNTINFO),
        &fs,
    )
    .unwrap();
    assert_eq!(place.version, Version::V2);
}

#[test]
fn v1_is_chosen_on_a_hybrid_machine() {
    // v2 offers only hugetlb (CI's VMs).
    let mut fs = Fake::default()
        .file(
            "/sys/fs/cgroup/unified/gloam/cgroup.controllers",
            "hugetlb\n",
        )
        .writable(&["/sys/fs/cgroup/unified/gloam"]);
    for c in ["memory", "pids", "cpu"] {
        let dir = format!("/sys/fs/cgroup/{c}/gloam");
        fs = fs
            .file(&format!("{dir}/cgroup.procs"), "")
            .writable(&[&dir]);
    }
    let place = pick(&ALL, Some("gloam"), &fs).unwrap();
    assert_eq!(place.version, Version::V1);
    assert_eq!(
        place.parents,
        vec![
            (
                Controller::Memory,
                PathBuf::from("/sys/fs/cgroup/memory/gloam")
            ),
            (Controller::Pids, PathBuf::from("/sys/fs/cgroup/pids/gloam")),
            (Controller::Cpu, PathBuf::from("/sys/fs/cgroup/cpu/gloam")),
        ]
    );
}

#[test]
fn the_default_parent_is_the_engines_own_group() {
    let fs = Fake::default()
        .file("/sys/fs/cgroup/memory/session/42/cgroup.procs", "1\n")
        .writable(&["/sys/fs/cgroup/memory/session/42"]);
    let place = pick(&[Controller::Memory], None, &fs).unwrap();
    assert_eq!(place.version, Version::V1);
    assert_eq!(
        place.parents,
        vec![(
            Controller::Memory,
            PathBuf::from("/sys/fs/cgroup/memory/session/42")
        )]
    );
}

#[test]
fn the_refusal_says_why_for_each_version() {
    let fs = Fake::default()
        .file("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n")
        .file("/sys/fs/cgroup/memory/session/42/cgroup.procs", "")
        .file("/sys/fs/cgroup/pids/cgroup.procs", "");
    let why = pick(&ALL, None, &fs).unwrap_err();
    assert_eq!(
        why,
        "cgroup v2: /sys/fs/cgroup/unified offers hugetlb but not memory, pids, cpu; \
         cgroup v1: /sys/fs/cgroup/memory/session/42 is not writable by this user"
    );
    let why = pick(&[Controller::Pids], Some("gloam"), &fs).unwrap_err();
    assert!(
        why.ends_with("cgroup v1: /sys/fs/cgroup/pids/gloam does not exist"),
        "{why}"
    );
    // No v2 mount and no pids hierarchy.
    let why = choose(
        &[Controller::Pids],
        None,
        &parse_proc_cgroup(HYBRID),
        &parse_mountinfo(
            MOUNTINFO
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
                .as_str(),
        ),
        &fs,
    )
    .unwrap_err();
    assert_eq!(why, "cgroup v2: not mounted; cgroup v1: no pids hierarchy");
}

#[test]
fn limits_need_their_controllers() {
    let limits = Limits {
        memory: Some(1 << 26),
        cpu: Some(0.5),
        pids: None,
    };
    assert_eq!(
        Controller::for_limits(&limits),
        vec![Controller::Memory, Controller::Cpu]
    );
    assert!(Controller::for_limits(&Limits::default()).is_empty());
}
