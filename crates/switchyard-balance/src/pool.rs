//! An upstream at run time: its servers, their tiers, and the published snapshot.

use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;

use crate::clock::{Clock, MonotonicClock};
use crate::identity::{ServerId, ServerSpec};
use crate::select::{self, Algorithm, HashRing, PickContext, Selector};
use crate::server::Server;
use crate::stats::StatsStore;
use crate::tried::Tried;

/// What to do when no server is available.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AllDownPolicy {
    /// No candidates: the caller answers 503.
    #[default]
    Reject,
    /// Panic mode: every enabled, non-draining server is a candidate, healthy or not.
    All,
}

/// A custom selector factory.
pub type SelectorFactory =
    Arc<dyn Fn(&[Server], &[usize]) -> Box<dyn Selector> + Send + Sync + 'static>;

/// How a [`Pool`] selects.
#[derive(Clone)]
pub struct PoolOptions {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The all-down policy.
    pub when_all_down: AllDownPolicy,
    /// The clock used for latency tracking.
    pub clock: Arc<dyn Clock>,
    /// Overrides `algorithm` with a user's selector.
    pub custom: Option<SelectorFactory>,
    /// Health of a server seen for the first time: false when active checks must pass first.
    pub initially_healthy: bool,
    /// The ring of [`Algorithm::ConsistentHash`], and so the hash of request keys
    /// ([`Pool::hash_key`]). Default Maglev.
    pub hash_ring: HashRing,
    /// Slow start: a server (re)entering service ramps to its full weight over this many
    /// nanoseconds (see [`crate::slow_start`]); 0 = off (default).
    pub slow_start_ns: u64,
}

impl std::fmt::Debug for PoolOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolOptions")
            .field("algorithm", &self.algorithm)
            .field("when_all_down", &self.when_all_down)
            .field("custom", &self.custom.is_some())
            .field("initially_healthy", &self.initially_healthy)
            .field("hash_ring", &self.hash_ring)
            .field("slow_start_ns", &self.slow_start_ns)
            .finish()
    }
}

impl PoolOptions {
    /// Options for `algorithm` with the default policy and the monotonic clock.
    pub fn new(algorithm: Algorithm) -> Self {
        PoolOptions {
            algorithm,
            when_all_down: AllDownPolicy::Reject,
            clock: Arc::new(MonotonicClock),
            custom: None,
            initially_healthy: true,
            hash_ring: HashRing::Maglev,
            slow_start_ns: 0,
        }
    }
    /// Sets the slow-start window in milliseconds (0 = off; see [`crate::slow_start`]).
    pub fn slow_start_ms(mut self, ms: u64) -> Self {
        self.slow_start_ns = ms.saturating_mul(1_000_000);
        self
    }
    /// Sets the ring of [`Algorithm::ConsistentHash`] (see [`HashRing`]).
    pub fn hash_ring(mut self, ring: HashRing) -> Self {
        self.hash_ring = ring;
        self
    }
    /// Sets the health of servers seen for the first time (false: out until a check passes).
    pub fn initially_healthy(mut self, healthy: bool) -> Self {
        self.initially_healthy = healthy;
        self
    }
    /// Sets the all-down policy.
    pub fn when_all_down(mut self, policy: AllDownPolicy) -> Self {
        self.when_all_down = policy;
        self
    }
    /// Sets the clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Uses a custom selector instead of a built-in algorithm.
    pub fn with_selector(
        mut self,
        factory: impl Fn(&[Server], &[usize]) -> Box<dyn Selector> + Send + Sync + 'static,
    ) -> Self {
        self.custom = Some(Arc::new(factory));
        self
    }
}

/// An immutable view of an upstream: servers, candidates and the selector built over them.
///
/// Servers are in tiers: available primaries, then available standby servers, then (with
/// [`AllDownPolicy::All`]) every enabled server whatever its health. Picks come from the first
/// tier that has a server; a retry whose tried servers cover that whole tier falls through to
/// the next ones (as NGINX's `backup` servers and APISIX's priorities take a request whose
/// primaries failed), never to a tried server.
#[derive(Debug)]
pub struct Snapshot {
    servers: Vec<Server>,
    candidates: Vec<usize>,
    panic: bool,
    selector: Box<dyn Selector>,
    needs_clock: bool,
    /// The tiers after the serving one, in order; their selectors are built on first use (only
    /// retries reach them).
    fallbacks: Vec<Fallback>,
    build: SelectorBuild,
    clock: Arc<dyn Clock>,
    /// True if a server has a `max_in_flight`: a first pick that finds every server of the
    /// serving tier full overflows to the standby tier.
    limited: bool,
}

