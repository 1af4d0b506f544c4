//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): encoding the header
//! Switchyard sends to backends, reading the header a load balancer in front of Switchyard sends,
//! and a Pingora L4 connector that writes the header on every new HTTP upstream connection.
//!
//! Parsing uses the `ppp` crate, except for v1 `UNKNOWN` headers (see [`parse_v1`]); this module
//! frames the bytes so that **exactly** the header is consumed from the stream (never a byte of
//! the payload after it), with a size limit.
//!
//! ```
//! use switchyard_proxy::proxy_protocol::{encode, HEADER_V2_SIGNATURE};
//! use switchyard_config::ProxyProtocol;
//! let src = "127.0.0.2:40000".parse().unwrap();
//! let dst = "127.0.0.1:5432".parse().unwrap();
//! assert_eq!(
//!     encode(ProxyProtocol::V1, src, dst).unwrap(),
//!     b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 5432\r\n"
//! );
//! let v2 = encode(ProxyProtocol::V2, src, dst).unwrap();
//! assert_eq!(&v2[..12], &HEADER_V2_SIGNATURE);
//! assert_eq!(v2.len(), 16 + 12);
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::connectors::L4Connect;
use pingora::protocols::l4::socket::SocketAddr as PingoraSocketAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result as PResult};
use switchyard_config::ProxyProtocol;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The 12-byte signature that starts every version 2 header.
pub const HEADER_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header, CRLF included (the specification's limit).
pub const V1_MAX_LEN: usize = 107;
/// The largest version 2 payload (addresses and TLVs) accepted: 2 KiB. The specification allows
/// 65535 bytes; real load balancers send well under 256 (AWS NLB, GCP, HAProxy).
pub const V2_MAX_PAYLOAD: usize = 2048;
/// How long a client may take to send its whole PROXY header before the connection is closed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a PROXY header could not be read.
#[derive(Debug)]
pub enum HeaderError {
    /// The connection did not start with a PROXY header (v1 `PROXY ` or the v2 signature).
    Missing,
    /// A header that the specification does not allow (bad address, bad length, bad version).
    Malformed(String),
    /// The header is longer than [`V1_MAX_LEN`] or than 16 + [`V2_MAX_PAYLOAD`] bytes.
    TooLarge,
    /// The header was not complete within [`READ_TIMEOUT`].
    Timeout,
    /// The connection failed or closed before the header was complete.
    Io(std::io::Error),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Missing => f.write_str("no PROXY protocol header"),
            HeaderError::Malformed(m) => write!(f, "malformed PROXY protocol header: {m}"),
            HeaderError::TooLarge => f.write_str("PROXY protocol header too large"),
            HeaderError::Timeout => f.write_str("timed out reading the PROXY protocol header"),
            HeaderError::Io(e) => write!(f, "reading the PROXY protocol header: {e}"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// What a received PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    /// Header version: 1 or 2.
    pub version: u8,
    /// The original client and the address it connected to, for `TCP4`/`TCP6` (v1) and
    /// `PROXY` over IPv4/IPv6 (v2). `None` for v1 `UNKNOWN`, v2 `LOCAL` (health checks of the
    /// load balancer itself) and other families: the connection's own addresses apply.
    pub addrs: Option<(SocketAddr, SocketAddr)>,
}

/// Makes both addresses the same family (a v4 peer on a dual-stack socket appears as
/// `::ffff:a.b.c.d`): both IPv4 when both can be, otherwise both IPv6.
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
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    ppp::v1::Addresses::from((src, dst))
        .to_string()
        .into_bytes()
}

/// The version 2 header for a TCP connection from `src` to `dst`: signature, `0x21` (v2,
/// PROXY), `0x11` (TCP over IPv4) or `0x21` (TCP over IPv6), the payload length (12 or 36, big
/// endian), then source address, destination address, source port, destination port.
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let (src, dst) = same_family(src, dst);
    match Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (src, dst))
        .build()
    {
        Ok(bytes) => bytes,
        // Unreachable for two addresses of one family (36 bytes at most); kept total anyway.
        Err(_) => encode_v2_manual(src, dst),
    }
}

