//! Parsing the whole file: every key, defaults, serde errors, error locations and `load_file`.

use super::*;

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
        api.health.active.as_ref().unwrap().method(),
        CheckMethod::Head
    );
    let status = api.health.active.as_ref().unwrap().status_codes();
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
        (a.protocol, a.path(), a.method()),
        (CheckProtocol::Http, "/", CheckMethod::Get)
    );
    assert_eq!((a.healthy_threshold, a.unhealthy_threshold), (3, 3));
    assert_eq!((a.timeout_ms, a.interval_ms), (5000, 3000));
    assert_eq!(a.status_codes(), [StatusRange { lo: 200, hi: 399 }]);
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
