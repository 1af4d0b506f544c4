//! Reading the header a load balancer in front of Switchyard sends: [`read_header`] consumes
//! exactly one v1 or v2 header from a stream (never a byte of the payload after it), within a
//! size limit and [`READ_TIMEOUT`], and says what it carries ([`Carried`]).
//!
//! Parsing uses the `ppp` crate, except for v1 `UNKNOWN` headers (see [`parse_v1`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::HEADER_V2_SIGNATURE;

/// The longest version 1 header, CRLF included (the specification's limit).
pub const V1_MAX_LEN: usize = 107;
/// The largest version 2 payload (addresses and TLVs) accepted: 2 KiB. The specification allows
/// 65535 bytes; real load balancers send well under 256 (AWS NLB, GCP, HAProxy).
pub const V2_MAX_PAYLOAD: usize = 2048;
/// How long a client may take to send its whole PROXY header before the connection is closed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a PROXY header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The connection did not start with a PROXY header (v1 `PROXY ` or the v2 signature).
    #[error("no PROXY protocol header")]
    Missing,
    /// A header that the specification does not allow (bad address, bad length, bad version).
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    /// The header is longer than [`V1_MAX_LEN`] or than 16 + [`V2_MAX_PAYLOAD`] bytes.
    #[error("PROXY protocol header too large")]
    TooLarge,
    /// The header was not complete within [`READ_TIMEOUT`].
    #[error("timed out reading the PROXY protocol header")]
    Timeout,
    /// The connection failed or closed before the header was complete.
    #[error("reading the PROXY protocol header: {0}")]
    Io(std::io::Error),
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::write::encode_v2;

    /// The v2 header of two addresses (never `None` for them).
    fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        encode_v2(src, dst).unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
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
            let mut bytes = v2(src, dst);
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
        let mut bytes = v2(sa("1.2.3.4:5"), sa("6.7.8.9:10"));
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
        let mut bad = v2(sa("1.2.3.4:5"), sa("6.7.8.9:10"));
        bad[12] = 0x31;
        assert!(read_from(&bad).await.0.is_err());
        let mut big = v2(sa("1.2.3.4:5"), sa("6.7.8.9:10"));
        big[14] = 0xff;
        assert!(matches!(
            read_from(&big).await.0,
            Err(HeaderError::TooLarge)
        ));
        // v2 whose length is shorter than its address block.
        let mut short = v2(sa("1.2.3.4:5"), sa("6.7.8.9:10"));
        short[15] = 4;
        assert!(read_from(&short).await.0.is_err());
    }

    #[test]
    fn error_messages() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let cases = [
            (HeaderError::Missing, "no PROXY protocol header"),
            (
                HeaderError::Malformed("v1: trailing bytes".into()),
                "malformed PROXY protocol header: v1: trailing bytes",
            ),
            (HeaderError::TooLarge, "PROXY protocol header too large"),
            (
                HeaderError::Timeout,
                "timed out reading the PROXY protocol header",
            ),
            (
                HeaderError::Io(io),
                "reading the PROXY protocol header: reset",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
            assert!(std::error::Error::source(&err).is_none());
        }
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let (_a, mut b) = tokio::io::duplex(64);
        tokio::time::pause();
        let res = read_header(&mut b).await;
        assert!(matches!(res, Err(HeaderError::Timeout)));
    }
}