/// A tier a retry falls through to.
#[derive(Debug)]
struct Fallback {
    candidates: Vec<usize>,
    selector: OnceLock<Box<dyn Selector>>,
    /// Panic mode's tier (every enabled server, healthy or not): only retries reach it, never
    /// the overflow of full servers.
    panic: bool,
}

/// How a snapshot builds a selector over a tier.
#[derive(Clone)]
enum SelectorBuild {
    Builtin(Algorithm, HashRing),
    Custom(SelectorFactory),
}

impl std::fmt::Debug for SelectorBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelectorBuild::Builtin(a, ring) => write!(f, "Builtin({a}, {ring:?})"),
            SelectorBuild::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl SelectorBuild {
    fn build(&self, servers: &[Server], candidates: &[usize]) -> Box<dyn Selector> {
        match self {
            SelectorBuild::Builtin(a, ring) => {
                select::build_with_ring(*a, *ring, servers, candidates)
            }
            SelectorBuild::Custom(factory) => factory(servers, candidates),
        }
    }
}

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl Snapshot {
    fn build(specs: &[ServerSpec], store: &StatsStore, opts: &PoolOptions) -> Snapshot {
        let servers: Vec<Server> = specs
            .iter()
            .map(|spec| Server {
                stats: store.get_or_insert_with(&spec.id, opts.initially_healthy),
                spec: spec.clone(),
            })
            .collect();
        // Slow start: who enters service with this build (one clock read per build, if on).
        let now = (opts.slow_start_ns > 0).then(|| opts.clock.now_nanos());
        for s in &servers {
            let out_by_config = !s.spec.enabled || s.spec.weight == 0;
            s.stats
                .service()
                .observe(s.is_available(), out_by_config, now, opts.slow_start_ns);
        }
        store.mark_started();
        let tier = |standby: bool| -> Vec<usize> {
            (0..servers.len())
                .filter(|&i| servers[i].spec.standby == standby && servers[i].is_available())
                .collect()
        };
        let (primary, standby) = (tier(false), tier(true));
        // Panic mode: nothing is available, so every enabled server is a candidate.
        let panic_tier: Vec<usize> = match opts.when_all_down {
            AllDownPolicy::All => (0..servers.len())
                .filter(|&i| servers[i].spec.enabled && servers[i].spec.weight > 0)
                .collect(),
            AllDownPolicy::Reject => Vec::new(),
        };
        let panic = primary.is_empty() && standby.is_empty() && !panic_tier.is_empty();
        let mut tiers = [(primary, false), (standby, false), (panic_tier, true)]
            .into_iter()
            .filter(|(t, _)| !t.is_empty());
        let candidates = tiers.next().map(|(t, _)| t).unwrap_or_default();
        let fallbacks = tiers
            .map(|(candidates, panic)| Fallback {
                candidates,
                selector: OnceLock::new(),
                panic,
            })
            .collect();
        let limited = servers.iter().any(|s| s.spec.max_in_flight > 0);
        let build = match &opts.custom {
            Some(factory) => SelectorBuild::Custom(Arc::clone(factory)),
            None => SelectorBuild::Builtin(opts.algorithm, opts.hash_ring),
        };
        let selector = build.build(&servers, &candidates);
        Snapshot {
            servers,
            candidates,
            panic,
            needs_clock: selector.needs_clock(),
            selector,
            fallbacks,
            build,
            clock: Arc::clone(&opts.clock),
            limited,
        }
    }

    /// Picks a server for a request with hashed key `key` (see [`Pool::hash_key`]), never one
    /// in `tried`: from the serving tier, or, once every server of it was tried, from the next
    /// tier (standby, then panic mode's every enabled server). `None`: nothing is available, or
    /// every server of every tier was tried (the caller applies the all-down or
    /// retries-exhausted answer).
    ///
    /// Synchronous, lock-free and allocation-free for every built-in algorithm.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore, Tried};
    ///
    /// let specs = vec![ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1)];
    /// let pool = Pool::new("api", PoolOptions::new(Algorithm::LeastConn), specs, Arc::new(StatsStore::default()));
    /// let snap = pool.snapshot();
    /// let server = snap.pick(None, &Tried::default()).unwrap();
    /// let mut tried = Tried::default();
    /// tried.insert(&server.stats);
    /// assert!(snap.pick(None, &tried).is_none());
    ///
    /// // A retry falls through to a standby server once every primary was tried.
    /// let specs = vec![
    ///     ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1),
    ///     ServerSpec::new("g", "127.0.0.1:8082".parse().unwrap(), 1).standby(true),
    /// ];
    /// let pool = Pool::new("api", PoolOptions::new(Algorithm::Wrr), specs, Arc::new(StatsStore::default()));
    /// let snap = pool.snapshot();
    /// let primary = snap.pick(None, &Tried::default()).unwrap();
    /// assert_eq!(primary.spec.addr.port(), 8081);
    /// let mut tried = Tried::default();
    /// tried.insert(&primary.stats);
    /// assert_eq!(snap.pick(None, &tried).unwrap().spec.addr.port(), 8082);
    /// ```
    pub fn pick(&self, key: Option<u64>, tried: &Tried) -> Option<&Server> {
        self.pick_at(key, tried).map(|(_, s)| s)
    }

    /// Like [`Snapshot::pick`], with the server's index in [`Snapshot::servers`] (for tables
    /// kept in server order, such as per-server metric handles).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore, Tried};
    /// let specs = vec![ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1)];
    /// let pool = Pool::new("api", PoolOptions::new(Algorithm::Wrr), specs, Arc::new(StatsStore::default()));
    /// let snap = pool.snapshot();
    /// let (i, server) = snap.pick_at(None, &Tried::default()).unwrap();
    /// assert!(std::ptr::eq(&snap.servers()[i], server));
    /// ```
    pub fn pick_at(&self, key: Option<u64>, tried: &Tried) -> Option<(usize, &Server)> {
        self.pick_in_tiers(key, tried, !tried.is_empty(), None)
    }

    /// [`Snapshot::pick_at`], skipping the servers in `skip` (tried, or found full meanwhile);
    /// `retry` if the request already tried a server (only retries reach panic mode's tier).
    /// A server at its `max_in_flight` is skipped by the selectors like a tried one; when the
    /// whole serving tier is full, the standby tier takes the overflow. `now`: the caller's
    /// clock reading, if it has one (else the clock is read only if the selector needs it).
    pub(crate) fn pick_in_tiers(
        &self,
        key: Option<u64>,
        skip: &Tried,
        retry: bool,
        now: Option<u64>,
    ) -> Option<(usize, &Server)> {
        let tried = skip;
        if self.candidates.is_empty() {
            return None;
        }
        let ctx = PickContext {
            servers: &self.servers,
            key,
            tried,
            now_ns: match now {
                Some(now) => now,
                None if self.needs_clock => self.clock.now_nanos(),
                None => 0,
            },
        };
        match self.selector.pick(&ctx) {
            Some(i) => Some((i, &self.servers[i])),
            None if self.fallbacks.is_empty() => None,
            None if retry || self.limited => self.pick_fallback(key, tried, retry, now),
            None => None,
        }
    }

    /// A retry's pick from the tiers after the serving one (builds their selectors on first
    /// use: the first fall-through of a snapshot allocates, later ones do not).
    #[cold]
    fn pick_fallback(
        &self,
        key: Option<u64>,
        tried: &Tried,
        retry: bool,
        now: Option<u64>,
    ) -> Option<(usize, &Server)> {
        self.fallbacks.iter().find_map(|tier| {
            if tier.panic && !retry {
                return None;
            }
            let selector = tier
                .selector
                .get_or_init(|| self.build.build(&self.servers, &tier.candidates));
            let ctx = PickContext {
                servers: &self.servers,
                key,
                tried,
                now_ns: match now {
                    Some(now) => now,
                    None if selector.needs_clock() => self.clock.now_nanos(),
                    None => 0,
                },
            };
            selector.pick(&ctx).map(|i| (i, &self.servers[i]))
        })
    }

    /// The server with identity `id` and its index, by a scan (for the rare paths that name a
    /// server: sticky sessions, a reconnect).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerId, ServerSpec, StatsStore};
    /// let specs = vec![ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1)];
    /// let pool = Pool::new("api", PoolOptions::new(Algorithm::Wrr), specs, Arc::new(StatsStore::default()));
    /// let snap = pool.snapshot();
    /// assert_eq!(snap.find(&ServerId::new("g", "127.0.0.1:8081")).map(|(i, _)| i), Some(0));
    /// assert!(snap.find(&ServerId::new("g", "127.0.0.1:9")).is_none());
    /// ```
    pub fn find(&self, id: &ServerId) -> Option<(usize, &Server)> {
        self.servers
            .iter()
            .enumerate()
            .find(|(_, s)| &s.spec.id == id)
    }

    /// Every server of the upstream, available or not.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }
    /// Indices of the servers picks choose from.
    pub fn candidates(&self) -> &[usize] {
        &self.candidates
    }
    /// True if a server has a `max_in_flight` limit.
    pub fn is_limited(&self) -> bool {
        self.limited
    }
    /// True if a server a first attempt could use (serving tier or standby, not in `skip`) is
    /// at its limit: the reason a pick found nothing, when it is not that nothing is available.
    pub(crate) fn any_full(&self, skip: &Tried) -> bool {
        let tiers = std::iter::once(self.candidates.as_slice()).chain(
            self.fallbacks
                .iter()
                .filter(|t| !t.panic)
                .map(|t| t.candidates.as_slice()),
        );
        tiers.flatten().any(|&i| {
            let s = &self.servers[i];
            !s.has_room() && !skip.contains(&s.stats)
        })
    }
    /// True if a retry after trying the servers in `tried` would find a server (one not tried,
    /// with room, in a tier a retry reaches), without picking one: the selectors' state (smooth
    /// WRR's rotation, a random draw) is left as it is, so deciding whether to retry does not
    /// move the order the next requests are served in.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore, Tried};
    /// let specs = vec![
    ///     ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1),
    ///     ServerSpec::new("g", "127.0.0.1:8082".parse().unwrap(), 1),
    /// ];
    /// let pool = Pool::new("api", PoolOptions::new(Algorithm::Wrr), specs, Arc::new(StatsStore::default()));
    /// let snap = pool.snapshot();
    /// let mut tried = Tried::default();
    /// tried.insert(&snap.servers()[0].stats);
    /// assert!(snap.has_untried(&tried));
    /// // The rotation did not move: the next pick is still the first server.
    /// assert_eq!(snap.pick(None, &Tried::default()).unwrap().spec.addr.port(), 8081);
    /// tried.insert(&snap.servers()[1].stats);
    /// assert!(!snap.has_untried(&tried));
    /// ```
    pub fn has_untried(&self, tried: &Tried) -> bool {
        let retry = !tried.is_empty();
        let fallbacks = self
            .fallbacks
            .iter()
            // A retry reaches every tier; a first attempt only the standby tier, and only
            // when full servers (not absent ones) left the serving tier empty-handed.
            .filter(|t| retry || (self.limited && !t.panic))
            .map(|t| t.candidates.as_slice());
        std::iter::once(self.candidates.as_slice())
            .chain(fallbacks)
            .flatten()
            .any(|&i| {
                let s = &self.servers[i];
                !tried.contains(&s.stats) && s.has_room()
            })
    }
    /// True if the snapshot is in panic mode (no server available; using every enabled one).
    pub fn is_panic(&self) -> bool {
        self.panic
    }
    /// The pool's clock reading now.
    pub fn now_nanos(&self) -> u64 {
        self.clock.now_nanos()
    }
}

