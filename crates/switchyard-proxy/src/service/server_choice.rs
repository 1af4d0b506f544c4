//! Choosing the server of an attempt (`upstream_peer`).
//!
//! The request's deadline and the retry backoff first; then the server: the same one again on
//! a fresh connection after a stale keep-alive connection, the sticky session's server if it
//! has room, else the upstream's selector (which may queue while every server is at its
//! `max_in_flight`, [`crate::overload`]). The chosen server begins an [`Attempt`], and its peer
//! gets the route's timeouts capped by the deadline.

use std::sync::Arc;
use std::time::Duration;

use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::HttpGateway;
use crate::attempt::Attempt;
use crate::observe::trace_context::new_span_id;
use crate::observe::tracer::AttemptSpan;
use crate::overload::{self, NoServer};
use crate::request_ctx::RequestCtx;
use crate::retry::{FailureKind, Reconnect};
use crate::retry_budget::backoff;
use crate::runtime::UpstreamRuntime;

impl HttpGateway {
    /// The peer of the request's next attempt, or the error that ends the request (503 when no
    /// server is available or all are full, 502/504 when retries ran out, 504 past the deadline).
    pub(super) async fn choose_peer(
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
}

/// The error of a request whose `deadline_ms` passed before a response head: 504.
fn deadline_exceeded(upstream: &UpstreamRuntime) -> Box<Error> {
    log::warn!(
        "upstream {}: the route's deadline_ms passed before a response",
        upstream.cfg.name
    );
    Error::explain(ErrorType::HTTPStatus(504), "deadline_ms exceeded")
}