fn encode_v2_manual(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&HEADER_V2_SIGNATURE);
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x11, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let s6 = match s {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let d6 = match d {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.extend_from_slice(&[0x21, 0, 36]);
            out.extend_from_slice(&s6.octets());
            out.extend_from_slice(&d6.octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// The header of `version` for a connection from `src` to `dst`; `None` for `off`.
pub fn encode(version: ProxyProtocol, src: SocketAddr, dst: SocketAddr) -> Option<Vec<u8>> {
    match version {
        ProxyProtocol::Off => None,
        ProxyProtocol::V1 => Some(encode_v1(src, dst)),
        ProxyProtocol::V2 => Some(encode_v2(src, dst)),
    }
}

/// Reads one PROXY header (v1 or v2, detected from its first bytes) from `r`, consuming exactly
/// the header's bytes, within [`READ_TIMEOUT`].
pub async fn read_header<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> Result<Carried, HeaderError> {
    match tokio::time::timeout(READ_TIMEOUT, read_header_untimed(r)).await {
        Ok(res) => res,
        Err(_) => Err(HeaderError::Timeout),
    }
}

async fn read_exact<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    buf: &mut [u8],
) -> Result<(), HeaderError> {
    r.read_exact(buf).await.map(|_| ()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            HeaderError::Malformed("connection closed inside the header".into())
        } else {
            HeaderError::Io(e)
        }
    })
}

/// Like [`read_header`] without the time limit (the caller bounds it).
pub async fn read_header_untimed<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
) -> Result<Carried, HeaderError> {
    // Both versions are at least 15 bytes long (`PROXY UNKNOWN\r\n`), so 8 bytes can always be
    // read without reading past the header.
    let mut buf = vec![0u8; 8];
    read_exact(r, &mut buf).await.map_err(|e| match e {
        HeaderError::Malformed(_) => HeaderError::Missing,
        e => e,
    })?;
    if buf[..] == HEADER_V2_SIGNATURE[..8] {
        buf.resize(16, 0);
        read_exact(r, &mut buf[8..16]).await?;
        if buf[..12] != HEADER_V2_SIGNATURE {
            return Err(HeaderError::Malformed("bad v2 signature".into()));
        }
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > V2_MAX_PAYLOAD {
            return Err(HeaderError::TooLarge);
        }
        buf.resize(16 + len, 0);
        read_exact(r, &mut buf[16..]).await?;
        parse_v2(&buf)
    } else if buf.starts_with(b"PROXY ") {
        // Read byte by byte up to CRLF (the accepted stream is read-buffered, so this costs no
        // system calls) and never past it.
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX_LEN {
                return Err(HeaderError::TooLarge);
            }
            read_exact(r, &mut byte).await?;
            buf.push(byte[0]);
        }
        parse_v1(&buf)
    } else {
        Err(HeaderError::Missing)
    }
}

/// The start of a version 1 header whose protocol is `UNKNOWN`.
const V1_UNKNOWN: &[u8] = b"PROXY UNKNOWN";

/// Parses a complete version 1 header (`PROXY ... \r\n`).
///
/// `PROXY UNKNOWN` may be followed by anything up to the CRLF (the specification, §2.1: "the
/// receiver must ignore anything presented before the CRLF is found"), such as the addresses a
/// sender could not classify; the connection is then served on its own addresses.
///
/// ```
/// use switchyard_proxy::proxy_protocol::parse_v1;
/// assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n").unwrap().addrs, None);
/// assert_eq!(parse_v1(b"PROXY UNKNOWN 1 2 3 4 5 6\r\n").unwrap().addrs, None);
/// assert!(parse_v1(b"PROXY UNKNOWNX\r\n").is_err());
/// ```
pub fn parse_v1(bytes: &[u8]) -> Result<Carried, HeaderError> {
    if let Some(rest) = bytes.strip_prefix(V1_UNKNOWN) {
        return parse_v1_unknown(bytes.len(), rest);
    }
    let header =
        ppp::v1::Header::try_from(bytes).map_err(|e| HeaderError::Malformed(format!("v1: {e}")))?;
    if header.header.len() != bytes.len() {
        return Err(HeaderError::Malformed("v1: trailing bytes".into()));
    }
    let addrs = match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => Some((
            SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
            SocketAddr::new(IpAddr::V4(a.destination_address), a.destination_port),
        )),
        ppp::v1::Addresses::Tcp6(a) => Some((
            SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
            SocketAddr::new(IpAddr::V6(a.destination_address), a.destination_port),
        )),
        ppp::v1::Addresses::Unknown => None,
    };
    Ok(Carried { version: 1, addrs })
}

