//! The HTTP gateway: Pingora's [`ProxyHttp`] implemented over a [`Runtime`].
//!
//! The one `impl ProxyHttp` is here, its hooks in the order Pingora calls them, so that a
//! request's life reads top to bottom; the larger hooks delegate to a module each:
//!
//! - `request_filter` → `admission.rs`: request id and trace, security group, request hygiene
//!   ([`crate::hygiene`]), loop detection, route match, rate limit, cascade signature, request
//!   key ([`crate::request_key`]);
//! - `upstream_peer` → `server_choice.rs`: pick a server not yet tried, begin an [`Attempt`];
//! - `upstream_request_filter` (rewrite, forwarding headers) and the response filters, here;
//! - `fail_to_connect` / `error_while_proxy` / `fail_to_proxy` → `failure.rs`: end the attempt,
//!   ask the route's [`RetryPolicy`](crate::retry::RetryPolicy) whether to try another server,
//!   answer the client;
//! - `logging`, here: the attempt's outcome, the access log, route metrics.
//!
//! [`Attempt`]: crate::attempt::Attempt

mod admission;
mod failure;
mod server_choice;

use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::added_headers;
use crate::extension::RequestInfo;
use crate::headers::{instance_id_value, set_forwarding};
use crate::hygiene::tidy_response_framing;
use crate::log_throttle::LogThrottle;
use crate::observe::trace_context::traceparent;
use crate::observe::Telemetry;
use crate::reject::{Reject, RejectCounters};
use crate::request_ctx::RequestCtx;
use crate::retry::FailureKind;
use crate::runtime::Runtime;
use crate::shared::Shared;

/// The HTTP gateway service of one listener.
#[derive(Debug, Clone)]
pub struct HttpGateway {
    shared: Arc<Shared>,
    listener: String,
    /// The listener's position in the runtime it was built with: checked by name on use, so a
    /// reload that moves it only costs the lookup by name.
    listener_hint: Option<usize>,
    /// `switchyard_rejected_requests_total{listener}` by [`Reject`] reason.
    rejected: Arc<RejectCounters>,
    /// `instance_id` as the `CDN-Loop` entry (`None` if it is not a valid header value).
    cdn_loop_id: Option<HeaderValue>,
    /// The access log and span exporter.
    telemetry: Arc<Telemetry>,
    /// Throttles the `warn` lines about malformed requests.
    malformed_log: Arc<LogThrottle>,
}

impl HttpGateway {
    /// The service for listener `listener` (by name).
    pub fn new(shared: Arc<Shared>, listener: &str) -> Self {
        HttpGateway {
            cdn_loop_id: instance_id_value(shared.instance_id()),
            listener_hint: shared.snapshot().listener_index(listener),
            rejected: Arc::default(),
            telemetry: shared.telemetry(),
            malformed_log: Arc::default(),
            shared,
            listener: listener.to_string(),
        }
    }

    /// This listener's index in `rt`, if `rt` still has it.
    fn listener_index(&self, rt: &Runtime) -> Option<usize> {
        match self.listener_hint {
            Some(i)
                if rt
                    .listeners
                    .get(i)
                    .is_some_and(|l| l.cfg.name == self.listener) =>
            {
                Some(i)
            }
            _ => rt.listener_index(&self.listener),
        }
    }

    /// Counts a refused request and notes the reason for the access log.
    fn reject(&self, ctx: &mut RequestCtx, reason: Reject) {
        ctx.error = Some(reason.label());
        self.rejected
            .count(self.shared.metrics(), &self.listener, reason);
    }
}

#[async_trait]
impl ProxyHttp for HttpGateway {
    type CTX = RequestCtx;

