//! Payloads past the 960-byte inline area: sealed memfds handed over by descriptor.
//!
//! The sender of a large payload writes it into a fresh memfd, seals it against shrinking,
//! growing and further writes (`F_SEAL_FUTURE_WRITE`), and sends the descriptor on its engine socket with a `PAYLOAD`
//! record (a message of kind [`Kind::Payload`]: the call id, which side of the call, the
//! length) *before* the ring or FIFO message that names it (`payload_loc` =
//! [`PayloadLocation::Descriptor`]). The receiver takes the record for that (call, side) from
//! its socket. No payload has a name: a worker can read only the payloads it was given.
//!
//! Routing: a worker's records go to the engine; the engine keeps the descriptor with the call
//! and passes the same descriptor on to the worker the payload is for (the callee of an
//! internal call, the caller of an answer). The answer of a direct-lane call is the one record
//! the engine forwards at once ([`flags::LANE`]): the callee sends it after the answer, then
//! the same record as a message on its own ring, which makes the engine take it, check that
//! the sender serves a lease of the call's caller and pass it on. Records never wake the
//! engine on their own: it reads the socket only when a message names a record.
//!
//! Received descriptors are peer input: [`check`] refuses anything but a sealed memfd of the
//! length the message claims. Sealed, it cannot shrink under a mapping (no `SIGBUS`), and
//! neither `write` nor a new writable mapping can change it. Not `F_SEAL_WRITE`: adding that
//! seal waits for the kernel to drain its per-CPU page lists (`memfd_wait_for_pins`), which
//! measured 60 µs of latency per 4 KiB call on a 2-vCPU machine. So a hostile sender that mapped
//! its memfd writable *before* sealing can still change it: the engine and callers copy what
//! they read (`read`), and only a callee maps its input ([`map`]), which, from a hostile caller,
//! it must treat like any input that caller controls.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

use memmap2::Mmap;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

use crate::error::{Error, Result};
use crate::protocol::{
    flags, CallId, Header, Kind, Message, PayloadLocation, MAX_PAYLOAD_CEILING, MESSAGE_SIZE,
};

/// Which side of a call a payload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadSide {
    /// The call's input (sent by the caller, or by the engine for an external call).
    Input,
    /// The call's output (sent by the callee).
    Output,
}

/// The seals every payload carries: no shrinking (no `SIGBUS` for a mapping), no growing, no
/// writes by `write` or new writable mappings.
const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE;
/// What a received payload must carry: no shrinking, no growing, and no writes (either seal).
const SIZE_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// Refuses `size` bytes when they exceed `limit`.
pub fn check_size(size: usize, limit: u64) -> Result<()> {
    let size = size as u64;
    if size > limit {
        return Err(Error::PayloadTooLarge { size, limit });
    }
    Ok(())
}

/// A sealed memfd holding `data`. Fails with `PayloadTooLarge` (before creating anything)
/// when `data` exceeds `limit`.
pub fn create(data: &[u8], limit: u64) -> Result<OwnedFd> {
    check_size(data.len(), limit)?;
    const WHAT: &str = "memfd:gloam-payload";
    let fd = memfd_create(
        c"gloam-payload",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| Error::errno("create payload", WHAT, e))?;
    let file = File::from(fd);
    file.write_all_at(data, 0)
        .map_err(|e| Error::io("write payload", WHAT, e))?;
    let seals = SealFlag::from_bits_retain(SEALS) | SealFlag::F_SEAL_SEAL;
    fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals))
        .map_err(|e| Error::errno("seal payload", WHAT, e))?;
    Ok(file.into())
}

/// Checks that `fd` is a memfd sealed against shrinking, growing and writes (`F_SEAL_WRITE` or
/// `F_SEAL_FUTURE_WRITE`) that holds exactly `len` bytes.
pub fn check(fd: BorrowedFd<'_>, len: u32) -> Result<()> {
    let seals = fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS)
        .map_err(|e| Error::RemoteProtocol(format!("payload is not sealed shared memory ({e})")))?;
    let no_writes = seals & (libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE) != 0;
    if seals & SIZE_SEALS != SIZE_SEALS || !no_writes {
        return Err(Error::RemoteProtocol(
            "payload is not sealed against writing, shrinking and growing".into(),
        ));
    }
    let st = nix::sys::stat::fstat(fd.as_raw_fd())
        .map_err(|e| Error::errno("stat payload", "payload", e))?;
    if u64::try_from(st.st_size).ok() != Some(u64::from(len)) {
        return Err(Error::RemoteProtocol(format!(
            "payload holds {} bytes, its message says {len}",
            st.st_size
        )));
    }
    Ok(())
}

/// A read-only view of a received payload.
#[derive(Debug)]
pub struct PayloadView {
    map: Option<Mmap>,
}

impl PayloadView {
    /// The payload bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl AsRef<[u8]> for PayloadView {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

/// Maps a received payload of `len` bytes read-only, after [`check`].
pub fn map(fd: &OwnedFd, len: u32) -> Result<PayloadView> {
    check(fd.as_fd(), len)?;
    if len == 0 {
        return Ok(PayloadView { map: None });
    }
    // SAFETY: the mapping is read-only and only read through `&[u8]`; `check` found the memfd
    // sealed against shrinking and writing, so its bytes and length cannot change under it.
    let map = unsafe { Mmap::map(fd) }.map_err(|e| Error::io("mmap payload", "payload", e))?;
    Ok(PayloadView { map: Some(map) })
}

/// Reads a received payload of `len` bytes into a new buffer, after [`check`].
pub fn read(fd: &OwnedFd, len: u32) -> Result<Vec<u8>> {
    check(fd.as_fd(), len)?;
    let file = File::from(
        fd.try_clone()
            .map_err(|e| Error::io("dup payload", "payload", e))?,
    );
    let mut buf = vec![0u8; len as usize];
    let mut filled = 0usize;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => {
                return Err(Error::RemoteProtocol(format!(
                    "payload ended after {filled} of {len} bytes"
                )))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read payload", "payload", e)),
        }
    }
    Ok(buf)
}

