//! The state one HTTP request carries through the hooks of [`crate::service::HttpGateway`]: its
//! runtime and route, the servers tried, the current [`Attempt`], retry counts, the client, and a
//! gRPC call's deadline and status.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;
use switchyard_balance::{ServerId, Tried};

use crate::attempt::Attempt;
use crate::extension::ExtContext;
use crate::grpc::GrpcCall;
use crate::observe::trace_context::{SpanId, TraceContext};
use crate::observe::tracer::AttemptSpan;
use crate::retry::{FailureKind, Reconnect, Retries};
use crate::retry_budget::{self, RetryTicket};
use crate::router::Params;
use crate::runtime::Runtime;

/// Per-request state.
#[derive(Debug)]
pub struct RequestCtx {
    pub(crate) rt: Option<Arc<Runtime>>,
    pub(crate) listener: usize,
    pub(crate) route: Option<usize>,
    pub(crate) params: Params,
    pub(crate) key: Option<u64>,
    pub(crate) tried: Tried,
    pub(crate) attempt: Option<Attempt>,
    pub(crate) retries: Retries,
    /// A reused keep-alive connection failed before any response byte: the next attempt goes
    /// to this server again, on a fresh connection (once per request).
    pub(crate) reconnect: Reconnect,
    pub(crate) last_failure: Option<FailureKind>,
    pub(crate) upstream_status: Option<u16>,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) client_host: Option<HeaderValue>,
    /// The request id: the client's `X-Request-Id` if valid, else a generated one.
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) sticky_target: Option<ServerId>,
    /// Set for a gRPC call (`content-type: application/grpc…`).
    pub(crate) grpc: Option<GrpcCall>,
    pub(crate) ext: ExtContext,
    pub(crate) start: Instant,
    /// The request's trace and Switchyard's server span (set in `request_filter`).
    pub(crate) trace: Option<TraceContext>,
    /// The span id of the current attempt, sent upstream as the `traceparent` parent.
    pub(crate) attempt_span: SpanId,
    /// Attempts begun (0 for a request refused before reaching a server).
    pub(crate) attempts: u32,
    /// The last server tried (kept only when requests are recorded).
    pub(crate) server: Option<ServerId>,
    /// Why the proxy refused or failed the request: the access log's `error` word.
    pub(crate) error: Option<&'static str>,
    /// The attempts' client spans (kept only for sampled requests with `[tracing]`).
    pub(crate) spans: Vec<AttemptSpan>,
    /// No server had room (every one at its `max_in_flight`, the queue full or timed out): the
    /// 503 carries `Retry-After`.
    pub(crate) overloaded: bool,
    /// `deadline_ms` of the route, from the request's start: every try, the backoff between
    /// them and queueing must end by then.
    pub(crate) deadline: Option<Instant>,
    /// The response head just received has a status of `retry_on_statuses` and is being
    /// retried (its body is dropped with the connection).
    pub(crate) status_retry: bool,
    /// The request's place in its upstream's retry budget, from its first retry on.
    pub(crate) retry_ticket: Option<RetryTicket>,
}

impl RequestCtx {
    /// The state of a request that just arrived.
    pub(crate) fn new() -> Self {
        RequestCtx {
            rt: None,
            listener: 0,
            route: None,
            params: Params::default(),
            key: None,
            tried: Tried::default(),
            attempt: None,
            retries: Retries::default(),
            reconnect: Reconnect::Unused,
            last_failure: None,
            upstream_status: None,
            client_ip: None,
            client_host: None,
            request_id: None,
            sticky_target: None,
            grpc: None,
            ext: ExtContext::new(),
            start: Instant::now(),
            trace: None,
            attempt_span: [0; 8],
            attempts: 0,
            server: None,
            error: None,
            spans: Vec::new(),
            overloaded: false,
            deadline: None,
            status_retry: false,
            retry_ticket: None,
        }
    }

    /// The matched route's index, once routed.
    pub fn route(&self) -> Option<usize> {
        self.route
    }
    /// The client's address.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The request id, for log lines about the request.
    pub fn request_id(&self) -> &str {
        self.request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    }

    /// Ends the current attempt as a failure of `kind`.
    pub(crate) fn fail_attempt(&mut self, kind: FailureKind) {
        self.last_failure = Some(kind);
        if let Some(a) = self.attempt.take() {
            log::warn!(
                "upstream {} server {} failed: {kind:?} (request {})",
                a.upstream().cfg.name,
                a.id(),
                self.request_id()
            );
            a.fail(kind);
            self.end_attempt_span(None, Some(kind.as_str()));
        }
    }

    /// Ends the current attempt's client span (if one is kept) with the server's `status` or
    /// the failure `error`.
    pub(crate) fn end_attempt_span(&mut self, status: Option<u16>, error: Option<&'static str>) {
        if let Some(span) = self.spans.last_mut().filter(|s| s.end.is_none()) {
            span.end = Some(Instant::now());
            span.status = status;
            span.error = error;
        }
    }

    /// True if another attempt is allowed: by the route's retry policy (`after_send` if the
    /// failed attempt had sent the request), by its `deadline_ms`, and by the upstream's retry
    /// budget (whose place the request takes on its first retry; a denial is counted).
    pub(crate) fn may_retry(&mut self, after_send: bool) -> bool {
        let Some((rt, r)) = self.rt.as_ref().zip(self.route) else {
            return false;
        };
        let route = &rt.routes[r];
        if !route.retry.allows(&self.retries, after_send) || self.deadline_passed() {
            return false;
        }
        if self.retry_ticket.is_none() {
            self.retry_ticket = retry_budget::take(&rt.upstreams[route.upstream]);
        }
        self.retry_ticket.is_some()
    }

    /// True if the route's `deadline_ms` has passed.
    pub(crate) fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Time left before the route's `deadline_ms`, if it has one.
    pub(crate) fn time_left(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}
