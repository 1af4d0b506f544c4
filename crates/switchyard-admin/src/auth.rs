//! Bearer-token authentication for the admin listener.
//!
//! The token comes from the environment variable named by `[admin].token_env`. It is hashed once
//! (SHA-256) and every presented credential is hashed and compared with
//! [`subtle::ConstantTimeEq`], so neither the token's bytes nor its length leak through timing.
//!
//! Accepted credentials: `Authorization: Bearer <token>` (API clients, `curl`) and
//! `Authorization: Basic <base64(user:token)>` with any user name (so a browser can open the
//! status page after its login prompt).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The admin listener's credential check.
///
/// ```
/// use switchyard_admin::Auth;
///
/// let auth = Auth::with_token("s3cret");
/// assert!(auth.allows(Some(b"Bearer s3cret")));
/// assert!(auth.allows(Some(b"Basic YWRtaW46czNjcmV0"))); // admin:s3cret
/// assert!(!auth.allows(Some(b"Bearer wrong")));
/// assert!(!auth.allows(None));
/// assert!(Auth::open().allows(None)); // no token configured (loopback only)
/// ```
#[derive(Clone)]
pub struct Auth {
    digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token_configured", &self.digest.is_some())
            .finish()
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

impl Auth {
    /// Requires `token` (an empty token is treated as no token: see [`Auth::open`]).
    ///
    /// ```
    /// assert!(switchyard_admin::Auth::with_token("t").requires_token());
    /// assert!(!switchyard_admin::Auth::with_token("").requires_token());
    /// ```
    pub fn with_token(token: &str) -> Auth {
        if token.is_empty() {
            return Auth::open();
        }
        Auth {
            digest: Some(sha256(token.as_bytes())),
        }
    }

    /// Requires nothing: every request is allowed. Only used on loopback listeners.
    ///
    /// ```
    /// assert!(switchyard_admin::Auth::open().allows(Some(b"Bearer anything")));
    /// ```
    pub fn open() -> Auth {
        Auth { digest: None }
    }

    /// The token from environment variable `var`, if it is set and not empty.
    ///
    /// ```
    /// let auth = switchyard_admin::Auth::from_env("SWITCHYARD_DOC_TEST_UNSET_VARIABLE");
    /// assert!(!auth.requires_token());
    /// ```
    pub fn from_env(var: &str) -> Auth {
        match std::env::var(var) {
            Ok(t) => Auth::with_token(t.trim()),
            Err(_) => Auth::open(),
        }
    }

    /// True if requests must carry the token.
    ///
    /// ```
    /// assert!(!switchyard_admin::Auth::open().requires_token());
    /// ```
    pub fn requires_token(&self) -> bool {
        self.digest.is_some()
    }

    /// True if the `Authorization` header value `header` carries the token (or none is required).
    ///
    /// ```
    /// let auth = switchyard_admin::Auth::with_token("abc");
    /// assert!(auth.allows(Some(b"bearer abc")));
    /// assert!(!auth.allows(Some(b"Bearer abcd")));
    /// ```
    pub fn allows(&self, header: Option<&[u8]>) -> bool {
        let Some(want) = &self.digest else {
            return true;
        };
        let Some(presented) = header.and_then(credential) else {
            return false;
        };
        bool::from(sha256(&presented).ct_eq(want))
    }
}

/// The secret carried by an `Authorization` header value: the bearer token, or the password of
/// Basic credentials.
fn credential(header: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(rest)?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

/// Standard base64, decoded by the `base64` crate: any trailing `=` are dropped first, so the
/// value is accepted with or without (or with wrong) padding, and non-zero trailing bits are
/// ignored; `None` on any other character, or on a length no base64 text has (4n + 1).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{GeneralPurpose, NO_PAD};
    use base64::Engine;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        NO_PAD.with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(s.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("YWRtaW46czNjcmV0").unwrap(), b"admin:s3cret");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("not base64!").is_none());
    }

    #[test]
    fn base64_padding_and_trailing_bits_are_lenient() {
        assert_eq!(base64_decode("YQ").unwrap(), b"a");
        assert_eq!(base64_decode("YQ=").unwrap(), b"a");
        assert_eq!(base64_decode("YQ===").unwrap(), b"a");
        assert_eq!(base64_decode("YR==").unwrap(), b"a"); // non-zero trailing bits
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("Y=Q=").is_none());
        assert!(base64_decode("YQ==\n").is_none());
        assert!(base64_decode("YW-_").is_none()); // URL-safe alphabet
                                                  // A 4n + 1 length is not base64 (the hand-written decoder dropped the last six bits).
        assert!(base64_decode("YWJjZ").is_none());
    }

    #[test]
    fn credentials() {
        let auth = Auth::with_token("tok");
        assert!(auth.allows(Some(b"Bearer tok")));
        assert!(auth.allows(Some(b"  Bearer   tok  ")));
        assert!(!auth.allows(Some(b"Bearer")));
        assert!(!auth.allows(Some(b"Token tok")));
        assert!(!auth.allows(Some(b"Bearer TOK")));
        assert!(!auth.allows(Some(b"Basic dG9r"))); // "tok" without a colon
        assert!(auth.allows(Some(b"Basic OnRvaw=="))); // ":tok"
        assert!(!auth.allows(Some(&[0xff, 0xfe])));
    }
}
