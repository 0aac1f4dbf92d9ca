//! The HTTP side of a listener: hyper's server (HTTP/1.1 or HTTP/2 by ALPN), routing, header
//! rewriting and the answers terminus writes itself.

mod activity;
mod attempt;
mod body;
mod error;
mod exchange;
mod framing;
pub mod headers;
mod proxy;
pub(crate) mod raw_framing;
mod request_key;
pub(crate) mod rewrite;
pub mod route;
mod server;
mod stall;
mod upgrade;

pub use body::ProxyBody;
pub use proxy::ConnInfo;
pub(crate) use raw_framing::may_end_head;
pub use route::Router;
pub use server::{serve_connection, ConnSettings};
