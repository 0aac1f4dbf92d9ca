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

pub use server::{ReloadSummary, Server};
