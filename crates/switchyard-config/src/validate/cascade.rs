//! Rules of `[cascade]`.

use super::syntax::check_instance_id;
use super::{Validator, MAX_ALLOWED_INSTANCES};
use crate::model::Config;

impl Validator {
    pub(super) fn cascade(&mut self, cfg: &Config) {
        let Some(c) = &cfg.cascade else { return };
        self.non_empty("cascade.key_env", &c.key_env);
        if c.allowed_instances.len() > MAX_ALLOWED_INSTANCES {
            self.err(
                "cascade.allowed_instances",
                format!(
                    "at most {MAX_ALLOWED_INSTANCES} instances may be allowed, got {}",
                    c.allowed_instances.len()
                ),
            );
        }
        for (k, id) in c.allowed_instances.iter().enumerate() {
            if let Err(msg) = check_instance_id(id) {
                self.err(format!("cascade.allowed_instances[{k}]"), msg);
            }
        }
    }
}
