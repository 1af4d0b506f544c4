//! Writing the header Switchyard sends to a backend: [`encode`] a connection's addresses as a
//! version 1 or 2 header. The bytes come from `ppp` (its v1 `Addresses` and v2 `Builder`); this
//! module only makes both addresses one family first ([`same_family`]), as both versions require.

use std::net::{IpAddr, SocketAddr};

use switchyard_config::ProxyProtocol;

/// Makes both addresses the same family (a v4 peer on a dual-stack socket appears as
/// `::ffff:a.b.c.d`): both IPv4 when both can be, otherwise both IPv6.
///
/// ```
/// use switchyard_proxy::proxy_protocol::same_family;
/// let mapped = "[::ffff:10.0.0.1]:1".parse().unwrap();
/// let v4 = "127.0.0.1:2".parse().unwrap();
/// assert_eq!(same_family(mapped, v4), ("10.0.0.1:1".parse().unwrap(), v4));
/// ```
pub fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v4 = |a: SocketAddr| -> Option<SocketAddr> {
        match a.ip() {
            IpAddr::V4(_) => Some(a),
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(|v4| SocketAddr::new(IpAddr::V4(v4), a.port())),
        }
    };
    let v6 = |a: SocketAddr| -> SocketAddr {
        match a.ip() {
            IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
            IpAddr::V6(_) => a,
        }
    };
    match (v4(src), v4(dst)) {
        (Some(s), Some(d)) => (s, d),
        _ => (v6(src), v6(dst)),
    }
}

/// The version 1 header for a TCP connection from `src` to `dst`:
/// `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (or `TCP6`).
///
/// ```
/// use switchyard_proxy::proxy_protocol::encode_v1;
/// let header = encode_v1("[::1]:51000".parse().unwrap(), "[::2]:443".parse().unwrap());
/// assert_eq!(header, b"PROXY TCP6 ::1 ::2 51000 443\r\n");
/// ```
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    ppp::v1::Addresses::from((src, dst))
        .to_string()
        .into_bytes()
}

/// The version 2 header for a TCP connection from `src` to `dst`: signature, `0x21` (v2,
/// PROXY), `0x11` (TCP over IPv4) or `0x21` (TCP over IPv6), the payload length (12 or 36, big
/// endian), then source address, destination address, source port, destination port.
///
/// `None` only if `ppp`'s builder refuses the header, which it does only for a payload over
/// 65535 bytes: never for two addresses (36 bytes at most). Kept total rather than panicking.
///
/// ```
/// use switchyard_proxy::proxy_protocol::encode_v2;
/// let header = encode_v2("1.2.3.4:5".parse().unwrap(), "6.7.8.9:10".parse().unwrap());
/// assert_eq!(header.map(|h| h.len()), Some(16 + 12));
/// ```
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Option<Vec<u8>> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let (src, dst) = same_family(src, dst);
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (src, dst))
        .build()
        .ok()
}

/// The header of `version` for a connection from `src` to `dst`; `None` for `off` (and in the
/// impossible case [`encode_v2`] describes).
pub fn encode(version: ProxyProtocol, src: SocketAddr, dst: SocketAddr) -> Option<Vec<u8>> {
    match version {
        ProxyProtocol::Off => None,
        ProxyProtocol::V1 => Some(encode_v1(src, dst)),
        ProxyProtocol::V2 => encode_v2(src, dst),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4_is_byte_exact() {
        assert_eq!(
            encode_v1(sa("127.0.0.2:51000"), sa("127.0.0.1:8443")),
            b"PROXY TCP4 127.0.0.2 127.0.0.1 51000 8443\r\n".to_vec()
        );
    }

    #[test]
    fn v1_tcp6_is_byte_exact() {
        assert_eq!(
            encode_v1(sa("[::1]:51000"), sa("[2001:db8::1]:443")),
            b"PROXY TCP6 ::1 2001:db8::1 51000 443\r\n".to_vec()
        );
    }

    #[test]
    fn mixed_families_are_unified() {
        assert_eq!(
            encode_v1(sa("[::ffff:10.0.0.1]:1"), sa("127.0.0.1:2")),
            b"PROXY TCP4 10.0.0.1 127.0.0.1 1 2\r\n".to_vec()
        );
        assert_eq!(
            encode_v1(sa("10.0.0.1:1"), sa("[::1]:2")),
            b"PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2\r\n".to_vec()
        );
    }

    #[test]
    fn v2_ipv4_is_byte_exact() {
        let got = encode_v2(sa("127.0.0.2:51000"), sa("127.0.0.1:8443"));
        let mut want = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c, 127, 0, 0, 2, 127, 0, 0, 1]);
        want.extend_from_slice(&51000u16.to_be_bytes());
        want.extend_from_slice(&8443u16.to_be_bytes());
        assert_eq!(got, Some(want));
    }

    #[test]
    fn v2_ipv6_is_byte_exact() {
        let got = encode_v2(sa("[::1]:1234"), sa("[::2]:80"));
        let mut want = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        want.extend_from_slice(&[0x21, 0x21, 0x00, 36]);
        let mut a = [0u8; 16];
        a[15] = 1;
        want.extend_from_slice(&a);
        a[15] = 2;
        want.extend_from_slice(&a);
        want.extend_from_slice(&[0x04, 0xd2, 0x00, 0x50]);
        assert_eq!(got, Some(want));
    }

    #[test]
    fn v2_mixed_families_are_unified_as_ipv6() {
        // What the removed hand-written fallback wrote for a v4/v6 pair: both as IPv6.
        let got = encode_v2(sa("10.0.0.1:1"), sa("[::1]:2"));
        let mut want = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        want.extend_from_slice(&[0x21, 0x21, 0x00, 36]);
        want.extend_from_slice(
            &"::ffff:10.0.0.1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        want.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        want.extend_from_slice(&[0, 1, 0, 2]);
        assert_eq!(got, Some(want));
    }

    #[test]
    fn encode_picks_the_version() {
        let (src, dst) = (sa("1.2.3.4:1"), sa("5.6.7.8:2"));
        assert!(encode(ProxyProtocol::Off, src, dst).is_none());
        assert_eq!(
            encode(ProxyProtocol::V1, src, dst),
            Some(encode_v1(src, dst))
        );
        assert_eq!(encode(ProxyProtocol::V2, src, dst), encode_v2(src, dst));
    }

    #[test]
    fn off_encodes_nothing() {
        assert!(encode(ProxyProtocol::Off, sa("1.2.3.4:1"), sa("5.6.7.8:2")).is_none());
    }
}
