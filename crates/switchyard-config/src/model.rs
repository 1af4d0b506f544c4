//! The typed configuration: one struct per TOML table.
//!
//! These types are the library's public API: an embedder can build a [`Config`] in code without any
//! TOML. Every field documents its TOML key and default; `docs/configuration.md` is the reference.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::path_pattern::PathPattern;

/// The whole configuration file.
///
/// ```
/// let cfg: switchyard_config::Config = switchyard_config::parse_str(r#"
/// [[listeners]]
/// name = "web"
/// listen = "127.0.0.1:8080"
///
/// [[routes]]
/// name = "all"
/// path_prefix = "/"
/// upstream = "api"
///
/// [[upstreams]]
/// name = "api"
///   [[upstreams.groups]]
///   name = "blue"
///     [[upstreams.groups.servers]]
///     address = "127.0.0.1"
///     port = 8081
/// "#).unwrap();
/// assert_eq!(cfg.upstreams[0].groups[0].servers[0].port, 8081);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[variables]`: values substituted for `#name#` in `backend_path`.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// `[metrics]`: the Prometheus endpoint; absent = no metrics listener.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// `[admin]`: the admin API and status page; absent = no admin listener.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// `[limits]`: protective limits on client input.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[[listeners]]`.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// `[[routes]]`.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// `[[upstreams]]`.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// `[cascade]`: API cascading between instances; absent = off.
    #[serde(default)]
    pub cascade: Option<CascadeConfig>,
}

impl Config {
    /// The upstream named `name`.
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[upstreams]]
    /// name = "api"
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   servers = [{ address = "10.0.0.1" }]
    /// "#).unwrap();
    /// assert_eq!(cfg.upstream("api").map(|u| u.port), Some(80));
    /// assert!(cfg.upstream("nope").is_none());
    /// ```
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The listeners a route serves: those it names, or every http/https listener when its
    /// `listeners` list is empty.
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[listeners]]
    /// name = "web"
    /// listen = "127.0.0.1:8080"
    /// [[listeners]]
    /// name = "db"
    /// protocol = "tcp"
    /// listen = "127.0.0.1:5432"
    /// upstream = "api"
    /// [[routes]]
    /// name = "all"
    /// upstream = "api"
    /// [[upstreams]]
    /// name = "api"
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   servers = [{ address = "10.0.0.1" }]
    /// "#).unwrap();
    /// let names: Vec<&str> = cfg.route_listeners(&cfg.routes[0]).map(|l| l.name.as_str()).collect();
    /// assert_eq!(names, ["web"]);
    /// ```
    pub fn route_listeners<'a>(
        &'a self,
        route: &'a RouteConfig,
    ) -> impl Iterator<Item = &'a ListenerConfig> + 'a {
        self.listeners.iter().filter(move |l| {
            if route.listeners.is_empty() {
                l.protocol != ListenerProtocol::Tcp
            } else {
                route.listeners.iter().any(|n| n == &l.name)
            }
        })
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `instance_id`: names this instance in `CDN-Loop`, cascading and metrics. Default `"switchyard"`.
    pub instance_id: String,
    /// `threads`: worker threads per service. Default 1.
    pub threads: usize,
    /// `grace_period_s`: how long SIGTERM waits for in-flight requests. Default 30.
    pub grace_period_s: u64,
    /// `work_stealing`: let idle worker threads steal tasks. Default `false` (measured faster).
    pub work_stealing: bool,
    /// `pid_file`: where the process writes its PID. Default `/tmp/switchyard.pid`.
    pub pid_file: String,
    /// `upgrade_sock`: the socket used to hand listeners to a new process on graceful upgrade.
    /// Default `/tmp/switchyard_upgrade.sock`.
    pub upgrade_sock: String,
    /// `resolvers`: DNS servers that resolve server names, each `"ip:port"` or `"ip"` (port 53),
    /// like NGINX's `resolver` directive. Empty (the default) = the system's `/etc/resolv.conf`.
    pub resolvers: Vec<String>,
}

impl ServerConfig {
    /// The configured `resolvers` as socket addresses (`"ip"` means port 53); entries that do
    /// not parse are skipped (validation rejects them).
    ///
    /// ```
    /// let mut s = switchyard_config::ServerConfig::default();
    /// s.resolvers = vec!["127.0.0.1:5353".into(), "::1".into()];
    /// let addrs = s.resolver_addrs();
    /// assert_eq!(addrs[0].to_string(), "127.0.0.1:5353");
    /// assert_eq!(addrs[1].to_string(), "[::1]:53");
    /// ```
    pub fn resolver_addrs(&self) -> Vec<SocketAddr> {
        self.resolvers
            .iter()
            .filter_map(|r| parse_resolver(r).ok())
            .collect()
    }
}

