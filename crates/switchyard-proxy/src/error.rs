//! Why a configuration could not be turned into a [`crate::Runtime`] (or a Pingora server).

use crate::dns::DnsError;

/// Error while building a runtime or the services around it: a file that cannot be used, a name
/// that does not resolve, a secret that is not set. The message names the part of the
/// configuration it is about.
///
/// ```
/// use switchyard_proxy::BuildError;
/// let e = BuildError::MissingSecret("SWITCHYARD_CASCADE_KEY".into()).within("upstream api");
/// assert_eq!(
///     e.to_string(),
///     "upstream api: cascading is configured but the key variable SWITCHYARD_CASCADE_KEY is not set"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but cannot be used (no PEM item, a bad certificate, a key that does not
    /// match its certificate).
    #[error("{path}: {reason}")]
    BadFile {
        /// The file (or files).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS settings that rustls or Pingora refused.
    #[error("TLS: {0}")]
    Tls(String),
    /// A value of the configuration that cannot be used as it is.
    #[error("{key}: {reason}")]
    Invalid {
        /// Where it is (e.g. `route api: backend_path`).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A server name that did not resolve (and had no earlier addresses).
    #[error("cannot resolve server {name}: {source}")]
    Resolve {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: DnsError,
    },
    /// Server names could not be resolved at all (no resolver).
    #[error("server names: {0}")]
    Dns(#[source] DnsError),
    /// A secret's environment variable is not set (or empty).
    #[error("cascading is configured but the key variable {0} is not set")]
    MissingSecret(String),
    /// A route names an upstream that does not exist (validation prevents it).
    #[error("unknown upstream {0}")]
    UnknownUpstream(String),
    /// A runtime or thread the gateway needs could not start.
    #[error("cannot start {what}: {source}")]
    Start {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An error about one part of the configuration (`upstream api`, `listener web`).
    #[error("{scope}: {source}")]
    In {
        /// The part.
        scope: String,
        /// The error.
        #[source]
        source: Box<BuildError>,
    },
}

impl BuildError {
    /// This error, about `scope` (`upstream api`, `listener web`).
    pub fn within(self, scope: impl Into<String>) -> BuildError {
        BuildError::In {
            scope: scope.into(),
            source: Box::new(self),
        }
    }
}
