//! The HTTP gateway: Pingora's [`ProxyHttp`] implemented over a [`Runtime`].
//!
//! Longer than the crate's usual ~500 lines on purpose: it is the one `impl ProxyHttp`, whose
//! hooks are kept together in the order Pingora calls them so that a request's life reads top to
//! bottom here; each hook's work lives in the module it names (hygiene, keys, peer, retries,
//! gRPC, the upstream request).
//!
//! A request's life, in the order of this file: `request_filter` (security group, request
//! hygiene ([`crate::hygiene`]), loop detection, route match, cascade signature, request key
//! ([`crate::request_key`])) → `upstream_peer` (pick a server not yet tried, begin an
//! [`Attempt`]) → `upstream_request_filter` (rewrite, forwarding headers) → the response filters
//! → `logging` (the attempt's outcome, route metrics). Connect failures and failures after
//! sending go through `fail_to_connect` / `error_while_proxy`, which end the attempt and ask the
//! route's [`RetryPolicy`](crate::retry::RetryPolicy) whether to try another server.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use switchyard_balance::{Clock, MonotonicClock};
use switchyard_config::RouteConfig;

use crate::added_headers;
use crate::attempt::Attempt;
use crate::cascade;
use crate::extension::{Decision, RequestInfo};
use crate::grpc::{self, GrpcCall, GrpcStatus};
use crate::headers::{instance_id_value, loop_detected, request_host, set_forwarding, strip_port};
use crate::host::route_name;
use crate::hygiene::{sanitize, tidy_response_framing};
use crate::log_throttle::LogThrottle;
use crate::observe::request_id;
use crate::observe::trace_context::{new_span_id, traceparent, TraceContext, TRACEPARENT};
use crate::observe::tracer::AttemptSpan;
use crate::observe::Telemetry;
use crate::overload::{self, NoServer};
use crate::rate_limit::Verdict;
use crate::reject::{Reject, RejectCounters};
use crate::request_ctx::RequestCtx;
use crate::request_key::{client_ip, cookie_value, hash_key, rate_limit_key};
use crate::responses::{
    body_for, respond, respond_decision, respond_with, LOOP_DETECTED, OVERLOADED,
};
use crate::retry::{
    failure_kind, failure_status, request_not_written, stale_connection, FailureKind, Reconnect,
};
use crate::retry_budget::backoff;
use crate::runtime::{Runtime, UpstreamRuntime};
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

    /// Runs the extensions' request hooks: `before_routing` when `route` is `None`, else
    /// `on_request`. True if one of them answered the client (the request goes no further).
    async fn request_hooks(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: Option<&RouteConfig>,
    ) -> Result<bool> {
        for ext in self.shared.extensions() {
            let info = RequestInfo {
                listener: &self.listener,
                route,
                server: None,
                client_ip: ctx.client_ip,
            };
            let req = session.req_header_mut();
            let decision = match route {
                None => ext.before_routing(req, &info, &mut ctx.ext).await,
                Some(_) => ext.on_request(req, &info, &mut ctx.ext).await,
            };
            if let Decision::Respond {
                status,
                headers,
                body,
            } = decision
            {
                respond_decision(session, status, headers, body).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl HttpGateway {
    /// Gives the request its id (kept or generated, and set on the request so that upstreams,
    /// extensions and the proxy's own answers see it) and its trace (continued or started).
    fn identify(&self, req: &mut RequestHeader, ctx: &mut RequestCtx) -> Result<()> {
        // One draw for the id, the trace and the server span.
        let random = request_id::draw::<40>();
        let (id_bytes, trace_bytes) = random.split_at(16);
        let incoming = req.headers.get(request_id::HEADER);
        let id = request_id::of_request(incoming, id_bytes.try_into().unwrap_or(&[0; 16]));
        if incoming != Some(&id) {
            added_headers::insert_request(req, &added_headers::X_REQUEST_ID, id.clone());
        }
        ctx.request_id = Some(id);
        let telemetry = &self.telemetry;
        ctx.trace = Some(TraceContext::of_request(
            req.headers.get(TRACEPARENT),
            |t| telemetry.sample_new(t),
            trace_bytes.try_into().unwrap_or(&[0; 24]),
        ));
        Ok(())
    }
}

/// The verdict on the `Switchyard-Cascade` signature of `req`, for a route with
/// `require_cascade`.
fn verify_cascade(rt: &Runtime, req: &RequestHeader) -> cascade::Verdict {
    match &rt.cascade {
        Some(v) => cascade::verify(
            &v.key,
            &v.allowed,
            req.headers
                .get(&cascade::HEADER_NAME)
                .and_then(|h| h.to_str().ok()),
            cascade::unix_now(),
            req.method.as_str(),
            req.uri.path(),
        ),
        None => cascade::Verdict::Unauthorized,
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
        self.identify(session.req_header_mut(), ctx)?;
        let rt = self.shared.runtime();
        let Some(li) = self.listener_index(&rt) else {
            // The listener was removed by a reload: it keeps serving until the process is
            // upgraded, but has no routes any more.
            respond(session, 404).await?;
            return Ok(true);
        };
        ctx.listener = li;
        // `[limits] body_timeout_ms`: the longest wait between two reads of the request body
        // (HTTP/1; Pingora's HTTP/2 session has no read timeout), also while the body of a
        // refused request is drained. An upgrade gets the route's `tunnel_timeout_ms` instead,
        // in `upstream_peer`.
        session.set_read_timeout(Some(Duration::from_millis(
            rt.config.limits.body_timeout_ms,
        )));
        let listener = &rt.listeners[li];
        ctx.client_ip = client_ip(session.client_addr());
        if let Some(ip) = ctx.client_ip {
            if !listener.admits(ip) {
                self.reject(ctx, Reject::Acl);
                respond(session, 403).await?;
                return Ok(true);
            }
        }
        let limits = &rt.config.limits;
        if let Err(reason) = sanitize(session.req_header_mut(), limits.encoded_slashes) {
            self.reject(ctx, reason);
            // The connection is not trusted with another request (as NGINX and HAProxy do
            // after a 400).
            session.set_keepalive(None);
            respond(session, 400).await?;
            return Ok(true);
        }
        if loop_detected(session.req_header(), self.shared.instance_id()) {
            self.reject(ctx, Reject::Loop);
            respond(session, LOOP_DETECTED).await?;
            return Ok(true);
        }
        if self.request_hooks(session, ctx, None).await? {
            return Ok(true);
        }
        let req = session.req_header();
        let host = request_host(req);
        ctx.client_host = match req.headers.get(http::header::HOST) {
            Some(h) => Some(h.clone()),
            None if host.is_empty() => None,
            None => HeaderValue::from_str(host).ok(),
        };
        let Some((route_idx, params)) = listener.router.find(
            route_name(strip_port(host)),
            req.uri.path(),
            req.method.as_str(),
        ) else {
            if req.method == http::Method::TRACE {
                self.reject(ctx, Reject::Method);
                respond(session, 405).await?;
            } else {
                self.reject(ctx, Reject::NoRoute);
                respond(session, 404).await?;
            }
            return Ok(true);
        };
        ctx.route = Some(route_idx);
        ctx.params = params;
        let route = &rt.routes[route_idx];
        // `[routes.rate_limit]`: before any upstream work (and before cascade signatures).
        if let Some(limit) = &route.rate_limit {
            let key = rate_limit_key(req, ctx.client_ip, &limit.key);
            if let Verdict::Deny { retry_after_s } =
                limit.limiter.check(key, MonotonicClock.now_nanos())
            {
                limit.limited.inc();
                ctx.error = Some("rate_limited");
                if let Some(more) = limit.log.admit() {
                    log::warn!(
                        "route {}: rate limited ({}){more}",
                        route.cfg.name,
                        limit.key
                    );
                }
                if GrpcCall::of(req).is_some() {
                    // A gRPC call over its rate: RESOURCE_EXHAUSTED, as Envoy's rate limit
                    // filter answers gRPC.
                    grpc::respond(session, GrpcStatus::ResourceExhausted, "rate limited").await?;
                    return Ok(true);
                }
                let retry_after = retry_after_s.to_string();
                respond_with(
                    session,
                    429,
                    body_for(429),
                    &[("retry-after", retry_after.as_str())],
                )
                .await?;
                return Ok(true);
            }
        }
        if route.cfg.require_cascade {
            match verify_cascade(&rt, req) {
                cascade::Verdict::Accept => {}
                cascade::Verdict::Unauthorized => {
                    self.reject(ctx, Reject::Cascade);
                    ctx.error = Some("unauthorized");
                    respond(session, 401).await?;
                    return Ok(true);
                }
                cascade::Verdict::Forbidden => {
                    self.reject(ctx, Reject::Cascade);
                    respond(session, 403).await?;
                    return Ok(true);
                }
            }
        }
        if self.request_hooks(session, ctx, Some(&route.cfg)).await? {
            return Ok(true);
        }
        let req = session.req_header();
        let upstream = &rt.upstreams[route.upstream];
        ctx.grpc = GrpcCall::of(req);
        if ctx.grpc.is_some() && !upstream.cfg.may_use_h2() {
            log::warn!(
                "route {}: gRPC call {} refused: upstream {} speaks HTTP/1.1; gRPC needs \
                 protocol = \"http2\" (or \"auto\" with scheme = \"https\")",
                route.cfg.name,
                req.uri.path(),
                upstream.cfg.name
            );
            let message = format!(
                "route {} leads to upstream {}, which speaks HTTP/1.1; gRPC needs protocol = http2",
                route.cfg.name, upstream.cfg.name
            );
            self.reject(ctx, Reject::GrpcNeedsHttp2);
            grpc::respond(session, GrpcStatus::Internal, &message).await?;
            return Ok(true);
        }
        if let Some(sticky) = &upstream.sticky {
            ctx.sticky_target =
                cookie_value(req, &sticky.cfg.cookie).and_then(|v| sticky.decode(v));
        }
        if let Some(hash_on) = upstream.hash_on() {
            let ring = upstream.pool.options().hash_ring;
            ctx.key = hash_key(req, ctx.client_ip, hash_on, ring);
        }
        // `[limits] retry_buffer_bytes`: 0 never buffers (Pingora's buffer is a fixed 64 KiB).
        if rt.config.limits.retry_buffer_bytes > 0 {
            session.as_mut().enable_retry_buffering();
        }
        if route.cfg.deadline_ms > 0 {
            ctx.deadline = Some(ctx.start + Duration::from_millis(route.cfg.deadline_ms));
        }
        ctx.rt = Some(rt);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (rt, route_idx) = match (&ctx.rt, ctx.route) {
            (Some(rt), Some(r)) => (rt, r),
            _ => {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(500),
                    "request not routed",
                ))
            }
        };
        let route = &rt.routes[route_idx];
        let upstream = &rt.upstreams[route.upstream];
        if ctx.deadline_passed() {
            return Err(deadline_exceeded(upstream));
        }
        // Jittered exponential backoff before a retry (not before a stale connection's
        // reconnect, which is not the server's failure), cut short by the deadline.
        if upstream.cfg.retry_backoff_ms > 0
            && !ctx.tried.is_empty()
            && !matches!(ctx.reconnect, Reconnect::Pending(_))
        {
            let wait = backoff(
                upstream.cfg.retry_backoff_ms,
                ctx.retries.total,
                rand::random::<f64>(),
            );
            let wait = ctx.time_left().map_or(wait, |left| wait.min(left));
            tokio::time::sleep(wait).await;
            if ctx.deadline_passed() {
                return Err(deadline_exceeded(upstream));
            }
        }
        let snap = upstream.pool.snapshot();
        // After a stale keep-alive connection: the same server again, on a fresh connection
        // (unless a reload removed it meanwhile).
        let reconnect = ctx.reconnect.take().and_then(|id| snap.find(&id));
        let sticky = ctx.sticky_target.as_ref().and_then(|id| {
            let (i, s) = snap.find(id)?;
            (snap.candidates().contains(&i) && !ctx.tried.contains(&s.stats)).then_some((i, s))
        });
        // The named server if it has room (`max_in_flight`), else the selector's pick (which
        // may wait in the upstream's queue).
        let named = reconnect.or(sticky).and_then(|(i, s)| {
            let slot = s.stats.try_begin(s.spec.max_in_flight, snap.now_nanos())?;
            Some((Arc::clone(&snap), i, slot))
        });
        let reconnecting = reconnect.is_some() && named.is_some();
        let claimed = match named {
            Some(claim) => Ok(claim),
            None => overload::admit(upstream, ctx.key, &ctx.tried, ctx.deadline)
                .await
                .map(|c| (c.snapshot, c.index, c.inflight)),
        };
        let (snap, index, inflight) = match claimed {
            Ok(claim) => claim,
            Err(NoServer::Deadline) => return Err(deadline_exceeded(upstream)),
            Err(why) if ctx.tried.is_empty() => {
                if why.is_overload() {
                    ctx.overloaded = true;
                    return Err(Error::explain(
                        ErrorType::HTTPStatus(503),
                        "every server is at its max_in_flight",
                    ));
                }
                upstream.count_no_server();
                ctx.error = Some("all_down");
                return Err(Error::explain(
                    ErrorType::HTTPStatus(503),
                    "no server available",
                ));
            }
            Err(why) => {
                let code = match ctx.last_failure {
                    Some(FailureKind::Timeout) => 504,
                    _ => 502,
                };
                let msg = match why {
                    NoServer::Unavailable => "retries exhausted: no untried server left",
                    _ => "retries exhausted: every untried server is at its max_in_flight",
                };
                return Err(Error::explain(ErrorType::HTTPStatus(code), msg));
            }
        };
        let server = &snap.servers()[index];
        if !ctx.tried.is_empty() || reconnecting {
            route.metrics.retried();
        }
        ctx.tried.insert(&server.stats);
        ctx.attempt = Some(Attempt::claimed(
            Arc::clone(upstream),
            index,
            server,
            inflight,
        ));
        // The attempt's span id (sent upstream in `traceparent`); when requests are recorded,
        // its server, and its client span if the trace is sampled and exported.
        ctx.attempts += 1;
        ctx.attempt_span = new_span_id();
        if self.telemetry.records() {
            ctx.server = Some(server.spec.id.clone());
            if self.telemetry.traces() && ctx.trace.is_some_and(|t| t.sampled) {
                ctx.spans
                    .push(AttemptSpan::begin(ctx.attempt_span, &server.spec));
            }
        }
        let peer = crate::peer::build(
            upstream,
            route,
            server,
            session,
            ctx.grpc.as_ref().map(|c| (c, ctx.start)),
            reconnecting,
        );
        let mut peer = peer;
        if let Some(left) = ctx.time_left() {
            // `deadline_ms`: no try outlives the request's deadline.
            let cap = |t: &mut Option<Duration>| *t = Some(t.map_or(left, |t| t.min(left)));
            cap(&mut peer.options.connection_timeout);
            cap(&mut peer.options.total_connection_timeout);
            cap(&mut peer.options.read_timeout);
            cap(&mut peer.options.write_timeout);
        }
        Ok(Box::new(peer))
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
        if retry_on_status(session, ctx, status) {
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
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let _ = session;
        ctx.fail_attempt(failure_kind(&e));
        if ctx.may_retry(false) {
            ctx.retries.count(false);
            e.set_retry(true);
        } else {
            e.set_retry(false);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if std::mem::take(&mut ctx.status_retry) {
            // A `retry_on_statuses` answer: the server answered, which its metrics and passive
            // health checks see; the request goes to another server.
            if let (Some(a), Some(status)) = (ctx.attempt.take(), ctx.upstream_status.take()) {
                log::info!(
                    "upstream {} server {} answered {status}: retrying on another server",
                    a.upstream().cfg.name,
                    a.id()
                );
                a.answered(status);
            }
            ctx.retries.count(true);
            e.set_retry(true);
            return e;
        }
        if e.esource() == &ErrorSource::Downstream {
            // The client went away or sent garbage: not the server's fault, no retry.
            drop(ctx.attempt.take());
            e.set_retry(false);
            return e;
        }
        let (retryable_method, truncated) = replayable(session, ctx);
        // A pooled keep-alive connection the server had closed (NGINX retries these too, and
        // so do browsers): once per request, the same server again on a fresh connection,
        // whatever `retries` says — for idempotent requests (and others with
        // `retry_non_idempotent`), and for any request whose head was never written. Not the
        // server's fault: no failure is counted against it.
        if client_reused
            && matches!(ctx.reconnect, Reconnect::Unused)
            && !truncated
            && stale_connection(&e)
            && (retryable_method || request_not_written(&e))
        {
            if let Some(a) = ctx.attempt.take() {
                log::info!(
                    "upstream {} server {}: reused connection closed by the server ({}); \
                     retrying on a fresh connection",
                    a.upstream().cfg.name,
                    a.id(),
                    e.etype().as_str()
                );
                ctx.reconnect = Reconnect::Pending(a.stale_connection());
                ctx.end_attempt_span(None, Some("stale_connection"));
                e.set_retry(true);
                return e;
            }
        }
        ctx.fail_attempt(failure_kind(&e));
        if retryable_method && !truncated && ctx.may_retry(true) {
            ctx.retries.count(true);
            e.set_retry(true);
        } else {
            e.set_retry(false);
        }
        e
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
        let code = failure_status(e, ctx.last_failure);
        if code == 408 {
            self.reject(ctx, Reject::BodyTimeout);
        }
        log::debug!(
            "request {}: failed with {code}: {}",
            ctx.request_id(),
            e.etype().as_str()
        );
        if let Some(call) = ctx.grpc.as_mut().filter(|_| code > 0) {
            if session.response_written().is_none() {
                // A call the proxy failed is answered as gRPC (trailers-only), as Envoy does.
                let status = GrpcStatus::for_http(code);
                call.status = Some(status.code());
                let message = grpc::failure_message(code, e.etype().as_str());
                if let Err(err) = grpc::respond(session, status, &message).await {
                    log::debug!("could not send gRPC status to the client: {err}");
                }
                return FailToProxy {
                    error_code: 200,
                    can_reuse_downstream: false,
                };
            }
        }
        if code > 0 && session.response_written().is_none() {
            // Pingora closes the client connection after a failed request: say so in the answer
            // (`Connection: close`), or a keep-alive client would send its next request into a
            // closed socket.
            session.set_keepalive(None);
            let sent = if code == 503 && ctx.overloaded {
                respond_with(
                    session,
                    code,
                    OVERLOADED,
                    &[("retry-after", overload::RETRY_AFTER_S)],
                )
                .await
            } else {
                respond(session, code).await
            };
            if let Err(err) = sent {
                log::debug!("could not send {code} to the client: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
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

/// Whether a request may be sent again after it was sent once: its method (idempotent, or any
/// with `retry_non_idempotent`, NGINX `proxy_next_upstream non_idempotent`), and whether its
/// body was cut from the retry buffer (larger than `retry_buffer_bytes`, or any body when it is
/// 0): `(retryable_method, truncated)`.
fn replayable(session: &Session, ctx: &RequestCtx) -> (bool, bool) {
    let retryable_method = session.req_header().method.is_idempotent()
        || ctx
            .rt
            .as_ref()
            .zip(ctx.route)
            .is_some_and(|(rt, r)| rt.routes[r].cfg.retry_non_idempotent);
    let truncated = session.as_ref().retry_buffer_truncated()
        || ctx.rt.as_ref().is_some_and(|rt| {
            session.as_ref().body_bytes_read() > rt.config.limits.retry_buffer_bytes
        });
    (retryable_method, truncated)
}

/// True if a response head with `status` is to be retried on another server: the route lists
/// it in `retry_on_statuses`, the request may be sent again ([`replayable`]; gRPC calls never
/// are), an untried server is there, and the retry policy, deadline and budget allow it.
/// Otherwise the response goes to the client (the last one, when retries ran out).
fn retry_on_status(session: &Session, ctx: &mut RequestCtx, status: u16) -> bool {
    let Some((rt, r)) = ctx.rt.as_ref().zip(ctx.route) else {
        return false;
    };
    let route = &rt.routes[r];
    if route.cfg.retry_on_statuses.is_empty()
        || !route.cfg.retry_on_statuses.contains(&status)
        || ctx.grpc.is_some()
    {
        return false;
    }
    let (retryable_method, truncated) = replayable(session, ctx);
    if !retryable_method || truncated {
        return false;
    }
    // Asked without picking: a retry not taken must not move the selector's rotation.
    let untried = rt.upstreams[route.upstream]
        .pool
        .snapshot()
        .has_untried(&ctx.tried);
    untried && ctx.may_retry(true)
}

/// The error of a request whose `deadline_ms` passed before a response head: 504.
fn deadline_exceeded(upstream: &UpstreamRuntime) -> Box<Error> {
    log::warn!(
        "upstream {}: the route's deadline_ms passed before a response",
        upstream.cfg.name
    );
    Error::explain(ErrorType::HTTPStatus(504), "deadline_ms exceeded")
}
