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

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use switchyard_balance::{HashRing, Outcome, Tried};
use switchyard_config::ProxyProtocol;
use switchyard_health::PassiveEvent;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proxy_protocol::{encode, read_header};
use crate::runtime::admits;
use crate::service::{hash_bytes, Shared};

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
        let m = shared.metrics;
        TcpProxy {
            active: m.tcp_active_connections.with_label_values(&[listener]),
            bytes_in: m.tcp_bytes_total.with_label_values(&[listener, "in"]),
            bytes_out: m.tcp_bytes_total.with_label_values(&[listener, "out"]),
            listener: listener.to_string(),
            shared,
        }
    }

    fn count(&self, upstream: &str, outcome: TcpOutcome) {
        self.shared
            .metrics
            .tcp_connections_total
            .with_label_values(&[&self.listener, upstream, outcome.as_str()])
            .inc();
    }

    /// Proxies one client connection to the end.
    pub async fn handle(&self, mut client: Stream) -> TcpOutcome {
        let _active = {
            self.active.inc();
            ActiveGuard(self.active.clone())
        };
        let rt = self.shared.runtime.load_full();
        let Some(li) = rt.listener_index(&self.listener) else {
            // Removed by a reload: the socket stays open until the next graceful upgrade.
            self.count("", TcpOutcome::NoServer);
            return TcpOutcome::NoServer;
        };
        let lcfg = &rt.listeners[li].cfg;
        let upstream_name = lcfg.upstream.clone().unwrap_or_default();
        let digest = client.get_socket_digest();
        let mut peer = digest
            .as_ref()
            .and_then(|d| d.peer_addr())
            .and_then(|a| a.as_inet())
            .copied();
        let mut local = digest
            .as_ref()
            .and_then(|d| d.local_addr())
            .and_then(|a| a.as_inet())
            .copied();
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
                        .metrics
                        .proxy_protocol_errors_total
                        .with_label_values(&[&self.listener])
                        .inc();
                    self.count(&upstream_name, TcpOutcome::ProxyProtocolError);
                    return TcpOutcome::ProxyProtocolError;
                }
            }
        }
        if let Some(ip) = peer.map(|p| p.ip()) {
            if !admits(&lcfg.allow, &lcfg.deny, ip) {
                self.shared
                    .metrics
                    .rejected_requests_total
                    .with_label_values(&[&self.listener, "acl"])
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

        // Pick and connect, moving on to another server on failure.
        let connect_timeout = Duration::from_millis(lcfg.connect_timeout_ms.max(1));
        let snap = upstream.pool.snapshot();
        let mut tried = Tried::default();
        let attempts = snap.servers().len().clamp(1, MAX_CONNECT_ATTEMPTS);
        let mut connected = None;
        for _ in 0..attempts {
            let Some((index, server)) = snap.pick_at(key, &tried) else {
                break;
            };
            tried.insert(&server.stats);
            let inflight = server.stats.begin(snap.now_nanos());
            let metrics = upstream.metrics_at(index, &server.spec.id);
            let addr = server.spec.addr;
            match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(conn)) => {
                    let now = snap.now_nanos();
                    server
                        .stats
                        .observe_latency(now.saturating_sub(inflight.start_nanos()) as f64, now);
                    if let Some(m) = metrics {
                        m.success.inc();
                    }
                    // A connect success resets the passive checks' consecutive-failure count
                    // (the health crate has no L4 success event; 200 is never a failure status).
                    upstream
                        .health
                        .report(&server.stats, PassiveEvent::Status(200));
                    connected = Some((conn, inflight, addr));
                    break;
                }
                Ok(Err(e)) => {
                    log::warn!(
                        "listener {}: upstream {} server {} connect failed: {e}",
                        self.listener,
                        upstream_name,
                        server.spec.id
                    );
                    if let Some(m) = metrics {
                        m.connect_error.inc();
                    }
                    upstream
                        .health
                        .report(&server.stats, PassiveEvent::ConnectError);
                    inflight.finish(Outcome::Failure, snap.now_nanos());
                }
                Err(_) => {
                    log::warn!(
                        "listener {}: upstream {} server {} connect timed out after {connect_timeout:?}",
                        self.listener,
                        upstream_name,
                        server.spec.id
                    );
                    if let Some(m) = metrics {
                        m.timeout.inc();
                    }
                    upstream.health.report(&server.stats, PassiveEvent::Timeout);
                    inflight.finish(Outcome::Failure, snap.now_nanos());
                }
            }
        }
        let Some((mut server, _inflight, server_addr)) = connected else {
            let outcome = if tried.is_empty() {
                self.shared
                    .metrics
                    .no_server_total
                    .with_label_values(&[&upstream_name])
                    .inc();
                TcpOutcome::NoServer
            } else {
                TcpOutcome::ConnectFailed
            };
            self.count(&upstream_name, outcome);
            return outcome;
        };
        let _ = server.set_nodelay(true);

        if lcfg.proxy_protocol != ProxyProtocol::Off {
            let header = match (peer, local) {
                (Some(p), Some(l)) => encode(lcfg.proxy_protocol, p, l),
                _ => None,
            };
            // Without addresses (not a TCP client), the spec's `UNKNOWN` / `LOCAL` forms apply.
            let header = header.unwrap_or_else(|| unknown_header(lcfg.proxy_protocol));
            if let Err(e) = server.write_all(&header).await {
                log::warn!(
                    "listener {}: writing the PROXY header to {server_addr}: {e}",
                    self.listener
                );
                self.count(&upstream_name, TcpOutcome::Error);
                return TcpOutcome::Error;
            }
        }

        let idle = Duration::from_millis(lcfg.idle_timeout_ms.max(1));
        let outcome = pipe(
            &mut client,
            &mut server,
            idle,
            &self.bytes_in,
            &self.bytes_out,
        )
        .await;
        if outcome == TcpOutcome::IdleTimeout {
            log::debug!(
                "listener {}: closing idle connection to {server_addr}",
                self.listener
            );
        }
        self.count(&upstream_name, outcome);
        outcome
    }
}

