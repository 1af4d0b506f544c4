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

#[test]
fn upstream_protocol_and_grpc_checks() {
    let ok = r#"
[[upstreams]]
name = "grpc"
protocol = "http2"
max_concurrent_streams = 50
  [upstreams.health.active]
  protocol = "grpc"
  grpc_service = "echo.Echo"
  [[upstreams.groups]]
  name = "g"
  servers = [{ address = "127.0.0.1", port = 50051 }]

[[upstreams]]
name = "tls"
protocol = "auto"
scheme = "https"
  [upstreams.health.active]
  protocol = "grpc"
  [[upstreams.groups]]
  name = "g"
  servers = [{ address = "127.0.0.1", port = 50052 }]
"#;
    let cfg = crate::parse_str(ok).unwrap();
    crate::validate(&cfg).unwrap();
    let g = cfg.upstream("grpc").unwrap();
    assert_eq!(g.protocol, crate::UpstreamProtocol::Http2);
    assert_eq!(g.max_concurrent_streams, 50);
    let a = g.health.active.as_ref().unwrap();
    assert_eq!(
        (a.protocol, a.grpc_service()),
        (CheckProtocol::Grpc, "echo.Echo")
    );
    let t = cfg.upstream("tls").unwrap();
    assert!(t.may_use_h2());
    assert_eq!(t.health.active.as_ref().unwrap().grpc_service(), "");
    let plain = crate::parse_str(
        "[[upstreams]]\nname = \"u\"\n[[upstreams.groups]]\nname = \"g\"\n\
         servers = [{ address = \"127.0.0.1\" }]\n",
    )
    .unwrap();
    assert_eq!(plain.upstreams[0].protocol, crate::UpstreamProtocol::Http1);
    assert_eq!(plain.upstreams[0].max_concurrent_streams, 100);

    let bad = r#"
[[upstreams]]
name = "h1"
protocol = "auto"
max_concurrent_streams = 0
  [upstreams.health.active]
  protocol = "grpc"
  path = "/health"
  method = "HEAD"
  status_codes = [200]
  [[upstreams.groups]]
  name = "g"
  servers = [{ address = "127.0.0.1", port = 50051 }]

[[upstreams]]
name = "http"
  [upstreams.health.active]
  grpc_service = "x"
  [[upstreams.groups]]
  name = "g"
  servers = [{ address = "127.0.0.1", port = 8080 }]
"#;
    let e = assert_error(
        bad,
        "upstreams[0].health.active.protocol",
        "protocol = \"grpc\"",
    );
    assert!(e.message.contains("http2"), "{e}");
    assert_error(
        bad,
        "upstreams[0].max_concurrent_streams",
        "max_concurrent_streams",
    );
    assert_error(bad, "upstreams[0].health.active.path", "path = \"/health\"");
    assert_error(
        bad,
        "upstreams[0].health.active.method",
        "method = \"HEAD\"",
    );
    assert_error(
        bad,
        "upstreams[0].health.active.status_codes",
        "status_codes = [200]",
    );
    assert_error(
        bad,
        "upstreams[1].health.active.grpc_service",
        "grpc_service = \"x\"",
    );
    let unknown = "[[upstreams]]\nname = \"u\"\nprotocol = \"http3\"\n";
    assert!(crate::parse_str(unknown).is_err());
}
