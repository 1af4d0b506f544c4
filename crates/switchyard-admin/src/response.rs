//! What the admin API answers: [`AdminResponse`], a status, headers and a JSON or HTML body,
//! translated to HTTP by the Pingora service in `lib.rs`.

use serde_json::json;

/// An admin response.
///
/// ```
/// let r = switchyard_admin::AdminResponse::json(404, &serde_json::json!({"error": "nope"}));
/// assert_eq!(r.status, 404);
/// assert_eq!(r.content_type, "application/json");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    /// The status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Other headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl AdminResponse {
    /// A JSON response (pretty-printed, newline-terminated).
    ///
    /// ```
    /// let r = switchyard_admin::AdminResponse::json(200, &[1, 2]);
    /// assert!(r.body.ends_with(b"\n"));
    /// ```
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> AdminResponse {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
            format!("{{\"error\": \"serialisation failed: {e}\"}}").into_bytes()
        });
        body.push(b'\n');
        AdminResponse {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    /// A JSON error: `{"error": message}`.
    ///
    /// ```
    /// let r = switchyard_admin::AdminResponse::error(400, "bad");
    /// assert!(String::from_utf8(r.body).unwrap().contains("\"error\": \"bad\""));
    /// ```
    pub fn error(status: u16, message: &str) -> AdminResponse {
        AdminResponse::json(status, &json!({ "error": message }))
    }

    pub(crate) fn html(body: String) -> AdminResponse {
        AdminResponse {
            status: 200,
            content_type: "text/html; charset=utf-8",
            headers: vec![("cache-control", "no-store".to_string())],
            body: body.into_bytes(),
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: String) -> AdminResponse {
        self.headers.push((name, value));
        self
    }
}
