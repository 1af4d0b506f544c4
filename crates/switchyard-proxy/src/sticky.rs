//! Cookie-insertion session persistence (`[upstreams.sticky]`).
//!
//! The cookie names a server by a token: the first 16 hex digits of
//! `HMAC-SHA256(key, server identity)`. No address or port appears in it, and every instance of a
//! fleet that shares the key (from the environment variable named by `key_env`) decodes it the same
//! way. Without the variable the key is derived from the upstream's name
//! (`SHA-256("switchyard-sticky:" + upstream)`): instances with the same configuration still agree,
//! but anyone who can guess server identities could compute their tokens, so the gateway logs a
//! warning at start-up. Set the variable in production.
//!
//! The cookie's attributes come from the configuration (`path`, `domain`, `secure`, `http_only`,
//! `same_site`); `Secure` is also sent on `https` listeners and with `SameSite=None` (which
//! browsers refuse without it); a `ttl_s` sends `Max-Age` and, for clients that only know
//! `Expires` (old browsers and many HTTP libraries), `Expires` as an IMF-fixdate (RFC 9110 §5.6.7).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use switchyard_balance::ServerId;
use switchyard_config::{SameSite, StickyConfig};

type HmacSha256 = Hmac<Sha256>;

/// Length of a token in hex digits.
pub const TOKEN_LEN: usize = 16;

/// The last second an HTTP date can name (9999-12-31T23:59:59Z): `Expires` never goes later.
const LAST_HTTP_DATE_S: u64 = 253_402_300_799;

/// The sticky-session state of one upstream: its key and the token of every server (replaced
/// when the servers change at run time, e.g. a DNS answer).
#[derive(Debug)]
pub struct Sticky {
    /// As configured.
    pub cfg: StickyConfig,
    key: Vec<u8>,
    by_token: ArcSwap<HashMap<String, ServerId>>,
    /// The attributes that are the same in every `Set-Cookie`: `; Path=…; Domain=…; HttpOnly;
    /// SameSite=…`.
    attributes: String,
}

impl Sticky {
    /// Builds the table for `servers`, reading the key from the environment.
    ///
    /// ```
    /// use switchyard_balance::ServerId;
    /// use switchyard_proxy::sticky::Sticky;
    /// let cfg: switchyard_config::StickyConfig = toml::from_str("key_env = \"NO_SUCH_VAR_X\"").unwrap();
    /// let id = ServerId::new("blue", "10.0.0.1:80");
    /// let s = Sticky::new("api", cfg, [id.clone()]);
    /// let token = s.token(&id);
    /// assert_eq!(token.len(), 16);
    /// assert!(!token.contains("10.0.0.1"));
    /// assert_eq!(s.decode(&token), Some(id.clone()));
    /// assert_eq!(s.decode("0000000000000000"), None);
    /// ```
    pub fn new(
        upstream: &str,
        cfg: StickyConfig,
        servers: impl IntoIterator<Item = ServerId>,
    ) -> Sticky {
        let key = match std::env::var(&cfg.key_env) {
            Ok(k) if !k.is_empty() => k.into_bytes(),
            _ => {
                log::warn!(
                    "upstream {upstream}: sticky key variable {} is not set; using a key derived from the upstream name (set it in production)",
                    cfg.key_env
                );
                Sha256::digest(format!("switchyard-sticky:{upstream}").as_bytes()).to_vec()
            }
        };
        let s = Sticky {
            attributes: fixed_attributes(&cfg),
            cfg,
            key,
            by_token: ArcSwap::from_pointee(HashMap::new()),
        };
        s.set_servers(servers);
        s
    }

    /// Replaces the servers whose tokens decode.
    ///
    /// ```
    /// # use switchyard_balance::ServerId;
    /// # use switchyard_proxy::sticky::Sticky;
    /// # let cfg: switchyard_config::StickyConfig = toml::from_str("").unwrap();
    /// let (a, b) = (ServerId::new("g", "a.test:80#10.0.0.1"), ServerId::new("g", "a.test:80#10.0.0.2"));
    /// let s = Sticky::new("api", cfg, [a.clone()]);
    /// s.set_servers([b.clone()]);
    /// assert_eq!(s.decode(&s.token(&a)), None);
    /// assert_eq!(s.decode(&s.token(&b)), Some(b));
    /// ```
    pub fn set_servers(&self, servers: impl IntoIterator<Item = ServerId>) {
        let table = servers
            .into_iter()
            .map(|id| (self.token(&id), id))
            .collect();
        self.by_token.store(Arc::new(table));
    }

    /// The token naming `id`.
    pub fn token(&self, id: &ServerId) -> String {
        token_for(&self.key, id.as_str())
    }

    /// The server a cookie value names, if any server of the upstream has that token.
    pub fn decode(&self, value: &str) -> Option<ServerId> {
        if value.len() != TOKEN_LEN || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.by_token.load().get(value).cloned()
    }

