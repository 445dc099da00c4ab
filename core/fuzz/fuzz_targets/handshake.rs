//! What a worker reads from the engine on its handshake socket: `WELCOME` (or `REJECT`) with
//! its trailing function table and descriptors, mapped as the ring transport maps them, and
//! the `LEASE` messages of direct lanes. The "engine" is this target: it writes the input into
//! one end of a socket pair, in two chunks, with descriptors of its choosing attached to the
//! first (sealed memfds of a ring region's, a doorbell region's, a lease region's and a wrong
//! size, an unsealed one, a pipe); the worker's code reads the other end. Nothing may panic,
//! hang or leak a descriptor.
#![no_main]

use std::io::Write;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use gloam_core::fuzzing::{read_lease, read_welcome};
use gloam_core::lane::LEASE_FILE_BYTES;
use gloam_core::protocol::{flags, Header, Kind, PayloadLocation, MESSAGE_SIZE};
use gloam_core::ring::{BELL_FILE_BYTES, RING_FILE_BYTES};
use gloam_core::shared_map::SharedMap;
use gloam_core::socket::{send_with_fds, Blocking, MessageReader};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Fd {
    Ring,
    Bell,
    Lease,
    WrongSize,
    Unsealed,
    Pipe,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// `LEASE` messages instead of a `WELCOME`.
    peers: bool,
    /// In a framed `LEASE`: the holder's worker id, the lease id, and whether the reader is
    /// its holder (else its callee, named by `worker_id`).
    holder: u32,
    lease: u32,
    as_holder: bool,
    /// Put a well-formed header of the expected kind in front of `bytes` (payload length:
    /// the rest), so that most inputs get past the header.
    framed: bool,
    ring_flag: bool,
    worker_id: u32,
    fds: Vec<Fd>,
    /// Bytes of the stream sent with the descriptors; the rest follows.
    split: u16,
    bytes: Vec<u8>,
}

fn descriptor(kind: Fd) -> Option<OwnedFd> {
    match kind {
        Fd::Ring => SharedMap::create_sealed("fuzz-ring", RING_FILE_BYTES)
            .ok()
            .map(|m| m.1),
        Fd::Bell => SharedMap::create_sealed("fuzz-bell", BELL_FILE_BYTES)
            .ok()
            .map(|m| m.1),
        Fd::Lease => SharedMap::create_sealed("fuzz-lease", LEASE_FILE_BYTES)
            .ok()
            .map(|m| m.1),
        Fd::WrongSize => SharedMap::create_sealed("fuzz-short", 4096)
            .ok()
            .map(|m| m.1),
        Fd::Unsealed => unsealed_file(),
        Fd::Pipe => {
            let (r, _w) = std::io::pipe().ok()?;
            Some(r.into())
        }
    }
}

/// A regular file of a ring region's size that nothing seals.
fn unsealed_file() -> Option<OwnedFd> {
    let path = std::env::temp_dir().join(format!("gloam-fuzz-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .ok()?;
    let _ = std::fs::remove_file(&path);
    f.set_len(RING_FILE_BYTES as u64).ok()?;
    Some(f.into())
}

fn stream(input: &Input) -> Vec<u8> {
    if !input.framed {
        return input.bytes.clone();
    }
    let (kind, loc) = if input.peers {
        (Kind::Lease, PayloadLocation::Inline)
    } else {
        (Kind::Welcome, PayloadLocation::Trailing)
    };
    let mut h = Header::new(kind);
    h.worker_id = input.worker_id;
    h.caller = input.holder;
    h.sequence = input.lease;
    h.flags = if input.ring_flag { flags::RING } else { 0 };
    h.payload_loc = loc;
    h.payload_len = if input.peers {
        input.bytes.len().min(16) as u32
    } else {
        input.bytes.len() as u32
    };
    let mut out = [0u8; MESSAGE_SIZE];
    h.encode(&mut out);
    if input.peers {
        // The inline payload (timeout and lane), then whatever follows as further messages.
        let n = input.bytes.len().min(16);
        out[64..64 + n].copy_from_slice(&input.bytes[..n]);
    }
    let mut s = out.to_vec();
    s.extend_from_slice(&input.bytes);
    s
}

fuzz_target!(|input: Input| {
    if input.fds.len() > 4 || input.bytes.len() > 64 * 1024 {
        return;
    }
    let Ok((engine, mut worker)) = UnixStream::pair() else {
        return;
    };
    let fds: Vec<OwnedFd> = input.fds.iter().filter_map(|&k| descriptor(k)).collect();
    let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let bytes = stream(&input);
    let split = usize::from(input.split)
        .min(bytes.len())
        .max(1)
        .min(bytes.len());
    if !bytes.is_empty() {
        let Ok(n) = send_with_fds(engine.as_fd(), &bytes[..split], &raw, false) else {
            return;
        };
        let _ = (&engine).write_all(&bytes[n..]);
    }
    drop(fds);
    // The engine has said all it will: the worker reads to the end, never blocks.
    let _ = engine.shutdown(Shutdown::Write);
    if input.peers {
        let mut reader = MessageReader::default();
        while let Ok(Some(got)) = reader.read(worker.as_fd(), Blocking::No) {
            let me = if input.as_holder {
                input.holder
            } else {
                input.worker_id
            };
            let _ = read_lease(&got.bytes, &got.fds, me);
        }
    } else {
        let _ = read_welcome(&mut worker);
    }
    drop(engine);
});
