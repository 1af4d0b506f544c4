//! The compiled configuration the request path reads: listeners with their routers, routes,
//! upstreams with their pools. One [`Runtime`] is published at a time through `ArcSwap`; each
//! request holds the one it started with until it ends, so a reload never changes a request
//! midway.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`Runtime`] and its build, cascade verification |
//! | `listener.rs` | listeners and their routers |
//! | `route.rs` | routes: rewrite, `Host`, metric handles |
//! | `upstream.rs` | upstreams: pool, health, TLS, sticky, metric handles, kept across reloads |

mod listener;
mod route;
mod upstream;

pub use crate::error::BuildError;
pub use listener::{admits, ListenerRuntime};
pub use route::RouteRuntime;
pub use upstream::{
    balance_algorithm, balance_hash_ring, server_specs, ServerMetricsTable, UpstreamRuntime,
};

use std::sync::Arc;

use switchyard_balance::StatsStore;
use switchyard_config::Config;
use switchyard_metrics::Metrics;

use crate::dns::DnsControl;

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
    /// The metric families this runtime reports to.
    pub metrics: &'static Metrics,
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
        _ => Err(BuildError::MissingSecret(var.to_string())),
    }
}

impl Runtime {
    /// Builds a runtime from a validated configuration.
    ///
    /// `previous` is the runtime being replaced (on reload): upstreams of the same name keep
    /// their stats store, so servers whose identity is unchanged keep health, in-flight counts and
    /// latency estimates.
    ///
    /// A convenience constructor: metrics go to the process's registry ([`Metrics::global`]).
    /// Code that is handed its metric families uses [`Runtime::build_with_metrics`].
    pub fn build(cfg: Arc<Config>, previous: Option<&Runtime>) -> Result<Runtime, BuildError> {
        Self::build_with_metrics(cfg, previous, Metrics::global())
    }

    /// Like [`Runtime::build`], with the metric families every part of the runtime reports to.
    pub fn build_with_metrics(
        cfg: Arc<Config>,
        previous: Option<&Runtime>,
        metrics: &'static Metrics,
    ) -> Result<Runtime, BuildError> {
        let upstreams = upstream::build(&cfg, previous, metrics)?;
        let routes = route::build(&cfg, metrics)?;
        let mut listeners = listener::build(&cfg);
        for (l, tls) in listeners
            .iter_mut()
            .zip(crate::listener_tls::load_all(&cfg)?)
        {
            l.tls = tls;
        }
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
        crate::listener_tls::publish_expiry(
            metrics,
            listeners
                .iter()
                .map(|l| (l.cfg.name.as_str(), l.tls.as_deref())),
            previous
                .into_iter()
                .flat_map(|p| &p.listeners)
                .map(|l| (l.cfg.name.as_str(), l.tls.as_deref())),
        );
        Ok(Runtime {
            config: cfg,
            listeners,
            routes,
            upstreams,
            cascade,
            dns: Arc::new(DnsControl::default()),
            metrics,
        })
    }

    /// Starts this runtime's DNS re-resolution tasks (see [`crate::dns`]) on the current Tokio
    /// runtime; a second call does nothing.
    pub fn start_dns(&self) {
        crate::dns::start(
            &self.dns,
            &self.config.server.resolver_addrs(),
            &self.upstreams,
            self.metrics,
        );
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
