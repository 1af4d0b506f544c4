//! DNS-named servers.
//!
//! A server whose `address` is a domain name becomes one server per resolved address, with the
//! identity `group/name:port#ip` (so an address that stays in the answer keeps its health,
//! in-flight count and latency estimate). Names are resolved with hickory through
//! `[server].resolvers` (like NGINX's `resolver`), or through the system's `/etc/resolv.conf` (and
//! hosts file) when that list is empty:
//!
//! - when a runtime is built, before any listener opens: at start-up a name that does not resolve
//!   is an error naming it; on reload a name that does not resolve keeps the addresses the running
//!   configuration had for it (and is an error only if it had none);
//! - then every `resolve_interval_ms` by one task per upstream with named servers, on the
//!   background runtime. A changed answer updates the pool (`Pool::update`) and the health
//!   checkers (`UpstreamHealth::sync_servers`): new addresses are new servers (with active checks
//!   they wait for their first passing check), vanished ones are removed. A failed or empty answer
//!   keeps that name's last good addresses. Every lookup is counted in
//!   `switchyard_dns_resolutions_total{upstream,result}` (`success` / `failure`); a name that starts
//!   or stops failing, and an answer that changes, is logged once.
//!
//! Answers are not cached between rounds: the interval, not the record TTL, sets how fresh the
//! set is (like NGINX's `resolver ... valid=`).
//!
//! The tasks stop when their runtime is replaced by a reload or when the server shuts down; a
//! reload holds [`DnsControl::pause`] while it builds, so an old task never applies a stale answer
//! over the new configuration.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use switchyard_balance::{ServerId, ServerSpec};
use switchyard_config::UpstreamConfig;
use switchyard_metrics::Metrics;

use crate::runtime::{Runtime, UpstreamRuntime};

/// How long one name server may take to answer one query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound on one whole lookup (every server, every attempt, A and AAAA).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// True if a server `address` is a domain name rather than an IP address.
pub fn is_name(address: &str) -> bool {
    address.parse::<IpAddr>().is_err()
}

/// One DNS-named server entry of an upstream: `group`, `name` as written, effective `port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedServer {
    /// The group it belongs to.
    pub group: String,
    /// The configured `address`.
    pub name: String,
    /// The effective port.
    pub port: u16,
}

impl NamedServer {
    /// The identity of the server at `ip`: `group/name:port#ip`.
    ///
    /// ```
    /// use switchyard_proxy::dns::NamedServer;
    /// let n = NamedServer { group: "blue".into(), name: "api.test".into(), port: 8080 };
    /// assert_eq!(n.id("127.0.0.3".parse().unwrap()).as_str(), "blue/api.test:8080#127.0.0.3");
    /// ```
    pub fn id(&self, ip: IpAddr) -> ServerId {
        ServerId::new(&self.group, &format!("{}:{}#{ip}", self.name, self.port))
    }

    /// True if `id` is one of this entry's resolved servers.
    pub fn owns(&self, id: &ServerId) -> bool {
        id.group() == self.group
            && id.as_str().contains('#')
            && id.host_port() == format!("{}:{}", self.name, self.port)
    }
}

/// Addresses by named server.
pub type Resolved = BTreeMap<NamedServer, Vec<IpAddr>>;

