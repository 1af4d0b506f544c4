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
mod forwarded_heads;
pub mod ready;
mod server_choice;

use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::headers::instance_id_value;
use crate::log_throttle::LogThrottle;
use crate::observe::Telemetry;
use crate::reject::{Reject, RejectCounters};
use crate::request_ctx::RequestCtx;
use crate::retry::FailureKind;
use crate::runtime::Runtime;
use crate::shared::Shared;

use admission::Admission;
use ready::{decided, done, finished, HookFuture};

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
    ///
    /// Written as `#[async_trait]` expands it: its future is ready and zero-sized ([`ready`]).
    fn early_request_filter<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        session: &'life1 mut Session,
        _ctx: &'life2 mut RequestCtx,
    ) -> HookFuture<'async_trait, Result<()>>
    where
        Self::CTX: Send + Sync,
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: Sync + 'async_trait,
    {
        session.downstream_session.set_pipelining_enabled(true);
        finished(Ok(()))
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// Admission (`admission.rs`). Written as `#[async_trait]` expands it: without extensions
    /// a routed request's future is ready and zero-sized ([`ready`]); only an answer to write,
    /// or the extensions' hooks, make it a boxed `async` future.
    fn request_filter<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        session: &'life1 mut Session,
        ctx: &'life2 mut RequestCtx,
    ) -> HookFuture<'async_trait, Result<bool>>
    where
        Self::CTX: Send + Sync,
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: Sync + 'async_trait,
    {
        if !self.shared.extensions().is_empty() {
            return Box::pin(self.admit(session, ctx));
        }
        match self.admit_now(session, ctx) {
            Ok(Admission::Routed) => decided(Ok(false)),
            Ok(Admission::Answer(answer)) => {
                Box::pin(async move { answer.send(session).await.map(|()| true) })
            }
            Err(e) => decided(Err(e)),
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        self.choose_peer(session, ctx).await
    }

    /// The route's rewrite and added fields, the forwarding fields, the client certificate's
    /// subject, `traceparent`; then the extensions' `on_upstream_request` hooks. Written as
    /// `#[async_trait]` expands it: without extensions its future is ready and zero-sized
    /// ([`ready`]).
    fn upstream_request_filter<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        session: &'life1 mut Session,
        upstream_request: &'life2 mut RequestHeader,
        ctx: &'life3 mut RequestCtx,
    ) -> HookFuture<'async_trait, Result<()>>
    where
        Self::CTX: Send + Sync,
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: Sync + 'async_trait,
    {
        match self.prepare_upstream_request(session, upstream_request, ctx) {
            Ok(true) if !self.shared.extensions().is_empty() => {
                Box::pin(self.upstream_request_extensions(upstream_request, ctx))
            }
            result => finished(result.map(|_| ())),
        }
    }

    /// Notes the status (retrying it on another server if the route says so) and a gRPC
    /// trailers-only status; tidies the framing fields. Written as `#[async_trait]` expands it:
    /// its future is ready and zero-sized ([`ready`]).
    fn upstream_response_filter<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        session: &'life1 mut Session,
        upstream_response: &'life2 mut ResponseHeader,
        ctx: &'life3 mut RequestCtx,
    ) -> HookFuture<'async_trait, Result<()>>
    where
        Self::CTX: Send + Sync,
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: Sync + 'async_trait,
    {
        finished(forwarded_heads::on_upstream_response(
            session,
            upstream_response,
            ctx,
        ))
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

    /// `X-Request-ID`, the extensions' `on_response` hooks, the sticky-session cookie. Written
    /// as `#[async_trait]` expands it: without extensions its future is ready and zero-sized
    /// ([`ready`]).
    fn response_filter<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        _session: &'life1 mut Session,
        upstream_response: &'life2 mut ResponseHeader,
        ctx: &'life3 mut RequestCtx,
    ) -> HookFuture<'async_trait, Result<()>>
    where
        Self::CTX: Send + Sync,
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: Sync + 'async_trait,
    {
        if self.shared.extensions().is_empty() {
            finished(forwarded_heads::prepare_response(upstream_response, ctx))
        } else {
            Box::pin(self.respond_through_extensions(upstream_response, ctx))
        }
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

    /// The attempt's outcome, the access log and spans, the route's metrics. Written as
    /// `#[async_trait]` expands it: its future is ready and zero-sized ([`ready`]).
    fn logging<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        session: &'life1 mut Session,
        e: Option<&'life2 Error>,
        ctx: &'life3 mut RequestCtx,
    ) -> HookFuture<'async_trait, ()>
    where
        Self::CTX: Send + Sync,
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: Sync + 'async_trait,
    {
        self.log_request(session, e, ctx);
        done()
    }
}

impl HttpGateway {
    /// What `logging` does: ends the attempt, writes the access log and spans, counts the
    /// request in its route's metrics.
    fn log_request(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
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
