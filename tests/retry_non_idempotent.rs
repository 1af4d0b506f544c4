//! `retry_non_idempotent` on a route (issue #14, item 7b): with `true`, a POST or PATCH whose
//! server failed after the request was sent (here: reset after reading it) is retried on another
//! server like a GET (NGINX `proxy_next_upstream ... non_idempotent`); with the default `false` it
//! answers 502 (covered in detail by `tests/retries.rs`).

mod support;

use support::*;

/// Listener `web`, route `r` (extra lines `route_extra`) to upstream `u` over `bad` then `good`.
fn config(prefix: &str, route_extra: &str, bad: &Origin, good: &Origin) -> String {
    format!(
        "{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n{route_extra}\n\n{}",
        server_section(prefix),
        listener_section("web", &free_addr()),
        upstream_section("u", &[bad, good]),
    )
}

/// Sends `method` with body `body`; returns the status and the answering origin.
async fn send_body(c: &reqwest::Client, method: &str, url: &str, body: String) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = c
        .request(m, url)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
    let status = resp.status().as_u16();
    let origin = resp
        .headers()
        .get("x-origin")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, origin)
}

/// Sends 8 POSTs and 8 PATCHes through `gw`; returns `(path, status, origin)` of each.
async fn post_and_patch(gw: &Gateway) -> Vec<(String, u16, String)> {
    let c = fresh_client();
    let mut out = Vec::new();
    for method in ["POST", "PATCH"] {
        for i in 0..8 {
            let path = format!("/{method}/{i}");
            let (status, origin) =
                send_body(&c, method, &gw.url(&path), format!("{method} body {i}")).await;
            out.push((path, status, origin));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_retry_non_idempotent_a_reset_post_is_retried_on_the_other_server() {
    let bad = Origin::start("bad");
    bad.set_mode(OriginMode::Reset);
    let good = Origin::start("good");
    let gw = Gateway::start(&config(
        "retry-non-idem",
        "retry_non_idempotent = true",
        &bad,
        &good,
    ));
    for (path, status, origin) in post_and_patch(&gw).await {
        assert_eq!(status, 200, "{path} was not retried");
        assert_eq!(origin, "good", "{path}");
    }
    let reset: Vec<String> = bad.requests().iter().map(|r| r.uri.clone()).collect();
    assert!(
        reset.iter().any(|p| p.starts_with("/POST/"))
            && reset.iter().any(|p| p.starts_with("/PATCH/")),
        "the resetting server never got a POST and a PATCH: the test proves nothing ({reset:?})"
    );
    // Every request reached the good server exactly once, with its body intact.
    let got = good.requests();
    assert_eq!(got.len(), 16);
    for r in &got {
        let (method, i) = r.uri[1..].split_once('/').unwrap();
        assert_eq!(r.method, method);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            format!("{method} body {i}")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_it_a_reset_post_answers_502() {
    let bad = Origin::start("bad");
    bad.set_mode(OriginMode::Reset);
    let good = Origin::start("good");
    let gw = Gateway::start(&config("retry-non-idem-off", "", &bad, &good));
    let answers = post_and_patch(&gw).await;
    let reset: Vec<String> = bad.requests().iter().map(|r| r.uri.clone()).collect();
    assert!(!reset.is_empty(), "the resetting server was never tried");
    for (path, status, origin) in answers {
        if reset.contains(&path) {
            assert_eq!(status, 502, "{path}: reset after sending, not retried");
        } else {
            assert_eq!((status, origin.as_str()), (200, "good"), "{path}");
        }
    }
}
