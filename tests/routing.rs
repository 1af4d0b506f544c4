//! Routing: hosts (exact, wildcard, any), path patterns with parameters, prefixes, methods,
//! specificity, and the 404 for requests that match no route.

mod support;

use support::*;

/// A `[[routes]]` table; `matchers` are extra TOML lines (hosts, path, methods...).
fn route(name: &str, matchers: &str, upstream: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\n{matchers}\nupstream = \"{upstream}\"\n\n")
}

/// Sends `GET path` with `Host: host` and returns the name of the origin that answered.
async fn who(c: &reqwest::Client, gw: &Gateway, host: &str, path: &str) -> String {
    let r = get_with_host(c, &gw.url(path), host).await;
    assert_eq!(
        r.status, 200,
        "GET {path} Host: {host} -> {} {:?}",
        r.status, r.body
    );
    r.origin().unwrap_or_else(|| {
        panic!(
            "GET {path} Host: {host}: no x-origin header; body {:?}",
            r.body
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routing_exact_over_wildcard_over_any() {
    let exact = Origin::start("exact");
    let wild = Origin::start("wild");
    let any = Origin::start("any");
    // Declared least specific first: the order must not decide.
    let cfg = format!(
        "{}{}{}{}{}{}{}{}",
        server_section("routing-host"),
        listener_section("web", &free_addr()),
        route("r-any", "path_prefix = \"/\"", "u-any"),
        route(
            "r-wild",
            "hosts = [\"*.example.com\"]\npath_prefix = \"/\"",
            "u-wild"
        ),
        route(
            "r-exact",
            "hosts = [\"api.example.com\"]\npath_prefix = \"/\"",
            "u-exact"
        ),
        upstream_section("u-exact", &[&exact]),
        upstream_section("u-wild", &[&wild]),
        upstream_section("u-any", &[&any]),
    );
    let gw = Gateway::start(&cfg);
    let c = client();

    assert_eq!(who(&c, &gw, "api.example.com", "/x").await, "exact");
    assert_eq!(who(&c, &gw, "foo.example.com", "/x").await, "wild");
    assert_eq!(who(&c, &gw, "other.test", "/x").await, "any");
    // `*.example.com` needs a label before `.example.com`.
    assert_eq!(who(&c, &gw, "example.com", "/x").await, "any");
    // A port in the Host header does not take part in host matching.
    assert_eq!(who(&c, &gw, "api.example.com:8080", "/x").await, "exact");
    assert_eq!(who(&c, &gw, "foo.example.com:8080", "/x").await, "wild");
    // Host names are case-insensitive.
    assert_eq!(who(&c, &gw, "API.Example.COM", "/x").await, "exact");

    // The request reaches the origin unchanged, with the client's Host.
    let last = exact.last_request().unwrap();
    assert_eq!(last.uri, "/x");
    assert_eq!(last.method, "GET");
    assert_eq!(exact.request_count(), 3);
    assert_eq!(wild.request_count(), 2);
    assert_eq!(any.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_params_prefixes_and_specificity() {
    let users = Origin::start("users");
    let me = Origin::start("me");
    let uprefix = Origin::start("users-prefix");
    let api = Origin::start("api");
    let v2 = Origin::start("api-v2");
    let root = Origin::start("root");
    let cfg = format!(
        "{}{}{}{}{}{}{}{}{}{}{}{}{}{}",
        server_section("routing-path"),
        listener_section("web", &free_addr()),
        route("r-root", "path_prefix = \"/\"", "u-root"),
        route("r-api", "path_prefix = \"/api\"", "u-api"),
        route("r-api-v2", "path_prefix = \"/api/v2\"", "u-v2"),
        route("r-users-prefix", "path_prefix = \"/users\"", "u-uprefix"),
        route("r-users", "path = \"/users/{id}\"", "u-users"),
        route("r-users-me", "path = \"/users/me\"", "u-me"),
        upstream_section("u-root", &[&root]),
        upstream_section("u-api", &[&api]),
        upstream_section("u-v2", &[&v2]),
        upstream_section("u-uprefix", &[&uprefix]),
        upstream_section("u-users", &[&users]),
        upstream_section("u-me", &[&me]),
    );
    let gw = Gateway::start(&cfg);
    let c = client();
    let h = "app.test";

    // A `{param}` pattern matches exactly one segment and beats a prefix.
    assert_eq!(who(&c, &gw, h, "/users/42").await, "users");
    assert_eq!(who(&c, &gw, h, "/users/42?expand=1").await, "users");
    assert_eq!(users.last_request().unwrap().uri, "/users/42?expand=1");
    // A literal path beats a pattern.
    assert_eq!(who(&c, &gw, h, "/users/me").await, "me");
    // Deeper paths and the bare prefix fall back to the prefix route.
    assert_eq!(who(&c, &gw, h, "/users/42/orders").await, "users-prefix");
    assert_eq!(who(&c, &gw, h, "/users").await, "users-prefix");
    // The longest prefix wins; prefixes match on segment boundaries.
    assert_eq!(who(&c, &gw, h, "/api").await, "api");
    assert_eq!(who(&c, &gw, h, "/api/x").await, "api");
    assert_eq!(who(&c, &gw, h, "/api/v2/x").await, "api-v2");
    assert_eq!(who(&c, &gw, h, "/api/v2").await, "api-v2");
    assert_eq!(who(&c, &gw, h, "/apix").await, "root");
    assert_eq!(who(&c, &gw, h, "/api/v20").await, "api");
    assert_eq!(who(&c, &gw, h, "/other/thing").await, "root");
    assert_eq!(who(&c, &gw, h, "/").await, "root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_select_routes() {
    let read = Origin::start("read");
    let write = Origin::start("write");
    let cfg = format!(
        "{}{}{}{}{}{}",
        server_section("routing-methods"),
        listener_section("web", &free_addr()),
        route(
            "r-read",
            "path_prefix = \"/m\"\nmethods = [\"GET\", \"HEAD\"]",
            "u-read"
        ),
        route(
            "r-write",
            "path_prefix = \"/m\"\nmethods = [\"POST\"]",
            "u-write"
        ),
        upstream_section("u-read", &[&read]),
        upstream_section("u-write", &[&write]),
    );
    let gw = Gateway::start(&cfg);
    let c = client();

    let r = send(&c, "GET", &gw.url("/m/1"), None, &[]).await;
    assert_eq!((r.status, r.origin().as_deref()), (200, Some("read")));
    let r = send(&c, "HEAD", &gw.url("/m/1"), None, &[]).await;
    assert_eq!((r.status, r.origin().as_deref()), (200, Some("read")));
    let r = send(&c, "POST", &gw.url("/m/1"), None, &[]).await;
    assert_eq!((r.status, r.origin().as_deref()), (200, Some("write")));
    assert_eq!(write.last_request().unwrap().method, "POST");

    // No route accepts DELETE: 404, and nothing reaches an origin.
    let r = send(&c, "DELETE", &gw.url("/m/1"), None, &[]).await;
    assert_eq!(r.status, 404, "DELETE with no matching route: {:?}", r.body);
    assert_eq!(r.origin(), None);
    assert_eq!(read.request_count(), 2);
    assert_eq!(write.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_with_short_body_and_reaches_no_origin() {
    let a = Origin::start("a");
    let cfg = format!(
        "{}{}{}{}",
        server_section("routing-404"),
        listener_section("web", &free_addr()),
        route(
            "only",
            "hosts = [\"only.example.com\"]\npath_prefix = \"/app\"",
            "u"
        ),
        upstream_section("u", &[&a]),
    );
    let gw = Gateway::start(&cfg);
    let c = client();

    for (host, path) in [
        ("other.example.com", "/app"),
        ("only.example.com", "/"),
        ("only.example.com", "/application"),
        ("only.example.com.evil.test", "/app"),
    ] {
        let r = get_with_host(&c, &gw.url(path), host).await;
        assert_eq!(r.status, 404, "Host {host} {path}: {:?}", r.body);
        assert!(!r.body.trim().is_empty(), "404 needs a body");
        assert!(
            r.body.len() < 1024,
            "404 body should be short: {:?}",
            r.body
        );
        assert_eq!(r.origin(), None);
    }
    assert_eq!(a.request_count(), 0, "nothing reaches the origin");
    assert_eq!(a.connections(), 0, "no connection to the origin");

    // The matching request still works.
    assert_eq!(who(&c, &gw, "only.example.com", "/app/x").await, "a");
    assert_eq!(a.request_count(), 1);
}
