//! The embedded default: an HTTPS listener on 127.0.0.1:8443 with a self-signed certificate for
//! `localhost`, in front of three demo backends that the same process serves on loopback.

use std::net::SocketAddr;

/// Names of the demo backends the default starts.
pub const DEMO_BACKENDS: [&str; 3] = ["demo-1", "demo-2", "demo-3"];

const TEMPLATE: &str = r#"# The embedded default configuration of terminus.
[global]
grace_period = "5s"

[[certificate]]
name = "localhost"
self_signed = ["localhost", "127.0.0.1", "::1"]

[admin]
bind = "{admin}"

[[listener]]
name = "https"
bind = "127.0.0.1:8443"

  [[listener.route]]
  pool = "demo"

[[pool]]
name = "demo"
balancer = "round-robin"

  [[pool.backend]]
  name = "demo-1"
  address = "{demo-1}"

  [[pool.backend]]
  name = "demo-2"
  address = "{demo-2}"

  [[pool.backend]]
  name = "demo-3"
  address = "{demo-3}"
"#;

/// The default configuration text with the demo backends' addresses filled in, listening on
/// `listen` (127.0.0.1:8443 unless the command line says otherwise) with the admin listener
/// on `admin` (127.0.0.1:9090 unless the command line says otherwise).
pub fn render(addresses: &[SocketAddr; 3], listen: SocketAddr, admin: SocketAddr) -> String {
    let mut text = TEMPLATE
        .replace("127.0.0.1:8443", &listen.to_string())
        .replace("{admin}", &admin.to_string());
    for (name, addr) in DEMO_BACKENDS.iter().zip(addresses) {
        text = text.replace(&format!("{{{name}}}"), &addr.to_string());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        let addrs = [
            "127.0.0.1:9001".parse().unwrap(),
            "127.0.0.1:9002".parse().unwrap(),
            "127.0.0.1:9003".parse().unwrap(),
        ];
        let config = crate::config::parse(
            std::path::Path::new("<default>"),
            &render(
                &addrs,
                "127.0.0.1:8443".parse().unwrap(),
                "127.0.0.1:9090".parse().unwrap(),
            ),
        )
        .unwrap();
        assert_eq!(config.pools[0].backends.len(), 3);
        assert_eq!(config.listeners[0].bind, "127.0.0.1:8443".parse().unwrap());
        let admin = config.admin.unwrap();
        assert_eq!(admin.bind, "127.0.0.1:9090".parse().unwrap());
        assert!(admin.token.is_none());
    }
}