/// Parses one `[server].resolvers` entry: `"ip:port"`, `"[v6]:port"` or a bare IP (port 53).
pub fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "`{s}` is not a resolver address; write \"ip:port\" (e.g. \"127.0.0.1:53\", \"[::1]:53\") or a bare IP for port 53"
    ))
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            instance_id: "switchyard".to_string(),
            threads: 1,
            grace_period_s: 30,
            work_stealing: false,
            pid_file: "/tmp/switchyard.pid".to_string(),
            upgrade_sock: "/tmp/switchyard_upgrade.sock".to_string(),
            resolvers: Vec::new(),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `listen`: address of the Prometheus endpoint (`GET /metrics`).
    pub listen: SocketAddr,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `listen`: address of the admin API. Default `127.0.0.1:9000`.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// `token_env`: the environment variable holding the bearer token. Default
    /// `SWITCHYARD_ADMIN_TOKEN`.
    #[serde(default = "default_admin_token_env")]
    pub token_env: String,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000))
}

fn default_admin_token_env() -> String {
    "SWITCHYARD_ADMIN_TOKEN".to_string()
}

/// `[limits]`: protective limits on what clients may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `header_timeout_ms`: a client must send its whole request head within this. Default 10000.
    pub header_timeout_ms: u64,
    /// `retry_buffer_bytes`: request bodies up to this size are kept so that the request
    /// can be retried; larger ones are streamed and never retried after sending. Default 65536.
    pub retry_buffer_bytes: usize,
    /// `max_connections`: concurrent downstream connections per listener; 0 = unlimited. Default 0.
    pub max_connections: usize,
    /// `read_buffer_bytes`: the read buffer each client connection of an `http` or `https`
    /// listener keeps for its whole life; 0 = none. Default (unset): 4096 for `http`, 65536 for
    /// `https` (TLS reads records of up to 16 KiB in small pieces, which a large buffer batches).
    pub read_buffer_bytes: Option<usize>,
    /// `body_timeout_ms`: the longest wait between two reads of a request body (NGINX
    /// `client_body_timeout`); exceeded: `408`, or the connection closed once a response has
    /// started, and the upstream request aborted. Default 10000.
    pub body_timeout_ms: u64,
    /// `encoded_slashes`: what an encoded `/` or `\` (`%2F`, `%5C`) in a request path gets.
    /// Default `reject` (`400`).
    pub encoded_slashes: EncodedSlashes,
}

/// `[limits] encoded_slashes`: the fate of `%2F` and `%5C` in request paths.
///
/// ```
/// let cfg = switchyard_config::parse_str("[limits]\nencoded_slashes = \"keep\"\n").unwrap();
/// assert_eq!(cfg.limits.encoded_slashes, switchyard_config::EncodedSlashes::Keep);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodedSlashes {
    /// `400` (Envoy's `path_with_escaped_slashes_action = REJECT_REQUEST`).
    #[default]
    Reject,
    /// Kept encoded (upper-cased): part of its segment, not a separator for routing (NGINX's
    /// behaviour; Envoy's `KEEP_UNCHANGED`). A segment whose pieces between encoded slashes are
    /// `.` or `..` is still `400`.
    Keep,
}

/// Default `read_buffer_bytes` of `http` listeners.
pub const DEFAULT_HTTP_READ_BUFFER_BYTES: usize = 4096;
/// Default `read_buffer_bytes` of `https` listeners.
pub const DEFAULT_HTTPS_READ_BUFFER_BYTES: usize = 65_536;
/// Largest `read_buffer_bytes`.
pub const MAX_READ_BUFFER_BYTES: usize = 1 << 20;

impl LimitsConfig {
    /// The read buffer size for client connections of a listener speaking `protocol`.
    ///
    /// ```
    /// use switchyard_config::{LimitsConfig, ListenerProtocol};
    /// let mut limits = LimitsConfig::default();
    /// assert_eq!(limits.read_buffer_for(ListenerProtocol::Http), 4096);
    /// assert_eq!(limits.read_buffer_for(ListenerProtocol::Https), 65_536);
    /// limits.read_buffer_bytes = Some(0);
    /// assert_eq!(limits.read_buffer_for(ListenerProtocol::Https), 0);
    /// ```
    pub fn read_buffer_for(&self, protocol: ListenerProtocol) -> usize {
        self.read_buffer_bytes.unwrap_or(match protocol {
            ListenerProtocol::Https => DEFAULT_HTTPS_READ_BUFFER_BYTES,
            _ => DEFAULT_HTTP_READ_BUFFER_BYTES,
        })
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            retry_buffer_bytes: 64 * 1024,
            max_connections: 0,
            read_buffer_bytes: None,
            body_timeout_ms: 10_000,
            encoded_slashes: EncodedSlashes::Reject,
        }
    }
}

/// A listener's protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// Plain HTTP/1.1 (and h2c prior knowledge).
    #[default]
    Http,
    /// HTTPS: TLS termination with `tls = { cert, key }`.
    Https,
    /// Byte-for-byte TCP proxying to `upstream`.
    Tcp,
}

/// PROXY protocol version sent to backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No PROXY header.
    #[default]
    Off,
    /// Text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// Binary header.
    V2,
}

