//! [`UpstreamHealth`]: the health of one upstream at run time — checker tasks, passive
//! reports, and the verdicts written to the pool.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the public [`UpstreamHealth`] and the state its parts share |
//! | `tracking.rs` | which servers are tracked: one entry per identity, following the pool |
//! | `active.rs` | checker tasks and what a check result does |
//! | `passive.rs` | passive reports, ejection under the cap, return after `ejection` |
//! | `view.rs` | read-only views for the admin API and status page |

mod active;
mod passive;
mod tracking;
mod view;

pub use view::{ServerHealthView, ServerState};

use passive::Passive;
use tracking::{stats_key, Entry, Tracked};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rand::Rng;
use switchyard_balance::{Clock, Pool, Server, ServerId, ServerStats};
use tokio::runtime::Handle;
use tokio::task::{JoinHandle, JoinSet};

use crate::check::{Probe, Target};
use crate::machine::{
    EjectionBudget, Machine, PassiveCounter, PassiveEvent, StatusSet, Thresholds,
};
use crate::observer::{CheckResult, HealthObserver, NoopObserver};
use crate::spec::HealthSpec;
use crate::HealthError;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Inner {
    name: String,
    pool: Arc<Pool>,
    clock: Arc<dyn Clock>,
    probe: Option<Arc<Probe>>,
    thresholds: Option<Thresholds>,
    passive: Option<Passive>,
    observer: Arc<dyn HealthObserver>,
    servers: ArcSwap<Tracked>,
    writer: Mutex<()>,
    budget: EjectionBudget,
    runtime: Mutex<Option<Handle>>,
    started: AtomicBool,
}

/// What one change did, to be logged and reported after the entry's lock is released.
struct Report {
    messages: Vec<(bool, String)>,
    transition: Option<(bool, String)>,
    ejected: bool,
    refresh: bool,
}

/// The health of one upstream: active checker tasks, passive outlier detection, and the
/// verdicts written to the pool's [`ServerStats`] (followed by [`Pool::refresh`]).
///
/// Life cycle, as a gateway uses it:
///
/// 1. build the pool with `PoolOptions::initially_healthy(spec.initially_healthy())`
///    so that, with active checks, servers start out of rotation;
/// 2. [`UpstreamHealth::new`];
/// 3. `initial_round().await` before routing traffic (one check of every server; a single pass
///    is enough at start-up);
/// 4. [`UpstreamHealth::start`] inside the tokio runtime that should run the checkers;
/// 5. [`UpstreamHealth::report`] from the proxy's response path;
/// 6. [`UpstreamHealth::sync_servers`] after every change of the pool's server list.
///
/// Dropping it stops every checker task.
///
/// ```
/// use std::sync::Arc;
/// use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore};
/// use switchyard_health::{HealthSpec, PassiveEvent, PassiveSpec, UpstreamHealth};
///
/// let checks = HealthSpec {
///     active: None,
///     passive: Some(PassiveSpec { unhealthy_threshold: 2, ..PassiveSpec::default() }),
/// };
/// let spec = ServerSpec::new("blue", "127.0.0.1:9".parse().unwrap(), 1);
/// let opts = PoolOptions::new(Algorithm::Wrr).initially_healthy(checks.initially_healthy());
/// let pool = Arc::new(Pool::new("api", opts, vec![spec], Arc::new(StatsStore::default())));
/// let health = UpstreamHealth::new(Arc::clone(&pool), &checks).unwrap();
///
/// let stats = Arc::clone(&pool.snapshot().servers()[0].stats);
/// health.report(&stats, PassiveEvent::Status(502));
/// health.report(&stats, PassiveEvent::Timeout);
/// assert!(!stats.is_healthy()); // ejected after two consecutive failures
/// assert!(pool.snapshot().candidates().is_empty());
/// ```
pub struct UpstreamHealth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for UpstreamHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamHealth")
            .field("upstream", &self.inner.name)
            .field("active", &self.inner.probe.is_some())
            .field("passive", &self.inner.passive.is_some())
            .finish()
    }
}

