//! Live reconfiguration: re-read the file, build a new runtime next to the running one, swap.
//!
//! A valid file swaps routes and upstreams atomically: requests in flight finish on the runtime
//! they started with (they hold an `Arc` of it), servers whose identity is unchanged keep their
//! health, in-flight counts and latency estimates, new servers wait for their first active check
//! and removed servers stop being probed. An invalid file changes nothing: the error (key path and
//! line) is logged, counted in `switchyard_config_reloads_total{result="failure"}` and returned.
//! Listener changes cannot be applied in place: they need a graceful upgrade
//! (`switchyard run -u`, see `docs/operations.md`); the report says so.

use std::sync::Arc;

use serde::Serialize;
use switchyard_config::{Config, ListenerConfig};

use crate::runtime::Runtime;
use crate::service::Shared;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// True if the new configuration is now serving.
    pub applied: bool,
    /// Errors, one per line, each with the key path and line (empty when applied).
    pub errors: Vec<String>,
    /// Listener changes that were *not* applied and need a graceful upgrade.
    pub needs_upgrade: Vec<String>,
    /// Unix time of the attempt.
    pub at_unix_s: u64,
}

impl ReloadReport {
    fn failed(errors: Vec<String>) -> Self {
        ReloadReport {
            applied: false,
            errors,
            needs_upgrade: Vec::new(),
            at_unix_s: now_unix(),
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn listener_changes(old: &[ListenerConfig], new: &[ListenerConfig]) -> Vec<String> {
    let mut out = Vec::new();
    for n in new {
        match old.iter().find(|o| o.name == n.name) {
            None => out.push(format!("listener {} added", n.name)),
            Some(o) if o.listen != n.listen || o.protocol != n.protocol || o.tls != n.tls => out
                .push(format!(
                    "listener {} changed its address, protocol or TLS",
                    n.name
                )),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| n.name == o.name) {
            out.push(format!("listener {} removed", o.name));
        }
    }
    out
}

impl Shared {
    /// Re-reads the configuration file and applies it. Concurrent calls are serialised.
    pub async fn reload(&self) -> ReloadReport {
        let _guard = self.reload_lock.lock().await;
        let report = match &self.config_path {
            None => ReloadReport::failed(vec!["no configuration file to reload".to_string()]),
            Some(path) => match switchyard_config::load_file(path) {
                Ok(cfg) => self.apply(cfg),
                Err(errs) => {
                    ReloadReport::failed(errs.errors.iter().map(|e| e.to_string()).collect())
                }
            },
        };
        self.record(&report);
        report
    }

    /// Applies an already validated configuration (the admin API and embedders use this).
    pub fn apply(&self, cfg: Config) -> ReloadReport {
        let current = self.runtime.load_full();
        let needs_upgrade = listener_changes(&current.config.listeners, &cfg.listeners);
        let mut cfg = cfg;
        if !needs_upgrade.is_empty() {
            // Keep serving on the listeners the process has; everything else is applied.
            cfg.listeners = current.config.listeners.clone();
        }
        // The running runtime's DNS tasks must not apply answers to pools the build changes.
        let dns_pause = current.dns.pause();
        let built = Runtime::build_with_metrics(Arc::new(cfg), Some(&current), self.metrics);
        if built.is_ok() {
            current.dns.stop();
        }
        drop(dns_pause);
        match built {
            Ok(next) => {
                self.start_health(&next);
                self.runtime.store(Arc::new(next));
                ReloadReport {
                    applied: true,
                    errors: Vec::new(),
                    needs_upgrade,
                    at_unix_s: now_unix(),
                }
            }
            Err(e) => ReloadReport::failed(vec![e.to_string()]),
        }
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

    fn record(&self, report: &ReloadReport) {
        let result = if report.applied { "success" } else { "failure" };
        self.metrics
            .config_reloads_total
            .with_label_values(&[result])
            .inc();
        if report.applied {
            log::info!("configuration reloaded");
            for n in &report.needs_upgrade {
                log::warn!("{n}: not applied; listener changes need a graceful upgrade (switchyard run -u)");
            }
        } else {
            for e in &report.errors {
                log::error!("reload rejected, still serving the previous configuration: {e}");
            }
        }
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Some(report.clone());
        }
    }
}
