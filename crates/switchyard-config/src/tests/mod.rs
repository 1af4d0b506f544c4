//! Parsing, defaults, validation and error locations, on real TOML text; one file per section,
//! like `model/` and `validate/`.

mod cluster;
mod listeners;
mod observability;
mod parse;
mod peer_compat;
mod resilience;
mod routes;
mod server;
mod upstreams;

use crate::*;

/// 1-based line on which `needle` (which must occur exactly once, and may span lines) starts.
fn line_of(text: &str, needle: &str) -> usize {
    assert_eq!(
        text.matches(needle).count(),
        1,
        "needle {needle:?} must be unique"
    );
    let start = text.find(needle).unwrap_or(0);
    text[..start].matches('\n').count() + 1
}

/// Parses `text`, which must fail, and returns the errors.
fn errors(text: &str) -> Vec<ConfigError> {
    match parse_str(text) {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(e) => e.errors,
    }
}

/// Asserts that `text` fails with an error at `path` located on the line containing `needle`.
#[track_caller]
fn assert_error(text: &str, path: &str, needle: &str) -> ConfigError {
    let errs = errors(text);
    let line = line_of(text, needle);
    match errs.iter().find(|e| e.path == path) {
        Some(e) => {
            assert_eq!(e.line, Some(line), "line of {path}: {e}");
            assert!(e.column.is_some(), "column of {path}: {e}");
            e.clone()
        }
        None => panic!(
            "no error at {path}; got:\n{}",
            ConfigErrors { errors: errs }
        ),
    }
}
