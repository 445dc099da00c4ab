//! The IPC root: the tmpfs directory that engine and workers share.
//!
//! ```text
//! <root>/            mode 0700, owned by the engine's user
//!   engine.lock      flock held by the live engine (holds its pid)
//!   engine.sock      the engine's handshake socket
//!   shm/<call>.in    a call's input payload when it exceeds the inline area
//!   shm/<call>.out   a call's output payload
//! ```
//!
//! Nothing else is there: each worker's channel comes to it by descriptor with `WELCOME` —
//! with the ring transport its ring region and the doorbells (sealed memfds, see
//! [`crate::shared_map`]), with the FIFO transport two anonymous pipes (see
//! [`crate::channel`]). What an older engine created there (`fifo/` with its named FIFOs and
//! ring files, `engine.bell`) is removed at start.
//!
//! The engine creates the root and holds its lock; a second engine on the same root is refused.
//! Files a previous, dead engine left behind are removed at start (only names Gloam creates).
//!
//! The engine's [`IpcPaths`] (from [`IpcRoot::paths`]) carry the root's held directory
//! descriptors ([`RootDir`]): every file [`crate::shm`] opens, creates or removes through them
//! is resolved relative to those descriptors, never by the root's path again. A worker's
//! `IpcPaths` ([`IpcPaths::new`]) resolve whole paths; both never follow a link at the file
//! itself, never block in `open` and check what they opened.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::{Mode, SFlag};

use crate::error::{Error, Result};
use crate::protocol::CallId;
use crate::root_dir::{self, Loc, RootDir, Sub};

/// Which side of a call a shm payload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadSide {
    /// The call's input (written by the caller, or by the engine for an external call).
    Input,
    /// The call's output (written by the callee).
    Output,
}

/// The paths of an IPC root: by whole path (what a worker has, [`IpcPaths::new`]), or anchored
/// to the engine's held directory descriptors ([`IpcRoot::paths`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcPaths {
    root: PathBuf,
    dir: Option<RootDir>,
}

impl IpcPaths {
    /// The paths under `root`, resolved by whole path.
    pub fn new(root: impl Into<PathBuf>) -> IpcPaths {
        IpcPaths {
            root: root.into(),
            dir: None,
        }
    }

    /// The held directory descriptors these paths resolve names against, when they came from
    /// the engine's [`IpcRoot`].
    pub fn dir(&self) -> Option<&RootDir> {
        self.dir.as_ref()
    }

    /// File `name` of directory `sub`, relative to the held descriptor when there is one.
    pub(crate) fn loc(&self, sub: Sub, name: &str) -> Loc<'_> {
        Loc::new(&self.root, self.dir.as_ref(), sub, name)
    }

    /// The shm file of a call's input or output, as a [`Loc`].
    pub(crate) fn shm_loc(&self, call: CallId, side: PayloadSide) -> Loc<'_> {
        self.loc(Sub::Shm, &shm_name(call, side))
    }

    /// The names of the files in `sub` (read through the held descriptor when there is one).
    pub(crate) fn names(&self, sub: Sub) -> Vec<String> {
        root_dir::list_names(&self.root, self.dir.as_ref(), sub)
    }

    /// The default root: `/dev/shm/gloam-<uid>`.
    pub fn default_root() -> PathBuf {
        PathBuf::from(format!("/dev/shm/gloam-{}", nix::unistd::getuid()))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The engine's handshake socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("engine.sock")
    }
    /// The engine's lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("engine.lock")
    }
    /// The shm payload directory.
    pub fn shm_dir(&self) -> PathBuf {
        self.root.join("shm")
    }
    /// The shm file of a call's input or output.
    pub fn shm_file(&self, call: CallId, side: PayloadSide) -> PathBuf {
        self.shm_dir().join(shm_name(call, side))
    }

    /// Checks that an engine has set this root up (what a worker does before connecting).
    pub fn check_exists(&self) -> Result<()> {
        for dir in [self.root.clone(), self.shm_dir()] {
            if !dir.is_dir() {
                return Err(Error::Shutdown(format!(
                    "IPC root {} is not set up (missing {}): is the engine running?",
                    self.root.display(),
                    dir.display()
                )));
            }
        }
        Ok(())
    }

    /// The shm files whose call id names `caller` as the caller (cleanup after a worker dies;
    /// [`crate::shm::remove_files_of_caller`] removes them through the held descriptor).
    pub fn shm_files_of_caller(&self, caller: u32) -> Vec<PathBuf> {
        self.shm_calls_of_caller(caller)
            .into_iter()
            .map(|(call, side)| self.shm_file(call, side))
            .collect()
    }

    /// The (call, side) of every shm file whose call id names `caller` as the caller.
    pub fn shm_calls_of_caller(&self, caller: u32) -> Vec<(CallId, PayloadSide)> {
        self.names(Sub::Shm)
            .iter()
            .filter_map(|n| parse_shm_file_name(n))
            .filter(|(id, _)| id.caller() == caller)
            .collect()
    }
}

