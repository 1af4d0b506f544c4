//! The gRPC health check: `grpc.health.v1.Health/Check` over HTTP/2 (h2c, or h2 on TLS with
//! ALPN), on the connection [`crate::check`] opened (after the PROXY header and TLS, like HTTP
//! checks). The request and response types are `tonic-health`'s, the call is tonic's client, so
//! no protobuf or gRPC framing is written here.

use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::observer::CheckResult;

/// The gRPC part of a check.
#[derive(Debug)]
pub(crate) struct GrpcCheck {
    /// The service name sent in `HealthCheckRequest` (`""`: the whole server).
    pub(crate) service: String,
    /// `https` over TLS, `http` otherwise (the `:scheme` of the call).
    pub(crate) scheme: &'static str,
}

impl GrpcCheck {
    /// The method called, for log messages.
    pub(crate) const METHOD: &'static str = "/grpc.health.v1.Health/Check";

    /// Calls `Health/Check` over `io` with `:authority` `authority`; SERVING passes.
    pub(crate) async fn exchange<S>(&self, io: S, authority: &str) -> CheckResult
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let endpoint = match Endpoint::from_shared(format!("{}://{authority}", self.scheme)) {
            Ok(e) => e,
            Err(e) => return CheckResult::Protocol(format!("bad authority `{authority}`: {e}")),
        };
        // tonic asks its connector for a connection; this one hands over the one already open,
        // once.
        let slot = Arc::new(Mutex::new(Some(io)));
        let connector = tower::service_fn(move |_| {
            let io = slot.lock().ok().and_then(|mut s| s.take());
            async move {
                io.map(TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("the check connection was already used"))
            }
        });
        let channel = match endpoint.connect_with_connector(connector).await {
            Ok(c) => c,
            Err(e) => return CheckResult::Protocol(format!("HTTP/2: {}", source_chain(&e))),
        };
        let request = HealthCheckRequest {
            service: self.service.clone(),
        };
        match HealthClient::new(channel).check(request).await {
            Ok(resp) => match ServingStatus::try_from(resp.into_inner().status) {
                Ok(ServingStatus::Serving) => CheckResult::Pass { status: Some(200) },
                Ok(other) => CheckResult::NotServing(other.as_str_name().to_string()),
                Err(_) => CheckResult::NotServing("UNKNOWN".to_string()),
            },
            Err(status) => CheckResult::Protocol(format!(
                "gRPC status {} ({:?}): {}",
                status.code() as i32,
                status.code(),
                status.message()
            )),
        }
    }
}

/// An error and its sources, `: `-joined (tonic's transport errors say little on their own).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}
