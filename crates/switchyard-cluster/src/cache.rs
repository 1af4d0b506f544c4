//! The cold-start cache (`[cluster].cache_path`): the last applied shared document, written
//! atomically (a temporary file in the same directory, then a rename) after each apply, and read
//! at start-up when etcd cannot be reached.
//!
//! The file is the document's TOML text after one comment line naming its revision.

use std::io::Write;
use std::path::Path;

use crate::state::Document;

const HEADER: &str = "# switchyard cluster cache, revision ";

/// Writes `doc` to `path` atomically.
///
/// ```
/// use switchyard_cluster::{cache, state::Document};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("cache.toml");
/// let doc = Document { text: "[variables]\na = \"b\"\n".into(), revision: 42 };
/// cache::write(&path, &doc).unwrap();
/// assert_eq!(cache::read(&path).unwrap(), Some(doc));
/// assert_eq!(cache::read(&dir.path().join("none")).unwrap(), None);
/// ```
pub fn write(path: &Path, doc: &Document) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    write!(tmp, "{HEADER}{}\n{}", doc.revision, doc.text)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Reads the document cached at `path`; `Ok(None)` if there is no file.
pub fn read(path: &Path) -> std::io::Result<Option<Document>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (first, rest) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    let revision = first
        .strip_prefix(HEADER)
        .and_then(|r| r.trim().parse::<i64>().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not a switchyard cluster cache", path.display()),
            )
        })?;
    Ok(Some(Document {
        text: rest.to_string(),
        revision,
    }))
}
