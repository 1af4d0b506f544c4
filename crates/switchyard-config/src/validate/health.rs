//! Rules of `[upstreams.health.active]` and `[upstreams.health.passive]`.

use super::syntax::check_host_header;
use super::Validator;
use crate::model::{ActiveHealthConfig, CheckProtocol, PassiveHealthConfig, UpstreamConfig};

impl Validator {
    pub(super) fn active(&mut self, p: &str, a: &ActiveHealthConfig, up: &UpstreamConfig) {
        if a.protocol == CheckProtocol::Grpc {
            self.grpc_check(p, a, up);
        } else if a.grpc_service.is_some() {
            self.err(
                format!("{p}.grpc_service"),
                "only `protocol = \"grpc\"` checks send a service name",
            );
        }
        if !a.path().starts_with('/') {
            self.err(format!("{p}.path"), "must start with `/`");
        }
        if let Some(h) = &a.host {
            if let Err(msg) = check_host_header(h) {
                self.err(format!("{p}.host"), msg);
            }
        }
        if a.healthy_threshold == 0 {
            self.err(format!("{p}.healthy_threshold"), "must be at least 1");
        }
        if a.unhealthy_threshold == 0 {
            self.err(format!("{p}.unhealthy_threshold"), "must be at least 1");
        }
        self.positive(format!("{p}.timeout_ms"), a.timeout_ms);
        self.positive(format!("{p}.interval_ms"), a.interval_ms);
        if a.status_codes().is_empty() {
            self.err(
                format!("{p}.status_codes"),
                "must list at least one status or range",
            );
        }
    }

    /// `protocol = "grpc"`: the upstream must speak HTTP/2, and the HTTP-only keys are errors.
    fn grpc_check(&mut self, p: &str, a: &ActiveHealthConfig, up: &UpstreamConfig) {
        if !up.may_use_h2() {
            self.err(
                format!("{p}.protocol"),
                "gRPC checks need HTTP/2 to the servers: set the upstream's `protocol = \"http2\"` \
                 (or `\"auto\"` with `scheme = \"https\"`)",
            );
        }
        for (key, set) in [
            ("path", a.path.is_some()),
            ("method", a.method.is_some()),
            ("status_codes", a.status_codes.is_some()),
        ] {
            if set {
                self.err(
                    format!("{p}.{key}"),
                    format!(
                        "`{key}` is for HTTP checks; a gRPC check calls \
                         grpc.health.v1.Health/Check (set `grpc_service` to name a service)"
                    ),
                );
            }
        }
    }

    pub(super) fn passive(&mut self, p: &str, ps: &PassiveHealthConfig) {
        for (k, s) in ps.unhealthy_statuses.iter().enumerate() {
            if !(100..=599).contains(s) {
                self.err(
                    format!("{p}.unhealthy_statuses[{k}]"),
                    format!("status {s} is outside 100..=599"),
                );
            }
        }
        if ps.unhealthy_threshold == 0 {
            self.err(format!("{p}.unhealthy_threshold"), "must be at least 1");
        }
        self.positive(format!("{p}.ejection_ms"), ps.ejection_ms);
        if ps.max_ejection_percent > 100 {
            self.err(
                format!("{p}.max_ejection_percent"),
                format!("must be between 0 and 100, got {}", ps.max_ejection_percent),
            );
        }
    }
}
