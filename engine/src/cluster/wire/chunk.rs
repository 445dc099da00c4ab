//! Payloads in chunks: a call's input and an answer's output are cut into frames of at most
//! [`CHUNK`] bytes, and put together again with the declared length checked.

use bytes::{Bytes, BytesMut};

use super::{CallHead, Frame, ResultHead, CHUNK};
use crate::cluster::ClusterError;

/// The frames of a call: `CALL` with the first chunk of `input`, then `DATA` chunks.
pub fn call_frames(call: u64, budget_us: u64, name: &str, input: Bytes) -> Vec<Frame> {
    let head = CallHead {
        budget_us,
        input_len: u32::try_from(input.len()).unwrap_or(u32::MAX),
        name: name.to_string(),
    };
    let mut chunks = split(input);
    let first = chunks.remove(0);
    let more = !chunks.is_empty();
    let mut out = vec![Frame::Call {
        call,
        more,
        head,
        chunk: first,
    }];
    data_frames(call, chunks, &mut out);
    out
}

/// The frames of an answer: `RESULT` with the first chunk of `output`, then `DATA` chunks.
pub fn result_frames(call: u64, mut head: ResultHead, output: Bytes) -> Vec<Frame> {
    head.output_len = u32::try_from(output.len()).unwrap_or(u32::MAX);
    let mut chunks = split(output);
    let first = chunks.remove(0);
    let more = !chunks.is_empty();
    let mut out = vec![Frame::Result {
        call,
        more,
        head,
        chunk: first,
    }];
    data_frames(call, chunks, &mut out);
    out
}

fn data_frames(call: u64, chunks: Vec<Bytes>, out: &mut Vec<Frame>) {
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        out.push(Frame::Data {
            call,
            more: i + 1 < n,
            chunk,
        });
    }
}

/// `payload` in pieces of at most [`CHUNK`] bytes; always at least one (maybe empty).
fn split(payload: Bytes) -> Vec<Bytes> {
    if payload.len() <= CHUNK {
        return vec![payload];
    }
    (0..payload.len())
        .step_by(CHUNK)
        .map(|at| payload.slice(at..(at + CHUNK).min(payload.len())))
        .collect()
}

/// A payload being received in chunks: the declared length is checked against every chunk.
#[derive(Debug)]
pub struct Assembly {
    expected: usize,
    buf: BytesMut,
}

impl Assembly {
    /// Starts with the first chunk of a payload of `total` bytes (checked on decode; the
    /// receiver checks `total` against its payload limit first). Memory grows with the chunks
    /// that arrive, not with what a peer declares.
    pub fn new(total: u32, first: &Bytes) -> Assembly {
        let mut buf = BytesMut::with_capacity((total as usize).min(4 * CHUNK));
        buf.extend_from_slice(first);
        Assembly {
            expected: total as usize,
            buf,
        }
    }

    /// Adds the next chunk: the whole payload when `more` is false.
    pub fn push(&mut self, chunk: &Bytes, more: bool) -> Result<Option<Bytes>, ClusterError> {
        let len = self.buf.len().saturating_add(chunk.len());
        if len > self.expected || (!more && len != self.expected) {
            return Err(ClusterError::frame(
                "DATA",
                format!(
                    "chunks add up to {len} bytes, {} were declared",
                    self.expected
                ),
            ));
        }
        self.buf.extend_from_slice(chunk);
        Ok((!more).then(|| std::mem::take(&mut self.buf).freeze()))
    }
}
