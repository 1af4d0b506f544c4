//! The HTTP gateway: Pingora's [`ProxyHttp`] implemented over a [`Runtime`].
//!
//! Request path: `request_filter` (security group, request hygiene — Host, path normalisation,
//! a single `Content-Length` — loop detection, route match, hash key) →
//! `upstream_peer` (pick a server not yet tried, start in-flight tracking) →
//! `upstream_request_filter` (rewrite, forwarding headers) → response → `logging` (metrics, end
//! of in-flight tracking). Connect failures and failures after sending go through
//! `fail_to_connect` / `error_while_proxy`, which decide whether to retry on another server.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result, RetryType};
use switchyard_balance::{HashRing, InFlight, Outcome, ServerId, Tried};
use switchyard_config::{HashOn, RouteConfig};
use switchyard_health::PassiveEvent;
use switchyard_metrics::prometheus::IntCounter;
use switchyard_metrics::{Metrics, ServerMetrics};

use crate::cascade;
use crate::extension::{Decision, ExtContext, Extension, RequestInfo};
use crate::headers::{
    instance_id_value, loop_detected, request_authority, request_host, set_forwarding, strip_port,
};
use crate::host::{parse_host, route_name};
use crate::normalize::{normalize_path, EncodedSlashes};
use crate::responses::{respond, respond_decision, LOOP_DETECTED};
use crate::router::Params;
use crate::runtime::{Runtime, UpstreamRuntime};

/// State shared by every listener's service: the current runtime and identity.
pub struct Shared {
    /// The published runtime; swapped atomically on reload.
    pub runtime: ArcSwap<Runtime>,
    /// `[server].instance_id`.
    pub instance_id: String,
    /// Metric families.
    pub metrics: &'static Metrics,
    /// The file reloads read, if the configuration came from one.
    pub config_path: Option<std::path::PathBuf>,
    /// The runtime that runs health checkers (set when the background service starts).
    pub background: std::sync::OnceLock<tokio::runtime::Handle>,
    /// Serialises reloads.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The outcome of the last reload attempt.
    pub last_reload: std::sync::Mutex<Option<crate::reload::ReloadReport>>,
    /// Embedder extensions, in registration order.
    pub extensions: Vec<Arc<dyn Extension>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("instance_id", &self.instance_id)
            .field("config_path", &self.config_path)
            .field(
                "extensions",
                &self.extensions.iter().map(|e| e.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Shared {
    /// Wraps a first runtime.
    pub fn new(runtime: Runtime, config_path: Option<std::path::PathBuf>) -> Arc<Shared> {
        Self::with_extensions(runtime, config_path, Vec::new())
    }

    /// Wraps a first runtime with extensions.
    pub fn with_extensions(
        runtime: Runtime,
        config_path: Option<std::path::PathBuf>,
        extensions: Vec<Arc<dyn Extension>>,
    ) -> Arc<Shared> {
        let instance_id = runtime.config.server.instance_id.clone();
        Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            instance_id,
            metrics: Metrics::global(),
            config_path,
            background: std::sync::OnceLock::new(),
            reload_lock: tokio::sync::Mutex::new(()),
            last_reload: std::sync::Mutex::new(None),
            extensions,
        })
    }
}

/// Why an attempt failed: decides 502 vs 504 when retries are exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Could not connect.
    Connect,
    /// Connected, then timed out.
    Timeout,
    /// Connected, then reset or a protocol error.
    Error,
}

/// One attempt on one server.
#[derive(Debug)]
struct Attempt {
    upstream: Arc<UpstreamRuntime>,
    id: ServerId,
    /// The server's metric handles, resolved when it was picked.
    metrics: Option<Arc<ServerMetrics>>,
    inflight: InFlight,
    header_ns: Option<u64>,
}

/// Per-request state.
#[derive(Debug)]
pub struct RequestCtx {
    rt: Option<Arc<Runtime>>,
    listener: usize,
    route: Option<usize>,
    params: Params,
    key: Option<u64>,
    tried: Tried,
    attempt: Option<Attempt>,
    retries: u32,
    retries_after_send: u32,
    /// A reused keep-alive connection failed before any response byte: the next attempt goes
    /// to this server again, on a fresh connection (once per request).
    reconnect: Reconnect,
    last_failure: Option<FailureKind>,
    upstream_status: Option<u16>,
    client_ip: Option<IpAddr>,
    client_host: Option<HeaderValue>,
    sticky_target: Option<ServerId>,
    ext: ExtContext,
    start: Instant,
}

