//! The IPC root's directories held open by the engine, and the one way Gloam touches a file in
//! the root: by name relative to a held directory descriptor (the engine) or by whole path (a
//! worker), never following a symbolic link, never blocking in `open`, and checking on the
//! opened descriptor that it got the kind of file it wanted.
//!
//! The root's path is predictable (`/dev/shm/gloam-<uid>`) and every local user can create
//! names in `/dev/shm`. [`RootDir::create`] therefore walks the path one component at a time,
//! refuses a root that is a symlink, is not a directory or belongs to another user, refuses
//! ancestors another user could rename it under, and keeps a descriptor of the root for the
//! engine's lifetime: what happens to the names afterwards cannot redirect the engine's files.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use crate::error::{Error, Result};

/// A directory of an IPC root (today only the root itself: `engine.lock`, `engine.sock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sub {
    /// The root itself.
    Root,
}

impl Sub {
    fn name(self) -> &'static str {
        match self {
            Sub::Root => "",
        }
    }
}

/// The IPC root's directories, opened once (`O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC`) and
/// checked to be directories of this process's user with mode 0700. Every file operation
/// through an [`crate::ipc_root::IpcPaths`] that carries a `RootDir` resolves names relative
/// to these descriptors. Cloning shares the descriptors.
#[derive(Clone)]
pub struct RootDir {
    held: Arc<Held>,
}

struct Held {
    path: PathBuf,
    root: OwnedFd,
}

impl RootDir {
    /// Opens (creating it when missing, mode 0700) the root at `path`, checked as the module
    /// documentation says. Errors name the path, what is wrong with it and what
    /// to do.
    pub(crate) fn create(path: &Path) -> Result<RootDir> {
        let abs = std::path::absolute(path).map_err(|e| Error::io("resolve", path, e))?;
        let (parent, name) = open_parent(&abs)?;
        let root = open_private_dir(parent.as_fd(), name, &abs)?;
        Ok(RootDir {
            held: Arc::new(Held { path: abs, root }),
        })
    }

    /// The root's absolute path, as it was opened.
    pub fn path(&self) -> &Path {
        &self.held.path
    }

    /// The held descriptor of the root directory.
    pub fn root_fd(&self) -> BorrowedFd<'_> {
        self.held.root.as_fd()
    }

    pub(crate) fn fd(&self, sub: Sub) -> BorrowedFd<'_> {
        match sub {
            Sub::Root => self.root_fd(),
        }
    }
}

impl RootDir {
    /// Removes directory `name` of the root that an older engine made and this one no longer
    /// uses (`fifo/`, where named FIFOs and ring files were; `shm/`, where payload files were),
    /// with the files in it that
    /// `ours` recognises. A symlink or a directory of another user is left alone, and so is a
    /// directory that still holds anything else.
    pub(crate) fn remove_legacy_dir(&self, name: &str, ours: impl Fn(&str) -> bool) {
        let flags = DIR_FLAGS | OFlag::O_NOFOLLOW;
        let Ok(fd) = open_at(Some(self.root_fd()), Path::new(name), flags, Mode::empty()) else {
            return;
        };
        match nix::sys::stat::fstat(fd.as_raw_fd()) {
            Ok(st) if st.st_uid == me() => {}
            _ => return,
        }
        let Ok(mut dir) = nix::dir::Dir::from(fd) else {
            return;
        };
        let names: Vec<String> = dir
            .iter()
            .filter_map(|e| e.ok())
            .map(|e| String::from_utf8_lossy(e.file_name().to_bytes()).into_owned())
            .filter(|n| n != "." && n != ".." && ours(n))
            .collect();
        for n in &names {
            let _ = nix::unistd::unlinkat(
                Some(dir.as_raw_fd()),
                n.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
        let gone = nix::unistd::unlinkat(
            Some(self.root_fd().as_raw_fd()),
            name,
            UnlinkatFlags::RemoveDir,
        );
        let path = self.path().join(name);
        match gone {
            Ok(()) => tracing::info!(
                path = %path.display(),
                "removed a directory an older engine left in the IPC root"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "an older engine's directory in the IPC root holds files Gloam did not make; left in place"
            ),
        }
    }
}

impl fmt::Debug for RootDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootDir")
            .field("path", &self.held.path)
            .field("root_fd", &self.held.root.as_raw_fd())
            .finish()
    }
}

impl PartialEq for RootDir {
    fn eq(&self, other: &RootDir) -> bool {
        Arc::ptr_eq(&self.held, &other.held)
    }
}

impl Eq for RootDir {}

/// Where one file of the IPC root is, for the `*at` calls: a name relative to a held
/// directory, or (without one) a whole path.
pub(crate) struct Loc<'a> {
    dir: Option<BorrowedFd<'a>>,
    name: PathBuf,
    full: PathBuf,
}

