//! Feeds health events into Prometheus.

use switchyard_balance::ServerId;
use switchyard_health::{CheckResult, HealthObserver};
use switchyard_metrics::Metrics;

/// A [`HealthObserver`] that updates `switchyard_backend_healthy`,
/// `switchyard_health_checks_total` and `switchyard_backend_ejections_total`.
#[derive(Debug, Clone, Copy)]
pub struct MetricsObserver(pub &'static Metrics);

impl HealthObserver for MetricsObserver {
    fn on_check(&self, upstream: &str, server: &ServerId, result: &CheckResult) {
        let outcome = if result.is_pass() { "pass" } else { "fail" };
        self.0
            .health_checks_total
            .with_label_values(&[upstream, server.as_str(), outcome])
            .inc();
    }

    fn on_transition(&self, upstream: &str, server: &ServerId, healthy: bool, _reason: &str) {
        self.0
            .backend_healthy
            .with_label_values(&[upstream, server.as_str()])
            .set(i64::from(healthy));
    }

    fn on_ejection(&self, upstream: &str, server: &ServerId) {
        self.0
            .backend_ejections_total
            .with_label_values(&[upstream, server.as_str()])
            .inc();
    }
}
