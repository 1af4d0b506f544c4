//! Why an attempt on a server failed, and whether the request may try again.
//!
//! * [`FailureKind`] classifies a failed attempt ([`failure_kind`]): it picks the per-server
//!   metric and passive-health event, and `502` or `504` once retries are exhausted.
//! * [`RetryPolicy`] is a route's `retries` key: [`RetryPolicy::Automatic`] (`-1`) or a fixed
//!   [`RetryPolicy::Limit`], checked against the [`Retries`] a request has made.
//! * A pooled keep-alive connection the server had already closed ([`stale_connection`]) earns a
//!   request one more attempt on the same server over a fresh connection ([`Reconnect`],
//!   [`fresh_connection_group`]), whatever the policy says.

use std::sync::atomic::{AtomicU64, Ordering};

use pingora::{Error, ErrorSource, ErrorType, RetryType};
use switchyard_balance::ServerId;

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

impl FailureKind {
    /// The word for logs and spans: `connect_error`, `timeout` or `upstream_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect_error",
            FailureKind::Timeout => "timeout",
            FailureKind::Error => "upstream_error",
        }
    }
}

/// The [`FailureKind`] of a Pingora error from an upstream.
///
/// ```
/// use pingora::{Error, ErrorType};
/// use switchyard_proxy::retry::{failure_kind, FailureKind};
/// let e = Error::explain(ErrorType::ConnectRefused, "refused");
/// assert_eq!(failure_kind(&e), FailureKind::Connect);
/// ```
pub fn failure_kind(e: &Error) -> FailureKind {
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

/// The HTTP status of a request that failed with `e` (after `last`, the last attempt's
/// failure, if any): the status an `HTTPStatus` error names; upstream failures 502, or 504 after
/// a timeout; a client that went away 0 (nothing to send); a request body that stalled past
/// `body_timeout_ms` 408; another client error 400; anything else 500 (502/504 after an attempt
/// failed).
///
/// ```
/// use pingora::{Error, ErrorSource, ErrorType};
/// use switchyard_proxy::retry::{failure_status, FailureKind};
///
/// let e = Error::explain(ErrorType::HTTPStatus(503), "no server");
/// assert_eq!(failure_status(&e, None), 503);
/// let mut e = Error::explain(ErrorType::ReadTimedout, "slow");
/// e.esource = ErrorSource::Upstream;
/// assert_eq!(failure_status(&e, Some(FailureKind::Timeout)), 504);
/// e.esource = ErrorSource::Downstream;
/// assert_eq!(failure_status(&e, None), 408);
/// ```
pub fn failure_status(e: &Error, last: Option<FailureKind>) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        _ => match e.esource() {
            ErrorSource::Upstream => match last.unwrap_or(failure_kind(e)) {
                FailureKind::Timeout => 504,
                _ => 502,
            },
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                // The request body stalled past `body_timeout_ms` (the head was read before this
                // request began): 408, or a closed connection if the response has started. The
                // upstream request is dropped with the attempt.
                ErrorType::ReadTimedout => 408,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => match last {
                Some(FailureKind::Timeout) => 504,
                Some(_) => 502,
                None => 500,
            },
        },
    }
}

/// A route's retry policy: its `retries` key.
///
/// ```
/// use switchyard_proxy::retry::{Retries, RetryPolicy};
/// let done = Retries::default();
/// assert_eq!(RetryPolicy::from_config(-1), RetryPolicy::Automatic);
/// assert!(RetryPolicy::Automatic.allows(&done, true));
/// assert!(!RetryPolicy::from_config(0).allows(&done, false));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// `retries = -1`: connect failures go to every other server in turn (nothing was sent);
    /// failures after sending are retried once (idempotent methods only, which the caller
    /// checks).
    Automatic,
    /// `retries = n`: at most `n` retries of any kind.
    Limit(u32),
}

impl RetryPolicy {
    /// The policy of a configured `retries` value: `-1` is [`RetryPolicy::Automatic`], any
    /// other value a [`RetryPolicy::Limit`] (a negative one, which validation refuses, of 0).
    pub fn from_config(retries: i32) -> Self {
        match retries {
            -1 => RetryPolicy::Automatic,
            n => RetryPolicy::Limit(u32::try_from(n).unwrap_or(0)),
        }
    }

    /// True if a request that has made `done` retries may make another; `after_send` if the
    /// failed attempt had sent the request.
    #[inline]
    pub fn allows(self, done: &Retries, after_send: bool) -> bool {
        match self {
            RetryPolicy::Automatic => !after_send || done.after_send < 1,
            RetryPolicy::Limit(n) => done.total < n,
        }
    }
}

/// The retries a request has made so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retries {
    /// Every retry.
    pub total: u32,
    /// Retries after an attempt that had sent the request.
    pub after_send: u32,
}

impl Retries {
    /// Counts one more retry.
    #[inline]
    pub fn count(&mut self, after_send: bool) {
        self.total += 1;
        if after_send {
            self.after_send += 1;
        }
    }
}

/// The one retry on a fresh connection that a stale keep-alive connection earns a request.
#[derive(Debug, Default)]
pub enum Reconnect {
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
    pub fn take(&mut self) -> Option<ServerId> {
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
pub fn fresh_connection_group() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    u64::MAX - NEXT.fetch_add(1, Ordering::Relaxed)
}

/// True if `e`, on a reused connection, means the server had closed that connection before it
/// answered anything: Pingora reads no response byte (end of stream, or a socket error, which
/// it marks [`RetryType::ReusedOnly`]) or cannot write the request head at all.
pub fn stale_connection(e: &Error) -> bool {
    matches!(e.retry, RetryType::ReusedOnly) || request_not_written(e)
}

/// True if `e` is a failure to write the request head: the server cannot have applied the
/// request (RFC 9110 §9.2.2), whatever its method. Pingora 0.9.1 says so only in the error's
/// context (`v1/client.rs`, `write_request_header`).
pub fn request_not_written(e: &Error) -> bool {
    e.etype == ErrorType::WriteError
        && e.context.as_ref().is_some_and(|c| {
            let c = c.as_str();
            c.starts_with("while writing request headers")
                || c.starts_with("flushing request header")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn policies_from_the_retries_key() {
        assert_eq!(RetryPolicy::from_config(-1), RetryPolicy::Automatic);
        assert_eq!(RetryPolicy::from_config(0), RetryPolicy::Limit(0));
        assert_eq!(RetryPolicy::from_config(3), RetryPolicy::Limit(3));
        assert_eq!(RetryPolicy::from_config(-2), RetryPolicy::Limit(0));
    }

    #[test]
    fn automatic_retries_once_after_sending() {
        let auto = RetryPolicy::Automatic;
        let mut done = Retries::default();
        for _ in 0..5 {
            assert!(auto.allows(&done, false), "connect failures: every server");
            done.count(false);
        }
        assert!(auto.allows(&done, true));
        done.count(true);
        assert_eq!(
            done,
            Retries {
                total: 6,
                after_send: 1
            }
        );
        assert!(!auto.allows(&done, true));
        assert!(auto.allows(&done, false));
    }

    #[test]
    fn a_limit_counts_every_retry() {
        let two = RetryPolicy::Limit(2);
        let mut done = Retries::default();
        done.count(false);
        assert!(two.allows(&done, true));
        done.count(true);
        assert!(!two.allows(&done, false) && !two.allows(&done, true));
    }
}
