//! The TCP (L4) proxy: a Pingora [`ServerApp`] that pipes bytes between a client and one server
//! of the listener's upstream.
//!
//! Per connection:
//! 1. With `accept_proxy_protocol`, read the PROXY header (v1 or v2); its source address is the
//!    client from then on. A bad or missing header closes the connection.
//! 2. The listener's `allow` / `deny` CIDRs on the client address; refused connections are
//!    closed at once.
//! 3. Pick a server with the upstream's selector (hashing selectors hash the client IP), connect
//!    within `connect_timeout_ms`; a failed connect marks the server tried and picks another,
//!    until every candidate was tried. The connect time feeds the EWMA; the connection counts as
//!    in flight (for `least_conn`) until it closes.
//! 4. With `proxy_protocol = "v1" | "v2"`, write the PROXY header naming the client and the
//!    address it connected to.
//! 5. Copy both ways. End of stream in one direction is passed on as a write shutdown (half
//!    close) while the other direction keeps flowing; an error on either side closes both; a
//!    connection with no byte in either direction for `idle_timeout_ms` is closed.
//!
//! Metrics: `switchyard_tcp_connections_total{listener,upstream,outcome}`,
//! `switchyard_tcp_active_connections{listener}`, `switchyard_tcp_bytes_total{listener,direction}`,
//! and the per-server `switchyard_upstream_requests_total` outcomes for connect attempts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use switchyard_balance::{Claim, InFlight, Tried};
use switchyard_config::{AccessLogFormat, ProxyProtocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::attempt::Attempt;
use crate::observe::tcp_record::TcpRecord;
use crate::observe::Telemetry;
use crate::overload::{self, NoServer};
use crate::proxy_protocol::{encode, read_header};
use crate::reject::Reject;
use crate::request_key::{inet_addr, ip_key};
use crate::retry::FailureKind;
use crate::runtime::{admits, UpstreamRuntime};
use crate::shared::Shared;

/// Size of each direction's copy buffer.
pub const COPY_BUFFER: usize = 32 * 1024;
/// Upper bound on connect attempts for one client connection (besides "every candidate once").
pub const MAX_CONNECT_ATTEMPTS: usize = 32;

/// How a TCP proxy connection ended: the `outcome` label of `switchyard_tcp_connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOutcome {
    /// Both directions ended normally.
    Closed,
    /// A read or write failed (reset) on either side.
    Error,
    /// No byte in either direction for `idle_timeout_ms`.
    IdleTimeout,
    /// Refused by the listener's `allow` / `deny`.
    Denied,
    /// A missing or malformed PROXY header (with `accept_proxy_protocol`).
    ProxyProtocolError,
    /// No server was available (all down, disabled or drained).
    NoServer,
    /// Every server was at its `max_in_flight` (and the queue full, or waited out).
    Overloaded,
    /// Every candidate server refused or timed out.
    ConnectFailed,
}

impl TcpOutcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpOutcome::Closed => "closed",
            TcpOutcome::Error => "error",
            TcpOutcome::IdleTimeout => "idle_timeout",
            TcpOutcome::Denied => "denied",
            TcpOutcome::ProxyProtocolError => "proxy_protocol_error",
            TcpOutcome::NoServer => "no_server",
            TcpOutcome::Overloaded => "overloaded",
            TcpOutcome::ConnectFailed => "connect_failed",
        }
    }
}

/// The TCP proxy of one `protocol = "tcp"` listener.
#[derive(Debug)]
pub struct TcpProxy {
    shared: Arc<Shared>,
    listener: String,
    active: IntGauge,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    /// The access log.
    telemetry: Arc<Telemetry>,
}

