//! Parsing, defaults, validation and error locations, on real TOML text.

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

const FULL: &str = r#"
[server]
instance_id = "gw-1"
threads = 2
grace_period_s = 10
work_stealing = true
pid_file = "/run/switchyard.pid"
upgrade_sock = "/run/switchyard_upgrade.sock"

[variables]
stage = "v1"

[metrics]
listen = "127.0.0.1:9100"

[admin]
listen = "127.0.0.1:9000"
token_env = "MY_ADMIN_TOKEN"

[limits]
header_timeout_ms = 5000
retry_buffer_bytes = 1024
max_connections = 1000

[[listeners]]
name = "web"
protocol = "http"
listen = "0.0.0.0:8080"
allow = ["10.0.0.0/8", "192.168.1.7", "::1/128"]
deny = ["10.1.0.0/16"]
accept_proxy_protocol = true

[[listeners]]
name = "secure"
protocol = "https"
listen = "0.0.0.0:8443"
tls = { cert = "certs/server.pem", key = "certs/server.key" }

[[listeners]]
name = "db"
protocol = "tcp"
listen = "127.0.0.1:5432"
upstream = "db"
proxy_protocol = "v1"
accept_proxy_protocol = false
connect_timeout_ms = 2000
idle_timeout_ms = 60000

[[routes]]
name = "users"
listeners = ["web", "secure"]
hosts = ["api.example.com", "*.example.org"]
path = "/users/{userId}"
methods = ["GET", "POST"]
upstream = "api"
backend_path = "/#stage#/users/{userId}"
host_header = "users.internal"
timeout_ms = 3000
connect_timeout_ms = 500
retries = 1
require_cascade = true

[[routes]]
name = "static"
path_prefix = "/static"
upstream = "api"
retries = -1

[[upstreams]]
name = "api"
algorithm = "consistent_hash"
hash_on = "header:X-User"
port = 8081
scheme = "https"
tls = { verify = false, sni = "api.internal", ca = "ca.pem", client_cert = "c.pem", client_key = "k.pem" }
when_all_down = "all"
cascade = true
proxy_protocol = "v2"
resolve_interval_ms = 10000

  [upstreams.sticky]
  cookie = "SY"
  ttl_s = 3600
  key_env = "MY_STICKY_KEY"

  [[upstreams.groups]]
  name = "blue"
  weight = 100

    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = 0
    weight = 10
    standby = false
    enabled = true

    [[upstreams.groups.servers]]
    address = "backend.internal"
    port = 9000

  [[upstreams.groups]]
  name = "green"

    [[upstreams.groups.servers]]
    address = "::1"
    standby = true

    [[upstreams.groups.servers]]
    address = "127.0.0.2"
    enabled = false

  [upstreams.health.active]
  protocol = "https"
  path = "/health"
  method = "HEAD"
  port = 9999
  host = "health.internal"
  healthy_threshold = 2
  unhealthy_threshold = 4
  timeout_ms = 1000
  interval_ms = 2000
  status_codes = [200, "300-399"]

  [upstreams.health.passive]
  unhealthy_statuses = [500, 503]
  unhealthy_threshold = 5
  ejection_ms = 10000
  max_ejection_percent = 30

[[upstreams]]
name = "db"
algorithm = "least_conn"
port = 5432
  [[upstreams.groups]]
  name = "main"
  servers = [{ address = "10.0.0.5" }, { address = "10.0.0.6" }]

[cascade]
key_env = "MY_CASCADE_KEY"
allowed_instances = ["gw-0", "gw-2"]
"#;