/// The part of an `UNKNOWN` header after `PROXY UNKNOWN` (`rest`, in a header of `len` bytes):
/// CRLF alone, or a space, anything without a CRLF, and the CRLF that ends the header.
fn parse_v1_unknown(len: usize, rest: &[u8]) -> Result<Carried, HeaderError> {
    if len > V1_MAX_LEN {
        return Err(HeaderError::TooLarge);
    }
    let ignored = match rest.strip_suffix(b"\r\n") {
        Some(b"") => b"".as_slice(),
        Some(r) => r
            .strip_prefix(b" ")
            .ok_or_else(|| HeaderError::Malformed("v1: UNKNOWN not followed by a space".into()))?,
        None => return Err(HeaderError::Malformed("v1: no CRLF at the end".into())),
    };
    if ignored.windows(2).any(|w| w == b"\r\n") {
        return Err(HeaderError::Malformed("v1: trailing bytes".into()));
    }
    Ok(Carried {
        version: 1,
        addrs: None,
    })
}

/// Parses a complete version 2 header (16 bytes plus its advertised length).
pub fn parse_v2(bytes: &[u8]) -> Result<Carried, HeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let header = Header::try_from(bytes).map_err(|e| HeaderError::Malformed(format!("v2: {e}")))?;
    if header.len() != bytes.len() {
        return Err(HeaderError::Malformed("v2: length mismatch".into()));
    }
    for tlv in header.tlvs() {
        tlv.map_err(|e| HeaderError::Malformed(format!("v2: {e}")))?;
    }
    let addrs = match (header.command, header.addresses) {
        (Command::Local, _) => None,
        (Command::Proxy, Addresses::IPv4(a)) => Some((
            SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
            SocketAddr::new(IpAddr::V4(a.destination_address), a.destination_port),
        )),
        (Command::Proxy, Addresses::IPv6(a)) => Some((
            SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
            SocketAddr::new(IpAddr::V6(a.destination_address), a.destination_port),
        )),
        (Command::Proxy, _) => None,
    };
    Ok(Carried { version: 2, addrs })
}

/// A Pingora L4 connector for HTTP upstreams with `proxy_protocol`: connects (within the
/// connect timeout, which Pingora does not apply to custom connectors) and writes the PROXY
/// header before handing the connection to the HTTP client.
#[derive(Debug, Clone)]
pub struct ProxyHeaderConnector {
    header: Vec<u8>,
    connect_timeout: Duration,
}

impl ProxyHeaderConnector {
    /// A connector that sends `header` first.
    pub fn new(header: Vec<u8>, connect_timeout: Duration) -> Self {
        ProxyHeaderConnector {
            header,
            connect_timeout,
        }
    }
}

#[async_trait]
impl L4Connect for ProxyHeaderConnector {
    async fn connect(&self, addr: &PingoraSocketAddr) -> PResult<L4Stream> {
        let Some(inet) = addr.as_inet() else {
            return Error::e_explain(
                ErrorType::ConnectError,
                "PROXY protocol needs a TCP upstream address",
            );
        };
        let connect = TcpStream::connect(*inet);
        let mut tcp = match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => {
                return Error::e_explain(
                    ErrorType::ConnectTimedout,
                    format!("timeout {:?} connecting to {inet}", self.connect_timeout),
                )
            }
            Ok(Err(e)) => {
                let etype = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    ErrorType::ConnectRefused
                } else {
                    ErrorType::ConnectError
                };
                return Err(Error::because(etype, format!("connecting to {inet}"), e));
            }
            Ok(Ok(tcp)) => tcp,
        };
        if let Err(e) = tcp.write_all(&self.header).await {
            return Err(Error::because(
                ErrorType::ConnectError,
                format!("writing the PROXY header to {inet}"),
                e,
            ));
        }
        Ok(tcp.into())
    }
}

