//! [`FleetAgent`]: this instance's side of the fleet. It holds the fleet's keys as last seen
//! ([`FleetState`]), the local file, what was applied and what went wrong, and the etcd client
//! once connected; it implements the proxy's [`Fleet`] (reload composition, admin overrides,
//! `GET /api/cluster`). The watch (`sync.rs`) and the membership keeper (`member.rs`) run as its
//! background service (`service.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use switchyard_config::{ClusterConfig, Config};
use switchyard_proxy::{ClusterView, Fleet, MemberView, ServerOverride, Shared};

use crate::compose::{compose, Composed};
use crate::keys::Keys;
use crate::metrics::ClusterMetrics;
use crate::overrides::OverrideValue;
use crate::state::{ConfigInputs, FleetState, MemberRecord};
use crate::{cache, now_unix};

/// How long an admin override write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the agent knows and did, behind one lock.
#[derive(Debug)]
pub(crate) struct Inner {
    /// The fleet's keys as last seen.
    pub(crate) state: FleetState,
    /// The local file, as last read.
    pub(crate) local: Config,
    /// The inputs of the last composition tried (applied or not).
    pub(crate) tried: Option<ConfigInputs>,
    /// The document revision running (0 = none).
    pub(crate) applied_revision: i64,
    /// The last apply error.
    pub(crate) last_error: Option<String>,
    /// Keys that were ignored by the last composition.
    pub(crate) problems: Vec<String>,
    /// Another live instance holds our member key.
    pub(crate) duplicate: Option<String>,
    /// Connected and watching.
    pub(crate) source_up: bool,
    /// The store revision to resume the watch from; `None` = read everything again.
    pub(crate) resume_from: Option<i64>,
}

/// This instance's member of the fleet.
pub struct FleetAgent {
    pub(crate) cluster: ClusterConfig,
    pub(crate) keys: Keys,
    /// The local file's directory (relative paths resolve against it).
    pub(crate) base: PathBuf,
    pub(crate) instance_id: String,
    pub(crate) started_at: u64,
    pub(crate) inner: Mutex<Inner>,
    /// The sync session's client; membership follows it (see [`FleetAgent::watch_client`]).
    client: tokio::sync::watch::Sender<Option<Client>>,
    /// Wakes the membership keeper when the member record changed.
    pub(crate) member_changed: tokio::sync::Notify,
    pub(crate) metrics: &'static ClusterMetrics,
}

impl std::fmt::Debug for FleetAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetAgent")
            .field("instance_id", &self.instance_id)
            .field("prefix", &self.cluster.prefix)
            .field("endpoints", &self.cluster.etcd_endpoints)
            .finish()
    }
}

impl FleetAgent {
    /// An agent for the validated local file `local` read from `path`; `local.cluster` must be
    /// set (`None` otherwise).
    pub fn new(local: Config, path: &Path) -> Option<FleetAgent> {
        let cluster = local.cluster.clone()?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."))
            .to_path_buf();
        Some(FleetAgent {
            keys: Keys::new(&cluster.prefix),
            cluster,
            base,
            instance_id: local.server.instance_id.clone(),
            started_at: now_unix(),
            inner: Mutex::new(Inner {
                state: FleetState::default(),
                local,
                tried: None,
                applied_revision: 0,
                last_error: None,
                problems: Vec::new(),
                duplicate: None,
                source_up: false,
                resume_from: None,
            }),
            client: tokio::sync::watch::Sender::new(None),
            member_changed: tokio::sync::Notify::new(),
            metrics: ClusterMetrics::global(),
        })
    }

    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connected client, if any.
    pub(crate) fn client(&self) -> Option<Client> {
        self.client.borrow().clone()
    }

    /// Replaces the connected client (`None`: the session ended); watchers are woken.
    pub(crate) fn set_client(&self, client: Option<Client>) {
        self.client.send_replace(client);
    }

    /// A receiver woken whenever the client is replaced: work done over one connection (the
    /// member lease) moves to the next one instead of waiting on a dead member.
    pub(crate) fn watch_client(&self) -> tokio::sync::watch::Receiver<Option<Client>> {
        self.client.subscribe()
    }

    /// Records whether etcd is reachable (`switchyard_config_source_up`).
    pub(crate) fn set_source_up(&self, up: bool) {
        self.inner().source_up = up;
        self.metrics.source_up.set(i64::from(up));
    }

    /// This instance's member record, as written to `<prefix>/members/<instance_id>`.
    pub(crate) fn member_record(&self) -> MemberRecord {
        let inner = self.inner();
        MemberRecord {
            instance_id: self.instance_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            applied_revision: inner.applied_revision,
            last_error: inner.last_error.clone(),
            started_at: self.started_at,
        }
    }

    /// Composes the current inputs with the local file, unless they were tried already (then
    /// `None`).
    pub(crate) fn compose_if_changed(
        &self,
    ) -> Option<(ConfigInputs, Result<Composed, Vec<String>>)> {
        let mut inner = self.inner();
        if inner.tried.as_ref() == Some(&inner.state.inputs) {
            return None;
        }
        let inputs = inner.state.inputs.clone();
        inner.tried = Some(inputs.clone());
        let composed = compose(&inner.local, &self.base, &inputs);
        Some((inputs, composed))
    }

