//! The PROXY protocol (v1 text, v2 binary): reading a header from trusted sources, and
//! writing one to backends. Parsing and building are the `ppp` crate's.

use std::io;
use std::net::SocketAddr;

use ppp::v2;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use crate::config::{IpNet, ProxyProtocol};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, "\r\n" included (the specification's 107 bytes).
const V1_MAX: usize = 107;
/// PP2_CLIENT_SSL: the client connected over TLS.
const PP2_CLIENT_SSL: u8 = 0x01;

/// What a backend is told about the client's TLS, when terminus saw it.
#[derive(Debug, Default, Clone)]
pub struct TlsInfo {
    pub sni: Option<String>,
    /// Such as "TLSv1.3"; `None` when the TLS stream is not decrypted.
    pub version: Option<&'static str>,
}

/// The client address of a connection to a listener with `accept_proxy_protocol = trusted`:
/// the peer itself when `trusted` is empty, the header's source address when the peer is in
/// `trusted` and sends a valid header, else an error (the connection is then closed).
pub async fn accept(
    stream: &mut TcpStream,
    peer: SocketAddr,
    trusted: &[IpNet],
) -> io::Result<SocketAddr> {
    if trusted.is_empty() {
        return Ok(peer);
    }
    if !trusted.iter().any(|n| n.contains(peer.ip())) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "source is not in accept_proxy_protocol",
        ));
    }
    let header = read_header(stream).await?;
    Ok(source_of(&header)?.unwrap_or(peer))
}

/// Reads exactly one header (v1 or v2) and nothing after it, so the stream goes on as sent.
pub async fn read_header<R: AsyncRead + Unpin>(stream: &mut R) -> io::Result<Vec<u8>> {
    // 12 bytes: a v2 signature, or the start of a v1 line (at least 15 bytes long).
    let mut buf = vec![0u8; 12];
    stream.read_exact(&mut buf).await?;
    if buf.as_slice() == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        stream.read_exact(&mut fixed).await?;
        buf.extend_from_slice(&fixed);
        let len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        let start = buf.len();
        buf.resize(start + len, 0);
        stream.read_exact(&mut buf[start..]).await?;
        return Ok(buf);
    }
    if !buf.starts_with(b"PROXY ") {
        return Err(invalid("no PROXY protocol header"));
    }
    while !buf.ends_with(b"\r\n") {
        if buf.len() >= V1_MAX {
            return Err(invalid("PROXY v1 header longer than 107 bytes"));
        }
        buf.push(stream.read_u8().await?);
    }
    Ok(buf)
}

/// The source address a complete header announces; `None` for LOCAL / UNKNOWN headers.
pub fn source_of(header: &[u8]) -> io::Result<Option<SocketAddr>> {
    match ppp::HeaderResult::parse(header) {
        ppp::HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
            ppp::v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
            ppp::v1::Addresses::Unknown => None,
        }),
        ppp::HeaderResult::V2(Ok(h)) if h.command == v2::Command::Proxy => Ok(match h.addresses {
            v2::Addresses::IPv4(a) => Some((a.source_address, a.source_port).into()),
            v2::Addresses::IPv6(a) => Some((a.source_address, a.source_port).into()),
            _ => None,
        }),
        ppp::HeaderResult::V2(Ok(_)) => Ok(None),
        ppp::HeaderResult::V1(Err(e)) => Err(invalid(format!("bad PROXY v1 header: {e}"))),
        ppp::HeaderResult::V2(Err(e)) => Err(invalid(format!("bad PROXY v2 header: {e}"))),
    }
}

/// The header a pool sends first: the client `from` connected to `to`. v2 carries the SNI
/// (PP2_TYPE_AUTHORITY) and, when terminus ended the TLS, PP2_TYPE_SSL with the version.
pub fn header(
    version: ProxyProtocol,
    from: SocketAddr,
    to: SocketAddr,
    tls: &TlsInfo,
) -> io::Result<Vec<u8>> {
    let (from, to) = same_family(from, to);
    match version {
        ProxyProtocol::V1 => Ok(ppp::v1::Addresses::from((from, to))
            .to_string()
            .into_bytes()),
        ProxyProtocol::V2 => {
            let mut b = v2::Builder::with_addresses(
                v2::Version::Two | v2::Command::Proxy,
                v2::Protocol::Stream,
                (from, to),
            );
            if let Some(sni) = &tls.sni {
                b = b.write_tlv(v2::Type::Authority, sni.as_bytes())?;
            }
            if let Some(v) = tls.version {
                // client flags, verify (0 would mean a verified client certificate), then
                // the PP2_SUBTYPE_SSL_VERSION sub-TLV.
                let mut ssl = vec![PP2_CLIENT_SSL, 0, 0, 0, 1];
                ssl.push(v2::Type::SSLVersion.into());
                ssl.extend_from_slice(&(v.len() as u16).to_be_bytes());
                ssl.extend_from_slice(v.as_bytes());
                b = b.write_tlv(v2::Type::SSL, &ssl)?;
            }
            b.build()
        }
    }
}

/// Both addresses in one family (a header cannot mix them): IPv4-mapped IPv6 becomes IPv4,
/// and an IPv4 address next to an IPv6 one is mapped.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canon = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let (a, b) = (canon(a), canon(b));
    let v6 = |s: SocketAddr| match s.ip() {
        std::net::IpAddr::V4(ip) => SocketAddr::new(ip.to_ipv6_mapped().into(), s.port()),
        _ => s,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (v6(a), v6(b))
    }
}

/// The TLS version as OpenSSL (and so HAProxy) names it, for PP2_SUBTYPE_SSL_VERSION.
pub fn version_name(v: rustls::ProtocolVersion) -> Option<&'static str> {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
        rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
        _ => None,
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "203.0.113.7:40000".parse().unwrap(),
            "10.0.0.1:443".parse().unwrap(),
        )
    }

    #[test]
    fn v1_and_v2_headers_round_trip_the_source() {
        let (from, to) = addrs();
        for v in [ProxyProtocol::V1, ProxyProtocol::V2] {
            let h = header(v, from, to, &TlsInfo::default()).unwrap();
            assert_eq!(source_of(&h).unwrap(), Some(from), "{v:?}");
        }
    }

    #[test]
    fn v2_carries_sni_and_tls_version() {
        let (from, to) = addrs();
        let tls = TlsInfo {
            sni: Some("a.test".into()),
            version: Some("TLSv1.3"),
        };
        let h = header(ProxyProtocol::V2, from, to, &tls).unwrap();
        let ppp::HeaderResult::V2(Ok(parsed)) = ppp::HeaderResult::parse(&h) else {
            panic!("not v2");
        };
        let tlvs: Vec<_> = parsed.tlvs().map(|t| t.unwrap()).collect();
        assert_eq!(tlvs[0].kind, u8::from(v2::Type::Authority));
        assert_eq!(&*tlvs[0].value, b"a.test");
        assert_eq!(tlvs[1].kind, u8::from(v2::Type::SSL));
        assert!(tlvs[1].value.ends_with(b"TLSv1.3"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(source_of(b"PROXY TCP4 nonsense\r\n").is_err());
        assert!(source_of(b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x02ab").is_err());
    }

    #[test]
    fn mixed_families_are_mapped() {
        let from: SocketAddr = "[::ffff:192.0.2.1]:1".parse().unwrap();
        let to: SocketAddr = "[2001:db8::1]:2".parse().unwrap();
        let h = header(ProxyProtocol::V1, from, to, &TlsInfo::default()).unwrap();
        assert!(String::from_utf8(h).unwrap().starts_with("PROXY TCP6 "));
    }
}