/// Decrements the active-connections gauge however the connection ends.
struct ActiveGuard(IntGauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl TcpProxy {
    /// The proxy for listener `listener` (by name); its configuration is read from the current
    /// runtime on every connection.
    pub fn new(shared: Arc<Shared>, listener: &str) -> Self {
        let m = shared.metrics();
        TcpProxy {
            active: m.tcp_active_connections.with_label_values(&[listener]),
            bytes_in: m.tcp_bytes_total.with_label_values(&[listener, "in"]),
            bytes_out: m.tcp_bytes_total.with_label_values(&[listener, "out"]),
            listener: listener.to_string(),
            telemetry: shared.telemetry(),
            shared,
        }
    }

    fn count(&self, upstream: &str, outcome: TcpOutcome) {
        self.shared
            .metrics()
            .tcp_connections_total
            .with_label_values(&[&self.listener, upstream, outcome.as_str()])
            .inc();
    }

    /// Proxies one client connection to the end; with an access log, writes its line.
    pub async fn handle(&self, client: Stream) -> TcpOutcome {
        let Some(log) = self.telemetry.access_log() else {
            return self.serve(client, &mut None).await;
        };
        let since = Instant::now();
        let mut rec = Some(TcpRecord {
            start: Some(SystemTime::now()),
            ..TcpRecord::default()
        });
        let outcome = self.serve(client, &mut rec).await;
        if let Some(rec) = rec {
            let rt = self.shared.snapshot();
            let upstream = rt
                .listener_index(&self.listener)
                .and_then(|li| rt.listeners[li].cfg.upstream.as_deref())
                .unwrap_or_default();
            let duration = since.elapsed();
            log.send(match log.format() {
                AccessLogFormat::Json => {
                    rec.json(&self.listener, upstream, outcome.as_str(), duration)
                }
                AccessLogFormat::Combined => {
                    rec.combined(&self.listener, outcome.as_str(), duration)
                }
            });
        }
        outcome
    }

    /// Proxies one client connection to the end, noting in `rec` (if any) what the access log
    /// records.
    async fn serve(&self, mut client: Stream, rec: &mut Option<TcpRecord>) -> TcpOutcome {
        let _active = {
            self.active.inc();
            ActiveGuard(self.active.clone())
        };
        let rt = self.shared.runtime();
        let Some(li) = rt.listener_index(&self.listener) else {
            // Removed by a reload: the socket stays open until the next graceful upgrade.
            self.count("", TcpOutcome::NoServer);
            return TcpOutcome::NoServer;
        };
        let lcfg = &rt.listeners[li].cfg;
        let upstream_name = lcfg.upstream.clone().unwrap_or_default();
        let digest = client.get_socket_digest();
        let mut peer = inet_addr(digest.as_ref().and_then(|d| d.peer_addr()));
        let mut local = inet_addr(digest.as_ref().and_then(|d| d.local_addr()));
        if lcfg.expects_proxy_header_from(peer.map(|p| p.ip())) {
            match read_header(&mut client).await {
                Ok(carried) => {
                    if let Some((src, dst)) = carried.addrs {
                        peer = Some(src);
                        local = Some(dst);
                    }
                }
                Err(e) => {
                    log::info!("listener {}: closing connection: {e}", self.listener);
                    self.shared
                        .metrics()
                        .proxy_protocol_errors_total
                        .with_label_values(&[&self.listener])
                        .inc();
                    self.count(&upstream_name, TcpOutcome::ProxyProtocolError);
                    return TcpOutcome::ProxyProtocolError;
                }
            }
        }
        if let Some(rec) = rec.as_mut() {
            rec.client_ip = peer.map(|p| p.ip());
        }
        if let Some(ip) = peer.map(|p| p.ip()) {
            if !admits(&lcfg.allow, &lcfg.deny, ip) {
                self.shared
                    .metrics()
                    .rejected_requests_total
                    .with_label_values(&[&self.listener, Reject::Acl.label()])
                    .inc();
                self.count(&upstream_name, TcpOutcome::Denied);
                return TcpOutcome::Denied;
            }
        }
        let Some(upstream) = rt.upstream(&upstream_name) else {
            self.count(&upstream_name, TcpOutcome::NoServer);
            return TcpOutcome::NoServer;
        };
        let key = match (upstream.hash_on(), peer) {
            (Some(_), Some(p)) => Some(ip_key(p.ip(), upstream.pool.options().hash_ring)),
            _ => None,
        };

        let connect_timeout = Duration::from_millis(lcfg.connect_timeout_ms.max(1));
        let (mut server, _inflight, server_addr) =
            match self.connect(upstream, key, connect_timeout, rec).await {
                Ok(connected) => connected,
                Err(outcome) => {
                    self.count(&upstream_name, outcome);
                    return outcome;
                }
            };
        let _ = server.set_nodelay(true);

        if lcfg.proxy_protocol != ProxyProtocol::Off {
            let header = match (peer, local) {
                (Some(p), Some(l)) => encode(lcfg.proxy_protocol, p, l).map(Ok),
                _ => None,
            }
            // Without addresses (not a TCP client), the spec's `UNKNOWN` / `LOCAL` forms apply.
            .unwrap_or_else(|| unknown_header(lcfg.proxy_protocol));
            let written = match header {
                Ok(header) => server.write_all(&header).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                log::warn!(
                    "listener {}: writing the PROXY header to {server_addr}: {e}",
                    self.listener
                );
                self.count(&upstream_name, TcpOutcome::Error);
                return TcpOutcome::Error;
            }
        }

        let idle = Duration::from_millis(lcfg.idle_timeout_ms.max(1));
        let counted = Transferred::default();
        let outcome = pipe_counted(
            &mut client,
            &mut server,
            idle,
            (&self.bytes_in, &self.bytes_out),
            &counted,
        )
        .await;
        if let Some(rec) = rec.as_mut() {
            rec.bytes_received = counted.received.load(Ordering::Relaxed);
            rec.bytes_sent = counted.sent.load(Ordering::Relaxed);
        }
        if outcome == TcpOutcome::IdleTimeout {
            log::debug!(
                "listener {}: closing idle connection to {server_addr}",
                self.listener
            );
        }
        self.count(&upstream_name, outcome);
        outcome
    }

    /// Picks a server of `upstream` (by `key` for hashing selectors) and connects to it within
    /// `timeout`, moving on to another server on failure until every candidate was tried (at most
    /// [`MAX_CONNECT_ATTEMPTS`]). Returns the connection, its in-flight guard and the server's
    /// address, or why there is none.
    async fn connect(
        &self,
        upstream: &UpstreamRuntime,
        key: Option<u64>,
        timeout: Duration,
        rec: &mut Option<TcpRecord>,
    ) -> Result<(TcpStream, InFlight, SocketAddr), TcpOutcome> {
        let mut tried = Tried::default();
        let attempts = upstream
            .pool
            .snapshot()
            .servers()
            .len()
            .clamp(1, MAX_CONNECT_ATTEMPTS);
        let mut refusal = NoServer::Unavailable;
        for _ in 0..attempts {
            // The connection holds a slot of the server's `max_in_flight` while it lasts; the
            // first connect may wait in the upstream's queue.
            let claim = match overload::admit(upstream, key, &tried, None).await {
                Ok(claim) => claim,
                Err(why) => {
                    refusal = why;
                    break;
                }
            };
            let Claim {
                snapshot,
                index,
                inflight,
                ..
            } = claim;
            let server = &snapshot.servers()[index];
            tried.insert(&server.stats);
            if let Some(rec) = rec.as_mut() {
                rec.attempts += 1;
                rec.server = Some(server.spec.id.to_string());
            }
            let addr = server.spec.addr;
            let server_id = &server.spec.id;
            let attempt = Attempt::claimed(upstream, index, server, inflight);
            let kind = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(conn)) => return Ok((conn, attempt.connected(), addr)),
                Ok(Err(e)) => {
                    log::warn!(
                        "listener {}: upstream {} server {} connect failed: {e}",
                        self.listener,
                        upstream.cfg.name,
                        server_id
                    );
                    FailureKind::Connect
                }
                Err(_) => {
                    log::warn!(
                        "listener {}: upstream {} server {} connect timed out after {timeout:?}",
                        self.listener,
                        upstream.cfg.name,
                        server_id
                    );
                    FailureKind::Timeout
                }
            };
            attempt.fail(kind);
        }
        if tried.is_empty() {
            if refusal.is_overload() {
                if let Some(more) = upstream.refusal_log.tcp_full.admit() {
                    log::warn!(
                        "listener {}: upstream {}: every server is at its max_in_flight; \
                         connection closed{more}",
                        self.listener,
                        upstream.cfg.name
                    );
                }
                return Err(TcpOutcome::Overloaded);
            }
            upstream.count_no_server();
            if let Some(more) = upstream.refusal_log.tcp_no_server.admit() {
                log::warn!(
                    "listener {}: upstream {}: no server available; connection closed{more}",
                    self.listener,
                    upstream.cfg.name
                );
            }
            Err(TcpOutcome::NoServer)
        } else {
            Err(TcpOutcome::ConnectFailed)
        }
    }
}

