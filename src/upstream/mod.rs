//! Upstream: backends and their live state, pools, the balancers, and the connection pools
//! that carry requests to backends.

pub mod backend;
pub mod balancer;
pub mod client;
pub mod health;
pub mod persistence;
pub mod pool;

pub use backend::{Backend, InFlight};
pub use client::{UpstreamClient, UpstreamError};
pub use pool::Pool;
