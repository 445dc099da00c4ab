//! The Gloam engine: dispatchers, worker registry, embedded HTTP gateway, launcher and CLI.

pub mod bench;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod descriptors;
pub mod engine;
pub mod external;
pub mod gateway;
pub mod lanes;
pub mod launcher;
pub mod limiter;
pub mod metrics;
pub mod state;
pub mod status;
pub mod transport;
pub mod up;
pub mod worker_link;
