//! One attempt on one server, for an HTTP request and a TCP connection alike: what starting,
//! failing and succeeding it records.
//!
//! | event | in flight (`least_conn`) | EWMA latency | passive health | per-server metric |
//! |---|---|---|---|---|
//! | [`Attempt::begin`] | counted | | | |
//! | [`Attempt::fail`] | ended | failure penalty | timeout / connect error | `connect_error`, `timeout`, `error` |
//! | [`Attempt::connected`] (TCP) | kept while connected | connect time | success | `success` |
//! | [`Attempt::answered`] (HTTP) | ended | time to the response head | the status | `success`, `http_5xx` |
//! | [`Attempt::answered_grpc`] (gRPC) | ended | time to the response head | the status; `grpc-status` 14 a failure | `success`, `http_5xx` |
//! | [`Attempt::errored`] (HTTP) | ended | failure penalty | | `error` |
//! | [`Attempt::stale_connection`] (HTTP) | ended, uncounted | | | `stale_connection` |
//!
//! Dropping an attempt ends its in-flight count without an outcome (the client went away: not the
//! server's fault).

use std::ops::Deref;
use std::sync::Arc;

use switchyard_balance::{InFlight, Outcome, Server, ServerId};
use switchyard_health::PassiveEvent;
use switchyard_metrics::ServerMetrics;

use crate::retry::FailureKind;
use crate::runtime::UpstreamRuntime;

/// One attempt on one server of an upstream. `U` holds the upstream: an
/// `Arc<UpstreamRuntime>` where the attempt outlives the caller's borrow of the runtime (an HTTP
/// request's context), a plain reference where it does not (a TCP connect).
#[derive(Debug)]
pub struct Attempt<U = Arc<UpstreamRuntime>>
where
    U: Deref<Target = UpstreamRuntime>,
{
    upstream: U,
    id: ServerId,
    /// The server's metric handles, resolved when it was picked.
    metrics: Option<Arc<ServerMetrics>>,
    inflight: InFlight,
    /// When the response head arrived (HTTP).
    header_ns: Option<u64>,
}

impl<U: Deref<Target = UpstreamRuntime>> Attempt<U> {
    /// Starts an attempt on `server`, at `index` in the upstream's current snapshot, at
    /// `now_ns` on the pool's clock: the server counts it in flight from now.
    #[inline]
    pub fn begin(upstream: U, index: usize, server: &Server, now_ns: u64) -> Self {
        let inflight = server.stats.begin(now_ns);
        Self::claimed(upstream, index, server, inflight)
    }

    /// Starts an attempt on `server` (at `index` in the upstream's snapshot) with the
    /// in-flight slot already claimed for it ([`crate::overload::admit`]).
    #[inline]
    pub fn claimed(upstream: U, index: usize, server: &Server, inflight: InFlight) -> Self {
        Attempt {
            metrics: upstream.metrics_at(index, &server.spec.id),
            id: server.spec.id.clone(),
            inflight,
            upstream,
            header_ns: None,
        }
    }

    /// The upstream the server belongs to.
    #[inline]
    pub fn upstream(&self) -> &UpstreamRuntime {
        &self.upstream
    }

    /// The server's identity.
    #[inline]
    pub fn id(&self) -> &ServerId {
        &self.id
    }

    /// Notes that the response head arrived now: the latency sample [`Attempt::answered`]
    /// records.
    #[inline]
    pub fn response_head(&mut self) {
        self.header_ns = Some(self.upstream.pool.now_nanos());
    }

    /// Ends the attempt as a failure of `kind`: counted in the server's metrics, reported to
    /// passive health checks (a timeout as such, anything else as a connect error), and ended
    /// in flight as a failure.
    pub fn fail(self, kind: FailureKind) {
        if let Some(m) = &self.metrics {
            match kind {
                FailureKind::Connect => m.connect_error.inc(),
                FailureKind::Timeout => m.timeout.inc(),
                FailureKind::Error => m.error.inc(),
            }
        }
        let now = self.upstream.pool.now_nanos();
        let event = match kind {
            FailureKind::Timeout => PassiveEvent::Timeout,
            FailureKind::Connect | FailureKind::Error => PassiveEvent::ConnectError,
        };
        self.upstream.health.report(self.inflight.stats(), event);
        self.inflight.finish(Outcome::Failure, now);
    }

    /// A TCP connect succeeded: the connect time is a latency sample, the server's success is
    /// counted and resets the passive checks' consecutive-failure count (the health crate has no
    /// L4 success event; 200 is never a failure status). Returns the in-flight guard, to be held
    /// while the connection lasts.
    pub fn connected(self) -> InFlight {
        let now = self.upstream.pool.now_nanos();
        let stats = self.inflight.stats();
        stats.observe_latency(now.saturating_sub(self.inflight.start_nanos()) as f64, now);
        if let Some(m) = &self.metrics {
            m.success.inc();
        }
        self.upstream
            .health
            .report(stats, PassiveEvent::Status(200));
        self.inflight
    }

    /// The server answered with `status`: counted as a success or a 5xx, reported to passive
    /// health checks, and ended in flight at the response head, as a failure if `status` is one
    /// of the upstream's `unhealthy_statuses` (500–504 without passive checks).
    pub fn answered(self, status: u16) {
        self.answered_grpc(status, None);
    }

    /// [`Attempt::answered`] for a gRPC call that ended with `grpc_status` (from the trailers,
    /// or the header block of a trailers-only answer): 14 (UNAVAILABLE) is a failure of the
    /// server, reported to passive health checks and counted as `http_5xx`, as a 502 would be.
    pub fn answered_grpc(self, status: u16, grpc_status: Option<u8>) {
        let unavailable = grpc_status == Some(crate::grpc::GrpcStatus::Unavailable.code());
        if let Some(m) = &self.metrics {
            if status >= 500 || unavailable {
                m.http_5xx.inc();
            } else {
                m.success.inc();
            }
        }
        let failed_status = unavailable
            || self
                .upstream
                .cfg
                .health
                .passive
                .as_ref()
                .map_or((500..=504).contains(&status), |p| {
                    p.unhealthy_statuses.contains(&status)
                });
        let outcome = if failed_status {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let now = self.upstream.pool.now_nanos();
        let event = if unavailable {
            PassiveEvent::GrpcUnavailable
        } else {
            PassiveEvent::Status(status)
        };
        self.upstream.health.report(self.inflight.stats(), event);
        self.inflight.finish(outcome, self.header_ns.unwrap_or(now));
    }

    /// The request ended with an error and no response from the server: counted as an error and
    /// ended in flight as a failure (not reported to passive health checks).
    pub fn errored(self) {
        if let Some(m) = &self.metrics {
            m.error.inc();
        }
        let now = self.upstream.pool.now_nanos();
        self.inflight.finish(Outcome::Failure, now);
    }

    /// The attempt went to a pooled connection the server had already closed: counted as a stale
    /// connection, not as the server's failure. Returns the server, for the retry on a fresh
    /// connection.
    pub fn stale_connection(self) -> ServerId {
        if let Some(m) = &self.metrics {
            m.stale_connection.inc();
        }
        self.id
    }
}
