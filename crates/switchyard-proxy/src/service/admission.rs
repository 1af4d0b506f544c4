//! Admission: what happens to a request before a server is chosen (`request_filter`).
//!
//! In order: the request id and trace, the listener (a reload may have removed it), the
//! security group, request hygiene ([`crate::hygiene`]), loop detection, the extensions'
//! `before_routing` hooks, the route match, the route's rate limit, the cascade signature, the
//! extensions' `on_request` hooks, gRPC's protocol check, and the request key
//! ([`crate::request_key`]) for sticky sessions and hashing. Every refusal is answered here,
//! counted by [`Reject`] reason and noted for the access log.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Result;
use switchyard_balance::{Clock, MonotonicClock};
use switchyard_config::RouteConfig;

use super::HttpGateway;
use crate::added_headers;
use crate::cascade;
use crate::extension::{Decision, RequestInfo};
use crate::grpc::{self, GrpcCall, GrpcStatus};
use crate::headers::{loop_detected, request_host, strip_port};
use crate::host::route_name;
use crate::hygiene::sanitize;
use crate::observe::request_id;
use crate::observe::trace_context::{TraceContext, TRACEPARENT};
use crate::rate_limit::Verdict;
use crate::reject::Reject;
use crate::request_ctx::RequestCtx;
use crate::request_key::{client_ip, cookie_value, hash_key, rate_limit_key};
use crate::responses::{body_for, respond, respond_decision, respond_with, LOOP_DETECTED};
use crate::runtime::Runtime;

/// What admission decided, before anything is written to the client.
pub(super) enum Admission {
    /// Routed: the route, request key and deadline are in the request's context.
    Routed,
    /// Refused, or answered by the gateway: the answer still to be written.
    Answer(Answer),
}

/// An answer admission writes to the client (it goes no further).
pub(super) enum Answer {
    /// The gateway's plain-text answer for a status code.
    Status(u16),
    /// 429 with `Retry-After`.
    RateLimited { retry_after_s: u64 },
    /// A trailers-only gRPC answer.
    Grpc(GrpcStatus, String),
}

impl Answer {
    /// Writes the answer.
    pub(super) async fn send(self, session: &mut Session) -> Result<()> {
        match self {
            Answer::Status(code) => respond(session, code).await,
            Answer::RateLimited { retry_after_s } => {
                let retry_after = retry_after_s.to_string();
                respond_with(
                    session,
                    429,
                    body_for(429),
                    &[("retry-after", retry_after.as_str())],
                )
                .await
            }
            Answer::Grpc(status, message) => grpc::respond(session, status, &message).await,
        }
    }
}

/// A stage's outcome: go on with `T`, or stop with an answer.
enum Step<T> {
    Next(T),
    Stop(Answer),
}

impl HttpGateway {
    /// Admits, refuses or answers a request: true if it was answered here (refused, or by an
    /// extension) and goes no further; false if it is routed, with its route, request key and
    /// deadline in `ctx`. The stages, with the extensions' hooks between them.
    pub(super) async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let rt = match self.admit_connection(session, ctx)? {
            Step::Next(rt) => rt,
            Step::Stop(answer) => return answer.send(session).await.map(|()| true),
        };
        if self.request_hooks(session, ctx, None).await? {
            return Ok(true);
        }
        let route_idx = match self.admit_route(session, ctx, &rt) {
            Step::Next(r) => r,
            Step::Stop(answer) => return answer.send(session).await.map(|()| true),
        };
        if self
            .request_hooks(session, ctx, Some(&rt.routes[route_idx].cfg))
            .await?
        {
            return Ok(true);
        }
        match self.admit_to_upstream(session, ctx, rt, route_idx) {
            Admission::Routed => Ok(false),
            Admission::Answer(answer) => answer.send(session).await.map(|()| true),
        }
    }

    /// Admission without extensions: every stage is synchronous, so only an answer still has
    /// to be written (by the caller).
    pub(super) fn admit_now(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Admission> {
        let rt = match self.admit_connection(session, ctx)? {
            Step::Next(rt) => rt,
            Step::Stop(answer) => return Ok(Admission::Answer(answer)),
        };
        let route_idx = match self.admit_route(session, ctx, &rt) {
            Step::Next(r) => r,
            Step::Stop(answer) => return Ok(Admission::Answer(answer)),
        };
        Ok(self.admit_to_upstream(session, ctx, rt, route_idx))
    }

    /// The request's id and trace, its listener and read timeout, the security group, request
    /// hygiene and loop detection. Goes on with the runtime the request is served by.
    fn admit_connection(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Step<Arc<Runtime>>> {
        self.identify(session.req_header_mut(), ctx)?;
        let rt = self.shared.runtime();
        let Some(li) = self.listener_index(&rt) else {
            // The listener was removed by a reload: it keeps serving until the process is
            // upgraded, but has no routes any more.
            return Ok(Step::Stop(Answer::Status(404)));
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
                return Ok(Step::Stop(Answer::Status(403)));
            }
        }
        let limits = &rt.config.limits;
        if let Err(reason) = sanitize(session.req_header_mut(), limits.encoded_slashes) {
            self.reject(ctx, reason);
            // The connection is not trusted with another request (as NGINX and HAProxy do
            // after a 400).
            session.set_keepalive(None);
            return Ok(Step::Stop(Answer::Status(400)));
        }
        if loop_detected(session.req_header(), self.shared.instance_id()) {
            self.reject(ctx, Reject::Loop);
            return Ok(Step::Stop(Answer::Status(LOOP_DETECTED)));
        }
        Ok(Step::Next(rt))
    }

    /// The route match, the route's rate limit and cascade signature. Goes on with the route's
    /// index.
    fn admit_route(&self, session: &Session, ctx: &mut RequestCtx, rt: &Runtime) -> Step<usize> {
        let listener = &rt.listeners[ctx.listener];
        let req = session.req_header();
        // One lookup of `Host` for the route's name and `X-Forwarded-Host` (what
        // `request_host` reads first).
        let host_field = req.headers.get(http::header::HOST);
        let host = match host_field {
            Some(h) => std::str::from_utf8(h.as_bytes()).unwrap_or(""),
            None => request_host(req),
        };
        ctx.client_host = match host_field {
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
                return Step::Stop(Answer::Status(405));
            }
            self.reject(ctx, Reject::NoRoute);
            return Step::Stop(Answer::Status(404));
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
                    return Step::Stop(Answer::Grpc(
                        GrpcStatus::ResourceExhausted,
                        "rate limited".to_string(),
                    ));
                }
                return Step::Stop(Answer::RateLimited { retry_after_s });
            }
        }
        if route.cfg.require_cascade {
            match verify_cascade(rt, req) {
                cascade::Verdict::Accept => {}
                cascade::Verdict::Unauthorized => {
                    self.reject(ctx, Reject::Cascade);
                    ctx.error = Some("unauthorized");
                    return Step::Stop(Answer::Status(401));
                }
                cascade::Verdict::Forbidden => {
                    self.reject(ctx, Reject::Cascade);
                    return Step::Stop(Answer::Status(403));
                }
            }
        }
        Step::Next(route_idx)
    }

    /// gRPC's protocol check, the sticky-session target and hash key, retry buffering and the
    /// route's deadline; the request keeps `rt` for the rest of its life.
    fn admit_to_upstream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        rt: Arc<Runtime>,
        route_idx: usize,
    ) -> Admission {
        let route = &rt.routes[route_idx];
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
            return Admission::Answer(Answer::Grpc(GrpcStatus::Internal, message));
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
        Admission::Routed
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
