//! Shared memory between the engine and its workers, and the only ways this process touches
//! it.
//!
//! The engine creates every shared region as a *sealed memfd*: an anonymous file that no path
//! names, sized once and sealed against shrinking and growing (`F_SEAL_SHRINK | F_SEAL_GROW |
//! F_SEAL_SEAL`), handed to the workers that may use it as a file descriptor over the engine
//! socket (`SCM_RIGHTS`). A peer therefore cannot truncate memory under the engine (no
//! `SIGBUS`), and no other local process can open it by name.
//!
//! A peer may write the memory at any time, so this process reads and writes it only through
//! atomics: 32-bit words for the protocol's state, and [`load`]/[`store`] — word-by-word
//! relaxed atomic copies — for message slots, ordered by the release/acquire of the word that
//! hands a slot over. Nothing here forms a `&[u8]` over shared memory.
//!
//! [`SharedMap::on_heap`] gives the same kind of region on this process's heap, for tests whose
//! peers are threads: Miri runs those (it cannot map files), and so do the fuzz targets.

use std::alloc::Layout;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::MmapRaw;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

use crate::error::{Error, Result};

/// A shared mapping of a memfd (or, in tests and benchmarks, of a file or of heap memory).
#[derive(Debug)]
pub struct SharedMap {
    /// The first byte: 8-aligned, `len` bytes, valid as long as `backing`.
    base: NonNull<u8>,
    len: usize,
    backing: Backing,
}

/// What owns the memory of a [`SharedMap`].
#[derive(Debug)]
enum Backing {
    /// Unmapped on drop.
    Mapped { _map: MmapRaw },
    /// Allocated with this layout, zeroed; freed on drop.
    Heap(Layout),
}

// SAFETY: the memory is owned by `backing` for the map's lifetime, and every access to it,
// from any thread (or process), is atomic: sharing and sending the handle is what it is for.
unsafe impl Send for SharedMap {}
// SAFETY: as above.
unsafe impl Sync for SharedMap {}

impl Drop for SharedMap {
    fn drop(&mut self) {
        if let Backing::Heap(layout) = self.backing {
            // SAFETY: `base` was allocated by `alloc_zeroed` with exactly this layout, and no
            // reference into it outlives `self`.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), layout) }
        }
    }
}

impl SharedMap {
    /// `len` zero bytes on this process's heap, with the alignment of a mapping: a region
    /// whose peers are threads of this process (tests, Miri, fuzz targets).
    pub fn on_heap(len: usize) -> SharedMap {
        const PAGE: usize = 4096;
        let size = len.max(8).next_multiple_of(8);
        let Ok(layout) = Layout::from_size_align(size, PAGE) else {
            std::alloc::handle_alloc_error(Layout::new::<u64>())
        };
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        SharedMap {
            base,
            len,
            backing: Backing::Heap(layout),
        }
    }

