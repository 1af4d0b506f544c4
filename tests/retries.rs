//! Retry policy over real sockets: failures after the request was sent are retried only for
//! idempotent methods, connect failures for every method, `retries = N` bounds the attempts, a
//! retry never goes to a server already tried, and exhausted retries answer 502 / 504.
//!
//! (`tests/failover.rs` covers refused connections with `retries = 1`, all servers down and a 3 s
//! origin behind `timeout_ms = 300`.)

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::*;

/// A gateway config: `[metrics]`, listener `web`, route `r` (with `route_extra` lines) to upstream
/// `u` over `servers` (`(address, port)`), all in group `g`.
fn config(prefix: &str, route_extra: &str, servers: &[(String, u16)]) -> String {
    let mut s = format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\n\
         upstream = \"u\"\n{route_extra}\n\n\
         [[upstreams]]\nname = \"u\"\n  [[upstreams.groups]]\n  name = \"g\"\n",
        server_section(prefix),
        free_addr(),
        listener_section("web", &free_addr()),
    );
    for (addr, port) in servers {
        s.push_str(&format!(
            "    [[upstreams.groups.servers]]\n    address = \"{addr}\"\n    port = {port}\n"
        ));
    }
    s
}

fn srv(o: &Origin) -> (String, u16) {
    (o.addr().ip().to_string(), o.port())
}

fn closed_server() -> (String, u16) {
    ("127.0.0.1".to_string(), free_port())
}

/// How many times each path was seen by `o`.
fn path_counts(o: &Origin) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in o.requests() {
        *m.entry(r.uri.clone()).or_insert(0) += 1;
    }
    m
}

async fn retries_metric(gw: &Gateway) -> f64 {
    metric_sum(
        &gw.metrics().await,
        "switchyard_retries_total",
        &[("route", "r")],
    )
}

