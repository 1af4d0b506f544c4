//! Upstreams at run time: pool, health, TLS, sticky tokens, metric handles; kept or rebuilt on
//! reload so that servers keep their state.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use switchyard_balance::{
    Algorithm as BalanceAlgorithm, AllDownPolicy, HashRing as BalanceHashRing, Pool, PoolOptions,
    ServerId, ServerSpec,
};
use switchyard_config::{
    Algorithm, Config, HashOn, HashRing, Scheme, UpstreamConfig, UpstreamProtocol, WhenAllDown,
};
use switchyard_health::UpstreamHealth;
use switchyard_metrics::prometheus::IntCounter;
use switchyard_metrics::{Metrics, QueueMetrics, Resilience, ServerMetrics};

use super::{cascade_key, BuildError, Runtime};
use crate::dns::{self, Resolved};
use crate::health_observer::MetricsObserver;
use crate::log_throttle::RefusalLog;
use crate::retry_budget::RetryBudget;
use crate::sticky::Sticky;
use crate::upstream_tls::UpstreamTlsRuntime;

/// An upstream's request-path view.
pub struct UpstreamRuntime {
    /// As configured.
    pub cfg: UpstreamConfig,
    /// Servers, stats and selector.
    pub pool: Arc<Pool>,
    /// Active and passive health of the pool's servers.
    pub health: Arc<UpstreamHealth>,
    /// True if this runtime created `health` (it must be started); false if it was taken over
    /// from the previous runtime on reload.
    pub health_is_new: bool,
    /// Per-server metric handles (replaced when DNS answers change the servers).
    pub server_metrics: ArcSwap<ServerMetricsTable>,
    /// Sticky-session tokens, when `[upstreams.sticky]` is set.
    pub sticky: Option<Sticky>,
    /// The cascade key, when `cascade = true` (requests to this upstream are signed).
    pub cascade_key: Option<Vec<u8>>,
    /// TLS settings, when `scheme = "https"`.
    pub tls: Option<UpstreamTlsRuntime>,
    /// `switchyard_no_server_total{upstream}`, resolved on first use.
    no_server: OnceLock<IntCounter>,
    /// The queue's metric handles (refusals by reason, length, wait).
    pub queue_metrics: QueueMetrics,
    /// Retries in flight, against `retry_budget_percent` / `retry_budget_min`.
    pub retry_budget: RetryBudget,
    /// `switchyard_retry_budget_exhausted_total{upstream}`.
    pub budget_exhausted: IntCounter,
    /// Throttles of the refusal log lines (see [`crate::log_throttle`]).
    pub refusal_log: RefusalLog,
    /// The metric families the upstream reports to.
    metrics: &'static Metrics,
    /// What request keys are hashed on (see [`UpstreamRuntime::hash_on`]).
    hash_on: Option<HashOn>,
}

impl std::fmt::Debug for UpstreamRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamRuntime")
            .field("name", &self.cfg.name)
            .field("pool", &self.pool)
            .finish()
    }
}

impl dns::Reresolve for UpstreamRuntime {
    fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }
    fn replace_servers(
        &self,
        next: &mut dyn FnMut(&[ServerSpec]) -> Vec<ServerSpec>,
    ) -> Option<(Vec<ServerSpec>, Vec<ServerSpec>)> {
        UpstreamRuntime::replace_servers(self, next)
    }
}

/// The metric handles of an upstream's servers: in the order the servers were given to the pool
/// (the order of its snapshots' servers, so the request path finds a picked server's handles by
/// position), and by identity.
#[derive(Debug, Default)]
pub struct ServerMetricsTable {
    in_order: Vec<(ServerId, Arc<ServerMetrics>)>,
    by_id: HashMap<ServerId, Arc<ServerMetrics>>,
}

impl ServerMetricsTable {
    /// A table over `in_order` (the servers in pool order with their handles).
    pub fn new(in_order: Vec<(ServerId, Arc<ServerMetrics>)>) -> Self {
        let by_id = in_order.iter().cloned().collect();
        ServerMetricsTable { in_order, by_id }
    }
    /// The handles of server `id`.
    pub fn get(&self, id: &ServerId) -> Option<&Arc<ServerMetrics>> {
        self.by_id.get(id)
    }
    /// The handles of server `id`, expected at position `index`; looked up by identity if the
    /// servers changed order since the table was built.
    pub fn at(&self, index: usize, id: &ServerId) -> Option<&Arc<ServerMetrics>> {
        match self.in_order.get(index) {
            Some((i, m)) if i == id => Some(m),
            _ => self.get(id),
        }
    }
    /// Every identity in the table.
    pub fn ids(&self) -> impl Iterator<Item = &ServerId> {
        self.in_order.iter().map(|(id, _)| id)
    }
}

