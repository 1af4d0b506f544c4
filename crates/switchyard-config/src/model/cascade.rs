//! `[cascade]`: API cascading between instances.

use serde::{Deserialize, Serialize};

/// `[cascade]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeConfig {
    /// `key_env`: environment variable holding the shared secret. Default `SWITCHYARD_CASCADE_KEY`.
    #[serde(default = "default_cascade_key_env")]
    pub key_env: String,
    /// `allowed_instances`: instance ids allowed to call this instance (at most 5).
    #[serde(default)]
    pub allowed_instances: Vec<String>,
}

fn default_cascade_key_env() -> String {
    "SWITCHYARD_CASCADE_KEY".to_string()
}
