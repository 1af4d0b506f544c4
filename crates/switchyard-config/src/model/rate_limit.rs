//! `[routes.rate_limit]`: a token bucket per key, local to the instance.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a route's rate limit counts requests by (`key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RateLimitKey {
    /// The client's IP address (after a PROXY header, if the listener accepts one).
    #[default]
    SourceIp,
    /// A request header's value; requests without it share one bucket.
    Header(String),
    /// A cookie's value; requests without it share one bucket.
    Cookie(String),
    /// One bucket for the whole route.
    Route,
}

impl fmt::Display for RateLimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitKey::SourceIp => f.write_str("source_ip"),
            RateLimitKey::Header(n) => write!(f, "header:{n}"),
            RateLimitKey::Cookie(n) => write!(f, "cookie:{n}"),
            RateLimitKey::Route => f.write_str("route"),
        }
    }
}

impl std::str::FromStr for RateLimitKey {
    type Err = String;
    /// ```
    /// use switchyard_config::RateLimitKey;
    /// assert_eq!("header:X-Api-Key".parse(), Ok(RateLimitKey::Header("X-Api-Key".into())));
    /// assert!("header:".parse::<RateLimitKey>().is_err());
    /// assert!("uri".parse::<RateLimitKey>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let named = |kind: &str, name: &str| {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                Err(format!("`{kind}:` needs a name after the colon"))
            } else {
                Ok(name.to_string())
            }
        };
        match s.split_once(':') {
            None if s == "source_ip" => Ok(RateLimitKey::SourceIp),
            None if s == "route" => Ok(RateLimitKey::Route),
            Some(("header", n)) => named("header", n).map(RateLimitKey::Header),
            Some(("cookie", n)) => named("cookie", n).map(RateLimitKey::Cookie),
            _ => Err(format!(
                "unknown rate limit key `{s}`; expected source_ip, header:NAME, cookie:NAME or route"
            )),
        }
    }
}

impl Serialize for RateLimitKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimitKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[routes.rate_limit]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `requests_per_s`: the steady rate each key may send, > 0 (fractions allowed: 0.5 is one
    /// request every two seconds).
    pub requests_per_s: f64,
    /// `burst`: how many requests a key may send at once after being idle, ≥ 1. Default: the
    /// rate rounded up.
    #[serde(default)]
    pub burst: Option<u32>,
    /// `key`: `source_ip` (default) | `header:NAME` | `cookie:NAME` | `route`.
    #[serde(default)]
    pub key: RateLimitKey,
}

impl RateLimitConfig {
    /// `burst`, or the rate rounded up (at least 1) when it is not set.
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or_else(|| {
            let r = self.requests_per_s.ceil();
            if r.is_finite() && r >= 1.0 {
                r.min(f64::from(u32::MAX)) as u32
            } else {
                1
            }
        })
    }
}
