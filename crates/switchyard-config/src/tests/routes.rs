//! `[[routes]]`: references, `path` patterns, methods, retries and `backend_path`.

use super::*;

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
