//! [`UpstreamHealth`]: the health of one upstream at run time — checker tasks, passive
//! reports, and the verdicts written to the pool.

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

/// Passive settings, parsed once.
#[derive(Debug)]
struct Passive {
    statuses: StatusSet,
    threshold: u32,
    ejection_ms: u64,
    max_percent: u32,
}

/// The per-server state, shared by the checker task, the passive path and the views.
struct Entry {
    id: ServerId,
    target: Option<Target>,
    stats: Arc<ServerStats>,
    passive: PassiveCounter,
    /// The last passive failure, encoded by [`PassiveEvent::encode`].
    last_passive: AtomicU32,
    removed: AtomicBool,
    state: Mutex<EntryState>,
    checker: Mutex<Option<JoinHandle<()>>>,
    timer: Mutex<Option<JoinHandle<()>>>,
}

struct EntryState {
    machine: Machine,
    last_change: Option<(u64, SystemTime)>,
    reason: Option<String>,
    last_check: Option<CheckResult>,
}

impl Entry {
    fn stop_tasks(&self) {
        if let Some(t) = lock(&self.checker).take() {
            t.abort();
        }
        if let Some(t) = lock(&self.timer).take() {
            t.abort();
        }
    }
}

/// The servers being tracked, published as one immutable map so that the passive path reads it
/// without a lock.
#[derive(Default)]
struct Tracked {
    by_id: HashMap<ServerId, Arc<Entry>>,
    /// Keyed by `Arc::as_ptr` of the server's stats: the entry holds a clone of that `Arc`, so the
    /// address cannot be reused while it is in the map.
    by_ptr: HashMap<usize, Arc<Entry>>,
}

fn stats_key(stats: &Arc<ServerStats>) -> usize {
    Arc::as_ptr(stats) as usize
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

/// A server's state as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Active checks are configured and the server has not been checked yet: out of rotation.
    Pending,
    /// In rotation.
    Healthy,
    /// Failed its active checks.
    Unhealthy,
    /// Ejected by passive outlier detection.
    Ejected,
}

impl ServerState {
    /// `pending`, `healthy`, `unhealthy` or `ejected`.
    ///
    /// ```
    /// assert_eq!(switchyard_health::ServerState::Ejected.as_str(), "ejected");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Pending => "pending",
            ServerState::Healthy => "healthy",
            ServerState::Unhealthy => "unhealthy",
            ServerState::Ejected => "ejected",
        }
    }
}

