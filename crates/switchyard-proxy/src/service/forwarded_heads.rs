//! What the gateway writes into the heads it forwards: the request sent to a server
//! (`upstream_request_filter`) and the response sent to the client (`upstream_response_filter`,
//! `response_filter`).
//!
//! The work is synchronous; only the extensions' hooks are `async`. So each part is a plain
//! function here, and the hook in `mod.rs` returns a ready, zero-sized future ([`super::ready`])
//! unless an extension is installed, in which case the extensions run in a boxed future after
//! (or, for the response, between) the synchronous parts, in the same order as before.

use http::header::SET_COOKIE;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::{failure, HttpGateway};
use crate::added_headers;
use crate::extension::RequestInfo;
use crate::headers::set_forwarding;
use crate::hygiene::tidy_response_framing;
use crate::observe::trace_context::traceparent;
use crate::request_ctx::RequestCtx;

impl HttpGateway {
    /// Writes the route's rewrite and added fields, the forwarding fields, the client
    /// certificate's subject and `traceparent` into `upstream_request`. True when the request
    /// is routed, so the extensions' `on_upstream_request` hooks are to run next.
    pub(super) fn prepare_upstream_request(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let Some(rt) = ctx.rt.as_ref() else {
            return Ok(false);
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
        Ok(true)
    }

    /// The extensions' `on_upstream_request` hooks, in order; the first error ends the request.
    pub(super) async fn upstream_request_extensions(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(rt) = ctx.rt.as_ref() else {
            return Ok(());
        };
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
        Ok(())
    }

    /// The response head sent to the client: its `X-Request-ID`, the extensions'
    /// `on_response` hooks, then the sticky-session cookie.
    pub(super) async fn respond_through_extensions(
        &self,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        identify_response(upstream_response, ctx);
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
        set_sticky_cookie(upstream_response, ctx)
    }
}

/// The response head sent to the client without extensions: its `X-Request-ID`, then the
/// sticky-session cookie.
pub(super) fn prepare_response(
    upstream_response: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    identify_response(upstream_response, ctx);
    set_sticky_cookie(upstream_response, ctx)
}

/// The request's id on its response.
fn identify_response(upstream_response: &mut ResponseHeader, ctx: &RequestCtx) {
    if let Some(id) = &ctx.request_id {
        added_headers::insert_response(upstream_response, &added_headers::X_REQUEST_ID, id.clone());
    }
}

/// The sticky-session cookie, when the upstream has sticky sessions and the client was not
/// already sent to this server by its cookie.
fn set_sticky_cookie(upstream_response: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    let (Some(a), Some(rt)) = (ctx.attempt.as_ref(), ctx.rt.as_ref()) else {
        return Ok(());
    };
    if let Some(sticky) = &a.upstream().sticky {
        if ctx.sticky_target.as_ref() != Some(a.id()) {
            let https = rt.listeners[ctx.listener].scheme() == "https";
            upstream_response.append_header(SET_COOKIE, sticky.set_cookie(a.id(), https))?;
        }
    }
    Ok(())
}

/// The response head as the server sent it: notes its status (an error if the route retries
/// it on another server) and a gRPC trailers-only status, and tidies its framing fields.
pub(super) fn on_upstream_response(
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
