// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! One task per connector that looks after the idle connections of its keep-alive pool, instead
//! of a watcher task per released connection.
//!
//! While the pool holds connections the task wakes every [ConnectionPool::sweep_interval] (a
//! quarter of the shortest idle timeout, 10 ms to 1 s) and sweeps it: a connection idle longer
//! than its timeout is closed, and every idle socket gets the non-blocking read of
//! [test_reusable_stream], so a connection the server closed (or wrote to) while idle is closed
//! on our side within one interval. When the pool is empty the task parks until the next release
//! wakes it (or for at most 1 s). A release costs one relaxed atomic load when the task runs.

use super::test_reusable_stream;
use crate::protocols::Stream;
use log::debug;
use pingora_pool::ConnectionPool;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// The keep-alive pool of a [super::TransportConnector].
pub(crate) type StreamPool = ConnectionPool<Stream>;

const NOT_STARTED: u8 = 0;
const RUNNING: u8 = 1;
const PARKED: u8 = 2;
const CLOSED: u8 = 3;

/// The longest a parked reaper waits without a release (a release that raced the parking is
/// swept at the latest then).
const PARKED_WAIT: Duration = Duration::from_secs(1);

struct Shared {
    state: AtomicU8,
    wake: Notify,
}

/// The handle a connector keeps: starts the reaper on the first release, wakes it when parked,
/// and stops it when dropped.
pub(crate) struct PoolReaper {
    shared: Arc<Shared>,
}

impl PoolReaper {
    pub(crate) fn new() -> Self {
        PoolReaper {
            shared: Arc::new(Shared {
                state: AtomicU8::new(NOT_STARTED),
                wake: Notify::new(),
            }),
        }
    }

    /// Called before a connection is released to `pool`: makes sure the reaper runs.
    #[inline]
    pub(crate) fn before_release(&self, pool: &Arc<StreamPool>, unexpected: &Arc<AtomicU64>) {
        if self.shared.state.load(Ordering::Relaxed) != RUNNING {
            self.start_or_wake(pool, unexpected);
        }
    }

    #[cold]
    fn start_or_wake(&self, pool: &Arc<StreamPool>, unexpected: &Arc<AtomicU64>) {
        // The pool's idle clock stood still while the reaper was parked: advance it before the
        // release stamps the connection with it.
        pool.tick();
        let state = &self.shared.state;
        if state
            .compare_exchange(NOT_STARTED, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let shared = self.shared.clone();
            let pool = Arc::downgrade(pool);
            let unexpected = unexpected.clone();
            pingora_runtime::current_handle().spawn(reap(pool, shared, unexpected));
        } else if state
            .compare_exchange(PARKED, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.shared.wake.notify_one();
        }
    }

    /// Whether the reaper task has been started (for tests).
    #[cfg(test)]
    pub(crate) fn started(&self) -> bool {
        self.shared.state.load(Ordering::Relaxed) != NOT_STARTED
    }
}

