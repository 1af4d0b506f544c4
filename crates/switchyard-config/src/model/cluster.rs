//! `[cluster]`: the fleet's shared configuration, membership, overrides and dynamic servers come
//! from etcd v3 (see `docs/fleet.md`).

use serde::{Deserialize, Serialize};

/// `[cluster]`; absent = this file is the only source of configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `etcd_endpoints`: etcd client URLs (`http://` or `https://`). Required, at least one.
    pub etcd_endpoints: Vec<String>,
    /// `prefix`: the key prefix of this fleet, e.g. `/switchyard/prod`. Required; must start
    /// with `/` and not end with one.
    pub prefix: String,
    /// `cache_path`: where the last applied shared document is written (atomically) for cold
    /// starts without etcd. Default none (no cache).
    #[serde(default)]
    pub cache_path: Option<String>,
    /// `etcd_ca`: PEM file of the CA that signed etcd's server certificates (https endpoints).
    #[serde(default)]
    pub etcd_ca: Option<String>,
    /// `etcd_cert`: PEM client certificate presented to etcd (with `etcd_key`).
    #[serde(default)]
    pub etcd_cert: Option<String>,
    /// `etcd_key`: PEM private key of `etcd_cert`.
    #[serde(default)]
    pub etcd_key: Option<String>,
    /// `etcd_user_env`: the environment variable holding the etcd user name (etcd auth).
    #[serde(default)]
    pub etcd_user_env: Option<String>,
    /// `etcd_password_env`: the environment variable holding the etcd password.
    #[serde(default)]
    pub etcd_password_env: Option<String>,
}

impl ClusterConfig {
    /// The sections of a configuration file that stay local when `[cluster]` is set; every other
    /// section comes from the shared document at `<prefix>/config`.
    pub const LOCAL_SECTIONS: [&'static str; 6] = [
        "server",
        "cluster",
        "metrics",
        "admin",
        "limits",
        "listeners",
    ];
}
