//! Path rewriting (`backend_path` with `#var#` and `{param}`) and `host_header`, as seen by a
//! real origin. (`tests/headers.rs` covers `X-Forwarded-*`, the default Host and 463 loops.)

mod support;

use support::*;

fn config(prefix: &str, o: &Origin) -> String {
    format!(
        "{}[variables]\nstage = \"v1\"\nregion = \"eu\"\n\n{}\
         [[routes]]\nname = \"users\"\npath = \"/users/{{userId}}\"\nupstream = \"u\"\n\
         backend_path = \"/#stage#/users/{{userId}}\"\nhost_header = \"users.internal\"\n\n\
         [[routes]]\nname = \"items\"\npath = \"/shops/{{shopId}}/items/{{itemId}}\"\nupstream = \"u\"\n\
         backend_path = \"/#region#/#stage#/items/{{itemId}}/of/{{shopId}}\"\n\n\
         [[routes]]\nname = \"static\"\npath_prefix = \"/static\"\nupstream = \"u\"\n\n{}",
        server_section(prefix),
        listener_section("web", &free_addr()),
        upstream_section("u", &[o]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_path_and_host_header_are_what_the_origin_sees() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config("rewrite-users", &o));
    let c = client();

    let r = get_with_host(&c, &gw.url("/users/42?fields=name&x=1"), "api.example.com").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = o.last_request().unwrap();
    assert_eq!(
        seen.uri, "/v1/users/42?fields=name&x=1",
        "query string kept"
    );
    assert_eq!(seen.header("host").as_deref(), Some("users.internal"));
    assert_eq!(
        seen.header_all("host").len(),
        1,
        "exactly one Host header upstream"
    );
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("api.example.com"),
        "the client's host is still reported"
    );

    // Without a query string, none is added.
    get_with_host(&c, &gw.url("/users/abc"), "api.example.com").await;
    assert_eq!(o.last_request().unwrap().uri, "/v1/users/abc");

    // A percent-encoded capture is passed on as received.
    get(&c, &gw.url("/users/a%20b")).await;
    assert_eq!(o.last_request().unwrap().uri, "/v1/users/a%20b");

    // A POST keeps its method and body.
    let resp = c
        .post(gw.url("/users/7"))
        .header("Host", "api.example.com")
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let seen = o.last_request().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("POST", "/v1/users/7")
    );
    assert_eq!(&seen.body[..], b"name=x");
    assert_eq!(seen.header("host").as_deref(), Some("users.internal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_captures_and_variables_and_unrewritten_routes() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config("rewrite-items", &o));
    let c = client();

    let r = get_with_host(&c, &gw.url("/shops/s-9/items/1234?lang=de"), "shop.example").await;
    assert_eq!(r.status, 200);
    let seen = o.last_request().unwrap();
    assert_eq!(seen.uri, "/eu/v1/items/1234/of/s-9?lang=de");
    assert_eq!(
        seen.header("host").as_deref(),
        Some("shop.example"),
        "no host_header: the client's Host"
    );

    // A route without backend_path forwards the path untouched.
    get_with_host(&c, &gw.url("/static/css/app.css?v=3"), "cdn.example").await;
    let seen = o.last_request().unwrap();
    assert_eq!(seen.uri, "/static/css/app.css?v=3");
    assert_eq!(seen.header("host").as_deref(), Some("cdn.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_do_not_match_the_pattern_reach_nothing() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config("rewrite-404", &o));
    let c = client();
    for path in [
        "/users",
        "/users/",
        "/users/42/extra",
        "/v1/users/42",
        "/shops/1/items",
        "/other",
    ] {
        let r = get(&c, &gw.url(path)).await;
        assert_eq!(r.status, 404, "{path}: {:?}", r.body);
    }
    assert_eq!(o.request_count(), 0, "{:?}", o.requests());
}
