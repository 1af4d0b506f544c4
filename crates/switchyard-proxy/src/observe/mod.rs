//! Observability: request ids ([`request_id`]), W3C trace context ([`trace_context`]), the
//! access log ([`access_log`], lines from [`http_record`] and [`tcp_record`], written by
//! [`log_writer`]'s thread) and OpenTelemetry spans ([`tracer`], exported by
//! [`otlp_exporter`]'s thread).
//!
//! [`Telemetry`] holds what `[access_log]` and `[tracing]` configure. It is built when the
//! gateway starts and follows every reload ([`Telemetry::stage`]): a section that changed is
//! started anew next to the running one and swapped in once the rest of the configuration is;
//! the replaced log or exporter finishes what it was given (queued lines written, queued spans
//! exported) once the last request using it is done. Without either section, a request pays for
//! its id and `traceparent` and two relaxed atomic loads: no clock read, no line, no span.

pub mod access_log;
mod clock_text;
pub mod http_record;
mod ip_text;
mod line_queue;
mod line_text;
mod log_writer;
mod otlp_batch;
mod otlp_exporter;
pub mod request_id;
mod span_queue;
mod span_writer;
pub mod tcp_record;
pub mod trace_context;
pub mod tracer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use switchyard_config::{AccessLogConfig, Config, TracingConfig};
use switchyard_metrics::Metrics;

use crate::error::BuildError;
use access_log::AccessLog;
use tracer::Tracer;

/// The access log and the span exporter, if configured.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// `[access_log]` is configured (read before [`Telemetry::access_log`] loads it).
    logging: AtomicBool,
    /// `[tracing]` is configured.
    tracing: AtomicBool,
    access_log: ArcSwapOption<AccessLog>,
    tracer: ArcSwapOption<Tracer>,
    /// The sections running now, to tell what a reload changes.
    running: Mutex<Sections>,
    /// Where counters go (none: a `Default` telemetry that never starts anything).
    metrics: Option<&'static Metrics>,
    /// `[server].instance_id`, a span resource attribute.
    instance_id: String,
}

/// `[access_log]` and `[tracing]` as configured.
#[derive(Debug, Default, Clone, PartialEq)]
struct Sections {
    access_log: Option<AccessLogConfig>,
    tracing: Option<TracingConfig>,
}

impl Sections {
    fn of(cfg: &Config) -> Sections {
        Sections {
            access_log: cfg.access_log.clone(),
            tracing: cfg.tracing.clone(),
        }
    }
}

/// A reload's new access log and exporter, started but not yet in use ([`Staged::commit`]).
/// Dropped uncommitted (the reload failed), they stop without having been used.
#[derive(Debug)]
#[must_use = "a staged telemetry change does nothing until committed"]
pub struct Staged<'a> {
    telemetry: &'a Telemetry,
    sections: Sections,
    /// `Some`: replace the access log with this (`None` inside: remove it).
    access_log: Option<Option<Arc<AccessLog>>>,
    /// `Some`: replace the exporter with this.
    tracer: Option<Option<Arc<Tracer>>>,
}

impl Telemetry {
    /// Opens the access log and starts the span exporter that `cfg` configures.
    pub fn start(cfg: &Config, metrics: &'static Metrics) -> Result<Telemetry, BuildError> {
        let telemetry = Telemetry {
            metrics: Some(metrics),
            instance_id: cfg.server.instance_id.clone(),
            ..Telemetry::default()
        };
        telemetry.stage(cfg)?.commit();
        Ok(telemetry)
    }