impl UpstreamHealth {
    /// Builds the health of `pool` from `spec`, with no observer.
    ///
    /// Nothing is probed yet. Servers without active checks are marked healthy; with active checks
    /// each server keeps the verdict its stats already carry (false for a pool built with
    /// `initially_healthy(false)`, or the verdict of an earlier instance when the health table was
    /// rebuilt on reload). Fails on a bad check `path`.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use switchyard_balance::{Algorithm, Pool, PoolOptions, StatsStore};
    /// use switchyard_health::{HealthSpec, UpstreamHealth};
    /// let pool = Arc::new(Pool::new("api", PoolOptions::new(Algorithm::Wrr), vec![], Arc::new(StatsStore::default())));
    /// assert!(UpstreamHealth::new(pool, &HealthSpec::default()).is_ok());
    /// ```
    pub fn new(pool: Arc<Pool>, spec: &HealthSpec) -> Result<Self, HealthError> {
        Self::with_observer(pool, spec, Arc::new(NoopObserver))
    }

    /// Like [`UpstreamHealth::new`], reporting to `observer`.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use switchyard_balance::{Algorithm, Pool, PoolOptions, StatsStore};
    /// use switchyard_health::{HealthSpec, NoopObserver, UpstreamHealth};
    /// let pool = Arc::new(Pool::new("api", PoolOptions::new(Algorithm::Wrr), vec![], Arc::new(StatsStore::default())));
    /// let h = UpstreamHealth::with_observer(pool, &HealthSpec::default(), Arc::new(NoopObserver)).unwrap();
    /// assert_eq!(h.name(), "api");
    /// ```
    pub fn with_observer(
        pool: Arc<Pool>,
        spec: &HealthSpec,
        observer: Arc<dyn HealthObserver>,
    ) -> Result<Self, HealthError> {
        let probe = match &spec.active {
            Some(active) => Some(Arc::new(Probe::new(active)?)),
            None => None,
        };
        let thresholds = spec.active.as_ref().map(|a| a.thresholds);
        let passive = spec.passive.as_ref().map(|p| Passive {
            statuses: StatusSet::new(&p.unhealthy_statuses),
            threshold: p.unhealthy_threshold.max(1),
            ejection_ms: u64::try_from(p.ejection.as_millis()).unwrap_or(u64::MAX),
            max_percent: p.max_ejection_percent,
        });
        let inner = Arc::new(Inner {
            name: pool.name().to_string(),
            clock: Arc::clone(&pool.options().clock),
            pool,
            probe,
            thresholds,
            passive,
            observer,
            servers: ArcSwap::from_pointee(Tracked::default()),
            writer: Mutex::new(()),
            budget: EjectionBudget::default(),
            runtime: Mutex::new(None),
            started: AtomicBool::new(false),
        });
        inner.sync(false);
        Ok(UpstreamHealth { inner })
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    /// The pool whose verdicts this instance writes.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.inner.pool
    }
    /// True if active checks are configured.
    pub fn has_active(&self) -> bool {
        self.inner.probe.is_some()
    }
    /// True if passive outlier detection is configured.
    pub fn has_passive(&self) -> bool {
        self.inner.passive.is_some()
    }

    /// Runs one check of every server concurrently and applies the results, returning within
    /// about `timeout_ms`. At start-up a single pass makes a server healthy and a failure keeps it
    /// out (the thresholds apply from then on). A server whose check did not finish stays as it
    /// was. Without active checks this returns at once.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use switchyard_balance::{Algorithm, Pool, PoolOptions, StatsStore};
    /// # let cfg = switchyard_health::HealthSpec::default();
    /// # let pool = Arc::new(Pool::new("api", PoolOptions::new(Algorithm::Wrr), vec![], Arc::new(StatsStore::default())));
    /// let health = switchyard_health::UpstreamHealth::new(pool, &cfg).unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// rt.block_on(async {
    ///     health.initial_round().await;
    ///     health.start().unwrap();
    /// });
    /// ```
    pub async fn initial_round(&self) {
        let Some(probe) = self.inner.probe.clone() else {
            return;
        };
        let entries: Vec<Arc<Entry>> = self.inner.servers.load().by_id.values().cloned().collect();
        let mut set = JoinSet::new();
        for entry in entries {
            let inner = Arc::clone(&self.inner);
            let probe = Arc::clone(&probe);
            set.spawn(async move {
                if let Some(target) = &entry.target {
                    let result = probe.check(target).await;
                    inner.apply_check(&entry, result);
                }
            });
        }
        let bound = probe.timeout + Duration::from_millis(200);
        let _ =
            tokio::time::timeout(bound, async { while set.join_next().await.is_some() {} }).await;
        // Dropping the set aborts any check still running.
    }

