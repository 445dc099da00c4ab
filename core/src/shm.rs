//! Shared-memory payloads: files under `<ipc-root>/shm/`.
//!
//! A payload larger than the 960-byte inline area is written by its sender into a file named
//! from the call id (mode 0600, created exclusively), and the message carries only its length.
//! The size limit is checked before anything is created.
//!
//! Payload files are peer input. Every open here is `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC` (a
//! symlink is refused, a named pipe opens at once and is then refused), relative to the
//! engine's held `shm/` descriptor when the [`IpcPaths`] carry one, and the opened descriptor
//! is checked to be a regular file of the length the message claims. The engine reads
//! payloads with [`read`] (`pread` into its own buffer): a peer that truncates a file can make
//! a read fail, never fault. Workers may map their inputs with [`open`].

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

use crate::error::{Error, Result};
use crate::ipc_root::{IpcPaths, PayloadSide};
use crate::protocol::CallId;
use crate::root_dir::{self, Loc};

/// Refuses `size` bytes when they exceed `limit`.
pub fn check_size(size: usize, limit: u64) -> Result<()> {
    let size = size as u64;
    if size > limit {
        return Err(Error::PayloadTooLarge { size, limit });
    }
    Ok(())
}

/// Writes `data` to the shm file of (`call`, `side`) and returns its path.
///
/// The file is created with `O_CREAT | O_EXCL | O_NOFOLLOW` (whatever already has the name, a
/// file, a FIFO or a symlink, makes this fail) and written with `pwrite`, never mapped. Fails
/// with `PayloadTooLarge` (before creating anything) when `data` exceeds `limit`.
pub fn write(
    paths: &IpcPaths,
    call: CallId,
    side: PayloadSide,
    data: &[u8],
    limit: u64,
) -> Result<PathBuf> {
    check_size(data.len(), limit)?;
    let loc = paths.shm_loc(call, side);
    let fd = loc
        .open(
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| Error::io("create shm file", loc.path(), e))?;
    if let Err(e) = File::from(fd).write_all_at(data, 0) {
        let _ = loc.unlink();
        return Err(Error::io("write shm file", loc.path(), e));
    }
    Ok(loc.into_path())
}

/// A read-only view of a shm payload. The file stays valid while mapped, even once unlinked.
#[derive(Debug)]
pub struct ShmView {
    map: Option<Mmap>,
}

impl ShmView {
    /// The payload bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// Maps the shm file of (`call`, `side`) read-only, after checking (on the opened descriptor)
/// that it is a regular file of `len` bytes. For workers; the engine uses [`read`].
pub fn open(paths: &IpcPaths, call: CallId, side: PayloadSide, len: u32) -> Result<ShmView> {
    let loc = paths.shm_loc(call, side);
    let file = open_checked(&loc, len)?;
    if len == 0 {
        return Ok(ShmView { map: None });
    }
    // SAFETY: the mapping is read-only and only read through `&[u8]`. Its sender writes a
    // payload file once, before the message naming it, and never touches it again; a sender
    // that truncated it anyway would fault this process (SIGBUS), which is why only workers,
    // whose payloads come from the engine, map them.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mmap shm file", loc.path(), e))?;
    Ok(ShmView { map: Some(map) })
}

/// Reads the shm file of (`call`, `side`) into a new buffer with `pread`, after checking (on
/// the opened descriptor) that it is a regular file of `len` bytes. A file that shrinks while
/// it is read is an error naming it, not a crash.
pub fn read(paths: &IpcPaths, call: CallId, side: PayloadSide, len: u32) -> Result<Vec<u8>> {
    let loc = paths.shm_loc(call, side);
    let file = open_checked(&loc, len)?;
    read_exact_len(&file, loc.path(), len)
}

/// Checks that the shm file of (`call`, `side`) is a regular file of `len` bytes, without
/// reading it (the engine checks a worker's output file before it routes the answer).
pub fn check(paths: &IpcPaths, call: CallId, side: PayloadSide, len: u32) -> Result<()> {
    open_checked(&paths.shm_loc(call, side), len).map(drop)
}

/// Opens a payload file without following a link or blocking, and checks that it is a regular
/// file holding exactly `len` bytes.
fn open_checked(loc: &Loc<'_>, len: u32) -> Result<File> {
    let fd = loc
        .open(OFlag::O_RDONLY, Mode::empty())
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Error::RemoteProtocol(format!(
                "shm file {} is a symbolic link; payload files are never followed",
                loc.path().display()
            )),
            _ => Error::io("open shm file", loc.path(), e),
        })?;
    let st = root_dir::stat(fd.as_fd()).map_err(|e| Error::io("stat shm file", loc.path(), e))?;
    if root_dir::file_type(&st) != SFlag::S_IFREG {
        return Err(Error::RemoteProtocol(format!(
            "shm file {} is a {}, not a regular file",
            loc.path().display(),
            root_dir::describe_type(&st)
        )));
    }
    if u64::try_from(st.st_size).ok() != Some(u64::from(len)) {
        return Err(Error::RemoteProtocol(format!(
            "shm file {} holds {} bytes, the message says {len}",
            loc.path().display(),
            st.st_size
        )));
    }
    Ok(File::from(fd))
}

