//! A request whose head cannot be parsed (a header line without a colon, a request line that is
//! not one) is refused like any other: `400` with an `X-Request-Id`, counted in
//! `switchyard_rejected_requests_total{reason="bad_request"}`, a `warn` line naming that id, and
//! an access-log line carrying the same id with `error = "bad_request"` — checked in raw bytes,
//! with nothing reaching the origin.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// The JSON lines of `path` once it holds at least `n` (waits ≤ 5 s).
fn wait_json_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `X-Request-Id` field of a raw response head.
fn request_id_of(raw: &str) -> Option<String> {
    raw.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-request-id")
            .then(|| value.trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_head_gets_a_400_with_a_request_id_a_count_a_log_line_and_an_access_log_line() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&format!(
        "{server}[metrics]\nlisten = \"{metrics}\"\n\n\
         [access_log]\npath = \"access.log\"\nformat = \"json\"\n\n{web}\
         [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"main\"\n\n{main}",
        server = server_section("malformed"),
        metrics = free_addr(),
        web = listener_section("web", &free_addr()),
        main = upstream_section("main", &[&origin]),
    ));
    let web = gw.listener("web");

    let bad_field = raw_http(
        web,
        "GET /a HTTP/1.1\r\nHost: example.test\r\nthis line has no colon\r\n\r\n",
        Duration::from_secs(5),
    );
    let bad_line = raw_http(web, "GARBAGE\u{1}\r\n\r\n", Duration::from_secs(5));
    let mut ids = Vec::new();
    for raw in [&bad_field, &bad_line] {
        assert!(raw.starts_with("HTTP/1.1 400 "), "{raw:?}");
        let head = raw
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(head.contains("\r\nconnection: close"), "{raw:?}");
        let id = request_id_of(raw).unwrap_or_else(|| panic!("no X-Request-Id in {raw:?}"));
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each refused request gets its own id");
    // A good request on the same listener still works, and is the only one the origin sees.
    let ok = raw_http(
        web,
        "GET /fine HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok:?}");
    let paths: Vec<String> = origin
        .requests()
        .iter()
        .map(|r| r.path().to_string())
        .collect();
    assert_eq!(paths, ["/fine"], "a malformed request reached the origin");

    let samples = gw
        .metrics_once(
            "switchyard_rejected_requests_total",
            &[("listener", "web"), ("reason", "bad_request")],
            2.0,
        )
        .await;
    let refused = metric_sum(
        &samples,
        "switchyard_rejected_requests_total",
        &[("listener", "web"), ("reason", "bad_request")],
    );
    assert_eq!(refused, 2.0);

    // The first refusal is logged at once with its id (later ones are throttled, and counted).
    assert!(
        gw.wait_for_log(&format!("request id {}", ids[0]), Duration::from_secs(5)),
        "no warn line naming {}: {}",
        ids[0],
        gw.log()
    );

    let lines = wait_json_lines(&gw.dir().join("access.log"), 3);
    for id in &ids {
        let line = lines
            .iter()
            .find(|v| v["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no access-log line for {id}: {lines:#?}"));
        assert_eq!(line["status"], 400, "{line}");
        assert_eq!(line["error"], "bad_request", "{line}");
        assert_eq!(line["listener"], "web", "{line}");
        assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
        assert_eq!(line["method"], Value::Null, "{line}");
        assert_eq!(line["path"], Value::Null, "{line}");
        assert_eq!(line["attempts"], 0, "{line}");
        assert!(line["bytes_sent"].as_u64().unwrap_or(0) > 0, "{line}");
    }
}
