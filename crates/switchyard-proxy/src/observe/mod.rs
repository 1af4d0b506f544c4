//! Observability: request ids ([`request_id`]), W3C trace context ([`trace_context`]), the
//! access log ([`access_log`], lines from [`http_record`] and [`tcp_record`], written by
//! [`log_writer`]'s thread) and OpenTelemetry spans ([`tracer`]).
//!
//! [`Telemetry`] holds what `[access_log]` and `[tracing]` configure, built once when the gateway
//! starts (a reload does not change them; an upgrade does). Without either, a request pays for
//! its id and `traceparent` only: no clock read, no line, no span.

pub mod access_log;
mod clock_text;
pub mod http_record;
mod line_text;
mod log_writer;
mod otlp_batch;
mod otlp_exporter;
pub mod request_id;
mod span_queue;
mod span_record;
pub mod tcp_record;
pub mod trace_context;
pub mod tracer;

use switchyard_config::Config;
use switchyard_metrics::Metrics;

use crate::error::BuildError;
use access_log::AccessLog;
use tracer::Tracer;

/// The access log and the span exporter, if configured.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// `[access_log]`.
    pub access_log: Option<AccessLog>,
    /// `[tracing]`.
    pub tracer: Option<Tracer>,
}

impl Telemetry {
    /// Opens the access log and starts the span exporter that `cfg` configures.
    pub fn start(cfg: &Config, metrics: &'static Metrics) -> Result<Telemetry, BuildError> {
        let access_log = match &cfg.access_log {
            Some(l) => Some(
                AccessLog::start(l, metrics.access_log_dropped_total.clone()).map_err(
                    |source| BuildError::Start {
                        what: "the access log",
                        source,
                    },
                )?,
            ),
            None => None,
        };
        let tracer = match &cfg.tracing {
            Some(t) => Some(Tracer::start(
                t,
                &cfg.server.instance_id,
                metrics.span_export_failures_total.clone(),
                metrics.spans_dropped_total.clone(),
            )?),
            None => None,
        };
        Ok(Telemetry { access_log, tracer })
    }

    /// True if requests are recorded (an access log or spans): only then does a request read
    /// the clock and keep what it records.
    #[inline]
    pub fn records(&self) -> bool {
        self.access_log.is_some() || self.tracer.is_some()
    }

    /// Whether a new trace with this id is sampled: by `sample_ratio` with `[tracing]`, never
    /// without.
    #[inline]
    pub fn sample_new(&self, trace_id: &trace_context::TraceId) -> bool {
        self.tracer.as_ref().is_some_and(|t| t.sample(trace_id))
    }

    /// Asks the access log to reopen its file (`SIGUSR1`).
    pub fn reopen_log(&self) {
        match &self.access_log {
            Some(log) => {
                log::info!("SIGUSR1: reopening the access log");
                log.reopen();
            }
            None => log::info!("SIGUSR1: no access log to reopen"),
        }
    }

    /// Writes out queued lines and spans (at process exit).
    pub fn close(&self) {
        if let Some(log) = &self.access_log {
            log.close();
        }
        if let Some(t) = &self.tracer {
            t.close();
        }
    }
}
