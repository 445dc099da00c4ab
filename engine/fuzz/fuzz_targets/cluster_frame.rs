//! Any bytes, read as a stream of cluster frames: each decodes to a frame or a named error,
//! never a panic; a decoded frame re-encodes to bytes that decode to the same frame; chunks
//! fed to an assembly never make it panic either.
#![no_main]

use bytes::{Bytes, BytesMut};
use gloam_engine::cluster::wire::{Assembly, Frame, FrameHeader, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = Bytes::copy_from_slice(data);
    let mut assembly: Option<Assembly> = None;
    while rest.len() >= HEADER_LEN {
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&rest[..HEADER_LEN]);
        let Ok(header) = FrameHeader::decode(&h) else { return };
        let end = HEADER_LEN + header.len as usize;
        if rest.len() < end {
            return;
        }
        let Ok(frame) = Frame::decode(&header, rest.slice(HEADER_LEN..end)) else { return };
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        let mut h2 = [0u8; HEADER_LEN];
        h2.copy_from_slice(&buf[..HEADER_LEN]);
        let header2 = FrameHeader::decode(&h2).expect("re-encoded header");
        let again = Frame::decode(&header2, buf.freeze().slice(HEADER_LEN..)).expect("re-decode");
        assert_eq!(again, frame);
        match &frame {
            Frame::Call { head, chunk, more: true, .. } => {
                assembly = Some(Assembly::new(head.input_len, chunk));
            }
            Frame::Data { chunk, more, .. } => {
                if let Some(a) = assembly.as_mut() {
                    if a.push(chunk, *more).map_or(true, |done| done.is_some()) {
                        assembly = None;
                    }
                }
            }
            _ => {}
        }
        rest = rest.slice(end..);
    }
});
