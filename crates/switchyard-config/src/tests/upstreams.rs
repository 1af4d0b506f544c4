//! `[[upstreams]]`: algorithms, TLS, groups and servers, weights and health checks.

use super::*;

#[test]
fn negative_weight_names_third_server_and_line() {
    let text = r#"
[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
    [[upstreams.groups.servers]]
    address = "10.0.0.1"
    [[upstreams.groups.servers]]
    address = "10.0.0.2"
    [[upstreams.groups.servers]]
    address = "10.0.0.3"
    weight = -1
"#;
    let e = assert_error(
        text,
        "upstreams[0].groups[0].servers[2].weight",
        "weight = -1",
    );
    assert_eq!(e.line, Some(12));
    assert_eq!(e.column, Some(14));
    assert!(e.message.contains("0 and 10000"), "{e}");
}

#[test]
fn weight_above_maximum() {
    let text = r#"
[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  weight = 20000
  servers = [{ address = "10.0.0.1" }]
"#;
    assert_error(text, "upstreams[0].groups[0].weight", "weight = 20000");
}

#[test]
fn hash_on_with_wrr() {
    let text = r#"
[[upstreams]]
name = "api"
algorithm = "wrr"
hash_on = "uri"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }]
"#;
    let e = assert_error(text, "upstreams[0].hash_on", "hash_on");
    assert!(e.message.contains("consistent_hash"), "{e}");
}

#[test]
fn threshold_zero() {
    let text = r#"
[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }]
  [upstreams.health.active]
  healthy_threshold = 0
  [upstreams.health.passive]
  unhealthy_threshold = 0
"#;
    assert_error(
        text,
        "upstreams[0].health.active.healthy_threshold",
        "  healthy_threshold = 0",
    );
    assert_error(
        text,
        "upstreams[0].health.passive.unhealthy_threshold",
        "unhealthy_threshold = 0",
    );
}

#[test]
fn duplicate_host_port_after_default_port() {
    let text = r#"
[[upstreams]]
name = "api"
port = 8080
  [[upstreams.groups]]
  name = "blue"
    [[upstreams.groups.servers]]
    address = "10.0.0.1"
  [[upstreams.groups]]
  name = "green"
    [[upstreams.groups.servers]]
    address = "10.0.0.1"
    port = 8080   # same as the default
"#;
    let e = assert_error(
        text,
        "upstreams[0].groups[1].servers[0].address",
        "address = \"10.0.0.1\"\n    port",
    );
    assert_eq!(e.line, Some(12));
    assert!(e.message.contains("10.0.0.1:8080"), "{e}");
}

#[test]
fn duplicate_dns_server() {
    let text = r#"
[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "Backend.internal" }, { address = "backend.internal", port = 80 }]
"#;
    assert_error(
        text,
        "upstreams[0].groups[0].servers[1].address",
        "servers =",
    );
}

#[test]
fn empty_status_range() {
    let text = r#"
[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }]
  [upstreams.health.active]
  status_codes = [200, "400-200"]
"#;
    let e = assert_error(
        text,
        "upstreams[0].health.active.status_codes[1]",
        "400-200",
    );
    assert!(e.message.contains("empty"), "{e}");
}

#[test]
fn upstream_rules() {
    let text = r#"
[[upstreams]]
name = "api"
port = 0
cascade = true
resolve_interval_ms = 0
tls = { client_cert = "c.pem" }
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }, { address = "10.0.0.2:80", port = 80 }, { address = "bad_host-.x", port = 1 }]
  [upstreams.health.active]
  path = "health"
  interval_ms = 0
  [upstreams.health.passive]
  unhealthy_statuses = [500, 600]
  max_ejection_percent = 101
  ejection_ms = 0
"#;
    assert_error(text, "upstreams[0].cascade", "cascade = true");
    assert_error(
        text,
        "upstreams[0].resolve_interval_ms",
        "resolve_interval_ms",
    );
    assert_error(text, "upstreams[0].tls.client_key", "tls =");
    assert_error(text, "upstreams[0].groups[0].servers[0].port", "servers =");
    assert_error(
        text,
        "upstreams[0].groups[0].servers[1].address",
        "servers =",
    );
    assert_error(
        text,
        "upstreams[0].groups[0].servers[2].address",
        "servers =",
    );
    assert_error(text, "upstreams[0].health.active.path", "path = \"health\"");
    assert_error(
        text,
        "upstreams[0].health.active.interval_ms",
        "  interval_ms",
    );
    assert_error(
        text,
        "upstreams[0].health.passive.unhealthy_statuses[1]",
        "600",
    );
    assert_error(
        text,
        "upstreams[0].health.passive.max_ejection_percent",
        "101",
    );
    assert_error(
        text,
        "upstreams[0].health.passive.ejection_ms",
        "ejection_ms",
    );
}
