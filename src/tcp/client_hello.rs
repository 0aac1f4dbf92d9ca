//! Reading a TLS ClientHello without answering it: the bytes are kept to be forwarded, and
//! the SNI is read by rustls's parser, so malformed input is an error, never a panic.

use std::io;
use std::time::Duration;

use rustls::server::Acceptor;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The most bytes read before the ClientHello must be complete. A ClientHello with a
/// post-quantum key share is about 1.7 KB; 16 KiB leaves room for large extensions.
pub const MAX_HELLO: usize = 16 * 1024;

/// A ClientHello read from a client: its bytes, as sent, and the SNI it names.
#[derive(Debug)]
pub struct Hello {
    pub bytes: Vec<u8>,
    pub sni: Option<String>,
}

/// Feeds bytes to rustls's ClientHello parser and keeps them.
pub struct HelloReader {
    acceptor: Acceptor,
    bytes: Vec<u8>,
}

impl Default for HelloReader {
    fn default() -> Self {
        Self {
            acceptor: Acceptor::default(),
            bytes: Vec::with_capacity(2048),
        }
    }
}

impl HelloReader {
    /// Adds `chunk`; `Ok(Some(sni))` once the ClientHello is complete, `Ok(None)` while more
    /// is needed, an error when the input is not a ClientHello or grows past `MAX_HELLO`.
    pub fn feed(&mut self, chunk: &[u8]) -> io::Result<Option<Option<String>>> {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > MAX_HELLO {
            return Err(invalid("ClientHello larger than 16 KiB"));
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.acceptor.read_tls(&mut rest)? == 0 {
                return Err(invalid("ClientHello does not fit the parser's buffer"));
            }
        }
        match self.acceptor.accept() {
            Ok(Some(accepted)) => Ok(Some(
                accepted.client_hello().server_name().map(str::to_owned),
            )),
            Ok(None) => Ok(None),
            Err((e, _)) => Err(invalid(format!("not a TLS ClientHello: {e}"))),
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads the ClientHello within `timeout`.
pub async fn read(stream: &mut TcpStream, timeout: Duration) -> io::Result<Hello> {
    let read = async {
        let mut reader = HelloReader::default();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(sni) = reader.feed(&chunk[..n])? {
                return Ok(Hello {
                    bytes: reader.into_bytes(),
                    sni,
                });
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "ClientHello timed out"))?
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;

    /// The first flight of a real rustls client naming `sni`.
    fn client_hello(sni: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let mut conn =
            rustls::ClientConnection::new(Arc::new(config), sni.to_string().try_into().unwrap())
                .unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_sni_whole_or_in_pieces() {
        let hello = client_hello("a.test");
        let mut r = HelloReader::default();
        assert_eq!(r.feed(&hello).unwrap(), Some(Some("a.test".into())));
        let mut r = HelloReader::default();
        let (a, b) = hello.split_at(7);
        assert_eq!(r.feed(a).unwrap(), None);
        assert_eq!(r.feed(b).unwrap(), Some(Some("a.test".into())));
        assert_eq!(r.into_bytes(), hello);
    }

    #[test]
    fn garbage_and_oversize_are_errors() {
        let mut r = HelloReader::default();
        assert!(r.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
        let mut r = HelloReader::default();
        // A handshake record header announcing 16 KiB, then filler.
        let mut big = vec![0x16, 0x03, 0x01, 0x40, 0x00];
        big.resize(MAX_HELLO + 10, 0);
        assert!(r.feed(&big).is_err());
    }
}
