//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): encoding the header
//! Switchyard sends to backends ([`write`](mod@write)), reading the header a load balancer in
//! front of Switchyard sends ([`read`]), and a Pingora L4 connector that writes the header on
//! every new HTTP upstream connection ([`connector`]).
//!
//! Both directions use the `ppp` crate for the bytes themselves: its v1 `Addresses` and v2
//! `Builder` write the headers, its parsers read them (except v1 `UNKNOWN` headers, see
//! [`parse_v1`]). This module adds what `ppp` leaves to its caller: unifying the address
//! families, framing the stream so that **exactly** the header is consumed (never a byte of the
//! payload after it) with a size and time limit, and the Pingora glue.
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

pub mod connector;
pub mod read;
pub mod write;

pub use connector::{apply_for_session, apply_to_peer, ProxyHeaderConnector};
pub use read::{
    parse_v1, parse_v2, read_header, read_header_untimed, Carried, HeaderError, READ_TIMEOUT,
    V1_MAX_LEN, V2_MAX_PAYLOAD,
};
pub use write::{encode, encode_v1, encode_v2, same_family};

/// The 12-byte signature that starts every version 2 header (`ppp::v2::PROTOCOL_PREFIX`).
pub const HEADER_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_ppps() {
        assert_eq!(HEADER_V2_SIGNATURE.as_slice(), ppp::v2::PROTOCOL_PREFIX);
    }
}