/// The named servers of an upstream, in configuration order.
pub fn named_servers(up: &UpstreamConfig) -> Vec<NamedServer> {
    let mut out = Vec::new();
    for group in &up.groups {
        for s in group.servers.iter().filter(|s| is_name(&s.address)) {
            let n = NamedServer {
                group: group.name.clone(),
                name: s.address.clone(),
                port: s.effective_port(up.port),
            };
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The addresses each named server of `up` has in `current` (the last good answers).
///
/// ```
/// # use switchyard_balance::ServerSpec;
/// use switchyard_proxy::dns::{last_good, named_servers};
/// let up: switchyard_config::UpstreamConfig = toml::from_str(
///     "name = \"api\"\nport = 80\n[[groups]]\nname = \"g\"\nservers = [{ address = \"a.test\" }]",
/// ).unwrap();
/// let n = &named_servers(&up)[0];
/// let ip = "10.0.0.1".parse().unwrap();
/// let spec = ServerSpec { id: n.id(ip), ..ServerSpec::new("g", "10.0.0.1:80".parse().unwrap(), 1) };
/// assert_eq!(last_good(&up, &[spec])[n], vec![ip]);
/// ```
pub fn last_good(up: &UpstreamConfig, current: &[ServerSpec]) -> Resolved {
    let mut out = Resolved::new();
    for n in named_servers(up) {
        let ips: Vec<IpAddr> = current
            .iter()
            .filter(|s| n.owns(&s.id))
            .map(|s| s.addr.ip())
            .collect();
        if !ips.is_empty() {
            out.insert(n, ips);
        }
    }
    out
}

/// The server specs of `up`: one per IP server, one per resolved address of a named server (in
/// the order of `resolved`; a named server without an entry has no servers).
///
/// A spec whose identity is in `keep` is taken from there unchanged, so run-time changes (admin
/// API weight, drain, disable) survive a re-resolution; pass `&[]` to build from the file alone.
pub fn build_specs(
    up: &UpstreamConfig,
    resolved: &Resolved,
    keep: &[ServerSpec],
) -> Vec<ServerSpec> {
    let kept: HashMap<&ServerId, &ServerSpec> = keep.iter().map(|s| (&s.id, s)).collect();
    let mut specs = Vec::new();
    let mut seen = BTreeSet::new();
    for group in &up.groups {
        for s in &group.servers {
            let port = s.effective_port(up.port);
            let weight = s.effective_weight(group.weight);
            let addrs: Vec<(ServerId, SocketAddr)> = match s.address.parse::<IpAddr>() {
                Ok(ip) => {
                    let addr = SocketAddr::new(ip, port);
                    vec![(ServerId::new(&group.name, &addr.to_string()), addr)]
                }
                Err(_) => {
                    let n = NamedServer {
                        group: group.name.clone(),
                        name: s.address.clone(),
                        port,
                    };
                    resolved
                        .get(&n)
                        .map(|ips| {
                            ips.iter()
                                .map(|ip| (n.id(*ip), SocketAddr::new(*ip, port)))
                                .collect()
                        })
                        .unwrap_or_default()
                }
            };
            for (id, addr) in addrs {
                if !seen.insert(id.clone()) {
                    continue;
                }
                let spec = match kept.get(&id) {
                    Some(k) if k.addr == addr => (*k).clone(),
                    _ => ServerSpec {
                        id,
                        addr,
                        weight,
                        standby: s.standby,
                        enabled: s.enabled,
                    },
                };
                specs.push(spec);
            }
        }
    }
    specs
}

/// Sorts and deduplicates an answer; an empty one is a failure.
fn normalise(mut ips: Vec<IpAddr>) -> Result<Vec<IpAddr>, String> {
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        Err("no A or AAAA records".to_string())
    } else {
        Ok(ips)
    }
}

/// A hickory resolver set up for server names.
#[derive(Clone)]
pub struct DnsResolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver").finish_non_exhaustive()
    }
}

impl DnsResolver {
    /// A resolver querying `resolvers` (UDP, TCP on truncation), or the system configuration
    /// (`/etc/resolv.conf` and the hosts file) when empty. No answer cache: each lookup asks.
    /// Call it inside a Tokio runtime; use it on that runtime.
    pub fn new(resolvers: &[SocketAddr]) -> Result<DnsResolver, String> {
        let (config, mut opts) = if resolvers.is_empty() {
            match hickory_resolver::system_conf::read_system_conf() {
                Ok((c, o)) => (c, o),
                Err(e) => {
                    log::warn!(
                        "cannot read the system resolver configuration ({e}); using 127.0.0.1:53"
                    );
                    (
                        ResolverConfig::from_name_servers(vec![NameServerConfig::udp_and_tcp(
                            IpAddr::from([127, 0, 0, 1]),
                        )]),
                        ResolverOpts::default(),
                    )
                }
            }
        } else {
            let servers = resolvers
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut opts = ResolverOpts::default();
            // Like NGINX's `resolver`: configured servers only, no hosts file.
            opts.use_hosts_file = ResolveHosts::Never;
            (ResolverConfig::from_parts(None, Vec::new(), servers), opts)
        };
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 2;
        let inner = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(DnsResolver { inner })
    }

    /// Every IPv4 and IPv6 address of `name`, sorted; no address is an error.
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.inner.lookup_ip(name)).await {
            Ok(Ok(answer)) => normalise(answer.iter().collect()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
        }
    }
}