impl RequestCtx {
    /// The matched route's index, once routed.
    pub fn route(&self) -> Option<usize> {
        self.route
    }
    /// The client's address.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }
}

/// The one retry on a fresh connection that a stale keep-alive connection earns a request.
#[derive(Debug, Default)]
enum Reconnect {
    /// Not used.
    #[default]
    Unused,
    /// The next attempt reconnects to this server.
    Pending(ServerId),
    /// Used: a second stale connection is an ordinary failure.
    Used,
}

impl Reconnect {
    /// The server of a pending reconnect, which is then used up.
    fn take(&mut self) -> Option<ServerId> {
        match std::mem::take(self) {
            Reconnect::Pending(id) => {
                *self = Reconnect::Used;
                Some(id)
            }
            other => {
                *self = other;
                None
            }
        }
    }
}

/// A pool key (`HttpPeer::group_key`) of its own for a reconnect's connection: no pooled
/// connection is ever found under it, so the attempt gets a fresh one. (One shared key would
/// hand the next reconnect the previous one's connection, pooled for the few milliseconds
/// before its zero idle timeout closes it.)
fn fresh_connection_group() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    u64::MAX - NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// True if `e`, on a reused connection, means the server had closed that connection before it
/// answered anything: Pingora reads no response byte (end of stream, or a socket error, which
/// it marks [`RetryType::ReusedOnly`]) or cannot write the request head at all.
fn stale_connection(e: &Error) -> bool {
    matches!(e.retry, RetryType::ReusedOnly) || request_not_written(e)
}

/// True if `e` is a failure to write the request head: the server cannot have applied the
/// request (RFC 9110 §9.2.2), whatever its method. Pingora 0.9.1 says so only in the error's
/// context (`v1/client.rs`, `write_request_header`).
fn request_not_written(e: &Error) -> bool {
    e.etype == ErrorType::WriteError
        && e.context.as_ref().is_some_and(|c| {
            let c = c.as_str();
            c.starts_with("while writing request headers")
                || c.starts_with("flushing request header")
        })
}

/// Why a request was refused: the `reason` label of `switchyard_rejected_requests_total`.
#[derive(Debug, Clone, Copy)]
enum Reject {
    Acl,
    Loop,
    NoRoute,
    Cascade,
    /// A path that cannot be normalised (`400`).
    BadPath,
    /// No `Host` where one is required, or one that is not `host[:port]` (`400`).
    BadHost,
    /// `TRACE` to a route that does not list it (`405`).
    Method,
    /// The request body stalled for `body_timeout_ms` (`408` or closed).
    BodyTimeout,
}

/// The number of [`Reject`] reasons.
const REJECT_REASONS: usize = 8;

impl Reject {
    fn label(self) -> &'static str {
        match self {
            Reject::Acl => "acl",
            Reject::Loop => "loop",
            Reject::NoRoute => "no_route",
            Reject::Cascade => "cascade",
            Reject::BadPath => "bad_path",
            Reject::BadHost => "bad_host",
            Reject::Method => "method",
            Reject::BodyTimeout => "body_timeout",
        }
    }
}

/// Request hygiene, before anything reads the host or the path (see `docs/configuration.md`,
/// "How hostile HTTP/1 input is handled"):
///
/// * a `Host` (or absolute-form or HTTP/2 authority) is required except for HTTP/1.0, and must be
///   `host[:port]` ([`parse_host`]);
/// * the path is normalised ([`normalize_path`]) and the normal form replaces it, so routes match
///   it and the origin receives it; a target that is not UTF-8 is refused;
/// * identical duplicate `Content-Length` values (which Pingora accepts) become one field.
fn sanitize(req: &mut RequestHeader, slashes: EncodedSlashes) -> std::result::Result<(), Reject> {
    match request_authority(req) {
        Some(authority) => {
            parse_host(authority).map_err(|_| Reject::BadHost)?;
        }
        None if matches!(req.version, http::Version::HTTP_10 | http::Version::HTTP_09) => {}
        None => return Err(Reject::BadHost),
    }
    if !req.raw_path_is_utf8() {
        return Err(Reject::BadPath);
    }
    let normal = match normalize_path(req.uri.path(), slashes) {
        Ok(Cow::Borrowed(_)) => None,
        Ok(Cow::Owned(p)) => Some(p),
        Err(_) => return Err(Reject::BadPath),
    };
    if let Some(path) = normal {
        set_path(req, &path).map_err(|_| Reject::BadPath)?;
    }
    single_content_length(req);
    Ok(())
}

