//! Membership: `<prefix>/members/<instance_id>` holds this instance's [`MemberRecord`] (JSON)
//! under a lease of [`LEASE_TTL_S`] seconds, kept alive every few seconds and rewritten when the
//! record changes (a new applied revision, an error). An instance that dies disappears when its
//! lease expires; a graceful shutdown revokes the lease at once. A key held by another live
//! lease means a duplicate `instance_id`: it is reported (log, metric, `GET /api/cluster`) and
//! not overwritten; registration is retried until that lease is gone.
//!
//! [`MemberRecord`]: crate::state::MemberRecord

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use pingora::server::ShutdownWatch;

use crate::agent::FleetAgent;

/// The member lease's time to live.
pub const LEASE_TTL_S: i64 = 10;
/// How often the lease is renewed.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(3);
/// Wait before trying again after a failure.
const RETRY: Duration = Duration::from_millis(500);
/// How long one etcd call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs until shutdown, then revokes the lease.
pub async fn run(agent: Arc<FleetAgent>, mut shutdown: ShutdownWatch) {
    // The lease survives a broken connection when it can: a new session first tries to keep
    // the old one alive, so that the member key is not taken for another instance's.
    let mut lease: Option<(Client, i64)> = None;
    let mut connection = agent.watch_client();
    loop {
        connection.borrow_and_update();
        let err = tokio::select! {
            _ = shutdown.changed() => break,
            // The sync session moved to another etcd member (or lost etcd): start again on
            // the new connection rather than wait on the old one.
            _ = connection.changed() => None,
            e = keep(&agent, &mut lease) => e,
        };
        if let Some(e) = err {
            log::warn!("cluster: membership: {e}");
            agent.metrics.error("member");
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
    if let Some((client, id)) = lease {
        let mut client = agent.client().unwrap_or(client);
        match tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(id)).await {
            Ok(Ok(_)) => log::info!("cluster: left the fleet (member lease revoked)"),
            _ => log::warn!("cluster: could not revoke the member lease; it expires by itself"),
        }
    }
}

/// `call` bounded by [`CALL_TIMEOUT`]: an etcd member that stops answering (restarted, cut off
/// from its peers) is an error to retry, not a wait without end.
async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: etcd did not answer within {CALL_TIMEOUT:?}"
        )),
    }
}

/// Grants a lease (or takes the previous one back while it lives) and keeps the member key under
/// it; returns why it stopped (`None`: not connected yet).
async fn keep(agent: &FleetAgent, lease: &mut Option<(Client, i64)>) -> Option<String> {
    let mut client = agent.client()?;
    // An error here (etcd electing a leader, say) is not an answer: granting a new lease while
    // the old one lives would find our own key held and report a duplicate.
    let previous = match lease {
        Some((_, id)) => match bounded(
            "cannot check the member lease",
            client.lease_time_to_live(*id, None),
        )
        .await
        {
            Ok(r) if r.ttl() > 0 => Some(*id),
            Ok(_) => None,
            Err(e) => return Some(e),
        },
        None => None,
    };
    let id = match previous {
        Some(id) => id,
        None => match bounded(
            "cannot grant a lease",
            client.lease_grant(LEASE_TTL_S, None),
        )
        .await
        {
            Ok(r) => r.id(),
            Err(e) => return Some(e),
        },
    };
    *lease = Some((client.clone(), id));
    let (mut keeper, mut responses) =
        match bounded("cannot keep the lease alive", client.lease_keep_alive(id)).await {
            Ok(k) => k,
            Err(e) => return Some(e),
        };
    let key = agent.keys.member(&agent.instance_id);
    let mut written: Option<String> = None;
    let mut tick = tokio::time::interval(KEEP_ALIVE_EVERY);
    loop {
        let record = match serde_json::to_string(&agent.member_record()) {
            Ok(r) => r,
            Err(e) => return Some(e.to_string()),
        };
        if written.as_deref() != Some(record.as_str()) {
            match bounded(
                &format!("cannot write {key}"),
                register(&mut client, &key, &record, id),
            )
            .await
            {
                Ok(true) => {
                    if agent.inner().duplicate.take().is_some() {
                        log::info!("cluster: registered as {} at last", agent.instance_id);
                    }
                    written = Some(record);
                }
                Ok(false) => {
                    let msg = format!(
                        "duplicate instance_id {}: another live instance holds {key} \
                         (this instance is not registered until its lease expires)",
                        agent.instance_id
                    );
                    if agent.inner().duplicate.replace(msg.clone()).is_none() {
                        log::error!("cluster: {msg}");
                        agent.metrics.error("duplicate_instance");
                    }
                }
                Err(e) => return Some(e),
            }
        }
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = bounded("keep-alive failed", keeper.keep_alive()).await {
                    return Some(e);
                }
                match bounded("keep-alive failed", responses.message()).await {
                    Ok(Some(r)) if r.ttl() > 0 => {}
                    Ok(_) => return Some("the member lease expired".to_string()),
                    Err(e) => return Some(e),
                }
            }
            _ = agent.member_changed.notified() => {}
        }
        // A duplicate is retried on every tick: the other lease may have gone.
        if agent.inner().duplicate.is_some() {
            written = None;
        }
    }
}

/// Writes `record` at `key` under lease `id` if the key is absent or already ours; `Ok(false)`
/// if another lease holds it.
async fn register(
    client: &mut Client,
    key: &str,
    record: &str,
    id: i64,
) -> Result<bool, etcd_client::Error> {
    let put = || TxnOp::put(key, record, Some(PutOptions::new().with_lease(id)));
    let ours = Txn::new()
        .when([Compare::lease(key, CompareOp::Equal, id)])
        .and_then([put()]);
    if client.txn(ours).await?.succeeded() {
        return Ok(true);
    }
    let absent = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([put()]);
    Ok(client.txn(absent).await?.succeeded())
}