#[test]
fn full_config_parses_with_every_key() {
    let cfg = match parse_str(FULL) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(cfg.server.instance_id, "gw-1");
    assert_eq!(cfg.server.threads, 2);
    assert!(cfg.server.work_stealing);
    assert_eq!(cfg.variables["stage"], "v1");
    assert_eq!(cfg.limits.max_connections, 1000);
    assert_eq!(cfg.listeners.len(), 3);
    assert_eq!(cfg.listeners[1].protocol, ListenerProtocol::Https);
    assert_eq!(cfg.listeners[2].proxy_protocol, ProxyProtocol::V1);
    assert!(cfg.listeners[0].deny[0].contains("10.1.2.3".parse().unwrap()));
    assert!(!cfg.listeners[0].allow[0].contains("11.0.0.1".parse().unwrap()));
    let api = cfg.upstream("api").unwrap();
    assert_eq!(api.algorithm, Algorithm::ConsistentHash);
    assert_eq!(api.hash_on, Some(HashOn::Header("X-User".into())));
    assert_eq!(
        api.health.active.as_ref().unwrap().method,
        CheckMethod::Head
    );
    let status = &api.health.active.as_ref().unwrap().status_codes;
    assert!(status[1].contains(302) && !status[1].contains(200));
    assert_eq!(api.enabled_server_count(), 3);
    let servers: Vec<(String, u32)> = api
        .servers()
        .map(|(g, s, port, w)| (format!("{}/{}", g.name, s.host_port(port)), w))
        .collect();
    assert_eq!(
        servers,
        [
            ("blue/127.0.0.1:8081".to_string(), 10),
            ("blue/backend.internal:9000".to_string(), 100),
            ("green/[::1]:8081".to_string(), 1),
            ("green/127.0.0.2:8081".to_string(), 1),
        ]
    );
    assert_eq!(cfg.routes[0].path_captures(), ["userId"]);
    assert_eq!(cfg.routes[1].effective_path_prefix(), Some("/static"));
    let names: Vec<&str> = cfg
        .route_listeners(&cfg.routes[1])
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(names, ["web", "secure"]);

    let s = summary(&cfg);
    for needle in [
        "gw-1",
        "secure",
        "0.0.0.0:8443",
        "/users/{userId}",
        "-> api",
        "consistent_hash on header:X-User",
        "green/[::1]:8081",
        "standby",
        "disabled",
    ] {
        assert!(s.contains(needle), "summary lacks {needle}:\n{s}");
    }
}