/// `[[listeners]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `name`: unique; routes refer to it.
    pub name: String,
    /// `protocol`: `http` | `https` | `tcp`. Default `http`.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// `listen`: the socket address to bind.
    pub listen: SocketAddr,
    /// `tls`: certificate and key (PEM), required for `https`.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// `upstream`: for `tcp` listeners, the upstream to proxy to.
    #[serde(default)]
    pub upstream: Option<String>,
    /// `proxy_protocol`: PROXY header sent to backends of a `tcp` listener. Default `off`.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// `accept_proxy_protocol`: expect a PROXY header (v1 or v2) from a load balancer in front.
    #[serde(default)]
    pub accept_proxy_protocol: bool,
    /// `accept_proxy_protocol_from`: with `accept_proxy_protocol`, the peers (load balancers)
    /// expected to send the header; other peers are served as direct clients, and a PROXY header
    /// from them is not believed. Empty = every peer must send one. Default empty.
    #[serde(default)]
    pub accept_proxy_protocol_from: Vec<Cidr>,
    /// `allow`: client CIDRs allowed; empty = all.
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// `deny`: client CIDRs denied; deny wins over allow.
    #[serde(default)]
    pub deny: Vec<Cidr>,
    /// `connect_timeout_ms`: for `tcp` listeners, the backend connect timeout. Default 1000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// `idle_timeout_ms`: for `tcp` listeners, close a connection idle in both directions this long.
    /// Default 600000 (10 minutes).
    #[serde(default = "default_tcp_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

impl ListenerConfig {
    /// True if a connection from `peer` must start with a PROXY header: `accept_proxy_protocol`
    /// is on and `peer` is in `accept_proxy_protocol_from` (or that list is empty). A peer whose
    /// address is unknown is expected to send one only when the list is empty.
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[listeners]]
    /// name = "web"
    /// listen = "0.0.0.0:8080"
    /// accept_proxy_protocol = true
    /// accept_proxy_protocol_from = ["10.0.0.0/8"]
    /// "#).unwrap();
    /// let web = &cfg.listeners[0];
    /// assert!(web.expects_proxy_header_from(Some("10.1.2.3".parse().unwrap())));
    /// assert!(!web.expects_proxy_header_from(Some("192.0.2.7".parse().unwrap())));
    /// assert!(!web.expects_proxy_header_from(None));
    /// ```
    pub fn expects_proxy_header_from(&self, peer: Option<IpAddr>) -> bool {
        self.accept_proxy_protocol
            && (self.accept_proxy_protocol_from.is_empty()
                || peer.is_some_and(|ip| {
                    self.accept_proxy_protocol_from
                        .iter()
                        .any(|c| c.contains(ip))
                }))
    }
}

fn default_tunnel_timeout_ms() -> u64 {
    3_600_000
}

fn default_tcp_idle_timeout_ms() -> u64 {
    600_000
}

/// `tls` of an `https` listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// `cert`: PEM certificate chain file.
    pub cert: String,
    /// `key`: PEM private key file.
    pub key: String,
}

/// `[[routes]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `name`: unique; appears in metrics.
    pub name: String,
    /// `listeners`: the listeners this route serves; empty = every http/https listener.
    #[serde(default)]
    pub listeners: Vec<String>,
    /// `hosts`: exact host names or `*.example.com` wildcards; empty = any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `path`: a path pattern with `{name}` segment captures. Exclusive with `path_prefix`.
    #[serde(default)]
    pub path: Option<String>,
    /// `path_prefix`: matches every path starting with it (on a segment boundary).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// `methods`: allowed methods; empty = any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// `upstream`: the upstream that serves this route.
    pub upstream: String,
    /// `backend_path`: rewrite template with `#var#` and `{param}`.
    #[serde(default)]
    pub backend_path: Option<String>,
    /// `host_header`: the Host sent upstream; default: the client's.
    #[serde(default)]
    pub host_header: Option<String>,
    /// `timeout_ms`: backend response timeout. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `connect_timeout_ms`: backend connect timeout. Default 1000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// `tunnel_timeout_ms`: an upgraded connection (WebSocket) is closed after this long with no
    /// bytes from the side being read; replaces `timeout_ms` once a request asks for an upgrade.
    /// Default 3600000 (1 hour).
    #[serde(default = "default_tunnel_timeout_ms")]
    pub tunnel_timeout_ms: u64,
    /// `retries`: -1 = idempotent methods retried once; 0..=10 = that many. Default -1.
    #[serde(default = "default_retries")]
    pub retries: i32,
    /// `retry_non_idempotent`: also retry POST, PATCH (and other non-idempotent methods) after a
    /// failure once the request was sent, like idempotent ones (NGINX
    /// `proxy_next_upstream non_idempotent`). Default false.
    #[serde(default)]
    pub retry_non_idempotent: bool,
    /// `require_cascade`: accept only signed requests from allowed instances. Default false.
    #[serde(default)]
    pub require_cascade: bool,
}

