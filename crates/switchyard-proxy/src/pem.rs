//! PEM files (certificate chains and private keys) read with `rustls-pki-types`' PEM parser, for
//! listener and upstream TLS alike. Errors name the file.

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::BuildError;

/// Every certificate in the PEM file at `path`, in order (leaf first for a chain); at least one.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("empty.pem");
/// std::fs::write(&path, "no PEM here").unwrap();
/// let e = switchyard_proxy::pem::certificates(path.to_str().unwrap()).unwrap_err();
/// assert!(e.to_string().contains("no PEM certificate found"), "{e}");
/// ```
pub fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, "certificate", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(BuildError::BadFile {
            path: path.to_string(),
            reason: "no PEM certificate found".to_string(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file at `path`.
pub fn private_key(path: &str) -> Result<PrivateKeyDer<'static>, BuildError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, "private key", e))
}

fn file_error(path: &str, what: &str, e: pem::Error) -> BuildError {
    let path = path.to_string();
    match e {
        pem::Error::Io(source) => BuildError::ReadFile { path, source },
        pem::Error::NoItemsFound => BuildError::BadFile {
            path,
            reason: format!("no PEM {what} found"),
        },
        e => BuildError::BadFile {
            path,
            reason: format!("bad PEM {what}: {e}"),
        },
    }
}
