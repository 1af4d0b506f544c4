//! [`Shared`]: the state every listener's service, the background service and the admin API
//! share — the published [`Runtime`], the instance's identity, its metric families and
//! extensions — and the one place that replaces the runtime (reloads) or changes it in place
//! (admin changes), one at a time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::{ArcSwap, Guard};
use switchyard_config::Config;
use switchyard_metrics::Metrics;

use crate::extension::Extension;
use crate::fleet::Fleet;
use crate::observe::Telemetry;
use crate::reload::{self, ReloadReport};
use crate::runtime::Runtime;

/// State shared by every listener's service: the current runtime and identity.
///
/// ```
/// let rt = switchyard_proxy::Runtime::build(Default::default(), None).unwrap();
/// let shared = switchyard_proxy::Shared::new(rt, None);
/// assert_eq!(shared.instance_id(), "switchyard");
/// assert!(shared.runtime().routes.is_empty());
/// assert!(shared.last_reload().is_none());
/// ```
pub struct Shared {
    /// The published runtime; swapped atomically on reload.
    runtime: ArcSwap<Runtime>,
    /// `[server].instance_id`.
    instance_id: String,
    /// Metric families (those of the first runtime; every reload builds with the same).
    metrics: &'static Metrics,
    /// The file reloads read, if the configuration came from one.
    config_path: Option<PathBuf>,
    /// The runtime that runs health checkers (set when the background service starts).
    background: OnceLock<tokio::runtime::Handle>,
    /// Serialises reloads and admin changes.
    reload_lock: tokio::sync::Mutex<()>,
    /// The outcome of the last reload attempt.
    last_reload: Mutex<Option<ReloadReport>>,
    /// Embedder extensions, in registration order.
    extensions: Vec<Arc<dyn Extension>>,
    /// The access log and span exporter (set once when the gateway is built; reloads change
    /// what it holds).
    telemetry: OnceLock<Arc<Telemetry>>,
    /// The fleet this instance belongs to (`[cluster]`), set once at start-up.
    fleet: OnceLock<Arc<dyn Fleet>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("instance_id", &self.instance_id)
            .field("config_path", &self.config_path)
            .field(
                "extensions",
                &self.extensions.iter().map(|e| e.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Shared {
    /// Wraps a first runtime, without extensions. Metrics go where the runtime's do (the
    /// process's registry for a runtime from [`Runtime::build`]).
    pub fn new(runtime: Runtime, config_path: Option<PathBuf>) -> Arc<Shared> {
        Self::with_extensions(runtime, config_path, Vec::new())
    }

    /// Wraps a first runtime with extensions. Metrics go to the runtime's families
    /// ([`Runtime::metrics`]), and so do those of every runtime a reload builds.
    pub fn with_extensions(
        runtime: Runtime,
        config_path: Option<PathBuf>,
        extensions: Vec<Arc<dyn Extension>>,
    ) -> Arc<Shared> {
        let instance_id = runtime.config.server.instance_id.clone();
        let metrics = runtime.metrics;
        Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            instance_id,
            metrics,
            config_path,
            background: OnceLock::new(),
            reload_lock: tokio::sync::Mutex::new(()),
            last_reload: Mutex::new(None),
            extensions,
            telemetry: OnceLock::new(),
            fleet: OnceLock::new(),
        })
    }

    /// The current runtime, to hold for as long as needed (a request holds the one it started
    /// with).
    #[inline]
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// The current runtime for a short look: cheaper than [`Shared::runtime`], but not to be
    /// held long (it delays the release of a replaced runtime).
    #[inline]
    pub fn snapshot(&self) -> Guard<Arc<Runtime>> {
        self.runtime.load()
    }

    /// `[server].instance_id`.
    #[inline]
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The metric families the services report to.
    #[inline]
    pub fn metrics(&self) -> &'static Metrics {
        self.metrics
    }

    /// The embedder's extensions, in registration order.
    #[inline]
    pub fn extensions(&self) -> &[Arc<dyn Extension>] {
        &self.extensions
    }

    /// The access log and span exporter (none until [`Shared::set_telemetry`]).
    pub fn telemetry(&self) -> Arc<Telemetry> {
        self.telemetry.get().cloned().unwrap_or_default()
    }

    /// Sets the access log and span exporter, before the services are built. Only the first
    /// call counts.
    pub fn set_telemetry(&self, telemetry: Telemetry) {
        let _ = self.telemetry.set(Arc::new(telemetry));
    }

    /// The file reloads read, if the configuration came from one.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Records the Tokio runtime that runs health checkers and DNS tasks (the background
    /// service's); checkers created by later reloads start there. Only the first call counts.
    pub fn set_background(&self, handle: tokio::runtime::Handle) {
        let _ = self.background.set(handle);
    }