impl RouteConfig {
    /// The prefix this route matches when it has no `path`: its `path_prefix`, or `/` (every
    /// path) when neither `path` nor `path_prefix` is set. `None` when the route has a `path`.
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[routes]]
    /// name = "all"
    /// upstream = "api"
    /// [[upstreams]]
    /// name = "api"
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   servers = [{ address = "10.0.0.1" }]
    /// "#).unwrap();
    /// assert_eq!(cfg.routes[0].effective_path_prefix(), Some("/"));
    /// ```
    pub fn effective_path_prefix(&self) -> Option<&str> {
        match (&self.path, &self.path_prefix) {
            (Some(_), _) => None,
            (None, Some(p)) => Some(p),
            (None, None) => Some("/"),
        }
    }

    /// The `{name}` captures of the route's `path`, in order (empty without a `path`).
    ///
    /// ```
    /// let r: switchyard_config::RouteConfig = toml::from_str(r#"
    /// name = "u"
    /// upstream = "api"
    /// path = "/users/{userId}/posts/{postId}"
    /// "#).unwrap();
    /// assert_eq!(r.path_captures(), ["userId", "postId"]);
    /// ```
    pub fn path_captures(&self) -> Vec<String> {
        self.path
            .as_deref()
            .and_then(|p| PathPattern::parse(p).ok())
            .map(|p| p.param_names().map(String::from).collect())
            .unwrap_or_default()
    }
}

fn default_timeout_ms() -> u64 {
    5000
}
fn default_connect_timeout_ms() -> u64 {
    1000
}
fn default_retries() -> i32 {
    -1
}

/// Load-balancing algorithm names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Smooth weighted round robin.
    #[default]
    Wrr,
    /// Weighted least connections (alias `wlc`).
    #[serde(alias = "wlc")]
    LeastConn,
    /// Peak-EWMA latency with power of two choices.
    Ewma,
    /// Consistent hashing on `hash_on`.
    ConsistentHash,
    /// Consistent hashing on the client IP.
    SourceIpHash,
    /// Consistent hashing on the request path.
    UriHash,
    /// Uniform random, weighted.
    Random,
}

impl Algorithm {
    /// The name used in the config file (`wrr`, `least_conn`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Wrr => "wrr",
            Algorithm::LeastConn => "least_conn",
            Algorithm::Ewma => "ewma",
            Algorithm::ConsistentHash => "consistent_hash",
            Algorithm::SourceIpHash => "source_ip_hash",
            Algorithm::UriHash => "uri_hash",
            Algorithm::Random => "random",
        }
    }

    /// True for the algorithms that hash a request key.
    pub fn is_hashing(self) -> bool {
        matches!(
            self,
            Algorithm::ConsistentHash | Algorithm::SourceIpHash | Algorithm::UriHash
        )
    }
}

/// What a consistent hash is computed on (`hash_on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// `source_ip`.
    SourceIp,
    /// `uri`: the request path (without query).
    Uri,
    /// `host`.
    Host,
    /// `header:NAME`.
    Header(String),
    /// `cookie:NAME`.
    Cookie(String),
    /// `query:NAME`.
    Query(String),
}

impl fmt::Display for HashOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashOn::SourceIp => f.write_str("source_ip"),
            HashOn::Uri => f.write_str("uri"),
            HashOn::Host => f.write_str("host"),
            HashOn::Header(n) => write!(f, "header:{n}"),
            HashOn::Cookie(n) => write!(f, "cookie:{n}"),
            HashOn::Query(n) => write!(f, "query:{n}"),
        }
    }
}

impl std::str::FromStr for HashOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let named = |kind: &str, name: &str| {
            if name.is_empty() {
                Err(format!("`{kind}:` needs a name after the colon"))
            } else {
                Ok(name.to_string())
            }
        };
        match s.split_once(':') {
            None => match s {
                "source_ip" => Ok(HashOn::SourceIp),
                "uri" => Ok(HashOn::Uri),
                "host" => Ok(HashOn::Host),
                _ => Err(format!(
                    "unknown hash key `{s}`; expected source_ip, uri, host, header:NAME, cookie:NAME or query:NAME"
                )),
            },
            Some(("header", n)) => named("header", n).map(HashOn::Header),
            Some(("cookie", n)) => named("cookie", n).map(HashOn::Cookie),
            Some(("query", n)) => named("query", n).map(HashOn::Query),
            Some((k, _)) => Err(format!(
                "unknown hash key kind `{k}`; expected header:, cookie: or query:"
            )),
        }
    }
}

impl Serialize for HashOn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HashOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The ring of a hashing upstream (`hash_ring`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashRing {
    /// A weighted Maglev table on the XXH3 hash of the key (one lookup per pick).
    #[default]
    Maglev,
    /// NGINX's Ketama ring on the CRC-32 of the key: keys go where NGINX's
    /// `hash $key consistent` sends them, for the same servers and weights.
    Ketama,
}

impl HashRing {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            HashRing::Maglev => "maglev",
            HashRing::Ketama => "ketama",
        }
    }
}

/// Upstream scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS, configured by the upstream's `tls` table.
    Https,
}

