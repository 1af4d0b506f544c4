//! Cross-field validation.

use crate::error::ConfigErrors;
use crate::model::Config;

/// Checks everything serde cannot: names, references, ranges. Errors carry key paths only; the
/// parser adds lines.
pub fn validate(_cfg: &Config) -> Result<(), ConfigErrors> {
    Ok(())
}