    /// Starts one checker task per server on the current tokio runtime (each on its own jittered
    /// schedule; a server already checked by [`UpstreamHealth::initial_round`] waits one interval
    /// first). The runtime is kept for servers added later and for ejection timers. Calling it
    /// again starts nothing twice.
    ///
    /// Fails with [`HealthError::NoRuntime`] outside a tokio runtime.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use switchyard_balance::{Algorithm, Pool, PoolOptions, StatsStore};
    /// # let cfg = switchyard_health::HealthSpec::default();
    /// # let pool = Arc::new(Pool::new("api", PoolOptions::new(Algorithm::Wrr), vec![], Arc::new(StatsStore::default())));
    /// let health = switchyard_health::UpstreamHealth::new(pool, &cfg).unwrap();
    /// assert!(health.start().is_err()); // no runtime here
    /// ```
    pub fn start(&self) -> Result<(), HealthError> {
        let handle = Handle::try_current().map_err(|_| HealthError::NoRuntime)?;
        *lock(&self.inner.runtime) = Some(handle.clone());
        self.inner.started.store(true, Ordering::Release);
        let entries: Vec<Arc<Entry>> = self.inner.servers.load().by_id.values().cloned().collect();
        for entry in &entries {
            self.inner.spawn_checker(&handle, entry);
        }
        Ok(())
    }

    /// Follows the pool's current server list (call after a reload or an admin change): starts
    /// checkers for new identities (out of rotation until their first check passes), stops
    /// the checkers of removed identities at once, and keeps the state of the others (a weight,
    /// standby or enabled change keeps health).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore};
    /// # let cfg = switchyard_health::HealthSpec::default();
    /// # let pool = Arc::new(Pool::new("api", PoolOptions::new(Algorithm::Wrr), vec![], Arc::new(StatsStore::default())));
    /// let health = switchyard_health::UpstreamHealth::new(Arc::clone(&pool), &cfg).unwrap();
    /// pool.update(vec![ServerSpec::new("blue", "127.0.0.1:9".parse().unwrap(), 1)]);
    /// health.sync_servers();
    /// assert_eq!(health.servers().len(), 1);
    /// ```
    pub fn sync_servers(&self) {
        self.inner.sync(true);
    }

    /// Reports one proxied response of the server whose stats are `stats` (as picked from the
    /// pool's snapshot). Synchronous and cheap: one lock-free map read and one atomic operation;
    /// only the response that crosses `unhealthy_threshold` takes the server's own lock (and then
    /// refreshes the pool). Unknown servers and upstreams without passive checks are ignored.
    ///
    /// See [`UpstreamHealth`] for an example.
    pub fn report(&self, stats: &Arc<ServerStats>, event: PassiveEvent) {
        let Some(passive) = &self.inner.passive else {
            return;
        };
        let tracked = self.inner.servers.load();
        if let Some(entry) = tracked.by_ptr.get(&stats_key(stats)) {
            self.inner.record(passive, entry, event);
        }
    }