    /// Records the outcome of composing and applying `inputs`: revision, error, problems,
    /// metrics, the cache file and the member record.
    pub(crate) fn record_outcome(
        &self,
        inputs: &ConfigInputs,
        problems: Vec<String>,
        errors: Option<Vec<String>>,
    ) {
        let revision = inputs.doc.as_ref().map_or(0, |d| d.revision);
        for p in &problems {
            log::warn!("cluster: {p}");
            let kind = if p.starts_with("override") {
                "override"
            } else {
                "server"
            };
            self.metrics.error(kind);
        }
        {
            let mut inner = self.inner();
            inner.problems = problems;
            match &errors {
                None => {
                    inner.applied_revision = revision;
                    inner.last_error = None;
                }
                Some(errs) => inner.last_error = Some(errs.join("; ")),
            }
        }
        match errors {
            None => {
                self.metrics.revision.set(revision);
                if let (Some(path), Some(doc)) = (&self.cluster.cache_path, &inputs.doc) {
                    if let Err(e) = cache::write(&self.base.join(path), doc) {
                        log::error!("cluster: cannot write the cache {path}: {e}");
                        self.metrics.error("cache");
                    }
                }
            }
            Some(errs) => {
                self.metrics.error("apply");
                for e in &errs {
                    log::error!("cluster: not applied, still serving revision {}: {e}", {
                        self.inner().applied_revision
                    });
                }
            }
        }
        self.member_changed.notify_one();
    }

    /// Composes and applies the current inputs to `shared` if they changed since last tried.
    pub(crate) async fn apply_current(&self, shared: &Shared) {
        let Some((inputs, composed)) = self.compose_if_changed() else {
            return;
        };
        let (result, problems) = match composed {
            Ok(c) => {
                for n in &c.notes {
                    log::warn!("cluster: {n}");
                }
                (Ok(c.config), c.problems)
            }
            Err(errs) => (Err(errs), Vec::new()),
        };
        let report = shared.apply_from_fleet(result).await;
        let errors = (!report.applied).then_some(report.errors);
        if errors.is_none() {
            log::info!(
                "cluster: applied shared document revision {}",
                inputs.doc.as_ref().map_or(0, |d| d.revision)
            );
        }
        self.record_outcome(&inputs, problems, errors);
    }

    /// Reads the override of `key`, adds `change` and writes it back, guarded by the revision
    /// read (retried when another change landed in between).
    async fn write_override(
        &self,
        client: &mut Client,
        key: &str,
        change: ServerOverride,
    ) -> Result<(), String> {
        for _ in 0..5 {
            let got = client.get(key, None).await.map_err(|e| e.to_string())?;
            let (current, rev) = match got.kvs().first() {
                Some(kv) => (
                    serde_json::from_slice::<OverrideValue>(kv.value()).unwrap_or_default(),
                    kv.mod_revision(),
                ),
                None => (OverrideValue::default(), 0),
            };
            let value = serde_json::to_string(&current.with(change)).map_err(|e| e.to_string())?;
            let txn = Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                .and_then([TxnOp::put(key, value, None)]);
            if client
                .txn(txn)
                .await
                .map_err(|e| e.to_string())?
                .succeeded()
            {
                return Ok(());
            }
        }
        Err(format!("{key} kept changing; try again"))
    }
}

#[async_trait::async_trait]
impl Fleet for FleetAgent {
    fn compose(&self, local: Config) -> Result<Config, Vec<String>> {
        let mut inner = self.inner();
        inner.local = local;
        let inputs = inner.state.inputs.clone();
        // A reload applies these inputs; the watch need not apply them again.
        inner.tried = Some(inputs.clone());
        compose(&inner.local, &self.base, &inputs).map(|c| c.config)
    }

    async fn set_override(
        &self,
        upstream: &str,
        server: &str,
        change: ServerOverride,
    ) -> Result<(), String> {
        let mut client = self
            .client()
            .ok_or_else(|| "etcd is not reachable; the change was not made".to_string())?;
        let key = self.keys.override_key(upstream, server);
        match tokio::time::timeout(
            WRITE_TIMEOUT,
            self.write_override(&mut client, &key, change),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("etcd did not answer within {WRITE_TIMEOUT:?}")),
        }
        .inspect_err(|_| self.metrics.error("etcd"))
    }

    async fn clear_override(&self, upstream: &str, server: &str) -> Result<bool, String> {
        let mut client = self
            .client()
            .ok_or_else(|| "etcd is not reachable; nothing was cleared".to_string())?;
        let key = self.keys.override_key(upstream, server);
        match tokio::time::timeout(WRITE_TIMEOUT, client.delete(key, None)).await {
            Ok(Ok(r)) => Ok(r.deleted() > 0),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("etcd did not answer within {WRITE_TIMEOUT:?}")),
        }
        .inspect_err(|_| self.metrics.error("etcd"))
    }

    fn view(&self) -> ClusterView {
        let inner = self.inner();
        let latest = inner.state.latest_revision();
        let members = inner
            .state
            .members
            .iter()
            .map(|(id, rec)| match rec {
                Some(r) => MemberView {
                    instance_id: id.clone(),
                    version: r.version.clone(),
                    applied_revision: r.applied_revision,
                    last_error: r.last_error.clone(),
                    started_at: r.started_at,
                    behind: r.applied_revision != latest,
                },
                None => MemberView {
                    instance_id: id.clone(),
                    version: String::new(),
                    applied_revision: 0,
                    last_error: Some("unreadable member record".to_string()),
                    started_at: 0,
                    behind: true,
                },
            })
            .collect();
        let mut problems = inner.problems.clone();
        problems.extend(inner.duplicate.clone());
        ClusterView {
            latest_revision: latest,
            members,
            instance_id: self.instance_id.clone(),
            source_up: inner.source_up,
            applied_revision: inner.applied_revision,
            last_error: inner.last_error.clone(),
            problems,
        }
    }
}

/// Shares `agent` with `shared` as its fleet.
pub fn attach(agent: &Arc<FleetAgent>, shared: &Shared) {
    shared.set_fleet(Arc::clone(agent) as Arc<dyn Fleet>);
}
