//! Defaults and types of the resilience keys (DESIGN "Resilience"): per-server concurrency
//! limits and the upstream queue, retry budgets and backoff. The keys themselves live on the tables they configure
//! (`[[upstreams]]`, `[[upstreams.groups.servers]]`), whose fields refuse unknown keys.

/// `queue_timeout_ms` default: HAProxy's `timeout queue` is commonly set to a second or so.
pub(super) fn default_queue_timeout_ms() -> u64 {
    1000
}

/// `retry_budget_percent` default (Envoy's `budget_percent` default).
pub(super) fn default_retry_budget_percent() -> u32 {
    20
}

/// `retry_budget_min` default (Envoy's `min_retry_concurrency` default).
pub(super) fn default_retry_budget_min() -> u32 {
    3
}
