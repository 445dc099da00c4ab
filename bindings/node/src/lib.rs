//! `gloam-node`: the Node.js SDK of Gloam, published to npm as `gloam`.
//!
//! It wraps `gloam-core` directly with napi-rs. The JavaScript thread never blocks: each logical
//! worker has a Rust thread that waits in [`gloam_core::Worker::recv`] and hands calls to
//! JavaScript through a threadsafe function; each internal call runs the core's blocking
//! `invoke` on its own thread and settles a Promise.
#![deny(clippy::all)]

mod convert;
mod ctx;
mod errors;
mod serve;

pub use ctx::Ctx;
pub use serve::serve;
