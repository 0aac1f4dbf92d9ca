//! Terminus: a TLS-terminating load balancer.

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod config;
pub mod demo;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod tcp;
pub mod tls;
pub mod upstream;
pub mod watch;
pub mod workers;

pub use server::{ReloadSummary, Server};

/// For the micro-benchmarks in `benches/` only, not an API: the request head rewrite, whose
/// module (`http::rewrite`) is crate-private. Re-exported here rather than making the module
/// public, so that nothing else of it leaks out.
#[doc(hidden)]
pub mod bench_api {
    pub use crate::http::rewrite::{for_backend, prepare};
}
