//! [`Fleet`]: what a gateway asks of the fleet it belongs to (the `[cluster]` section, served by
//! the `switchyard-cluster` crate over etcd). The proxy and the admin API know only this trait:
//! a reload composes the local file with the fleet's shared sections, admin changes become
//! fleet-wide overrides, and `GET /api/cluster` shows the members.
//!
//! Without `[cluster]` no fleet is set and everything stays local, as before.

use serde::Serialize;
use switchyard_config::Config;

/// One admin change of a server, as the fleet stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOverride {
    /// `enable` (true) or `disable` (false).
    Enabled(bool),
    /// `drain` (0) or `weight N`.
    Weight(u32),
}

/// One member of the fleet, as `GET /api/cluster` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Its `[server].instance_id`.
    pub instance_id: String,
    /// Its Switchyard version.
    pub version: String,
    /// The `mod_revision` of `<prefix>/config` it runs (0 = none yet).
    pub applied_revision: i64,
    /// Its last apply error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Unix time (seconds) it started.
    pub started_at: u64,
    /// True if it does not run the latest revision.
    pub behind: bool,
}

/// The fleet as this instance sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// The `mod_revision` of `<prefix>/config` (0 = no document).
    pub latest_revision: i64,
    /// Live members (their lease has not expired), by instance id.
    pub members: Vec<MemberView>,
    /// This instance's id.
    pub instance_id: String,
    /// True while this instance is connected to etcd.
    pub source_up: bool,
    /// The revision this instance runs.
    pub applied_revision: i64,
    /// This instance's last error about the fleet (an invalid document, an unusable server or
    /// override key, a duplicate instance id), if any.
    pub last_error: Option<String>,
    /// Problems with the fleet's keys that are not this instance's apply errors: dynamic
    /// servers or overrides that were ignored, a duplicate instance id.
    pub problems: Vec<String>,
}

/// The fleet this gateway belongs to.
#[async_trait::async_trait]
pub trait Fleet: Send + Sync + std::fmt::Debug {
    /// The configuration a reload applies, given the freshly read local file `local`: its local
    /// sections with the fleet's shared document, dynamic servers and overrides. Errors are
    /// reported one per line, with key path and line.
    fn compose(&self, local: Config) -> Result<Config, Vec<String>>;

    /// Records an admin change of the servers of `upstream` addressed by `server` for every
    /// instance. The error says why it could not be stored.
    async fn set_override(
        &self,
        upstream: &str,
        server: &str,
        change: ServerOverride,
    ) -> Result<(), String>;

    /// Removes the override of `server` in `upstream`; `Ok(false)` if there was none.
    async fn clear_override(&self, upstream: &str, server: &str) -> Result<bool, String>;

    /// The fleet as this instance sees it now.
    fn view(&self) -> ClusterView;
}
