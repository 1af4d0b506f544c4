//! Start-up: the first configuration of a fleet member. etcd is asked once (bounded in time);
//! without it the cached document (`cache_path`) is used; without either the instance starts
//! with its local sections only — nothing routed, every request 404 — and the watch keeps
//! trying to connect.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::Config;

use crate::agent::FleetAgent;
use crate::cache;
use crate::compose::compose;
use crate::connect::connect;
use crate::state::ConfigInputs;
use crate::sync::full_read;

/// How long start-up waits for etcd.
const START_TIMEOUT: Duration = Duration::from_secs(3);

/// The first configuration and the agent that keeps it current.
#[derive(Debug)]
pub struct Bootstrap {
    /// The configuration to start with.
    pub config: Config,
    /// The agent: attach it to the gateway's `Shared` and run its service.
    pub agent: Arc<FleetAgent>,
}

/// Builds the first configuration of the validated local file `local` (read from `path`);
/// `None` if it has no `[cluster]`.
pub fn bootstrap(local: Config, path: &Path) -> Option<Bootstrap> {
    let agent = Arc::new(FleetAgent::new(local.clone(), path)?);
    let from_etcd = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(async {
            let read = async {
                let mut client = connect(&agent.cluster, &agent.base)
                    .await
                    .map_err(|e| e.to_string())?;
                full_read(&mut client, &agent).await
            };
            match tokio::time::timeout(START_TIMEOUT, read).await {
                Ok(r) => r,
                Err(_) => Err(format!("etcd did not answer within {START_TIMEOUT:?}")),
            }
        }),
        Err(e) => Err(e.to_string()),
    };
    match from_etcd {
        Ok((state, revision)) => {
            let mut inner = agent.inner();
            inner.state = state;
            inner.resume_from = Some(revision + 1);
            inner.source_up = true;
        }
        Err(e) => {
            log::error!("cluster: etcd unreachable at start-up: {e}");
            agent.metrics.error("etcd");
            let cached = agent.cluster.cache_path.as_ref().and_then(|p| {
                match cache::read(&agent.base.join(p)) {
                    Ok(doc) => doc,
                    Err(e) => {
                        log::error!("cluster: cannot read the cache {p}: {e}");
                        agent.metrics.error("cache");
                        None
                    }
                }
            });
            match &cached {
                Some(d) => log::warn!(
                    "cluster: starting from the cached document, revision {}",
                    d.revision
                ),
                None => log::warn!(
                    "cluster: no cached document; starting with nothing routed until etcd answers"
                ),
            }
            agent.inner().state.inputs.doc = cached;
        }
    }
    let up = agent.inner().source_up;
    agent.set_source_up(up);
    let inputs = agent.inner().state.inputs.clone();
    agent.inner().tried = Some(inputs.clone());
    let config = match compose(&local, &agent.base, &inputs) {
        Ok(c) => {
            for n in &c.notes {
                log::warn!("cluster: {n}");
            }
            let config = c.config;
            agent.record_outcome(&inputs, c.problems, None);
            config
        }
        Err(errs) => {
            agent.record_outcome(&inputs, Vec::new(), Some(errs));
            compose(&local, &agent.base, &ConfigInputs::default())
                .map(|c| c.config)
                .unwrap_or(local)
        }
    };
    Some(Bootstrap { config, agent })
}