/// What `up`'s request keys are hashed on, if its algorithm hashes.
fn hash_on(up: &UpstreamConfig) -> Option<HashOn> {
    match up.algorithm {
        Algorithm::ConsistentHash => Some(up.hash_on.clone().unwrap_or(HashOn::SourceIp)),
        Algorithm::SourceIpHash => Some(HashOn::SourceIp),
        Algorithm::UriHash => Some(HashOn::Uri),
        _ => None,
    }
}

/// True if a reload can keep the upstream's pool and health checkers and only change its
/// servers: same algorithm and ring, all-down policy, health settings, TLS settings, port and
/// PROXY header.
fn same_shape(a: &UpstreamConfig, b: &UpstreamConfig) -> bool {
    a.algorithm == b.algorithm
        && a.effective_hash_ring() == b.effective_hash_ring()
        && a.when_all_down == b.when_all_down
        && a.health == b.health
        && a.tls == b.tls
        && a.scheme == b.scheme
        && a.port == b.port
        && a.proxy_protocol == b.proxy_protocol
        && a.slow_start_ms == b.slow_start_ms
}

impl UpstreamRuntime {
    /// Counts a request answered 503 because no server was available.
    pub fn count_no_server(&self) {
        self.no_server
            .get_or_init(|| {
                self.metrics
                    .no_server_total
                    .with_label_values(&[&self.cfg.name])
            })
            .inc();
    }

    /// The metric handles of one server.
    pub fn server_metrics(&self, id: &ServerId) -> Option<Arc<ServerMetrics>> {
        self.server_metrics.load().get(id).cloned()
    }

    /// The metric handles of server `id`, at position `index` of a snapshot of this upstream's
    /// pool (as [`switchyard_balance::Snapshot::pick_at`] gives it): found by position rather than by hashing the
    /// identity.
    pub fn metrics_at(&self, index: usize, id: &ServerId) -> Option<Arc<ServerMetrics>> {
        self.server_metrics.load().at(index, id).cloned()
    }

    /// Replaces the servers at run time (a changed DNS answer) with `next(current)`, computed
    /// under the pool's lock so that an admin change to one server meanwhile is not overwritten
    /// (see [`Pool::update_from`]): the pool (stats kept for every identity that stays, dropped
    /// for the others), health checkers, metric handles and sticky tokens follow. Returns the old
    /// and the new servers when they differ.
    pub fn replace_servers(
        &self,
        next: impl FnOnce(&[ServerSpec]) -> Vec<ServerSpec>,
    ) -> Option<(Vec<ServerSpec>, Vec<ServerSpec>)> {
        let changed = self.pool.update_from(next)?;
        self.servers_replaced(&changed.1);
        Some(changed)
    }

    /// Brings the pool's stats, health checkers, metric handles and sticky tokens in line with
    /// `specs`, the pool's new servers.
    fn servers_replaced(&self, specs: &[ServerSpec]) {
        let metrics = self.metrics;
        let ids: Vec<ServerId> = specs.iter().map(|s| s.id.clone()).collect();
        self.pool.store().retain(&ids);
        self.health.sync_servers();
        let old = self.server_metrics.load_full();
        let next = ServerMetricsTable::new(
            ids.iter()
                .map(|id| {
                    let m = old
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(metrics.server(&self.cfg.name, id.as_str())));
                    (id.clone(), m)
                })
                .collect(),
        );
        for id in old.ids().filter(|id| next.get(id).is_none()) {
            // Gauges of a server that is gone would report it forever; counters stay.
            let _ = metrics
                .backend_healthy
                .remove_label_values(&[&self.cfg.name, id.as_str()]);
            let _ = metrics
                .backend_in_flight
                .remove_label_values(&[&self.cfg.name, id.as_str()]);
            let _ = metrics
                .backend_ewma_seconds
                .remove_label_values(&[&self.cfg.name, id.as_str()]);
        }
        self.server_metrics.store(Arc::new(next));
        for server in self.pool.snapshot().servers() {
            metrics
                .backend_healthy
                .with_label_values(&[&self.cfg.name, server.spec.id.as_str()])
                .set(i64::from(server.stats.is_healthy()));
        }
        if let Some(sticky) = &self.sticky {
            sticky.set_servers(ids);
        }
    }

    /// What the request key is hashed on, if the algorithm hashes.
    pub fn hash_on(&self) -> Option<&HashOn> {
        self.hash_on.as_ref()
    }

    /// The ALPN offered to the servers (`protocol`): `http2` is h2 only (h2c with prior
    /// knowledge on plain `http`), `auto` on `https` is h2 then HTTP/1.1, anything else
    /// HTTP/1.1.
    #[inline]
    pub fn alpn(&self) -> pingora::protocols::ALPN {
        use pingora::protocols::ALPN;
        match (self.cfg.protocol, self.cfg.scheme) {
            (UpstreamProtocol::Http2, _) => ALPN::H2,
            (UpstreamProtocol::Auto, Scheme::Https) => ALPN::H2H1,
            _ => ALPN::H1,
        }
    }

    /// The most streams one HTTP/2 connection to a server carries (`max_concurrent_streams`;
    /// the server's `SETTINGS_MAX_CONCURRENT_STREAMS` lowers it).
    #[inline]
    pub fn max_h2_streams(&self) -> usize {
        usize::try_from(self.cfg.max_concurrent_streams).unwrap_or(usize::MAX)
    }
}

