//! A request whose head cannot be parsed — a malformed request line or header field, which
//! Pingora refuses before any request hook runs (`ProxyHttp::malformed_request`, vendor patch
//! 0020) — is answered like every other refused request: `400 Bad Request` with a new
//! `X-Request-Id`, `Connection: close`, counted in
//! `switchyard_rejected_requests_total{reason="bad_request"}`, a `warn` line naming the request
//! id and the parse error (throttled like the other refusals), and an access-log line with
//! `error = "bad_request"` (no method, path or host: none could be read; NGINX logs such a
//! request with status 400 too).

use std::time::SystemTime;

use bytes::Bytes;
use log::warn;
use pingora::protocols::http::ServerSession;
use pingora::Error;
use switchyard_config::AccessLogFormat;

use crate::added_headers::X_REQUEST_ID;
use crate::log_throttle::LogThrottle;
use crate::observe::http_record::HttpRecord;
use crate::observe::{request_id, Telemetry};
use crate::reject::{Reject, RejectCounters};
use crate::request_key::client_ip;

/// What answering a malformed request needs from the listener's service.
pub(crate) struct Refusal<'a> {
    /// The listener's name.
    pub listener: &'a str,
    /// The listener's refusal counters.
    pub rejected: &'a RejectCounters,
    /// The metrics they count in.
    pub metrics: &'a switchyard_metrics::Metrics,
    /// The access log, if any.
    pub telemetry: &'a Telemetry,
    /// Throttles the `warn` lines.
    pub log: &'a LogThrottle,
}

/// Answers the malformed request on `session` (`e`: why its head could not be parsed), counts
/// and logs it.
pub(crate) async fn answer(r: Refusal<'_>, session: &mut ServerSession, e: &Error) {
    let start = SystemTime::now();
    let id = request_id::generate();
    let mut resp = ServerSession::generate_error(400);
    // `generate_error` makes a valid head; a failed insert only loses the id in the response.
    let _ = resp.insert_header(X_REQUEST_ID.clone(), id.clone());
    let client = client_ip(session.client_addr());
    r.rejected.count(r.metrics, r.listener, Reject::BadRequest);
    let id_text = id.to_str().unwrap_or("-");
    if let Some(more) = r.log.admit() {
        warn!(
            "listener {}: malformed request from {} refused with 400 (request id {id_text}): \
             {e}{more}",
            r.listener,
            client.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        );
    }
    let written = session.write_error_response(resp, Bytes::new()).await;
    if let Err(err) = &written {
        log::debug!(
            "listener {}: 400 to a malformed request not sent: {err}",
            r.listener
        );
    }
    let Some(log) = r.telemetry.access_log() else {
        return;
    };
    let bytes_sent = session
        .response_written()
        .map_or(0, crate::request_log::head_len);
    let rec = HttpRecord {
        start,
        request_id: Some(id.as_bytes()),
        client_ip: client,
        listener: r.listener,
        method: "",
        host: b"",
        path: "",
        query: None,
        protocol: "",
        status: if written.is_ok() { 400 } else { 0 },
        bytes_sent,
        body_bytes_sent: 0,
        duration: start.elapsed().unwrap_or_default(),
        route: None,
        upstream: None,
        server: None,
        upstream_status: None,
        attempts: 0,
        user_agent: None,
        referer: None,
        trace_id: &[b'0'; 32],
        grpc: None,
        error: Some(Reject::BadRequest.label()),
    };
    log.send(match log.format() {
        AccessLogFormat::Json => rec.json(),
        AccessLogFormat::Combined => rec.combined(),
    });
}