/// What to do when no server of an upstream is available.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenAllDown {
    /// Answer 503 with a short body.
    #[default]
    Reject,
    /// Panic mode: use every enabled server, healthy or not.
    All,
}

/// `[[upstreams]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `name`: unique; routes refer to it.
    pub name: String,
    /// `algorithm`. Default `wrr`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// `hash_on`: the key of `consistent_hash`. Default `source_ip`.
    #[serde(default)]
    pub hash_on: Option<HashOn>,
    /// `hash_ring`: the ring of the hashing algorithms (`consistent_hash`, `source_ip_hash`,
    /// `uri_hash`): `maglev` or `ketama` (NGINX-compatible). Only allowed with them; default
    /// `maglev` (see [`UpstreamConfig::effective_hash_ring`]).
    #[serde(default)]
    pub hash_ring: Option<HashRing>,
    /// `port`: default port for servers whose port is 0. Default 80.
    #[serde(default = "default_upstream_port")]
    pub port: u16,
    /// `scheme`: `http` | `https`. Default `http`.
    #[serde(default)]
    pub scheme: Scheme,
    /// `tls`: TLS settings for `https` upstreams and `https` health checks.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// `when_all_down`: `reject` (503) | `all` (panic mode). Default `reject`.
    #[serde(default)]
    pub when_all_down: WhenAllDown,
    /// `cascade`: sign requests to this upstream as a cascading instance. Default false.
    #[serde(default)]
    pub cascade: bool,
    /// `proxy_protocol`: PROXY header sent on each new connection to this upstream's servers
    /// (HTTP upstreams). Default `off`.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// `resolve_interval_ms`: how often server names are re-resolved. Default 30000.
    #[serde(default = "default_resolve_interval_ms")]
    pub resolve_interval_ms: u64,
    /// `[upstreams.sticky]`: cookie-insertion session persistence; absent = off.
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    /// `[[upstreams.groups]]`.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// `[upstreams.health]`.
    #[serde(default)]
    pub health: HealthConfig,
}

impl UpstreamConfig {
    /// Every server with its group, effective port (the upstream's `port` when the server's is 0)
    /// and effective weight (the group's `weight` unless the server sets its own), in file order.
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[upstreams]]
    /// name = "api"
    /// port = 8080
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   weight = 5
    ///     [[upstreams.groups.servers]]
    ///     address = "10.0.0.1"
    ///     [[upstreams.groups.servers]]
    ///     address = "10.0.0.2"
    ///     port = 9090
    ///     weight = 1
    /// "#).unwrap();
    /// let up = cfg.upstream("api").unwrap();
    /// let ids: Vec<String> = up
    ///     .servers()
    ///     .map(|(g, s, port, weight)| format!("{}/{}={weight}", g.name, s.host_port(port)))
    ///     .collect();
    /// assert_eq!(ids, ["blue/10.0.0.1:8080=5", "blue/10.0.0.2:9090=1"]);
    /// ```
    pub fn servers(&self) -> impl Iterator<Item = (&GroupConfig, &ServerEntry, u16, u32)> + '_ {
        self.groups.iter().flat_map(move |g| {
            g.servers.iter().map(move |s| {
                (
                    g,
                    s,
                    s.effective_port(self.port),
                    s.effective_weight(g.weight),
                )
            })
        })
    }

    /// How many servers have `enabled = true` (standby and weight-0 servers included: they can
    /// still take a retry).
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[upstreams]]
    /// name = "api"
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   servers = [{ address = "10.0.0.1" }, { address = "10.0.0.2", enabled = false }]
    /// "#).unwrap();
    /// assert_eq!(cfg.upstreams[0].enabled_server_count(), 1);
    /// ```
    pub fn enabled_server_count(&self) -> usize {
        self.servers().filter(|(_, s, _, _)| s.enabled).count()
    }

    /// The PROXY header this upstream's active checks send before anything else (HAProxy's
    /// default with `send-proxy`, `check-send-proxy` to force it): `health.active.proxy_protocol`
    /// when set; otherwise none when the checks go to their own `port`; otherwise the version the
    /// traffic to these servers carries — the upstream's `proxy_protocol`, else that of a `tcp`
    /// listener in `listeners` that proxies to this upstream. Off without active checks.
    ///
    /// ```
    /// use switchyard_config::{parse_str, ProxyProtocol};
    /// let cfg = parse_str(r#"
    /// [[listeners]]
    /// name = "db"
    /// protocol = "tcp"
    /// listen = "127.0.0.1:5432"
    /// upstream = "pg"
    /// proxy_protocol = "v2"
    ///
    /// [[upstreams]]
    /// name = "pg"
    ///   [upstreams.health.active]
    ///   protocol = "tcp"
    ///   [[upstreams.groups]]
    ///   name = "g"
    ///   servers = [{ address = "10.0.0.1", port = 5432 }]
    /// "#).unwrap();
    /// let pg = cfg.upstream("pg").unwrap();
    /// assert_eq!(pg.check_proxy_protocol(&cfg.listeners), ProxyProtocol::V2);
    /// // Checked without knowing the listeners: only the upstream's own setting counts.
    /// assert_eq!(pg.check_proxy_protocol(&[]), ProxyProtocol::Off);
    /// ```
    pub fn check_proxy_protocol(&self, listeners: &[ListenerConfig]) -> ProxyProtocol {
        let Some(active) = &self.health.active else {
            return ProxyProtocol::Off;
        };
        if let Some(explicit) = active.proxy_protocol {
            return explicit;
        }
        if active.port != 0 {
            return ProxyProtocol::Off;
        }
        if self.proxy_protocol != ProxyProtocol::Off {
            return self.proxy_protocol;
        }
        listeners
            .iter()
            .filter(|l| l.protocol == ListenerProtocol::Tcp)
            .filter(|l| l.upstream.as_deref() == Some(self.name.as_str()))
            .map(|l| l.proxy_protocol)
            .find(|p| *p != ProxyProtocol::Off)
            .unwrap_or(ProxyProtocol::Off)
    }

    /// The ring of a hashing upstream: `hash_ring`, or `maglev` when unset.
    ///
    /// ```
    /// use switchyard_config::{parse_str, HashRing};
    /// let cfg = parse_str(r#"
    /// [[upstreams]]
    /// name = "api"
    /// algorithm = "uri_hash"
    /// hash_ring = "ketama"
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   servers = [{ address = "10.0.0.1" }]
    /// "#).unwrap();
    /// assert_eq!(cfg.upstreams[0].effective_hash_ring(), HashRing::Ketama);
    /// ```
    pub fn effective_hash_ring(&self) -> HashRing {
        self.hash_ring.unwrap_or_default()
    }

    /// The key a `consistent_hash` upstream hashes on: `hash_on`, or `source_ip` when unset.
    /// `None` for the other algorithms (`source_ip_hash` and `uri_hash` have fixed keys).
    ///
    /// ```
    /// use switchyard_config::{parse_str, HashOn};
    /// let cfg = parse_str(r#"
    /// [[upstreams]]
    /// name = "api"
    /// algorithm = "consistent_hash"
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   servers = [{ address = "10.0.0.1" }]
    /// "#).unwrap();
    /// assert_eq!(cfg.upstreams[0].effective_hash_on(), Some(HashOn::SourceIp));
    /// ```
    pub fn effective_hash_on(&self) -> Option<HashOn> {
        match self.algorithm {
            Algorithm::ConsistentHash => Some(self.hash_on.clone().unwrap_or(HashOn::SourceIp)),
            _ => None,
        }
    }
}