/// The spec's header for a connection whose addresses are unknown: v1 `PROXY UNKNOWN`, or v2
/// `LOCAL` with no address (`AF_UNSPEC`).
fn unknown_header(version: ProxyProtocol) -> std::io::Result<Vec<u8>> {
    match version {
        ProxyProtocol::V2 => {
            use ppp::v2::{AddressFamily, Builder, Command, Protocol, Version};
            Builder::new(
                Version::Two | Command::Local,
                AddressFamily::Unspecified | Protocol::Unspecified,
            )
            .build()
        }
        _ => Ok(ppp::v1::Addresses::Unknown.to_string().into_bytes()),
    }
}

/// Copies `client` ⇄ `server` until both directions ended, one failed, or nothing moved for
/// `idle`.
pub async fn pipe<C, S>(
    client: &mut C,
    server: &mut S,
    idle: Duration,
    bytes_in: &IntCounter,
    bytes_out: &IntCounter,
) -> TcpOutcome
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    pipe_counted(
        client,
        server,
        idle,
        (bytes_in, bytes_out),
        &Transferred::default(),
    )
    .await
}

/// The bytes one connection moved, each way.
#[derive(Debug, Default)]
pub struct Transferred {
    /// Client to server.
    pub received: AtomicU64,
    /// Server to client.
    pub sent: AtomicU64,
}

