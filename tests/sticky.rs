//! Sticky sessions (`[upstreams.sticky]`) over real sockets: the cookie is an HMAC of the server's
//! identity, it pins a client over many requests, an unavailable server is replaced and the cookie
//! rewritten, and gateways sharing the key agree. Also starts a gateway from `conf/sticky.toml`.

mod support;

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::*;

const KEY_ENV: &str = "SY_TEST_STICKY_KEY";
const KEY: &str = "fleet-shared-sticky-secret";

/// The token the design specifies: the first 16 hex digits of HMAC-SHA256(key, identity).
fn token(key: &str, identity: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(identity.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..8])
}

/// The identity of an origin in group `g` (see [`upstream_section`]).
fn ident(o: &Origin) -> String {
    format!("g/127.0.0.1:{}", o.port())
}

/// Listener `web`, a route to upstream `u` over `origins` with `[upstreams.sticky]` = `sticky`
/// (TOML lines) and extra upstream lines `upstream_extra`.
fn config(prefix: &str, sticky: &str, upstream_extra: &str, origins: &[&Origin]) -> String {
    let upstream = upstream_section("u", origins).replacen(
        "name = \"u\"\n",
        &format!("name = \"u\"\n{upstream_extra}\n  [upstreams.sticky]\n{sticky}\n"),
        1,
    );
    format!(
        "{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{upstream}",
        server_section(prefix),
        listener_section("web", &free_addr()),
    )
}

fn start(cfg: &str) -> Gateway {
    Gateway::start_with_env(cfg, &[(KEY_ENV, KEY)])
}

fn key_env_line() -> String {
    format!("  key_env = \"{KEY_ENV}\"\n")
}

/// Every `Set-Cookie` of a response.
fn set_cookies(r: &Resp) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// The value `name=<value>` of the only `Set-Cookie` for `name`, if any.
fn cookie_set(r: &Resp, name: &str) -> Option<String> {
    let all: Vec<String> = set_cookies(r)
        .into_iter()
        .filter(|c| c.starts_with(&format!("{name}=")))
        .collect();
    assert!(all.len() <= 1, "several {name} cookies: {all:?}");
    all.first().map(|c| {
        c.split(';').next().unwrap()[name.len() + 1..]
            .trim()
            .to_string()
    })
}