/// An upstream at run time. Publishes a new [`Snapshot`] whenever its servers or their health
/// change; picks read the current one without locking.
#[derive(Debug)]
pub struct Pool {
    name: String,
    opts: PoolOptions,
    store: Arc<StatsStore>,
    specs: Mutex<Vec<ServerSpec>>,
    snapshot: ArcSwap<Snapshot>,
}

impl Pool {
    /// Builds a pool and its first snapshot.
    pub fn new(
        name: &str,
        opts: PoolOptions,
        specs: Vec<ServerSpec>,
        store: Arc<StatsStore>,
    ) -> Pool {
        let snap = Snapshot::build(&specs, &store, &opts);
        Pool {
            name: name.to_string(),
            opts,
            store,
            specs: Mutex::new(specs),
            snapshot: ArcSwap::from_pointee(snap),
        }
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The selection options.
    pub fn options(&self) -> &PoolOptions {
        &self.opts
    }
    /// Hashes a request key for [`Snapshot::pick`] the way this pool's ring reads it (see
    /// [`HashRing::hash`]): [`crate::hash_key`] unless the pool uses [`HashRing::Ketama`].
    #[inline]
    pub fn hash_key(&self, key: &[u8]) -> u64 {
        self.opts.hash_ring.hash(key)
    }
    /// The stats store (kept across reloads).
    pub fn store(&self) -> &Arc<StatsStore> {
        &self.store
    }
    /// The pool's clock reading now (for [`crate::InFlight`] start and finish times), without
    /// loading a snapshot.
    pub fn now_nanos(&self) -> u64 {
        self.opts.clock.now_nanos()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }
    /// The current server specs.
    pub fn specs(&self) -> Vec<ServerSpec> {
        self.specs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the server list (reload, admin change). Stats are kept for every identity that
    /// stays.
    pub fn update(&self, specs: Vec<ServerSpec>) {
        let mut guard = self.specs.lock().unwrap_or_else(|p| p.into_inner());
        self.note_removed(&guard, &specs);
        *guard = specs;
        self.publish(&guard);
    }

    /// Replaces the server list with `next(current)`, computed under the same lock as
    /// [`Pool::modify`], so that a concurrent single-server change (an admin API call) is either
    /// seen by `next` or applied after it, never overwritten. Returns the old and the new list
    /// when they differ (the snapshot is rebuilt only then).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore};
    /// let pool = Pool::new("api", PoolOptions::new(Algorithm::Wrr),
    ///     vec![ServerSpec::new("g", "10.0.0.1:80".parse().unwrap(), 1)],
    ///     Arc::new(StatsStore::default()));
    /// let changed = pool.update_from(|current| {
    ///     let mut next = current.to_vec();
    ///     next.push(ServerSpec::new("g", "10.0.0.2:80".parse().unwrap(), 1));
    ///     next
    /// });
    /// assert!(changed.is_some());
    /// assert_eq!(pool.specs().len(), 2);
    /// assert!(pool.update_from(|current| current.to_vec()).is_none());
    /// ```
    pub fn update_from(
        &self,
        next: impl FnOnce(&[ServerSpec]) -> Vec<ServerSpec>,
    ) -> Option<(Vec<ServerSpec>, Vec<ServerSpec>)> {
        let mut guard = self.specs.lock().unwrap_or_else(|p| p.into_inner());
        let new = next(&guard);
        if new == *guard {
            return None;
        }
        self.note_removed(&guard, &new);
        let old = std::mem::replace(&mut *guard, new);
        self.publish(&guard);
        Some((old, guard.clone()))
    }

    /// Builds and publishes a snapshot of `specs`, then pokes the queue: a server that entered
    /// service or a raised limit is capacity no freed slot announces (see [`crate::queue`]).
    fn publish(&self, specs: &[ServerSpec]) {
        self.snapshot
            .store(Arc::new(Snapshot::build(specs, &self.store, &self.opts)));
        self.store.queue().poke();
    }

    /// Marks the servers of `old` that are not in `new` out of service (slow start: one that
    /// comes back while its stats are kept enters service again).
    fn note_removed(&self, old: &[ServerSpec], new: &[ServerSpec]) {
        let kept: std::collections::HashSet<&ServerId> = new.iter().map(|s| &s.id).collect();
        for spec in old.iter().filter(|s| !kept.contains(&s.id)) {
            if let Some(stats) = self.store.get(&spec.id) {
                stats.service().leave();
            }
        }
    }

    /// Changes one server's spec in place; returns false if no server has that identity.
    pub fn modify(&self, id: &str, change: impl FnOnce(&mut ServerSpec)) -> bool {
        let mut guard = self.specs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(spec) = guard.iter_mut().find(|s| s.id.as_str() == id) else {
            return false;
        };
        change(spec);
        self.publish(&guard);
        true
    }

    /// Rebuilds the snapshot after a health change.
    pub fn refresh(&self) {
        let guard = self.specs.lock().unwrap_or_else(|p| p.into_inner());
        self.publish(&guard);
    }
}
