//! Rules of `[upstreams.sticky]`: the cookie's name and attributes.

use super::syntax::{check_dns_name, is_tchar};
use super::Validator;
use crate::model::StickyConfig;

impl Validator {
    /// `p` is the table's path, `upstreams[i].sticky`.
    pub(super) fn sticky(&mut self, p: &str, sticky: &StickyConfig) {
        if sticky.cookie.is_empty() || !sticky.cookie.bytes().all(is_tchar) {
            self.err(
                format!("{p}.cookie"),
                format!("`{}` is not a valid cookie name", sticky.cookie),
            );
        }
        self.non_empty(format!("{p}.key_env"), &sticky.key_env);
        if let Err(msg) = check_cookie_path(&sticky.path) {
            self.err(format!("{p}.path"), msg);
        }
        if !sticky.domain.is_empty() {
            let bare = sticky.domain.strip_prefix('.').unwrap_or(&sticky.domain);
            if check_dns_name(bare).is_err() || bare.ends_with('.') {
                self.err(
                    format!("{p}.domain"),
                    format!(
                        "`{}` is not a domain name (write it like \"example.com\", or \"\" for no Domain attribute)",
                        sticky.domain
                    ),
                );
            }
        }
    }
}

/// A sticky cookie's `path`: starts with `/`, printable ASCII without `;` (RFC 6265 §4.1.1
/// `path-value`, limited to what a header value carries as is).
fn check_cookie_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` must start with `/`"));
    }
    if let Some(c) = path
        .chars()
        .find(|&c| c == ';' || !(' '..='~').contains(&c))
    {
        return Err(format!(
            "`{path}` contains {c:?}; a cookie path is printable ASCII without `;`"
        ));
    }
    Ok(())
}
