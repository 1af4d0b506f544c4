//! The connection layer: everything between an accepted socket and Pingora's HTTP session (or
//! the TCP proxy), and the builders of the listening services.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the services of `http`, `https` and `tcp` listeners ([`add`]) |
//! | `conn_limit.rs` | [`ConnLimit`]: `max_connections` |
//! | `keepalive.rs` | [`KeepAliveDriver`]: per-request head deadlines, keep-alive, pipelining, h2c |
//! | `deadline_stream.rs` | [`DeadlineStream`]: the stream the driver reads through |
//! | `head_scan.rs` | the pure HTTP/1 head scanner the stream uses |
//! | `proxy_accept.rs` | reading the PROXY header of a load balancer in front |
//! | `tls.rs` | [`tls::TlsTerminate`]: the TLS handshake of `https` listeners, bounded by `header_timeout_ms` |
//!
//! ## Limits on client connections (`[limits]`)
//!
//! Pingora reads a request head before any [`pingora::proxy::ProxyHttp`] hook runs, and the only
//! timeout it applies while doing so is a *per read* timeout (60 s by default), so a client that
//! trickles one byte every few seconds (slowloris) keeps a connection forever. The hooks
//! (`early_request_filter`, `Session::set_read_timeout`) only see a request once its head is
//! complete. The limits therefore live below HTTP, as [`ServerApp`] wrappers around the listener's
//! Pingora HTTP app:
//!
//! * [`KeepAliveDriver`] wraps each connection's stream in a [`DeadlineStream`]: from the first
//!   read of a request head, the whole head must arrive within `header_timeout_ms`, else the read
//!   fails and Pingora closes the connection (without a response, like NGINX's
//!   `client_header_timeout`). The deadline is armed again after each final response (the idle
//!   time of a keep-alive connection counts, like HAProxy's `timeout http-keep-alive` defaulting
//!   to `timeout http-request`). Request bodies and upgraded connections are not affected.
//! * [`ConnLimit`] counts a listener's open connections and answers the ones over
//!   `max_connections` with `503` and `Connection: close`, before reading anything (a `tcp`
//!   listener's are closed without a byte: [`ConnLimit::closing`]).
//!
//! * [`tls::TlsTerminate`] bounds the TLS handshake of an `https` connection by the same
//!   `header_timeout_ms`, from accept to the end of the handshake (the head deadline starts
//!   after it).
//!
//! They count in `switchyard_rejected_requests_total{listener, reason}` with the reasons
//! `header_timeout`, `max_connections`, `handshake_timeout` and `handshake_failed`.

mod conn_limit;
mod deadline_stream;
pub mod head_scan;
mod keepalive;
pub mod proxy_accept;
pub mod tls;

pub use conn_limit::{ConnLimit, TOO_MANY_CONNECTIONS};
pub use deadline_stream::{DeadlineStream, Preface, H2_PREFACE};
pub use keepalive::{KeepAliveDriver, KEEPALIVE_IDLE_MAX};

use std::sync::Arc;
use std::time::Duration;

use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use switchyard_config::{LimitsConfig, ListenerConfig, ListenerProtocol};
use switchyard_metrics::Metrics;

use crate::error::BuildError;
use crate::service::HttpGateway;
use crate::shared::Shared;
use crate::tcp::TcpProxy;

/// Adds the listening service of `l` to `server`: the HTTP gateway behind the limits (and a PROXY
/// header reader when asked) for `http` and `https` listeners, the TCP proxy for `tcp` ones.
pub fn add(
    server: &mut Server,
    conf: &Arc<ServerConf>,
    shared: &Arc<Shared>,
    l: &ListenerConfig,
    limits: &LimitsConfig,
) -> Result<(), BuildError> {
    let gateway = || HttpGateway::new(Arc::clone(shared), &l.name);
    let metrics = shared.metrics();
    match l.protocol {
        ListenerProtocol::Http if l.accept_proxy_protocol => {
            // The PROXY header first (its own time limit), then `[limits]` on HTTP heads.
            let driver = keep_alive_driver(conf, gateway(), l, limits, metrics);
            let app = proxy_accept::AcceptProxy::new(driver, l, metrics);
            server.add_service(service(app, l, limits, metrics));
        }
        ListenerProtocol::Http => {
            server.add_service(service(
                keep_alive_driver(conf, gateway(), l, limits, metrics),
                l,
                limits,
                metrics,
            ));
        }
        ListenerProtocol::Https => {
            https_service(server, conf, shared, gateway(), l, limits)?;
        }
        ListenerProtocol::Tcp => {
            server.add_service(tcp_service(Arc::clone(shared), l, limits));
        }
    }
    Ok(())
}

/// The most keep-alive rounds a wrapper hands one connection to its inner app.
pub const MAX_REUSES: usize = 1_000_000;

/// Hands `stream` to `inner` for every keep-alive round of the connection (an app returns the
/// stream when it may be reused), up to [`MAX_REUSES`]. Wrappers that must see the whole life of a
/// connection (a connection slot, a PROXY header read once) serve it through this.
pub async fn serve_all_rounds<A: ServerApp + Send + Sync + 'static>(
    inner: &Arc<A>,
    stream: Stream,
    shutdown: &ShutdownWatch,
) {
    let mut next = Some(stream);
    for _ in 0..MAX_REUSES {
        let Some(s) = next.take() else {
            return;
        };
        next = inner.process_new(s, shutdown).await;
    }
}

/// Counts one connection of `listener` refused or closed for `reason` in
/// `switchyard_rejected_requests_total`.
fn count(metrics: &Metrics, listener: &str, reason: &str) {
    metrics
        .rejected_requests_total
        .with_label_values(&[listener, reason])
        .inc();
}