fn default_upstream_port() -> u16 {
    80
}
fn default_resolve_interval_ms() -> u64 {
    30_000
}

/// `tls` of an upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// `verify`: verify the server certificate. Default true.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// `sni`: the name sent in SNI and verified; default: the server's address.
    #[serde(default)]
    pub sni: Option<String>,
    /// `ca`: PEM file of extra trusted roots; default: the bundled web roots.
    #[serde(default)]
    pub ca: Option<String>,
    /// `client_cert`: PEM client certificate for two-way TLS.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// `client_key`: PEM client key for two-way TLS.
    #[serde(default)]
    pub client_key: Option<String>,
}

fn default_true() -> bool {
    true
}

/// `[upstreams.sticky]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    /// `cookie`: cookie name. Default `SWITCHYARD_STICKY`.
    #[serde(default = "default_sticky_cookie")]
    pub cookie: String,
    /// `ttl_s`: cookie lifetime; 0 = session cookie. Default 0.
    #[serde(default)]
    pub ttl_s: u64,
    /// `key_env`: environment variable with the HMAC key. Default `SWITCHYARD_STICKY_KEY`.
    #[serde(default = "default_sticky_key_env")]
    pub key_env: String,
    /// `path`: the cookie's `Path` attribute. Default `/`.
    #[serde(default = "default_sticky_path")]
    pub path: String,
    /// `domain`: the cookie's `Domain` attribute; empty (the default) = no attribute (the cookie
    /// goes back to the host that set it only).
    #[serde(default)]
    pub domain: String,
    /// `secure`: always send the `Secure` attribute. Default false: only on `https` listeners (and
    /// with `same_site = "none"`).
    #[serde(default)]
    pub secure: bool,
    /// `http_only`: send the `HttpOnly` attribute. Default true.
    #[serde(default = "default_true")]
    pub http_only: bool,
    /// `same_site`: the `SameSite` attribute. Default `lax`.
    #[serde(default)]
    pub same_site: SameSite,
}

/// The `SameSite` attribute of the sticky cookie (`same_site`).
///
/// ```
/// use switchyard_config::SameSite;
/// assert_eq!("strict".parse::<SameSite>(), Ok(SameSite::Strict));
/// assert_eq!("".parse::<SameSite>(), Ok(SameSite::Omit));
/// assert_eq!(SameSite::None.attribute(), Some("None"));
/// assert!("sometimes".parse::<SameSite>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SameSite {
    /// `"lax"`: `SameSite=Lax`.
    #[default]
    Lax,
    /// `"strict"`: `SameSite=Strict`.
    Strict,
    /// `"none"`: `SameSite=None`, which browsers only accept with `Secure`, so it implies it.
    None,
    /// `""`: no `SameSite` attribute (the browser's default applies).
    Omit,
}

