//! Live reconfiguration: re-read the file, build a new runtime next to the running one, swap.
//!
//! A valid file swaps routes and upstreams atomically: requests in flight finish on the runtime
//! they started with (they hold an `Arc` of it), servers whose identity is unchanged keep their
//! health, in-flight counts and latency estimates, new servers wait for their first active check
//! and removed servers stop being probed. An invalid file changes nothing: the error (key path and
//! line) is logged, counted in `switchyard_config_reloads_total{result="failure"}` and returned.
//! Listener changes (address, protocol, added or removed listeners) cannot be applied in place:
//! they need a graceful upgrade (`switchyard run -u`, see `docs/operations.md`); the report says
//! so. A listener's `tls` is applied in place: every reload reads its certificate files again
//! (see [`crate::listener_tls`]).
//!
//! This module builds the next runtime ([`next_runtime`]) and says what happened
//! ([`ReloadReport`]); [`Shared::reload`](crate::Shared::reload) and
//! [`Shared::apply`](crate::Shared::apply) publish it.

use std::sync::Arc;

use serde::Serialize;
use switchyard_config::{Config, ListenerConfig};
use switchyard_metrics::Metrics;

use crate::runtime::Runtime;

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
    /// A reload that changed nothing, for `errors`.
    pub fn failed(errors: Vec<String>) -> Self {
        ReloadReport {
            applied: false,
            errors,
            needs_upgrade: Vec::new(),
            at_unix_s: now_unix(),
        }
    }

    /// A reload now serving, with the listener changes it left for a graceful upgrade.
    pub fn applied(needs_upgrade: Vec<String>) -> Self {
        ReloadReport {
            applied: true,
            errors: Vec::new(),
            needs_upgrade,
            at_unix_s: now_unix(),
        }
    }

    /// Logs the outcome: what was applied and what needs an upgrade, or why nothing was.
    pub fn log(&self) {
        if self.applied {
            log::info!("configuration reloaded");
            for n in &self.needs_upgrade {
                log::warn!("{n}: not applied; listener changes need a graceful upgrade (switchyard run -u)");
            }
        } else {
            for e in &self.errors {
                log::error!("reload rejected, still serving the previous configuration: {e}");
            }
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
            Some(o) if o.listen != n.listen || o.protocol != n.protocol => out.push(format!(
                "listener {} changed its address or protocol",
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

/// Builds the runtime of `cfg` to replace `current` (reporting to `metrics`), keeping the state of
/// every server whose identity stays. Listener changes are left out (the running listeners are
/// kept) and returned, for the report. `current`'s DNS tasks are paused while the new runtime is
/// built, and stopped once it is: the new runtime's own take over when it starts. On error
/// nothing changed, and the report says why.
pub fn next_runtime(
    current: &Runtime,
    mut cfg: Config,
    metrics: &'static Metrics,
) -> Result<(Runtime, Vec<String>), ReloadReport> {
    let needs_upgrade = listener_changes(&current.config.listeners, &cfg.listeners);
    if !needs_upgrade.is_empty() {
        // Keep serving on the listeners the process has; everything else is applied, including
        // the TLS of a listener that keeps its address and protocol.
        let mut kept = current.config.listeners.clone();
        for k in &mut kept {
            if let Some(n) = cfg
                .listeners
                .iter()
                .find(|n| n.name == k.name && n.listen == k.listen && n.protocol == k.protocol)
            {
                k.tls.clone_from(&n.tls);
            }
        }
        cfg.listeners = kept;
    }
    // The running runtime's DNS tasks must not apply answers to pools the build changes.
    let dns_pause = current.dns.pause();
    let built = Runtime::build_with_metrics(Arc::new(cfg), Some(current), metrics);
    if built.is_ok() {
        current.dns.stop();
    }
    drop(dns_pause);
    match built {
        Ok(next) => Ok((next, needs_upgrade)),
        Err(e) => Err(ReloadReport::failed(vec![e.to_string()])),
    }
}
