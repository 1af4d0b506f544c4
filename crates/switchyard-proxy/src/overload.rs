//! Admission of an attempt under per-server limits: claim a server with room, else wait in the
//! upstream's queue for `queue_timeout_ms`, else refuse — and count why.
//!
//! HTTP requests and TCP connections go through [`admit`] alike. A first attempt may queue; a
//! retry never does (it returns the failure it would have retried when every other server is
//! full). Without `max_in_flight` anywhere this is the pick and the in-flight count it always
//! was: no queue read, no clock read beyond the one the in-flight count takes.
//!
//! | refusal | HTTP | gRPC | TCP | `switchyard_queue_rejected_total{reason}` |
//! |---|---|---|---|---|
//! | every server full, no queue or queue full | 503 + `Retry-After` | status 14 | closed | `full` |
//! | waited `queue_timeout_ms` | 503 + `Retry-After` | status 14 | closed | `timeout` |
//! | the route's `deadline_ms` passed while queued | 504 | status 4 | — | `deadline` |

use std::time::{Duration, Instant};

use switchyard_balance::{Claim, Refusal, Tried};

use crate::runtime::UpstreamRuntime;

/// Why an attempt got no server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoServer {
    /// Nothing available (all down, or every server tried).
    Unavailable,
    /// Every server is at its limit and the request may not wait (no queue, a full queue, or a
    /// retry).
    Full,
    /// Waited `queue_timeout_ms` in the queue.
    QueueTimeout,
    /// The route's `deadline_ms` passed while the request waited in the queue: 504.
    Deadline,
}

impl NoServer {
    /// True if the servers are overloaded rather than down: the client is told to come back
    /// (`Retry-After`).
    pub fn is_overload(self) -> bool {
        matches!(self, NoServer::Full | NoServer::QueueTimeout)
    }
}

/// The `Retry-After` value (seconds) of a 503 for an overloaded upstream: the queue is a
/// short-lived condition, so a client may come back at once.
pub const RETRY_AFTER_S: &str = "1";

/// Claims a server of `up` for an attempt: a retry (`tried` not empty) takes a free server or
/// none; a first attempt claims directly, or waits in the upstream's queue (at most
/// `queue_size` waiting, for at most `queue_timeout_ms`, and never past `deadline`). Refusals
/// for overload are counted.
pub async fn admit(
    up: &UpstreamRuntime,
    key: Option<u64>,
    tried: &Tried,
    deadline: Option<Instant>,
) -> Result<Claim, NoServer> {
    if !tried.is_empty() {
        let snapshot = up.pool.snapshot();
        return match snapshot.claim(key, tried, up.pool.now_nanos()) {
            Ok((index, inflight)) => Ok(Claim {
                snapshot,
                index,
                inflight,
                queued: false,
            }),
            Err(Refusal::Unavailable) => Err(NoServer::Unavailable),
            // A retry that finds every other server full is not counted as a queue refusal:
            // the request returns the failure it would have retried.
            Err(_) => Err(NoServer::Full),
        };
    }
    match up.pool.try_admit(key) {
        Ok(claim) => return Ok(claim),
        Err(Refusal::Full) => {}
        Err(_) => return Err(NoServer::Unavailable),
    }
    queued(up, key, deadline).await
}

/// The queued part of [`admit`]: the wait, its timeout and its metrics.
#[cold]
async fn queued(
    up: &UpstreamRuntime,
    key: Option<u64>,
    deadline: Option<Instant>,
) -> Result<Claim, NoServer> {
    let metrics = &up.queue_metrics;
    let queue_size = usize::try_from(up.cfg.queue_size).unwrap_or(usize::MAX);
    if queue_size == 0 {
        metrics.rejected_full.inc();
        if let Some(more) = up.refusal_log.queue_full.admit() {
            log::warn!(
                "upstream {}: every server at its max_in_flight and no queue: request refused{more}",
                up.cfg.name
            );
        }
        return Err(NoServer::Full);
    }
    let start = Instant::now();
    metrics.length.inc();
    let queue_timeout = Duration::from_millis(up.cfg.queue_timeout_ms);
    let left = deadline.map(|d| d.saturating_duration_since(start));
    let (timeout, by_deadline) = match left {
        Some(left) if left < queue_timeout => (left, true),
        _ => (queue_timeout, false),
    };
    let waited = tokio::time::timeout(timeout, up.pool.admit_queued(key, queue_size)).await;
    metrics.length.dec();
    metrics.wait.observe(start.elapsed().as_secs_f64());
    match waited {
        Ok(Ok(claim)) => Ok(claim),
        Ok(Err(Refusal::Unavailable)) => Err(NoServer::Unavailable),
        Ok(Err(_)) => {
            metrics.rejected_full.inc();
            if let Some(more) = up.refusal_log.queue_full.admit() {
                log::warn!(
                    "upstream {}: queue full ({queue_size} waiting): request refused{more}",
                    up.cfg.name
                );
            }
            Err(NoServer::Full)
        }
        Err(_) if by_deadline => {
            metrics.rejected_deadline.inc();
            if let Some(more) = up.refusal_log.queue_deadline.admit() {
                log::warn!(
                    "upstream {}: the route's deadline passed while the request waited in the \
                     queue{more}",
                    up.cfg.name
                );
            }
            Err(NoServer::Deadline)
        }
        Err(_) => {
            metrics.rejected_timeout.inc();
            if let Some(more) = up.refusal_log.queue_timeout.admit() {
                log::warn!(
                    "upstream {}: request waited {} ms in the queue without a free server{more}",
                    up.cfg.name,
                    up.cfg.queue_timeout_ms
                );
            }
            Err(NoServer::QueueTimeout)
        }
    }
}