/// Converts the configured algorithm to the balance crate's.
pub fn balance_algorithm(a: Algorithm) -> BalanceAlgorithm {
    match a {
        Algorithm::Wrr => BalanceAlgorithm::Wrr,
        Algorithm::LeastConn => BalanceAlgorithm::LeastConn,
        Algorithm::Ewma => BalanceAlgorithm::Ewma,
        Algorithm::ConsistentHash | Algorithm::SourceIpHash | Algorithm::UriHash => {
            BalanceAlgorithm::ConsistentHash
        }
        Algorithm::Random => BalanceAlgorithm::Random,
    }
}

/// Converts the configured ring to the balance crate's.
pub fn balance_hash_ring(r: HashRing) -> BalanceHashRing {
    match r {
        HashRing::Maglev => BalanceHashRing::Maglev,
        HashRing::Ketama => BalanceHashRing::Ketama,
    }
}

/// The server specs of an upstream from the file: one per IP server, one per address in
/// `resolved` of a DNS-named server (identity `group/name:port#ip`). See [`dns::build_specs`].
pub fn server_specs(up: &UpstreamConfig, resolved: &Resolved) -> Vec<ServerSpec> {
    dns::build_specs(up, resolved, &[])
}

/// Resolves the named servers of every upstream of `cfg` (see [`crate::dns`]): a name that does
/// not resolve keeps the addresses `previous` had for it, and is an error naming it if it had none.
fn resolve_names(
    cfg: &Config,
    previous: Option<&Runtime>,
    metrics: &'static Metrics,
) -> Result<Vec<Resolved>, BuildError> {
    let names: BTreeSet<String> = cfg
        .upstreams
        .iter()
        .flat_map(dns::named_servers)
        .map(|n| n.name)
        .collect();
    let answers =
        dns::resolve_blocking(&cfg.server.resolver_addrs(), &names).map_err(BuildError::Dns)?;
    let mut out = Vec::with_capacity(cfg.upstreams.len());
    for up in &cfg.upstreams {
        let current = previous
            .and_then(|p| p.upstream(&up.name))
            .map(|u| u.pool.specs())
            .unwrap_or_default();
        let mut resolved = dns::last_good(up, &current);
        for n in dns::named_servers(up) {
            let answer = answers
                .get(&n.name)
                .cloned()
                .unwrap_or_else(|| Err(dns::DnsError::Runtime("the lookup did not finish".into())));
            dns::count(metrics, &up.name, answer.is_ok());
            match answer {
                Ok(ips) => {
                    resolved.insert(n, ips);
                }
                Err(e) if resolved.contains_key(&n) => log::warn!(
                    "upstream {}: cannot resolve {}: {e}; keeping its last good addresses",
                    up.name,
                    n.name
                ),
                Err(e) => {
                    return Err(BuildError::Resolve {
                        name: n.name,
                        source: e,
                    }
                    .within(format!("upstream {}", up.name)))
                }
            }
        }
        out.push(resolved);
    }
    Ok(out)
}

