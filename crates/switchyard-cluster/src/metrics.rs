//! The fleet's metric families, registered once in the process's default registry (the one the
//! metrics endpoint serves).

use std::sync::OnceLock;

use prometheus::{register_int_counter_vec, register_int_gauge, IntCounterVec, IntGauge, Opts};

/// The fleet's metric families.
#[derive(Debug)]
pub struct ClusterMetrics {
    /// `switchyard_config_source_up`: 1 while connected to etcd, 0 otherwise.
    pub source_up: IntGauge,
    /// `switchyard_config_revision`: the `mod_revision` of `<prefix>/config` this instance runs.
    pub revision: IntGauge,
    /// `switchyard_cluster_errors_total{kind}`: `apply` (a document or composition rejected),
    /// `etcd` (a failed etcd call or a broken watch), `server` / `override` (an ignored key),
    /// `member` (membership not kept), `duplicate_instance`, `cache` (cache not written or read).
    pub errors_total: IntCounterVec,
}

impl ClusterMetrics {
    /// The process's families, registered on first use.
    pub fn global() -> &'static ClusterMetrics {
        static METRICS: OnceLock<ClusterMetrics> = OnceLock::new();
        METRICS.get_or_init(|| build().unwrap_or_else(|_| unregistered()))
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors_total.with_label_values(&[kind]).inc();
    }
}

fn build() -> Result<ClusterMetrics, prometheus::Error> {
    Ok(ClusterMetrics {
        source_up: register_int_gauge!(
            "switchyard_config_source_up",
            "1 while the configuration source (etcd) is reachable and watched, 0 otherwise."
        )?,
        revision: register_int_gauge!(
            "switchyard_config_revision",
            "The mod_revision of the shared configuration document this instance runs."
        )?,
        errors_total: register_int_counter_vec!(
            "switchyard_cluster_errors_total",
            "Fleet errors by kind: apply, etcd, server, override, member, duplicate_instance, cache.",
            &["kind"]
        )?,
    })
}

/// Families outside any registry, for the case where the names were already taken; every
/// constructor is given constant, valid options, so `expect` cannot fire.
#[allow(clippy::expect_used)]
fn unregistered() -> ClusterMetrics {
    let gauge = |n: &str| IntGauge::with_opts(Opts::new(n, n)).expect("valid opts");
    ClusterMetrics {
        source_up: gauge("switchyard_config_source_up"),
        revision: gauge("switchyard_config_revision"),
        errors_total: IntCounterVec::new(
            Opts::new("switchyard_cluster_errors_total", "errors"),
            &["kind"],
        )
        .expect("valid opts"),
    }
}
