//! Connecting to etcd from `[cluster]`: endpoints, TLS (a CA for etcd's certificates, a client
//! certificate) and user/password auth whose values come from environment variables — never
//! from a file or from etcd itself.

use std::path::Path;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use switchyard_config::ClusterConfig;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 keep-alive interval and timeout: a dead etcd is noticed within about 4 s.
const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A TLS file could not be read.
    #[error("cluster.{key}: cannot read {path}: {source}")]
    File {
        /// The `[cluster]` key.
        key: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// An environment variable named by `etcd_user_env`/`etcd_password_env` is not set.
    #[error("cluster.{key}: environment variable {var} is not set")]
    Env {
        /// The `[cluster]` key.
        key: &'static str,
        /// The variable.
        var: String,
    },
    /// etcd refused or could not be reached.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// etcd did not answer in time.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
}

fn read(key: &'static str, path: &str, base: &Path) -> Result<Vec<u8>, ConnectError> {
    let p = Path::new(path);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    std::fs::read(&full).map_err(|source| ConnectError::File {
        key,
        path: full.display().to_string(),
        source,
    })
}

fn env(key: &'static str, var: &str) -> Result<String, ConnectError> {
    std::env::var(var).map_err(|_| ConnectError::Env {
        key,
        var: var.to_string(),
    })
}

/// The connection options of `c`; relative TLS paths resolve against `base` (the local file's
/// directory).
pub fn options(c: &ClusterConfig, base: &Path) -> Result<ConnectOptions, ConnectError> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(KEEP_ALIVE, KEEP_ALIVE)
        .with_keep_alive_while_idle(true);
    if let (Some(user), Some(password)) = (&c.etcd_user_env, &c.etcd_password_env) {
        opts = opts.with_user(
            env("etcd_user_env", user)?,
            env("etcd_password_env", password)?,
        );
    }
    if c.etcd_endpoints.iter().any(|e| e.starts_with("https://")) {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &c.etcd_ca {
            tls = tls.ca_certificate(Certificate::from_pem(read("etcd_ca", ca, base)?));
        }
        if let (Some(cert), Some(key)) = (&c.etcd_cert, &c.etcd_key) {
            tls = tls.identity(Identity::from_pem(
                read("etcd_cert", cert, base)?,
                read("etcd_key", key, base)?,
            ));
        }
        opts = opts.with_tls(tls);
    }
    Ok(opts)
}

/// Connects to the endpoints of `c` (an authenticated client when user/password are set).
pub async fn connect(c: &ClusterConfig, base: &Path) -> Result<Client, ConnectError> {
    let opts = options(c, base)?;
    match tokio::time::timeout(
        CONNECT_TIMEOUT * 2,
        Client::connect(&c.etcd_endpoints, Some(opts)),
    )
    .await
    {
        Ok(r) => Ok(r?),
        Err(_) => Err(ConnectError::Timeout(CONNECT_TIMEOUT * 2)),
    }
}