impl SameSite {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "lax",
            SameSite::Strict => "strict",
            SameSite::None => "none",
            SameSite::Omit => "",
        }
    }

    /// The attribute value (`Lax`, `Strict`, `None`), or `None` for no attribute.
    pub fn attribute(self) -> Option<&'static str> {
        match self {
            SameSite::Lax => Some("Lax"),
            SameSite::Strict => Some("Strict"),
            SameSite::None => Some("None"),
            SameSite::Omit => Option::None,
        }
    }
}

impl std::str::FromStr for SameSite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lax" => Ok(SameSite::Lax),
            "strict" => Ok(SameSite::Strict),
            "none" => Ok(SameSite::None),
            "" => Ok(SameSite::Omit),
            other => Err(format!(
                "unknown same_site `{other}`; expected \"lax\", \"strict\", \"none\" or \"\" (no attribute)"
            )),
        }
    }
}

impl Serialize for SameSite {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SameSite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_sticky_cookie() -> String {
    "SWITCHYARD_STICKY".to_string()
}
fn default_sticky_key_env() -> String {
    "SWITCHYARD_STICKY_KEY".to_string()
}
fn default_sticky_path() -> String {
    "/".to_string()
}

/// `[[upstreams.groups]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// `name`: unique within the upstream; part of each server's identity.
    pub name: String,
    /// `weight`: default weight of its servers, 0..=10000. Default 1.
    #[serde(default = "default_weight", deserialize_with = "de_weight")]
    pub weight: u32,
    /// `[[upstreams.groups.servers]]`.
    #[serde(default)]
    pub servers: Vec<ServerEntry>,
}

fn default_weight() -> u32 {
    1
}

/// A weight: a non-negative integer (the upper bound, 10000, is checked by validation so that
/// it is reported together with every other error).
fn de_weight<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v).map_err(|_| {
        serde::de::Error::custom(format!("weight must be between 0 and 10000, got {v}"))
    })
}

fn de_opt_weight<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    de_weight(d).map(Some)
}

/// `[[upstreams.groups.servers]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    /// `address`: an IP address or a domain name.
    pub address: String,
    /// `port`: 0 = the upstream's port. Default 0.
    #[serde(default)]
    pub port: u16,
    /// `weight`: overrides the group's weight, 0..=10000; 0 = drain.
    #[serde(default, deserialize_with = "de_opt_weight")]
    pub weight: Option<u32>,
    /// `standby`: used only when no non-standby server is available. Default false.
    #[serde(default)]
    pub standby: bool,
    /// `enabled`: false = receives nothing. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl ServerEntry {
    /// The server's effective port given its upstream's default port.
    pub fn effective_port(&self, upstream_port: u16) -> u16 {
        if self.port == 0 {
            upstream_port
        } else {
            self.port
        }
    }

    /// The server's effective weight given its group's weight.
    pub fn effective_weight(&self, group_weight: u32) -> u32 {
        self.weight.unwrap_or(group_weight)
    }

    /// `host:port` as used in the server's identity (`group/host:port`) and in the admin API;
    /// IPv6 addresses are bracketed.
    ///
    /// ```
    /// # let cfg = switchyard_config::parse_str(r#"
    /// # [[upstreams]]
    /// # name = "api"
    /// #   [[upstreams.groups]]
    /// #   name = "blue"
    /// #   servers = [{ address = "::1" }, { address = "10.0.0.1", port = 81 }]
    /// # "#).unwrap();
    /// let up = &cfg.upstreams[0];
    /// let s = &up.groups[0].servers;
    /// assert_eq!(s[0].host_port(s[0].effective_port(up.port)), "[::1]:80");
    /// assert_eq!(s[1].host_port(s[1].effective_port(up.port)), "10.0.0.1:81");
    /// ```
    pub fn host_port(&self, port: u16) -> String {
        if self.address.contains(':') {
            format!("[{}]:{port}", self.address)
        } else {
            format!("{}:{port}", self.address)
        }
    }
}

/// `[upstreams.health]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `[upstreams.health.active]`: absent = no active checks.
    #[serde(default)]
    pub active: Option<ActiveHealthConfig>,
    /// `[upstreams.health.passive]`: absent = no passive checks.
    #[serde(default)]
    pub passive: Option<PassiveHealthConfig>,
}

/// Active check protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckProtocol {
    /// A TCP connect.
    Tcp,
    /// An HTTP request.
    #[default]
    Http,
    /// An HTTP request over TLS, using the upstream's `tls` table.
    Https,
}

/// Active check method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckMethod {
    /// `GET`.
    #[default]
    #[serde(rename = "GET")]
    Get,
    /// `HEAD`.
    #[serde(rename = "HEAD")]
    Head,
}