#[test]
fn defaults_are_applied() {
    let cfg = parse_str(
        r#"
[admin]

[[listeners]]
name = "web"
listen = "127.0.0.1:8080"

[[routes]]
name = "all"
upstream = "api"

[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
    [[upstreams.groups.servers]]
    address = "10.0.0.1"
  [upstreams.health.active]
  [upstreams.health.passive]
  [upstreams.sticky]
"#,
    )
    .unwrap();
    assert_eq!(cfg.server.instance_id, "switchyard");
    assert_eq!(cfg.server.threads, 1);
    assert_eq!(cfg.server.grace_period_s, 30);
    assert_eq!(cfg.limits.header_timeout_ms, 10_000);
    assert_eq!(cfg.limits.retry_buffer_bytes, 65_536);
    assert_eq!(cfg.limits.read_buffer_bytes, None);
    assert!(cfg.metrics.is_none());
    let admin = cfg.admin.as_ref().unwrap();
    assert_eq!(admin.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(admin.token_env, "SWITCHYARD_ADMIN_TOKEN");
    let l = &cfg.listeners[0];
    assert_eq!(l.protocol, ListenerProtocol::Http);
    assert_eq!((l.connect_timeout_ms, l.idle_timeout_ms), (1000, 600_000));
    let r = &cfg.routes[0];
    assert_eq!(
        (r.timeout_ms, r.connect_timeout_ms, r.retries),
        (5000, 1000, -1)
    );
    assert_eq!(r.effective_path_prefix(), Some("/"));
    assert!(!r.require_cascade);
    assert!(!r.retry_non_idempotent);
    let u = &cfg.upstreams[0];
    assert_eq!(u.algorithm, Algorithm::Wrr);
    assert_eq!(
        (u.port, u.scheme, u.when_all_down),
        (80, Scheme::Http, WhenAllDown::Reject)
    );
    assert_eq!(u.resolve_interval_ms, 30_000);
    assert_eq!(u.effective_hash_on(), None);
    assert_eq!(u.groups[0].weight, 1);
    let s = &u.groups[0].servers[0];
    assert_eq!(
        (s.port, s.weight, s.standby, s.enabled),
        (0, None, false, true)
    );
    let a = u.health.active.as_ref().unwrap();
    assert_eq!(
        (a.protocol, a.path.as_str(), a.method),
        (CheckProtocol::Http, "/", CheckMethod::Get)
    );
    assert_eq!((a.healthy_threshold, a.unhealthy_threshold), (3, 3));
    assert_eq!((a.timeout_ms, a.interval_ms), (5000, 3000));
    assert_eq!(a.status_codes, [StatusRange { lo: 200, hi: 399 }]);
    let p = u.health.passive.as_ref().unwrap();
    assert_eq!(p.unhealthy_statuses, [500, 502, 503, 504]);
    assert_eq!(
        (p.unhealthy_threshold, p.ejection_ms, p.max_ejection_percent),
        (3, 30_000, 50)
    );
    let st = u.sticky.as_ref().unwrap();
    assert_eq!(
        (st.cookie.as_str(), st.ttl_s, st.key_env.as_str()),
        ("SWITCHYARD_STICKY", 0, "SWITCHYARD_STICKY_KEY")
    );
}

#[test]
fn consistent_hash_defaults_to_source_ip() {
    let cfg = parse_str(
        r#"
[[upstreams]]
name = "api"
algorithm = "consistent_hash"
  [[upstreams.groups]]
  name = "g"
  servers = [{ address = "10.0.0.1" }]
"#,
    )
    .unwrap();
    assert_eq!(cfg.upstreams[0].effective_hash_on(), Some(HashOn::SourceIp));
}

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
fn unknown_key_names_full_path() {
    let text = r#"
[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }]
  [upstreams.health.active]
  intervall = 3000
"#;
    let e = assert_error(text, "upstreams[0].health.active.intervall", "intervall");
    assert!(e.message.contains("unknown field"), "{e}");
    let e = assert_error(
        "[server]\nthreads = 2\nthread = 3\n",
        "server.thread",
        "thread = 3",
    );
    assert_eq!(e.line, Some(3));
}

#[test]
fn duplicate_listener_name() {
    let text = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:8080"

[[listeners]]
name = "web"   # again
listen = "127.0.0.1:8081"
"#;
    let e = assert_error(text, "listeners[1].name", "# again");
    assert!(
        e.message.contains("first defined at listeners[0].name"),
        "{e}"
    );
}

#[test]
fn route_to_missing_upstream() {
    let text = r#"
[[routes]]
name = "r"
upstream = "nope"

[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }]
"#;
    let e = assert_error(text, "routes[0].upstream", "\"nope\"");
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("defined: api"), "{e}");
}

#[test]
fn retries_must_be_fewer_than_enabled_servers() {
    let text = r#"
[[routes]]
name = "r"
upstream = "api"
retries = 2

[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }, { address = "10.0.0.2" }, { address = "10.0.0.3", enabled = false }]
"#;
    assert_error(text, "routes[0].retries", "retries = 2");
    // One retry with two enabled servers is fine; 11 is out of range.
    assert!(parse_str(&text.replace("retries = 2", "retries = 1")).is_ok());
    assert_error(
        &text.replace("retries = 2", "retries = 11"),
        "routes[0].retries",
        "retries = 11",
    );
}

#[test]
fn bad_cidr() {
    let text = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:8080"
allow = ["10.0.0.0/8",
         "10.0.0.0/33"]
"#;
    assert_error(text, "listeners[0].allow[1]", "/33");
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
fn six_allowed_instances() {
    let text = r#"
[cascade]
key_env = "K"
allowed_instances = ["a", "b", "c", "d", "e", "f"]
"#;
    assert_error(text, "cascade.allowed_instances", "allowed_instances");
    let text = "[cascade]\nallowed_instances = [\"a\", \"\"]\n";
    assert_error(text, "cascade.allowed_instances[1]", "allowed_instances");
}

#[test]
fn https_listener_without_tls_points_at_its_table() {
    let text = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:8080"

[[listeners]]
name = "secure"
protocol = "https"
listen = "127.0.0.1:8443"
"#;
    let e = assert_error(text, "listeners[1].tls", "[[listeners]]\nname = \"secure\"");
    // The missing key is reported at the `[[listeners]]` header of its table.
    assert_eq!(e.line, Some(6));
    assert_eq!(e.column, Some(1));
}

#[test]
fn unknown_variable_in_backend_path() {
    let text = r#"
[variables]
stage = "v1"

[[routes]]
name = "r"
path = "/users/{id}"
upstream = "api"
backend_path = "/#stag#/users/{id}"

[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }]
"#;
    let e = assert_error(text, "routes[0].backend_path", "backend_path");
    assert!(e.message.contains("#stag#"), "{e}");
}

