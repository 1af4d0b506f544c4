//! `[admin]`: the admin API and status page.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `listen`: address of the admin API. Default `127.0.0.1:9000`.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// `token_env`: the environment variable holding the bearer token. Default
    /// `SWITCHYARD_ADMIN_TOKEN`.
    #[serde(default = "default_admin_token_env")]
    pub token_env: String,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000))
}

fn default_admin_token_env() -> String {
    "SWITCHYARD_ADMIN_TOKEN".to_string()
}
