//! Switchyard's Pingora services: the HTTP gateway ([`service::HttpGateway`]), routing, retries,
//! forwarding headers, and the builder that turns a [`switchyard_config::Config`] into a ready
//! Pingora [`pingora::server::Server`].
//!
//! ```no_run
//! let cfg = switchyard_config::load_file("conf/demo.toml").unwrap();
//! let gateway = switchyard_proxy::Gateway::build(cfg, None).unwrap();
//! gateway.run(); // never returns
//! ```

pub mod background;
pub mod cascade;
pub mod dns;
pub mod extension;
pub mod gateway;
pub mod headers;
pub mod health_observer;
pub mod host;
pub mod listener_tls;
pub mod metrics_endpoint;
pub mod normalize;
pub mod proxy_accept;
pub mod proxy_protocol;
pub mod reload;
pub mod responses;
pub mod rewrite;
pub mod router;
pub mod runtime;
pub mod service;
pub mod sticky;
pub mod tcp;
pub mod upstream_tls;

pub use gateway::Gateway;
pub use runtime::{BuildError, Runtime};
pub use service::{HttpGateway, Shared};
