//! The OTLP exporter, with every failed export counted in
//! `switchyard_span_export_failures_total` and logged when exports start or stop failing (not
//! once per batch).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use switchyard_metrics::prometheus::IntCounter;

/// Wraps an exporter and counts its failures.
#[derive(Debug)]
pub(crate) struct CountingExporter<E> {
    pub(crate) inner: E,
    pub(crate) failures: IntCounter,
    pub(crate) endpoint: String,
    /// Whether the last export failed (to log changes only).
    pub(crate) failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) => {
                self.failures.inc();
                if !self.failing.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "tracing: cannot export {spans} span(s) to {}: {e} \
                         (counted in switchyard_span_export_failures_total)",
                        self.endpoint
                    );
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    log::info!("tracing: exporting to {} again", self.endpoint);
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