    /// Like [`UpstreamHealth::report`], by identity.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore, ServerId};
    /// # let passive = switchyard_health::PassiveSpec { unhealthy_threshold: 1, ..Default::default() };
    /// # let cfg = switchyard_health::HealthSpec { active: None, passive: Some(passive) };
    /// # let spec = ServerSpec::new("blue", "127.0.0.1:9".parse().unwrap(), 1);
    /// # let pool = Arc::new(Pool::new("api", PoolOptions::new(Algorithm::Wrr), vec![spec], Arc::new(StatsStore::default())));
    /// let health = switchyard_health::UpstreamHealth::new(pool, &cfg).unwrap();
    /// let id = ServerId::new("blue", "127.0.0.1:9");
    /// health.report_id(&id, switchyard_health::PassiveEvent::ConnectError);
    /// assert_eq!(health.server(&id).unwrap().state.as_str(), "ejected");
    /// ```
    pub fn report_id(&self, id: &ServerId, event: PassiveEvent) {
        let Some(passive) = &self.inner.passive else {
            return;
        };
        let tracked = self.inner.servers.load();
        if let Some(entry) = tracked.by_id.get(id) {
            self.inner.record(passive, entry, event);
        }
    }

    /// Returns ejected servers whose `ejection_ms` has elapsed (only without active checks).
    /// [`UpstreamHealth::start`] schedules this by itself; call it when driving a manual clock or
    /// running without a tokio runtime.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use switchyard_balance::{Algorithm, Pool, PoolOptions, StatsStore};
    /// # let cfg = switchyard_health::HealthSpec::default();
    /// # let pool = Arc::new(Pool::new("api", PoolOptions::new(Algorithm::Wrr), vec![], Arc::new(StatsStore::default())));
    /// let health = switchyard_health::UpstreamHealth::new(pool, &cfg).unwrap();
    /// health.tick();
    /// ```
    pub fn tick(&self) {
        let entries: Vec<Arc<Entry>> = self.inner.servers.load().by_id.values().cloned().collect();
        for entry in &entries {
            self.inner.poll_return(entry);
        }
    }

    /// Every tracked server's health, sorted by identity.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore};
    /// # let cfg = switchyard_health::HealthSpec::default();
    /// # let spec = ServerSpec::new("blue", "127.0.0.1:9".parse().unwrap(), 1);
    /// # let pool = Arc::new(Pool::new("api", PoolOptions::new(Algorithm::Wrr), vec![spec], Arc::new(StatsStore::default())));
    /// let health = switchyard_health::UpstreamHealth::new(pool, &cfg).unwrap();
    /// let views = health.servers();
    /// assert_eq!(views[0].state, switchyard_health::ServerState::Healthy);
    /// ```
    pub fn servers(&self) -> Vec<ServerHealthView> {
        let tracked = self.inner.servers.load();
        let mut views: Vec<ServerHealthView> =
            tracked.by_id.values().map(|e| self.inner.view(e)).collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }

    /// One server's health.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use switchyard_balance::{Algorithm, Pool, PoolOptions, StatsStore, ServerId};
    /// # let cfg = switchyard_health::HealthSpec::default();
    /// # let pool = Arc::new(Pool::new("api", PoolOptions::new(Algorithm::Wrr), vec![], Arc::new(StatsStore::default())));
    /// let health = switchyard_health::UpstreamHealth::new(pool, &cfg).unwrap();
    /// assert!(health.server(&ServerId::new("blue", "127.0.0.1:9")).is_none());
    /// ```
    pub fn server(&self, id: &ServerId) -> Option<ServerHealthView> {
        let tracked = self.inner.servers.load();
        tracked.by_id.get(id).map(|e| self.inner.view(e))
    }
}

impl Drop for UpstreamHealth {
    fn drop(&mut self) {
        let tracked = self.inner.servers.load();
        for entry in tracked.by_id.values() {
            entry.removed.store(true, Ordering::Release);
            entry.stop_tasks();
        }
    }
}

impl Inner {
    fn prefix(&self, id: &ServerId) -> String {
        format!("{}/{}", self.name, id)
    }

    /// Logs and reports a change after the entry's lock is released.
    fn publish(&self, id: &ServerId, report: Report) {
        if report.refresh {
            self.pool.refresh();
        }
        let prefix = self.prefix(id);
        for (good, message) in &report.messages {
            if *good {
                log::info!("{prefix} {message}");
            } else {
                log::warn!("{prefix} {message}");
            }
        }
        if report.ejected {
            self.observer.on_ejection(&self.name, id);
        }
        if let Some((healthy, reason)) = &report.transition {
            self.observer
                .on_transition(&self.name, id, *healthy, reason);
        }
    }
}
