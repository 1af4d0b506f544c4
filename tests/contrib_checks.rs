//! The files under `contrib/` are checked against the real binary:
//!
//! - every PromQL expression of the Grafana dashboard (`contrib/grafana/switchyard.json`: panel
//!   targets, template variables, annotations) and of the alert rules
//!   (`contrib/prometheus/switchyard-rules.yml`) names only series that a live `/metrics` of the
//!   gateway exports after real traffic (`tests/contrib/live.rs`); a dashboard naming a series
//!   that does not exist fails the check (shown by doctoring the real dashboard);
//! - the dashboard has the panels the issue asks for; the rules are well-formed and pass
//!   `promtool check rules` (Debian's `prometheus` package; `scripts/ensure-ops-tools.sh`).

mod contrib;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use contrib::exposition::{unknown_names, Exported};
use contrib::promql::metric_names;
use serde_json::Value;

fn contrib_file(rel: &str) -> PathBuf {
    support::workspace_root().join("contrib").join(rel)
}

/// One scrape of the live gateway, shared by the tests of this file.
fn live_scrape() -> &'static str {
    static SCRAPE: OnceLock<String> = OnceLock::new();
    SCRAPE.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(contrib::live::scrape_after_traffic())
    })
}

/// Every PromQL expression of a Grafana dashboard: `expr` of targets and annotations anywhere,
/// and the query of each `query` template variable.
fn dashboard_exprs(dash: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    match (k.as_str(), child) {
                        ("expr", Value::String(s)) => out.push(s.clone()),
                        _ => walk(child, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dash, &mut out);
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] == "query" {
            let q = &var["query"];
            let text = q.as_str().or_else(|| q["query"].as_str()).unwrap();
            out.push(text.to_string());
        }
    }
    out
}

fn load_dashboard() -> Value {
    let path = contrib_file("grafana/switchyard.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The rules file's `(alert name, expr)` pairs, checking the structure Prometheus expects.
fn load_rules() -> Vec<(String, String)> {
    let path = contrib_file("prometheus/switchyard-rules.yml");
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut rules = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups: a list") {
        assert!(group["name"].as_str().is_some(), "a group without a name");
        for rule in group["rules"].as_sequence().expect("rules: a list") {
            let name = rule["alert"].as_str().expect("alert: a name").to_string();
            let expr = rule["expr"].as_str().expect("expr: a string").to_string();
            assert!(
                rule["labels"]["severity"].as_str().is_some(),
                "{name}: labels.severity"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{name}: annotations.summary"
            );
            rules.push((name, expr));
        }
    }
    rules
}

#[test]
fn promql_names_skip_functions_keywords_labels_and_clauses() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le, route) (rate(req_seconds_bucket{route=~"a|b", x="}"}[$__rate_interval])))"#
        ),
        ["req_seconds_bucket"]
    );
    assert_eq!(
        metric_names(
            "sum(rate(a_total{code=~\"5..\"}[5m])) / sum without (code) (rate(a_total[5m] offset 1h)) > 0.01"
        ),
        ["a_total"]
    );
    assert_eq!(
        metric_names("changes(up_s[15m]) * on (instance, job) group_left (version) info_x > 2"),
        ["up_s", "info_x"]
    );
    assert_eq!(
        metric_names("max by (upstream) (healthy) == 0 and bool count(other) or vector(1)"),
        ["healthy", "other"]
    );
    assert_eq!(
        metric_names("label_values(build_info{job=~\"$job\"}, instance)"),
        ["build_info"]
    );
    assert_eq!(
        metric_names("time() - max(start_s{instance=~\"${instance}\"}) + 1e3"),
        ["start_s"]
    );
}