fn shm_name(call: CallId, side: PayloadSide) -> String {
    let ext = match side {
        PayloadSide::Input => "in",
        PayloadSide::Output => "out",
    };
    format!("{call}.{ext}")
}

/// The call id of a shm file name (`<16 hex>.in` / `.out`).
pub fn parse_shm_name(name: &str) -> Option<CallId> {
    parse_shm_file_name(name).map(|(id, _)| id)
}

/// The call id and side of a shm file name (`<16 hex>.in` / `.out`).
pub fn parse_shm_file_name(name: &str) -> Option<(CallId, PayloadSide)> {
    let (stem, ext) = name.split_once('.')?;
    let side = match ext {
        "in" => PayloadSide::Input,
        "out" => PayloadSide::Output,
        _ => return None,
    };
    if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(stem, 16)
        .ok()
        .map(|id| (CallId(id), side))
}

/// An IPC root owned by the live engine: created, locked, held open and cleaned on drop.
#[derive(Debug)]
pub struct IpcRoot {
    paths: IpcPaths,
    dir: RootDir,
    _lock: Flock<File>,
}

impl IpcRoot {
    /// Creates (or takes over) the root at `path`: mode 0700, `shm/`, the engine lock.
    ///
    /// Missing directories are created (mode 0700). A root or `shm/` that is a
    /// symlink, is not a directory or belongs to another user is refused; one of ours with a
    /// wider mode is narrowed to 0700 (every entry Gloam then uses in it is checked as it is
    /// opened). Ancestors another user could rename the root under are refused. The two
    /// directories are held open from here on: see [`RootDir`]. Fails with a clear message
    /// when another live engine holds the root.
    pub fn create(path: impl Into<PathBuf>) -> Result<IpcRoot> {
        let root = path.into();
        let dir = RootDir::create(&root)?;
        let paths = IpcPaths {
            root,
            dir: Some(dir.clone()),
        };
        let lock = take_lock(&paths)?;
        let root = IpcRoot {
            paths,
            dir,
            _lock: lock,
        };
        root.remove_stale_files();
        root.dir.remove_legacy_dir("fifo", |n| {
            n.ends_with(".in") || n.ends_with(".out") || n.ends_with(".ring")
        });
        Ok(root)
    }

    /// The paths of this root, anchored to its held directory descriptors.
    pub fn paths(&self) -> &IpcPaths {
        &self.paths
    }

    /// The held directory descriptors.
    pub fn dir(&self) -> &RootDir {
        &self.dir
    }

    /// Removes every file Gloam creates under the root (shm payloads, the socket). Used at
    /// start (leftovers of a dead engine) and at shutdown.
    pub fn remove_stale_files(&self) {
        self.remove_matching(Sub::Shm, |n| parse_shm_name(n).is_some());
        self.remove_matching(Sub::Root, |n| n == "engine.sock" || n == "engine.bell");
    }

