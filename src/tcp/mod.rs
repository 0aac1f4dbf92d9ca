//! L4 modes: `tcp` listeners (TLS terminated, plain bytes forwarded), `tls-passthrough`
//! listeners (the TLS stream forwarded by SNI, never decrypted), and the PROXY protocol.

pub mod client_hello;
pub mod passthrough;
pub mod proxy;
pub mod proxy_protocol;
