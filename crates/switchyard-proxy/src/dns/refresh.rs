//! Re-resolution: one task per upstream with named servers, every `resolve_interval_ms`, on the
//! background runtime; a changed answer replaces the upstream's servers.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchyard_balance::ServerSpec;
use switchyard_config::UpstreamConfig;
use switchyard_metrics::Metrics;

use super::{build_specs, last_good, named_servers, DnsResolver, NamedServer};

/// An upstream whose DNS-named servers are re-resolved: its configuration, and the way to swap
/// its servers (the pool, health checkers and everything that follows them).
pub trait Reresolve: Send + Sync + 'static {
    /// The upstream's configuration.
    fn config(&self) -> &UpstreamConfig;
    /// Replaces the servers with `next(current)`, computed under the pool's lock; returns the old
    /// and the new servers when they differ.
    fn replace_servers(
        &self,
        next: &mut dyn FnMut(&[ServerSpec]) -> Vec<ServerSpec>,
    ) -> Option<(Vec<ServerSpec>, Vec<ServerSpec>)>;
}

/// Counts one lookup in `switchyard_dns_resolutions_total`.
pub fn count(metrics: &Metrics, upstream: &str, ok: bool) {
    metrics
        .dns_resolutions_total
        .with_label_values(&[upstream, if ok { "success" } else { "failure" }])
        .inc();
}

/// Controls one runtime's re-resolution tasks.
#[derive(Debug)]
pub struct DnsControl {
    lock: Mutex<()>,
    stop: tokio::sync::watch::Sender<bool>,
    started: AtomicBool,
}

impl Default for DnsControl {
    fn default() -> Self {
        DnsControl {
            lock: Mutex::new(()),
            stop: tokio::sync::watch::Sender::new(false),
            started: AtomicBool::new(false),
        }
    }
}

impl DnsControl {
    /// Keeps the tasks from applying answers while the guard lives (a reload holds it while it
    /// builds the next runtime, then calls [`DnsControl::stop`]).
    pub fn pause(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the tasks (for good).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// True once [`DnsControl::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Starts one re-resolution task per upstream that has named servers, on the current Tokio
/// runtime, asking `resolvers` (empty: the system's). Starting twice, or after
/// [`DnsControl::stop`], does nothing.
pub fn start<U: Reresolve>(
    ctl: &Arc<DnsControl>,
    resolvers: &[SocketAddr],
    upstreams: &[Arc<U>],
    metrics: &'static Metrics,
) {
    if ctl.is_stopped() || ctl.started.swap(true, Ordering::AcqRel) {
        return;
    }
    for up in upstreams {
        if named_servers(up.config()).is_empty() {
            continue;
        }
        tokio::spawn(run(
            Arc::clone(up),
            resolvers.to_vec(),
            Arc::clone(ctl),
            metrics,
        ));
    }
}

/// One upstream's re-resolution loop.
async fn run<U: Reresolve>(
    up: Arc<U>,
    resolvers: Vec<SocketAddr>,
    ctl: Arc<DnsControl>,
    metrics: &'static Metrics,
) {
    let cfg = up.config();
    let name = cfg.name.clone();
    let resolver = match DnsResolver::new(&resolvers) {
        Ok(r) => r,
        Err(e) => {
            log::error!("upstream {name}: {e}; server names will not be re-resolved");
            return;
        }
    };
    let interval = Duration::from_millis(cfg.resolve_interval_ms.max(1));
    let named = named_servers(cfg);
    let mut failing: BTreeSet<NamedServer> = BTreeSet::new();
    let mut stop = ctl.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut answers = Vec::with_capacity(named.len());
        for n in &named {
            let res = tokio::select! {
                r = resolver.lookup(&n.name) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            count(metrics, &name, res.is_ok());
            match &res {
                Ok(_) => {
                    if failing.remove(n) {
                        log::info!("upstream {name}: {} resolves again", n.name);
                    }
                }
                Err(e) => {
                    if failing.insert(n.clone()) {
                        log::warn!(
                            "upstream {name}: cannot resolve {}: {e}; keeping its last good addresses",
                            n.name
                        );
                    }
                }
            }
            answers.push((n.clone(), res));
        }
        // A reload building the next runtime holds the lock: skip this round (we are about to
        // be stopped, or the next round applies).
        let Ok(_guard) = ctl.lock.try_lock() else {
            continue;
        };
        if ctl.is_stopped() {
            return;
        }
        // Read, rebuild and write the server list under the pool's lock: an admin change to a
        // server meanwhile waits and applies on top, rather than being overwritten.
        let mut answers = Some(answers);
        let changed = up.replace_servers(&mut |current| {
            let mut resolved = last_good(cfg, current);
            for (n, res) in answers.take().into_iter().flatten() {
                if let Ok(ips) = res {
                    resolved.insert(n, ips);
                }
            }
            build_specs(cfg, &resolved, current)
        });
        if let Some((current, next)) = changed {
            log_change(&name, &current, &next);
        }
    }
}

fn log_change(upstream: &str, old: &[ServerSpec], new: &[ServerSpec]) {
    let ids = |v: &[ServerSpec]| v.iter().map(|s| s.id.clone()).collect::<BTreeSet<_>>();
    let (o, n) = (ids(old), ids(new));
    let added: Vec<&str> = n.difference(&o).map(|i| i.as_str()).collect();
    let removed: Vec<&str> = o.difference(&n).map(|i| i.as_str()).collect();
    log::info!("upstream {upstream}: DNS answer changed: added {added:?}, removed {removed:?}");
}
