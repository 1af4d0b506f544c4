//! The compiled configuration the request path reads: listeners with their routers, routes,
//! upstreams with their pools. One [`Runtime`] is published at a time through `ArcSwap`; each
//! request holds the one it started with until it ends, so a reload never changes a request
//! midway.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use switchyard_balance::{
    Algorithm as BalanceAlgorithm, AllDownPolicy, HashRing as BalanceHashRing, Pool, PoolOptions,
    Server, ServerId, ServerSpec, Snapshot, StatsStore,
};
use switchyard_config::{
    Algorithm, Cidr, Config, HashOn, HashRing, ListenerConfig, ListenerProtocol, RouteConfig,
    Scheme, UpstreamConfig, WhenAllDown,
};
use switchyard_metrics::prometheus::IntCounter;
use switchyard_metrics::{Metrics, RouteMetrics, ServerMetrics};

use switchyard_health::{initially_healthy, UpstreamHealth};

use crate::dns::{self, DnsControl, Resolved};
use crate::health_observer::MetricsObserver;
use crate::rewrite::Template;
use crate::router::{RouteSpec, Router};
use crate::sticky::Sticky;
use crate::upstream_tls::UpstreamTlsRuntime;

/// A listener's request-path view.
#[derive(Debug)]
pub struct ListenerRuntime {
    /// As configured.
    pub cfg: ListenerConfig,
    /// Routes served on this listener.
    pub router: Router,
}

impl ListenerRuntime {
    /// True if the client may use this listener (deny wins over allow; empty allow = all).
    pub fn admits(&self, ip: IpAddr) -> bool {
        admits(&self.cfg.allow, &self.cfg.deny, ip)
    }
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub fn scheme(&self) -> &'static str {
        match self.cfg.protocol {
            ListenerProtocol::Https => "https",
            _ => "http",
        }
    }
}

/// Security-group check shared by HTTP and TCP listeners.
pub fn admits(allow: &[Cidr], deny: &[Cidr], ip: IpAddr) -> bool {
    if deny.iter().any(|c| c.contains(ip)) {
        return false;
    }
    allow.is_empty() || allow.iter().any(|c| c.contains(ip))
}

/// A route's request-path view.
#[derive(Debug)]
pub struct RouteRuntime {
    /// As configured.
    pub cfg: RouteConfig,
    /// Index of its upstream in [`Runtime::upstreams`].
    pub upstream: usize,
    /// Pre-resolved metric handles.
    pub metrics: RouteMetrics,
    /// Compiled `backend_path`.
    pub rewrite: Option<Template>,
    /// `host_header` as a ready header value.
    pub host_header: Option<http::HeaderValue>,
}

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

/// The position of `server` in `servers`, of which it must be an element, found from its address
/// instead of by a scan (checked: `None` if it is not an element).
fn position_in(servers: &[Server], server: &Server) -> Option<usize> {
    let size = std::mem::size_of::<Server>().max(1);
    let offset = (server as *const Server as usize).checked_sub(servers.as_ptr() as usize)?;
    let i = offset / size;
    servers
        .get(i)
        .is_some_and(|s| std::ptr::eq(s, server))
        .then_some(i)
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
}

impl UpstreamRuntime {
    /// Counts a request answered 503 because no server was available.
    pub fn count_no_server(&self) {
        self.no_server
            .get_or_init(|| {
                Metrics::global()
                    .no_server_total
                    .with_label_values(&[&self.cfg.name])
            })
            .inc();
    }

    /// The metric handles of one server.
    pub fn server_metrics(&self, id: &ServerId) -> Option<Arc<ServerMetrics>> {
        self.server_metrics.load().get(id).cloned()
    }

