//! Composing an instance's configuration: its local file's local sections, the shared document,
//! then dynamic servers, then overrides. The result is validated as a whole, like a reload.

use std::path::Path;

use switchyard_config::Config;

use crate::state::ConfigInputs;
use crate::{dynamic, overrides};

/// A composed configuration, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Composed {
    /// The configuration.
    pub config: Config,
    /// Dynamic servers and overrides that were ignored, one message each.
    pub problems: Vec<String>,
    /// Notes on the document (local sections in it that were ignored).
    pub notes: Vec<String>,
}

/// Composes `local` (the validated local file, whose relative paths resolve against `base`) with
/// `inputs`. Without a document the shared sections are empty: nothing is routed. Errors name the
/// document's revision, the key path and the line within the document.
///
/// ```
/// use switchyard_cluster::{compose::compose, state::{ConfigInputs, Document}};
/// let local = switchyard_config::parse_str("[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n").unwrap();
/// let mut inputs = ConfigInputs::default();
/// assert!(compose(&local, ".".as_ref(), &inputs).unwrap().config.routes.is_empty());
/// inputs.doc = Some(Document { text: "[[routes]]\nname = \"r\"\nupstream = \"nope\"\n".into(), revision: 7 });
/// let errs = compose(&local, ".".as_ref(), &inputs).unwrap_err();
/// assert!(errs[0].starts_with("shared document revision 7: routes[0].upstream (line 3"), "{}", errs[0]);
/// ```
pub fn compose(
    local: &Config,
    base: &Path,
    inputs: &ConfigInputs,
) -> Result<Composed, Vec<String>> {
    let (text, revision) = inputs
        .doc
        .as_ref()
        .map_or(("", 0), |d| (d.text.as_str(), d.revision));
    let merged = switchyard_config::merge_shared_document(local, text, base).map_err(|errs| {
        errs.errors
            .iter()
            .map(|e| format!("shared document revision {revision}: {e}"))
            .collect::<Vec<_>>()
    })?;
    let mut config = merged.config;
    let mut problems = dynamic::merge(&mut config, &inputs.servers);
    problems.extend(overrides::apply(&mut config, &inputs.overrides));
    // Every key was checked on its own; the whole is checked once more, as a reload would.
    switchyard_config::validate(&config).map_err(|errs| {
        errs.errors
            .iter()
            .map(|e| format!("shared document revision {revision} with dynamic servers: {e}"))
            .collect::<Vec<_>>()
    })?;
    Ok(Composed {
        config,
        problems,
        notes: merged.notes,
    })
}
