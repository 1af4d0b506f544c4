//! Request ids: an incoming `X-Request-Id` is kept when it is 1 to 128 visible ASCII characters,
//! otherwise a new one is generated — 128 random bits as 32 lowercase hex digits, unique across a
//! fleet without coordination (the chance of two equal ids among 10^15 requests is below 10^-8).

use http::HeaderValue;
use rand::RngCore;

/// The header carrying the id, to upstreams and in every response.
pub const HEADER: http::HeaderName = http::HeaderName::from_static("x-request-id");
/// [`HEADER`]'s text. Switchyard's own inserts use [`crate::added_headers::X_REQUEST_ID`] (no
/// name parsed or copied per insert).
pub const HEADER_STR: &str = "x-request-id";
/// The longest incoming id that is kept.
pub const MAX_LEN: usize = 128;

/// True if `value` is kept as the request's id: 1 to [`MAX_LEN`] visible ASCII characters
/// (`!` to `~`: no space, no control character).
///
/// ```
/// use switchyard_proxy::observe::request_id::is_valid;
/// assert!(is_valid(b"abc-123"));
/// assert!(!is_valid(b""));
/// assert!(!is_valid(b"a b"));
/// assert!(!is_valid(&[b'a'; 129]));
/// ```
pub fn is_valid(value: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&value.len()) && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The id of a request whose `X-Request-Id` header is `incoming`: that value if it is valid
/// ([`is_valid`]), else a new one made of `random` ([`from_random`]).
pub fn of_request(incoming: Option<&HeaderValue>, random: &[u8; 16]) -> HeaderValue {
    match incoming {
        Some(v) if is_valid(v.as_bytes()) => v.clone(),
        _ => from_random(random),
    }
}

/// A new id: 128 random bits as 32 lowercase hex digits.
///
/// ```
/// use switchyard_proxy::observe::request_id::generate;
/// let (a, b) = (generate(), generate());
/// assert_eq!(a.len(), 32);
/// assert_ne!(a, b);
/// ```
pub fn generate() -> HeaderValue {
    from_random(&draw())
}

/// `N` random bytes in one draw from the thread's generator (ids and span ids of a request are
/// cut from one draw).
#[inline]
pub fn draw<const N: usize>() -> [u8; N] {
    let mut random = [0; N];
    rand::rng().fill_bytes(&mut random);
    random
}

/// The id made of 128 random bits: 32 lowercase hex digits.
pub fn from_random(random: &[u8; 16]) -> HeaderValue {
    let mut buf = [0u8; 32];
    hex_into(random, &mut buf);
    // 32 hex digits are always a valid header value. One allocation, shared by the clones that
    // go upstream and into the response.
    crate::added_headers::owned_value(buf, buf.len(), "invalid request id")
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Writes `bytes` as lowercase hex into `out` (twice as long; a shorter `out` takes the first
/// bytes that fit). Pairs of output bytes, so no index is checked per digit.
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        if let [hi, lo] = pair {
            *hi = DIGITS[usize::from(b >> 4)];
            *lo = DIGITS[usize::from(b & 0xf)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_ids_are_kept_only_when_valid() {
        let of_request = |v| of_request(v, &[0xa5; 16]);
        let ok = HeaderValue::from_static("req-42_!~");
        assert_eq!(of_request(Some(&ok)), ok);
        let long = HeaderValue::from_bytes(&[b'x'; 129]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(of_request(Some(&long)).len(), 32);
        let max = HeaderValue::from_bytes(&[b'x'; 128]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(of_request(Some(&max)), max);
        let tab = HeaderValue::from_bytes(b"a\tb").unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(of_request(Some(&tab)), tab);
        let utf8 = HeaderValue::from_bytes("é".as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(of_request(Some(&utf8)), utf8);
        let new = of_request(None);
        assert_eq!(new, "a5".repeat(16).as_str());
    }
}