/// Replaces the path of `req`'s target with `path`, keeping its query, and the scheme and
/// authority of an absolute-form (HTTP/1) or HTTP/2 target.
fn set_path(req: &mut RequestHeader, path: &str) -> Result<()> {
    let query = req.uri.query();
    let mut pq = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    if let pingora::http::authority::RawTargetAuthority::Absolute {
        scheme, authority, ..
    } = pingora::http::authority::raw_target_authority(req.raw_path())
    {
        let mut target = Vec::with_capacity(scheme.len() + 3 + authority.len() + pq.len());
        target.extend_from_slice(scheme);
        target.extend_from_slice(b"://");
        target.extend_from_slice(authority);
        target.extend_from_slice(pq.as_bytes());
        return req.set_raw_path(&target);
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = req.uri.scheme().cloned();
    parts.authority = req.uri.authority().cloned();
    parts.path_and_query = Some(
        http::uri::PathAndQuery::try_from(pq)
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "normalised path", e))?,
    );
    let uri = http::Uri::from_parts(parts)
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "normalised path", e))?;
    req.set_uri(uri);
    Ok(())
}

/// Collapses identical duplicate `Content-Length` values (`5` and `5`, or `5, 5`) into one field.
/// Pingora has already refused differing or invalid ones (and dropped the field beside
/// `Transfer-Encoding`), but forwards duplicates as they came.
fn single_content_length(req: &mut RequestHeader) {
    if let Some(n) = duplicated_content_length(&req.headers) {
        let _ = req.insert_header(http::header::CONTENT_LENGTH, n);
    }
}

/// The value of identical duplicate `Content-Length` fields (several fields, or a list in one),
/// which must become a single field; `None` when there is one plain value or none.
fn duplicated_content_length(headers: &http::HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.next().is_none() && !first.as_bytes().contains(&b',') {
        return None;
    }
    first
        .as_bytes()
        .split(|&b| b == b',')
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.trim().parse::<u64>().ok())
}

/// Response framing a client must not see: `Content-Length` and `Transfer-Encoding` on a `204`
/// (RFC 9110 §8.6, RFC 9112 §6.1), `Transfer-Encoding` on a `304`, and identical duplicate
/// `Content-Length` values (collapsed into one field). The body itself is already withheld by
/// Pingora, which reads none for `204`, `304` and `HEAD`.
fn tidy_response_framing(resp: &mut ResponseHeader) {
    match resp.status.as_u16() {
        204 => {
            resp.remove_header(&http::header::CONTENT_LENGTH);
            resp.remove_header(&http::header::TRANSFER_ENCODING);
            return;
        }
        304 => {
            resp.remove_header(&http::header::TRANSFER_ENCODING);
        }
        _ => {}
    }
    if let Some(n) = duplicated_content_length(&resp.headers) {
        let _ = resp.insert_header(http::header::CONTENT_LENGTH, n);
    }
}

/// The HTTP gateway service of one listener.
#[derive(Debug, Clone)]
pub struct HttpGateway {
    shared: Arc<Shared>,
    listener: String,
    /// The listener's position in the runtime it was built with: checked by name on use, so a
    /// reload that moves it only costs the lookup by name.
    listener_hint: Option<usize>,
    /// `switchyard_rejected_requests_total{listener}` by [`Reject`], resolved on first use.
    rejected: Arc<[OnceLock<IntCounter>; REJECT_REASONS]>,
    /// `instance_id` as the `CDN-Loop` entry (`None` if it is not a valid header value).
    cdn_loop_id: Option<HeaderValue>,
}

