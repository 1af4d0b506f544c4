//! The `backend_path` rewrite template: `#var#` from `[variables]`, `{param}` from the route's
//! `path`.

use std::collections::BTreeMap;

/// Checks a `backend_path` template; returns every problem found.
pub(super) fn check_backend_path(
    bp: &str,
    variables: &BTreeMap<String, String>,
    captures: &[String],
    has_path: bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    let mut expanded = String::new();
    let mut rest = bp;
    while let Some(pos) = rest.find(['#', '{', '}']) {
        expanded.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix('#') {
            let Some(end) = after.find('#') else {
                errors.push(format!(
                    "unmatched `#` in `{bp}`; variables are written `#name#`"
                ));
                return errors;
            };
            let name = &after[..end];
            match variables.get(name) {
                Some(v) => expanded.push_str(v),
                None if name.is_empty() => errors.push("empty variable `##`".to_string()),
                None => errors.push(format!(
                    "unknown variable `#{name}#`; define it in [variables]{}",
                    if variables.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (defined: {})",
                            variables.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    }
                )),
            }
            rest = &after[end + 1..];
        } else if let Some(after) = tail.strip_prefix('{') {
            let Some(end) = after.find('}') else {
                errors.push(format!("unmatched `{{` in `{bp}`"));
                return errors;
            };
            let name = &after[..end];
            if !captures.iter().any(|c| c == name) {
                errors.push(if has_path {
                    format!("`{{{name}}}` is not captured by the route's `path`")
                } else {
                    format!(
                        "`{{{name}}}` is not captured: only a route `path` (not `path_prefix`) captures parameters"
                    )
                });
            }
            expanded.push('x');
            rest = &after[end + 1..];
        } else {
            errors.push(format!("unmatched `}}` in `{bp}`"));
            return errors;
        }
    }
    expanded.push_str(rest);
    if errors.is_empty() && !expanded.starts_with('/') {
        errors.push(format!(
            "must start with `/` (after substituting variables): `{bp}`"
        ));
    }
    errors
}