    /// Makes this instance part of `fleet`: reloads compose the local file with the fleet's
    /// shared sections, admin changes become fleet-wide. Only the first call counts.
    pub fn set_fleet(&self, fleet: Arc<dyn Fleet>) {
        let _ = self.fleet.set(fleet);
    }

    /// The fleet this instance belongs to, if `[cluster]` is configured.
    pub fn fleet(&self) -> Option<&Arc<dyn Fleet>> {
        self.fleet.get()
    }

    /// Applies the configuration a fleet composed (`Ok`) or reports why it could not
    /// (`Err`, one error per line), serialised with reloads and admin changes, counted and
    /// remembered like a reload.
    pub async fn apply_from_fleet(&self, composed: Result<Config, Vec<String>>) -> ReloadReport {
        let _guard = self.reload_lock.lock().await;
        let report = match composed {
            Ok(cfg) => self.apply(cfg),
            Err(errors) => ReloadReport::failed(errors),
        };
        self.record(&report);
        report
    }

    /// The outcome of the last reload attempt, if there was one.
    pub fn last_reload(&self) -> Option<ReloadReport> {
        self.last_reload
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Re-reads the configuration file and applies it. Concurrent calls (and admin changes) are
    /// serialised.
    pub async fn reload(&self) -> ReloadReport {
        let _guard = self.reload_lock.lock().await;
        let report = match &self.config_path {
            None => ReloadReport::failed(vec!["no configuration file to reload".to_string()]),
            Some(path) => match switchyard_config::load_file(path) {
                Ok(cfg) => match self.fleet.get() {
                    Some(fleet) => match fleet.compose(cfg) {
                        Ok(cfg) => self.apply(cfg),
                        Err(errors) => ReloadReport::failed(errors),
                    },
                    None => self.apply(cfg),
                },
                Err(errs) => {
                    ReloadReport::failed(errs.errors.iter().map(|e| e.to_string()).collect())
                }
            },
        };
        self.record(&report);
        report
    }

    /// Applies an already validated configuration (the admin API and embedders use this): see
    /// [`crate::reload`].
    pub fn apply(&self, cfg: Config) -> ReloadReport {
        let current = self.runtime.load_full();
        // `[access_log]` and `[tracing]` changes are started first (a log path that cannot be
        // opened fails the reload) and put in use with the new runtime.
        let telemetry = self.telemetry();
        let staged = match telemetry.stage(&cfg) {
            Ok(staged) => staged,
            Err(e) => return ReloadReport::failed(vec![e.to_string()]),
        };
        match reload::next_runtime(&current, cfg, self.metrics) {
            Ok((next, needs_upgrade)) => {
                self.start_health(&next);
                self.runtime.store(Arc::new(next));
                staged.commit();
                ReloadReport::applied(needs_upgrade)
            }
            Err(report) => report,
        }
    }

    /// Runs `change` on the current runtime with reloads held off, so that a change made in
    /// place (an admin API's server change) never lands on a pool a reload is replacing. Changes
    /// are serialised with each other and with reloads.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let rt = switchyard_proxy::Runtime::build(Default::default(), None).unwrap();
    /// let shared = switchyard_proxy::Shared::new(rt, None);
    /// let upstreams = shared.apply_admin_change(|rt| rt.upstreams.len()).await;
    /// assert_eq!(upstreams, 0);
    /// # });
    /// ```
    pub async fn apply_admin_change<R>(&self, change: impl FnOnce(&Runtime) -> R) -> R {
        let _guard = self.reload_lock.lock().await;
        let rt = self.runtime.load_full();
        change(&rt)
    }

    /// Starts the checkers this runtime created and its DNS re-resolution tasks (on the
    /// background runtime).
    pub fn start_health(&self, rt: &Runtime) {
        let Some(handle) = self.background.get() else {
            // Not started yet: the background service starts every checker when it starts.
            return;
        };
        let _enter = handle.enter();
        for up in rt.upstreams.iter().filter(|u| u.health_is_new) {
            if let Err(e) = up.health.start() {
                log::error!("upstream {}: cannot start health checks: {e}", up.cfg.name);
            }
        }
        rt.start_dns();
    }

    /// Counts, logs and remembers the outcome of a reload attempt.
    fn record(&self, report: &ReloadReport) {
        let result = if report.applied { "success" } else { "failure" };
        self.metrics
            .config_reloads_total
            .with_label_values(&[result])
            .inc();
        report.log();
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Some(report.clone());
        }
    }
}
