//! Retrying an etcd request that the cluster could not serve just then: while a member is lost
//! the others elect a new leader (about a second with etcd's defaults), and requests in flight
//! or sent meanwhile are refused with `Unavailable` ("etcdserver: leader changed", "etcdserver:
//! no leader"). `switchyard push` and `pull` wait that out for a bounded time
//! ([`RETRY_FOR`]) instead of failing a push that a second later would land.

use std::time::Duration;

use tokio::time::Instant;

/// How long transient refusals are retried for, from the first one.
pub const RETRY_FOR: Duration = Duration::from_secs(8);
/// The first wait between tries; it doubles up to [`MAX_WAIT`].
pub const FIRST_WAIT: Duration = Duration::from_millis(100);
/// The longest wait between tries.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// True for an answer that says the cluster could not serve the request just now (gRPC
/// `Unavailable`: no leader, the leader changed, the member is stopping), which a later try
/// may not get.
///
/// ```
/// use switchyard_cluster::transient::is_transient;
/// let leader_changed = etcd_client::Error::GRpcStatus(tonic::Status::unavailable(
///     "etcdserver: leader changed",
/// ));
/// assert!(is_transient(&leader_changed));
/// let denied = etcd_client::Error::GRpcStatus(tonic::Status::permission_denied("no"));
/// assert!(!is_transient(&denied));
/// ```
pub fn is_transient(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unavailable)
}

/// The retries of one operation: a deadline [`RETRY_FOR`] after the first refusal, and a
/// doubling wait.
#[derive(Debug)]
pub struct Retry {
    deadline: Option<Instant>,
    wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            deadline: None,
            wait: FIRST_WAIT,
        }
    }
}

impl Retry {
    /// After the failure `e`: waits and returns `Ok(())` if `e` is transient and there is time
    /// left to try again; otherwise gives `e` back.
    pub async fn wait_or(&mut self, e: etcd_client::Error) -> Result<(), etcd_client::Error> {
        if !is_transient(&e) {
            return Err(e);
        }
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert(now + RETRY_FOR);
        if now + self.wait > deadline {
            return Err(e);
        }
        log::warn!("etcd: {e}; trying again in {:?}", self.wait);
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(MAX_WAIT);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::unavailable("etcdserver: no leader"))
    }

    #[tokio::test(start_paused = true)]
    async fn transient_refusals_are_waited_out_until_the_deadline() {
        let start = Instant::now();
        let mut retry = Retry::default();
        let mut tries = 0;
        while retry.wait_or(unavailable()).await.is_ok() {
            tries += 1;
        }
        let waited = Instant::now() - start;
        // 0.1 + 0.2 + 0.4 + 0.8 s, then six waits of 1 s: 7.5 s; one more would end past 8 s.
        assert_eq!(tries, 10, "waited {waited:?}");
        assert!(waited <= RETRY_FOR, "{waited:?}");
        assert!(waited >= RETRY_FOR - MAX_WAIT, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn any_other_error_is_given_back_at_once() {
        let start = Instant::now();
        let mut retry = Retry::default();
        let e = etcd_client::Error::GRpcStatus(tonic::Status::failed_precondition("x"));
        assert!(retry.wait_or(e).await.is_err());
        let e = etcd_client::Error::InvalidArgs("bad".into());
        assert!(retry.wait_or(e).await.is_err());
        assert_eq!(Instant::now(), start);
    }
}