    /// The paths of every file under `shm/` (tests: "no stray files").
    pub fn list_files(&self) -> Vec<String> {
        let dir = self.paths.shm_dir();
        self.paths
            .names(Sub::Shm)
            .into_iter()
            .map(|n| dir.join(n).display().to_string())
            .collect()
    }

    /// Unlinks (through the held descriptor) the names of `sub` that `remove_if` picks.
    fn remove_matching(&self, sub: Sub, remove_if: impl Fn(&str) -> bool) {
        for name in self.paths.names(sub) {
            if remove_if(&name) {
                let loc = self.paths.loc(sub, &name);
                if let Err(e) = loc.unlink() {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(path = %loc.path().display(), error = %e, "could not remove a stale file");
                    }
                }
            }
        }
    }
}

/// Opens (creating) `engine.lock` without following a link, checks it is a regular file of
/// ours, and takes its lock; the file then names this process.
fn take_lock(paths: &IpcPaths) -> Result<Flock<File>> {
    let loc = paths.loc(Sub::Root, "engine.lock");
    let lock_path = loc.path().to_path_buf();
    let fd = loc
        .open(
            OFlag::O_RDWR | OFlag::O_CREAT,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Error::InvalidConfig(format!(
                "{} is a symlink; Gloam does not follow links in the IPC root: remove it",
                lock_path.display()
            )),
            _ => Error::io("open", &lock_path, e),
        })?;
    let st = root_dir::stat(fd.as_fd()).map_err(|e| Error::io("stat", &lock_path, e))?;
    if root_dir::file_type(&st) != SFlag::S_IFREG || st.st_uid != nix::unistd::geteuid().as_raw() {
        return Err(Error::InvalidConfig(format!(
            "{} is a {} of uid {}, not a regular file of this user: remove it",
            lock_path.display(),
            root_dir::describe_type(&st),
            st.st_uid
        )));
    }
    let mut file = File::from(fd);
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::Error::EWOULDBLOCK)) => {
            return Err(Error::InvalidConfig(format!(
                "IPC root {} is held by another live engine (pid {}); stop it or choose another `ipc_root`",
                paths.root().display(),
                holder.trim()
            )))
        }
        Err((_, e)) => return Err(Error::errno("flock", &lock_path, e)),
    };
    // At offset 0: `read_to_string` left the offset at the old holder's end.
    lock.set_len(0)
        .and_then(|()| lock.write_all_at(std::process::id().to_string().as_bytes(), 0))
        .map_err(|e| Error::io("write", &lock_path, e))?;
    Ok(lock)
}

impl Drop for IpcRoot {
    fn drop(&mut self) {
        self.remove_stale_files();
        let _ = self.paths.loc(Sub::Root, "engine.lock").unlink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn second_engine_is_refused_and_root_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root");
        let first = IpcRoot::create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(path.join("shm").is_dir());
        assert!(!path.join("fifo").exists());
        let err = IpcRoot::create(&path).unwrap_err();
        assert!(
            err.to_string().contains("held by another live engine"),
            "{err}"
        );
        assert!(err.to_string().contains(&std::process::id().to_string()));
        drop(first);
        let _again = IpcRoot::create(&path).unwrap();
    }

    #[test]
    fn stale_files_are_removed_but_foreign_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = IpcPaths::new(dir.path());
        fs::create_dir_all(paths.shm_dir()).unwrap();
        let stale = paths.shm_file(CallId::new(2, 3), PayloadSide::Output);
        fs::write(&stale, b"x").unwrap();
        let foreign = paths.shm_dir().join("notes.txt");
        fs::write(&foreign, b"x").unwrap();
        let _root = IpcRoot::create(dir.path()).unwrap();
        assert!(!stale.exists());
        assert!(foreign.exists());
    }

    #[test]
    fn shm_names_parse_back() {
        let id = CallId::new(42, 99);
        let p = IpcPaths::new("/x").shm_file(id, PayloadSide::Input);
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(parse_shm_name(&name), Some(id));
        assert_eq!(parse_shm_name("zz.in"), None);
    }
}
