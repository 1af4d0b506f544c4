//! `switchyard_build_info` and the standard `process_*` series.
//!
//! `switchyard_build_info{version,commit}` is a constant 1 whose labels say which build is
//! running, as Prometheus' own `prometheus_build_info` does: join it onto other series
//! (`* on (instance) group_left (version) switchyard_build_info`) or count versions across a
//! fleet during a rollout (`count by (version) (switchyard_build_info)`).
//!
//! The `process_*` series (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`,
//! `process_virtual_memory_bytes`, `process_threads`) come from the `prometheus` crate's
//! process collector, read from `/proc/self` at each scrape. With this crate's `process`
//! feature (Linux only), [`register`] makes sure the collector is in the default registry —
//! the one `/metrics` serves. Nothing here runs on the request path.

use std::sync::OnceLock;

use prometheus::{IntGaugeVec, Opts};

/// The commit label used when the build did not say which commit it was made from.
pub const UNKNOWN_COMMIT: &str = "unknown";

static BUILD_INFO: OnceLock<Result<IntGaugeVec, String>> = OnceLock::new();

/// Registers `switchyard_build_info{version,commit} 1` in the default registry (once; later calls
/// return the first outcome) and, when built with the `process` feature on Linux, the process
/// collector. `commit` may be empty, which is exported as [`UNKNOWN_COMMIT`].
///
/// ```
/// switchyard_metrics::build_info::register("1.2.3", "abc1234").unwrap();
/// let text = switchyard_metrics::prometheus::TextEncoder::new()
///     .encode_to_string(&switchyard_metrics::prometheus::gather())
///     .unwrap();
/// assert!(text.contains(r#"switchyard_build_info{commit="abc1234",version="1.2.3"} 1"#));
/// ```
pub fn register(version: &str, commit: &str) -> Result<(), String> {
    let outcome = BUILD_INFO.get_or_init(|| {
        let commit = if commit.is_empty() {
            UNKNOWN_COMMIT
        } else {
            commit
        };
        let family = IntGaugeVec::new(
            Opts::new(
                "switchyard_build_info",
                "Constant 1, labelled with the version and commit of the running build.",
            ),
            &["version", "commit"],
        )
        .map_err(|e| e.to_string())?;
        family.with_label_values(&[version, commit]).set(1);
        prometheus::register(Box::new(family.clone())).map_err(|e| e.to_string())?;
        Ok(family)
    });
    // The process collector is registered by the default registry itself when the `prometheus`
    // crate's `process` feature is on; touching the registry here makes that happen at start-up
    // rather than at the first scrape.
    let _ = prometheus::default_registry();
    outcome.as_ref().map(|_| ()).map_err(Clone::clone)
}

/// Whether this build exports the `process_*` series (the `process` feature, on Linux).
pub const fn exports_process_metrics() -> bool {
    cfg!(all(feature = "process", target_os = "linux"))
}
