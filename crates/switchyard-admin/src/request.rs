//! What the admin API is asked: [`AdminRequest`], the transport-independent view of one request
//! (the Pingora service in `lib.rs` fills it in), and the helpers that read its path and query.

/// The largest request body the admin API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// One admin request, as read from the connection.
///
/// ```
/// let req = switchyard_admin::AdminRequest::new("GET", "/api/upstreams");
/// assert_eq!(req.method, "GET");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AdminRequest<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The `Authorization` header's value.
    pub authorization: Option<&'a [u8]>,
    /// The `Host` header's value (or the target's authority); `None` if there is none.
    pub host: Option<&'a [u8]>,
    /// The `Origin` header's value (several `Origin` fields are passed as `null`).
    pub origin: Option<&'a [u8]>,
    /// The `Content-Type` header's value.
    pub content_type: Option<&'a [u8]>,
    /// The whole body.
    pub body: &'a [u8],
}

impl<'a> AdminRequest<'a> {
    /// A request without query, credentials, `Host`, `Origin`, content type or body.
    ///
    /// ```
    /// let req = switchyard_admin::AdminRequest::new("POST", "/api/reload").bearer(b"Bearer t");
    /// assert!(req.authorization.is_some() && req.body.is_empty());
    /// ```
    pub fn new(method: &'a str, path: &'a str) -> Self {
        AdminRequest {
            method,
            path,
            query: None,
            authorization: None,
            host: None,
            origin: None,
            content_type: None,
            body: &[],
        }
    }

    /// With a `Host` header value.
    ///
    /// ```
    /// let req = switchyard_admin::AdminRequest::new("GET", "/status").host(b"127.0.0.1:9000");
    /// assert_eq!(req.host, Some(&b"127.0.0.1:9000"[..]));
    /// ```
    pub fn host(mut self, host: &'a [u8]) -> Self {
        self.host = Some(host);
        self
    }

    /// With an `Origin` header value.
    ///
    /// ```
    /// let req = switchyard_admin::AdminRequest::new("GET", "/status").origin(b"null");
    /// assert_eq!(req.origin, Some(&b"null"[..]));
    /// ```
    pub fn origin(mut self, origin: &'a [u8]) -> Self {
        self.origin = Some(origin);
        self
    }

    /// With a `Content-Type` header value.
    ///
    /// ```
    /// let req = switchyard_admin::AdminRequest::new("PUT", "/x").content_type(b"application/json");
    /// assert!(req.content_type.is_some());
    /// ```
    pub fn content_type(mut self, content_type: &'a [u8]) -> Self {
        self.content_type = Some(content_type);
        self
    }

    /// With an `Authorization` header value (e.g. `b"Bearer <token>"`).
    ///
    /// ```
    /// let req = switchyard_admin::AdminRequest::new("GET", "/status").bearer(b"Bearer t");
    /// assert_eq!(req.authorization, Some(&b"Bearer t"[..]));
    /// ```
    pub fn bearer(mut self, authorization: &'a [u8]) -> Self {
        self.authorization = Some(authorization);
        self
    }

    /// With a body.
    ///
    /// ```
    /// let req = switchyard_admin::AdminRequest::new("PUT", "/x").body(br#"{"weight":1}"#);
    /// assert_eq!(req.body.len(), 12);
    /// ```
    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }
}

/// Decodes `%XX` escapes (two hex digits; anything else stays as it is) and replaces invalid
/// UTF-8 with U+FFFD.
pub(crate) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The value of `name` in a query string (undecoded), read as the proxy reads `hash_on` query
/// keys.
pub(crate) fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    switchyard_proxy::request_key::query_value(query?, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("g%2F127.0.0.1%3A80"), "g/127.0.0.1:80");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a%41"), "aA");
        assert_eq!(percent_decode("%ff%41"), "\u{FFFD}A");
        assert_eq!(percent_decode("%c3%a9"), "é");
        // A sign is not a hex digit (the hand-written decoder's `from_str_radix` took `%+1`).
        assert_eq!(percent_decode("%+1"), "%+1");
        assert_eq!(query_param(Some("a=1&refresh=3"), "refresh"), Some("3"));
        assert_eq!(query_param(None, "refresh"), None);
    }
}
