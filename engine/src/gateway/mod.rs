//! The HTTP front door. On one node it runs inside the engine process.

pub mod http;
pub mod page;
