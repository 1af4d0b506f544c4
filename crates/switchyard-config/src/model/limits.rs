//! `[limits]`: protective limits on what clients may send.

use serde::{Deserialize, Serialize};

use super::listener::ListenerProtocol;

/// `[limits]`: protective limits on what clients may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `header_timeout_ms`: a client must send its whole request head within this. Default 10000.
    pub header_timeout_ms: u64,
    /// `retry_buffer_bytes`: request bodies up to this size are kept so that the request
    /// can be retried; larger ones are streamed and never retried after sending. Default 65536.
    pub retry_buffer_bytes: usize,
    /// `max_connections`: concurrent downstream connections per listener; 0 = unlimited. Default 0.
    pub max_connections: usize,
    /// `read_buffer_bytes`: the read buffer each client connection of an `http` or `https`
    /// listener keeps for its whole life; 0 = none. Default (unset): 4096 for `http`, 65536 for
    /// `https` (TLS reads records of up to 16 KiB in small pieces, which a large buffer batches).
    pub read_buffer_bytes: Option<usize>,
    /// `body_timeout_ms`: the longest wait between two reads of a request body (NGINX
    /// `client_body_timeout`); exceeded: `408`, or the connection closed once a response has
    /// started, and the upstream request aborted. Default 10000.
    pub body_timeout_ms: u64,
    /// `encoded_slashes`: what an encoded `/` or `\` (`%2F`, `%5C`) in a request path gets.
    /// Default `reject` (`400`).
    pub encoded_slashes: EncodedSlashes,
}

/// `[limits] encoded_slashes`: the fate of `%2F` and `%5C` in request paths.
///
/// ```
/// let cfg = switchyard_config::parse_str("[limits]\nencoded_slashes = \"keep\"\n").unwrap();
/// assert_eq!(cfg.limits.encoded_slashes, switchyard_config::EncodedSlashes::Keep);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodedSlashes {
    /// `400` (Envoy's `path_with_escaped_slashes_action = REJECT_REQUEST`).
    #[default]
    Reject,
    /// Kept encoded (upper-cased): part of its segment, not a separator for routing (NGINX's
    /// behaviour; Envoy's `KEEP_UNCHANGED`). A segment whose pieces between encoded slashes are
    /// `.` or `..` is still `400`.
    Keep,
}

/// Default `read_buffer_bytes` of `http` listeners.
pub const DEFAULT_HTTP_READ_BUFFER_BYTES: usize = 4096;
/// Default `read_buffer_bytes` of `https` listeners.
pub const DEFAULT_HTTPS_READ_BUFFER_BYTES: usize = 65_536;
/// Largest `read_buffer_bytes`.
pub const MAX_READ_BUFFER_BYTES: usize = 1 << 20;

impl LimitsConfig {
    /// The read buffer size for client connections of a listener speaking `protocol`.
    ///
    /// ```
    /// use switchyard_config::{LimitsConfig, ListenerProtocol};
    /// let mut limits = LimitsConfig::default();
    /// assert_eq!(limits.read_buffer_for(ListenerProtocol::Http), 4096);
    /// assert_eq!(limits.read_buffer_for(ListenerProtocol::Https), 65_536);
    /// limits.read_buffer_bytes = Some(0);
    /// assert_eq!(limits.read_buffer_for(ListenerProtocol::Https), 0);
    /// ```
    pub fn read_buffer_for(&self, protocol: ListenerProtocol) -> usize {
        self.read_buffer_bytes.unwrap_or(match protocol {
            ListenerProtocol::Https => DEFAULT_HTTPS_READ_BUFFER_BYTES,
            _ => DEFAULT_HTTP_READ_BUFFER_BYTES,
        })
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            retry_buffer_bytes: 64 * 1024,
            max_connections: 0,
            read_buffer_bytes: None,
            body_timeout_ms: 10_000,
            encoded_slashes: EncodedSlashes::Reject,
        }
    }
}
