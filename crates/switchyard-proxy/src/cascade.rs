//! API cascading: one instance calls another, which accepts only signed requests from instances it
//! trusts.
//!
//! The cascading instance adds to each request it sends to a `cascade = true` upstream:
//!
//! ```text
//! Switchyard-Cascade: id=<instance_id>, ts=<unix seconds>, sig=<hex HMAC-SHA256>
//! ```
//!
//! where the MAC is over `"{id}\n{ts}\n{METHOD}\n{path}"` (`path` as sent upstream, without the
//! query) with the shared secret read from the environment variable named by `[cascade].key_env`.
//! The cascaded instance (routes with `require_cascade = true`) answers 401 when the header is
//! missing or malformed, the signature is wrong or the timestamp is more than 300 s away from its
//! clock, and 403 when the (correctly signed) id is not in `allowed_instances`. It removes the
//! header before forwarding. Signatures are compared in constant time; the key is never logged.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header name.
pub const HEADER: &str = "switchyard-cascade";
/// [`HEADER`] ready for lookups and removal (inserting takes [`HEADER`], whose case is kept).
pub static HEADER_NAME: http::HeaderName = http::HeaderName::from_static(HEADER);
/// Largest accepted clock difference, in seconds.
pub const MAX_SKEW_S: u64 = 300;

/// A parsed `Switchyard-Cascade` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeHeader<'a> {
    /// The calling instance.
    pub id: &'a str,
    /// Its clock when signing, in Unix seconds.
    pub ts: u64,
    /// The hex signature.
    pub sig: &'a str,
}

/// Parses `id=.., ts=.., sig=..` (any order, each once). `None` if malformed.
///
/// ```
/// use switchyard_proxy::cascade::parse_header;
/// let h = parse_header("id=gw-1, ts=1700000000, sig=ab12").unwrap();
/// assert_eq!((h.id, h.ts, h.sig), ("gw-1", 1_700_000_000, "ab12"));
/// assert!(parse_header("id=gw-1, ts=x, sig=ab").is_none());
/// assert!(parse_header("id=gw-1, ts=1").is_none());
/// ```
pub fn parse_header(value: &str) -> Option<CascadeHeader<'_>> {
    let (mut id, mut ts, mut sig) = (None, None, None);
    for part in value.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let slot = match k.trim() {
            "id" => &mut id,
            "ts" => &mut ts,
            "sig" => &mut sig,
            _ => return None,
        };
        if slot.replace(v.trim()).is_some() {
            return None;
        }
    }
    let id = id.filter(|s| !s.is_empty())?;
    let ts = ts?.parse().ok()?;
    let sig = sig.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))?;
    Some(CascadeHeader { id, ts, sig })
}

/// The MAC of one request, before finalisation (`None` only for a key HMAC cannot take, which
/// HMAC-SHA256 does not have).
fn request_mac(key: &[u8], id: &str, ts: u64, method: &str, path: &str) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(format!("{id}\n{ts}\n{method}\n{path}").as_bytes());
    Some(mac)
}

/// The hex signature of one request.
pub fn sign(key: &[u8], id: &str, ts: u64, method: &str, path: &str) -> String {
    request_mac(key, id, ts, method, path)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

/// The header value a cascading instance sends.
///
/// ```
/// use switchyard_proxy::cascade::{header_value, parse_header, verify, Verdict};
/// let v = header_value(b"secret", "gw-1", 1_700_000_000, "GET", "/users/1");
/// let allowed = vec!["gw-1".to_string()];
/// assert_eq!(verify(b"secret", &allowed, Some(&v), 1_700_000_010, "GET", "/users/1"), Verdict::Accept);
/// assert_eq!(verify(b"wrong", &allowed, Some(&v), 1_700_000_010, "GET", "/users/1"), Verdict::Unauthorized);
/// assert_eq!(verify(b"secret", &[], Some(&v), 1_700_000_010, "GET", "/users/1"), Verdict::Forbidden);
/// assert_eq!(verify(b"secret", &allowed, Some(&v), 1_700_000_400, "GET", "/users/1"), Verdict::Unauthorized);
/// assert_eq!(verify(b"secret", &allowed, None, 1_700_000_010, "GET", "/users/1"), Verdict::Unauthorized);
/// ```
pub fn header_value(key: &[u8], id: &str, ts: u64, method: &str, path: &str) -> String {
    format!("id={id}, ts={ts}, sig={}", sign(key, id, ts, method, path))
}

/// The outcome of verifying a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid signature from an allowed instance within the time window.
    Accept,
    /// Missing, malformed, badly signed or stale: 401.
    Unauthorized,
    /// Correctly signed by an instance not in `allowed_instances`: 403.
    Forbidden,
}

/// Verifies a request's header value against the key, the allow-list and `now` (Unix seconds).
pub fn verify(
    key: &[u8],
    allowed: &[String],
    value: Option<&str>,
    now: u64,
    method: &str,
    path: &str,
) -> Verdict {
    let Some(h) = value.and_then(parse_header) else {
        return Verdict::Unauthorized;
    };
    if now.abs_diff(h.ts) > MAX_SKEW_S {
        return Verdict::Unauthorized;
    }
    // Constant-time comparison of the presented signature with the expected one.
    let valid = match (
        hex::decode(h.sig),
        request_mac(key, h.id, h.ts, method, path),
    ) {
        (Ok(sig), Some(mac)) => mac.verify_slice(&sig).is_ok(),
        _ => false,
    };
    if !valid {
        return Verdict::Unauthorized;
    }
    if !allowed.iter().any(|a| a == h.id) {
        return Verdict::Forbidden;
    }
    Verdict::Accept
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