    /// The metric handles of `server`, a server of `snap` (a snapshot of this upstream's pool),
    /// found by its position rather than by hashing its identity.
    pub fn metrics_of(&self, snap: &Snapshot, server: &Server) -> Option<Arc<ServerMetrics>> {
        let table = self.server_metrics.load();
        match position_in(snap.servers(), server) {
            Some(i) => table.at(i, &server.spec.id),
            None => table.get(&server.spec.id),
        }
        .cloned()
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
        let metrics = Metrics::global();
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
}

/// Everything the request path needs, built from one [`Config`].
#[derive(Debug)]
pub struct Runtime {
    /// The configuration this runtime was built from.
    pub config: Arc<Config>,
    /// Listeners in configuration order.
    pub listeners: Vec<ListenerRuntime>,
    /// Routes in configuration order.
    pub routes: Vec<RouteRuntime>,
    /// Upstreams in configuration order.
    pub upstreams: Vec<Arc<UpstreamRuntime>>,
    /// Verification of `Switchyard-Cascade` headers, when a route requires it.
    pub cascade: Option<CascadeVerifier>,
    /// This runtime's DNS re-resolution tasks (see [`crate::dns`]).
    pub dns: Arc<DnsControl>,
}

/// What a cascaded instance checks signed requests against.
pub struct CascadeVerifier {
    /// The shared secret.
    pub key: Vec<u8>,
    /// `[cascade].allowed_instances`.
    pub allowed: Vec<String>,
}

impl std::fmt::Debug for CascadeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CascadeVerifier")
            .field("key", &"<redacted>")
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// The cascade secret from the environment variable named by `[cascade].key_env`. Missing or
/// empty is a start-up (or reload) error: signing or verifying with no key would fail open.
fn cascade_key(cfg: &Config) -> Result<Vec<u8>, BuildError> {
    let var = cfg
        .cascade
        .as_ref()
        .map_or("SWITCHYARD_CASCADE_KEY", |c| c.key_env.as_str());
    match std::env::var(var) {
        Ok(k) if !k.is_empty() => Ok(k.into_bytes()),
        _ => Err(BuildError(format!(
            "cascading is configured but the key variable {var} is not set"
        ))),
    }
}

/// Error while building a runtime (e.g. a server name that does not resolve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

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
fn resolve_names(cfg: &Config, previous: Option<&Runtime>) -> Result<Vec<Resolved>, BuildError> {
    let metrics = Metrics::global();
    let names: BTreeSet<String> = cfg
        .upstreams
        .iter()
        .flat_map(dns::named_servers)
        .map(|n| n.name)
        .collect();
    let answers = dns::resolve_blocking(&cfg.server.resolver_addrs(), &names)
        .map_err(|e| BuildError(format!("server names: {e}")))?;
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
                .unwrap_or_else(|| Err("no answer".to_string()));
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
                    return Err(BuildError(format!(
                        "upstream {}: cannot resolve server {}: {e}",
                        up.name, n.name
                    )))
                }
            }
        }
        out.push(resolved);
    }
    Ok(out)
}