/// Resolves `names` (concurrently) through `resolvers`, blocking the caller: on a thread of its
/// own with a temporary runtime, so it works both before any runtime exists (start-up) and from
/// inside one (a reload). The outer error is a resolver that cannot be built.
pub fn resolve_blocking(
    resolvers: &[SocketAddr],
    names: &BTreeSet<String>,
) -> Result<HashMap<String, Result<Vec<IpAddr>, String>>, String> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let resolvers = resolvers.to_vec();
    let names: Vec<String> = names.iter().cloned().collect();
    let worker = std::thread::Builder::new()
        .name("switchyard-dns".to_string())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the DNS runtime: {e}"))?;
            rt.block_on(async move {
                let resolver = DnsResolver::new(&resolvers)?;
                let mut set = tokio::task::JoinSet::new();
                for name in names {
                    let r = resolver.clone();
                    set.spawn(async move {
                        let res = r.lookup(&name).await;
                        (name, res)
                    });
                }
                let mut out = HashMap::new();
                while let Some(done) = set.join_next().await {
                    if let Ok((name, res)) = done {
                        out.insert(name, res);
                    }
                }
                Ok(out)
            })
        })
        .map_err(|e| format!("cannot start the DNS thread: {e}"))?;
    worker
        .join()
        .map_err(|_| "the DNS thread panicked".to_string())?
}

/// Counts one lookup in `switchyard_dns_resolutions_total`.
pub fn count(metrics: &Metrics, upstream: &str, ok: bool) {
    metrics
        .dns_resolutions_total
        .with_label_values(&[upstream, if ok { "success" } else { "failure" }])
        .inc();
}

/// Controls one runtime's re-resolution tasks.
#[derive(Debug)]
pub struct DnsControl {
    lock: Mutex<()>,
    stop: tokio::sync::watch::Sender<bool>,
    started: AtomicBool,
}

impl Default for DnsControl {
    fn default() -> Self {
        DnsControl {
            lock: Mutex::new(()),
            stop: tokio::sync::watch::Sender::new(false),
            started: AtomicBool::new(false),
        }
    }
}

