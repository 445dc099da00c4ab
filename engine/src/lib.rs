//! The Gloam engine: dispatchers, worker registry, embedded HTTP gateway, launcher and CLI.

pub mod async_calls;
pub mod bench;
pub mod builds;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod console;
pub mod descriptors;
pub mod engine;
pub mod external;
pub mod find;
pub mod gateway;
pub mod lanes;
pub mod launcher;
pub mod limiter;
pub mod logs;
pub mod metrics;
pub mod scaffold;
pub mod state;
pub mod status;
pub mod transport;
pub mod up;
pub mod validate;
pub mod watch;
pub mod worker_link;
