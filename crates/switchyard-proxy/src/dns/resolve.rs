//! Name resolution: a hickory resolver set up for server names, and one-off blocking resolution
//! for building a runtime (start-up and reload).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

/// How long one name server may take to answer one query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound on one whole lookup (every server, every attempt, A and AAAA).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a name did not resolve, or resolution could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The resolver could not be built from the configuration.
    #[error("cannot build the DNS resolver: {0}")]
    Resolver(String),
    /// The name servers answered with an error (no such name, refused, unreachable...).
    #[error("{0}")]
    Lookup(String),
    /// The answer had no A or AAAA record.
    #[error("no A or AAAA records")]
    Empty,
    /// No answer within the lookup's time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The thread or runtime of a blocking resolution could not run.
    #[error("cannot run the DNS resolution: {0}")]
    Runtime(String),
}

/// Sorts and deduplicates an answer; an empty one is a failure.
fn normalise(mut ips: Vec<IpAddr>) -> Result<Vec<IpAddr>, DnsError> {
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        Err(DnsError::Empty)
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
    pub fn new(resolvers: &[SocketAddr]) -> Result<DnsResolver, DnsError> {
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
            .map_err(|e| DnsError::Resolver(e.to_string()))?;
        Ok(DnsResolver { inner })
    }

    /// Every IPv4 and IPv6 address of `name`, sorted; no address is an error.
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.inner.lookup_ip(name)).await {
            Ok(Ok(answer)) => normalise(answer.iter().collect()),
            Ok(Err(e)) => Err(DnsError::Lookup(e.to_string())),
            Err(_) => Err(DnsError::Timeout(LOOKUP_TIMEOUT)),
        }
    }
}

/// Resolves `names` (concurrently) through `resolvers`, blocking the caller: on a thread of its
/// own with a temporary runtime, so it works both before any runtime exists (start-up) and from
/// inside one (a reload). The outer error is a resolver that cannot be built.
pub fn resolve_blocking(
    resolvers: &[SocketAddr],
    names: &BTreeSet<String>,
) -> Result<HashMap<String, Result<Vec<IpAddr>, DnsError>>, DnsError> {
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
                .map_err(|e| DnsError::Runtime(e.to_string()))?;
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
        .map_err(|e| DnsError::Runtime(e.to_string()))?;
    worker
        .join()
        .map_err(|_| DnsError::Runtime("the DNS thread panicked".to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_answer_is_a_failure() {
        assert_eq!(normalise(Vec::new()), Err(DnsError::Empty));
        assert_eq!(
            normalise(vec![ip("127.0.0.3"), ip("127.0.0.2"), ip("127.0.0.3")]),
            Ok(vec![ip("127.0.0.2"), ip("127.0.0.3")])
        );
    }
}
