//! Switchyard's configuration: the TOML schema, defaults and validation.
//!
//! This crate knows nothing of Pingora. [`parse_str`] turns TOML text into a validated [`Config`];
//! every error names the key path (`upstreams[1].groups[0].servers[2].weight`) and, when the
//! config came from text, the line and column.

mod error;
mod model;
mod validate;

pub use error::{ConfigError, ConfigErrors};
pub use model::*;
pub use validate::validate;

/// Parses and validates a configuration from TOML text.
///
/// ```
/// let err = switchyard_config::parse_str("[server]\nthreads = \"two\"\n").unwrap_err();
/// assert_eq!(err.errors[0].path, "server.threads");
/// assert_eq!(err.errors[0].line, Some(2));
/// ```
pub fn parse_str(text: &str) -> Result<Config, ConfigErrors> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigErrors::from_toml(text, "", &e))?;
    let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ConfigErrors::from_toml(text, &path, e.inner())
    })?;
    validate(&cfg).map_err(|errs| errs.locate(text))?;
    Ok(cfg)
}

/// Reads, parses and validates a configuration file.
pub fn load_file(path: impl AsRef<std::path::Path>) -> Result<Config, ConfigErrors> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(ConfigError::new(
            "",
            format!("cannot read {}: {e}", path.display()),
        ))
    })?;
    parse_str(&text)
}
