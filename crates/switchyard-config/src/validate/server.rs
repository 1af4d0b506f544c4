//! Rules of the process-wide tables: `[server]`, `[variables]`, `[admin]` and `[limits]`.

use super::syntax::check_instance_id;
use super::Validator;
use crate::error::key_segment;
use crate::model::{parse_resolver, Config, MAX_READ_BUFFER_BYTES};

impl Validator {
    pub(super) fn server(&mut self, cfg: &Config) {
        let s = &cfg.server;
        if let Err(msg) = check_instance_id(&s.instance_id) {
            self.err("server.instance_id", msg);
        }
        if s.threads == 0 {
            self.err("server.threads", "must be at least 1");
        }
        self.non_empty("server.pid_file", &s.pid_file);
        self.non_empty("server.upgrade_sock", &s.upgrade_sock);
        for (i, r) in s.resolvers.iter().enumerate() {
            match parse_resolver(r) {
                Ok(a) if a.port() == 0 => self.err(
                    format!("server.resolvers[{i}]"),
                    format!("`{r}`: port must be between 1 and 65535"),
                ),
                Ok(_) => {}
                Err(msg) => self.err(format!("server.resolvers[{i}]"), msg),
            }
        }
    }

    pub(super) fn variables(&mut self, cfg: &Config) {
        for name in cfg.variables.keys() {
            if name.is_empty() || name.contains('#') || name.chars().any(char::is_whitespace) {
                self.err(
                    format!("variables.{}", key_segment(name)),
                    "a variable name must be non-empty, without `#` or spaces",
                );
            }
        }
    }

    pub(super) fn admin_metrics(&mut self, cfg: &Config) {
        if let Some(admin) = &cfg.admin {
            self.non_empty("admin.token_env", &admin.token_env);
        }
    }

    pub(super) fn limits(&mut self, cfg: &Config) {
        self.positive("limits.header_timeout_ms", cfg.limits.header_timeout_ms);
        self.positive("limits.body_timeout_ms", cfg.limits.body_timeout_ms);
        if let Some(n) = cfg.limits.read_buffer_bytes {
            if n > MAX_READ_BUFFER_BYTES {
                self.err(
                    "limits.read_buffer_bytes",
                    format!("must be at most {} (1 MiB)", MAX_READ_BUFFER_BYTES),
                );
            }
        }
    }
}
