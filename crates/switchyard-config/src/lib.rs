//! Switchyard's configuration: the TOML schema, defaults and validation.
//!
//! This crate knows nothing of Pingora. [`parse_str`] turns TOML text into a validated [`Config`];
//! every error names the key path (`upstreams[1].groups[0].servers[2].weight`) and, when the
//! config came from text, the line and column.
//!
//! Where things are: `model/` holds the typed tables, one file per section, all re-exported here;
//! `validate/` holds the rules, one file per section; [`path_pattern`] is the grammar of a route
//! `path`, shared with the proxy's router; `error` locates errors in the text, `summary` renders a
//! config for `switchyard check`.

mod error;
mod model;
pub mod path_pattern;
mod shared_doc;
mod summary;
#[cfg(test)]
mod tests;
mod validate;

use std::path::{Path, PathBuf};

pub use error::{ConfigError, ConfigErrors};
pub use model::*;
pub use path_pattern::{PathPattern, PathPatternError, PathSegment};
pub use shared_doc::{local_sections_in, merge_shared_document, shared_part, SharedMerge};
pub use summary::summary;
pub use validate::{validate, MAX_ALLOWED_INSTANCES, MAX_RETRIES, MAX_WEIGHT};

/// Parses and validates a configuration from TOML text.
///
/// Returns every validation error at once (serde errors, such as a wrong type or an unknown
/// key, stop at the first one), each with its key path and, where the key or its table exists
/// in the text, its line and column. TLS file paths are only checked to be non-empty; use
/// [`load_file`] to resolve and check them against the file system.
///
/// ```
/// let err = switchyard_config::parse_str("[server]\nthreads = \"two\"\n").unwrap_err();
/// assert_eq!(err.errors[0].path, "server.threads");
/// assert_eq!(err.errors[0].line, Some(2));
/// ```
pub fn parse_str(text: &str) -> Result<Config, ConfigErrors> {
    let cfg = deserialize(text)?;
    validate(&cfg).map_err(|errs| errs.locate(text))?;
    Ok(cfg)
}

/// Reads, parses and validates a configuration file.
///
/// Like [`parse_str`], and in addition relative TLS file paths (`listeners[].tls.cert`, `.key`,
/// `.certificates[].cert` and `.key`, `.client_ca`; `upstreams[].tls.ca`, `.client_cert` and
/// `.client_key`; `tracing.ca_file`) are resolved against the directory of the config file and must name existing
/// files; a relative `[access_log].path` is resolved the same way and its directory must exist;
/// the returned [`Config`] holds the resolved paths.
pub fn load_file(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(ConfigError::new(
            "",
            format!("cannot read {}: {e}", path.display()),
        ))
    })?;
    let mut cfg = deserialize(&text)?;
    let mut errors = match validate(&cfg) {
        Ok(()) => ConfigErrors { errors: Vec::new() },
        Err(e) => e,
    };
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    errors.extend(resolve_files(&mut cfg, base));
    if errors.errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors.locate(&text))
    }
}

/// TOML text to typed config: syntax and type errors, with path and line.
fn deserialize(text: &str) -> Result<Config, ConfigErrors> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigErrors::from_toml(text, "", &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ConfigErrors::from_toml(text, &path, e.inner())
    })
}

/// Resolves relative TLS paths against `base` and checks that the files exist; resolves a
/// relative `[access_log].path` and checks that its directory exists.
fn resolve_files(cfg: &mut Config, base: &Path) -> ConfigErrors {
    let mut errors = ConfigErrors { errors: Vec::new() };
    if let Some(log) = cfg.access_log.as_mut().filter(|l| !l.is_stdout()) {
        if !log.path.trim().is_empty() && Path::new(&log.path).is_relative() {
            log.path = base.join(&log.path).to_string_lossy().into_owned();
        }
        let dir = Path::new(&log.path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            errors.errors.push(ConfigError::new(
                "access_log.path",
                format!("directory not found: {}", dir.display()),
            ));
        }
    }
    let mut check = |key: String, value: &mut String| {
        if value.trim().is_empty() {
            return; // reported by validation
        }
        let p = Path::new(value.as_str());
        let resolved: PathBuf = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        };
        if !resolved.is_file() {
            errors.errors.push(ConfigError::new(
                key,
                format!("file not found: {}", resolved.display()),
            ));
        }
        *value = resolved.to_string_lossy().into_owned();
    };
    for (i, l) in cfg.listeners.iter_mut().enumerate() {
        if let Some(tls) = &mut l.tls {
            check(format!("listeners[{i}].tls.cert"), &mut tls.cert);
            check(format!("listeners[{i}].tls.key"), &mut tls.key);
            for (j, c) in tls.certificates.iter_mut().enumerate() {
                check(
                    format!("listeners[{i}].tls.certificates[{j}].cert"),
                    &mut c.cert,
                );
                check(
                    format!("listeners[{i}].tls.certificates[{j}].key"),
                    &mut c.key,
                );
            }
            if let Some(ca) = &mut tls.client_ca {
                check(format!("listeners[{i}].tls.client_ca"), ca);
            }
        }
    }
    for (i, u) in cfg.upstreams.iter_mut().enumerate() {
        if let Some(tls) = &mut u.tls {
            for (name, v) in [
                ("ca", &mut tls.ca),
                ("client_cert", &mut tls.client_cert),
                ("client_key", &mut tls.client_key),
            ] {
                if let Some(v) = v {
                    check(format!("upstreams[{i}].tls.{name}"), v);
                }
            }
        }
    }
    if let Some(ca) = cfg.tracing.as_mut().and_then(|t| t.ca_file.as_mut()) {
        check("tracing.ca_file".to_string(), ca);
    }
    errors
}
