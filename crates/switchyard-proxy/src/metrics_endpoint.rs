//! The Prometheus endpoint: `GET /metrics` in the text format, 404 elsewhere.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use pingora_prometheus::PrometheusHttpApp;

/// Serves `/metrics` through `pingora-prometheus` (the default registry, where
/// [`switchyard_metrics::Metrics`] registers) and answers 404 on other paths. Before each scrape
/// it copies the live per-server state (in-flight count, health, EWMA latency) into its gauges, so those cost
/// nothing on the request path.
#[derive(Debug, Default)]
pub struct MetricsApp {
    shared: Option<std::sync::Arc<crate::shared::Shared>>,
}

impl MetricsApp {
    /// The endpoint for a gateway's shared state.
    pub fn new(shared: std::sync::Arc<crate::shared::Shared>) -> Self {
        MetricsApp {
            shared: Some(shared),
        }
    }

    fn refresh_gauges(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let rt = shared.snapshot();
        for up in &rt.upstreams {
            let now_ns = up.pool.now_nanos();
            for server in up.pool.snapshot().servers() {
                if let Some(m) = up.server_metrics(&server.spec.id) {
                    m.in_flight.set(i64::from(server.stats.in_flight()));
                    m.healthy.set(i64::from(server.stats.is_healthy()));
                    m.ewma_seconds.set(server.stats.ewma_nanos(now_ns) / 1e9);
                }
            }
        }
    }
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().uri.path() == "/metrics" {
            self.refresh_gauges();
            return PrometheusHttpApp.response(session).await;
        }
        let body = b"404 Not Found: metrics are at /metrics\n".to_vec();
        let mut resp = Response::new(body);
        *resp.status_mut() = http::StatusCode::NOT_FOUND;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let len = resp.body().len();
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
        resp
    }
}

/// The metrics service listening on `addr`.
pub fn service(
    addr: &str,
    shared: std::sync::Arc<crate::shared::Shared>,
) -> Service<pingora::apps::http_app::HttpServer<MetricsApp>> {
    let mut svc = Service::new(
        "switchyard metrics".to_string(),
        pingora::apps::http_app::HttpServer::new_app(MetricsApp::new(shared)),
    );
    svc.add_tcp(addr);
    svc
}
