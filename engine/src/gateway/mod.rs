//! The HTTP front door. On one node it runs inside the engine process.
//!
//! [`server`] accepts connections and holds them to the gateway's limits (connection cap,
//! header and idle timeouts, graceful shutdown); [`http`] answers each request, [`grpc`] the gRPC ones; [`page`] is the
//! status page; `conn` tracks one connection for the limits, `stats` counts what they did.

mod async_routes;
mod conn;
pub mod grpc;
pub mod http;
pub mod page;
pub mod server;
pub mod stats;
pub mod tls;