    /// The `Set-Cookie` value that pins the client to `id`, for a response sent now on an
    /// `https` listener or not (see [`Sticky::set_cookie_at`]).
    ///
    /// ```
    /// # use switchyard_balance::ServerId;
    /// # use switchyard_proxy::sticky::Sticky;
    /// let cfg: switchyard_config::StickyConfig = toml::from_str("ttl_s = 60").unwrap();
    /// let id = ServerId::new("blue", "10.0.0.1:80");
    /// let s = Sticky::new("api", cfg, [id.clone()]);
    /// let c = s.set_cookie(&id, true);
    /// assert!(c.starts_with("SWITCHYARD_STICKY="));
    /// assert!(c.contains("; Max-Age=60; Expires=") && c.contains("; HttpOnly") && c.contains("; SameSite=Lax") && c.ends_with("; Secure"));
    /// ```
    pub fn set_cookie(&self, id: &ServerId, https_listener: bool) -> String {
        self.set_cookie_at(id, https_listener, SystemTime::now())
    }

    /// The `Set-Cookie` value that pins the client to `id`, for a response sent at `now`:
    /// `NAME=TOKEN; Path=…[; Domain=…][; HttpOnly][; SameSite=…][; Max-Age=…; Expires=…][; Secure]`.
    /// `Secure` is sent when `secure = true`, on `https` listeners and with `SameSite=None`.
    ///
    /// ```
    /// # use std::time::{Duration, UNIX_EPOCH};
    /// # use switchyard_balance::ServerId;
    /// # use switchyard_proxy::sticky::Sticky;
    /// let cfg: switchyard_config::StickyConfig = toml::from_str(
    ///     "cookie = \"route\"\nttl_s = 3600\npath = \"/shop\"\ndomain = \"example.com\"\n\
    ///      http_only = false\nsame_site = \"none\"",
    /// ).unwrap();
    /// let id = ServerId::new("blue", "10.0.0.1:80");
    /// let s = Sticky::new("api", cfg, [id.clone()]);
    /// let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    /// assert_eq!(
    ///     s.set_cookie_at(&id, false, now),
    ///     format!(
    ///         "route={}; Path=/shop; Domain=example.com; SameSite=None; Max-Age=3600; \
    ///          Expires=Sun, 06 Nov 1994 09:49:37 GMT; Secure",
    ///         s.token(&id)
    ///     )
    /// );
    /// ```
    pub fn set_cookie_at(&self, id: &ServerId, https_listener: bool, now: SystemTime) -> String {
        let mut c = String::with_capacity(self.cfg.cookie.len() + TOKEN_LEN + 96);
        c.push_str(&self.cfg.cookie);
        c.push('=');
        c.push_str(&self.token(id));
        c.push_str(&self.attributes);
        if self.cfg.ttl_s > 0 {
            let expires = expires_at(now, self.cfg.ttl_s);
            let _ = write!(
                c,
                "; Max-Age={}; Expires={}",
                self.cfg.ttl_s,
                httpdate::fmt_http_date(expires)
            );
        }
        if self.cfg.secure || https_listener || self.cfg.same_site == SameSite::None {
            c.push_str("; Secure");
        }
        c
    }
}

/// `; Path=…[; Domain=…][; HttpOnly][; SameSite=…]` for `cfg`.
fn fixed_attributes(cfg: &StickyConfig) -> String {
    let mut a = format!("; Path={}", cfg.path);
    if !cfg.domain.is_empty() {
        let _ = write!(a, "; Domain={}", cfg.domain);
    }
    if cfg.http_only {
        a.push_str("; HttpOnly");
    }
    if let Some(v) = cfg.same_site.attribute() {
        let _ = write!(a, "; SameSite={v}");
    }
    a
}

/// `now + ttl_s`, whole seconds, at most the last second an HTTP date can name.
fn expires_at(now: SystemTime, ttl_s: u64) -> SystemTime {
    let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(now_s.saturating_add(ttl_s).min(LAST_HTTP_DATE_S))
}

/// The token of identity `id` under `key` (16 lowercase hex digits).
pub fn token_for(key: &[u8], id: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    let tag = mac.finalize().into_bytes();
    hex::encode(&tag[..TOKEN_LEN / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_is_clamped_to_the_last_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            httpdate::fmt_http_date(expires_at(now, u64::MAX)),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(
            expires_at(UNIX_EPOCH, 1),
            UNIX_EPOCH + Duration::from_secs(1)
        );
    }

    #[test]
    fn the_defaults_keep_the_historical_cookie() {
        let cfg: StickyConfig = match toml::from_str("") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(fixed_attributes(&cfg), "; Path=/; HttpOnly; SameSite=Lax");
    }
}
