//! `switchyard push` and `switchyard pull`: write the shared part of a configuration file to
//! `<prefix>/config` in a transaction guarded by a revision, and print the current document.

use std::path::Path;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use switchyard_config::ClusterConfig;

use crate::connect::connect;
use crate::keys::Keys;
use crate::transient::Retry;

/// Why a push did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The file is not valid (exit 2); one error per line, with key path and line.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// The document changed since the revision the push was guarded by (exit 3).
    #[error("revision guard failed: expected revision {expected}, <prefix>/config is at {found} (pull, merge and push again, or --force)")]
    Conflict {
        /// The revision the push expected.
        expected: i64,
        /// The revision found.
        found: i64,
    },
    /// etcd could not be reached or refused (exit 1).
    #[error("{0}")]
    Etcd(String),
}

impl PushError {
    /// The process exit code for this error: 2 invalid, 3 guard failed, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            PushError::Invalid(_) => 2,
            PushError::Conflict { .. } => 3,
            PushError::Etcd(_) => 1,
        }
    }
}

/// A push that landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The new `mod_revision` of `<prefix>/config`.
    pub revision: i64,
    /// Local sections of the file that were left out.
    pub left_out: Vec<&'static str>,
}

/// Where to push: endpoints, prefix and the TLS/auth settings (from the file's `[cluster]`
/// when it has one).
#[derive(Debug, Clone)]
pub struct Target {
    /// Connection settings.
    pub cluster: ClusterConfig,
    /// Directory relative TLS paths resolve against.
    pub base: std::path::PathBuf,
}

impl Target {
    /// `endpoints` and `prefix` (each overriding the file's `[cluster]`, if `file_cluster`
    /// is given); `None` if neither names an endpoint or a prefix.
    pub fn new(
        file_cluster: Option<ClusterConfig>,
        endpoints: Vec<String>,
        prefix: Option<String>,
        base: &Path,
    ) -> Result<Target, String> {
        let mut cluster = file_cluster.unwrap_or(ClusterConfig {
            etcd_endpoints: Vec::new(),
            prefix: String::new(),
            cache_path: None,
            etcd_ca: None,
            etcd_cert: None,
            etcd_key: None,
            etcd_user_env: None,
            etcd_password_env: None,
        });
        if !endpoints.is_empty() {
            cluster.etcd_endpoints = endpoints;
        }
        if let Some(p) = prefix {
            cluster.prefix = p;
        }
        if cluster.etcd_endpoints.is_empty() {
            return Err("no etcd endpoint: give --etcd URL (or [cluster] in the file)".into());
        }
        if !cluster.prefix.starts_with('/') || cluster.prefix.len() < 2 {
            return Err("no prefix: give --prefix /name (or [cluster] in the file)".into());
        }
        Ok(Target {
            cluster,
            base: base.to_path_buf(),
        })
    }
}

/// Validates `file` as `switchyard check` does and writes its shared part to
/// `<prefix>/config`, guarded by `expect` (or, without it, the revision read just before)
/// unless `force`.
pub async fn push(
    file: &Path,
    target: &Target,
    force: bool,
    expect: Option<i64>,
) -> Result<Pushed, PushError> {
    switchyard_config::load_file(file)
        .map_err(|errs| PushError::Invalid(errs.errors.iter().map(|e| e.to_string()).collect()))?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| PushError::Invalid(vec![format!("cannot read {}: {e}", file.display())]))?;
    let (doc, left_out) = switchyard_config::shared_part(&text)
        .map_err(|errs| PushError::Invalid(errs.errors.iter().map(|e| e.to_string()).collect()))?;
    let etcd = |e: etcd_client::Error| PushError::Etcd(e.to_string());
    let mut client = connect(&target.cluster, &target.base)
        .await
        .map_err(|e| PushError::Etcd(e.to_string()))?;
    let key = Keys::new(&target.cluster.prefix).config();
    // While a member is lost the others elect a leader and refuse requests for a moment:
    // those refusals are waited out (`transient`), with the guard read once.
    let mut retry = Retry::default();
    let expected = match expect {
        Some(revision) => revision,
        None => loop {
            match current(&mut client, &key).await {
                Ok(found) => break found.map_or(0, |(_, revision)| revision),
                Err(e) => retry.wait_or(e).await.map_err(etcd)?,
            }
        },
    };
    // A transaction refused without an answer may still have been applied: before sending it
    // again, a key that already holds this document is the push landed.
    let mut may_have_landed = false;
    loop {
        if may_have_landed {
            match current(&mut client, &key).await {
                Ok(Some((value, revision))) if value == doc => {
                    return Ok(Pushed { revision, left_out });
                }
                Ok(_) => {}
                Err(e) => {
                    retry.wait_or(e).await.map_err(etcd)?;
                    continue;
                }
            }
        }
        let put = TxnOp::put(key.as_str(), doc.as_str(), None);
        let txn = if force {
            Txn::new().and_then([put])
        } else {
            Txn::new()
                .when([Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    expected,
                )])
                .and_then([put])
        };
        let resp = match client.txn(txn).await {
            Ok(resp) => resp,
            Err(e) => {
                may_have_landed = true;
                retry.wait_or(e).await.map_err(etcd)?;
                continue;
            }
        };
        if !resp.succeeded() {
            let now = loop {
                match current(&mut client, &key).await {
                    Ok(found) => break found.map_or(0, |(_, revision)| revision),
                    Err(e) => retry.wait_or(e).await.map_err(etcd)?,
                }
            };
            return Err(PushError::Conflict {
                expected,
                found: now,
            });
        }
        let revision = resp.header().map_or(0, |h| h.revision());
        return Ok(Pushed { revision, left_out });
    }
}

/// The document stored at `key` and its `mod_revision`, if there is one.
async fn current(
    client: &mut etcd_client::Client,
    key: &str,
) -> Result<Option<(String, i64)>, etcd_client::Error> {
    let resp = client.get(key, None).await?;
    Ok(resp.kvs().first().map(|kv| {
        (
            String::from_utf8_lossy(kv.value()).into_owned(),
            kv.mod_revision(),
        )
    }))
}

/// The current document and its revision; `None` if there is none.
pub async fn pull(target: &Target) -> Result<Option<(String, i64)>, String> {
    let mut client = connect(&target.cluster, &target.base)
        .await
        .map_err(|e| e.to_string())?;
    let key = Keys::new(&target.cluster.prefix).config();
    let mut retry = Retry::default();
    loop {
        match current(&mut client, &key).await {
            Ok(found) => return Ok(found),
            Err(e) => retry.wait_or(e).await.map_err(|e| e.to_string())?,
        }
    }
}
