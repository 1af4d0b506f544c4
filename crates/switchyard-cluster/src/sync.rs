//! Keeping [`FleetState`] current: a full read of `<prefix>/`, then one watch on the whole prefix
//! from the next revision. Every batch of events that changes the document, a dynamic server or
//! an override is composed and applied once. When etcd goes away the last applied configuration
//! keeps serving, `switchyard_config_source_up` drops to 0 and the agent reconnects with backoff;
//! the watch resumes from the last revision seen, and a compacted revision forces a full re-read.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use pingora::server::ShutdownWatch;
use switchyard_proxy::Shared;

use crate::agent::FleetAgent;
use crate::connect::connect;
use crate::state::FleetState;

/// First wait before reconnecting.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a full read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads every key under the prefix into a fresh state; returns it with the store revision it
/// reflects.
pub(crate) async fn full_read(
    client: &mut Client,
    agent: &FleetAgent,
) -> Result<(FleetState, i64), String> {
    let resp = tokio::time::timeout(
        READ_TIMEOUT,
        client.get(agent.keys.all(), Some(GetOptions::new().with_prefix())),
    )
    .await
    .map_err(|_| format!("etcd did not answer within {READ_TIMEOUT:?}"))?
    .map_err(|e| e.to_string())?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut state = FleetState::default();
    for kv in resp.kvs() {
        let Ok(key) = kv.key_str() else { continue };
        if let Some(kind) = agent.keys.classify(key) {
            state.put(kind, kv.value(), kv.mod_revision());
        }
    }
    Ok((state, revision))
}

/// Runs until shutdown: connect, read, watch, apply; reconnect on failure.
pub async fn run(agent: Arc<FleetAgent>, shared: Arc<Shared>, mut shutdown: ShutdownWatch) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let err = tokio::select! {
            _ = shutdown.changed() => return,
            e = session(&agent, &shared, &mut backoff) => e,
        };
        agent.set_client(None);
        if agent.inner().source_up {
            log::error!("cluster: lost etcd ({err}); serving the last applied configuration");
        } else {
            log::warn!("cluster: etcd unavailable ({err}); retrying in {backoff:?}");
        }
        agent.set_source_up(false);
        agent.metrics.error("etcd");
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life; returns why it ended.
async fn session(agent: &FleetAgent, shared: &Shared, backoff: &mut Duration) -> String {
    match session_inner(agent, shared, backoff).await {
        Ok(()) => "watch closed".to_string(),
        Err(e) => e,
    }
}

async fn session_inner(
    agent: &FleetAgent,
    shared: &Shared,
    backoff: &mut Duration,
) -> Result<(), String> {
    let mut client = connect(&agent.cluster, &agent.base)
        .await
        .map_err(|e| e.to_string())?;
    let resume = agent.inner().resume_from;
    let start = match resume {
        Some(r) => r,
        None => {
            let (state, revision) = full_read(&mut client, agent).await?;
            let mut inner = agent.inner();
            inner.state = state;
            inner.resume_from = Some(revision + 1);
            revision + 1
        }
    };
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start)
        .with_progress_notify();
    let mut stream = client
        .watch(agent.keys.all(), Some(opts))
        .await
        .map_err(|e| e.to_string())?;
    agent.set_client(Some(client));
    agent.set_source_up(true);
    *backoff = MIN_BACKOFF;
    log::info!(
        "cluster: watching {} from revision {start}",
        agent.keys.all()
    );
    agent.apply_current(shared).await;
    loop {
        let resp = stream
            .message()
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "watch stream ended".to_string())?;
        if resp.compact_revision() > 0 {
            agent.inner().resume_from = None;
            return Err(format!(
                "revision {start} was compacted (oldest kept: {}); reading everything again",
                resp.compact_revision()
            ));
        }
        if resp.canceled() {
            return Err(format!("watch canceled: {}", resp.cancel_reason()));
        }
        let mut changed = false;
        {
            let mut inner = agent.inner();
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let Ok(key) = kv.key_str() else { continue };
                let Some(kind) = agent.keys.classify(key) else {
                    continue;
                };
                changed |= match ev.event_type() {
                    EventType::Put => inner.state.put(kind, kv.value(), kv.mod_revision()),
                    EventType::Delete => inner.state.delete(kind),
                };
            }
            if let Some(h) = resp.header() {
                if h.revision() > 0 {
                    inner.resume_from = Some(h.revision() + 1);
                }
            }
        }
        if changed {
            agent.apply_current(shared).await;
        }
    }
}
