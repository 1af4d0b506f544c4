//! The admin API against cross-site requests (CSRF) and DNS rebinding: a foreign `Origin` is
//! refused whatever the method and even with a valid token; without a token, a `Host` that is not
//! a loopback address or `localhost` is refused; state-changing endpoints refuse `GET` and form
//! content types. Requests are written raw, exactly as a browser or an attacker would send them.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

const TOKEN_ENV: &str = "SWITCHYARD_TEST_ADMIN_HYGIENE_TOKEN";
const TOKEN: &str = "hygiene-token-91c2";

fn config(prefix: &str, origin: &Origin) -> String {
    format!(
        "{}[admin]\nlisten = \"{}\"\ntoken_env = \"{TOKEN_ENV}\"\n\n{}\
         [[routes]]\nname = \"all\"\nupstream = \"u\"\n\n{}",
        server_section(prefix),
        free_addr(),
        listener_section("web", &free_addr()),
        upstream_section("u", &[origin]),
    )
}

/// Sends one admin request and returns its status code (0 if there was no answer).
fn status(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.push_str(body);
    let text = raw_http(addr, &req, Duration::from_secs(3));
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Is the origin's server enabled, as the admin API reports it?
async fn enabled(gw: &Gateway, auth: Option<&str>) -> bool {
    let mut req = client().get(gw.admin_url("/api/upstreams/u"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let v: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
    v["servers"][0]["enabled"].as_bool().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_loopback_hosts_and_same_origin_requests_are_served() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config("admin-hyg-open", &origin));
    let admin = gw.admin_addr();
    let port = admin.port();
    let disable = format!(
        "/api/upstreams/u/servers/127.0.0.1:{}/disable",
        origin.port()
    );
    let local = format!("127.0.0.1:{port}");
    let local_origin = format!("http://127.0.0.1:{port}");

    // DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends its Host.
    for host in [
        "evil.example:9000",
        &format!("evil.example:{port}"),
        "10.0.0.1",
        "localhost.evil.example",
    ] {
        assert_eq!(
            status(admin, "POST", &disable, &[("Host", host)], ""),
            403,
            "Host: {host}"
        );
        assert_eq!(
            status(admin, "GET", "/api/upstreams", &[("Host", host)], ""),
            403,
            "GET, Host: {host}"
        );
        assert_eq!(
            status(admin, "POST", "/api/reload", &[("Host", host)], ""),
            403,
            "reload, Host: {host}"
        );
    }
    assert_eq!(
        status(admin, "GET", "/status", &[], ""),
        403,
        "no Host at all"
    );
    // Cross-site: a page on another origin posting to the loopback address.
    for foreign in [
        "http://evil.example",
        "null",
        "http://127.0.0.1:1",
        "https://127.0.0.1",
        "http://localhost:1",
        "garbage",
    ] {
        let headers = [("Host", local.as_str()), ("Origin", foreign)];
        assert_eq!(
            status(admin, "POST", &disable, &headers, ""),
            403,
            "Origin: {foreign}"
        );
        assert_eq!(
            status(admin, "GET", "/status", &headers, ""),
            403,
            "GET, Origin: {foreign}"
        );
    }
    assert!(
        enabled(&gw, None).await,
        "a refused request disabled the server"
    );

    // Form content types cannot change anything, even same-origin.
    for ct in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
        "Text/Plain; charset=utf-8",
    ] {
        let headers = [("Host", local.as_str()), ("Content-Type", ct)];
        assert_eq!(
            status(admin, "POST", &disable, &headers, "a=b"),
            415,
            "Content-Type: {ct}"
        );
    }
    // State-changing endpoints refuse GET.
    assert_eq!(
        status(admin, "GET", &disable, &[("Host", local.as_str())], ""),
        405
    );
    assert!(enabled(&gw, None).await);

    // Loopback names and same-origin requests work.
    let ok = [
        vec![("Host", local.as_str())],
        vec![("Host", local.as_str()), ("Origin", local_origin.as_str())],
    ];
    for headers in &ok {
        assert_eq!(
            status(admin, "POST", &disable, headers, ""),
            200,
            "{headers:?}"
        );
        assert!(!enabled(&gw, None).await);
        let enable = disable.replace("disable", "enable");
        assert_eq!(
            status(admin, "POST", &enable, headers, ""),
            200,
            "{headers:?}"
        );
        assert!(enabled(&gw, None).await);
    }
    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
        format!("127.0.0.2:{port}"),
        "127.0.0.1".to_string(),
    ] {
        assert_eq!(
            status(
                admin,
                "GET",
                "/api/upstreams",
                &[("Host", host.as_str())],
                ""
            ),
            200,
            "Host: {host}"
        );
    }
    let json = [
        ("Host", local.as_str()),
        ("Content-Type", "application/json"),
    ];
    assert_eq!(
        status(
            admin,
            "PUT",
            &disable.replace("disable", "weight"),
            &json,
            "{\"weight\": 3}"
        ),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_even_with_a_valid_token() {
    let origin = Origin::start("o");
    let gw = Gateway::start_with_env(&config("admin-hyg-token", &origin), &[(TOKEN_ENV, TOKEN)]);
    let admin = gw.admin_addr();
    let port = admin.port();
    let bearer = format!("Bearer {TOKEN}");
    let disable = format!(
        "/api/upstreams/u/servers/127.0.0.1:{}/disable",
        origin.port()
    );
    let local = format!("127.0.0.1:{port}");
    for foreign in [
        "http://evil.example",
        "null",
        &format!("http://evil.example:{port}"),
    ] {
        let headers = [
            ("Host", local.as_str()),
            ("Origin", foreign),
            ("Authorization", bearer.as_str()),
        ];
        assert_eq!(
            status(admin, "POST", &disable, &headers, ""),
            403,
            "Origin: {foreign}"
        );
        assert_eq!(
            status(admin, "GET", "/api/upstreams", &headers, ""),
            403,
            "GET, Origin: {foreign}"
        );
        assert_eq!(
            status(admin, "POST", "/api/reload", &headers, ""),
            403,
            "reload, Origin: {foreign}"
        );
    }
    assert!(enabled(&gw, Some(&bearer)).await);
    // With a token, any Host is fine (the listener may be reached by name), and so is a
    // same-origin request under that name.
    let named = [
        ("Host", "admin.example:9000"),
        ("Origin", "http://admin.example:9000"),
        ("Authorization", bearer.as_str()),
    ];
    assert_eq!(status(admin, "POST", &disable, &named, ""), 200);
    assert!(!enabled(&gw, Some(&bearer)).await);
    // A form post is refused even with the token.
    let form = [
        ("Host", local.as_str()),
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    assert_eq!(
        status(
            admin,
            "POST",
            &disable.replace("disable", "enable"),
            &form,
            "x=1"
        ),
        415
    );
    assert!(!enabled(&gw, Some(&bearer)).await);
    // Without the token: still 401 first for a well-behaved request.
    assert_eq!(
        status(
            admin,
            "GET",
            "/api/upstreams",
            &[("Host", local.as_str())],
            ""
        ),
        401
    );
}
