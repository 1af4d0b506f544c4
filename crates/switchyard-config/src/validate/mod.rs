//! Cross-field validation: everything serde cannot check on its own (names, references, ranges,
//! patterns). Every rule adds to one list, so a user sees all mistakes at once.
//!
//! One file per section holds that section's rules as methods of the shared `Validator`; a new
//! section adds a file and one call in [`validate`].

mod backend_path;
mod cascade;
mod cluster;
mod groups;
mod health;
mod listeners;
mod observability;
mod resilience;
mod routes;
mod server;
mod sticky;
mod syntax;
mod upstreams;

use std::collections::HashMap;

use syntax::check_name;

use crate::error::{ConfigError, ConfigErrors};
use crate::model::Config;

/// Highest weight a group or server may have.
pub const MAX_WEIGHT: u32 = 10_000;
/// Highest `retries` a route may have.
pub const MAX_RETRIES: i32 = 10;
/// Most entries `[cascade].allowed_instances` may have.
pub const MAX_ALLOWED_INSTANCES: usize = 5;

/// Checks everything serde cannot: names, references, ranges. Errors carry key paths only; the
/// parser adds lines (see [`ConfigErrors::locate`]).
///
/// ```
/// let mut cfg = switchyard_config::Config::default();
/// cfg.server.threads = 0;
/// let errs = switchyard_config::validate(&cfg).unwrap_err();
/// assert_eq!(errs.errors[0].path, "server.threads");
/// ```
pub fn validate(cfg: &Config) -> Result<(), ConfigErrors> {
    let mut v = Validator::default();
    v.server(cfg);
    v.variables(cfg);
    v.admin_metrics(cfg);
    v.limits(cfg);
    v.listeners(cfg);
    v.routes(cfg);
    v.upstreams(cfg);
    v.resilience(cfg);
    v.cascade(cfg);
    v.observability(cfg);
    v.cluster(cfg);
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors { errors: v.errors })
    }
}

/// The errors found so far. Each section's file adds an `impl Validator` block with its rules;
/// the helpers below are shared by all of them.
#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    /// Records an error at key `path`.
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    /// `value` must not be 0.
    fn positive(&mut self, path: impl Into<String>, value: u64) {
        if value == 0 {
            self.err(path, "must be greater than 0");
        }
    }

    /// `value` must hold more than white space.
    fn non_empty(&mut self, path: impl Into<String>, value: &str) {
        if value.trim().is_empty() {
            self.err(path, "must not be empty");
        }
    }

    /// Checks a name's characters and that it is unique among `seen`.
    fn name(&mut self, kind: &str, path: String, name: &str, seen: &mut HashMap<String, String>) {
        if let Err(msg) = check_name(name) {
            self.err(path.clone(), format!("{kind} name {msg}"));
            return;
        }
        if let Some(first) = seen.get(name) {
            self.err(
                path,
                format!("duplicate {kind} name `{name}` (first defined at {first})"),
            );
        } else {
            seen.insert(name.to_string(), path);
        }
    }
}

/// ", known: a, b" for an unknown-reference message.
fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.map(String::as_str).collect();
    if list.is_empty() {
        " (none are defined)".to_string()
    } else {
        format!(" (defined: {})", list.join(", "))
    }
}