/// `[upstreams.health.active]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveHealthConfig {
    /// `protocol`: `tcp` | `http` | `https`. Default `http`.
    #[serde(default)]
    pub protocol: CheckProtocol,
    /// `path`: request path. Default `/`.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// `method`: `GET` | `HEAD`. Default `GET`.
    #[serde(default)]
    pub method: CheckMethod,
    /// `port`: 0 = the server's own port. Default 0.
    #[serde(default)]
    pub port: u16,
    /// `host`: the Host header; default: the server's address.
    #[serde(default)]
    pub host: Option<String>,
    /// `healthy_threshold`: consecutive successes to become healthy. Default 3.
    #[serde(default = "default_threshold")]
    pub healthy_threshold: u32,
    /// `unhealthy_threshold`: consecutive failures to become unhealthy. Default 3.
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: u32,
    /// `timeout_ms`: per-check timeout. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `interval_ms`: time between checks of one server (jittered ±10%). Default 3000.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// `status_codes`: healthy statuses: integers or `"200-399"` ranges. Default `["200-399"]`.
    #[serde(default = "default_status_codes")]
    pub status_codes: Vec<StatusRange>,
    /// `proxy_protocol`: PROXY header each check sends first: `off` | `v1` (`PROXY UNKNOWN`) |
    /// `v2` (`LOCAL`). Absent: the version the upstream's traffic carries, unless `port` sends the
    /// checks elsewhere (see [`UpstreamConfig::check_proxy_protocol`]).
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
}

fn default_health_path() -> String {
    "/".to_string()
}
fn default_threshold() -> u32 {
    3
}
fn default_interval_ms() -> u64 {
    3000
}
fn default_status_codes() -> Vec<StatusRange> {
    vec![StatusRange { lo: 200, hi: 399 }]
}

/// An inclusive range of HTTP status codes (`200` or `"200-399"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest status accepted.
    pub lo: u16,
    /// Highest status accepted.
    pub hi: u16,
}

impl StatusRange {
    /// True if `status` lies in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.lo..=self.hi).contains(&status)
    }
}

impl Serialize for StatusRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            s.serialize_u16(self.lo)
        } else {
            s.collect_str(&format_args!("{}-{}", self.lo, self.hi))
        }
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        let check = |v: i64| -> Result<u16, D::Error> {
            if (100..=599).contains(&v) {
                Ok(v as u16)
            } else {
                Err(serde::de::Error::custom(format!(
                    "status {v} is outside 100..=599"
                )))
            }
        };
        match Raw::deserialize(d)? {
            Raw::Int(v) => {
                let c = check(v)?;
                Ok(StatusRange { lo: c, hi: c })
            }
            Raw::Str(s) => {
                let parse = |p: &str| -> Result<u16, D::Error> {
                    let v: i64 = p.trim().parse().map_err(|_| {
                        serde::de::Error::custom(format!(
                            "`{s}` is not a status or a range like \"200-399\""
                        ))
                    })?;
                    check(v)
                };
                let (lo, hi) = match s.split_once('-') {
                    Some((a, b)) => (parse(a)?, parse(b)?),
                    None => {
                        let v = parse(&s)?;
                        (v, v)
                    }
                };
                if lo > hi {
                    return Err(serde::de::Error::custom(format!(
                        "range `{s}` is empty (low end above high end)"
                    )));
                }
                Ok(StatusRange { lo, hi })
            }
        }
    }
}

/// `[upstreams.health.passive]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthConfig {
    /// `unhealthy_statuses`: response statuses counted as failures. Default `[500, 502, 503, 504]`.
    #[serde(default = "default_unhealthy_statuses")]
    pub unhealthy_statuses: Vec<u16>,
    /// `unhealthy_threshold`: consecutive failures that eject. Default 3.
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: u32,
    /// `ejection_ms`: without active checks, an ejected server returns after this. Default 30000.
    #[serde(default = "default_ejection_ms")]
    pub ejection_ms: u64,
    /// `max_ejection_percent`: never eject more than this share of an upstream. Default 50.
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
}

fn default_unhealthy_statuses() -> Vec<u16> {
    vec![500, 502, 503, 504]
}
fn default_ejection_ms() -> u64 {
    30_000
}
fn default_max_ejection_percent() -> u32 {
    50
}

/// `[cascade]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeConfig {
    /// `key_env`: environment variable holding the shared secret. Default `SWITCHYARD_CASCADE_KEY`.
    #[serde(default = "default_cascade_key_env")]
    pub key_env: String,
    /// `allowed_instances`: instance ids allowed to call this instance (at most 5).
    #[serde(default)]
    pub allowed_instances: Vec<String>,
}

fn default_cascade_key_env() -> String {
    "SWITCHYARD_CASCADE_KEY".to_string()
}

/// A CIDR block (`10.0.0.0/8`, `::1/128`); a bare address means a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl Cidr {
    /// True if `ip` lies in the block (IPv4-mapped IPv6 addresses match IPv4 blocks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Cidr(ipnet::IpNet::from(ip)));
        }
        Err(format!(
            "`{s}` is not a CIDR block (like 10.0.0.0/8) or an IP address"
        ))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