#[test]
fn uncaptured_param_in_backend_path() {
    let text = r#"
[[routes]]
name = "r"
path = "/users/{id}"
upstream = "api"
backend_path = "/users/{userId}"

[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }]
"#;
    let e = assert_error(text, "routes[0].backend_path", "backend_path");
    assert!(e.message.contains("{userId}"), "{e}");
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
fn every_error_is_reported_in_line_order() {
    let text = r#"
[server]
threads = 0
instance_id = "gw 1"

[[listeners]]
name = "web"
listen = "127.0.0.1:8080"

[[routes]]
name = "a"
upstream = "missing"
path = "/users/x{id}"
path_prefix = "/users"
methods = ["get"]
timeout_ms = 0

[[upstreams]]
name = "api"
"#;
    let errs = errors(text);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.threads",
            "server.instance_id",
            "routes[0].upstream",
            "routes[0].path_prefix",
            "routes[0].methods[0]",
            "routes[0].timeout_ms",
            "upstreams[0].groups",
        ]
    );
    let lines: Vec<usize> = errs.iter().filter_map(|e| e.line).collect();
    assert_eq!(lines, [3, 4, 12, 14, 15, 16, 18]);
    // The Display form names path, line and column.
    let shown = ConfigErrors { errors: errs }.to_string();
    assert!(
        shown.contains("server.threads (line 3, column 11): must be at least 1"),
        "{shown}"
    );
}

#[test]
fn path_patterns() {
    let base = r#"
[[routes]]
name = "r"
upstream = "api"
path = "PATH"

[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }]
"#;
    for good in ["/", "/users/{id}", "/a/{x}/b/{y_2}", "/users/{id}/"] {
        assert!(parse_str(&base.replace("PATH", good)).is_ok(), "{good}");
    }
    for bad in ["users", "/users/x{id}", "/{id}/{id}", "/{1d}", "/{}", "/{a"] {
        assert_error(&base.replace("PATH", bad), "routes[0].path", "path =");
    }
}

#[test]
fn listener_rules() {
    let text = r#"
[metrics]
listen = "127.0.0.1:9100"

[[listeners]]
name = "web"
listen = "0.0.0.0:9100"
tls = { cert = "a", key = "b" }

[[listeners]]
name = "db"
protocol = "tcp"
listen = "127.0.0.1:5432"

[[listeners]]
name = "db2"
protocol = "tcp"
listen = "127.0.0.1:5433"
upstream = "api"
idle_timeout_ms = 0

[[routes]]
name = "r"
listeners = ["db2", "nope"]
upstream = "api"

[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }]
"#;
    let e = assert_error(text, "listeners[0].listen", "0.0.0.0:9100");
    assert!(e.message.contains("metrics.listen"), "{e}");
    assert_error(text, "listeners[0].tls", "tls =");
    // The missing key points at the table that should hold it.
    assert_error(
        text,
        "listeners[1].upstream",
        "[[listeners]]\nname = \"db\"\n",
    );
    assert_error(text, "listeners[2].idle_timeout_ms", "idle_timeout_ms");
    let e = assert_error(text, "routes[0].listeners[0]", "\"db2\", \"nope\"");
    assert!(e.message.contains("tcp"), "{e}");
    assert_error(text, "routes[0].listeners[1]", "\"db2\", \"nope\"");
}

