//! The IPC root: the tmpfs directory that engine and workers share.
//!
//! ```text
//! <root>/            mode 0700, owned by the engine's user
//!   engine.lock      flock held by the live engine (holds its pid)
//!   engine.sock      the engine's handshake socket
//! ```
//!
//! Nothing else is there: each worker's channel comes to it by descriptor with `WELCOME` —
//! with the ring transport its ring region and the doorbells (sealed memfds, see
//! [`crate::shared_map`]), with the FIFO transport two anonymous pipes (see
//! [`crate::channel`]). Payloads that do not fit
//! inline are sealed memfds passed by descriptor too (see [`crate::payload`]). What an older
//! engine created there (`fifo/` with its named FIFOs and
//! ring files, `engine.bell`) is removed at start.
//!
//! The engine creates the root and holds its lock; a second engine on the same root is refused.
//! Files a previous, dead engine left behind are removed at start (only names Gloam creates).
//!
//! The engine's [`IpcPaths`] (from [`IpcRoot::paths`]) carry the root's held directory
//! descriptors ([`RootDir`]): every file opened, created or removed through them
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
use crate::root_dir::{self, Loc, RootDir, Sub};

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
    /// Checks that an engine has set this root up (what a worker does before connecting).
    pub fn check_exists(&self) -> Result<()> {
        if !self.root.is_dir() {
            return Err(Error::Shutdown(format!(
                "IPC root {} is not set up: is the engine running?",
                self.root.display()
            )));
        }
        Ok(())
    }
}

/// An IPC root owned by the live engine: created, locked, held open and cleaned on drop.
#[derive(Debug)]
pub struct IpcRoot {
    paths: IpcPaths,
    dir: RootDir,
    _lock: Flock<File>,
}

impl IpcRoot {
    /// Creates (or takes over) the root at `path`: mode 0700, the engine lock.
    ///
    /// Missing directories are created (mode 0700). A root that is a
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
        root.dir.remove_legacy_dir("shm", |n| {
            n.split_once('.').is_some_and(|(stem, ext)| {
                matches!(ext, "in" | "out")
                    && stem.len() == 16
                    && stem.bytes().all(|b| b.is_ascii_hexdigit())
            })
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

    /// Removes every file Gloam creates under the root (the socket). Used at start (leftovers
    /// of a dead engine) and at shutdown.
    pub fn remove_stale_files(&self) {
        self.remove_matching(Sub::Root, |n| n == "engine.sock" || n == "engine.bell");
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
        assert!(!path.join("shm").exists() && !path.join("fifo").exists());
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
    fn an_old_engines_payload_directory_is_removed_with_its_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let shm = dir.path().join("shm");
        fs::create_dir_all(&shm).unwrap();
        fs::write(shm.join("0000000200000003.out"), b"x").unwrap();
        let _root = IpcRoot::create(dir.path()).unwrap();
        assert!(!shm.exists());
        // A directory that holds something Gloam did not make is left alone.
        drop(_root);
        fs::create_dir_all(&shm).unwrap();
        fs::write(shm.join("0000000200000004.in"), b"x").unwrap();
        fs::write(shm.join("notes.txt"), b"x").unwrap();
        let _root = IpcRoot::create(dir.path()).unwrap();
        assert!(shm.join("notes.txt").exists());
        assert!(!shm.join("0000000200000004.in").exists());
    }
}
