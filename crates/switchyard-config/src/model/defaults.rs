//! Defaults shared by keys of several tables (serde `default = "..."` functions).

pub(super) fn default_timeout_ms() -> u64 {
    5000
}

pub(super) fn default_connect_timeout_ms() -> u64 {
    1000
}

pub(super) fn default_true() -> bool {
    true
}