impl Runtime {
    /// Builds a runtime from a validated configuration.
    ///
    /// `previous` is the runtime being replaced (on reload): upstreams of the same name keep
    /// their stats store, so servers whose identity is unchanged keep health, in-flight counts and
    /// latency estimates.
    pub fn build(cfg: Arc<Config>, previous: Option<&Runtime>) -> Result<Runtime, BuildError> {
        let metrics = Metrics::global();
        let mut upstreams = Vec::with_capacity(cfg.upstreams.len());
        let resolved = resolve_names(&cfg, previous)?;
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
                    let opts = PoolOptions::new(balance_algorithm(up.algorithm))
                        .hash_ring(balance_hash_ring(up.effective_hash_ring()))
                        .when_all_down(match up.when_all_down {
                            WhenAllDown::Reject => AllDownPolicy::Reject,
                            WhenAllDown::All => AllDownPolicy::All,
                        })
                        .initially_healthy(initially_healthy(up));
                    let pool = Arc::new(Pool::new(&up.name, opts, specs, store));
                    let health = UpstreamHealth::with_listeners(
                        Arc::clone(&pool),
                        up,
                        &cfg.listeners,
                        Arc::new(MetricsObserver(metrics)),
                    )
                    .map_err(|e| BuildError(format!("upstream {}: health: {e}", up.name)))?;
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
                Some(cascade_key(&cfg)?)
            } else {
                None
            };
            let tls = match up.scheme {
                Scheme::Https => Some(
                    UpstreamTlsRuntime::load(up.tls.as_ref())
                        .map_err(|e| BuildError(format!("upstream {}: {e}", up.name)))?,
                ),
                Scheme::Http => None,
            };
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
                hash_on: hash_on(up),
            }));
        }
        let upstream_index = |name: &str| {
            cfg.upstreams
                .iter()
                .position(|u| u.name == name)
                .ok_or_else(|| BuildError(format!("unknown upstream {name}")))
        };
        let mut routes = Vec::with_capacity(cfg.routes.len());
        for r in &cfg.routes {
            let rewrite = r
                .backend_path
                .as_deref()
                .map(|t| Template::compile(t, &cfg.variables))
                .transpose()
                .map_err(|e| BuildError(format!("route {}: backend_path: {e}", r.name)))?;
            let host_header = r
                .host_header
                .as_deref()
                .map(http::HeaderValue::from_str)
                .transpose()
                .map_err(|e| BuildError(format!("route {}: host_header: {e}", r.name)))?;
            routes.push(RouteRuntime {
                cfg: r.clone(),
                upstream: upstream_index(&r.upstream)?,
                metrics: metrics.route(&r.name, &r.upstream),
                rewrite,
                host_header,
            });
        }
        let listeners = cfg
            .listeners
            .iter()
            .map(|l| {
                let specs = cfg
                    .routes
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        if r.listeners.is_empty() {
                            l.protocol != ListenerProtocol::Tcp
                        } else {
                            r.listeners.iter().any(|n| n == &l.name)
                        }
                    })
                    .map(|(i, r)| RouteSpec {
                        hosts: r.hosts.clone(),
                        path: r.path.clone(),
                        path_prefix: r.path_prefix.clone(),
                        methods: r.methods.clone(),
                        payload: i,
                    })
                    .collect();
                ListenerRuntime {
                    cfg: l.clone(),
                    router: Router::new(specs),
                }
            })
            .collect();
        let cascade = if cfg.routes.iter().any(|r| r.require_cascade) {
            Some(CascadeVerifier {
                key: cascade_key(&cfg)?,
                allowed: cfg
                    .cascade
                    .as_ref()
                    .map(|c| c.allowed_instances.clone())
                    .unwrap_or_default(),
            })
        } else {
            None
        };
        Ok(Runtime {
            config: cfg,
            listeners,
            routes,
            upstreams,
            cascade,
            dns: Arc::new(DnsControl::default()),
        })
    }

    /// The upstream named `name`.
    pub fn upstream(&self, name: &str) -> Option<&Arc<UpstreamRuntime>> {
        self.upstreams.iter().find(|u| u.cfg.name == name)
    }

    /// The listener named `name`.
    pub fn listener_index(&self, name: &str) -> Option<usize> {
        self.listeners.iter().position(|l| l.cfg.name == name)
    }
}

/// A shared stats store handle, for embedders building pools themselves.
pub type SharedStore = Arc<StatsStore>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_in_finds_elements_only() {
        let specs: Vec<ServerSpec> = (1..=3)
            .map(|i| ServerSpec::new("g", format!("127.0.0.1:{i}").parse().unwrap(), 1))
            .collect();
        let pool = Pool::new(
            "u",
            PoolOptions::new(BalanceAlgorithm::Wrr),
            specs,
            Arc::default(),
        );
        let snap = pool.snapshot();
        for (i, s) in snap.servers().iter().enumerate() {
            assert_eq!(position_in(snap.servers(), s), Some(i));
        }
        let copy = snap.servers()[1].clone();
        assert_eq!(position_in(snap.servers(), &copy), None);
        assert_eq!(position_in(&snap.servers()[2..], &snap.servers()[1]), None);
    }

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
