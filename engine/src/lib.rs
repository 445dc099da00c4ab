//! The Gloam engine: dispatchers, worker registry, embedded HTTP gateway, launcher and CLI.

pub mod client;
pub mod config;
pub mod launcher;