    /// Starts what `cfg` changes in `[access_log]` and `[tracing]` (a new file or format, a new
    /// endpoint, service name or ratio, a `ca_file` whose contents changed), without using it
    /// yet. An error names the key.
    pub fn stage(&self, cfg: &Config) -> Result<Staged<'_>, BuildError> {
        let sections = Sections::of(cfg);
        let running = self.running.lock().map(|r| r.clone()).unwrap_or_default();
        let mut staged = Staged {
            telemetry: self,
            sections: sections.clone(),
            access_log: None,
            tracer: None,
        };
        let Some(metrics) = self.metrics else {
            return Ok(staged);
        };
        if sections.access_log != running.access_log {
            staged.access_log = Some(match &sections.access_log {
                Some(l) => Some(Arc::new(
                    AccessLog::start(l, metrics.access_log_dropped_total.clone()).map_err(|e| {
                        BuildError::Invalid {
                            key: "access_log.path".to_string(),
                            reason: format!("cannot open {}: {e}", l.path),
                        }
                    })?,
                )),
                None => None,
            });
        }
        if sections.tracing != running.tracing || self.ca_file_rotated(&sections.tracing) {
            staged.tracer = Some(match &sections.tracing {
                Some(t) => Some(Arc::new(Tracer::start(
                    t,
                    &self.instance_id,
                    metrics.span_export_failures_total.clone(),
                    metrics.spans_dropped_total.clone(),
                )?)),
                None => None,
            });
        }
        Ok(staged)
    }

    /// True if `[tracing]` has a `ca_file` whose contents differ from what the running exporter
    /// trusts (a rotated CA with an unchanged config): the reload starts a new exporter.
    fn ca_file_rotated(&self, tracing: &Option<TracingConfig>) -> bool {
        let Some(path) = tracing.as_ref().and_then(|t| t.ca_file.as_deref()) else {
            return false;
        };
        self.tracer
            .load()
            .as_ref()
            .is_none_or(|t| t.ca_file_changed(path))
    }

    /// True if requests are recorded (an access log or spans): only then does a request read
    /// the clock and keep what it records.
    #[inline]
    pub fn records(&self) -> bool {
        self.logging.load(Ordering::Relaxed) || self.tracing.load(Ordering::Relaxed)
    }

    /// The access log, if one is configured.
    #[inline]
    pub fn access_log(&self) -> Option<Arc<AccessLog>> {
        if self.logging.load(Ordering::Relaxed) {
            self.access_log.load_full()
        } else {
            None
        }
    }

    /// The span exporter, if `[tracing]` is configured.
    #[inline]
    pub fn tracer(&self) -> Option<Arc<Tracer>> {
        if self.tracing.load(Ordering::Relaxed) {
            self.tracer.load_full()
        } else {
            None
        }
    }

    /// True if `[tracing]` is configured.
    #[inline]
    pub fn traces(&self) -> bool {
        self.tracing.load(Ordering::Relaxed)
    }

    /// Whether a new trace with this id is sampled: by `sample_ratio` with `[tracing]`, never
    /// without.
    #[inline]
    pub fn sample_new(&self, trace_id: &trace_context::TraceId) -> bool {
        self.traces()
            && self
                .tracer
                .load()
                .as_ref()
                .is_some_and(|t| t.sample(trace_id))
    }

    /// Asks the access log to reopen its file (`SIGUSR1`).
    pub fn reopen_log(&self) {
        match self.access_log() {
            Some(log) => {
                log::info!("SIGUSR1: reopening the access log");
                log.reopen();
            }
            None => log::info!("SIGUSR1: no access log to reopen"),
        }
    }

    /// Writes out queued lines and spans (at process exit).
    pub fn close(&self) {
        if let Some(log) = self.access_log.load_full() {
            log.close();
        }
        if let Some(t) = self.tracer.load_full() {
            t.close();
        }
    }
}

impl Staged<'_> {
    /// Puts the staged access log and exporter in use; the replaced ones finish their queues
    /// once the requests still holding them are done.
    pub fn commit(self) {
        let t = self.telemetry;
        // Enabling: the object is in place before the flag says so; disabling: the flag first.
        if let Some(log) = self.access_log {
            match &self.sections.access_log {
                Some(l) => log::info!("access log: {} ({:?})", l.path, l.format),
                None => log::info!("access log: off"),
            }
            let on = log.is_some();
            if !on {
                t.logging.store(false, Ordering::Release);
            }
            t.access_log.store(log);
            t.logging.store(on, Ordering::Release);
        }
        if let Some(tracer) = self.tracer {
            match &self.sections.tracing {
                Some(c) => log::info!(
                    "tracing: spans to {} (sample_ratio {})",
                    c.otlp_endpoint,
                    c.sample_ratio
                ),
                None => log::info!("tracing: off"),
            }
            let on = tracer.is_some();
            if !on {
                t.tracing.store(false, Ordering::Release);
            }
            t.tracer.store(tracer);
            t.tracing.store(on, Ordering::Release);
        }
        if let Ok(mut running) = t.running.lock() {
            *running = self.sections;
        }
    }
}