impl<'a> Loc<'a> {
    /// File `name` in `sub` of the root at `root`, relative to `held` when given.
    pub(crate) fn new(root: &Path, held: Option<&'a RootDir>, sub: Sub, name: &str) -> Loc<'a> {
        let full = root.join(sub.name()).join(name);
        match held {
            Some(d) => Loc {
                dir: Some(d.fd(sub)),
                name: PathBuf::from(name),
                full,
            },
            None => Loc {
                dir: None,
                name: full.clone(),
                full,
            },
        }
    }

    /// The whole path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.full
    }

    /// Opens the file with `flags` plus `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC`: a
    /// symlink fails with `ELOOP`, a FIFO opens at once (then fails the caller's type check).
    pub(crate) fn open(&self, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
        let flags =
            flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        open_at(self.dir, &self.name, flags, mode).map_err(io::Error::from)
    }

    /// Removes the name (a symlink is removed, not followed).
    pub(crate) fn unlink(&self) -> io::Result<()> {
        nix::unistd::unlinkat(
            self.dir.map(|d| d.as_raw_fd()),
            &self.name,
            UnlinkatFlags::NoRemoveDir,
        )
        .map_err(io::Error::from)
    }
}

/// `fstat(2)` of an opened file.
pub(crate) fn stat(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)
}