    /// No downstream modules. Pingora's default installs a disabled response-compression module
    /// (for `session.downstream_compression` to switch on per request), which Switchyard never
    /// uses; it would still cost every request a module context and its filter calls.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    /// HTTP/1.1 pipelining: requests a client sends before reading earlier answers are served
    /// in order on the same connection (NGINX and HAProxy do; Pingora's default closes the
    /// connection after the first answer). Carried by Pingora to every later request of the
    /// connection; a no-op for HTTP/2.
    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut RequestCtx) -> Result<()>
    where
        Self::CTX: Send + Sync,
    {
        session.downstream_session.set_pipelining_enabled(true);
        Ok(())
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        self.admit(session, ctx).await
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        self.choose_peer(session, ctx).await
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(rt) = ctx.rt.as_ref() else {
            return Ok(());
        };
        let listener = &rt.listeners[ctx.listener];
        // Room for every field added below at once: each header map (the request's clone is
        // exactly full) grows once instead of at every other insert.
        upstream_request.reserve_headers(added_headers::UPSTREAM_REQUEST_FIELDS)?;
        if let Some(route_idx) = ctx.route {
            crate::upstream_request::apply_route(
                upstream_request,
                session.req_header(),
                rt,
                route_idx,
                ctx,
                self.shared.instance_id(),
            )?;
        }
        let Some(cdn_loop_id) = &self.cdn_loop_id else {
            // Unreachable with a validated configuration (an instance id is an HTTP token).
            return Err(Error::explain(
                ErrorType::InvalidHTTPHeader,
                "invalid value while insert",
            ));
        };
        set_forwarding(
            upstream_request,
            ctx.client_ip,
            listener.scheme(),
            ctx.client_host.clone(),
            cdn_loop_id,
        )?;
        crate::listener_tls::subject::forward_subject(
            upstream_request,
            session.digest(),
            listener.tls.as_ref().is_some_and(|t| t.verifies_clients()),
        )?;
        if let Some(trace) = &ctx.trace {
            added_headers::insert_request(
                upstream_request,
                &added_headers::TRACEPARENT,
                traceparent(&trace.trace_id, &ctx.attempt_span, trace.sampled),
            );
        }
        if !self.shared.extensions().is_empty() {
            let info = RequestInfo {
                listener: &self.listener,
                route: ctx.route.map(|r| &rt.routes[r].cfg),
                server: ctx.attempt.as_ref().map(|a| a.id()),
                client_ip: ctx.client_ip,
            };
            for ext in self.shared.extensions() {
                ext.on_upstream_request(upstream_request, &info, &mut ctx.ext)
                    .await?;
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        ctx.upstream_status = Some(status);
        if failure::retry_on_status(session, ctx, status) {
            // Dropped with its connection: the body of a retried response is never forwarded.
            ctx.status_retry = true;
            return Err(Error::explain(
                ErrorType::HTTPStatus(status),
                "response status retried on another server (retry_on_statuses)",
            ));
        }
        if let Some(call) = ctx.grpc.as_mut() {
            // A trailers-only answer carries its status in the header block.
            call.note_status(&upstream_response.headers);
        }
        tidy_response_framing(upstream_response);
        if let Some(a) = ctx.attempt.as_mut() {
            a.response_head();
        }
        Ok(())
    }

    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        upstream_trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(call) = ctx.grpc.as_mut() {
            call.note_status(upstream_trailers);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(id) = &ctx.request_id {
            added_headers::insert_response(
                upstream_response,
                &added_headers::X_REQUEST_ID,
                id.clone(),
            );
        }
        if !self.shared.extensions().is_empty() {
            let info = RequestInfo {
                listener: &self.listener,
                route: ctx
                    .rt
                    .as_ref()
                    .zip(ctx.route)
                    .map(|(rt, r)| &rt.routes[r].cfg),
                server: ctx.attempt.as_ref().map(|a| a.id()),
                client_ip: ctx.client_ip,
            };
            for ext in self.shared.extensions() {
                ext.on_response(upstream_response, &info, &mut ctx.ext)
                    .await?;
            }
        }
        let (Some(a), Some(rt)) = (ctx.attempt.as_ref(), ctx.rt.as_ref()) else {
            return Ok(());
        };
        if let Some(sticky) = &a.upstream().sticky {
            if ctx.sticky_target.as_ref() != Some(a.id()) {
                let https = rt.listeners[ctx.listener].scheme() == "https";
                upstream_response
                    .append_header(http::header::SET_COOKIE, sticky.set_cookie(a.id(), https))?;
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.connect_failed(session, peer, ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        self.proxy_failed(peer, session, e, ctx, client_reused)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        self.answer_failure(session, e, ctx).await
    }

    /// A client that went away (closed, reset, or failed a read or write) is not a proxy error:
    /// Pingora's `error!("Fail to proxy: …")` is replaced by an `info` line, as NGINX logs
    /// "client prematurely closed connection" at `info`. Everything else keeps Pingora's log.
    fn suppress_error_log(&self, session: &Session, ctx: &RequestCtx, e: &Error) -> bool {
        let client_gone = e.esource() == &ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            );
        if client_gone {
            log::info!(
                "client closed the connection before the response was complete: {} {} ({:?}, \
                 request {})",
                session.req_header().method,
                session.req_header().uri,
                e.etype(),
                ctx.request_id()
            );
        }
        client_gone
    }

    /// The request in Pingora's own error lines ("Fail to proxy: …"): method, path, host and
    /// the request id.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        format!(
            "{}, request_id: {}",
            session.as_ref().request_summary(),
            ctx.request_id()
        )
    }

    async fn malformed_request(&self, session: &mut ServerSession, e: &Error) {
        let refusal = crate::malformed::Refusal {
            listener: &self.listener,
            rejected: &self.rejected,
            metrics: self.shared.metrics(),
            telemetry: &self.telemetry,
            log: &self.malformed_log,
        };
        crate::malformed::answer(refusal, session, e).await;
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let code = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        // One clock read for the metrics and the access log / spans.
        let now = std::time::Instant::now();
        let elapsed = now.saturating_duration_since(ctx.start).as_secs_f64();
        let grpc_status = ctx.grpc.as_ref().and_then(|c| c.status);
        if let Some(a) = ctx.attempt.take() {
            match (ctx.upstream_status, e) {
                (Some(status), _) => {
                    a.answered_grpc(status, grpc_status);
                    ctx.end_attempt_span(Some(status), None);
                }
                (None, Some(_)) => {
                    a.errored();
                    ctx.end_attempt_span(None, Some(FailureKind::Error.as_str()));
                }
                // Ended before the server was asked anything (the client went away).
                (None, None) => drop(a),
            }
        }
        if self.telemetry.records() {
            crate::request_log::record(&self.telemetry, session, e, ctx, &self.listener, code, now);
        }
        match (ctx.rt.as_ref(), ctx.route) {
            (Some(rt), Some(r)) => {
                let metrics = &rt.routes[r].metrics;
                metrics.observe(code, elapsed);
                if let Some(status) = grpc_status {
                    metrics.observe_grpc(status);
                }
            }
            _ => self.shared.metrics().count_unrouted(code),
        }
    }
}