impl DnsControl {
    /// Keeps the tasks from applying answers while the guard lives (a reload holds it while it
    /// builds the next runtime, then calls [`DnsControl::stop`]).
    pub fn pause(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the tasks (for good).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// True once [`DnsControl::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Starts one re-resolution task per upstream of `rt` that has named servers, on the current
/// Tokio runtime. Starting twice, or after [`DnsControl::stop`], does nothing.
pub fn start(rt: &Runtime) {
    if rt.dns.is_stopped() || rt.dns.started.swap(true, Ordering::AcqRel) {
        return;
    }
    let resolvers = rt.config.server.resolver_addrs();
    for up in &rt.upstreams {
        if named_servers(&up.cfg).is_empty() {
            continue;
        }
        tokio::spawn(run(Arc::clone(up), resolvers.clone(), Arc::clone(&rt.dns)));
    }
}

/// One upstream's re-resolution loop.
async fn run(up: Arc<UpstreamRuntime>, resolvers: Vec<SocketAddr>, ctl: Arc<DnsControl>) {
    let name = up.cfg.name.clone();
    let resolver = match DnsResolver::new(&resolvers) {
        Ok(r) => r,
        Err(e) => {
            log::error!("upstream {name}: {e}; server names will not be re-resolved");
            return;
        }
    };
    let metrics = Metrics::global();
    let interval = Duration::from_millis(up.cfg.resolve_interval_ms.max(1));
    let named = named_servers(&up.cfg);
    let mut failing: BTreeSet<NamedServer> = BTreeSet::new();
    let mut stop = ctl.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut answers = Vec::with_capacity(named.len());
        for n in &named {
            let res = tokio::select! {
                r = resolver.lookup(&n.name) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            count(metrics, &name, res.is_ok());
            match &res {
                Ok(_) => {
                    if failing.remove(n) {
                        log::info!("upstream {name}: {} resolves again", n.name);
                    }
                }
                Err(e) => {
                    if failing.insert(n.clone()) {
                        log::warn!(
                            "upstream {name}: cannot resolve {}: {e}; keeping its last good addresses",
                            n.name
                        );
                    }
                }
            }
            answers.push((n.clone(), res));
        }
        // A reload building the next runtime holds the lock: skip this round (we are about to
        // be stopped, or the next round applies).
        let Ok(_guard) = ctl.lock.try_lock() else {
            continue;
        };
        if ctl.is_stopped() {
            return;
        }
        // Read, rebuild and write the server list under the pool's lock: an admin change to a
        // server meanwhile waits and applies on top, rather than being overwritten.
        let changed = up.replace_servers(|current| {
            let mut resolved = last_good(&up.cfg, current);
            for (n, res) in answers {
                if let Ok(ips) = res {
                    resolved.insert(n, ips);
                }
            }
            build_specs(&up.cfg, &resolved, current)
        });
        if let Some((current, next)) = changed {
            log_change(&name, &current, &next);
        }
    }
}

fn log_change(upstream: &str, old: &[ServerSpec], new: &[ServerSpec]) {
    let ids = |v: &[ServerSpec]| v.iter().map(|s| s.id.clone()).collect::<BTreeSet<_>>();
    let (o, n) = (ids(old), ids(new));
    let added: Vec<&str> = n.difference(&o).map(|i| i.as_str()).collect();
    let removed: Vec<&str> = o.difference(&n).map(|i| i.as_str()).collect();
    log::info!("upstream {upstream}: DNS answer changed: added {added:?}, removed {removed:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(text: &str) -> UpstreamConfig {
        toml::from_str(text).unwrap()
    }

    const UP: &str = r#"
name = "api"
port = 8080
[[groups]]
name = "blue"
weight = 5
servers = [{ address = "10.0.0.1" }, { address = "api.test" }, { address = "api.test", port = 9090, standby = true }]
"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ids(specs: &[ServerSpec]) -> Vec<&str> {
        specs.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn named_servers_and_identities() {
        let up = upstream(UP);
        let named = named_servers(&up);
        assert_eq!(named.len(), 2);
        assert_eq!(named[0].port, 8080);
        assert_eq!(named[1].port, 9090);
        let id = named[0].id(ip("127.0.0.2"));
        assert!(named[0].owns(&id));
        assert!(!named[1].owns(&id));
        assert!(!named[0].owns(&ServerId::new("blue", "api.test:8080")));
        assert!(!named[0].owns(&ServerId::new("green", "api.test:8080#127.0.0.2")));
    }

    #[test]
    fn specs_from_resolved_sets() {
        let up = upstream(UP);
        let named = named_servers(&up);
        let mut resolved = Resolved::new();
        resolved.insert(named[0].clone(), vec![ip("127.0.0.2"), ip("::1")]);
        let specs = build_specs(&up, &resolved, &[]);
        assert_eq!(
            ids(&specs),
            [
                "blue/10.0.0.1:8080",
                "blue/api.test:8080#127.0.0.2",
                "blue/api.test:8080#::1"
            ]
        );
        assert_eq!(specs[2].addr.to_string(), "[::1]:8080");
        assert_eq!(specs[1].weight, 5);
        resolved.insert(named[1].clone(), vec![ip("127.0.0.2")]);
        let specs = build_specs(&up, &resolved, &[]);
        assert_eq!(specs[3].id.as_str(), "blue/api.test:9090#127.0.0.2");
        assert!(specs[3].standby);
    }

    #[test]
    fn changed_answer_keeps_unchanged_servers_and_their_runtime_changes() {
        let up = upstream(UP);
        let named = named_servers(&up);
        let mut resolved = Resolved::new();
        resolved.insert(named[0].clone(), vec![ip("127.0.0.2"), ip("127.0.0.3")]);
        let mut current = build_specs(&up, &resolved, &[]);
        // An operator drained .3 and re-weighted the IP server at run time.
        current[2].weight = 0;
        current[0].weight = 7;
        // Same answer: nothing changes.
        assert_eq!(build_specs(&up, &resolved, &current), current);
        // .2 leaves, .4 joins: .3 keeps its run-time weight, .4 gets the file's.
        resolved.insert(named[0].clone(), vec![ip("127.0.0.3"), ip("127.0.0.4")]);
        let next = build_specs(&up, &resolved, &current);
        assert_eq!(
            ids(&next),
            [
                "blue/10.0.0.1:8080",
                "blue/api.test:8080#127.0.0.3",
                "blue/api.test:8080#127.0.0.4"
            ]
        );
        assert_eq!((next[0].weight, next[1].weight, next[2].weight), (7, 0, 5));
    }

    #[test]
    fn failed_lookup_keeps_the_last_good_set() {
        let up = upstream(UP);
        let named = named_servers(&up);
        let mut resolved = Resolved::new();
        resolved.insert(named[0].clone(), vec![ip("127.0.0.2")]);
        resolved.insert(named[1].clone(), vec![ip("127.0.0.5")]);
        let current = build_specs(&up, &resolved, &[]);
        // Round: named[0] fails (no entry), named[1] answers .6.
        let mut round = last_good(&up, &current);
        assert_eq!(round, resolved);
        round.insert(named[1].clone(), vec![ip("127.0.0.6")]);
        let next = build_specs(&up, &round, &current);
        assert_eq!(
            ids(&next),
            [
                "blue/10.0.0.1:8080",
                "blue/api.test:8080#127.0.0.2",
                "blue/api.test:9090#127.0.0.6"
            ]
        );
    }

    #[test]
    fn empty_answer_is_a_failure() {
        assert!(normalise(Vec::new()).is_err());
        assert_eq!(
            normalise(vec![ip("127.0.0.3"), ip("127.0.0.2"), ip("127.0.0.3")]),
            Ok(vec![ip("127.0.0.2"), ip("127.0.0.3")])
        );
    }
}
