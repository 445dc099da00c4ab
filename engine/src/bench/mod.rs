//! `gloam bench`: latency and throughput of a running stack, measured from outside (HTTP load,
//! open or closed loop), from inside (`BenchInternal` handlers timing internal calls), and at
//! rest (idle CPU, peak memory). Benchmarks report; tests never assert times.

pub mod command;
pub mod conn;
pub mod histogram;
pub mod http;
pub mod idle;
pub mod internal;
pub mod procstat;
pub mod report;
pub mod schedule;

pub use command::{run, BenchArgs};