#[test]
fn tcp_listeners_only_hash_on_the_client_address() {
    let text = r#"
[[listeners]]
name = "db"
protocol = "tcp"
listen = "127.0.0.1:5432"
upstream = "by_uri"

[[listeners]]
name = "db2"
protocol = "tcp"
listen = "127.0.0.1:5433"
upstream = "by_header"

[[listeners]]
name = "db3"
protocol = "tcp"
listen = "127.0.0.1:5434"
upstream = "by_ip"

[[upstreams]]
name = "by_uri"
algorithm = "uri_hash"
  [[upstreams.groups]]
  name = "g"
  servers = [{ address = "10.0.0.1", port = 5432 }]

[[upstreams]]
name = "by_header"
algorithm = "consistent_hash"
hash_on = "header:X-User"
  [[upstreams.groups]]
  name = "g"
  servers = [{ address = "10.0.0.1", port = 5432 }]

[[upstreams]]
name = "by_ip"
algorithm = "consistent_hash"
hash_on = "source_ip"
  [[upstreams.groups]]
  name = "g"
  servers = [{ address = "10.0.0.1", port = 5432 }]
"#;
    let e = assert_error(text, "listeners[0].upstream", "upstream = \"by_uri\"");
    assert!(e.message.contains("source_ip"), "{e}");
    assert_error(text, "listeners[1].upstream", "upstream = \"by_header\"");
    let errs = crate::parse_str(text).unwrap_err();
    assert!(
        !errs
            .errors
            .iter()
            .any(|e| e.path == "listeners[2].upstream"),
        "source_ip hashing is fine for tcp: {errs}"
    );
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
fn route_rules() {
    let text = r#"
[[routes]]
name = "r"
hosts = ["ok.example.com", "*.example.org", "bad host", "a.*.com", "x.com:80"]
methods = ["GET", "GET", "PURGE", "G T"]
upstream = "api"
path_prefix = "/api"
backend_path = "/v1/{id}"
require_cascade = true
connect_timeout_ms = 0

[[routes]]
name = "r"
upstream = "api"

[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }]
"#;
    let errs = errors(text);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for p in [
        "routes[0].hosts[2]",
        "routes[0].hosts[3]",
        "routes[0].hosts[4]",
        "routes[0].methods[1]",
        "routes[0].methods[3]",
        "routes[0].backend_path",
        "routes[0].require_cascade",
        "routes[0].connect_timeout_ms",
        "routes[1].name",
    ] {
        assert!(paths.contains(&p), "missing {p} in {paths:?}");
    }
    assert!(!paths.contains(&"routes[0].hosts[1]"));
    assert!(!paths.contains(&"routes[0].methods[2]"));
    assert_error(text, "routes[1].name", "name = \"r\"\nupstream");
}

#[test]
fn server_and_limits_rules() {
    let text = "[server]\nthreads = 1\ninstance_id = \"a,b\"\n[limits]\nheader_timeout_ms = 0\n";
    assert_error(text, "server.instance_id", "instance_id");
    assert_error(text, "limits.header_timeout_ms", "header_timeout_ms");
    let text = "[limits]\nheader_timeout_ms = 5\nread_buffer_bytes = 2000000\n";
    let e = assert_error(text, "limits.read_buffer_bytes", "read_buffer_bytes");
    assert!(e.message.contains("1 MiB"), "{e}");
    let ok = parse_str("[limits]\nread_buffer_bytes = 0\n").unwrap();
    assert_eq!(ok.limits.read_buffer_bytes, Some(0));
}

#[test]
fn request_hygiene_limits() {
    let d = parse_str("").unwrap().limits;
    assert_eq!(d.body_timeout_ms, 10_000);
    assert_eq!(d.encoded_slashes, EncodedSlashes::Reject);
    let text = "[limits]\nheader_timeout_ms = 5\nbody_timeout_ms = 0\n";
    assert_error(text, "limits.body_timeout_ms", "body_timeout_ms");
    let text = "[limits]\nheader_timeout_ms = 5\nencoded_slashes = \"decode\"\n";
    let e = assert_error(text, "limits.encoded_slashes", "encoded_slashes");
    assert!(
        e.message.contains("keep") && e.message.contains("reject"),
        "{e}"
    );
    let ok = parse_str("[limits]\nencoded_slashes = \"keep\"\nbody_timeout_ms = 250\n").unwrap();
    assert_eq!(ok.limits.encoded_slashes, EncodedSlashes::Keep);
    assert_eq!(ok.limits.body_timeout_ms, 250);
}

