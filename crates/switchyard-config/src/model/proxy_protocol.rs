//! The PROXY protocol versions a listener, an upstream or a health check may send.

use serde::{Deserialize, Serialize};

/// PROXY protocol version sent to backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No PROXY header.
    #[default]
    Off,
    /// Text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// Binary header.
    V2,
}
