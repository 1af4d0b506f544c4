//! Rules of `[access_log]` and `[tracing]`.

use super::Validator;
use crate::model::Config;

impl Validator {
    pub(super) fn observability(&mut self, cfg: &Config) {
        if let Some(log) = &cfg.access_log {
            self.non_empty("access_log.path", &log.path);
        }
        if let Some(t) = &cfg.tracing {
            self.non_empty("tracing.service_name", &t.service_name);
            if !(0.0..=1.0).contains(&t.sample_ratio) {
                self.err("tracing.sample_ratio", "must be between 0.0 and 1.0");
            }
            if let Err(msg) = check_otlp_endpoint(&t.otlp_endpoint) {
                self.err("tracing.otlp_endpoint", msg);
            }
            if t.ca_file.is_some() && !t.otlp_endpoint.starts_with("https://") {
                self.err(
                    "tracing.ca_file",
                    "only used with an https:// otlp_endpoint",
                );
            }
        }
    }
}

/// `otlp_endpoint` must be `http://` or `https://host[:port][/path]`.
fn check_otlp_endpoint(url: &str) -> Result<(), String> {
    let authority = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    match authority {
        Some(a) if !a.is_empty() && !a.starts_with(':') && !a.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(format!(
            "`{url}` is not an http:// or https:// URL with a host \
             (e.g. http://127.0.0.1:4318/v1/traces)"
        )),
    }
}
