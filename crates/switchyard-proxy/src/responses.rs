//! Short, explicit error responses written by the gateway itself.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use crate::observe::request_id;

/// Non-standard status for a detected forwarding loop (as used by several CDNs).
pub const LOOP_DETECTED: u16 = 463;

/// The body of a 503 for an overloaded upstream (every server at its `max_in_flight`, the queue
/// full or timed out); sent with `Retry-After`.
pub const OVERLOADED: &str =
    "503 Service Unavailable: every upstream server is busy; retry later\n";

/// The body the gateway sends with its own `code` responses.
pub fn body_for(code: u16) -> &'static str {
    match code {
        400 => "400 Bad Request\n",
        401 => "401 Unauthorized: missing or invalid cascade signature\n",
        403 => "403 Forbidden\n",
        404 => "404 Not Found: no route matches this request\n",
        408 => "408 Request Timeout\n",
        413 => "413 Payload Too Large\n",
        429 => "429 Too Many Requests: over this route's rate limit\n",
        431 => "431 Request Header Fields Too Large\n",
        LOOP_DETECTED => "463 Loop Detected: this request already passed through this gateway\n",
        500 => "500 Internal Server Error\n",
        502 => "502 Bad Gateway: no upstream server gave a valid response\n",
        503 => "503 Service Unavailable: no healthy upstream server\n",
        504 => "504 Gateway Timeout: the upstream server did not answer in time\n",
        _ => "error\n",
    }
}

/// Writes a complete plain-text response with the gateway's body for `code`.
pub async fn respond(session: &mut Session, code: u16) -> Result<()> {
    respond_with(session, code, body_for(code), &[]).await
}

/// Writes a complete plain-text response with `body` and extra headers.
pub async fn respond_with(
    session: &mut Session,
    code: u16,
    body: &'static str,
    headers: &[(&'static str, &str)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(code, Some(4))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", body.len().to_string())?;
    for (k, v) in headers {
        resp.insert_header(*k, *v)?;
    }
    copy_request_id(session, &mut resp)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
            .await?;
    }
    Ok(())
}

/// Writes an extension's answer.
pub async fn respond_decision(
    session: &mut Session,
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 1))?;
    for (k, v) in headers {
        resp.append_header(k, v)?;
    }
    resp.insert_header("content-length", body.len().to_string())?;
    copy_request_id(session, &mut resp)?;
    let head_only = session.req_header().method == http::Method::HEAD || body.is_empty();
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Answers carry the request's `X-Request-Id` (set on the request when it arrived).
pub fn copy_request_id(session: &Session, resp: &mut ResponseHeader) -> Result<()> {
    if let Some(id) = session.req_header().headers.get(request_id::HEADER) {
        crate::added_headers::insert_response(
            resp,
            &crate::added_headers::X_REQUEST_ID,
            id.clone(),
        );
    }
    Ok(())
}
