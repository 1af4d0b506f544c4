//! Checks of the files under `contrib/` (Grafana dashboard, Prometheus rules, systemd unit)
//! against the real binary: which series a PromQL expression names, what a live `/metrics`
//! exports, and a gateway driven so that every kind of series exists.

pub mod exposition;
pub mod live;
pub mod promql;
