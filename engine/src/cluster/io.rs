//! Frames over a byte stream: a reader that decodes one frame at a time, and a writer task
//! that batches whatever frames are queued into one write.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::wire::{Frame, FrameHeader, HEADER_LEN};
use super::ClusterError;

/// The reading half of a connection (TCP or TLS).
pub type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
/// The writing half of a connection (TCP or TLS).
pub type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// Bytes of queued frames gathered into one write.
const BATCH: usize = 256 * 1024;

/// Splits a plain TCP stream (without the lock [`tokio::io::split`] takes).
pub fn split_tcp(s: TcpStream) -> (BoxRead, BoxWrite) {
    let (r, w) = s.into_split();
    (Box::new(r), Box::new(w))
}

/// Splits any stream (a TLS one).
pub fn split_any<S: AsyncRead + AsyncWrite + Send + 'static>(s: S) -> (BoxRead, BoxWrite) {
    let (r, w) = tokio::io::split(s);
    (Box::new(r), Box::new(w))
}

/// Decodes frames from a stream, one at a time.
pub struct FrameReader {
    r: BufReader<BoxRead>,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameReader")
    }
}

impl FrameReader {
    /// Reads from `r`.
    pub fn new(r: BoxRead) -> FrameReader {
        FrameReader {
            r: BufReader::with_capacity(64 * 1024, r),
        }
    }

    /// The next frame; `None` when the peer closed the stream between frames. Not
    /// cancel-safe: a connection whose read is abandoned must be dropped.
    pub async fn next(&mut self) -> Result<Option<Frame>, ClusterError> {
        let mut h = [0u8; HEADER_LEN];
        let n = self
            .r
            .read(&mut h[..1])
            .await
            .map_err(|e| ClusterError::io("reading a frame", e))?;
        if n == 0 {
            return Ok(None);
        }
        self.r
            .read_exact(&mut h[1..])
            .await
            .map_err(|e| ClusterError::io("reading a frame header", e))?;
        let header = FrameHeader::decode(&h)?;
        let mut body = BytesMut::zeroed(header.len as usize);
        self.r
            .read_exact(&mut body)
            .await
            .map_err(|e| ClusterError::io("reading a frame body", e))?;
        Frame::decode(&header, body.freeze()).map(Some)
    }
}

/// Writes every frame sent on `rx`, batching those already queued into one write. Ends when
/// every sender is gone (after writing what was queued), or with an error when the peer does
/// not take the bytes within `stall` (it stopped reading) or the socket fails.
pub fn spawn_writer(
    mut w: BoxWrite,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    stall: Duration,
) -> JoinHandle<Result<(), ClusterError>> {
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(BATCH);
        while let Some(frame) = rx.recv().await {
            buf.clear();
            frame.encode(&mut buf);
            while buf.len() < BATCH {
                match rx.try_recv() {
                    Ok(f) => f.encode(&mut buf),
                    Err(_) => break,
                }
            }
            let write = async {
                w.write_all(&buf).await?;
                w.flush().await
            };
            match tokio::time::timeout(stall, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ClusterError::io("writing frames", e)),
                Err(_) => {
                    return Err(ClusterError::Lost(format!(
                        "the peer took no bytes for {} ms (it stopped reading)",
                        stall.as_millis()
                    )))
                }
            }
        }
        let _ = tokio::time::timeout(stall, w.shutdown()).await;
        Ok(())
    })
}

/// Writes one frame directly (handshakes, before the writer task runs).
pub async fn write_one(w: &mut BoxWrite, frame: &Frame) -> Result<(), ClusterError> {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf);
    w.write_all(&buf)
        .await
        .map_err(|e| ClusterError::io("writing a frame", e))?;
    w.flush()
        .await
        .map_err(|e| ClusterError::io("writing a frame", e))
}
