//! The Pingora peer of one attempt: the server's address, the upstream's TLS, ALPN (`protocol`)
//! and stream limit, the route's timeouts (a gRPC call's deadline, an upgrade's tunnel timeout),
//! a fresh connection after a stale one, and the PROXY-header connector.

use std::time::{Duration, Instant};

use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use switchyard_balance::Server;

use crate::grpc::GrpcCall;
use crate::headers::strip_port;
use crate::retry::fresh_connection_group;
use crate::runtime::{RouteRuntime, UpstreamRuntime};

/// The peer for `server` of `upstream` on `route`. `grpc`: the call and when the request began;
/// `fresh`: a new connection, never pooled (after a stale keep-alive connection).
pub(crate) fn build(
    upstream: &UpstreamRuntime,
    route: &RouteRuntime,
    server: &Server,
    session: &mut Session,
    grpc: Option<(&GrpcCall, Instant)>,
    fresh: bool,
) -> HttpPeer {
    let mut peer = HttpPeer::new(server.spec.addr, upstream.tls.is_some(), String::new());
    if let Some(tls) = &upstream.tls {
        tls.apply(&mut peer, strip_port(server.spec.id.host_port()));
    }
    peer.options.alpn = upstream.alpn();
    peer.options.max_h2_streams = upstream.max_h2_streams();
    peer.options.connection_timeout = Some(route.connect_timeout());
    // An upgrade (WebSocket) becomes a tunnel that may idle for long in either direction
    // (HAProxy's `timeout tunnel`): both sides get `tunnel_timeout_ms` per read instead of the
    // response timeout, and the client side instead of Pingora's fixed 60 s.
    let per_read = if session.is_upgrade_req() {
        let tunnel = route.tunnel_timeout();
        session.set_read_timeout(Some(tunnel));
        Some(tunnel)
    } else if let Some((call, started)) = grpc {
        // A gRPC call waits for its response headers no longer than its deadline (the client's,
        // capped by `timeout_ms`); never zero, which Pingora would take as "expired". After the
        // headers a stream lives as long as its deadline allows, and without a deadline as long
        // as both ends like: `timeout_ms` bounds the time to the headers, not the stream (the
        // separate header timeout is vendor patch 0001).
        let left = call
            .time_left(route.timeout(), started.elapsed())
            .max(Duration::from_millis(1));
        peer.options.response_header_timeout = Some(left);
        call.deadline.map(|_| left)
    } else {
        Some(route.timeout())
    };
    peer.options.read_timeout = per_read;
    peer.options.write_timeout = Some(route.timeout());
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    if fresh {
        peer.group_key = fresh_connection_group();
        peer.options.idle_timeout = Some(Duration::ZERO);
    }
    crate::proxy_protocol::apply_for_session(
        &mut peer,
        session,
        upstream.cfg.proxy_protocol,
        route.connect_timeout(),
    );
    peer
}
