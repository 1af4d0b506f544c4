//! A real gRPC origin and client for Switchyard's tests, demos and benchmarks: an echo service
//! with all four call shapes (`switchyard.test.Echo`, see `proto/echo.proto`) and the standard
//! `grpc.health.v1.Health` service, served by tonic over h2c or h2 with TLS.
//!
//! The origin's behaviour is steered per call by request metadata, so a test can make it slow or
//! fail without a second service:
//!
//! | metadata             | effect                                                            |
//! |----------------------|-------------------------------------------------------------------|
//! | `x-delay-ms: N`      | wait N ms before answering (streams: before the response headers) |
//! | `x-gap-ms: N`        | server streaming: N ms between messages (a quiet stream)          |
//! | `x-fail-code: N`     | answer with gRPC status N (and `x-fail-message` as its message)    |
//! | `x-echo-*: v`        | sent back as response header metadata                              |
//! | `x-trailer: v`       | sent back as trailer `x-trailer-echo: v` (with the final status)   |
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let origin = grpc_echo::Origin::start("a", None).await?;
//! let mut client = grpc_echo::client::h2c(origin.addr).await?;
//! let reply = client
//!     .unary_echo(grpc_echo::pb::EchoRequest { message: "hi".into(), ..Default::default() })
//!     .await?;
//! assert_eq!(reply.get_ref().server, "a");
//! # Ok(()) }
//! ```

pub mod client;
pub mod pb;
mod service;
mod tls_io;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

pub use service::{EchoService, Stats};
pub use tonic_health::ServingStatus;

/// A running origin: its address, counters and health switch. Stops when dropped.
pub struct Origin {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    /// Calls seen, calls in flight, the most in flight at once.
    pub stats: Arc<Stats>,
    health: tonic_health::server::HealthReporter,
    stop: Option<oneshot::Sender<()>>,
}

impl Origin {
    /// Starts an origin on a free loopback port; `tls` = `Some` serves h2 over TLS (the config
    /// should offer ALPN `h2`), `None` serves h2c.
    pub async fn start(
        label: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Origin> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, label, tls).await
    }

    /// Serves on a listener the caller bound (for a fixed port).
    pub async fn serve(
        listener: TcpListener,
        label: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Origin> {
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", ServingStatus::Serving).await;
        let echo = pb::echo_server::EchoServer::new(EchoService::new(label, stats.clone()))
            .max_decoding_message_size(16 << 20);
        let (stop, stopped) = oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(echo);
        let shutdown = async {
            let _ = stopped.await;
        };
        match tls {
            None => {
                let accepted = stats.clone();
                let incoming = TcpListenerStream::new(listener).map(move |conn| {
                    if conn.is_ok() {
                        accepted.connections.fetch_add(1, Ordering::SeqCst);
                    }
                    conn
                });
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown));
            }
            Some(cfg) => {
                let incoming = tls_io::incoming(listener, cfg, stats.clone());
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown));
            }
        }
        Ok(Origin {
            addr,
            stats,
            health,
            stop: Some(stop),
        })
    }

    /// Sets what `grpc.health.v1.Health/Check` answers for `service` (`""` = the whole server).
    pub async fn set_health(&self, service: &str, status: ServingStatus) {
        self.health.set_service_status(service, status).await;
    }

    /// Makes every call wait `ms` more before answering (a slow origin).
    pub fn set_delay_ms(&self, ms: u64) {
        self.stats.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Makes every call fail with gRPC status `code` (0: answer normally again).
    pub fn set_fail_code(&self, code: u64) {
        self.stats.fail_code.store(code, Ordering::SeqCst);
    }

    /// Connections this origin has accepted (TLS: completed handshakes).
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Calls this origin has started.
    pub fn calls(&self) -> u64 {
        self.stats.calls.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Counts one call for the lifetime of the guard.
pub(crate) struct InFlight(Arc<Stats>);

impl InFlight {
    pub(crate) fn start(stats: &Arc<Stats>) -> InFlight {
        stats.calls.fetch_add(1, Ordering::SeqCst);
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
