//! The Prometheus endpoint: `GET /metrics` in the text format, 404 elsewhere.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use pingora_prometheus::PrometheusHttpApp;

/// Serves `/metrics` through `pingora-prometheus` (the default registry, where
/// [`switchyard_metrics::Metrics`] registers) and answers 404 on other paths.
#[derive(Debug, Default)]
pub struct MetricsApp;

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().uri.path() == "/metrics" {
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
pub fn service(addr: &str) -> Service<pingora::apps::http_app::HttpServer<MetricsApp>> {
    let mut svc = Service::new(
        "switchyard metrics".to_string(),
        pingora::apps::http_app::HttpServer::new_app(MetricsApp),
    );
    svc.add_tcp(addr);
    svc
}
