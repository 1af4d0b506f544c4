//! Read-only views of the running gateway, serialised by the API and rendered by the status page.
//!
//! The JSON shapes are documented in `docs/operations.md` ("Admin API").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use switchyard_balance::{Server, ServerId};
use switchyard_proxy::runtime::UpstreamRuntime;
use switchyard_proxy::{Runtime, Shared};

/// `GET /api/upstreams`.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamsView {
    /// `[server].instance_id`.
    pub instance_id: String,
    /// Every upstream, in configuration order.
    pub upstreams: Vec<UpstreamView>,
}

/// One upstream.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamView {
    /// Its name.
    pub name: String,
    /// `wrr`, `least_conn`, ...
    pub algorithm: &'static str,
    /// `reject` or `all`.
    pub when_all_down: serde_json::Value,
    /// True while no server is available and `when_all_down = "all"` sends to every enabled one.
    pub panic_mode: bool,
    /// True if active health checks are configured.
    pub active_checks: bool,
    /// True if passive health checks are configured.
    pub passive_checks: bool,
    /// The queue of requests waiting for a free server (`max_in_flight`), when a server has a
    /// limit.
    pub queue: Option<QueueView>,
    /// Every server, in configuration order.
    pub servers: Vec<ServerView>,
}

/// An upstream's queue.
#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    /// Requests waiting now.
    pub waiting: usize,
    /// `queue_size`.
    pub size: u32,
    /// `queue_timeout_ms`.
    pub timeout_ms: u64,
    /// Requests that waited so far (served or not).
    pub waited_total: u64,
    /// Their mean wait, milliseconds (0 when none waited).
    pub mean_wait_ms: f64,
    /// Requests refused because every server was full: `full`, `timeout`.
    pub rejected_full: u64,
    /// Requests that waited `queue_timeout_ms` in vain.
    pub rejected_timeout: u64,
}

/// One server of an upstream.
#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    /// Identity, `group/host:port`.
    pub id: String,
    /// The group.
    pub group: String,
    /// `host:port` (what the admin API's `{host:port}` segment matches).
    pub host_port: String,
    /// The socket address connected to.
    pub address: String,
    /// The weight in force (0 = drained).
    pub weight: u32,
    /// The weight in the configuration file, if the server is still there (a reload restores it).
    pub configured_weight: Option<u32>,
    /// Receives traffic at all.
    pub enabled: bool,
    /// Used only when no non-standby server is available.
    pub standby: bool,
    /// `pending`, `healthy`, `unhealthy` or `ejected`.
    pub health: &'static str,
    /// The verdict the selectors read.
    pub healthy: bool,
    /// Requests currently in flight.
    pub in_flight: u32,
    /// Its `max_in_flight` (0 = unlimited).
    pub max_in_flight: u32,
    /// Peak-EWMA latency estimate, milliseconds.
    pub ewma_ms: f64,
    /// Requests sent since the server appeared (kept across reloads).
    pub requests: u64,
    /// Failed requests since the server appeared.
    pub failures: u64,
    /// Requests per second since the previous view (`null` on the first view).
    pub request_rate_per_s: Option<f64>,
    /// Consecutive passing active checks.
    pub consecutive_passes: u32,
    /// Consecutive failing active checks.
    pub consecutive_failures: u32,
    /// Milliseconds since the last health transition, if any.
    pub last_transition_ago_ms: Option<u64>,
    /// Why the last transition happened.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct RateSample {
    at: Instant,
    requests: u64,
    rate: Option<f64>,
}

/// Request rates per server, computed from the request counters between two views at least a
/// second apart (no background task, no cost on the request path).
///
/// ```
/// let rates = switchyard_admin::views::Rates::default();
/// assert_eq!(rates.observe("api", "g/127.0.0.1:1", 10), None); // first sample
/// ```
#[derive(Debug, Default)]
pub struct Rates {
    samples: Mutex<HashMap<String, RateSample>>,
}

impl Rates {
    /// Records `requests` for `upstream`/`id` now and returns the current rate estimate.
    ///
    /// ```
    /// let rates = switchyard_admin::views::Rates::default();
    /// rates.observe("api", "g/a:1", 0);
    /// assert_eq!(rates.observe("api", "g/a:1", 5), None); // less than 1 s later: unchanged
    /// ```
    pub fn observe(&self, upstream: &str, id: &str, requests: u64) -> Option<f64> {
        let now = Instant::now();
        let key = format!("{upstream}\u{0}{id}");
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let entry = samples.entry(key).or_insert(RateSample {
            at: now,
            requests,
            rate: None,
        });
        let dt = now.duration_since(entry.at).as_secs_f64();
        if dt >= 1.0 {
            let delta = requests.saturating_sub(entry.requests) as f64;
            *entry = RateSample {
                at: now,
                requests,
                rate: Some(delta / dt),
            };
        }
        entry.rate
    }

    /// Forgets servers that are no longer present (`keep` holds `upstream\0id` keys).
    fn retain(&self, keep: &[String]) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.retain(|k, _| keep.iter().any(|x| x == k));
    }
}

