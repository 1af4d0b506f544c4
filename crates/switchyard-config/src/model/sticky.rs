//! `[upstreams.sticky]`: cookie-insertion session persistence.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::defaults::default_true;

/// `[upstreams.sticky]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    /// `cookie`: cookie name. Default `SWITCHYARD_STICKY`.
    #[serde(default = "default_sticky_cookie")]
    pub cookie: String,
    /// `ttl_s`: cookie lifetime; 0 = session cookie. Default 0.
    #[serde(default)]
    pub ttl_s: u64,
    /// `key_env`: environment variable with the HMAC key. Default `SWITCHYARD_STICKY_KEY`.
    #[serde(default = "default_sticky_key_env")]
    pub key_env: String,
    /// `path`: the cookie's `Path` attribute. Default `/`.
    #[serde(default = "default_sticky_path")]
    pub path: String,
    /// `domain`: the cookie's `Domain` attribute; empty (the default) = no attribute (the cookie
    /// goes back to the host that set it only).
    #[serde(default)]
    pub domain: String,
    /// `secure`: always send the `Secure` attribute. Default false: only on `https` listeners (and
    /// with `same_site = "none"`).
    #[serde(default)]
    pub secure: bool,
    /// `http_only`: send the `HttpOnly` attribute. Default true.
    #[serde(default = "default_true")]
    pub http_only: bool,
    /// `same_site`: the `SameSite` attribute. Default `lax`.
    #[serde(default)]
    pub same_site: SameSite,
}

/// The `SameSite` attribute of the sticky cookie (`same_site`).
///
/// ```
/// use switchyard_config::SameSite;
/// assert_eq!("strict".parse::<SameSite>(), Ok(SameSite::Strict));
/// assert_eq!("".parse::<SameSite>(), Ok(SameSite::Omit));
/// assert_eq!(SameSite::None.attribute(), Some("None"));
/// assert!("sometimes".parse::<SameSite>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SameSite {
    /// `"lax"`: `SameSite=Lax`.
    #[default]
    Lax,
    /// `"strict"`: `SameSite=Strict`.
    Strict,
    /// `"none"`: `SameSite=None`, which browsers only accept with `Secure`, so it implies it.
    None,
    /// `""`: no `SameSite` attribute (the browser's default applies).
    Omit,
}

impl SameSite {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "lax",
            SameSite::Strict => "strict",
            SameSite::None => "none",
            SameSite::Omit => "",
        }
    }

    /// The attribute value (`Lax`, `Strict`, `None`), or `None` for no attribute.
    pub fn attribute(self) -> Option<&'static str> {
        match self {
            SameSite::Lax => Some("Lax"),
            SameSite::Strict => Some("Strict"),
            SameSite::None => Some("None"),
            SameSite::Omit => Option::None,
        }
    }
}

impl std::str::FromStr for SameSite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lax" => Ok(SameSite::Lax),
            "strict" => Ok(SameSite::Strict),
            "none" => Ok(SameSite::None),
            "" => Ok(SameSite::Omit),
            other => Err(format!(
                "unknown same_site `{other}`; expected \"lax\", \"strict\", \"none\" or \"\" (no attribute)"
            )),
        }
    }
}

impl Serialize for SameSite {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SameSite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_sticky_cookie() -> String {
    "SWITCHYARD_STICKY".to_string()
}

fn default_sticky_key_env() -> String {
    "SWITCHYARD_STICKY_KEY".to_string()
}

fn default_sticky_path() -> String {
    "/".to_string()
}