    /// Creates a sealed memfd of `len` zero bytes named `name` (for `/proc/<pid>/fd` only)
    /// and maps it. Returns the mapping and the descriptor to hand to peers.
    pub fn create_sealed(name: &str, len: usize) -> Result<(SharedMap, OwnedFd)> {
        let path = format!("memfd:{name}");
        let cname = std::ffi::CString::new(name)
            .map_err(|_| Error::Internal(format!("shared memory name {name:?} has a NUL byte")))?;
        let fd = memfd_create(
            &cname,
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )
        .map_err(|e| Error::errno("create shared memory", &path, e))?;
        nix::unistd::ftruncate(&fd, len as i64)
            .map_err(|e| Error::errno("size shared memory", &path, e))?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(fd.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals))
            .map_err(|e| Error::errno("seal shared memory", &path, e))?;
        let map = SharedMap::map(&fd, name, len)?;
        Ok((map, fd))
    }

    /// Maps shared memory received as `fd`, which must hold exactly `len` bytes and be
    /// sealed against shrinking (what the engine hands out). `what` names it in errors.
    pub fn from_fd(fd: &OwnedFd, len: usize, what: &str) -> Result<SharedMap> {
        let seals = fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS).map_err(|e| {
            Error::RemoteProtocol(format!("{what}: not sealed shared memory ({e})"))
        })?;
        if seals & libc::F_SEAL_SHRINK == 0 {
            return Err(Error::RemoteProtocol(format!(
                "{what}: shared memory not sealed against shrinking"
            )));
        }
        SharedMap::map(fd, what, len)
    }

    /// Creates `path` (mode 0600, exclusive, replacing a stale one) with `len` zero bytes
    /// and maps it. For tests and benchmarks: a path can be truncated by anyone who can open
    /// it, so the engine never maps one.
    pub fn create(path: &Path, len: usize) -> Result<SharedMap> {
        let _ = std::fs::remove_file(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io("create shared file", path, e))?;
        file.set_len(len as u64)
            .map_err(|e| Error::io("size shared file", path, e))?;
        SharedMap::map(&file, &path.display().to_string(), len)
    }

    /// Maps an existing file of `len` bytes (tests and benchmarks; see [`SharedMap::create`]).
    pub fn open(path: &Path, len: usize) -> Result<SharedMap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io("open shared file", path, e))?;
        SharedMap::map(&file, &path.display().to_string(), len)
    }

    fn map(fd: &impl AsFd, what: &str, len: usize) -> Result<SharedMap> {
        let stat = nix::sys::stat::fstat(fd.as_fd().as_raw_fd()).map_err(|e| {
            Error::RemoteProtocol(format!("{what}: cannot stat shared memory: {e}"))
        })?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Error::RemoteProtocol(format!(
                "{what}: shared memory is not a regular file"
            )));
        }
        if stat.st_size != len as i64 {
            return Err(Error::RemoteProtocol(format!(
                "{what}: shared memory has {} bytes, expected {len}",
                stat.st_size
            )));
        }
        let map = MmapRaw::map_raw(fd.as_fd().as_raw_fd())
            .map_err(|e| Error::Internal(format!("map {what}: {e}")))?;
        if map.len() < len || map.as_ptr() as usize % 8 != 0 {
            return Err(Error::Internal(format!("mapping of {what} is short")));
        }
        let Some(base) = NonNull::new(map.as_mut_ptr()) else {
            return Err(Error::Internal(format!("mapping of {what} is null")));
        };
        Ok(SharedMap {
            base,
            len,
            backing: Backing::Mapped { _map: map },
        })
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The 32-bit word at `offset` (a multiple of 4 inside the mapping).
    ///
    /// # Panics
    /// When `offset` is out of range or misaligned: offsets are the layout's constants.
    pub fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len,
            "word at {offset}"
        );
        // SAFETY: the memory is 8-aligned and lives as long as `self`; `offset` is a multiple
        // of 4 within it; every process touches shared words only atomically.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    /// Copies `len` bytes (rounded up to whole 8-byte words, at most `out.len()`) from
    /// `offset` into `out`. Concurrent writes by a peer give torn data, never undefined
    /// behaviour: the reader checks what it decodes.
    ///
    /// # Panics
    /// When `offset` is misaligned or the range leaves the mapping: offsets and lengths are
    /// the layout's constants.
    pub fn load(&self, offset: usize, out: &mut [u8], len: usize) {
        let words = len.min(out.len()).div_ceil(8);
        assert!(
            offset % 8 == 0 && offset + 8 * words <= self.len,
            "load at {offset}"
        );
        for (i, chunk) in out.chunks_mut(8).take(words).enumerate() {
            // SAFETY: in range and 8-aligned (checked above); shared memory is only accessed
            // atomically.
            let word =
                unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset + 8 * i).cast()) };
            let bytes = word.load(Ordering::Relaxed).to_ne_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    /// Copies the first `len` bytes of `data` (rounded up to whole 8-byte words, at most
    /// `data.len()`) to `offset`.
    ///
    /// # Panics
    /// As [`SharedMap::load`].
    pub fn store(&self, offset: usize, data: &[u8], len: usize) {
        let words = len.min(data.len()).div_ceil(8);
        assert!(
            offset % 8 == 0 && offset + 8 * words <= self.len,
            "store at {offset}"
        );
        for (i, chunk) in data.chunks(8).take(words).enumerate() {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            // SAFETY: as in `load`.
            let word =
                unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset + 8 * i).cast()) };
            word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_region_cannot_be_shrunk_by_its_peer() {
        let (map, fd) = SharedMap::create_sealed("gloam-test", 4096).unwrap();
        map.word(8).store(7, Ordering::Relaxed);
        let err = nix::unistd::ftruncate(&fd, 0).unwrap_err();
        assert_eq!(err, nix::Error::EPERM);
        let peer = SharedMap::from_fd(&fd, 4096, "test region").unwrap();
        assert_eq!(peer.word(8).load(Ordering::Relaxed), 7);
        let wrong = SharedMap::from_fd(&fd, 8192, "test region").unwrap_err();
        assert!(wrong.to_string().contains("expected 8192"), "{wrong}");
    }

    #[test]
    fn unsealed_memory_is_refused() {
        let fd = memfd_create(c"plain", MemFdCreateFlag::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, 4096).unwrap();
        let err = SharedMap::from_fd(&fd, 4096, "plain").unwrap_err();
        assert!(err.to_string().contains("sealed"), "{err}");
    }

    #[test]
    fn loads_and_stores_copy_whole_words() {
        let (map, _fd) = SharedMap::create_sealed("gloam-test", 4096).unwrap();
        let data: Vec<u8> = (0..20).collect();
        map.store(64, &data, 13);
        let mut out = [0xFFu8; 24];
        map.load(64, &mut out, 13);
        assert_eq!(&out[..16], &data[..16], "13 bytes round up to two words");
        assert_eq!(&out[16..], &[0xFF; 8]);
    }
}
