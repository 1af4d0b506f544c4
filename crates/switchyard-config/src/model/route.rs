//! `[[routes]]`: which requests go to which upstream, and how they are forwarded.

use serde::{Deserialize, Serialize};

use super::defaults::{default_connect_timeout_ms, default_timeout_ms};
use super::rate_limit::RateLimitConfig;
use crate::path_pattern::PathPattern;

fn default_tunnel_timeout_ms() -> u64 {
    3_600_000
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
    /// `retry_on_statuses`: a response with one of these statuses (400..=599) is retried on
    /// another server under the rules of a failure after sending (idempotent methods, never a
    /// server twice, counted against `retries`); the last one is returned when no retry is
    /// left. Default none.
    #[serde(default)]
    pub retry_on_statuses: Vec<u16>,
    /// `deadline_ms`: the whole request — queueing, every try and the backoff between them —
    /// must get its response head within this; exceeded: 504. 0 = none (default).
    #[serde(default)]
    pub deadline_ms: u64,
    /// `[routes.rate_limit]`: a token bucket per key; absent = no limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
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

fn default_retries() -> i32 {
    -1
}