/// The configured weight of every server of `up`, by `group/host:port` (no name resolution: a
/// DNS-named server's identities `group/name:port#ip` are looked up without their `#ip`).
fn configured_weights(up: &UpstreamRuntime) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for g in &up.cfg.groups {
        for s in &g.servers {
            let id = format!("{}/{}", g.name, s.host_port(s.effective_port(up.cfg.port)));
            out.insert(id, s.effective_weight(g.weight));
        }
    }
    out
}

/// The view of one server.
pub fn server_view(
    up: &UpstreamRuntime,
    server: &Server,
    now_ns: u64,
    configured: &HashMap<String, u32>,
    rates: &Rates,
) -> ServerView {
    let spec = &server.spec;
    let health = up.health.server(&spec.id);
    let requests = server.stats.requests();
    let state = match &health {
        Some(h) => h.state.as_str(),
        None if server.stats.is_healthy() => "healthy",
        None => "unhealthy",
    };
    ServerView {
        id: spec.id.as_str().to_string(),
        group: spec.id.group().to_string(),
        host_port: spec.id.host_port().to_string(),
        address: spec.addr.to_string(),
        weight: spec.weight,
        configured_weight: configured
            .get(spec.id.as_str().split('#').next().unwrap_or_default())
            .copied(),
        enabled: spec.enabled,
        standby: spec.standby,
        health: state,
        healthy: server.stats.is_healthy(),
        in_flight: server.stats.in_flight(),
        max_in_flight: spec.max_in_flight,
        ewma_ms: (server.stats.ewma_nanos(now_ns) / 1e6 * 1000.0).round() / 1000.0,
        requests,
        failures: server.stats.failures(),
        request_rate_per_s: rates
            .observe(&up.cfg.name, spec.id.as_str(), requests)
            .map(|r| (r * 100.0).round() / 100.0),
        consecutive_passes: health.as_ref().map_or(0, |h| h.consecutive_passes),
        consecutive_failures: health.as_ref().map_or(0, |h| h.consecutive_failures),
        last_transition_ago_ms: health.as_ref().and_then(|h| h.last_transition_ago_ms),
        reason: health.and_then(|h| h.reason),
    }
}

/// The view of one upstream; `only` restricts the servers listed (by identity).
pub fn upstream_view(
    up: &UpstreamRuntime,
    rates: &Rates,
    only: Option<&[ServerId]>,
) -> UpstreamView {
    let snap = up.pool.snapshot();
    let now = snap.now_nanos();
    let configured = configured_weights(up);
    let servers = snap
        .servers()
        .iter()
        .filter(|s| only.is_none_or(|ids| ids.contains(&s.spec.id)))
        .map(|s| server_view(up, s, now, &configured, rates))
        .collect();
    UpstreamView {
        name: up.cfg.name.clone(),
        algorithm: up.cfg.algorithm.as_str(),
        when_all_down: serde_json::to_value(up.cfg.when_all_down).unwrap_or_default(),
        panic_mode: snap.is_panic(),
        active_checks: up.health.has_active(),
        passive_checks: up.health.has_passive(),
        queue: snap.is_limited().then(|| queue_view(up)),
        servers,
    }
}

/// The queue of `up`, from its counter of waiters and its metrics.
fn queue_view(up: &UpstreamRuntime) -> QueueView {
    let m = &up.queue_metrics;
    let waited_total = m.wait.get_sample_count();
    let mean_wait_ms = if waited_total == 0 {
        0.0
    } else {
        (m.wait.get_sample_sum() / waited_total as f64 * 1e6).round() / 1000.0
    };
    QueueView {
        waiting: up.pool.store().queue().waiting(),
        size: up.cfg.queue_size,
        timeout_ms: up.cfg.queue_timeout_ms,
        waited_total,
        mean_wait_ms,
        rejected_full: m.rejected_full.get(),
        rejected_timeout: m.rejected_timeout.get(),
    }
}

/// The view of every upstream of the running configuration.
///
/// ```
/// let cfg = switchyard_config::parse_str(r#"
/// [[upstreams]]
/// name = "api"
///   [[upstreams.groups]]
///   name = "g"
///   servers = [{ address = "127.0.0.1", port = 9 }]
/// "#).unwrap();
/// let rt = switchyard_proxy::Runtime::build(std::sync::Arc::new(cfg), None).unwrap();
/// let shared = switchyard_proxy::Shared::new(rt, None);
/// let view = switchyard_admin::views::upstreams(&shared, &Default::default());
/// assert_eq!(view.upstreams[0].servers[0].id, "g/127.0.0.1:9");
/// assert_eq!(view.upstreams[0].servers[0].health, "healthy");
/// ```
pub fn upstreams(shared: &Shared, rates: &Rates) -> UpstreamsView {
    let rt: std::sync::Arc<Runtime> = shared.runtime();
    let view = UpstreamsView {
        instance_id: shared.instance_id().to_string(),
        upstreams: rt
            .upstreams
            .iter()
            .map(|u| upstream_view(u, rates, None))
            .collect(),
    };
    let keep: Vec<String> = view
        .upstreams
        .iter()
        .flat_map(|u| {
            u.servers
                .iter()
                .map(move |s| format!("{}\u{0}{}", u.name, s.id))
        })
        .collect();
    rates.retain(&keep);
    view
}