#[test]
fn histogram_suffixes_resolve_to_the_histogram_family() {
    let exported = Exported::parse(
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n\
         # TYPE c_total counter\nc_total 3\n# TYPE g gauge\n",
    );
    assert_eq!(exported.missing("h_bucket"), None);
    assert_eq!(exported.missing("h_count"), None);
    assert!(exported.missing("h").is_some(), "a histogram's bare name");
    assert_eq!(exported.missing("c_total"), None);
    assert!(
        exported.missing("c_total_bucket").is_some(),
        "no such histogram"
    );
    assert!(exported.missing("g").is_some(), "declared without samples");
    assert!(exported.missing("nope").is_some());
}

#[test]
fn dashboard_names_only_series_the_binary_exports() {
    let dash = load_dashboard();
    let exprs = dashboard_exprs(&dash);
    assert!(exprs.len() >= 25, "expressions found: {}", exprs.len());
    let exported = Exported::parse(live_scrape());
    let problems = unknown_names(&exprs, &exported);
    assert!(
        problems.is_empty(),
        "the dashboard names series the binary does not export:\n{problems:#?}"
    );
    // The panels the issue asks for: rate, errors by code, latency quantiles by route, per-server
    // health / in-flight / EWMA, retries, ejections, process CPU and memory.
    let all = exprs.join("\n");
    for needle in [
        "switchyard_requests_total",
        "sum by (code)",
        "histogram_quantile(0.99, sum by (le, route) (rate(switchyard_request_duration_seconds_bucket",
        "switchyard_backend_healthy",
        "switchyard_backend_in_flight",
        "switchyard_backend_ewma_seconds",
        "switchyard_retries_total",
        "switchyard_backend_ejections_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(all.contains(needle), "no dashboard expression has {needle}");
    }
}

#[test]
fn a_dashboard_naming_a_missing_series_fails_the_check() {
    let mut dash = load_dashboard();
    let panels = dash["panels"].as_array_mut().unwrap();
    let mut typo = panels[1].clone();
    typo["targets"][0]["expr"] = Value::from("sum(rate(switchyard_request_totl[5m]))");
    let mut bare = panels[1].clone();
    bare["targets"][0]["expr"] =
        Value::from("histogram_quantile(0.9, rate(switchyard_request_duration_seconds[5m]))");
    panels.push(typo);
    panels.push(bare);
    let exported = Exported::parse(live_scrape());
    let problems = unknown_names(&dashboard_exprs(&dash), &exported);
    let reasons: Vec<&str> = problems.iter().map(|(_, why)| why.as_str()).collect();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(reasons[0].starts_with("switchyard_request_totl: not exported"));
    assert!(reasons[1].contains("switchyard_request_duration_seconds is a histogram"));
}

#[test]
fn alert_rules_name_only_series_the_binary_exports() {
    let rules = load_rules();
    let names: Vec<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    // The alerts docs/operations.md lists, plus the process ones.
    for want in [
        "SwitchyardServerDown",
        "SwitchyardUpstreamAllServersDown",
        "SwitchyardHigh5xxRatio",
        "SwitchyardEjections",
        "SwitchyardReloadRejected",
        "SwitchyardNoServer",
        "SwitchyardDnsFailing",
        "SwitchyardSlowRoute",
        "SwitchyardHighRetryRatio",
    ] {
        assert!(names.contains(&want), "no alert {want} in {names:?}");
    }
    let exprs: Vec<String> = rules.into_iter().map(|(_, e)| e).collect();
    let exported = Exported::parse(live_scrape());
    let problems = unknown_names(&exprs, &exported);
    assert!(
        problems.is_empty(),
        "the rules name series the binary does not export:\n{problems:#?}"
    );
}

#[test]
fn alert_rules_pass_promtool() {
    let path = contrib_file("prometheus/switchyard-rules.yml");
    let out = match Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: promtool not found ({e}); scripts/ensure-ops-tools.sh installs it");
            return;
        }
        Err(e) => panic!("promtool is needed in CI (scripts/ensure-ops-tools.sh): {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules:\n{text}");
    let count = load_rules().len();
    assert!(
        text.contains(&format!("SUCCESS: {count} rules found")),
        "promtool saw every rule ({count}):\n{text}"
    );
}