#[test]
fn locate_handles_quoted_keys_and_missing_tables() {
    let text = "[variables]\n\"a b\" = \"x\"\n";
    assert_error(text, "variables.\"a b\"", "\"a b\"");
    // A path whose table is absent altogether has no location.
    let errs = ConfigErrors::single(ConfigError::new("cascade.key_env", "x")).locate(text);
    assert_eq!(errs.errors[0].line, None);
}

#[test]
fn load_file_resolves_tls_paths() {
    let dir = std::env::temp_dir().join(format!("switchyard-config-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("certs/server.pem"), "cert").unwrap();
    let conf = dir.join("switchyard.toml");
    let text = r#"
[[listeners]]
name = "secure"
protocol = "https"
listen = "127.0.0.1:8443"
tls = { cert = "certs/server.pem", key = "certs/missing.key" }
"#;
    std::fs::write(&conf, text).unwrap();
    let errs = load_file(&conf).unwrap_err();
    assert_eq!(errs.errors.len(), 1, "{errs}");
    assert_eq!(errs.errors[0].path, "listeners[0].tls.key");
    assert_eq!(errs.errors[0].line, Some(6));
    assert!(errs.errors[0].message.contains("missing.key"), "{errs}");

    std::fs::write(dir.join("certs/missing.key"), "key").unwrap();
    let cfg = load_file(&conf).unwrap();
    let tls = cfg.listeners[0].tls.as_ref().unwrap();
    assert_eq!(
        std::path::Path::new(&tls.cert),
        dir.join("certs/server.pem")
    );
    let _ = std::fs::remove_dir_all(&dir);

    // parse_str only checks that the paths are not empty.
    assert!(parse_str(text).is_ok());
    assert_error(
        &text.replace("certs/server.pem", ""),
        "listeners[0].tls.cert",
        "tls =",
    );
}

#[test]
fn missing_required_key_names_the_key_at_its_table() {
    let text = r#"
[[listeners]]
name = "web"

[[upstreams]]
name = "api"
"#;
    let e = assert_error(text, "listeners[0].listen", "[[listeners]]");
    assert!(e.message.contains("missing field"), "{e}");
}

#[test]
fn syntax_error_has_a_line() {
    let errs = errors("[server]\nthreads = = 1\n");
    assert_eq!(errs[0].path, "");
    assert_eq!(errs[0].line, Some(2));
}

#[test]
fn server_resolvers() {
    let cfg = parse_str("[server]\nresolvers = [\"127.0.0.1:5353\", \"::1\", \"[::1]:5300\"]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let addrs: Vec<String> = cfg
        .server
        .resolver_addrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(addrs, ["127.0.0.1:5353", "[::1]:53", "[::1]:5300"]);
    assert!(Config::default().server.resolvers.is_empty());
    let text = "[server]\nresolvers = [\n  \"127.0.0.1:5353\",\n  \"dns.example:53\",\n  \"10.0.0.1:0\",\n]\n";
    let e = assert_error(text, "server.resolvers[1]", "\"dns.example:53\"");
    assert!(e.message.contains("ip:port"), "{e}");
    assert_error(text, "server.resolvers[2]", "\"10.0.0.1:0\"");
    assert!(!errors(text).iter().any(|e| e.path == "server.resolvers[0]"));
}

#[test]
fn accept_proxy_protocol_from_needs_accept_proxy_protocol() {
    let text = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:8080"
accept_proxy_protocol_from = ["10.0.0.0/8"]
"#;
    let e = assert_error(
        text,
        "listeners[0].accept_proxy_protocol_from",
        "accept_proxy_protocol_from",
    );
    assert!(e.message.contains("accept_proxy_protocol = true"), "{e}");
    let bad_cidr = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:8080"
accept_proxy_protocol = true
accept_proxy_protocol_from = ["10.0.0.0/33"]
"#;
    assert!(!errors(bad_cidr).is_empty());
}
