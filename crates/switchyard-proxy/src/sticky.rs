//! Cookie-insertion session persistence (`[upstreams.sticky]`).
//!
//! The cookie names a server by a token: the first 16 hex digits of
//! `HMAC-SHA256(key, server identity)`. No address or port appears in it, and every instance of a
//! fleet that shares the key (from the environment variable named by `key_env`) decodes it the same
//! way. Without the variable the key is derived from the upstream's name
//! (`SHA-256("switchyard-sticky:" + upstream)`): instances with the same configuration still agree,
//! but anyone who can guess server identities could compute their tokens, so the gateway logs a
//! warning at start-up. Set the variable in production.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use switchyard_balance::ServerId;
use switchyard_config::StickyConfig;

type HmacSha256 = Hmac<Sha256>;

/// Length of a token in hex digits.
pub const TOKEN_LEN: usize = 16;

/// The sticky-session state of one upstream: its key and the token of every server (replaced
/// when the servers change at run time, e.g. a DNS answer).
#[derive(Debug)]
pub struct Sticky {
    /// As configured.
    pub cfg: StickyConfig,
    key: Vec<u8>,
    by_token: ArcSwap<HashMap<String, ServerId>>,
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

    /// The `Set-Cookie` value that pins the client to `id`.
    ///
    /// ```
    /// # use switchyard_balance::ServerId;
    /// # use switchyard_proxy::sticky::Sticky;
    /// let cfg: switchyard_config::StickyConfig = toml::from_str("ttl_s = 60").unwrap();
    /// let id = ServerId::new("blue", "10.0.0.1:80");
    /// let s = Sticky::new("api", cfg, [id.clone()]);
    /// let c = s.set_cookie(&id, true);
    /// assert!(c.starts_with("SWITCHYARD_STICKY="));
    /// assert!(c.contains("; Max-Age=60") && c.contains("; HttpOnly") && c.contains("; SameSite=Lax") && c.contains("; Secure"));
    /// ```
    pub fn set_cookie(&self, id: &ServerId, secure: bool) -> String {
        let mut c = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax",
            self.cfg.cookie,
            self.token(id)
        );
        if self.cfg.ttl_s > 0 {
            c.push_str(&format!("; Max-Age={}", self.cfg.ttl_s));
        }
        if secure {
            c.push_str("; Secure");
        }
        c
    }
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