/// The `PAYLOAD` record announcing the payload of (`call`, `side`), `len` bytes, sent with its
/// descriptor. `worker` is the sender (to the engine) or the receiver (from the engine);
/// `lane`: the answer of a direct-lane call, for the engine to forward to its caller.
pub fn record(call: CallId, side: PayloadSide, len: u32, worker: u32, lane: bool) -> Message {
    let mut h = Header::new(Kind::Payload);
    h.set_call_id(call);
    h.worker_id = worker;
    h.payload_len = len;
    h.payload_loc = PayloadLocation::Descriptor;
    if side == PayloadSide::Output {
        h.flags |= flags::OUTPUT;
    }
    if lane {
        h.flags |= flags::LANE;
    }
    Message::new(h)
}

/// A received `PAYLOAD` record and its descriptor.
#[derive(Debug)]
pub struct Record {
    /// The call.
    pub call: CallId,
    /// Which side of it.
    pub side: PayloadSide,
    /// The length the record announces.
    pub len: u32,
    /// The worker id the record names.
    pub worker: u32,
    /// The answer of a direct-lane call (to be forwarded by the engine).
    pub lane: bool,
    /// The payload.
    pub fd: OwnedFd,
}

/// Reads a `PAYLOAD` record; `None` when `bytes` is not one or does not carry exactly one
/// descriptor.
pub fn read_record(bytes: &[u8; MESSAGE_SIZE], mut fds: Vec<OwnedFd>) -> Option<Record> {
    let h = Message::decode(bytes, MAX_PAYLOAD_CEILING).ok()?.header;
    if h.kind != Kind::Payload || h.payload_loc != PayloadLocation::Descriptor || fds.len() != 1 {
        return None;
    }
    Some(Record {
        call: h.call_id(),
        side: if h.flags & flags::OUTPUT != 0 {
            PayloadSide::Output
        } else {
            PayloadSide::Input
        },
        len: h.payload_len,
        worker: h.worker_id,
        lane: h.flags & flags::LANE != 0,
        fd: fds.pop()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_and_sixteen_mib_round_trip_byte_exact() {
        for (i, size) in [0usize, 1 << 20, 16 << 20].into_iter().enumerate() {
            let data: Vec<u8> = (0..size).map(|j| (j * 31 + i) as u8).collect();
            let fd = create(&data, 16 << 20).unwrap();
            assert!(map(&fd, size as u32).unwrap().bytes() == data.as_slice());
            assert!(read(&fd, size as u32).unwrap() == data);
        }
    }

    #[test]
    fn oversize_is_refused() {
        let err = create(&[0u8; 2000], 1000).unwrap_err();
        assert!(matches!(
            err,
            Error::PayloadTooLarge {
                size: 2000,
                limit: 1000
            }
        ));
    }

    #[test]
    fn a_payload_cannot_be_changed_after_it_is_sent() {
        let fd = create(&[7u8; 4096], 1 << 20).unwrap();
        let file = File::from(fd.try_clone().unwrap());
        assert!(file.write_all_at(&[1], 0).is_err(), "write after sealing");
        // SAFETY: a shared writable mapping of a memfd we own; it must be refused.
        let writable = unsafe { memmap2::MmapMut::map_mut(&file) };
        assert!(writable.is_err(), "a writable mapping after sealing");
        assert!(file.set_len(10).is_err(), "shrink after sealing");
        assert!(file.set_len(10_000).is_err(), "grow after sealing");
        assert_eq!(read(&fd, 4096).unwrap(), vec![7u8; 4096]);
    }

    #[test]
    fn unsealed_or_wrong_length_descriptors_are_refused() {
        let err = read(&create(&[1; 2000], 1 << 20).unwrap(), 1999).unwrap_err();
        assert!(err.to_string().contains("holds 2000 bytes"), "{err}");
        // A plain file: no seals at all.
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(&[1; 2000], 0).unwrap();
        let err = map(&OwnedFd::from(f), 2000).unwrap_err();
        assert!(err.to_string().contains("not sealed"), "{err}");
        // A memfd the sender could still shrink under the reader.
        let open = memfd_create(c"open", MemFdCreateFlag::MFD_CLOEXEC).unwrap();
        File::from(open.try_clone().unwrap())
            .write_all_at(&[1; 2000], 0)
            .unwrap();
        let err = map(&open, 2000).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::ProtocolError);
    }

    #[test]
    fn records_round_trip_and_refuse_other_messages() {
        let call = CallId::new(0x0001_0002, 77);
        for (side, lane) in [
            (PayloadSide::Input, false),
            (PayloadSide::Output, true),
            (PayloadSide::Output, false),
        ] {
            let bytes = record(call, side, 5000, 9, lane).to_bytes();
            let fd = create(&[0; 5000], 1 << 20).unwrap();
            let r = read_record(&bytes, vec![fd]).unwrap();
            assert_eq!(
                (r.call, r.side, r.len, r.worker, r.lane),
                (call, side, 5000, 9, lane)
            );
            // Without its descriptor, or with two, it is not a record.
            assert!(read_record(&bytes, Vec::new()).is_none());
            let two = vec![create(&[0; 1], 1).unwrap(), create(&[0; 1], 1).unwrap()];
            assert!(read_record(&bytes, two).is_none());
        }
        let other = Message::new(Header::new(Kind::Dispatch)).to_bytes();
        assert!(read_record(&other, vec![create(&[0; 1], 1).unwrap()]).is_none());
    }
}