/// A read-only view of one server's health, for the admin API and status page.
///
/// ```
/// # use std::sync::Arc;
/// # use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore};
/// use switchyard_health::{HealthSpec, ProbeSpec};
/// let checks = HealthSpec { active: Some(ProbeSpec::tcp()), passive: None };
/// let spec = ServerSpec::new("blue", "127.0.0.1:9".parse().unwrap(), 1);
/// let opts = PoolOptions::new(Algorithm::Wrr).initially_healthy(false);
/// let pool = Arc::new(Pool::new("api", opts, vec![spec], Arc::new(StatsStore::default())));
/// let health = switchyard_health::UpstreamHealth::new(pool, &checks).unwrap();
/// let view = &health.servers()[0];
/// assert_eq!(view.id.as_str(), "blue/127.0.0.1:9");
/// assert_eq!(view.state.as_str(), "pending"); // not checked yet: out of rotation
/// assert!(!view.healthy && view.last_check.is_none() && view.reason.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealthView {
    /// The server's identity.
    pub id: ServerId,
    /// Its state.
    pub state: ServerState,
    /// The verdict the selectors read (healthy and not ejected).
    pub healthy: bool,
    /// Consecutive passing active checks.
    pub consecutive_passes: u32,
    /// Consecutive failing active checks.
    pub consecutive_failures: u32,
    /// Consecutive passive failures (proxied responses).
    pub passive_failures: u32,
    /// How long the server has been ejected, if it is.
    pub ejected_for_ms: Option<u64>,
    /// The last active check's result.
    pub last_check: Option<CheckResult>,
    /// Wall-clock time of the last transition.
    pub last_transition: Option<SystemTime>,
    /// Milliseconds since the last transition (by the pool's clock).
    pub last_transition_ago_ms: Option<u64>,
    /// Why the last transition happened, e.g. `unhealthy: 3 consecutive failed checks (last:
    /// HTTP 503 from /health)`.
    pub reason: Option<String>,
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

    fn new_entry(&self, server: &Server, fresh: bool) -> (Arc<Entry>, bool) {
        let machine = match self.thresholds {
            Some(t) => Machine::new(Some(t), !fresh && server.stats.is_healthy()),
            None => Machine::new(None, true),
        };
        let flipped = server.stats.set_healthy(machine.verdict());
        let entry = Entry {
            id: server.spec.id.clone(),
            target: self
                .probe
                .as_ref()
                .map(|p| p.target(&server.spec.id, server.spec.addr)),
            stats: Arc::clone(&server.stats),
            passive: PassiveCounter::default(),
            last_passive: AtomicU32::new(0),
            removed: AtomicBool::new(false),
            state: Mutex::new(EntryState {
                machine,
                last_change: None,
                reason: None,
                last_check: None,
            }),
            checker: Mutex::new(None),
            timer: Mutex::new(None),
        };
        (Arc::new(entry), flipped)
    }

    /// Follows the pool's server list. `fresh`: identities seen now for the first time are new
    /// servers (out until checked); at construction they adopt their stats' verdict instead.
    fn sync(self: &Arc<Self>, fresh: bool) {
        let _writer = lock(&self.writer);
        let snapshot = self.pool.snapshot();
        let old = self.servers.load_full();
        let mut next = Tracked::default();
        let mut added = Vec::new();
        let mut refresh = false;
        for server in snapshot.servers() {
            if next.by_id.contains_key(&server.spec.id) {
                continue;
            }
            let entry = match old.by_id.get(&server.spec.id) {
                Some(e) if Arc::ptr_eq(&e.stats, &server.stats) => Arc::clone(e),
                _ => {
                    let (e, flipped) = self.new_entry(server, fresh);
                    refresh |= flipped;
                    added.push(Arc::clone(&e));
                    e
                }
            };
            next.by_ptr
                .insert(stats_key(&entry.stats), Arc::clone(&entry));
            next.by_id.insert(server.spec.id.clone(), entry);
        }
        for (id, entry) in &old.by_id {
            let kept = next.by_id.get(id).is_some_and(|n| Arc::ptr_eq(n, entry));
            if !kept {
                entry.removed.store(true, Ordering::Release);
                entry.stop_tasks();
                if lock(&entry.state).machine.clear_ejection() {
                    self.budget.release();
                }
                log::info!("{} removed: health checks stopped", self.prefix(id));
            }
        }
        self.servers.store(Arc::new(next));
        drop(_writer);
        if refresh {
            self.pool.refresh();
        }
        if self.started.load(Ordering::Acquire) {
            let handle = lock(&self.runtime).clone();
            if let Some(handle) = handle {
                for entry in &added {
                    self.spawn_checker(&handle, entry);
                }
            }
        }
    }

    fn spawn_checker(self: &Arc<Self>, handle: &Handle, entry: &Arc<Entry>) {
        let (Some(probe), Some(target)) = (self.probe.clone(), entry.target.clone()) else {
            return;
        };
        let mut slot = lock(&entry.checker);
        if slot.is_some() || entry.removed.load(Ordering::Acquire) {
            return;
        }
        let delay_first = lock(&entry.state).last_check.is_some();
        let weak: Weak<Inner> = Arc::downgrade(self);
        let entry_task = Arc::clone(entry);
        *slot = Some(handle.spawn(async move {
            if delay_first {
                tokio::time::sleep(jittered(probe.interval)).await;
            }
            // Runs until the server is removed or the health instance dropped (both also abort
            // the task, so this loop ends at its next await at the latest).
            loop {
                if entry_task.removed.load(Ordering::Acquire) {
                    break;
                }
                let result = probe.check(&target).await;
                let Some(inner) = weak.upgrade() else {
                    break;
                };
                inner.apply_check(&entry_task, result);
                drop(inner);
                tokio::time::sleep(jittered(probe.interval)).await;
            }
        }));
    }

    fn apply_check(&self, entry: &Entry, result: CheckResult) {
        if entry.removed.load(Ordering::Acquire) {
            return;
        }
        self.observer.on_check(&self.name, &entry.id, &result);
        let pass = result.is_pass();
        let path = self.probe.as_ref().and_then(|p| p.path());
        let detail = match (&result, path) {
            (CheckResult::Status(_) | CheckResult::Pass { status: Some(_) }, Some(path)) => {
                format!("{result} from {path}")
            }
            _ => result.to_string(),
        };
        let report = {
            let mut st = lock(&entry.state);
            st.last_check = Some(result);
            let before = st.machine.verdict();
            let step = st.machine.on_check(pass);
            let after = st.machine.verdict();
            let mut messages = Vec::new();
            match step.active {
                Some(true) if step.first => {
                    messages.push((true, format!("healthy: first check passed ({detail})")))
                }
                Some(false) if step.first => {
                    messages.push((false, format!("unhealthy: first check failed ({detail})")))
                }
                Some(true) => messages.push((
                    true,
                    format!("healthy: {} consecutive passes", st.machine.successes()),
                )),
                Some(false) => messages.push((
                    false,
                    format!(
                        "unhealthy: {} consecutive failed checks (last: {detail})",
                        st.machine.failures()
                    ),
                )),
                None => {}
            }
            if step.returned {
                self.budget.release();
                entry.passive.reset();
                let n = self.thresholds.map(|t| t.healthy).unwrap_or(1);
                messages.push((
                    true,
                    format!("returned after ejection: {n} consecutive passes"),
                ));
            }
            let refresh = entry.stats.set_healthy(after);
            let transition = if before != after || step.first {
                let reason = messages
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                st.last_change = Some((self.clock.now_nanos(), SystemTime::now()));
                st.reason = Some(reason.clone());
                Some((after, reason))
            } else {
                if let Some((_, m)) = messages.last() {
                    st.reason = Some(m.clone());
                }
                None
            };
            Report {
                messages,
                transition,
                ejected: false,
                refresh,
            }
        };
        self.publish(&entry.id, report);
    }

    fn record(self: &Arc<Self>, passive: &Passive, entry: &Arc<Entry>, event: PassiveEvent) {
        let failure = event.is_failure(&passive.statuses);
        if failure {
            entry.last_passive.store(event.encode(), Ordering::Relaxed);
        }
        if entry.passive.record(failure, passive.threshold) {
            self.eject(passive, entry);
        }
    }

    fn eject(self: &Arc<Self>, passive: &Passive, entry: &Arc<Entry>) {
        let total = self.servers.load().by_id.len();
        if self.budget.ejected() >= crate::machine::max_ejections(total, passive.max_percent) {
            return; // at the cap: the next failure tries again
        }
        let report = {
            let mut st = lock(&entry.state);
            if entry.removed.load(Ordering::Acquire) || st.machine.ejected_since().is_some() {
                return;
            }
            if !self.budget.try_take(total, passive.max_percent) {
                return;
            }
            let before = st.machine.verdict();
            st.machine.eject(self.clock.now_nanos());
            let after = st.machine.verdict();
            let n = entry.passive.get();
            entry.passive.reset();
            let last = PassiveEvent::describe_code(entry.last_passive.load(Ordering::Relaxed));
            let reason = format!("ejected: {n} consecutive failures (last: {last})");
            let refresh = entry.stats.set_healthy(after);
            st.reason = Some(reason.clone());
            let transition = (before != after).then(|| {
                st.last_change = Some((self.clock.now_nanos(), SystemTime::now()));
                (after, reason.clone())
            });
            Report {
                messages: vec![(false, reason)],
                transition,
                ejected: true,
                refresh,
            }
        };
        self.publish(&entry.id, report);
        if self.probe.is_none() {
            self.schedule_return(passive, entry);
        }
    }

    fn schedule_return(self: &Arc<Self>, passive: &Passive, entry: &Arc<Entry>) {
        let handle = lock(&self.runtime)
            .clone()
            .or_else(|| Handle::try_current().ok());
        let Some(handle) = handle else {
            return; // no runtime: tick() returns it
        };
        let weak = Arc::downgrade(self);
        let task_entry = Arc::clone(entry);
        let ejection_ns = passive.ejection_ms.saturating_mul(1_000_000);
        let task = handle.spawn(async move {
            // At most a few rounds: the first normally suffices; later ones cover a clock that
            // runs behind the timer.
            for _ in 0..4 {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let remaining = {
                    let st = lock(&task_entry.state);
                    match st.machine.ejection_deadline(ejection_ns) {
                        Some(deadline) => deadline.saturating_sub(inner.clock.now_nanos()),
                        None => return,
                    }
                };
                if remaining == 0 {
                    inner.poll_return(&task_entry);
                    return;
                }
                drop(inner);
                tokio::time::sleep(Duration::from_nanos(remaining)).await;
            }
        });
        if let Some(old) = lock(&entry.timer).replace(task) {
            old.abort();
        }
    }

    fn poll_return(&self, entry: &Entry) {
        let Some(passive) = &self.passive else {
            return;
        };
        let report = {
            let mut st = lock(&entry.state);
            if entry.removed.load(Ordering::Acquire) {
                return;
            }
            let before = st.machine.verdict();
            if !st.machine.poll_ejection(
                self.clock.now_nanos(),
                passive.ejection_ms.saturating_mul(1_000_000),
            ) {
                return;
            }
            self.budget.release();
            entry.passive.reset();
            let after = st.machine.verdict();
            let reason = format!(
                "returned after ejection: ejection_ms ({} ms) elapsed",
                passive.ejection_ms
            );
            let refresh = entry.stats.set_healthy(after);
            st.reason = Some(reason.clone());
            let transition = (before != after).then(|| {
                st.last_change = Some((self.clock.now_nanos(), SystemTime::now()));
                (after, reason.clone())
            });
            Report {
                messages: vec![(true, reason)],
                transition,
                ejected: false,
                refresh,
            }
        };
        self.publish(&entry.id, report);
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

    fn view(&self, entry: &Entry) -> ServerHealthView {
        let st = lock(&entry.state);
        let now = self.clock.now_nanos();
        let m = &st.machine;
        let state = if m.ejected_since().is_some() {
            ServerState::Ejected
        } else if !m.checked() {
            ServerState::Pending
        } else if m.active_healthy() {
            ServerState::Healthy
        } else {
            ServerState::Unhealthy
        };
        ServerHealthView {
            id: entry.id.clone(),
            state,
            healthy: m.verdict(),
            consecutive_passes: m.successes(),
            consecutive_failures: m.failures(),
            passive_failures: entry.passive.get(),
            ejected_for_ms: m
                .ejected_since()
                .map(|since| now.saturating_sub(since) / 1_000_000),
            last_check: st.last_check.clone(),
            last_transition: st.last_change.map(|(_, wall)| wall),
            last_transition_ago_ms: st
                .last_change
                .map(|(ns, _)| now.saturating_sub(ns) / 1_000_000),
            reason: st.reason.clone(),
        }
    }
}

/// `interval` ± 10%.
fn jittered(interval: Duration) -> Duration {
    let factor: f64 = rand::rng().random_range(0.9..=1.1);
    interval.mul_f64(factor)
}