/// The names in `sub` of the root at `root` (relative to `held` when given). A directory that
/// cannot be read yields nothing.
pub(crate) fn list_names(root: &Path, held: Option<&RootDir>, sub: Sub) -> Vec<String> {
    let full = root.join(sub.name());
    match held {
        Some(d) => {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            let Ok(mut dir) =
                nix::dir::Dir::openat(Some(d.fd(sub).as_raw_fd()), ".", flags, Mode::empty())
            else {
                return Vec::new();
            };
            dir.iter()
                .filter_map(|e| e.ok())
                .map(|e| String::from_utf8_lossy(e.file_name().to_bytes()).into_owned())
                .filter(|n| n != "." && n != "..")
                .collect()
        }
        None => std::fs::read_dir(full)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// What kind of file `st` describes, in words.
pub(crate) fn describe_type(st: &FileStat) -> &'static str {
    match file_type(st) {
        SFlag::S_IFREG => "regular file",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFIFO => "named pipe (FIFO)",
        SFlag::S_IFLNK => "symbolic link",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        _ => "file of unknown type",
    }
}

/// The type bits of `st` (`SFlag::S_IFREG`, `S_IFIFO`, ...).
pub(crate) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// `openat(2)`, retried on `EINTR`, as an owned descriptor.
fn open_at(
    dir: Option<BorrowedFd<'_>>,
    name: &Path,
    flags: OFlag,
    mode: Mode,
) -> nix::Result<OwnedFd> {
    loop {
        match nix::fcntl::openat(dir.map(|d| d.as_raw_fd()), name, flags, mode) {
            // SAFETY: `openat` just returned this descriptor; nothing else owns it.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn refuse(path: &Path, what: impl fmt::Display) -> Error {
    Error::InvalidConfig(format!("IPC root {}: {what}", path.display()))
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC);

/// Walks `abs` down to its parent, one component at a time, creating missing directories
/// (mode 0700) and checking the existing ones with [`check_ancestor`]. Returns the parent's
/// descriptor and the root's own name.
fn open_parent(abs: &Path) -> Result<(OwnedFd, &OsStr)> {
    let name = match abs.components().next_back() {
        Some(Component::Normal(name)) => name,
        _ => {
            return Err(refuse(
                abs,
                "does not end in a directory name; set `ipc_root` to a directory such as /dev/shm/gloam-<uid>",
            ))
        }
    };
    let parent_path = abs.parent().unwrap_or(Path::new("/"));
    let mut cur = open_at(None, Path::new("/"), DIR_FLAGS, Mode::empty())
        .map_err(|e| Error::errno("open", "/", e))?;
    let mut at = PathBuf::from("/");
    check_ancestor(cur.as_fd(), &at, abs)?;
    for comp in parent_path.components() {
        match comp {
            Component::Normal(part) => {
                at.push(part);
                cur = step_down(cur.as_fd(), part, &at, abs)?;
            }
            Component::ParentDir => {
                at.push("..");
                cur = open_at(Some(cur.as_fd()), Path::new(".."), DIR_FLAGS, Mode::empty())
                    .map_err(|e| Error::errno("open", &at, e))?;
                check_ancestor(cur.as_fd(), &at, abs)?;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok((cur, name))
}

/// Opens ancestor `part` of the root under `parent`: created (0700) when missing, followed when
/// it is a symlink that only root or this user could have made, then checked.
fn step_down(parent: BorrowedFd<'_>, part: &OsStr, at: &Path, abs: &Path) -> Result<OwnedFd> {
    let flags = match nix::sys::stat::fstatat(
        Some(parent.as_raw_fd()),
        part,
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Err(Errno::ENOENT) => {
            match nix::sys::stat::mkdirat(Some(parent.as_raw_fd()), part, Mode::S_IRWXU) {
                Ok(()) | Err(Errno::EEXIST) => DIR_FLAGS | OFlag::O_NOFOLLOW,
                Err(e) => return Err(Error::errno("mkdir", at, e)),
            }
        }
        Err(e) => return Err(Error::errno("stat", at, e)),
        Ok(st) if file_type(&st) == SFlag::S_IFLNK => {
            if st.st_uid != 0 && st.st_uid != me() {
                return Err(refuse(
                    abs,
                    format!(
                        "{} is a symlink owned by uid {}, which could point it anywhere; choose an `ipc_root` that does not pass through it",
                        at.display(),
                        st.st_uid
                    ),
                ));
            }
            // Only root or we made this link, in a directory others cannot rename it in.
            DIR_FLAGS
        }
        Ok(_) => DIR_FLAGS | OFlag::O_NOFOLLOW,
    };
    let fd = open_at(Some(parent), Path::new(part), flags, Mode::empty())
        .map_err(|e| Error::errno("open directory", at, e))?;
    check_ancestor(fd.as_fd(), at, abs)?;
    Ok(fd)
}

/// An ancestor of the root must belong to root or to this user, and no other user may write
/// it unless it is sticky (like `/dev/shm` and `/tmp`): otherwise another user could rename the
/// root and put their own directory in its place. Group write is accepted only for this user's
/// own directory in its own primary group (the "user private group" of a `umask 002` system).
fn check_ancestor(fd: BorrowedFd<'_>, at: &Path, abs: &Path) -> Result<()> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::errno("stat", at, e))?;
    if st.st_uid != 0 && st.st_uid != me() {
        return Err(refuse(
            abs,
            format!(
                "the directory {} above it belongs to uid {}, who could replace the root; choose an `ipc_root` under a directory owned by you or by root",
                at.display(),
                st.st_uid
            ),
        ));
    }
    let sticky = st.st_mode & Mode::S_ISVTX.bits() != 0;
    let own_group = st.st_uid == me() && st.st_gid == nix::unistd::getegid().as_raw();
    let others_write = st.st_mode & 0o002 != 0 || (st.st_mode & 0o020 != 0 && !own_group);
    if others_write && !sticky {
        return Err(refuse(
            abs,
            format!(
                "the directory {} above it is writable by other users (mode {:o}, gid {}) without the sticky bit, so they could replace the root; remove their write access (chmod go-w) or choose another `ipc_root`",
                at.display(),
                st.st_mode & 0o7777,
                st.st_gid
            ),
        ));
    }
    Ok(())
}

/// Opens directory `name` under `parent` without following a link, creating it (0700) when
/// missing; refuses anything but a directory of this user; narrows its mode to 0700.
fn open_private_dir(parent: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<OwnedFd> {
    let flags = DIR_FLAGS | OFlag::O_NOFOLLOW;
    let mut created = false;
    let fd = loop {
        match open_at(Some(parent), Path::new(name), flags, Mode::empty()) {
            Ok(fd) => break fd,
            Err(Errno::ENOENT) if !created => {
                match nix::sys::stat::mkdirat(Some(parent.as_raw_fd()), name, Mode::S_IRWXU) {
                    Ok(()) | Err(Errno::EEXIST) => created = true,
                    Err(e) => return Err(Error::errno("mkdir", path, e)),
                }
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(not_a_dir(parent, name, path)),
            Err(e) => return Err(Error::errno("open directory", path, e)),
        }
    };
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::errno("stat", path, e))?;
    if st.st_uid != me() {
        return Err(Error::InvalidConfig(format!(
            "IPC root directory {} belongs to uid {}, not to uid {} (this engine's user): another user made it; remove it or choose another `ipc_root`",
            path.display(),
            st.st_uid,
            me()
        )));
    }
    if st.st_mode & 0o7777 != 0o700 {
        if !created {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", st.st_mode & 0o7777),
                "IPC root directory was not private; setting its mode to 0700"
            );
        }
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::S_IRWXU)
            .map_err(|e| Error::errno("chmod 0700", path, e))?;
    }
    Ok(fd)
}

/// The error for `name` under `parent` when it is not a directory (a symlink, a file, ...).
fn not_a_dir(parent: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Error {
    let found =
        nix::sys::stat::fstatat(Some(parent.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW);
    let what = match found {
        Ok(st) if file_type(&st) == SFlag::S_IFLNK => {
            let target = nix::fcntl::readlinkat(Some(parent.as_raw_fd()), name)
                .map(|t| format!(" (to {})", Path::new(&t).display()))
                .unwrap_or_default();
            format!("is a symlink{target}; Gloam does not follow links in the IPC root")
        }
        Ok(st) => format!("is a {}, not a directory", describe_type(&st)),
        Err(e) => format!("cannot be inspected ({e})"),
    };
    Error::InvalidConfig(format!(
        "IPC root directory {} {what}: remove it or choose another `ipc_root`",
        path.display()
    ))
}