impl Drop for PoolReaper {
    fn drop(&mut self) {
        self.shared.state.store(CLOSED, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// The reaper task: sweeps `pool` while it holds connections, parks while it is empty, ends
/// when the connector is dropped.
async fn reap(pool: Weak<StreamPool>, shared: Arc<Shared>, unexpected: Arc<AtomicU64>) {
    loop {
        let interval = match pool.upgrade() {
            Some(pool) => pool.sweep_interval(),
            None => return,
        };
        pingora_timeout::sleep(interval).await;
        if shared.state.load(Ordering::Acquire) == CLOSED {
            return;
        }
        let Some(pool) = pool.upgrade() else { return };
        let sweep = pool.sweep(|stream| test_reusable_stream(stream, &unexpected));
        if sweep.expired + sweep.refused > 0 {
            debug!(
                "pool sweep: {} idle timeout(s), {} closed by the server, {} left",
                sweep.expired, sweep.refused, sweep.remaining
            );
        }
        if sweep.remaining > 0 {
            continue;
        }
        shared.state.store(PARKED, Ordering::Release);
        if !pool.is_empty() {
            shared.state.store(RUNNING, Ordering::Release);
            continue;
        }
        drop(pool);
        let _ = pingora_timeout::timeout(PARKED_WAIT, shared.wake.notified()).await;
        // Woken by a release (already RUNNING) or by the wait's end: sweep as usual, the pool
        // may hold a connection released while the state was being set.
        let _ = shared
            .state
            .compare_exchange(PARKED, RUNNING, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// The reaper against loopback servers that report when our side closes a connection.
#[cfg(all(test, unix))]
mod tests {
    use super::super::TransportConnector;
    use crate::upstreams::peer::{BasicPeer, Peer};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// A loopback server that reads every connection it accepts until our side closes it and
    /// then sends the time of that EOF. With `half_close_after`, it first shuts down its own
    /// writing side that long after accepting (the connection then idles half-closed in our
    /// pool).
    async fn eof_server(
        half_close_after: Option<Duration>,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Instant>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(after) = half_close_after {
                        tokio::time::sleep(after).await;
                        let _ = s.shutdown().await;
                    }
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    let _ = tx.send(Instant::now());
                });
            }
        });
        (addr, rx)
    }

    /// The time until the server saw our side close a connection, at most `limit`.
    async fn closed_within(rx: &mut mpsc::UnboundedReceiver<Instant>, limit: Duration) -> bool {
        tokio::time::timeout(limit, rx.recv()).await.is_ok()
    }

    #[tokio::test]
    async fn releases_spawn_no_task_per_connection() {
        let (addr, _rx) = eof_server(None).await;
        let connector = TransportConnector::new(None);
        let peer = BasicPeer::new(&addr.to_string());
        let mut streams = Vec::new();
        for _ in 0..20 {
            streams.push(connector.new_stream(&peer).await.unwrap());
        }
        tokio::task::yield_now().await;
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        for s in streams {
            connector.release_stream(s, peer.reuse_hash(), Some(Duration::from_secs(60)));
        }
        assert!(connector.reaper.started());
        // 20 pooled connections, one reaper task (0.9.1: a watcher task each).
        assert_eq!(metrics.num_alive_tasks(), before + 1);
        // and they are all reused, one by one, for their peer
        for _ in 0..20 {
            assert!(connector.reused_stream(&peer).await.is_some());
        }
        assert!(connector.reused_stream(&peer).await.is_none());
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_its_idle_timeout() {
        let (addr, mut rx) = eof_server(None).await;
        let connector = TransportConnector::new(None);
        let peer = BasicPeer::new(&addr.to_string());
        let timeout = Duration::from_millis(120);
        let stream = connector.new_stream(&peer).await.unwrap();
        let released = Instant::now();
        connector.release_stream(stream, peer.reuse_hash(), Some(timeout));
        assert!(
            closed_within(&mut rx, Duration::from_secs(2)).await,
            "not closed"
        );
        let idle = released.elapsed();
        // Swept every 30 ms (a quarter of the timeout) on a 10 ms timer wheel: closed after the
        // timeout, at most a few sweeps late.
        assert!(
            idle >= timeout - Duration::from_millis(5),
            "early: {idle:?}"
        );
        assert!(
            idle < timeout + Duration::from_millis(400),
            "late: {idle:?}"
        );
        assert!(connector.reused_stream(&peer).await.is_none());
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_while_idle_is_closed_on_our_side() {
        let (addr, mut rx) = eof_server(Some(Duration::from_millis(50))).await;
        let connector = TransportConnector::new(None);
        let peer = BasicPeer::new(&addr.to_string());
        let stream = connector.new_stream(&peer).await.unwrap();
        // A long idle timeout: only the sweep's read can find the server's FIN (a sweep a second).
        connector.release_stream(stream, peer.reuse_hash(), Some(Duration::from_secs(60)));
        let released = Instant::now();
        assert!(
            closed_within(&mut rx, Duration::from_secs(3)).await,
            "the half-closed connection stayed open on our side"
        );
        assert!(released.elapsed() < Duration::from_millis(2_200));
        assert!(connector.reused_stream(&peer).await.is_none());
    }

    #[tokio::test]
    async fn the_reaper_parks_on_an_empty_pool_and_a_release_wakes_it() {
        let (addr, mut rx) = eof_server(None).await;
        let connector = TransportConnector::new(None);
        let peer = BasicPeer::new(&addr.to_string());
        let timeout = Duration::from_millis(40);
        let stream = connector.new_stream(&peer).await.unwrap();
        connector.release_stream(stream, peer.reuse_hash(), Some(timeout));
        assert!(closed_within(&mut rx, Duration::from_secs(2)).await);
        // The sweep after that finds the pool empty and parks the reaper.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            connector.reaper.shared.state.load(super::Ordering::Relaxed),
            super::PARKED
        );
        let stream = connector.new_stream(&peer).await.unwrap();
        let released = Instant::now();
        connector.release_stream(stream, peer.reuse_hash(), Some(timeout));
        assert!(closed_within(&mut rx, Duration::from_secs(2)).await);
        // woken by the release, not by the parked wait's 1 s bound
        assert!(released.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_zero_idle_timeout_closes_at_release() {
        let (addr, mut rx) = eof_server(None).await;
        let connector = TransportConnector::new(None);
        let peer = BasicPeer::new(&addr.to_string());
        let stream = connector.new_stream(&peer).await.unwrap();
        connector.release_stream(stream, peer.reuse_hash(), Some(Duration::ZERO));
        assert!(closed_within(&mut rx, Duration::from_millis(500)).await);
        assert!(connector.reused_stream(&peer).await.is_none());
    }

    #[tokio::test]
    async fn the_reaper_ends_with_its_connector() {
        let (addr, _rx) = eof_server(None).await;
        let connector = TransportConnector::new(None);
        let peer = BasicPeer::new(&addr.to_string());
        let stream = connector.new_stream(&peer).await.unwrap();
        connector.release_stream(stream, peer.reuse_hash(), Some(Duration::from_secs(60)));
        tokio::task::yield_now().await;
        // the task holds the only other reference to the reaper's state
        let shared = std::sync::Arc::downgrade(&connector.reaper.shared);
        assert_eq!(shared.strong_count(), 2);
        drop(connector);
        // it notices at its next wake-up (at most a sweep interval, 1 s here)
        for _ in 0..100 {
            if shared.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the reaper outlived its connector");
    }
}
