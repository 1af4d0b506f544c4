//! A real OTLP/HTTP (protobuf) trace receiver on 127.0.0.1, plain or over TLS: hyper, decoding
//! every `ExportTraceServiceRequest` with the `opentelemetry-proto` types. It runs on the
//! calling test's tokio runtime.

use super::*;

use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A span as received, with its resource's `service.name`.
#[derive(Debug, Clone)]
pub struct Received {
    pub service: String,
    pub span: Span,
}

/// The receiver.
pub struct Collector {
    pub addr: SocketAddr,
    pub spans: Arc<Mutex<Vec<Received>>>,
    /// `(path, content-type)` of every POST.
    pub posts: Arc<Mutex<Vec<(String, String)>>>,
    tls: bool,
}

impl Collector {
    /// A plain-HTTP receiver.
    pub async fn start() -> Collector {
        Self::start_with(None).await
    }

    /// A receiver over TLS with `cert` (issued for `127.0.0.1`).
    pub async fn start_tls(cert: &IssuedCert) -> Collector {
        let config = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())
            .unwrap();
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let posts: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (s, p) = (spans.clone(), posts.clone());
        let is_tls = tls.is_some();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (spans, posts) = (s.clone(), p.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (spans, posts) = (spans.clone(), posts.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let ctype = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            posts.lock().unwrap().push((path, ctype));
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).unwrap();
                            for rs in export.resource_spans {
                                let service = rs
                                    .resource
                                    .as_ref()
                                    .and_then(|r| string_attr(&r.attributes, "service.name"))
                                    .unwrap_or_default();
                                for ss in rs.scope_spans {
                                    for span in ss.spans {
                                        spans.lock().unwrap().push(Received {
                                            service: service.clone(),
                                            span,
                                        });
                                    }
                                }
                            }
                            let answer = ExportTraceServiceResponse::default().encode_to_vec();
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(bytes::Bytes::from(answer)))
                                    .unwrap(),
                            )
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(conn).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(conn), svc).await;
                        }
                    }
                });
            }
        });
        Collector {
            addr,
            spans,
            posts,
            tls: is_tls,
        }
    }

    /// The endpoint URL (`http://` or `https://127.0.0.1:<port>/v1/traces`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/v1/traces", self.addr)
    }

    /// Every span received so far.
    pub fn all(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of trace `trace` (hex), once at least `n` arrived (waits ≤ 8 s; `n` = 0: no
    /// wait).
    pub fn wait_trace(&self, trace: &str, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let got: Vec<Received> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|r| hex(&r.span.trace_id) == trace)
                .cloned()
                .collect();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The string attribute `key`.
pub fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(AnyValue::StringValue(s)) => Some(s.clone()),
            _ => None,
        }
    })
}

/// The integer attribute `key`.
pub fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(AnyValue::IntValue(i)) => Some(*i),
            _ => None,
        }
    })
}
