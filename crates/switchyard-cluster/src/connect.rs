//! Connecting to etcd from `[cluster]`: endpoints, TLS (a CA for etcd's certificates, a client
//! certificate) and user/password auth whose values come from environment variables — never
//! from a file or from etcd itself.

use std::path::Path;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use switchyard_config::ClusterConfig;

use crate::keys::Keys;

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
        // etcd's auth tokens expire (5 min by default): refresh them instead of failing every
        // call made after that on this connection.
        opts = opts
            .with_user(
                env("etcd_user_env", user)?,
                env("etcd_password_env", password)?,
            )
            .with_auto_token_refresh(true);
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

/// Connects to one of the endpoints of `c` (an authenticated client when user/password are
/// set): each is tried in turn, starting after the one used last, and the first that answers a
/// read of `<prefix>/config` is used. One endpoint at a time, so that a dead member of an etcd
/// cluster ends the session (and the next connection goes elsewhere) instead of failing some
/// calls behind a balancer.
pub async fn connect(c: &ClusterConfig, base: &Path) -> Result<Client, ConnectError> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let opts = options(c, base)?;
    let probe = Keys::new(&c.prefix).config();
    let n = c.etcd_endpoints.len().max(1);
    let first = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut last = ConnectError::Timeout(CONNECT_TIMEOUT);
    for i in 0..n {
        let Some(endpoint) = c.etcd_endpoints.get((first + i) % n) else {
            break;
        };
        let attempt = async {
            let mut client = Client::connect([endpoint], Some(opts.clone())).await?;
            client
                .get(probe.as_str(), Some(GetOptions::new().with_count_only()))
                .await?;
            Ok::<Client, etcd_client::Error>(client)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(e)) => last = ConnectError::Etcd(e),
            Err(_) => last = ConnectError::Timeout(CONNECT_TIMEOUT),
        }
    }
    Err(last)
}
