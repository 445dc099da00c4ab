//! Shared-memory payloads: files under `<ipc-root>/shm/`, mapped with memmap2.
//!
//! A payload larger than the 960-byte inline area is written by its sender into a file named
//! from the call id (mode 0600, created exclusively), and the message carries only its length.
//! The receiver maps the file read-only. The size limit is checked before anything is created.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use crate::error::{Error, Result};
use crate::ipc_root::{IpcPaths, PayloadSide};
use crate::protocol::CallId;

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
/// Fails with `PayloadTooLarge` (before creating anything) when `data` exceeds `limit`.
pub fn write(
    paths: &IpcPaths,
    call: CallId,
    side: PayloadSide,
    data: &[u8],
    limit: u64,
) -> Result<PathBuf> {
    check_size(data.len(), limit)?;
    let path = paths.shm_file(call, side);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("create shm file", &path, e))?;
    let result = (|| {
        file.set_len(data.len() as u64)?;
        if !data.is_empty() {
            // SAFETY: the file was just created exclusively by us with this length; no other
            // process maps it until the message naming it is sent, so nothing resizes it
            // under the mapping.
            let mut map = unsafe { MmapMut::map_mut(&file)? };
            map.copy_from_slice(data);
        }
        Ok::<(), io::Error>(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&path);
        return Err(Error::io("write shm file", &path, e));
    }
    Ok(path)
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

/// Maps the shm file of (`call`, `side`) read-only and checks it holds `len` bytes.
pub fn open(paths: &IpcPaths, call: CallId, side: PayloadSide, len: u32) -> Result<ShmView> {
    let path = paths.shm_file(call, side);
    let file = fs::File::open(&path).map_err(|e| Error::io("open shm file", &path, e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("stat shm file", &path, e))?
        .len();
    if size != u64::from(len) {
        return Err(Error::RemoteProtocol(format!(
            "shm file {} holds {size} bytes, the message says {len}",
            path.display()
        )));
    }
    if len == 0 {
        return Ok(ShmView { map: None });
    }
    // SAFETY: shm files are written once by their creator before the message naming them is
    // sent, and never modified afterwards; we only read through the mapping.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mmap shm file", &path, e))?;
    Ok(ShmView { map: Some(map) })
}

/// Removes a shm file; a file already gone is not an error.
pub fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove shm file");
        }
    }
}

/// Removes the shm file of (`call`, `side`), if any.
pub fn remove_call(paths: &IpcPaths, call: CallId, side: PayloadSide) {
    remove(&paths.shm_file(call, side));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, IpcPaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = IpcPaths::new(dir.path());
        fs::create_dir_all(paths.shm_dir()).unwrap();
        (dir, paths)
    }

    #[test]
    fn one_and_sixteen_mib_round_trip_byte_exact() {
        let (_d, paths) = root();
        for (i, size) in [1usize << 20, 16 << 20].into_iter().enumerate() {
            let data: Vec<u8> = (0..size).map(|j| (j * 31 + i) as u8).collect();
            let id = CallId::new(5, i as u32);
            let path = write(&paths, id, PayloadSide::Input, &data, 16 << 20).unwrap();
            let view = open(&paths, id, PayloadSide::Input, size as u32).unwrap();
            assert!(view.bytes() == data.as_slice());
            remove(&path);
            assert!(!path.exists());
        }
        assert_eq!(fs::read_dir(paths.shm_dir()).unwrap().count(), 0);
    }

    #[test]
    fn oversize_is_refused_before_a_file_is_created() {
        let (_d, paths) = root();
        let data = vec![0u8; 2000];
        let err = write(&paths, CallId(1), PayloadSide::Output, &data, 1000).unwrap_err();
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
        remove(&path);
    }
}
