//! Switchyard fleets on etcd v3 (`[cluster]`, see `docs/fleet.md`): several instances share one
//! configuration document, list themselves as members, apply admin changes made on any of them
//! and take servers registered in etcd.
//!
//! Where things are: `keys` is the key layout; `connect` builds the etcd client (TLS, auth from
//! the environment); `state` holds the keys as last seen; `compose` turns the local file and
//! those keys into a configuration, with `dynamic` (servers from etcd) and `overrides` (admin
//! changes); `agent` is this instance's member and the proxy's [`switchyard_proxy::Fleet`];
//! `sync` watches, `member` keeps the member lease, `service` runs both; `bootstrap` picks the
//! first configuration (etcd, else `cache`, else nothing routed); `push` is `switchyard
//! push`/`pull`; `metrics` the fleet's metric families.

pub mod agent;
pub mod bootstrap;
pub mod cache;
pub mod compose;
pub mod connect;
pub mod dynamic;
pub mod json_value;
pub mod keys;
pub mod member;
pub mod metrics;
pub mod overrides;
pub mod push;
pub mod service;
pub mod state;
pub mod sync;
pub mod transient;

pub use agent::{attach, FleetAgent};
pub use bootstrap::{bootstrap, Bootstrap};
pub use push::{pull, push, PushError, Pushed, Target};
pub use service::FleetService;

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
