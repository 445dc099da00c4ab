//! The IPC root: the tmpfs directory that engine and workers share.
//!
//! ```text
//! <root>/            mode 0700, owned by the engine's user
//!   engine.lock      flock held by the live engine (holds its pid)
//!   engine.sock      the engine's handshake socket
//!   fifo/<id>.in     engine → worker messages of logical worker <id>
//!   fifo/<id>.out    worker → engine messages
//!   shm/<call>.in    a call's input payload when it exceeds the inline area
//!   shm/<call>.out   a call's output payload
//! ```
//!
//! The engine creates the root and holds its lock; a second engine on the same root is refused.
//! Files a previous, dead engine left behind are removed at start (only names Gloam creates).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::protocol::CallId;

/// Which side of a call a shm payload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadSide {
    /// The call's input (written by the caller, or by the engine for an external call).
    Input,
    /// The call's output (written by the callee).
    Output,
}

/// The paths of an IPC root, without ownership (what a worker has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcPaths {
    root: PathBuf,
}

impl IpcPaths {
    /// The paths under `root`.
    pub fn new(root: impl Into<PathBuf>) -> IpcPaths {
        IpcPaths { root: root.into() }
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
    /// The FIFO directory.
    pub fn fifo_dir(&self) -> PathBuf {
        self.root.join("fifo")
    }
    /// The shm payload directory.
    pub fn shm_dir(&self) -> PathBuf {
        self.root.join("shm")
    }
    /// The engine → worker FIFO of `worker_id`.
    pub fn fifo_to_worker(&self, worker_id: u32) -> PathBuf {
        self.fifo_dir().join(format!("{worker_id}.in"))
    }
    /// The worker → engine FIFO of `worker_id`.
    pub fn fifo_to_engine(&self, worker_id: u32) -> PathBuf {
        self.fifo_dir().join(format!("{worker_id}.out"))
    }
    /// The ring file of `worker_id` (ring transport).
    pub fn ring_file(&self, worker_id: u32) -> PathBuf {
        self.fifo_dir().join(format!("{worker_id}.ring"))
    }
    /// The engine's doorbell file (ring transport).
    pub fn engine_bell(&self) -> PathBuf {
        self.root.join("engine.bell")
    }
    /// The shm file of a call's input or output.
    pub fn shm_file(&self, call: CallId, side: PayloadSide) -> PathBuf {
        let ext = match side {
            PayloadSide::Input => "in",
            PayloadSide::Output => "out",
        };
        self.shm_dir().join(format!("{call}.{ext}"))
    }

    /// Checks that an engine has set this root up (what a worker does before connecting).
    pub fn check_exists(&self) -> Result<()> {
        for dir in [self.root.clone(), self.fifo_dir(), self.shm_dir()] {
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

    /// The shm files whose call id names `caller` as the caller (cleanup after a worker dies).
    pub fn shm_files_of_caller(&self, caller: u32) -> Vec<PathBuf> {
        let Ok(dir) = fs::read_dir(self.shm_dir()) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter(|e| {
                parse_shm_name(&e.file_name().to_string_lossy())
                    .is_some_and(|id| id.caller() == caller)
            })
            .map(|e| e.path())
            .collect()
    }
}

/// The call id of a shm file name (`<16 hex>.in` / `.out`).
pub fn parse_shm_name(name: &str) -> Option<CallId> {
    let (stem, ext) = name.split_once('.')?;
    if !matches!(ext, "in" | "out") || stem.len() != 16 {
        return None;
    }
    u64::from_str_radix(stem, 16).ok().map(CallId)
}

/// An IPC root owned by the live engine: created, locked, and cleaned on drop.
#[derive(Debug)]
pub struct IpcRoot {
    paths: IpcPaths,
    _lock: Flock<File>,
}

impl IpcRoot {
    /// Creates (or takes over) the root at `path`: mode 0700, `fifo/`, `shm/`, the engine lock.
    ///
    /// Fails with a clear message when another live engine holds the root.
    pub fn create(path: impl Into<PathBuf>) -> Result<IpcRoot> {
        let paths = IpcPaths::new(path);
        let root = paths.root().to_path_buf();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| Error::io("create IPC root", &root, e))?;
        let meta = fs::metadata(&root).map_err(|e| Error::io("stat", &root, e))?;
        if meta.uid() != nix::unistd::getuid().as_raw() {
            return Err(Error::InvalidConfig(format!(
                "IPC root {} belongs to uid {}, not to this user",
                root.display(),
                meta.uid()
            )));
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("chmod 0700", &root, e))?;

        let lock_path = paths.lock_file();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::Error::EWOULDBLOCK)) => {
                return Err(Error::InvalidConfig(format!(
                    "IPC root {} is held by another live engine (pid {}); stop it or choose another `ipc_root`",
                    root.display(),
                    holder.trim()
                )))
            }
            Err((_, e)) => return Err(Error::errno("flock", &lock_path, e)),
        };
        lock.set_len(0)
            .and_then(|()| write!(&mut *lock, "{}", std::process::id()))
            .map_err(|e| Error::io("write", &lock_path, e))?;

        for dir in [paths.fifo_dir(), paths.shm_dir()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| Error::io("mkdir", &dir, e))?;
        }
        let root = IpcRoot { paths, _lock: lock };
        root.remove_stale_files();
        Ok(root)
    }

    /// The paths of this root.
    pub fn paths(&self) -> &IpcPaths {
        &self.paths
    }

    /// Removes every file Gloam creates under the root (FIFOs, shm payloads, the socket).
    /// Used at start (leftovers of a dead engine) and at shutdown.
    pub fn remove_stale_files(&self) {
        remove_matching(&self.paths.fifo_dir(), |n| {
            n.ends_with(".in") || n.ends_with(".out") || n.ends_with(".ring")
        });
        remove_matching(&self.paths.shm_dir(), |n| parse_shm_name(n).is_some());
        let _ = fs::remove_file(self.paths.socket());
        let _ = fs::remove_file(self.paths.engine_bell());
    }

    /// The names of every file under `fifo/` and `shm/` (tests: "no stray files").
    pub fn list_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        for dir in [self.paths.fifo_dir(), self.paths.shm_dir()] {
            if let Ok(rd) = fs::read_dir(&dir) {
                out.extend(
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.path().display().to_string()),
                );
            }
        }
        out
    }
}

impl Drop for IpcRoot {
    fn drop(&mut self) {
        self.remove_stale_files();
        let _ = fs::remove_file(self.paths.lock_file());
    }
}

fn remove_matching(dir: &Path, keep_if: impl Fn(&str) -> bool) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.filter_map(|e| e.ok()) {
            if keep_if(&e.file_name().to_string_lossy()) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_engine_is_refused_and_root_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root");
        let first = IpcRoot::create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(path.join("fifo").is_dir() && path.join("shm").is_dir());
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
