//! Failures of an attempt and of a request: which are retried, and how the client is answered.
//!
//! `fail_to_connect` and `error_while_proxy` end the attempt (its outcome counted for the
//! server's metrics and passive health) and ask the route's [`RetryPolicy`](crate::retry::RetryPolicy)
//! whether another server is tried; a pooled connection the server had closed is retried once on
//! a fresh connection to the same server without counting against it. `fail_to_proxy` answers the
//! client with the status of the failure (a gRPC status for a gRPC call).

use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, ErrorSource};

use super::HttpGateway;
use crate::grpc::{self, GrpcStatus};
use crate::overload;
use crate::reject::Reject;
use crate::request_ctx::RequestCtx;
use crate::responses::{respond, respond_with, OVERLOADED};
use crate::retry::{
    failure_kind, failure_status, request_not_written, stale_connection, Reconnect,
};

impl HttpGateway {
    /// `fail_to_connect`: the attempt failed before its request was sent.
    pub(super) fn connect_failed(
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

    /// `error_while_proxy`: the attempt failed after its connection was made.
    pub(super) fn proxy_failed(
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

    /// `fail_to_proxy`: answers the client of a failed request.
    pub(super) async fn answer_failure(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
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
pub(super) fn retry_on_status(session: &Session, ctx: &mut RequestCtx, status: u16) -> bool {
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
