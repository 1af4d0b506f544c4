//! The route's part of the request sent upstream: `backend_path` rewrite, `host_header`, a
//! `Host` for requests without an authority, the gRPC deadline lowered to what is left of
//! `timeout_ms`, and the cascade signature (a client's is never passed on).

use pingora::http::RequestHeader;
use pingora::{Error, ErrorType, Result};

use crate::cascade;
use crate::grpc;
use crate::headers::request_authority;
use crate::request_ctx::RequestCtx;
use crate::runtime::Runtime;

/// Applies route `route_idx` of `rt` to `upstream_request`, built from the client's `client_req`.
pub(crate) fn apply_route(
    upstream_request: &mut RequestHeader,
    client_req: &RequestHeader,
    rt: &Runtime,
    route_idx: usize,
    ctx: &RequestCtx,
    instance_id: &str,
) -> Result<()> {
    let route = &rt.routes[route_idx];
    let listener = &rt.listeners[ctx.listener];
    if let Some(t) = &route.rewrite {
        let path = client_req.uri.path();
        let listener_router = &listener.router;
        let new = t.render(
            |name| ctx.params.get(listener_router, route_idx, name, path),
            client_req.uri.query(),
        );
        let uri = new
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InternalError, "bad rewritten path", e))?;
        upstream_request.set_uri(uri);
    }
    if let Some(h) = &route.host_header {
        upstream_request.insert_header(http::header::HOST, h.clone())?;
    }
    // HTTP/1.0 without Host and with an origin-form target (the only request that
    // reaches here with no authority at all): the server's `host:port`, as NGINX's
    // default `proxy_set_header Host $proxy_host` sends. (An absolute-form target's
    // authority becomes the Host in Pingora.)
    if request_authority(upstream_request).is_none() {
        if let Some(a) = &ctx.attempt {
            upstream_request.insert_header(http::header::HOST, a.id().host_port())?;
        }
    }
    // A client's gRPC deadline travels on, lowered to what is left of `timeout_ms`.
    if let Some(call) = ctx.grpc.as_ref().filter(|c| c.deadline.is_some()) {
        let left = call.time_left(route.timeout(), ctx.start.elapsed());
        upstream_request.insert_header("grpc-timeout", grpc::format_timeout(left))?;
    }
    // Never pass a client's cascade header on; sign anew for cascade upstreams.
    upstream_request.remove_header(&cascade::HEADER_NAME);
    if let Some(key) = &rt.upstreams[route.upstream].cascade_key {
        let value = cascade::header_value(
            key,
            instance_id,
            cascade::unix_now(),
            upstream_request.method.as_str(),
            upstream_request.uri.path(),
        );
        upstream_request.insert_header(cascade::HEADER, value)?;
    }
    Ok(())
}