/// [`pipe`], also adding the connection's bytes to `counted`.
pub async fn pipe_counted<C, S>(
    client: &mut C,
    server: &mut S,
    idle: Duration,
    (bytes_in, bytes_out): (&IntCounter, &IntCounter),
    counted: &Transferred,
) -> TcpOutcome
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let epoch = Instant::now();
    let last = AtomicU64::new(0);
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let both = async {
        tokio::try_join!(
            copy_half(
                &mut cr,
                &mut sw,
                &last,
                epoch,
                (bytes_in, &counted.received)
            ),
            copy_half(&mut sr, &mut cw, &last, epoch, (bytes_out, &counted.sent)),
        )
    };
    tokio::select! {
        res = both => match res {
            Ok(_) => TcpOutcome::Closed,
            Err(e) => {
                log::debug!("tcp proxy connection failed: {e}");
                TcpOutcome::Error
            }
        },
        _ = idle_watch(&last, epoch, idle) => TcpOutcome::IdleTimeout,
    }
}

/// Milliseconds since `epoch`.
fn elapsed_ms(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Copies one direction; at end of stream shuts the writer down (half close).
async fn copy_half<R, W>(
    r: &mut R,
    w: &mut W,
    last: &AtomicU64,
    epoch: Instant,
    (counter, total): (&IntCounter, &AtomicU64),
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = r.read(&mut buf).await?;
        last.store(elapsed_ms(epoch), Ordering::Relaxed);
        if n == 0 {
            // The peer may already have closed its side; nothing more to do then.
            if let Err(e) = w.shutdown().await {
                if e.kind() != std::io::ErrorKind::NotConnected {
                    return Err(e);
                }
            }
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        last.store(elapsed_ms(epoch), Ordering::Relaxed);
        counter.inc_by(n as u64);
        total.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Returns once nothing was copied for `idle`.
async fn idle_watch(last: &AtomicU64, epoch: Instant, idle: Duration) {
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    loop {
        let since = elapsed_ms(epoch).saturating_sub(last.load(Ordering::Relaxed));
        if since >= idle_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(idle_ms - since)).await;
    }
}

#[async_trait]
impl ServerApp for TcpProxy {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.handle(session).await;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn counters() -> (IntCounter, IntCounter) {
        (
            IntCounter::new("i", "i").unwrap(),
            IntCounter::new("o", "o").unwrap(),
        )
    }

    #[tokio::test]
    async fn pipes_both_ways_with_half_close() {
        let (mut client_far, mut client_near) = duplex(1024);
        let (mut server_near, mut server_far) = duplex(1024);
        let (bi, bo) = counters();
        let proxy = tokio::spawn(async move {
            pipe(
                &mut client_near,
                &mut server_near,
                Duration::from_secs(5),
                &bi,
                &bo,
            )
            .await
        });
        // Echo server: reads to EOF, then answers and closes.
        let server = tokio::spawn(async move {
            let mut got = Vec::new();
            server_far.read_to_end(&mut got).await.unwrap();
            server_far.write_all(&got).await.unwrap();
            server_far.shutdown().await.unwrap();
        });
        client_far.write_all(b"hello").await.unwrap();
        client_far.shutdown().await.unwrap();
        let mut back = Vec::new();
        client_far.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hello");
        server.await.unwrap();
        assert_eq!(proxy.await.unwrap(), TcpOutcome::Closed);
    }

    #[tokio::test]
    async fn idle_connections_are_closed() {
        let (_client_far, mut client_near) = duplex(1024);
        let (mut server_near, _server_far) = duplex(1024);
        let (bi, bo) = counters();
        tokio::time::pause();
        let outcome = pipe(
            &mut client_near,
            &mut server_near,
            Duration::from_millis(50),
            &bi,
            &bo,
        )
        .await;
        assert_eq!(outcome, TcpOutcome::IdleTimeout);
    }

    #[test]
    fn unknown_headers_are_the_spec_s_bytes() {
        assert_eq!(
            unknown_header(ProxyProtocol::V1).unwrap(),
            b"PROXY UNKNOWN\r\n"
        );
        assert_eq!(
            unknown_header(ProxyProtocol::V2).unwrap(),
            b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
        );
        let mut v2 = crate::proxy_protocol::HEADER_V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(unknown_header(ProxyProtocol::V2).unwrap(), v2);
    }
}