/// The upstreams of `cfg`; those of `previous` (on reload) keep their state by name.
pub(super) fn build(
    cfg: &Config,
    previous: Option<&Runtime>,
    metrics: &'static Metrics,
) -> Result<Vec<Arc<UpstreamRuntime>>, BuildError> {
    let mut upstreams = Vec::with_capacity(cfg.upstreams.len());
    let resolved = resolve_names(cfg, previous, metrics)?;
    for (up, resolved) in cfg.upstreams.iter().zip(&resolved) {
        let specs = server_specs(up, resolved);
        let prev = previous.and_then(|p| p.upstream(&up.name));
        let server_metrics = ServerMetricsTable::new(
            specs
                .iter()
                .map(|s| {
                    let m = metrics.server(&up.name, s.id.as_str());
                    (s.id.clone(), Arc::new(m))
                })
                .collect(),
        );
        // Loaded once, for traffic and HTTPS checks alike.
        let tls = if crate::health_spec::needs_tls(up) {
            Some(
                UpstreamTlsRuntime::load(up.tls.as_ref())
                    .map_err(|e| e.within(format!("upstream {}", up.name)))?,
            )
        } else {
            None
        };
        let (pool, health, health_is_new) = match prev {
            Some(prev) if same_shape(&prev.cfg, up) => {
                // Same shape: keep pool (selector counters) and checkers, change servers.
                let ids: Vec<ServerId> = specs.iter().map(|s| s.id.clone()).collect();
                prev.pool.update(specs);
                prev.pool.store().retain(&ids);
                prev.health.sync_servers();
                (Arc::clone(&prev.pool), Arc::clone(&prev.health), false)
            }
            _ => {
                // New upstream or new shape: new pool and checkers, but the stats store
                // (health verdicts, in-flight, EWMA by identity) carries over.
                let store = prev.map(|u| Arc::clone(u.pool.store())).unwrap_or_default();
                let ids: Vec<ServerId> = specs.iter().map(|s| s.id.clone()).collect();
                store.retain(&ids);
                let checks = crate::health_spec::health_spec(up, &cfg.listeners, tls.as_ref());
                let opts = PoolOptions::new(balance_algorithm(up.algorithm))
                    .hash_ring(balance_hash_ring(up.effective_hash_ring()))
                    .when_all_down(match up.when_all_down {
                        WhenAllDown::Reject => AllDownPolicy::Reject,
                        WhenAllDown::All => AllDownPolicy::All,
                    })
                    .initially_healthy(checks.initially_healthy())
                    .slow_start_ms(up.slow_start_ms);
                let pool = Arc::new(Pool::new(&up.name, opts, specs, store));
                let health = UpstreamHealth::with_observer(
                    Arc::clone(&pool),
                    &checks,
                    Arc::new(MetricsObserver(metrics)),
                )
                .map_err(|e| {
                    BuildError::Invalid {
                        key: "health".into(),
                        reason: e.to_string(),
                    }
                    .within(format!("upstream {}", up.name))
                })?;
                (pool, Arc::new(health), true)
            }
        };
        for server in pool.snapshot().servers() {
            metrics
                .backend_healthy
                .with_label_values(&[&up.name, server.spec.id.as_str()])
                .set(i64::from(server.stats.is_healthy()));
        }
        let sticky = up.sticky.clone().map(|sc| {
            let ids = pool.specs().into_iter().map(|s| s.id);
            Sticky::new(&up.name, sc, ids)
        });
        let cascade_key = if up.cascade {
            Some(cascade_key(cfg)?)
        } else {
            None
        };
        // Traffic uses TLS only with `scheme = "https"`.
        let tls = tls.filter(|_| up.scheme == Scheme::Https);
        upstreams.push(Arc::new(UpstreamRuntime {
            tls,
            cfg: up.clone(),
            pool,
            health,
            health_is_new,
            server_metrics: ArcSwap::from_pointee(server_metrics),
            sticky,
            cascade_key,
            no_server: OnceLock::new(),
            queue_metrics: Resilience::global().queue(&up.name),
            retry_budget: RetryBudget::default(),
            budget_exhausted: Resilience::global()
                .retry_budget_exhausted_total
                .with_label_values(&[&up.name]),
            refusal_log: RefusalLog::default(),
            metrics,
            hash_on: hash_on(up),
        }));
    }
    Ok(upstreams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_table_falls_back_to_identity() {
        let m = Metrics::global();
        let a = ServerId::new("t", "a:1");
        let b = ServerId::new("t", "b:1");
        let table = ServerMetricsTable::new(vec![
            (a.clone(), Arc::new(m.server("t", a.as_str()))),
            (b.clone(), Arc::new(m.server("t", b.as_str()))),
        ]);
        let by_id = |id: &ServerId| table.get(id).map(Arc::as_ptr);
        assert_eq!(table.at(1, &b).map(Arc::as_ptr), by_id(&b));
        // Order changed since the table was built: found by identity.
        assert_eq!(table.at(0, &b).map(Arc::as_ptr), by_id(&b));
        assert_eq!(table.at(7, &a).map(Arc::as_ptr), by_id(&a));
        assert!(table.at(0, &ServerId::new("t", "c:1")).is_none());
    }
}