/// The spec's header for a connection whose addresses are unknown.
fn unknown_header(version: ProxyProtocol) -> Vec<u8> {
    match version {
        ProxyProtocol::V2 => {
            // v2, LOCAL, AF_UNSPEC, no payload.
            let mut h = crate::proxy_protocol::HEADER_V2_SIGNATURE.to_vec();
            h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            h
        }
        _ => b"PROXY UNKNOWN\r\n".to_vec(),
    }
}

/// The hash key of a client address for an upstream whose ring is `ring` (IPv4-mapped IPv6
/// hashes as IPv4), as the HTTP service computes it for `source_ip_hash`: the address's bytes for
/// Maglev; for Ketama the CRC-32 of the address as text, what NGINX hashes for
/// `hash $remote_addr consistent` (formatted on the stack, no allocation).
///
/// ```
/// use switchyard_balance::HashRing;
/// use switchyard_proxy::tcp::ip_key;
/// let ip = "203.0.113.9".parse().unwrap();
/// assert_eq!(ip_key(ip, HashRing::Ketama), HashRing::Ketama.hash(b"203.0.113.9"));
/// assert_eq!(ip_key(ip, HashRing::Maglev), HashRing::Maglev.hash(&[203, 0, 113, 9]));
/// ```
pub fn ip_key(ip: IpAddr, ring: HashRing) -> u64 {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ring, ip) {
        (HashRing::Maglev, IpAddr::V4(v4)) => hash_bytes(&v4.octets()),
        (HashRing::Maglev, IpAddr::V6(v6)) => hash_bytes(&v6.octets()),
        (HashRing::Ketama, ip) => {
            use std::io::Write as _;
            // The longest IPv6 text is 45 bytes.
            let mut buf = [0u8; 64];
            let mut rest: &mut [u8] = &mut buf;
            let _ = write!(rest, "{ip}");
            let len = 64 - rest.len();
            ring.hash(buf.get(..len).unwrap_or_default())
        }
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
    let epoch = Instant::now();
    let last = AtomicU64::new(0);
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let both = async {
        tokio::try_join!(
            copy_half(&mut cr, &mut sw, &last, epoch, bytes_in),
            copy_half(&mut sr, &mut cw, &last, epoch, bytes_out),
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
    counter: &IntCounter,
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
    fn ip_key_maps_v4_in_v6() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        for ring in [HashRing::Maglev, HashRing::Ketama] {
            assert_eq!(ip_key(v4, ring), ip_key(mapped, ring));
        }
    }

    #[test]
    fn ketama_ip_keys_hash_the_address_text() {
        for text in [
            "10.1.2.3",
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(
                ip_key(ip, HashRing::Ketama),
                HashRing::Ketama.hash(text.as_bytes())
            );
        }
        // Maglev keys are what they always were.
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let IpAddr::V6(v6) = ip else { unreachable!() };
        assert_eq!(ip_key(ip, HashRing::Maglev), hash_bytes(&v6.octets()));
    }
}
