//! `switchyard-suite`: the test-suite package at the workspace root.
//!
//! This library is intentionally empty; the tests live in `tests/` (black-box tests that run the
//! real `switchyard` binary against real sockets and in-process origins, with shared helpers in
//! `tests/support/mod.rs`).
