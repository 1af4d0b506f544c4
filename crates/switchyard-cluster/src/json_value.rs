//! The JSON values an instance reads from etcd under `servers/` (dynamic servers) and
//! `overrides/` (admin changes): both are parsed and their weight range-checked the same way, and
//! a value that fails either is ignored with one message naming its key.

use serde::de::DeserializeOwned;
use switchyard_config::MAX_WEIGHT;

/// A value that may set a server's weight.
pub trait Weighted {
    /// The weight it sets, if any.
    fn weight(&self) -> Option<u32>;
}

/// Parses `json` as a `T` and checks its weight; `Err` is the message saying why the key
/// described by `what` is ignored.
///
/// ```
/// use switchyard_cluster::json_value::{parse, Weighted};
/// #[derive(Debug, serde::Deserialize)]
/// struct V { weight: Option<u32> }
/// impl Weighted for V { fn weight(&self) -> Option<u32> { self.weight } }
/// assert!(parse::<V>("k", r#"{"weight":3}"#).is_ok());
/// assert!(parse::<V>("k", "{").unwrap_err().starts_with("k: ignored, invalid JSON"));
/// assert!(parse::<V>("k", r#"{"weight":99999999}"#).unwrap_err().contains("at most"));
/// ```
pub fn parse<T: DeserializeOwned + Weighted>(what: &str, json: &str) -> Result<T, String> {
    let value: T =
        serde_json::from_str(json).map_err(|e| format!("{what}: ignored, invalid JSON: {e}"))?;
    if value.weight().is_some_and(|w| w > MAX_WEIGHT) {
        return Err(format!(
            "{what}: ignored, weight must be at most {MAX_WEIGHT}"
        ));
    }
    Ok(value)
}
