//! Switchyard's health layer: active checks, passive outlier detection, and the per-server
//! health state machine that decides which servers the selectors may pick.
//!
//! - [`machine`]: the pure state machine (no sockets, time as a parameter), unit-tested on its
//!   own.
//! - [`UpstreamHealth`]: one upstream at run time. It runs a checker task per server (TCP, HTTP
//!   or HTTPS with optional two-way TLS, or gRPC `grpc.health.v1` over h2c or h2), takes passive reports from the proxy's response path,
//!   and writes each server's verdict (`active healthy AND NOT ejected`) to its
//!   [`switchyard_balance::ServerStats`], then refreshes the [`switchyard_balance::Pool`].
//! - [`HealthObserver`]: hooks for metrics; [`ServerHealthView`]: a read-only view for the admin
//!   API.
//!
//! `docs/health.md` describes the behaviour and every configuration key.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore};
//! use switchyard_health::{HealthSpec, ProbeSpec, UpstreamHealth};
//!
//! let checks = HealthSpec {
//!     active: Some(ProbeSpec::tcp().timeout(Duration::from_millis(200))),
//!     passive: None,
//! };
//! // Nothing listens on port 9 here: the start-up round keeps the server out.
//! let spec = ServerSpec::new("blue", "127.0.0.1:9".parse().unwrap(), 1);
//! let opts = PoolOptions::new(Algorithm::Wrr).initially_healthy(checks.initially_healthy());
//! let pool = Arc::new(Pool::new("api", opts, vec![spec], Arc::new(StatsStore::default())));
//! let health = UpstreamHealth::new(Arc::clone(&pool), &checks).unwrap();
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! rt.block_on(health.initial_round());
//! assert!(pool.snapshot().candidates().is_empty());
//! ```

mod check;
mod grpc_check;
pub mod machine;
mod observer;
pub mod spec;
mod tls;
mod upstream;

pub use machine::{PassiveEvent, StatusSet, Thresholds};
pub use observer::{CheckResult, HealthObserver, NoopObserver};
pub use spec::{
    GrpcProbe, HealthSpec, HttpProbe, PassiveSpec, ProbeKind, ProbeSpec, ProxyHeader, TlsClient,
};
pub use upstream::{ServerHealthView, ServerState, UpstreamHealth};

/// Why an [`UpstreamHealth`] could not be built or started.
///
/// ```
/// let e = switchyard_health::HealthError::NoRuntime;
/// assert!(e.to_string().contains("tokio"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    /// [`UpstreamHealth::start`] was called outside a tokio runtime.
    #[error("health checks need a tokio runtime")]
    NoRuntime,
    /// The check `path` is not a valid request target.
    #[error("invalid health check path {0}")]
    Path(String),
    /// The PROXY protocol header could not be built (`ppp` refused it; not expected to happen).
    #[error("cannot build the PROXY protocol header: {0}")]
    ProxyHeader(String),
}
