//! [`FleetState`]: this instance's copy of the fleet's keys, kept current by the watch. Values
//! are kept as etcd holds them (text); they are parsed when a configuration is composed, so a
//! bad key is reported every time it matters and never stops the others from applying.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keys::KeyKind;

/// The shared document: its text and the `mod_revision` of `<prefix>/config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The TOML text.
    pub text: String,
    /// Its `mod_revision`.
    pub revision: i64,
}

/// A member's record at `<prefix>/members/<instance_id>` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// `[server].instance_id`.
    pub instance_id: String,
    /// The Switchyard version it runs.
    pub version: String,
    /// The revision of `<prefix>/config` it applied last (0 = none).
    pub applied_revision: i64,
    /// Its last apply error, if any.
    pub last_error: Option<String>,
    /// Unix time (seconds) it started.
    pub started_at: u64,
}

/// The parts of the fleet's keys that make up a configuration: the document, dynamic servers
/// and overrides. Two equal inputs compose the same configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigInputs {
    /// `<prefix>/config`, if present.
    pub doc: Option<Document>,
    /// Dynamic servers: (upstream, group, host:port) → JSON text.
    pub servers: BTreeMap<(String, String, String), String>,
    /// Overrides: (upstream, server) → JSON text.
    pub overrides: BTreeMap<(String, String), String>,
}

/// Everything this instance knows of the fleet's keys.
#[derive(Debug, Clone, Default)]
pub struct FleetState {
    /// What configurations are composed from.
    pub inputs: ConfigInputs,
    /// Live members by instance id (an unreadable record is kept as `None`).
    pub members: BTreeMap<String, Option<MemberRecord>>,
}

impl FleetState {
    /// Records a put of `value` at a key of kind `kind` with `mod_revision`; true if the
    /// configuration's inputs changed.
    pub fn put(&mut self, kind: KeyKind, value: &[u8], mod_revision: i64) -> bool {
        let text = String::from_utf8_lossy(value).into_owned();
        match kind {
            KeyKind::Config => {
                self.inputs.doc = Some(Document {
                    text,
                    revision: mod_revision,
                });
                true
            }
            KeyKind::Member(id) => {
                self.members.insert(id, serde_json::from_str(&text).ok());
                false
            }
            KeyKind::Override { upstream, server } => {
                self.inputs.overrides.insert((upstream, server), text);
                true
            }
            KeyKind::Server {
                upstream,
                group,
                host_port,
            } => {
                self.inputs
                    .servers
                    .insert((upstream, group, host_port), text);
                true
            }
            KeyKind::Other => false,
        }
    }

    /// Records the deletion (or lease expiry) of a key of kind `kind`; true if the
    /// configuration's inputs changed.
    pub fn delete(&mut self, kind: KeyKind) -> bool {
        match kind {
            KeyKind::Config => self.inputs.doc.take().is_some(),
            KeyKind::Member(id) => {
                self.members.remove(&id);
                false
            }
            KeyKind::Override { upstream, server } => {
                self.inputs.overrides.remove(&(upstream, server)).is_some()
            }
            KeyKind::Server {
                upstream,
                group,
                host_port,
            } => self
                .inputs
                .servers
                .remove(&(upstream, group, host_port))
                .is_some(),
            KeyKind::Other => false,
        }
    }

    /// The latest revision of the shared document (0 = none).
    pub fn latest_revision(&self) -> i64 {
        self.inputs.doc.as_ref().map_or(0, |d| d.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_do_not_change_the_configuration() {
        let mut s = FleetState::default();
        assert!(!s.put(KeyKind::Member("a".into()), b"{}", 3));
        assert_eq!(s.members.get("a"), Some(&None));
        assert!(s.put(KeyKind::Config, b"x", 4));
        assert_eq!(s.latest_revision(), 4);
        assert!(s.delete(KeyKind::Config));
        assert!(!s.delete(KeyKind::Config));
        assert_eq!(s.latest_revision(), 0);
    }
}
