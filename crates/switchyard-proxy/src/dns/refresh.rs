//! Re-resolution: one task per upstream with named servers, every `resolve_interval_ms`, on the
//! background runtime; a changed answer replaces the upstream's servers.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchyard_balance::ServerSpec;
use switchyard_metrics::Metrics;

use super::{build_specs, last_good, named_servers, DnsResolver, NamedServer};
use crate::runtime::{Runtime, UpstreamRuntime};

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

/// Starts one re-resolution task per upstream of `rt` that has named servers, on the current
/// Tokio runtime. Starting twice, or after [`DnsControl::stop`], does nothing.
pub fn start(rt: &Runtime) {
    if rt.dns.is_stopped() || rt.dns.started.swap(true, Ordering::AcqRel) {
        return;
    }
    let resolvers = rt.config.server.resolver_addrs();
    for up in &rt.upstreams {
        if named_servers(&up.cfg).is_empty() {
            continue;
        }
        tokio::spawn(run(Arc::clone(up), resolvers.clone(), Arc::clone(&rt.dns)));
    }
}

/// One upstream's re-resolution loop.
async fn run(up: Arc<UpstreamRuntime>, resolvers: Vec<SocketAddr>, ctl: Arc<DnsControl>) {
    let name = up.cfg.name.clone();
    let resolver = match DnsResolver::new(&resolvers) {
        Ok(r) => r,
        Err(e) => {
            log::error!("upstream {name}: {e}; server names will not be re-resolved");
            return;
        }
    };
    let metrics = Metrics::global();
    let interval = Duration::from_millis(up.cfg.resolve_interval_ms.max(1));
    let named = named_servers(&up.cfg);
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
        let changed = up.replace_servers(|current| {
            let mut resolved = last_good(&up.cfg, current);
            for (n, res) in answers {
                if let Ok(ips) = res {
                    resolved.insert(n, ips);
                }
            }
            build_specs(&up.cfg, &resolved, current)
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
