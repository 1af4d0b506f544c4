//! An upstream's load-balancing algorithm (`algorithm`), hash key (`hash_on`) and ring (`hash_ring`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Load-balancing algorithm names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Smooth weighted round robin.
    #[default]
    Wrr,
    /// Weighted least connections (alias `wlc`).
    #[serde(alias = "wlc")]
    LeastConn,
    /// Peak-EWMA latency with power of two choices.
    Ewma,
    /// Consistent hashing on `hash_on`.
    ConsistentHash,
    /// Consistent hashing on the client IP.
    SourceIpHash,
    /// Consistent hashing on the request path.
    UriHash,
    /// Uniform random, weighted.
    Random,
}

impl Algorithm {
    /// The name used in the config file (`wrr`, `least_conn`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Wrr => "wrr",
            Algorithm::LeastConn => "least_conn",
            Algorithm::Ewma => "ewma",
            Algorithm::ConsistentHash => "consistent_hash",
            Algorithm::SourceIpHash => "source_ip_hash",
            Algorithm::UriHash => "uri_hash",
            Algorithm::Random => "random",
        }
    }

    /// True for the algorithms that hash a request key.
    pub fn is_hashing(self) -> bool {
        matches!(
            self,
            Algorithm::ConsistentHash | Algorithm::SourceIpHash | Algorithm::UriHash
        )
    }
}

/// What a consistent hash is computed on (`hash_on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// `source_ip`.
    SourceIp,
    /// `uri`: the request path (without query).
    Uri,
    /// `host`.
    Host,
    /// `header:NAME`.
    Header(String),
    /// `cookie:NAME`.
    Cookie(String),
    /// `query:NAME`.
    Query(String),
}

impl fmt::Display for HashOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashOn::SourceIp => f.write_str("source_ip"),
            HashOn::Uri => f.write_str("uri"),
            HashOn::Host => f.write_str("host"),
            HashOn::Header(n) => write!(f, "header:{n}"),
            HashOn::Cookie(n) => write!(f, "cookie:{n}"),
            HashOn::Query(n) => write!(f, "query:{n}"),
        }
    }
}

impl std::str::FromStr for HashOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let named = |kind: &str, name: &str| {
            if name.is_empty() {
                Err(format!("`{kind}:` needs a name after the colon"))
            } else {
                Ok(name.to_string())
            }
        };
        match s.split_once(':') {
            None => match s {
                "source_ip" => Ok(HashOn::SourceIp),
                "uri" => Ok(HashOn::Uri),
                "host" => Ok(HashOn::Host),
                _ => Err(format!(
                    "unknown hash key `{s}`; expected source_ip, uri, host, header:NAME, cookie:NAME or query:NAME"
                )),
            },
            Some(("header", n)) => named("header", n).map(HashOn::Header),
            Some(("cookie", n)) => named("cookie", n).map(HashOn::Cookie),
            Some(("query", n)) => named("query", n).map(HashOn::Query),
            Some((k, _)) => Err(format!(
                "unknown hash key kind `{k}`; expected header:, cookie: or query:"
            )),
        }
    }
}

impl Serialize for HashOn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HashOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The ring of a hashing upstream (`hash_ring`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashRing {
    /// A weighted Maglev table on the XXH3 hash of the key (one lookup per pick).
    #[default]
    Maglev,
    /// NGINX's Ketama ring on the CRC-32 of the key: keys go where NGINX's
    /// `hash $key consistent` sends them, for the same servers and weights.
    Ketama,
}

impl HashRing {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            HashRing::Maglev => "maglev",
            HashRing::Ketama => "ketama",
        }
    }
}