/// Reads `len` bytes from offset 0 of `file`; ending early is an error naming `path`.
fn read_exact_len(file: &File, path: &Path, len: u32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    let mut filled = 0usize;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => {
                return Err(Error::RemoteProtocol(format!(
                    "shm file {} ended after {filled} of the {len} bytes the message says (it shrank while being read)",
                    path.display()
                )))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read shm file", path, e)),
        }
    }
    Ok(buf)
}

/// Removes a shm file by whole path (a symlink is removed, not followed); a file already gone
/// is not an error. The engine removes through [`remove_call`] (relative to its held `shm/`).
pub fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove shm file");
        }
    }
}

/// Removes the shm file of (`call`, `side`), if any (`unlinkat`, relative to the held `shm/`
/// when the paths carry it).
pub fn remove_call(paths: &IpcPaths, call: CallId, side: PayloadSide) {
    let loc = paths.shm_loc(call, side);
    if let Err(e) = loc.unlink() {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %loc.path().display(), error = %e, "could not remove shm file");
        }
    }
}

/// Removes every shm file whose call id names `caller` as the caller (cleanup after a worker
/// dies), like [`remove_call`].
pub fn remove_files_of_caller(paths: &IpcPaths, caller: u32) {
    for (call, side) in paths.shm_calls_of_caller(caller) {
        remove_call(paths, call, side);
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::ipc_root::IpcRoot;

    const OUT: PayloadSide = PayloadSide::Output;

    /// A worker's view: whole paths.
    fn root() -> (tempfile::TempDir, IpcPaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = IpcPaths::new(dir.path());
        fs::create_dir_all(paths.shm_dir()).unwrap();
        (dir, paths)
    }

    /// The engine's view: an [`IpcRoot`] and its anchored paths.
    fn engine_root() -> (tempfile::TempDir, IpcRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = IpcRoot::create(dir.path().join("root")).unwrap();
        (dir, root)
    }

    /// Runs `f` on its own thread and fails the test when it does not return within 20 s (an
    /// `open` that blocks on a FIFO would never return).
    fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{what} did not return within 20 s (blocked?)"))
    }

    #[test]
    fn one_and_sixteen_mib_round_trip_byte_exact() {
        let (_d, worker) = root();
        let (_e, engine) = engine_root();
        for paths in [&worker, engine.paths()] {
            for (i, size) in [1usize << 20, 16 << 20].into_iter().enumerate() {
                let data: Vec<u8> = (0..size).map(|j| (j * 31 + i) as u8).collect();
                let id = CallId::new(5, i as u32);
                let path = write(paths, id, PayloadSide::Input, &data, 16 << 20).unwrap();
                let view = open(paths, id, PayloadSide::Input, size as u32).unwrap();
                assert!(view.bytes() == data.as_slice());
                let copy = read(paths, id, PayloadSide::Input, size as u32).unwrap();
                assert!(copy == data);
                remove_call(paths, id, PayloadSide::Input);
                assert!(!path.exists());
            }
            assert_eq!(fs::read_dir(paths.shm_dir()).unwrap().count(), 0);
        }
    }

    #[test]
    fn oversize_is_refused_before_a_file_is_created() {
        let (_d, paths) = root();
        let data = vec![0u8; 2000];
        let err = write(&paths, CallId(1), OUT, &data, 1000).unwrap_err();
        assert!(matches!(
            err,
            Error::PayloadTooLarge {
                size: 2000,
                limit: 1000
            }
        ));
        assert!(err.to_string().contains("2000") && err.to_string().contains("1000"));
        assert_eq!(fs::read_dir(paths.shm_dir()).unwrap().count(), 0);
    }

    #[test]
    fn length_mismatch_is_an_error() {
        let (_d, paths) = root();
        let path = write(&paths, CallId(9), PayloadSide::Input, &[1; 2000], 1 << 20).unwrap();
        assert!(open(&paths, CallId(9), PayloadSide::Input, 1999).is_err());
        let err = read(&paths, CallId(9), PayloadSide::Input, 2001).unwrap_err();
        assert!(err.to_string().contains("holds 2000 bytes"), "{err}");
        remove(&path);
    }

    #[test]
    fn a_named_pipe_in_place_of_a_payload_is_refused_at_once() {
        let (_e, engine) = engine_root();
        let paths = engine.paths().clone();
        let worker = IpcPaths::new(paths.root());
        let id = CallId(7);
        let fifo = paths.shm_file(id, OUT);
        nix::unistd::mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
        // Nobody ever opens the other end: a blocking open would wait forever.
        let errors = bounded("opening a FIFO as a payload", move || {
            [
                read(&paths, id, OUT, 2000).unwrap_err(),
                read(&worker, id, OUT, 2000).unwrap_err(),
                open(&worker, id, OUT, 2000).unwrap_err(),
                write(&paths, id, OUT, &[0; 2000], 1 << 20).unwrap_err(),
                write(&worker, id, OUT, &[0; 2000], 1 << 20).unwrap_err(),
            ]
        });
        for err in &errors[..3] {
            let text = err.to_string();
            assert!(
                text.contains("named pipe (FIFO), not a regular file"),
                "{text}"
            );
            assert!(text.contains(&fifo.display().to_string()), "{text}");
        }
        for err in &errors[3..] {
            assert!(err.to_string().contains("File exists"), "{err}");
        }
        remove_call(engine.paths(), id, OUT);
        assert!(!fifo.exists());
    }

    #[test]
    fn a_symlink_in_place_of_a_payload_is_refused() {
        let (_e, engine) = engine_root();
        let paths = engine.paths();
        let worker = IpcPaths::new(paths.root());
        let elsewhere = tempfile::tempdir().unwrap();
        let secret = elsewhere.path().join("secret");
        fs::write(&secret, [b's'; 2000]).unwrap();
        let id = CallId(8);
        let link = paths.shm_file(id, OUT);
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        for err in [
            read(paths, id, OUT, 2000).unwrap_err(),
            read(&worker, id, OUT, 2000).unwrap_err(),
            open(&worker, id, OUT, 2000).unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(text.contains("is a symbolic link"), "{text}");
            assert!(text.contains(&link.display().to_string()), "{text}");
        }
        assert!(write(paths, id, OUT, &[b'x'; 2000], 1 << 20).is_err());
        assert_eq!(fs::read(&secret).unwrap(), vec![b's'; 2000]);
        // Removing the name removes the link, not what it points to.
        remove_call(paths, id, OUT);
        assert!(fs::symlink_metadata(&link).is_err() && secret.exists());
    }

    #[test]
    fn a_payload_truncated_while_being_read_is_an_error_naming_it() {
        let (_e, engine) = engine_root();
        let paths = engine.paths();
        let id = CallId(9);
        let path = write(paths, id, OUT, &[5; 8192], 1 << 20).unwrap();
        let loc = paths.shm_loc(id, OUT);
        let file = open_checked(&loc, 8192).unwrap();
        // The writer shrinks it after the engine checked its size.
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100)
            .unwrap();
        let err = read_exact_len(&file, loc.path(), 8192).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("ended after 100 of the 8192 bytes"), "{text}");
        assert_eq!(err.kind(), crate::ErrorKind::ProtocolError);
        // Shrunk before the open: the size check names it.
        let err = read(paths, id, OUT, 8192).unwrap_err();
        assert!(err.to_string().contains("holds 100 bytes"), "{err}");
    }

    #[test]
    fn the_engine_keeps_writing_into_the_root_it_opened_after_its_name_is_swapped() {
        let (dir, engine) = engine_root();
        let paths = engine.paths();
        let moved = dir.path().join("moved");
        fs::rename(dir.path().join("root"), &moved).unwrap();
        let decoy = dir.path().join("decoy");
        fs::create_dir_all(decoy.join("shm")).unwrap();
        std::os::unix::fs::symlink(&decoy, dir.path().join("root")).unwrap();
        let id = CallId::new(3, 1);
        write(paths, id, PayloadSide::Input, &[1; 2000], 1 << 20).unwrap();
        let name = paths.shm_file(id, PayloadSide::Input);
        let name = name.file_name().unwrap();
        assert!(moved.join("shm").join(name).is_file());
        assert_eq!(fs::read_dir(decoy.join("shm")).unwrap().count(), 0);
        assert_eq!(
            read(paths, id, PayloadSide::Input, 2000).unwrap(),
            [1; 2000]
        );
        remove_files_of_caller(paths, 3);
        assert!(!moved.join("shm").join(name).exists());
    }
}
