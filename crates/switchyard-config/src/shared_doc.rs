//! The fleet's shared document (`<prefix>/config` in etcd, see `docs/fleet.md`): merging it with
//! an instance's local file, and cutting the shared part out of a full file for `switchyard push`.
//!
//! The local file keeps [`ClusterConfig::LOCAL_SECTIONS`] (`[server]`, `[cluster]`, `[metrics]`,
//! `[admin]`, `[limits]`, `listeners`); every other section comes from the document. The merged
//! configuration is validated as a whole, so a document whose routes name a listener the local
//! file lacks is an error of that instance; errors in the document's sections carry the line
//! within the document.

use std::path::Path;

use crate::error::{ConfigError, ConfigErrors};
use crate::model::{ClusterConfig, Config};
use crate::{deserialize, resolve_files, validate};

/// A merged configuration and the notes made on the way (sections of the document that were
/// ignored because they stay local).
#[derive(Debug, Clone, PartialEq)]
pub struct SharedMerge {
    /// The validated configuration to apply.
    pub config: Config,
    /// Things the user should know, e.g. `[server] in the shared document is ignored`.
    pub notes: Vec<String>,
}

/// The local sections present at the top of TOML `text` (empty if the text does not parse).
pub fn local_sections_in(text: &str) -> Vec<&'static str> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    ClusterConfig::LOCAL_SECTIONS
        .iter()
        .copied()
        .filter(|s| table.contains_key(*s))
        .collect()
}

/// Merges the shared document `doc` (TOML text) into `local` (an instance's validated local
/// file): the local sections of `local`, everything else from `doc`. Relative upstream TLS paths
/// in the document resolve against `base` (the local file's directory). Errors name the key path
/// and, for the document's sections, the line within the document.
///
/// ```
/// let local = switchyard_config::parse_str(r#"
/// [[listeners]]
/// name = "web"
/// listen = "127.0.0.1:8080"
/// "#).unwrap();
/// let doc = "[[routes]]\nname = \"all\"\nupstream = \"api\"\nlisteners = [\"web\"]\n\
///            [[upstreams]]\nname = \"api\"\n[[upstreams.groups]]\nname = \"g\"\n\
///            servers = [{ address = \"127.0.0.1\", port = 9 }]\n";
/// let merged = switchyard_config::merge_shared_document(&local, doc, std::path::Path::new(".")).unwrap();
/// assert_eq!(merged.config.routes.len(), 1);
/// assert_eq!(merged.config.listeners[0].name, "web");
///
/// // A listener the local file lacks is this instance's error, with the document's line.
/// let bad = doc.replace("[\"web\"]", "[\"edge\"]");
/// let errs = switchyard_config::merge_shared_document(&local, &bad, std::path::Path::new(".")).unwrap_err();
/// assert_eq!(errs.errors[0].path, "routes[0].listeners[0]");
/// assert_eq!(errs.errors[0].line, Some(4));
/// ```
pub fn merge_shared_document(
    local: &Config,
    doc: &str,
    base: &Path,
) -> Result<SharedMerge, ConfigErrors> {
    let shared = deserialize(doc)?;
    let notes = local_sections_in(doc)
        .into_iter()
        .map(|s| {
            format!("section `{s}` in the shared document is ignored: it stays in each local file")
        })
        .collect();
    let mut config = Config {
        server: local.server.clone(),
        metrics: local.metrics.clone(),
        admin: local.admin.clone(),
        limits: local.limits.clone(),
        listeners: local.listeners.clone(),
        cluster: local.cluster.clone(),
        ..shared
    };
    let mut errors = match validate(&config) {
        Ok(()) => ConfigErrors { errors: Vec::new() },
        Err(e) => e,
    };
    errors.extend(resolve_files(&mut config, base));
    if errors.errors.is_empty() {
        Ok(SharedMerge { config, notes })
    } else {
        Err(errors.locate(doc))
    }
}

/// The shared part of a full configuration file's `text`, for `<prefix>/config`: the text itself
/// when it has no local section (comments kept), else the other sections re-serialised. The
/// second value names the local sections left out.
///
/// ```
/// let (doc, left_out) = switchyard_config::shared_part("[server]\nthreads = 2\n[variables]\na = \"b\"\n").unwrap();
/// assert_eq!(left_out, ["server"]);
/// assert!(!doc.contains("threads"));
/// assert!(doc.contains("[variables]"));
/// ```
pub fn shared_part(text: &str) -> Result<(String, Vec<&'static str>), ConfigErrors> {
    let left_out = local_sections_in(text);
    if left_out.is_empty() {
        return Ok((text.to_string(), left_out));
    }
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigErrors::single(ConfigError::new("", e.message().trim().to_string()))
    })?;
    for s in &left_out {
        table.remove(*s);
    }
    let doc = toml::to_string(&table)
        .map_err(|e| ConfigErrors::single(ConfigError::new("", e.to_string())))?;
    Ok((doc, left_out))
}