impl HttpGateway {
    /// The service for listener `listener` (by name).
    pub fn new(shared: Arc<Shared>, listener: &str) -> Self {
        HttpGateway {
            cdn_loop_id: instance_id_value(&shared.instance_id),
            listener_hint: shared.runtime.load().listener_index(listener),
            rejected: Arc::default(),
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

    fn reject(&self, reason: Reject) {
        self.rejected[reason as usize]
            .get_or_init(|| {
                self.shared
                    .metrics
                    .rejected_requests_total
                    .with_label_values(&[&self.listener, reason.label()])
            })
            .inc();
    }

    /// Ends the current attempt as a failure of `kind`.
    fn fail_attempt(&self, ctx: &mut RequestCtx, kind: FailureKind) {
        ctx.last_failure = Some(kind);
        if let Some(a) = ctx.attempt.take() {
            if let Some(m) = &a.metrics {
                match kind {
                    FailureKind::Connect => m.connect_error.inc(),
                    FailureKind::Timeout => m.timeout.inc(),
                    FailureKind::Error => m.error.inc(),
                }
            }
            let now = a.upstream.pool.now_nanos();
            log::warn!(
                "upstream {} server {} failed: {kind:?}",
                a.upstream.cfg.name,
                a.id
            );
            let event = match kind {
                FailureKind::Timeout => PassiveEvent::Timeout,
                FailureKind::Connect | FailureKind::Error => PassiveEvent::ConnectError,
            };
            a.upstream.health.report(a.inflight.stats(), event);
            a.inflight.finish(Outcome::Failure, now);
        }
    }

    /// True if the route's retry policy allows another attempt.
    fn may_retry(&self, ctx: &RequestCtx, after_send: bool) -> bool {
        let Some(route) = ctx.rt.as_ref().zip(ctx.route).map(|(rt, r)| &rt.routes[r]) else {
            return false;
        };
        match route.cfg.retries {
            // Default: connect failures go to every other server in turn (nothing was sent);
            // failures after sending are retried once (idempotent methods only; checked by the
            // caller).
            -1 => !after_send || ctx.retries_after_send < 1,
            n => ctx.retries < u32::try_from(n).unwrap_or(0),
        }
    }

    /// Runs the extensions' request hooks: `before_routing` when `route` is `None`, else
    /// `on_request`. True if one of them answered the client (the request goes no further).
    async fn request_hooks(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: Option<&RouteConfig>,
    ) -> Result<bool> {
        for ext in &self.shared.extensions {
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

    /// The hashed request key, or `None` when the request has no key: the header, cookie or
    /// query parameter is absent **or empty**, or the host is empty. The selector then uses its
    /// fallback pick (smooth weighted round robin), as NGINX falls back to round robin for an
    /// empty `hash` key; hashing the empty string would send every such request to one server.
    ///
    /// The key's bytes are hashed by the upstream's ring (`ring`): the Ketama ring reads the
    /// CRC-32 of the same bytes NGINX hashes for `$remote_addr` (the address as text), `$uri`,
    /// `$host`, `$http_NAME`, `$cookie_NAME` and `$arg_NAME`.
    fn hash_key(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        hash_on: &HashOn,
        ring: HashRing,
    ) -> Option<u64> {
        let req = session.req_header();
        let non_empty = |v: &[u8]| (!v.is_empty()).then(|| ring.hash(v));
        match hash_on {
            HashOn::SourceIp => ctx.client_ip.map(|ip| crate::tcp::ip_key(ip, ring)),
            HashOn::Uri => non_empty(req.uri.path().as_bytes()),
            HashOn::Host => {
                let host = route_name(strip_port(request_host(req)));
                (!host.is_empty()).then(|| hash_lowercase(host, ring))
            }
            HashOn::Header(name) => req
                .headers
                .get(name.as_str())
                .and_then(|v| non_empty(v.as_bytes())),
            HashOn::Cookie(name) => cookie_value(req, name).and_then(|v| non_empty(v.as_bytes())),
            HashOn::Query(name) => req
                .uri
                .query()
                .and_then(|q| query_value(q, name))
                .and_then(|v| non_empty(v.as_bytes())),
        }
    }
}

/// The stable hash used for hashing selectors (same on every instance of a fleet).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    switchyard_balance::hash_key(bytes)
}

/// `ring`'s hash of `s` lower-cased (ASCII), lower-cased on the stack when it is short enough
/// (host names are at most 253 bytes).
fn hash_lowercase(s: &str, ring: HashRing) -> u64 {
    let mut buf = [0u8; 256];
    match buf.get_mut(..s.len()) {
        Some(lower) => {
            lower.copy_from_slice(s.as_bytes());
            lower.make_ascii_lowercase();
            ring.hash(lower)
        }
        None => ring.hash(s.to_ascii_lowercase().as_bytes()),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The value of query parameter `name` (undecoded).
pub fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn failure_kind(e: &Error) -> FailureKind {
    match e.etype() {
        ErrorType::ConnectTimedout
        | ErrorType::ReadTimedout
        | ErrorType::WriteTimedout
        | ErrorType::TLSHandshakeTimedout => FailureKind::Timeout,
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::BindError
        | ErrorType::SocketError
        | ErrorType::ConnectProxyFailure
        | ErrorType::TLSHandshakeFailure
        | ErrorType::InvalidCert => FailureKind::Connect,
        _ => FailureKind::Error,
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
        RequestCtx {
            rt: None,
            listener: 0,
            route: None,
            params: Params::default(),
            key: None,
            tried: Tried::default(),
            attempt: None,
            retries: 0,
            retries_after_send: 0,
            reconnect: Reconnect::Unused,
            last_failure: None,
            upstream_status: None,
            client_ip: None,
            client_host: None,
            sticky_target: None,
            ext: ExtContext::new(),
            start: Instant::now(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let rt = self.shared.runtime.load_full();
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
        session.set_read_timeout(Some(ms(rt.config.limits.body_timeout_ms)));
        let listener = &rt.listeners[li];
        ctx.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(ip) = ctx.client_ip {
            if !listener.admits(ip) {
                self.reject(Reject::Acl);
                respond(session, 403).await?;
                return Ok(true);
            }
        }
        let limits = &rt.config.limits;
        if let Err(reason) = sanitize(session.req_header_mut(), limits.encoded_slashes) {
            self.reject(reason);
            // The connection is not trusted with another request (as NGINX and HAProxy do
            // after a 400).
            session.set_keepalive(None);
            respond(session, 400).await?;
            return Ok(true);
        }
        if loop_detected(session.req_header(), &self.shared.instance_id) {
            self.reject(Reject::Loop);
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
                self.reject(Reject::Method);
                respond(session, 405).await?;
            } else {
                self.reject(Reject::NoRoute);
                respond(session, 404).await?;
            }
            return Ok(true);
        };
        ctx.route = Some(route_idx);
        ctx.params = params;
        let route = &rt.routes[route_idx];
        if route.cfg.require_cascade {
            let verdict = match &rt.cascade {
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
            };
            match verdict {
                cascade::Verdict::Accept => {}
                cascade::Verdict::Unauthorized => {
                    self.reject(Reject::Cascade);
                    respond(session, 401).await?;
                    return Ok(true);
                }
                cascade::Verdict::Forbidden => {
                    self.reject(Reject::Cascade);
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
        if let Some(sticky) = &upstream.sticky {
            ctx.sticky_target =
                cookie_value(req, &sticky.cfg.cookie).and_then(|v| sticky.decode(v));
        }
        if let Some(hash_on) = upstream.hash_on() {
            ctx.key = self.hash_key(session, ctx, hash_on, upstream.pool.options().hash_ring);
        }
        // `[limits] retry_buffer_bytes`: 0 never buffers (Pingora's buffer is a fixed 64 KiB).
        if rt.config.limits.retry_buffer_bytes > 0 {
            session.as_mut().enable_retry_buffering();
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
        let snap = upstream.pool.snapshot();
        // After a stale keep-alive connection: the same server again, on a fresh connection
        // (unless a reload removed it meanwhile).
        let reconnect = ctx.reconnect.take().and_then(|id| snap.find(&id));
        let sticky = ctx.sticky_target.as_ref().and_then(|id| {
            let (i, s) = snap.find(id)?;
            (snap.candidates().contains(&i) && !ctx.tried.contains(&s.stats)).then_some((i, s))
        });
        let Some((index, server)) = reconnect
            .or(sticky)
            .or_else(|| snap.pick_at(ctx.key, &ctx.tried))
        else {
            if ctx.tried.is_empty() {
                upstream.count_no_server();
                return Err(Error::explain(
                    ErrorType::HTTPStatus(503),
                    "no server available",
                ));
            }
            let code = match ctx.last_failure {
                Some(FailureKind::Timeout) => 504,
                _ => 502,
            };
            return Err(Error::explain(
                ErrorType::HTTPStatus(code),
                "retries exhausted: no untried server left",
            ));
        };
        if !ctx.tried.is_empty() || reconnect.is_some() {
            route.metrics.retried();
        }
        ctx.tried.insert(&server.stats);
        ctx.attempt = Some(Attempt {
            upstream: Arc::clone(upstream),
            id: server.spec.id.clone(),
            metrics: upstream.metrics_at(index, &server.spec.id),
            inflight: server.stats.begin(snap.now_nanos()),
            header_ns: None,
        });
        let mut peer = HttpPeer::new(server.spec.addr, upstream.tls.is_some(), String::new());
        if let Some(tls) = &upstream.tls {
            tls.apply(&mut peer, strip_port(server.spec.id.host_port()));
        }
        peer.options.connection_timeout = Some(ms(route.cfg.connect_timeout_ms));
        // An upgrade (WebSocket) becomes a tunnel that may idle for long in either direction
        // (HAProxy's `timeout tunnel`): both sides get `tunnel_timeout_ms` per read instead of the
        // response timeout, and the client side instead of Pingora's fixed 60 s.
        let per_read = if session.is_upgrade_req() {
            let tunnel = ms(route.cfg.tunnel_timeout_ms);
            session.set_read_timeout(Some(tunnel));
            tunnel
        } else {
            ms(route.cfg.timeout_ms)
        };
        peer.options.read_timeout = Some(per_read);
        peer.options.write_timeout = Some(ms(route.cfg.timeout_ms));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        if reconnect.is_some() {
            peer.group_key = fresh_connection_group();
            peer.options.idle_timeout = Some(Duration::ZERO);
        }
        crate::proxy_protocol::apply_for_session(
            &mut peer,
            session,
            upstream.cfg.proxy_protocol,
            ms(route.cfg.connect_timeout_ms),
        );
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
        if let Some(route_idx) = ctx.route {
            let route = &rt.routes[route_idx];
            if let Some(t) = &route.rewrite {
                let path = session.req_header().uri.path();
                let listener_router = &listener.router;
                let new = t.render(
                    |name| ctx.params.get(listener_router, route_idx, name, path),
                    session.req_header().uri.query(),
                );
                let uri = new.parse::<http::Uri>().map_err(|e| {
                    Error::because(ErrorType::InternalError, "bad rewritten path", e)
                })?;
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
                    upstream_request.insert_header(http::header::HOST, a.id.host_port())?;
                }
            }
            // Never pass a client's cascade header on; sign anew for cascade upstreams.
            upstream_request.remove_header(&cascade::HEADER_NAME);
            if let Some(key) = &rt.upstreams[route.upstream].cascade_key {
                let value = cascade::header_value(
                    key,
                    &self.shared.instance_id,
                    cascade::unix_now(),
                    upstream_request.method.as_str(),
                    upstream_request.uri.path(),
                );
                upstream_request.insert_header(cascade::HEADER, value)?;
            }
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
        if !self.shared.extensions.is_empty() {
            let info = RequestInfo {
                listener: &self.listener,
                route: ctx.route.map(|r| &rt.routes[r].cfg),
                server: ctx.attempt.as_ref().map(|a| &a.id),
                client_ip: ctx.client_ip,
            };
            for ext in &self.shared.extensions {
                ext.on_upstream_request(upstream_request, &info, &mut ctx.ext)
                    .await?;
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_status = Some(upstream_response.status.as_u16());
        tidy_response_framing(upstream_response);
        if let Some(a) = ctx.attempt.as_mut() {
            a.header_ns = Some(a.upstream.pool.now_nanos());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !self.shared.extensions.is_empty() {
            let info = RequestInfo {
                listener: &self.listener,
                route: ctx
                    .rt
                    .as_ref()
                    .zip(ctx.route)
                    .map(|(rt, r)| &rt.routes[r].cfg),
                server: ctx.attempt.as_ref().map(|a| &a.id),
                client_ip: ctx.client_ip,
            };
            for ext in &self.shared.extensions {
                ext.on_response(upstream_response, &info, &mut ctx.ext)
                    .await?;
            }
        }
        let (Some(a), Some(rt)) = (ctx.attempt.as_ref(), ctx.rt.as_ref()) else {
            return Ok(());
        };
        if let Some(sticky) = &a.upstream.sticky {
            if ctx.sticky_target.as_ref() != Some(&a.id) {
                let https = rt.listeners[ctx.listener].scheme() == "https";
                upstream_response
                    .append_header(http::header::SET_COOKIE, sticky.set_cookie(&a.id, https))?;
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
        let kind = failure_kind(&e);
        self.fail_attempt(ctx, kind);
        let _ = session;
        if self.may_retry(ctx, false) {
            ctx.retries += 1;
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
        if e.esource() == &ErrorSource::Downstream {
            // The client went away or sent garbage: not the server's fault, no retry.
            if let Some(a) = ctx.attempt.take() {
                drop(a.inflight);
            }
            e.set_retry(false);
            return e;
        }
        // `retry_non_idempotent` (NGINX `proxy_next_upstream non_idempotent`): POST and PATCH
        // are retried after sending like idempotent methods.
        let retryable_method = session.req_header().method.is_idempotent()
            || ctx
                .rt
                .as_ref()
                .zip(ctx.route)
                .is_some_and(|(rt, r)| rt.routes[r].cfg.retry_non_idempotent);
        // A body larger than `retry_buffer_bytes` (or any body when it is 0) cannot be replayed.
        let truncated = session.as_ref().retry_buffer_truncated()
            || ctx.rt.as_ref().is_some_and(|rt| {
                session.as_ref().body_bytes_read() > rt.config.limits.retry_buffer_bytes
            });
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
                    a.upstream.cfg.name,
                    a.id,
                    e.etype().as_str()
                );
                if let Some(m) = &a.metrics {
                    m.stale_connection.inc();
                }
                drop(a.inflight);
                ctx.reconnect = Reconnect::Pending(a.id);
                e.set_retry(true);
                return e;
            }
        }
        let kind = failure_kind(&e);
        self.fail_attempt(ctx, kind);
        if retryable_method && !truncated && self.may_retry(ctx, true) {
            ctx.retries += 1;
            ctx.retries_after_send += 1;
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
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => match ctx.last_failure.unwrap_or(failure_kind(e)) {
                    FailureKind::Timeout => 504,
                    _ => 502,
                },
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    // The request body stalled past `body_timeout_ms` (the head was read
                    // before this request began): 408, or a closed connection if the response
                    // has started. The upstream request is dropped with the attempt.
                    ErrorType::ReadTimedout => {
                        self.reject(Reject::BodyTimeout);
                        408
                    }
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => match ctx.last_failure {
                    Some(FailureKind::Timeout) => 504,
                    Some(_) => 502,
                    None => 500,
                },
            },
        };
        if code > 0 && session.response_written().is_none() {
            // Pingora closes the client connection after a failed request: say so in the answer
            // (`Connection: close`), or a keep-alive client would send its next request into a
            // closed socket.
            session.set_keepalive(None);
            if let Err(err) = respond(session, code).await {
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
    fn suppress_error_log(&self, session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        let client_gone = e.esource() == &ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            );
        if client_gone {
            log::info!(
                "client closed the connection before the response was complete: {} {} ({:?})",
                session.req_header().method,
                session.req_header().uri,
                e.etype()
            );
        }
        client_gone
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let code = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let elapsed = ctx.start.elapsed().as_secs_f64();
        if let Some(a) = ctx.attempt.take() {
            let status = ctx.upstream_status;
            let failed_status = status.is_some_and(|s| {
                a.upstream
                    .cfg
                    .health
                    .passive
                    .as_ref()
                    .map_or((500..=504).contains(&s), |p| {
                        p.unhealthy_statuses.contains(&s)
                    })
            });
            let m = a.metrics.as_deref();
            let now = a.upstream.pool.now_nanos();
            match (status, e) {
                (Some(s), _) => {
                    if let Some(m) = m {
                        if s >= 500 {
                            m.http_5xx.inc();
                        } else {
                            m.success.inc();
                        }
                    }
                    let outcome = if failed_status {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    a.upstream
                        .health
                        .report(a.inflight.stats(), PassiveEvent::Status(s));
                    a.inflight.finish(outcome, a.header_ns.unwrap_or(now));
                }
                (None, Some(_)) => {
                    if let Some(m) = m {
                        m.error.inc();
                    }
                    a.inflight.finish(Outcome::Failure, now);
                }
                (None, None) => drop(a.inflight),
            }
        }
        match (ctx.rt.as_ref(), ctx.route) {
            (Some(rt), Some(r)) => rt.routes[r].metrics.observe(code, elapsed),
            _ => self.shared.metrics.count_unrouted(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &[(&str, &str)], target: &[u8], version: http::Version) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target, None).unwrap();
        req.set_version(version);
        for (k, v) in head {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    #[test]
    fn sanitize_normalises_origin_absolute_and_h2_targets() {
        let v11 = http::Version::HTTP_11;
        let mut req = request(&[("Host", "a")], b"/x/../y/%7e?q=/../", v11);
        sanitize(&mut req, EncodedSlashes::Reject).unwrap();
        assert_eq!(req.raw_path(), b"/y/~?q=/../");
        let mut req = request(&[], b"http://h.example/a/./b?x", v11);
        sanitize(&mut req, EncodedSlashes::Reject).unwrap();
        assert_eq!(req.raw_path(), b"http://h.example/a/b?x");
        let mut req = request(&[], b"/a//b", http::Version::HTTP_2);
        req.set_uri("https://h.example/a//b".parse().unwrap());
        sanitize(&mut req, EncodedSlashes::Reject).unwrap();
        assert_eq!(req.uri.to_string(), "https://h.example/a/b");
        // Already normal: the target is left as it was.
        let mut req = request(&[("Host", "a")], b"/a/b?c=%2e", v11);
        sanitize(&mut req, EncodedSlashes::Reject).unwrap();
        assert_eq!(req.raw_path(), b"/a/b?c=%2e");
    }

    #[test]
    fn sanitize_refusals() {
        let v11 = http::Version::HTTP_11;
        let bad_path = |target: &[u8]| {
            let mut req = request(&[("Host", "a")], target, v11);
            matches!(
                sanitize(&mut req, EncodedSlashes::Reject),
                Err(Reject::BadPath)
            )
        };
        assert!(bad_path(b"/.."));
        assert!(bad_path(b"/a%2fb"));
        assert!(bad_path(b"/%zz"));
        assert!(bad_path(b"/\xff"));
        let bad_host = |head: &[(&str, &str)], version| {
            let mut req = request(head, b"/", version);
            matches!(
                sanitize(&mut req, EncodedSlashes::Reject),
                Err(Reject::BadHost)
            )
        };
        assert!(bad_host(&[], v11));
        assert!(bad_host(&[("Host", "a b")], v11));
        assert!(bad_host(&[("Host", "a b")], http::Version::HTTP_10));
        assert!(!bad_host(&[], http::Version::HTTP_10));
        assert!(!bad_host(&[("Host", "[::1]:80")], v11));
    }

    #[test]
    fn duplicate_lengths_become_one_field() {
        let v11 = http::Version::HTTP_11;
        for head in [
            &[("Content-Length", "5"), ("content-length", "5")][..],
            &[("Content-Length", "5, 5")],
        ] {
            let mut req = request(head, b"/", v11);
            req.insert_header("Host", "a").unwrap();
            sanitize(&mut req, EncodedSlashes::Reject).unwrap();
            let values: Vec<_> = req.headers.get_all("content-length").iter().collect();
            assert_eq!(values, vec!["5"]);
        }
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("Content-Length", "3").unwrap();
        resp.append_header("Content-Length", "3").unwrap();
        tidy_response_framing(&mut resp);
        assert_eq!(resp.headers.get_all("content-length").iter().count(), 1);
        let mut resp = ResponseHeader::build(204, None).unwrap();
        resp.append_header("Content-Length", "3").unwrap();
        resp.append_header("Transfer-Encoding", "chunked").unwrap();
        tidy_response_framing(&mut resp);
        assert!(resp.headers.is_empty());
        let mut resp = ResponseHeader::build(304, None).unwrap();
        resp.append_header("Content-Length", "3").unwrap();
        resp.append_header("Transfer-Encoding", "chunked").unwrap();
        tidy_response_framing(&mut resp);
        assert_eq!(resp.headers.len(), 1);
    }

    #[test]
    fn stale_connections_are_told_by_pingora_s_errors() {
        // What Pingora 0.9.1's HTTP/1 client returns (`protocols/http/v1/client.rs`).
        let mut eof = Error::explain(
            ErrorType::ConnectionClosed,
            "while reading response headers, bytes already read: 0",
        );
        eof.retry = RetryType::ReusedOnly;
        assert!(stale_connection(&eof));
        assert!(!request_not_written(&eof), "the head may have been applied");

        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let head = Error::because(ErrorType::WriteError, "while writing request headers", io);
        assert!(stale_connection(&head) && request_not_written(&head));
        let flush = Error::explain(ErrorType::WriteError, "flushing request header");
        assert!(request_not_written(&flush));

        // A body write, a timeout or a read error without an OS cause are not stale connections.
        let body = Error::explain(ErrorType::WriteError, "while writing request body");
        assert!(!stale_connection(&body));
        let timeout = Error::explain(ErrorType::ReadTimedout, "while reading response headers");
        assert!(!stale_connection(&timeout));
    }

    #[test]
    fn a_reconnect_is_used_once() {
        let id = ServerId::new("g", "127.0.0.1:80");
        let mut r = Reconnect::Unused;
        assert_eq!(r.take(), None);
        assert!(matches!(r, Reconnect::Unused));
        r = Reconnect::Pending(id.clone());
        assert_eq!(r.take(), Some(id));
        assert!(matches!(r, Reconnect::Used));
        assert_eq!(r.take(), None);
    }

    #[test]
    fn host_hash_is_that_of_the_lowercased_name() {
        let long = "A".repeat(300);
        for ring in [HashRing::Maglev, HashRing::Ketama] {
            for host in ["Example.COM", "example.com", "", "[::1]", long.as_str()] {
                assert_eq!(
                    hash_lowercase(host, ring),
                    ring.hash(host.to_ascii_lowercase().as_bytes())
                );
            }
        }
        assert_eq!(
            hash_lowercase("A", HashRing::Maglev),
            hash_bytes(b"a"),
            "Maglev keys are unchanged"
        );
    }
}