/// `cookies` with the value of each `Expires` attribute (checked to be an HTTP date about
/// `ttl_s` from now) replaced by `<date>`.
fn without_expiry(cookies: Vec<String>, ttl_s: u64) -> Vec<String> {
    cookies
        .into_iter()
        .map(|c| {
            c.split("; ")
                .map(|a| match a.strip_prefix("Expires=") {
                    Some(date) => {
                        let at = httpdate::parse_http_date(date).unwrap();
                        let want = std::time::SystemTime::now() + Duration::from_secs(ttl_s);
                        let off = want.duration_since(at).unwrap_or_default();
                        assert!(off < Duration::from_secs(30), "Expires={date}");
                        "Expires=<date>".to_string()
                    }
                    None => a.to_string(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect()
}

async fn get_with_cookie(c: &reqwest::Client, url: &str, cookie: &str) -> Resp {
    send(c, "GET", url, None, &[("Cookie", cookie)]).await
}

/// The origin among `origins` that answered `r`.
fn answered<'a>(r: &Resp, origins: &[&'a Origin]) -> &'a Origin {
    let name = r.origin().unwrap_or_else(|| panic!("no x-origin: {r:?}"));
    origins
        .iter()
        .find(|o| o.name() == name)
        .copied()
        .unwrap_or_else(|| panic!("unknown origin {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_answer_sets_an_hmac_cookie_and_30_requests_stick() {
    let (a, b, c3) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let origins = [&a, &b, &c3];
    let gw = start(&config("sticky-30", &key_env_line(), "", &origins));
    let c = client();

    let first = get(&c, &gw.url("/cart")).await;
    assert_eq!(first.status, 200);
    let pinned = answered(&first, &origins);
    let cookies = set_cookies(&first);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let want_token = token(KEY, &ident(pinned));
    assert_eq!(
        cookies[0],
        format!("SWITCHYARD_STICKY={want_token}; Path=/; HttpOnly; SameSite=Lax"),
        "session cookie (ttl_s = 0: no Max-Age), not Secure on an http listener"
    );
    assert!(
        !cookies[0].contains(&pinned.port().to_string()) && !cookies[0].contains("127.0.0.1"),
        "no address leaks"
    );

    // 30 more requests with the cookie (among other cookies): all on the same server, and the
    // cookie is not set again.
    let header = format!("theme=dark; SWITCHYARD_STICKY={want_token}; lang=en");
    let before = pinned.request_count();
    for i in 0..30 {
        let r = get_with_cookie(&c, &gw.url(&format!("/cart/{i}")), &header).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.origin().as_deref(), Some(pinned.name()), "request {i}");
        assert!(
            set_cookies(&r).is_empty(),
            "request {i}: {:?}",
            set_cookies(&r)
        );
    }
    assert_eq!(pinned.request_count(), before + 30);
    for o in origins {
        if o.name() != pinned.name() {
            assert!(o.requests().iter().all(|r| !r.uri.starts_with("/cart/")));
        }
    }
    // The cookie reaches the origin unchanged (the application may use its own cookies).
    assert_eq!(
        pinned.last_request().unwrap().header("cookie").as_deref(),
        Some(header.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_computed_from_the_key_pins_each_server() {
    let (a, b, c3) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let origins = [&a, &b, &c3];
    let gw = start(&config("sticky-each", &key_env_line(), "", &origins));
    let c = client();
    for o in origins {
        let cookie = format!("SWITCHYARD_STICKY={}", token(KEY, &ident(o)));
        for i in 0..10 {
            let r = get_with_cookie(&c, &gw.url(&format!("/{}/{i}", o.name())), &cookie).await;
            assert_eq!(
                r.origin().as_deref(),
                Some(o.name()),
                "{cookie} request {i}"
            );
            assert!(set_cookies(&r).is_empty());
        }
        assert_eq!(o.request_count(), 10);
    }
    // Upper-case hex is not what the gateway issues; either it decodes it to the same server or
    // it replaces it, but it never lands elsewhere silently.
    let upper = format!(
        "SWITCHYARD_STICKY={}",
        token(KEY, &ident(&b)).to_uppercase()
    );
    let r = get_with_cookie(&c, &gw.url("/upper"), &upper).await;
    if r.origin().as_deref() != Some("b") {
        let t = cookie_set(&r, "SWITCHYARD_STICKY").expect("a replaced cookie is rewritten");
        assert_eq!(t, token(KEY, &ident(answered(&r, &origins))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cookie_requests_are_balanced_and_each_answer_pins_its_server() {
    let (a, b, c3) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let origins = [&a, &b, &c3];
    let gw = start(&config("sticky-balance", &key_env_line(), "", &origins));
    let c = client();
    for i in 0..12 {
        let r = get(&c, &gw.url(&format!("/n/{i}"))).await;
        let o = answered(&r, &origins);
        assert_eq!(
            cookie_set(&r, "SWITCHYARD_STICKY"),
            Some(token(KEY, &ident(o))),
            "request {i}"
        );
    }
    for o in origins {
        assert_eq!(o.request_count(), 4, "round robin for new sessions");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_or_foreign_cookies_are_replaced() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let origins = [&a, &b];
    let gw = start(&config("sticky-invalid", &key_env_line(), "", &origins));
    let c = client();
    let foreign = token("another-fleet-key", &ident(&a));
    let unknown_server = token(KEY, "g/127.0.0.1:1");
    for bad in [
        "garbage",
        "",
        "0000000000000000",
        "zzzzzzzzzzzzzzzz",
        foreign.as_str(),
        unknown_server.as_str(),
        "g/127.0.0.1:80",
    ] {
        let r = get_with_cookie(&c, &gw.url("/x"), &format!("SWITCHYARD_STICKY={bad}")).await;
        assert_eq!(r.status, 200, "cookie {bad:?}");
        let o = answered(&r, &origins);
        assert_eq!(
            cookie_set(&r, "SWITCHYARD_STICKY"),
            Some(token(KEY, &ident(o))),
            "cookie {bad:?} is replaced by a valid one"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_sticky_server_is_replaced_and_the_cookie_rewritten() {
    let (a, b, c3) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let origins = [&a, &b, &c3];
    let gw = start(&config("sticky-stop", &key_env_line(), "", &origins));
    let c = client();
    let cookie_a = format!("SWITCHYARD_STICKY={}", token(KEY, &ident(&a)));
    for i in 0..5 {
        let r = get_with_cookie(&c, &gw.url(&format!("/s/{i}")), &cookie_a).await;
        assert_eq!(r.origin().as_deref(), Some("a"));
    }

    a.stop();
    let r = get_with_cookie(&c, &gw.url("/after-stop"), &cookie_a).await;
    assert_eq!(r.status, 200, "the client is moved, not shown an error");
    let replacement = answered(&r, &origins);
    assert_ne!(replacement.name(), "a");
    let new_token = cookie_set(&r, "SWITCHYARD_STICKY").expect("the cookie is rewritten");
    assert_eq!(new_token, token(KEY, &ident(replacement)));

    // A POST pinned to the stopped server is moved too (nothing was sent to it).
    let resp = c
        .post(gw.url("/checkout"))
        .header("Cookie", &cookie_a)
        .body("items=3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("set-cookie").is_some());

    // The rewritten cookie sticks to the replacement ...
    let cookie_new = format!("SWITCHYARD_STICKY={new_token}");
    for i in 0..10 {
        let r = get_with_cookie(&c, &gw.url(&format!("/r/{i}")), &cookie_new).await;
        assert_eq!(
            r.origin().as_deref(),
            Some(replacement.name()),
            "request {i}"
        );
        assert!(set_cookies(&r).is_empty());
    }
    // ... also after the old server is back, which gets its own clients back.
    a.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get_with_cookie(&c, &gw.url("/back"), &cookie_a).await;
        if r.origin().as_deref() == Some("a") {
            assert!(set_cookies(&r).is_empty(), "a's own cookie is still valid");
            break;
        }
        assert!(Instant::now() < deadline, "a never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..5 {
        let r = get_with_cookie(&c, &gw.url(&format!("/again/{i}")), &cookie_new).await;
        assert_eq!(r.origin().as_deref(), Some(replacement.name()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_marked_down_by_health_checks_is_replaced() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let origins = [&a, &b];
    let health = "  [upstreams.health.active]\n  protocol = \"tcp\"\n  interval_ms = 100\n  \
                  timeout_ms = 100\n  healthy_threshold = 1\n  unhealthy_threshold = 1\n";
    // The health table must follow the groups: append it after the upstream.
    let cfg = format!(
        "{}{health}",
        config("sticky-health", &key_env_line(), "", &origins)
    );
    let gw = start(&cfg);
    let c = client();
    let cookie_a = format!("SWITCHYARD_STICKY={}", token(KEY, &ident(&a)));
    let r = get_with_cookie(&c, &gw.url("/h"), &cookie_a).await;
    assert_eq!(r.origin().as_deref(), Some("a"));
    a.stop();
    // Give the checker a few rounds to mark `a` down.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for i in 0..5 {
        let r = get_with_cookie(&c, &gw.url(&format!("/h/{i}")), &cookie_a).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.origin().as_deref(), Some("b"));
        assert_eq!(
            cookie_set(&r, "SWITCHYARD_STICKY"),
            Some(token(KEY, &ident(&b))),
            "request {i}: the cookie names the replacement"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_name_and_max_age_are_configurable() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let origins = [&a, &b];
    let sticky = format!("  cookie = \"route\"\n  ttl_s = 600\n{}", key_env_line());
    let gw = start(&config("sticky-ttl", &sticky, "", &origins));
    let c = client();
    let r = get(&c, &gw.url("/")).await;
    let o = answered(&r, &origins);
    assert_eq!(
        without_expiry(set_cookies(&r), 600),
        vec![format!(
            "route={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=600; Expires=<date>",
            token(KEY, &ident(o))
        )]
    );
    // The default cookie name means nothing to this upstream.
    let other = if o.name() == "a" { &b } else { &a };
    let r = get_with_cookie(
        &c,
        &gw.url("/"),
        &format!("SWITCHYARD_STICKY={}", token(KEY, &ident(other))),
    )
    .await;
    assert!(cookie_set(&r, "route").is_some());
    let r = get_with_cookie(
        &c,
        &gw.url("/"),
        &format!("route={}", token(KEY, &ident(other))),
    )
    .await;
    assert_eq!(r.origin().as_deref(), Some(other.name()));
    assert!(set_cookies(&r).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_the_key_route_a_cookie_to_the_same_server() {
    let (a, b, c3) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let origins = [&a, &b, &c3];
    let gw1 = start(&config("sticky-fleet-1", &key_env_line(), "", &origins));
    let gw2 = start(&config("sticky-fleet-2", &key_env_line(), "", &origins));
    let c = client();
    for i in 0..6 {
        // A new session on gateway 1 ...
        let r = get(&c, &gw1.url(&format!("/s/{i}"))).await;
        let o = answered(&r, &origins);
        let t = cookie_set(&r, "SWITCHYARD_STICKY").unwrap();
        // ... continues on gateway 2, on the same server, without a new cookie.
        for j in 0..3 {
            let r = get_with_cookie(
                &c,
                &gw2.url(&format!("/s/{i}/{j}")),
                &format!("SWITCHYARD_STICKY={t}"),
            )
            .await;
            assert_eq!(r.origin().as_deref(), Some(o.name()), "session {i}");
            assert!(set_cookies(&r).is_empty());
        }
    }

    // A gateway with another key does not understand the fleet's cookies.
    let gw3 = Gateway::start_with_env(
        &config("sticky-fleet-3", &key_env_line(), "", &origins),
        &[(KEY_ENV, "a-different-key")],
    );
    let t = token(KEY, &ident(&a));
    let r = get_with_cookie(&c, &gw3.url("/x"), &format!("SWITCHYARD_STICKY={t}")).await;
    let o = answered(&r, &origins);
    assert_eq!(
        cookie_set(&r, "SWITCHYARD_STICKY"),
        Some(token("a-different-key", &ident(o)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_key_variable_a_warning_is_logged_and_gateways_still_agree() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let origins = [&a, &b];
    let unset = format!("SY_TEST_STICKY_UNSET_{}", std::process::id());
    let sticky = format!("  key_env = \"{unset}\"\n");
    let gw1 = Gateway::start(&config("sticky-nokey-1", &sticky, "", &origins));
    let gw2 = Gateway::start(&config("sticky-nokey-2", &sticky, "", &origins));
    assert!(
        gw1.wait_for_log(&unset, Duration::from_secs(5)),
        "a warning names the unset variable; log:\n{}",
        gw1.log()
    );
    let c = client();
    let r = get(&c, &gw1.url("/")).await;
    let o = answered(&r, &origins);
    let t = cookie_set(&r, "SWITCHYARD_STICKY").unwrap();
    assert_eq!(t.len(), 16);
    assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(t, token("", &ident(o)), "not an empty key");
    for i in 0..5 {
        let r = get_with_cookie(
            &c,
            &gw2.url(&format!("/{i}")),
            &format!("SWITCHYARD_STICKY={t}"),
        )
        .await;
        assert_eq!(r.origin().as_deref(), Some(o.name()));
    }
}

/// `conf/sticky.toml` with its listeners, metrics and servers moved to free ports / live origins.
fn example_with(origins: &[&Origin]) -> String {
    let path = workspace_root().join("conf/sticky.toml");
    let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    for l in table["listeners"].as_array_mut().unwrap() {
        l["listen"] = toml::Value::String(free_addr());
    }
    if let Some(m) = table.get_mut("metrics") {
        m["listen"] = toml::Value::String(free_addr());
    }
    let mut next = origins.iter();
    for up in table["upstreams"].as_array_mut().unwrap() {
        for g in up["groups"].as_array_mut().unwrap() {
            for s in g["servers"].as_array_mut().unwrap() {
                let o = next
                    .next()
                    .expect("more servers in the example than origins");
                s["address"] = toml::Value::String("127.0.0.1".into());
                s["port"] = toml::Value::Integer(o.port().into());
            }
        }
    }
    assert!(
        next.next().is_none(),
        "fewer servers in the example than origins"
    );
    toml::to_string(&table).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_conf_sticky_toml_checks_and_runs() {
    let path = workspace_root().join("conf/sticky.toml");
    let (code, out, err) = check_file(&path);
    assert_eq!(code, 0, "conf/sticky.toml:\nstdout: {out}\nstderr: {err}");

    let (a, b, g) = (
        Origin::start("blue-1"),
        Origin::start("blue-2"),
        Origin::start("green-1"),
    );
    let origins = [&a, &b, &g];
    let idents = [
        format!("blue/127.0.0.1:{}", a.port()),
        format!("blue/127.0.0.1:{}", b.port()),
        format!("green/127.0.0.1:{}", g.port()),
    ];
    let key = "example-shop-key";
    let gw = Gateway::start_with_env(&example_with(&origins), &[("SHOP_STICKY_KEY", key)]);
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        let r = get(&c, &gw.url("/")).await;
        if r.status == 200 {
            break r;
        }
        assert!(Instant::now() < deadline, "no 200 from the example: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let o = answered(&first, &origins);
    let i = origins.iter().position(|x| x.name() == o.name()).unwrap();
    let t = token(key, &idents[i]);
    assert_eq!(
        without_expiry(set_cookies(&first), 3600),
        vec![format!(
            "SHOP_ROUTE={t}; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600; Expires=<date>"
        )]
    );
    for j in 0..30 {
        let r = get_with_cookie(&c, &gw.url(&format!("/p/{j}")), &format!("SHOP_ROUTE={t}")).await;
        assert_eq!(r.origin().as_deref(), Some(o.name()), "request {j}");
    }
}
