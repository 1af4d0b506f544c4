//! Switchyard's Pingora services: the HTTP gateway ([`service::HttpGateway`]), routing, retries,
//! forwarding headers, and the builder that turns a [`switchyard_config::Config`] into a ready
//! Pingora [`pingora::server::Server`].
//!
//! ```no_run
//! let cfg = switchyard_config::load_file("conf/demo.toml").unwrap();
//! let gateway = switchyard_proxy::Gateway::build(cfg, None).unwrap();
//! gateway.run(); // never returns
//! ```

pub mod added_headers;
pub mod attempt;
pub mod background;
pub mod cascade;
pub mod dns;
pub mod error;
pub mod extension;
pub mod fleet;
pub mod gateway;
pub mod grpc;
pub mod headers;
pub mod health_observer;
pub mod health_spec;
pub mod host;
pub mod hygiene;
pub mod listener;
pub mod listener_tls;
pub mod log_throttle;
mod malformed;
pub mod metrics_endpoint;
pub mod normalize;
pub mod observe;
pub mod overload;
mod peer;
pub mod pem;
pub mod proxy_protocol;
pub mod rate_limit;
pub mod reject;
pub mod reload;
pub mod request_ctx;
pub mod request_key;
mod request_log;
pub mod responses;
pub mod retry;
pub mod retry_budget;
pub mod rewrite;
pub mod router;
pub mod runtime;
pub mod service;
pub mod shared;
pub mod shutdown;
pub mod sticky;
pub mod tcp;
mod tls_any_cert;
mod upstream_request;
pub mod upstream_tls;
pub mod value_slab;

pub use error::BuildError;
pub use fleet::{ClusterView, Fleet, MemberView, ServerOverride};
pub use gateway::Gateway;
pub use runtime::Runtime;
pub use service::HttpGateway;
pub use shared::Shared;
