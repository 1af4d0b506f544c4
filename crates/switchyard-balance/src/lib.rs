//! Switchyard's backend model and load-balancing selectors.
//!
//! This crate knows nothing of sockets, TOML or Pingora. It holds:
//!
//! - the backend model: an upstream's [`ServerSpec`]s, each with a stable [`ServerId`]
//!   (`group/host:port`);
//! - a per-upstream [`StatsStore`] keyed by identity: in-flight counts, latency estimates and
//!   health flags that survive every rebuild of a selector (reloads, weight changes);
//! - [`Pool`]: an upstream at run time, publishing immutable [`Snapshot`]s through `ArcSwap`, so a
//!   pick is synchronous, lock-free and allocation-free;
//! - the selectors behind the [`Selector`] trait;
//! - admission ([`admission`]): per-server `max_in_flight` slots claimed atomically with the
//!   pick, and the upstream's bounded FIFO [`queue`] for requests that find every server full;
//! - [`slow_start`]: the ramp of a server's share when it (re)enters service.
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore, Tried};
//!
//! let specs = vec![
//!     ServerSpec::new("blue", "127.0.0.1:8081".parse().unwrap(), 5),
//!     ServerSpec::new("blue", "127.0.0.1:8082".parse().unwrap(), 1),
//! ];
//! let pool = Pool::new("api", PoolOptions::new(Algorithm::Wrr), specs, Arc::new(StatsStore::default()));
//! let snap = pool.snapshot();
//! let picks: Vec<u16> = (0..6)
//!     .map(|_| snap.pick(None, &Tried::default()).unwrap().spec.addr.port())
//!     .collect();
//! assert_eq!(picks, [8081, 8081, 8081, 8082, 8081, 8081]);
//! ```

pub mod admission;
pub mod clock;
mod hash;
pub mod identity;
pub mod pool;
pub mod queue;
pub mod select;
mod server;
pub mod slow_start;
pub mod stats;
pub mod tried;

pub use admission::{Claim, Refusal};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use hash::hash_key;
pub use identity::{ServerId, ServerSpec};
pub use pool::{AllDownPolicy, Pool, PoolOptions, Snapshot};
pub use select::{Algorithm, HashRing, PickContext, Selector};
pub use server::Server;
pub use stats::{InFlight, Outcome, ServerStats, StatsStore};
pub use tried::Tried;
