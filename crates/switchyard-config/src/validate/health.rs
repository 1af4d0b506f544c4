//! Rules of `[upstreams.health.active]` and `[upstreams.health.passive]`.

use super::syntax::check_host_header;
use super::Validator;
use crate::model::{ActiveHealthConfig, PassiveHealthConfig};

impl Validator {
    pub(super) fn active(&mut self, p: &str, a: &ActiveHealthConfig) {
        if !a.path.starts_with('/') {
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
        if a.status_codes.is_empty() {
            self.err(
                format!("{p}.status_codes"),
                "must list at least one status or range",
            );
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
