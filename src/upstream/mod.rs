//! Upstream: backends and their live state, pools, the balancers, and the connection pools
//! that carry requests to backends.

pub mod backend;
pub mod backend_stats;
pub mod balancer;
pub mod client;
pub mod decision;
mod h1_pool;
pub mod health;
pub mod outlier;
pub mod persistence;
pub mod pool;
pub mod replay;
pub mod response_heads;
pub mod retry_budget;
mod select;
pub mod upstream_tls;

pub use backend::{Backend, InFlight};
pub use client::{UpstreamClient, UpstreamError};
pub use outlier::Outcome;
pub use pool::Pool;