async fn send_body(c: &reqwest::Client, method: &str, url: &str, body: String) -> Resp {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = c
        .request(m, url)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_reset_after_the_request_is_retried_on_another_server() {
    let bad = Origin::start("bad");
    bad.set_mode(OriginMode::Reset);
    let good = Origin::start("good");
    let gw = Gateway::start(&config("retry-reset-get", "", &[srv(&bad), srv(&good)]));
    let c = client();
    for i in 0..20 {
        let r = get(&c, &gw.url(&format!("/g/{i}?q={i}"))).await;
        assert_eq!(r.status, 200, "GET {i}: {:?}", r.body);
        assert_eq!(r.origin().as_deref(), Some("good"), "GET {i}");
    }
    // The reset server really received requests (so some were retried) ...
    let bad_seen = bad.requests();
    assert!(
        !bad_seen.is_empty(),
        "the resetting server was never tried: the test proves nothing"
    );
    // ... and every request it reset reached the good server afterwards, whole.
    let good_paths = path_counts(&good);
    assert_eq!(good.request_count(), 20, "{good_paths:?}");
    for r in &bad_seen {
        assert_eq!(r.method, "GET");
        assert_eq!(
            good_paths.get(&r.uri),
            Some(&1),
            "{} reset by bad but not retried once on good",
            r.uri
        );
    }
    // A retry never returns to a server already tried for the same request.
    for (uri, n) in path_counts(&bad) {
        assert_eq!(n, 1, "{uri} sent to the resetting server {n} times");
    }
    let retried = retries_metric(&gw).await;
    assert_eq!(
        retried,
        bad_seen.len() as f64,
        "switchyard_retries_total{{route=\"r\"}} counts one retry per reset request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reset_after_the_request_is_not_retried_and_answers_502() {
    let bad = Origin::start("bad");
    bad.set_mode(OriginMode::Reset);
    let good = Origin::start("good");
    let gw = Gateway::start(&config("retry-reset-post", "", &[srv(&bad), srv(&good)]));
    let c = fresh_client();
    let mut failed = Vec::new();
    for i in 0..20 {
        let url = gw.url(&format!("/p/{i}"));
        let r = send_body(&c, "POST", &url, format!("order {i}")).await;
        match r.status {
            200 => assert_eq!(r.origin().as_deref(), Some("good")),
            502 => failed.push(format!("/p/{i}")),
            s => panic!("POST {i}: unexpected {s}: {:?}", r.body),
        }
    }
    let bad_paths: Vec<String> = bad.requests().iter().map(|r| r.uri.clone()).collect();
    assert!(
        !bad_paths.is_empty(),
        "the resetting server was never tried: the test proves nothing"
    );
    // Exactly the POSTs the bad server received failed, and none of them was sent twice.
    assert_eq!(failed, bad_paths, "502s are the POSTs reset by the server");
    let good_paths = path_counts(&good);
    for p in &failed {
        assert!(
            !good_paths.contains_key(p),
            "POST {p} was retried on another server after it had been sent"
        );
    }
    assert_eq!(good.request_count() + failed.len(), 20);
    assert_eq!(retries_metric(&gw).await, 0.0, "no retry for POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_methods_are_retried_patch_is_not() {
    let bad = Origin::start("bad");
    bad.set_mode(OriginMode::Reset);
    let good = Origin::start("good");
    let gw = Gateway::start(&config("retry-methods", "", &[srv(&bad), srv(&good)]));
    let c = fresh_client();
    // PUT, DELETE, HEAD and OPTIONS are idempotent: always answered by the good server.
    for m in ["PUT", "DELETE", "HEAD", "OPTIONS"] {
        for i in 0..4 {
            let r = send_body(&c, m, &gw.url(&format!("/m/{m}/{i}")), String::new()).await;
            assert_eq!(r.status, 200, "{m} {i}: {:?}", r.body);
        }
    }
    assert!(
        bad.requests().iter().any(|r| r.method != "PATCH"),
        "the resetting server was never tried"
    );
    // PATCH is not idempotent: the ones that reached the resetting server fail.
    let mut patch_502 = 0;
    for i in 0..6 {
        let r = send_body(&c, "PATCH", &gw.url(&format!("/patch/{i}")), "x".into()).await;
        assert!(
            r.status == 200 || r.status == 502,
            "PATCH {i}: {}",
            r.status
        );
        if r.status == 502 {
            patch_502 += 1;
        }
    }
    let bad_patches = bad
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert!(bad_patches > 0, "no PATCH reached the resetting server");
    assert_eq!(patch_502, bad_patches);
    let good_patches = good
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert_eq!(good_patches + patch_502, 6, "a reset PATCH was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_connect_refused_is_retried_with_the_default_policy() {
    let good = Origin::start("good");
    // retries = -1 (default): nothing was sent on a refused connection, so POST goes elsewhere.
    let gw = Gateway::start(&config(
        "retry-post-default",
        "",
        &[closed_server(), srv(&good), closed_server()],
    ));
    let c = client();
    for i in 0..12 {
        let r = send_body(&c, "POST", &gw.url(&format!("/p/{i}")), format!("b{i}")).await;
        assert_eq!(r.status, 200, "POST {i}: {:?}", r.body);
        assert_eq!(r.origin().as_deref(), Some("good"));
    }
    assert_eq!(good.request_count(), 12);
    let bodies: Vec<String> = good
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    let want: Vec<String> = (0..12).map(|i| format!("b{i}")).collect();
    assert_eq!(bodies, want, "every POST arrived once, body intact");
    assert!(
        retries_metric(&gw).await >= 1.0,
        "refused connections were retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_zero_answers_502_instead_of_retrying() {
    // After sending (reset) ...
    let bad = Origin::start("bad");
    bad.set_mode(OriginMode::Reset);
    let good = Origin::start("good");
    let gw = Gateway::start(&config(
        "retry-zero-reset",
        "retries = 0",
        &[srv(&bad), srv(&good)],
    ));
    let c = fresh_client();
    let mut failed = Vec::new();
    for i in 0..12 {
        let r = get(&c, &gw.url(&format!("/z/{i}"))).await;
        match r.status {
            200 => assert_eq!(r.origin().as_deref(), Some("good")),
            502 => failed.push(format!("/z/{i}")),
            s => panic!("GET {i}: unexpected {s}"),
        }
    }
    let bad_paths: Vec<String> = bad.requests().iter().map(|r| r.uri.clone()).collect();
    assert!(
        !bad_paths.is_empty(),
        "the resetting server was never tried"
    );
    assert_eq!(
        failed, bad_paths,
        "with retries = 0 a reset GET answers 502"
    );
    let good_paths = path_counts(&good);
    assert!(
        failed.iter().all(|p| !good_paths.contains_key(p)),
        "retries = 0 but a failed GET reached another server: {failed:?} / {good_paths:?}"
    );
    assert_eq!(retries_metric(&gw).await, 0.0);
    drop(gw);

    // ... and before sending (connection refused): no retry either.
    let good = Origin::start("good");
    let gw = Gateway::start(&config(
        "retry-zero-refused",
        "retries = 0",
        &[closed_server(), srv(&good)],
    ));
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(get(&c, &gw.url(&format!("/c/{i}"))).await.status);
    }
    let n502 = statuses.iter().filter(|s| **s == 502).count();
    assert!(
        n502 > 0,
        "the refusing server was never picked: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 502),
        "{statuses:?}"
    );
    assert_eq!(good.request_count(), 12 - n502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_n_tries_up_to_n_more_servers_never_the_same_twice() {
    let bad1 = Origin::start("bad1");
    let bad2 = Origin::start("bad2");
    bad1.set_mode(OriginMode::Reset);
    bad2.set_mode(OriginMode::Reset);
    let good = Origin::start("good");
    let gw = Gateway::start(&config(
        "retry-two",
        "retries = 2",
        &[srv(&bad1), srv(&bad2), srv(&good)],
    ));
    let c = client();
    for i in 0..15 {
        let r = get(&c, &gw.url(&format!("/n/{i}"))).await;
        assert_eq!(r.status, 200, "GET {i} with 2 retries over 3 servers");
        assert_eq!(r.origin().as_deref(), Some("good"));
    }
    for o in [&bad1, &bad2, &good] {
        for (uri, n) in path_counts(o) {
            assert_eq!(n, 1, "{uri} sent to {} {n} times", o.name());
        }
    }
    assert_eq!(good.request_count(), 15);
    let attempts_on_bad = (bad1.request_count() + bad2.request_count()) as f64;
    assert!(attempts_on_bad >= 15.0, "round robin tries bad servers too");
    assert_eq!(retries_metric(&gw).await, attempts_on_bad);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_one_over_two_failing_servers_answers_502() {
    let bad1 = Origin::start("bad1");
    let bad2 = Origin::start("bad2");
    bad1.set_mode(OriginMode::Close);
    bad2.set_mode(OriginMode::Reset);
    let gw = Gateway::start(&config(
        "retry-exhausted",
        "retries = 1",
        &[srv(&bad1), srv(&bad2)],
    ));
    let c = fresh_client();
    for i in 0..4 {
        let r = get(&c, &gw.url(&format!("/x/{i}"))).await;
        assert_eq!(r.status, 502, "GET {i}: {:?}", r.body);
        let p = format!("/x/{i}");
        let on1 = bad1.requests().iter().filter(|r| r.uri == p).count();
        let on2 = bad2.requests().iter().filter(|r| r.uri == p).count();
        assert_eq!((on1, on2), (1, 1), "{p}: one attempt on each server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_origin_with_timeout_200_answers_504() {
    let slow = Origin::start("slow");
    slow.set_delay(Duration::from_secs(1));
    let gw = Gateway::start(&config("retry-504", "timeout_ms = 200", &[srv(&slow)]));
    let c = client();
    let started = Instant::now();
    let r = get(&c, &gw.url("/slow")).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{:?}", r.body);
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(950),
        "504 after {took:?}, expected about 200 ms"
    );
    assert_eq!(
        slow.request_count(),
        1,
        "single server: nothing to retry on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_get_is_retried_on_a_fast_server_but_post_is_not() {
    let slow = Origin::start("slow");
    slow.set_delay(Duration::from_secs(1));
    let fast = Origin::start("fast");
    let gw = Gateway::start(&config(
        "retry-timeout",
        "timeout_ms = 200",
        &[srv(&slow), srv(&fast)],
    ));
    let c = fresh_client();
    for i in 0..6 {
        let r = get(&c, &gw.url(&format!("/t/{i}"))).await;
        assert_eq!(r.status, 200, "GET {i}");
        assert_eq!(r.origin().as_deref(), Some("fast"));
    }
    assert!(slow.request_count() > 0, "the slow server was never tried");
    let slow_before = slow.request_count();
    let mut n504 = 0;
    for i in 0..6 {
        let r = send_body(&c, "POST", &gw.url(&format!("/tp/{i}")), "x".into()).await;
        match r.status {
            200 => assert_eq!(r.origin().as_deref(), Some("fast")),
            504 => n504 += 1,
            s => panic!("POST {i}: {s}"),
        }
    }
    let slow_posts = slow.request_count() - slow_before;
    assert!(slow_posts > 0, "no POST reached the slow server");
    assert_eq!(
        n504, slow_posts,
        "a timed-out POST answers 504, not retried"
    );
    let fast_posts = fast
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(fast_posts + n504, 6);
}

/// Reads one HTTP/1.1 response (head and `content-length` body) from `s`; returns the head
/// (lowercased) or `None` if the peer closed first.
fn read_response(s: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len && Instant::now() < deadline {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            return Some(head);
        }
        if Instant::now() > deadline {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return None,
        }
    }
}

/// After a 502 (or 504) the gateway must not advertise a keep-alive connection it then closes:
/// either the answer says `Connection: close`, or the next request on the connection is served.
/// A keep-alive client (browser, reqwest, another proxy) otherwise sends its next request into a
/// dead connection and fails (`IncompleteMessage` / `ECONNRESET`), which for a POST cannot be
/// retried safely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_response_that_closes_the_connection_says_so() {
    use std::io::Write;
    let slow = Origin::start("slow");
    slow.set_delay(Duration::from_secs(1));
    let mut broken = Vec::new();
    for (label, route_extra, servers) in [
        ("502", "", vec![closed_server()]),
        ("504", "timeout_ms = 200", vec![srv(&slow)]),
    ] {
        let gw = Gateway::start(&config("retry-keepalive", route_extra, &servers));
        let mut s =
            std::net::TcpStream::connect_timeout(&gw.addr(), Duration::from_secs(3)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.write_all(b"GET /first HTTP/1.1\r\nHost: ka.test\r\n\r\n")
            .unwrap();
        let head = read_response(&mut s).expect("an answer to the first request");
        assert!(head.starts_with(&format!("http/1.1 {label}")), "{head}");
        let says_close = head
            .lines()
            .any(|l| l.starts_with("connection:") && l.contains("close"));
        if says_close {
            continue;
        }
        // Keep-alive was advertised: the connection must serve another request.
        let second = s
            .write_all(b"GET /second HTTP/1.1\r\nHost: ka.test\r\n\r\n")
            .ok()
            .and_then(|_| read_response(&mut s));
        if second.is_none() {
            broken.push(format!(
                "{label}: the answer advertised a keep-alive connection ({head:?}) but the \
                 gateway closed it: the next request on it got no answer"
            ));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