/// The Pingora HTTP app of `gateway` on `listener` behind [`KeepAliveDriver`]
/// (`limits.header_timeout_ms`).
fn keep_alive_driver<SV>(
    conf: &Arc<ServerConf>,
    gateway: SV,
    listener: &ListenerConfig,
    limits: &LimitsConfig,
    metrics: &'static Metrics,
) -> KeepAliveDriver<pingora::proxy::HttpProxy<SV>>
where
    SV: pingora::proxy::ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    let timeout = Duration::from_millis(limits.header_timeout_ms);
    let mut proxy = pingora::proxy::http_proxy(conf, gateway);
    proxy.server_options = Some(server_options(listener, timeout));
    KeepAliveDriver::new(proxy, timeout, &listener.name, metrics)
}

/// Pingora's HTTP server options for `listener`: HTTP/2 with prior knowledge (h2c) on plain
/// `http` listeners (`https` ones offer HTTP/2 through ALPN), and an HTTP/2 connection with no
/// stream in flight for `idle` is closed, as an idle HTTP/1 keep-alive connection is after the
/// head deadline.
fn server_options(listener: &ListenerConfig, idle: Duration) -> pingora::apps::HttpServerOptions {
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2c = listener.protocol == ListenerProtocol::Http;
    options.h2_idle_timeout = Some(idle);
    options
}

/// The listening service of `listener`: `app` behind [`ConnLimit`] (`limits.max_connections`).
fn service<A>(
    app: A,
    listener: &ListenerConfig,
    limits: &LimitsConfig,
    metrics: &'static Metrics,
) -> pingora::services::listening::Service<ConnLimit<A>>
where
    A: ServerApp + Send + Sync + 'static,
{
    let mut svc = pingora::services::listening::Service::new(
        format!("listener {}", listener.name),
        ConnLimit::new(app, limits.max_connections, &listener.name, metrics),
    );
    svc.add_listener(
        pingora::listeners::ListenerConfig::tcp(listener.listen.to_string())
            .l4_buffer(read_buffer(listener, limits)),
    );
    svc
}

/// The L4 buffers of `listener`'s client connections: `limits.read_buffer_bytes` for reading
/// (by default 4 KiB for `http`, 64 KiB for `https`), Pingora's default for writing.
///
/// Pingora keeps a 64 KiB read buffer for the life of every client connection; for plain HTTP a
/// small one costs nothing (a request head fits, and body reads larger than the buffer bypass
/// it) and saves tens of KiB per idle keep-alive connection.
pub(crate) fn read_buffer(
    listener: &ListenerConfig,
    limits: &LimitsConfig,
) -> pingora::listeners::L4BufferSettings {
    pingora::listeners::L4BufferSettings::default().read(limits.read_buffer_for(listener.protocol))
}

/// An `https` listener: TLS termination ([`tls::TlsTerminate`]: certificates by SNI from the
/// current runtime, client certificates, HTTP/2 offered through ALPN, the handshake bounded by
/// `header_timeout_ms`) in front of the same HTTP gateway as plain listeners. With
/// `accept_proxy_protocol`, the PROXY header is read before the handshake.
fn https_service(
    server: &mut Server,
    conf: &Arc<ServerConf>,
    shared: &Arc<Shared>,
    gateway: HttpGateway,
    l: &ListenerConfig,
    limits: &LimitsConfig,
) -> Result<(), BuildError> {
    let has_tls = shared
        .snapshot()
        .listeners
        .iter()
        .any(|r| r.cfg.name == l.name && r.tls.is_some());
    if !has_tls {
        return Err(BuildError::Invalid {
            key: "tls".into(),
            reason: "an https listener needs a certificate".into(),
        }
        .within(format!("listener {}", l.name)));
    }
    let metrics = shared.metrics();
    let app = ConnLimit::new(
        keep_alive_driver(conf, gateway, l, limits, metrics),
        limits.max_connections,
        &l.name,
        metrics,
    );
    let deadline = Duration::from_millis(limits.header_timeout_ms);
    let tls = tls::TlsTerminate::new(app, Arc::clone(shared), &l.name, deadline);
    if l.accept_proxy_protocol {
        let app = proxy_accept::AcceptProxy::new(tls, l, metrics);
        server.add_service(endpoint(app, l, limits));
    } else {
        server.add_service(endpoint(tls, l, limits));
    }
    Ok(())
}

/// A listening service of `app` alone on `listener`'s TCP address.
fn endpoint<A>(
    app: A,
    listener: &ListenerConfig,
    limits: &LimitsConfig,
) -> pingora::services::listening::Service<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    let mut svc =
        pingora::services::listening::Service::new(format!("listener {}", listener.name), app);
    svc.add_listener(
        pingora::listeners::ListenerConfig::tcp(listener.listen.to_string())
            .l4_buffer(read_buffer(listener, limits)),
    );
    svc
}

/// The Pingora service of a `tcp` listener: a [`TcpProxy`] on the listener's address, at most
/// `limits.max_connections` connections at once (the others are closed at once).
fn tcp_service(
    shared: Arc<Shared>,
    listener: &ListenerConfig,
    limits: &LimitsConfig,
) -> pingora::services::listening::Service<ConnLimit<TcpProxy>> {
    let metrics = shared.metrics();
    let mut svc = pingora::services::listening::Service::new(
        format!("listener {}", listener.name),
        ConnLimit::closing(
            TcpProxy::new(shared, &listener.name),
            limits.max_connections,
            &listener.name,
            metrics,
        ),
    );
    svc.add_tcp(&listener.listen.to_string());
    svc
}