/// Makes `peer` send a PROXY header of `version` for a client at `client` that connected to
/// `local`. The header's hash becomes the peer's `group_key`, so a pooled keep-alive connection
/// is only reused for the same client connection (its header is already sent). No-op for `off`.
pub fn apply_to_peer(
    peer: &mut HttpPeer,
    version: ProxyProtocol,
    client: Option<SocketAddr>,
    local: Option<SocketAddr>,
    connect_timeout: Duration,
) {
    let (Some(client), Some(local)) = (client, local) else {
        return;
    };
    let Some(header) = encode(version, client, local) else {
        return;
    };
    peer.group_key = switchyard_balance::hash_key(&header);
    peer.options.custom_l4 = Some(Arc::new(ProxyHeaderConnector::new(header, connect_timeout)));
}

/// [`apply_to_peer`] for the client connection of `session`: its peer address (the carried one
/// when the listener accepts the PROXY protocol) and the address it connected to.
pub fn apply_for_session(
    peer: &mut HttpPeer,
    session: &pingora::proxy::Session,
    version: ProxyProtocol,
    connect_timeout: Duration,
) {
    if version == ProxyProtocol::Off {
        return;
    }
    let client = session.client_addr().and_then(|a| a.as_inet()).copied();
    let local = session.server_addr().and_then(|a| a.as_inet()).copied();
    apply_to_peer(peer, version, client, local, connect_timeout);
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
        assert_eq!(got, want);
        assert_eq!(
            encode_v2_manual(sa("127.0.0.2:51000"), sa("127.0.0.1:8443")),
            want
        );
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
        assert_eq!(got, want);
        assert_eq!(encode_v2_manual(sa("[::1]:1234"), sa("[::2]:80")), want);
    }

    #[test]
    fn off_encodes_nothing() {
        assert!(encode(ProxyProtocol::Off, sa("1.2.3.4:1"), sa("5.6.7.8:2")).is_none());
    }

    async fn read_from(bytes: &[u8]) -> (Result<Carried, HeaderError>, Vec<u8>) {
        let mut r: &[u8] = bytes;
        let res = read_header(&mut r).await;
        (res, r.to_vec())
    }

    #[tokio::test]
    async fn reads_v1_and_leaves_the_payload() {
        let (res, rest) =
            read_from(b"PROXY TCP4 203.0.113.9 127.0.0.1 4000 80\r\nGET / HTTP/1.1\r\n").await;
        let c = res.unwrap();
        assert_eq!(c.version, 1);
        assert_eq!(c.addrs, Some((sa("203.0.113.9:4000"), sa("127.0.0.1:80"))));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn reads_v1_unknown_and_v6() {
        let (res, rest) = read_from(b"PROXY UNKNOWN\r\nX").await;
        assert_eq!(res.unwrap().addrs, None);
        assert_eq!(rest, b"X");
        let (res, _) = read_from(b"PROXY TCP6 2001:db8::9 ::1 4000 80\r\n").await;
        assert_eq!(
            res.unwrap().addrs,
            Some((sa("[2001:db8::9]:4000"), sa("[::1]:80")))
        );
    }

    #[tokio::test]
    async fn reads_v1_unknown_with_anything_up_to_the_crlf() {
        let longest = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                       ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), V1_MAX_LEN);
        let cases: [&[u8]; 5] = [
            b"PROXY UNKNOWN 1 2 3 4 5 6\r\n",
            b"PROXY UNKNOWN TCP4 203.0.113.9 127.0.0.1 4000 80\r\n",
            b"PROXY UNKNOWN \r\n",
            b"PROXY UNKNOWN lone \r or \n inside\r\n",
            longest.as_bytes(),
        ];
        for header in cases {
            let mut bytes = header.to_vec();
            bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let (res, rest) = read_from(&bytes).await;
            let c = res.unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(header)));
            assert_eq!(
                c,
                Carried {
                    version: 1,
                    addrs: None
                }
            );
            assert_eq!(
                rest,
                b"GET / HTTP/1.1\r\n",
                "{:?}",
                String::from_utf8_lossy(header)
            );
            assert_eq!(parse_v1(header).unwrap(), c);
        }
    }

    #[tokio::test]
    async fn rejects_v1_unknown_variants_the_spec_does_not_allow() {
        // One byte over the limit.
        let mut too_long = b"PROXY UNKNOWN ".to_vec();
        too_long.extend(std::iter::repeat_n(b'x', V1_MAX_LEN - too_long.len() - 1));
        too_long.extend_from_slice(b"\r\n");
        assert_eq!(too_long.len(), V1_MAX_LEN + 1);
        assert!(matches!(
            read_from(&too_long).await.0,
            Err(HeaderError::TooLarge)
        ));
        assert!(matches!(parse_v1(&too_long), Err(HeaderError::TooLarge)));
        for bad in [
            b"PROXY UNKNOWNX\r\n".as_slice(),
            b"PROXY UNKNOWN\tx\r\n",
            b"PROXY UNKNOWN 1 2",
            b"PROXY UNKNOWN 1\r\n2\r\n",
            b"PROXY UNKNOWN",
        ] {
            assert!(
                parse_v1(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn reads_v2_and_leaves_the_payload() {
        for (src, dst) in [
            (sa("203.0.113.9:4000"), sa("127.0.0.1:80")),
            (sa("[2001:db8::9]:4000"), sa("[::1]:80")),
        ] {
            let mut bytes = encode_v2(src, dst);
            bytes.extend_from_slice(b"payload");
            let (res, rest) = read_from(&bytes).await;
            let c = res.unwrap();
            assert_eq!(c.version, 2);
            assert_eq!(c.addrs, Some((src, dst)));
            assert_eq!(rest, b"payload");
        }
    }

    #[tokio::test]
    async fn reads_v2_local_and_tlvs() {
        // LOCAL, unspecified family, with one NOOP TLV.
        let mut bytes = HEADER_V2_SIGNATURE.to_vec();
        bytes.extend_from_slice(&[0x20, 0x00, 0x00, 0x04, 0x04, 0x00, 0x01, 0x2a]);
        bytes.extend_from_slice(b"rest");
        let (res, rest) = read_from(&bytes).await;
        assert_eq!(res.unwrap().addrs, None);
        assert_eq!(rest, b"rest");
        // PROXY over IPv4 with a TLV after the addresses.
        let mut bytes = encode_v2(sa("1.2.3.4:5"), sa("6.7.8.9:10"));
        bytes[15] += 4;
        bytes.extend_from_slice(&[0x04, 0x00, 0x01, 0x2a]);
        let (res, rest) = read_from(&bytes).await;
        assert_eq!(
            res.unwrap().addrs,
            Some((sa("1.2.3.4:5"), sa("6.7.8.9:10")))
        );
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn rejects_garbage_and_bad_headers() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"short",
            b"",
        ];
        for c in cases {
            let (res, _) = read_from(c).await;
            assert!(res.is_err(), "{:?} accepted", String::from_utf8_lossy(c));
        }
        // Too long: no CRLF within 107 bytes.
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        assert!(matches!(
            read_from(&long).await.0,
            Err(HeaderError::TooLarge)
        ));
        // v2 with a wrong version nibble, and with an oversized length.
        let mut bad = encode_v2(sa("1.2.3.4:5"), sa("6.7.8.9:10"));
        bad[12] = 0x31;
        assert!(read_from(&bad).await.0.is_err());
        let mut big = encode_v2(sa("1.2.3.4:5"), sa("6.7.8.9:10"));
        big[14] = 0xff;
        assert!(matches!(
            read_from(&big).await.0,
            Err(HeaderError::TooLarge)
        ));
        // v2 whose length is shorter than its address block.
        let mut short = encode_v2(sa("1.2.3.4:5"), sa("6.7.8.9:10"));
        short[15] = 4;
        assert!(read_from(&short).await.0.is_err());
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let (_a, mut b) = tokio::io::duplex(64);
        tokio::time::pause();
        let res = read_header(&mut b).await;
        assert!(matches!(res, Err(HeaderError::Timeout)));
    }
}
