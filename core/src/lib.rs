//! `gloam-core`: the protocol, channel, shared-memory payloads and worker loop of Gloam.
//!
//! Every language runtime (Rust, C, Python, Node.js, Go) and the engine stand on this crate;
//! nothing else implements the protocol. It has no async runtime, no global state and no
//! threads it does not own.
#![warn(missing_docs)]

pub mod bell;
pub mod channel;
pub mod clock;
pub mod engine_socket;
pub mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod hello;
pub mod ipc_root;
pub mod lane;
pub mod lease;
#[cfg(loom)]
pub mod model;
pub mod payload;
pub mod protocol;
pub mod region;
pub mod ring;
pub mod ring_channel;
pub mod root_dir;
pub mod shared_map;
pub mod socket;
pub mod table;
pub mod tally;
pub mod worker;

pub use error::{Error, ErrorKind, Result};
pub use protocol::CallId;
pub use worker::{serve, Call, Ctx, HandlerError, Handlers, ParentRef, Worker, WorkerOptions};
