//! `gloam-node`: the Node.js SDK of Gloam, published to npm as `gloam`.
//!
//! It wraps `gloam-core` directly with napi-rs. Each logical worker has a Rust thread that waits
//! in [`gloam_core::Worker::recv`] and hands calls to JavaScript through a threadsafe function;
//! when calls come in quick succession the JavaScript thread receives the next one itself for a
//! short bounded while (see `serve.rs`). `invoke` runs the core's blocking call on its own
//! thread and settles a Promise; `invokeSync` runs it on the JavaScript thread.
#![deny(clippy::all)]

mod convert;
mod ctx;
mod errors;
mod serve;

pub use ctx::Ctx;
pub use serve::serve;
