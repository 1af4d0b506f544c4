//! The keys hashing selectors pick by, read from a request (HTTP) or a connection (TCP): the
//! client's address, the URI, the host, a header, a cookie or a query parameter (`hash_on`).
//!
//! Every key is hashed by the upstream's ring ([`HashRing`]): the Ketama ring reads the CRC-32 of
//! the same bytes NGINX hashes for `$remote_addr` (the address as text), `$uri`, `$host`,
//! `$http_NAME`, `$cookie_NAME` and `$arg_NAME`; the Maglev ring [`hash_bytes`].

use std::net::{IpAddr, SocketAddr};

use pingora::http::RequestHeader;
use pingora::protocols::l4::socket::SocketAddr as PingoraSocketAddr;
use switchyard_balance::HashRing;
use switchyard_config::HashOn;

use crate::headers::{request_host, strip_port};
use crate::host::route_name;

/// An address of a connection as Pingora reports it (the client's, or the one it connected to),
/// if it is an IP socket address (not a Unix socket).
#[inline]
pub fn inet_addr(addr: Option<&PingoraSocketAddr>) -> Option<SocketAddr> {
    addr.and_then(|a| a.as_inet()).copied()
}

/// The client's IP address from the connection's peer address (see [`inet_addr`]).
#[inline]
pub fn client_ip(peer: Option<&PingoraSocketAddr>) -> Option<IpAddr> {
    inet_addr(peer).map(|a| a.ip())
}

/// The hashed request key of `req` from client `client_ip`, or `None` when the request has no
/// key: the header, cookie or query parameter is absent **or empty**, or the host is empty. The
/// selector then uses its fallback pick (smooth weighted round robin), as NGINX falls back to
/// round robin for an empty `hash` key; hashing the empty string would send every such request to
/// one server.
pub fn hash_key(
    req: &RequestHeader,
    client_ip: Option<IpAddr>,
    hash_on: &HashOn,
    ring: HashRing,
) -> Option<u64> {
    let non_empty = |v: &[u8]| (!v.is_empty()).then(|| ring.hash(v));
    match hash_on {
        HashOn::SourceIp => client_ip.map(|ip| ip_key(ip, ring)),
        HashOn::Uri => non_empty(req.uri.path().as_bytes()),
        HashOn::Host => {
            let host = route_name(strip_port(request_host(req)));
            (!host.is_empty()).then(|| hash_lowercase(host, ring))
        }
        HashOn::Header(name) => req
            .headers
            .get(name.as_str())
            .and_then(|v| non_empty(v.as_bytes())),
        HashOn::Cookie(name) => cookie_value(req, name).and_then(|v| non_empty(v.as_bytes())),
        HashOn::Query(name) => req
            .uri
            .query()
            .and_then(|q| query_value(q, name))
            .and_then(|v| non_empty(v.as_bytes())),
    }
}

/// The hash key of a client address for an upstream whose ring is `ring` (IPv4-mapped IPv6
/// hashes as IPv4), as `source_ip_hash` reads it for HTTP and TCP alike: the address's bytes for
/// Maglev; for Ketama the CRC-32 of the address as text, what NGINX hashes for
/// `hash $remote_addr consistent` (formatted on the stack, no allocation).
///
/// ```
/// use switchyard_balance::HashRing;
/// use switchyard_proxy::request_key::ip_key;
/// let ip = "203.0.113.9".parse().unwrap();
/// assert_eq!(ip_key(ip, HashRing::Ketama), HashRing::Ketama.hash(b"203.0.113.9"));
/// assert_eq!(ip_key(ip, HashRing::Maglev), HashRing::Maglev.hash(&[203, 0, 113, 9]));
/// ```
pub fn ip_key(ip: IpAddr, ring: HashRing) -> u64 {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ring, ip) {
        (HashRing::Maglev, IpAddr::V4(v4)) => hash_bytes(&v4.octets()),
        (HashRing::Maglev, IpAddr::V6(v6)) => hash_bytes(&v6.octets()),
        (HashRing::Ketama, ip) => {
            use std::io::Write as _;
            // The longest IPv6 text is 45 bytes.
            let mut buf = [0u8; 64];
            let mut rest: &mut [u8] = &mut buf;
            let _ = write!(rest, "{ip}");
            let len = 64 - rest.len();
            ring.hash(buf.get(..len).unwrap_or_default())
        }
    }
}

/// The stable hash used for hashing selectors (same on every instance of a fleet).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    switchyard_balance::hash_key(bytes)
}

/// `ring`'s hash of `s` lower-cased (ASCII), lower-cased on the stack when it is short enough
/// (host names are at most 253 bytes).
fn hash_lowercase(s: &str, ring: HashRing) -> u64 {
    let mut buf = [0u8; 256];
    match buf.get_mut(..s.len()) {
        Some(lower) => {
            lower.copy_from_slice(s.as_bytes());
            lower.make_ascii_lowercase();
            ring.hash(lower)
        }
        None => ring.hash(s.to_ascii_lowercase().as_bytes()),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The value of query parameter `name` (undecoded).
pub fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The key a route's rate limit counts `req` by (see [`crate::rate_limit`]): a hash of the
/// client's IP, of a header's or cookie's value, or one key for the whole route. Requests
/// without the header or cookie (or without a client address) share key 0.
pub fn rate_limit_key(
    req: &RequestHeader,
    client: Option<IpAddr>,
    key: &switchyard_config::RateLimitKey,
) -> u64 {
    use switchyard_config::RateLimitKey;
    match key {
        RateLimitKey::SourceIp => match client {
            Some(IpAddr::V4(ip)) => hash_bytes(&ip.octets()),
            Some(IpAddr::V6(ip)) => hash_bytes(&ip.octets()),
            None => 0,
        },
        RateLimitKey::Header(name) => req
            .headers
            .get(name.as_str())
            .map_or(0, |v| hash_bytes(v.as_bytes())),
        RateLimitKey::Cookie(name) => {
            cookie_value(req, name).map_or(0, |v| hash_bytes(v.as_bytes()))
        }
        RateLimitKey::Route => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_hash_is_that_of_the_lowercased_name() {
        let long = "A".repeat(300);
        for ring in [HashRing::Maglev, HashRing::Ketama] {
            for host in ["Example.COM", "example.com", "", "[::1]", long.as_str()] {
                assert_eq!(
                    hash_lowercase(host, ring),
                    ring.hash(host.to_ascii_lowercase().as_bytes())
                );
            }
        }
        assert_eq!(
            hash_lowercase("A", HashRing::Maglev),
            hash_bytes(b"a"),
            "Maglev keys are unchanged"
        );
    }

    #[test]
    fn ip_key_maps_v4_in_v6() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        for ring in [HashRing::Maglev, HashRing::Ketama] {
            assert_eq!(ip_key(v4, ring), ip_key(mapped, ring));
        }
    }

    #[test]
    fn ketama_ip_keys_hash_the_address_text() {
        for text in [
            "10.1.2.3",
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(
                ip_key(ip, HashRing::Ketama),
                HashRing::Ketama.hash(text.as_bytes())
            );
        }
        // Maglev keys are what they always were.
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let IpAddr::V6(v6) = ip else { unreachable!() };
        assert_eq!(ip_key(ip, HashRing::Maglev), hash_bytes(&v6.octets()));
    }
}
